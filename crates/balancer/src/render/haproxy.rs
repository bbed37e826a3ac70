//! `haproxy.cfg`: one TCP frontend/backend per listener of each farm, TLS passed through to
//! the servers, HTTP health checks over TLS with the kind's test.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use steward_model::resource::Affinity;
use steward_model::StatusRanges;

use crate::farm::{CheckKind, Farm, Farms, Listener};

/// Where HAProxy listens and keeps its files; not part of the desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaproxyOptions {
    /// The address frontends bind (`0.0.0.0`, or a lab's 127.0.0.10).
    pub bind: String,
    /// Ports below 1024 are served on 10000 + port, by this load balancer and by its
    /// members (the lab runs unprivileged, its agents map them the same way).
    pub map_low_ports: bool,
    /// The runtime API (stats socket, level admin).
    pub admin_socket: PathBuf,
    /// Where `show servers state` is saved before a reload and loaded from after it.
    pub state_file: PathBuf,
    /// Verify members' certificates against this CA (with SNI); `None`: `verify none`.
    pub ca_file: Option<PathBuf>,
    /// Connect to a member (by server name) at this address instead of resolving its host
    /// name (the lab's loopback addresses); the certificate is still checked for the host
    /// name.
    pub addresses: BTreeMap<String, IpAddr>,
}

impl HaproxyOptions {
    /// The port a listener binds on this load balancer.
    pub fn bind_port(&self, port: u16) -> u32 {
        if self.map_low_ports && port < 1024 {
            10_000 + u32::from(port)
        } else {
            u32::from(port)
        }
    }
}

/// The whole configuration file. Deterministic: the same farms give the same bytes, so an
/// unchanged desired state never causes a reload.
pub fn render(farms: &Farms, opts: &HaproxyOptions) -> String {
    let mut out = String::new();
    let idle = secs(farms.idle_timeout);
    let _ = write!(
        out,
        "# Written by steward from the desired state; edits are overwritten.\n\
         global\n\
         \x20   # The runtime API; expose-fd lets a reload take over the listening sockets.\n\
         \x20   stats socket {} mode 600 level admin expose-fd listeners\n\
         \x20   # Drain and maintenance set over the runtime API survive a reload.\n\
         \x20   server-state-file {}\n\
         \n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 5s\n\
         \x20   # At least the idle timeout: a console session lasts 30 minutes.\n\
         \x20   timeout client {idle}s\n\
         \x20   timeout server {idle}s\n\
         \x20   load-server-state-from-file global\n\
         \x20   # A connection refused by a member that just failed is retried on another.\n\
         \x20   option redispatch\n\
         \x20   retries 3\n",
        quote(&opts.admin_socket.to_string_lossy()),
        quote(&opts.state_file.to_string_lossy()),
    );
    for farm in &farms.farms {
        for listener in &farm.listeners {
            section(&mut out, farms, farm, listener, opts);
        }
    }
    out
}

fn section(
    out: &mut String,
    farms: &Farms,
    farm: &Farm,
    listener: &Listener,
    opts: &HaproxyOptions,
) {
    let id = farm.id(listener);
    let _ = write!(
        out,
        "\n# {} ({}) port {}\nfrontend {id}\n    bind {}:{}\n    default_backend {id}\n\nbackend {id}\n",
        farm.title,
        farm.kind,
        listener.port,
        opts.bind,
        opts.bind_port(listener.port),
    );
    let balance = match farms.affinity {
        Affinity::Client => "    balance source\n    hash-type consistent\n",
        Affinity::None => "    balance roundrobin\n",
    };
    out.push_str(balance);
    let check = &farm.check;
    let tls_check = match &check.kind {
        CheckKind::Https {
            path,
            accept,
            response_match,
        } => {
            let _ = writeln!(out, "    option httpchk");
            let _ = writeln!(
                out,
                "    http-check send meth GET uri {} ver HTTP/1.1 hdr Host {}",
                quote(path),
                quote(&farms.fqdn)
            );
            let _ = writeln!(
                out,
                "    http-check expect rstatus {}",
                quote(&status_regex(accept))
            );
            if let Some(m) = response_match {
                let _ = writeln!(out, "    http-check expect string {}", quote(m));
            }
            true
        }
        CheckKind::Tcp => false,
    };
    let _ = writeln!(out, "    timeout check {}ms", check.timeout.as_millis());
    let _ = writeln!(
        out,
        "    default-server inter {}ms fall {} rise {}",
        check.interval.as_millis(),
        check.fall,
        check.rise
    );
    // Every member, HL7's standbys too: the HL7 failover moves traffic with `set server
    // hl7/S state ready|maint` over the runtime API, which needs the server in the backend
    // (a reload per failover would be slower). A standby's listener is stopped, so its TCP
    // check keeps it DOWN until steward starts it and marks it ready.
    for m in &farm.members {
        let Some(port) = m.ports.get(listener.slot).map(|p| opts.bind_port(*p)) else {
            continue;
        };
        let _ = match opts.addresses.get(&m.server) {
            Some(ip) => write!(
                out,
                "    server {} {}:{port} check",
                m.server,
                SocketIp(*ip)
            ),
            None => write!(out, "    server {} {}:{port} check", m.server, m.hostname),
        };
        // The health surface is on the first port, whichever port this listener forwards.
        if listener.slot != 0 {
            let _ = write!(out, " port {}", opts.bind_port(m.ports[0]));
        }
        if tls_check {
            match &opts.ca_file {
                Some(ca) => {
                    let _ = write!(
                        out,
                        " check-ssl verify required ca-file {} check-sni {} verifyhost {}",
                        quote(&ca.to_string_lossy()),
                        m.hostname,
                        m.hostname
                    );
                }
                None => out.push_str(" check-ssl verify none"),
            }
        }
        out.push('\n');
    }
}

/// An address as HAProxy's `server` line takes it before `:port` (IPv6 in brackets).
struct SocketIp(IpAddr);

impl std::fmt::Display for SocketIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(ip) => write!(f, "[{ip}]"),
        }
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// HAProxy's strong quoting: nothing inside single quotes is interpreted (no `$` variables,
/// no escapes), and a single quote is closed, escaped and reopened.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An anchored regular expression matching exactly the accepted statuses, grouped by
/// hundreds and tens (`200-399` is `^(2[0-9][0-9]|3[0-9][0-9])$`).
pub fn status_regex(accept: &StatusRanges) -> String {
    let mut parts = Vec::new();
    for hundred in 1..=5u16 {
        let base = hundred * 100;
        if (base..base + 100).all(|s| accept.contains(s)) {
            parts.push(format!("{hundred}[0-9][0-9]"));
            continue;
        }
        for ten in 0..10u16 {
            let start = base + ten * 10;
            if (start..start + 10).all(|s| accept.contains(s)) {
                parts.push(format!("{hundred}{ten}[0-9]"));
                continue;
            }
            parts.extend(
                (start..start + 10)
                    .filter(|s| accept.contains(*s))
                    .map(|s| s.to_string()),
            );
        }
    }
    format!("^({})$", parts.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_regex_groups_hundreds_and_tens() {
        let r = |s| status_regex(&StatusRanges::parse(s).unwrap());
        assert_eq!(r("200-399"), "^(2[0-9][0-9]|3[0-9][0-9])$");
        assert_eq!(r("200-302"), "^(2[0-9][0-9]|300|301|302)$");
        assert_eq!(r("200-219,404"), "^(20[0-9]|21[0-9]|404)$");
    }

    #[test]
    fn quoting_interprets_nothing() {
        assert_eq!(quote("a$b"), "'a$b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
