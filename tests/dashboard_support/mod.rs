//! Support for the dashboard, alert-rule and Grafana-query tests: the peer tools they need
//! (missing: a failure under CI, a printed skip otherwise), the test kit's lab daemon and
//! HTTP client, and polling.

#![allow(dead_code)]

use std::net::TcpListener;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[allow(unused_imports)] // each test binary uses a part
pub use steward_testkit::http::{get, http, Response as HttpResponse};
pub use steward_testkit::{require_tool, workspace_root};

/// `target/test-artifacts/` (or under `CARGO_TARGET_DIR`), created.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Poll `probe` every 200 ms until it returns `Some`, or panic after `timeout` with the
/// description and the last state `probe` reported through `last`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut(&mut String) -> Option<T>,
) -> T {
    let mut last = String::new();
    let found = steward_testkit::within(timeout, Duration::from_millis(200), || probe(&mut last));
    found.unwrap_or_else(|| {
        panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
    })
}

/// A free TCP port on `ip` (bound, then released).
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Percent-encoding for a query-string value (everything but RFC 3986 unreserved).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// A lab daemon: the test kit's, on the lab number of its API address.

/// The test kit's [`steward_testkit::lab::LabDaemon`] (through `Deref`), started by its
/// API address `127.0.N.1:9464` and first lab address `127.0.N.11`.
pub struct LabDaemon(steward_testkit::lab::LabDaemon);

impl LabDaemon {
    /// Start `steward run --lab` with the API on `api` and lab agents from `lab_first`, on
    /// a copy of `desired-state/` (tests may edit it: [`LabDaemon::desired_state`]).
    pub fn start(api: &str, lab_first: &str) -> Self {
        let n: u8 = api
            .strip_prefix("127.0.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a lab API address is 127.0.N.1:9464: {api}"));
        assert_eq!(
            lab_first,
            format!("127.0.{n}.11"),
            "lab {n}'s first address"
        );
        let program = Path::new(env!("CARGO_BIN_EXE_steward"));
        Self(steward_testkit::lab::LabDaemon::start(program, n))
    }

    /// `IP:PORT` of the daemon's HTTP API.
    pub fn api(&self) -> String {
        self.0.api.to_string()
    }

    /// The directory this daemon watches.
    pub fn desired_state(&self) -> PathBuf {
        self.0.desired.clone()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.0.state.clone()
    }

    pub fn log(&self) -> String {
        self.0.log_all()
    }

    pub fn status(&self) -> Option<Value> {
        let (code, body) = self.0.try_get("/api/v1/status").ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// Wait until every declared service on every monitored server is installed and
    /// healthy; returns that status document.
    pub fn wait_converged(&self, timeout: Duration) -> Value {
        self.0.wait_until("the lab to converge", timeout, || {
            self.status().filter(|doc| converged(doc).is_ok())
        })
    }
}

impl Deref for LabDaemon {
    type Target = steward_testkit::lab::LabDaemon;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Why a status document is not converged yet.
pub fn converged(doc: &Value) -> Result<(), String> {
    if doc["valid"] != Value::Bool(true) {
        return Err("desired state not valid yet".into());
    }
    let servers = doc["servers"].as_array().ok_or("no servers")?;
    if servers.is_empty() {
        return Err("no servers yet".into());
    }
    for server in servers {
        if server["agentUp"] != Value::Bool(true) {
            return Err(format!("agent of {} not up", server["name"]));
        }
        let services = server["services"].as_array().ok_or("no services")?;
        if services.is_empty() {
            return Err(format!("no services on {}", server["name"]));
        }
        for svc in services {
            if svc["installed"] != Value::Bool(true) || svc["healthy"] != Value::Bool(true) {
                return Err(format!(
                    "{} on {}: installed {} healthy {}",
                    svc["kind"], server["name"], svc["installed"], svc["healthy"]
                ));
            }
        }
    }
    Ok(())
}

/// A child process in its own process group, killed (the whole group) on drop.
pub struct Peer {
    pub child: Child,
    pub name: &'static str,
}

impl Peer {
    pub fn spawn(name: &'static str, mut command: Command, log: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(log).expect("peer log");
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { child, name }
    }

    /// Fail at once (with the log) if the peer has exited.
    pub fn assert_running(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}):\n{}",
                self.name,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
    }
}

/// Lab service processes (pid, command line) whose command line contains every needle.
pub fn processes_with(needles: &[&str]) -> Vec<(i32, Vec<String>)> {
    steward_testkit::processes::command_lines()
        .into_iter()
        .filter(|(_, args)| {
            let line = args.join(" ");
            needles.iter().all(|n| line.contains(n))
        })
        .collect()
}

/// The value following `flag` in an argument list.
pub fn arg_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Standard base64 (with or without padding), for WebDriver screenshots.
pub fn base64_decode(text: &str) -> Vec<u8> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_round_trip_examples() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ"), b"hello world");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}
