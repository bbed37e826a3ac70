//! Where each lab server lives: its own loopback address, so every server can use the
//! catalog's ports (7001, 7443, ...) side by side on one machine.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use steward_model::Snapshot;

/// The first lab server gets 127.0.0.11 by default; the daemon itself stays on 127.0.0.1.
pub const DEFAULT_FIRST_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Host name -> loopback address, for every server of a snapshot.
///
/// Deterministic and stable as the fleet grows: servers are numbered in name order, and a
/// server keeps the address it was given first, so a commit that adds `app0` does not move
/// `app1` (whose agent is already listening).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabAddresses {
    first: Ipv4Addr,
    by_host: BTreeMap<String, IpAddr>,
}

impl Default for LabAddresses {
    fn default() -> Self {
        Self::starting_at(DEFAULT_FIRST_ADDRESS)
    }
}

impl LabAddresses {
    /// Number servers from `first` up (within its /24), so several labs (tests) can share
    /// one machine.
    pub fn starting_at(first: Ipv4Addr) -> Self {
        Self {
            first,
            by_host: BTreeMap::new(),
        }
    }

    /// Give every server of `snapshot` an address, keeping those already given.
    pub fn extend_for(&mut self, snapshot: &Snapshot) {
        for server in snapshot.servers.values() {
            if self.by_host.contains_key(&server.hostname) {
                continue;
            }
            let taken: Vec<IpAddr> = self.by_host.values().copied().collect();
            let [a, b, c, first] = self.first.octets();
            let next = (first..=254)
                .map(|o| IpAddr::V4(Ipv4Addr::new(a, b, c, o)))
                .find(|ip| !taken.contains(ip));
            if let Some(ip) = next {
                self.by_host.insert(server.hostname.clone(), ip);
            }
        }
    }

    pub fn get(&self, hostname: &str) -> Option<IpAddr> {
        self.by_host.get(hostname).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use steward_model::load::{load_text, Loaded};

    fn snapshot(servers: &[&str]) -> Snapshot {
        let mut text = "apiVersion: steward/v1\nkind: Installation\nmetadata: {name: ps}\nspec:\n  environment: non-production\n  installType: advanced\n  release: \"6.12.1\"\n  database: {server: db.example.eng, name: PS, user: u, passwordRef: env:PW}\n  certificateAuthority: {mode: generated}\n".to_owned();
        for (i, name) in servers.iter().enumerate() {
            let services = if i == 0 {
                "[{kind: PSIS}, {kind: PSWS}]"
            } else {
                "[]"
            };
            text.push_str(&format!("---\napiVersion: steward/v1\nkind: Server\nmetadata: {{name: {name}}}\nspec:\n  hostname: {name}.example.eng\n  certificate: {{generate: true}}\n  services: {services}\n"));
        }
        let mut loaded = Loaded::default();
        load_text(Path::new("t.yaml"), &text, &mut loaded);
        steward_model::validate::compile(loaded)
            .snapshot
            .expect("valid")
    }

    #[test]
    fn servers_keep_their_address_when_the_fleet_grows() {
        let mut addrs = LabAddresses::default();
        addrs.extend_for(&snapshot(&["app1", "app2"]));
        let app1 = addrs.get("app1.example.eng").unwrap();
        let app2 = addrs.get("app2.example.eng").unwrap();
        assert_eq!(app1, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)));
        assert_eq!(app2, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12)));
        addrs.extend_for(&snapshot(&["app0", "app1", "app2"]));
        assert_eq!(addrs.get("app1.example.eng"), Some(app1));
        assert_eq!(addrs.get("app2.example.eng"), Some(app2));
        assert_eq!(
            addrs.get("app0.example.eng"),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 13)))
        );
    }
}
