//! Who holds a TCP port: read off `/proc/net/tcp{,6}` (the socket's inode) and
//! `/proc/*/fd` (which process has that inode open). Used to say *why* a service could not
//! bind, and by the lab to tell its own leftover agents from a foreign process.
//!
//! Best effort by nature: another user's processes hide their fds, so the holder's pid may
//! stay unknown while the port is still reported taken.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP states (include/net/tcp_states.h) in which a socket keeps its local port bound
/// against a new listener: listening, or bound and not yet connected or listening.
const TCP_LISTEN: u8 = 0x0A;
const TCP_CLOSE: u8 = 0x07;

/// A process (or an unknown one) holding a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    pub port: u16,
    /// `None` when the socket exists but its owner cannot be seen (another user's).
    pub pid: Option<u32>,
    /// The holder's command line, space-joined.
    pub command: Option<String>,
}

/// The holder of a socket that would make `bind(ip, port)` fail, if there is one.
pub fn port_holder(ip: IpAddr, port: u16) -> Option<PortHolder> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(parse_line)
                .collect::<Vec<_>>()
        })
        .find(|s| {
            s.port == port && conflicts(s.ip, ip) && matches!(s.state, TCP_LISTEN | TCP_CLOSE)
        })
        .map(|s| s.inode)?;
    let pid = socket_owner(inode);
    Some(PortHolder {
        port,
        pid,
        command: pid.and_then(super::procfs::cmdline).map(|a| a.join(" ")),
    })
}

/// Whether a socket bound to `held` stops a bind to `wanted` on the same port.
fn conflicts(held: IpAddr, wanted: IpAddr) -> bool {
    held == wanted
        || held.is_unspecified()
        || wanted.is_unspecified()
        || match (held, wanted) {
            (IpAddr::V6(v6), IpAddr::V4(v4)) | (IpAddr::V4(v4), IpAddr::V6(v6)) => {
                v6.to_ipv4_mapped() == Some(v4)
            }
            _ => false,
        }
}

#[derive(Debug, PartialEq, Eq)]
struct Socket {
    ip: IpAddr,
    port: u16,
    state: u8,
    inode: u64,
}

/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`
fn parse_line(line: &str) -> Option<Socket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (addr, port) = fields.get(1)?.split_once(':')?;
    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some(Socket {
        ip: parse_ip(addr)?,
        port: u16::from_str_radix(port, 16).ok()?,
        state,
        inode,
    })
}

/// The kernel prints addresses as 32-bit words in host (little-endian) byte order.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_le_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// The first process with `socket:[inode]` among its open files.
fn socket_owner(inode: u64) -> Option<u32> {
    let target = format!("socket:[{inode}]");
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let fds = fs::read_dir(entry.path().join("fd")).ok()?;
        fds.flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
            .then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_both_tables() {
        let v4 = "   1: 0B00007F:1B5B 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_line(v4),
            Some(Socket {
                ip: "127.0.0.11".parse().unwrap(),
                port: 7003,
                state: TCP_LISTEN,
                inode: 424242
            })
        );
        let v6 = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 77 1 0000000000000000 100 0 0 10 0";
        let s = parse_line(v6).unwrap();
        assert_eq!(s.ip, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(s.port, 8080);
        assert!(parse_line("  sl  local_address rem_address   st").is_none());
    }

    #[test]
    fn wildcards_and_mapped_addresses_conflict() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(conflicts(ip("0.0.0.0"), ip("127.0.0.12")));
        assert!(conflicts(ip("127.0.0.12"), ip("127.0.0.12")));
        assert!(!conflicts(ip("127.0.0.11"), ip("127.0.0.12")));
        assert!(conflicts(ip("::ffff:127.0.0.12"), ip("127.0.0.12")));
    }

    #[test]
    fn finds_this_process_holding_a_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = port_holder("127.0.0.1".parse().unwrap(), port).expect("held");
        assert_eq!(holder.pid, Some(std::process::id()));
        assert!(holder.command.is_some());
        drop(listener);
        assert_eq!(port_holder("127.0.0.1".parse().unwrap(), port), None);
    }
}
