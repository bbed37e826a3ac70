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

    pub fn first(&self) -> Ipv4Addr {
        self.first
    }

    /// How many servers fit: one per address from the first up to .254 of its /24.
    pub fn room(&self) -> usize {
        let last = self.first.octets()[3];
        usize::from(255u8.saturating_sub(last.max(1)))
    }

    /// How many addresses placing `snapshot` would take in all: those given already
    /// (their servers' agents keep running) and one per new server.
    pub fn needed_for(&self, snapshot: &Snapshot) -> usize {
        let new = snapshot
            .servers
            .values()
            .filter(|s| !self.by_host.contains_key(&s.hostname))
            .count();
        self.by_host.len() + new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use steward_model::load::{load_text, Loaded};

    fn snapshot(servers: &[&str]) -> Snapshot {
        let mut fleet = steward_testkit::Fixture::installation();
        for (i, name) in servers.iter().enumerate() {
            let services: &[&str] = if i == 0 { &["PSIS", "PSWS"] } else { &[] };
            fleet = fleet
                .server(steward_testkit::Fixture::server(name).services(services.iter().copied()));
        }
        let text = fleet.documents();
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

    #[test]
    fn room_counts_the_addresses_left_in_the_24() {
        assert_eq!(LabAddresses::default().room(), 244);
        let near_end = LabAddresses::starting_at(Ipv4Addr::new(127, 0, 0, 253));
        assert_eq!(near_end.room(), 2);
        let three = snapshot(&["app1", "app2", "app3"]);
        assert_eq!(near_end.needed_for(&three), 3);
        let err = crate::lab::check_room(&near_end, &three).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the lab has room for 2 server(s) from 127.0.0.253 (up to .254 of its /24), \
             but the desired state declares 3; choose a lower --lab-first-address"
        );
        let mut placed = near_end.clone();
        placed.extend_for(&snapshot(&["app1", "app2"]));
        assert!(crate::lab::check_room(&placed, &snapshot(&["app1", "app2"])).is_ok());
        // A server placed before counts even after it left the files: its agent runs.
        assert_eq!(placed.needed_for(&snapshot(&["app1", "app3"])), 3);
    }
}
