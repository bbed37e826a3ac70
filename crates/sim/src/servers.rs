//! Which servers a simulated fleet has: names, host names and loopback addresses, the same
//! for `steward sim` (which serves them) and `steward sim generate` (which declares them).

use std::net::{IpAddr, Ipv4Addr};

use crate::error::SimError;

/// Host names of simulated servers end with this domain.
pub const DOMAIN: &str = "sim.example.eng";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimServer {
    /// `sim0001`: the Server's `metadata.name`.
    pub name: String,
    /// `sim0001.sim.example.eng`.
    pub hostname: String,
    /// Where its agent, services and control API listen.
    pub address: IpAddr,
}

/// `count` servers on consecutive loopback addresses from `first`, skipping addresses
/// ending in .0 and .255 (a reader would take them for network and broadcast addresses).
pub fn sim_servers(count: usize, first: Ipv4Addr) -> Result<Vec<SimServer>, SimError> {
    let mut out = Vec::with_capacity(count);
    let mut next = u32::from(first);
    while out.len() < count {
        let ip = Ipv4Addr::from(next);
        if ip.octets()[0] != 127 {
            return Err(SimError::NoRoom { count, first });
        }
        next += 1;
        if matches!(ip.octets()[3], 0 | 255) {
            continue;
        }
        let name = format!("sim{:04}", out.len() + 1);
        out.push(SimServer {
            hostname: format!("{name}.{DOMAIN}"),
            name,
            address: IpAddr::V4(ip),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_consecutive_and_skip_network_and_broadcast_octets() {
        let servers = sim_servers(3, Ipv4Addr::new(127, 1, 0, 254)).unwrap();
        let addrs: Vec<String> = servers.iter().map(|s| s.address.to_string()).collect();
        assert_eq!(addrs, ["127.1.0.254", "127.1.1.1", "127.1.1.2"]);
        assert_eq!(servers[0].name, "sim0001");
        assert_eq!(servers[2].hostname, "sim0003.sim.example.eng");
    }

    #[test]
    fn the_fleet_must_fit_in_loopback() {
        let err = sim_servers(10, Ipv4Addr::new(127, 255, 255, 250)).unwrap_err();
        assert_eq!(err.metric_label(), "no_room");
    }
}
