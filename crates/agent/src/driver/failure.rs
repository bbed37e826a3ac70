//! Why a service exited with an error, as far as the agent can tell: a port held by
//! another process (with that process, where `/proc` shows it), or else its exit code and
//! the last lines it logged. The answer goes into the service record of the API, so the
//! cause is no longer hidden in `service.log`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::Path;

use time::OffsetDateTime;

use super::sockets::port_holder;
use crate::api::{FailureReason, LastFailure};

/// The exit code of a lab service that could not bind one of its ports (EADDRINUSE's
/// number on Linux, so a person reading `exited with code 98` has a hint too).
pub const EXIT_PORT_IN_USE: i32 = 98;
/// How many log lines the record carries.
const TAIL_LINES: usize = 5;
/// How much of the log end is read to find them.
const TAIL_BYTES: u64 = 4096;

/// Where the service was listening and logging, to explain its exit.
#[derive(Debug, Clone)]
pub(crate) struct ServiceSite {
    pub bind: IpAddr,
    pub listen_ports: Vec<u16>,
    pub log: std::path::PathBuf,
}

/// Explain an exit with `code` (non-zero).
pub(crate) fn diagnose(site: &ServiceSite, code: i32) -> LastFailure {
    let log_tail = service_log_tail(&site.log);
    let last_line = log_tail.lines().last().unwrap_or_default().to_owned();
    let held = site
        .listen_ports
        .iter()
        .find_map(|port| port_holder(site.bind, *port));
    let at = OffsetDateTime::now_utc();
    match held {
        Some(holder) => {
            let by = match (holder.pid, &holder.command) {
                (Some(pid), Some(cmd)) => format!("process {pid} ({cmd})"),
                (Some(pid), None) => format!("process {pid}"),
                _ => "a process the agent cannot see".to_owned(),
            };
            LastFailure {
                reason: FailureReason::PortInUse,
                message: format!(
                    "port {} on {} is in use by {by}; the service exited with code {code}",
                    holder.port, site.bind
                ),
                port: Some(holder.port),
                holder_pid: holder.pid,
                holder_command: holder.command,
                exit_code: Some(code),
                log_tail,
                at,
            }
        }
        // Gone by now (or invisible to /proc), but the service said so itself.
        None if code == EXIT_PORT_IN_USE => LastFailure {
            reason: FailureReason::PortInUse,
            message: format!("a port was in use (exit code {code}): {last_line}"),
            port: None,
            holder_pid: None,
            holder_command: None,
            exit_code: Some(code),
            log_tail,
            at,
        },
        None => LastFailure {
            reason: FailureReason::Exited,
            message: if last_line.is_empty() {
                format!("exited with code {code}")
            } else {
                format!("exited with code {code}: {last_line}")
            },
            port: None,
            holder_pid: None,
            holder_command: None,
            exit_code: Some(code),
            log_tail,
            at,
        },
    }
}

/// A start that failed before there was a process.
pub(crate) fn start_failed(message: String) -> LastFailure {
    LastFailure {
        reason: FailureReason::StartFailed,
        message,
        port: None,
        holder_pid: None,
        holder_command: None,
        exit_code: None,
        log_tail: String::new(),
        at: OffsetDateTime::now_utc(),
    }
}

/// The service's own last lines (the agent's notes in the same file left out).
fn service_log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text
        .lines()
        .skip(usize::from(start > 0)) // a partial first line
        .filter(|l| !l.starts_with("[steward-agent ") && !l.trim().is_empty())
        .collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    lines.drain(..from);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn site(dir: &Path, ports: Vec<u16>) -> ServiceSite {
        ServiceSite {
            bind: "127.0.0.1".parse().unwrap(),
            listen_ports: ports,
            log: dir.join("service.log"),
        }
    }

    #[test]
    fn a_held_port_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::fs::write(
            dir.path().join("service.log"),
            "[steward-agent x] starting\nERROR cannot listen on 127.0.0.1: in use\n",
        )
        .unwrap();
        let failure = diagnose(&site(dir.path(), vec![1, port]), 98);
        assert_eq!(failure.reason, FailureReason::PortInUse);
        assert_eq!(failure.port, Some(port));
        assert_eq!(failure.holder_pid, Some(std::process::id()));
        assert!(
            failure.message.contains(&format!("port {port}")),
            "{failure:?}"
        );
        assert_eq!(failure.log_tail, "ERROR cannot listen on 127.0.0.1: in use");
    }

    #[test]
    fn other_exits_carry_the_code_and_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log: String = (1..=8).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.path().join("service.log"), log).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let free = listener.local_addr().unwrap().port();
        drop(listener);
        let failure = diagnose(&site(dir.path(), vec![free]), 3);
        assert_eq!(failure.reason, FailureReason::Exited);
        assert_eq!(failure.exit_code, Some(3));
        assert_eq!(failure.message, "exited with code 3: line 8");
        assert_eq!(failure.log_tail.lines().count(), TAIL_LINES);
        // The lab service's own code for a port in use still says so.
        let failure = diagnose(&site(dir.path(), vec![free]), EXIT_PORT_IN_USE);
        assert_eq!(failure.reason, FailureReason::PortInUse);
        assert_eq!(failure.port, None);
    }
}
