//! The lab daemon of the end-to-end tests (and the lab benchmarks): one real
//! `steward run --lab` per test, on its own loopback addresses, with its own state
//! directory and its own git copy of `desired-state/`.
//!
//! Lab `n` uses `127.0.n.1:9464` for the daemon's API and `127.0.n.11`, `.12`, ... for
//! the lab servers (app1, app2, ...), so tests of one binary run in parallel. Everything is
//! observed from outside: the daemon's HTTP API and log, the agents' mTLS API and logs,
//! and `/proc`. Waits poll with generous deadlines; nothing asserts on speed.
//!
//! On drop the lab SIGTERMs its daemon, waits, and asserts that it exited 0 and left no
//! process behind whose command line names the lab's state directory (agents and lab
//! services do); leftovers are SIGKILLed so one failure does not poison the machine.

mod procs;
mod status;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde_json::Value;
use steward_pki::CertificateAuthority;
use tempfile::TempDir;

use crate::http::{self, Request};
use crate::{bundled_desired_state, copy_dir};
pub use procs::{alive, append_file, open_files_limit, signal, strip_ansi, Proc};
use procs::{describe, kill_all};
pub use status::*;

/// How long any single wait may take before the test fails. Generous on purpose.
pub const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pass `--desired-state` and `--state-dir` relative to the daemon's working
    /// directory (the lab's root) instead of absolute.
    pub relative_paths: bool,
    pub resync: &'static str,
    /// Extra environment variables of the daemon.
    pub env: Vec<(&'static str, &'static str)>,
    /// Start the daemon with this open-file limit, (soft, hard) (its lab agents and
    /// services inherit it), like `prlimit --nofile=SOFT:HARD`.
    pub open_files: Option<(u64, u64)>,
    /// More arguments of `steward run` (e.g. `--ha ...`).
    pub extra_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            relative_paths: false,
            resync: "2s",
            env: Vec::new(),
            open_files: None,
            extra_args: Vec::new(),
        }
    }
}

/// One `steward run --lab` with its own loopback addresses, state directory and git copy
/// of the example deployment.
pub struct LabDaemon {
    pub n: u8,
    /// Kept (not deleted) when the test fails or STEWARD_E2E_KEEP is set.
    root: Option<TempDir>,
    root_path: PathBuf,
    /// The git working copy the daemon watches.
    pub desired: PathBuf,
    /// The daemon's `--state-dir`.
    pub state: PathBuf,
    pub api: SocketAddr,
    /// The `steward` binary.
    program: PathBuf,
    options: Options,
    child: Option<Child>,
    /// Where the current daemon run's log starts in `daemon.log`.
    log_start: u64,
    client_tls: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
}

impl LabDaemon {
    /// A lab with its desired state committed to git, daemon not started yet.
    pub fn new(program: &Path, n: u8, options: Options) -> Self {
        assert!((2..=254).contains(&n), "lab number {n} out of range");
        let root = tempfile::Builder::new()
            .prefix(&format!("steward-e2e-{n}-"))
            .tempdir()
            .expect("tempdir");
        let desired = root.path().join("desired-state");
        copy_dir(&bundled_desired_state(), &desired);
        // Each lab's database on an address of its own (the lab starts a TDS server there):
        // labs running side by side must not find each other's.
        let installation = desired.join("installation.yaml");
        let text = fs::read_to_string(&installation).expect("installation.yaml");
        let text = text.replacen("server: 127.0.0.1 ", &format!("server: 127.0.{n}.10 "), 1);
        fs::write(&installation, text).expect("installation.yaml");
        let state = root.path().join("state");
        let lab = Self {
            n,
            desired,
            state,
            api: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, n, 1)), 9464),
            program: program.to_owned(),
            options,
            root_path: root.path().to_path_buf(),
            root: Some(root),
            child: None,
            log_start: 0,
            client_tls: std::sync::OnceLock::new(),
        };
        lab.git(&["init", "-q"]);
        lab.commit("the example deployment");
        lab
    }

    /// A lab with its daemon running.
    pub fn start(program: &Path, n: u8) -> Self {
        let mut lab = Self::new(program, n, Options::default());
        lab.spawn();
        lab
    }

    pub fn root(&self) -> &Path {
        self.root_path.as_path()
    }

    fn log_path(&self) -> PathBuf {
        self.root_path.as_path().join("daemon.log")
    }

    /// Start (or start again) the daemon on this lab's state directory.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        // The addresses must be free: another process there would answer in our place
        // (another run of the same test, or someone's lab on the same 127.0.N.x).
        for addr in [
            self.api,
            SocketAddr::new(IpAddr::V4(self.address_of(1)), 7443),
            SocketAddr::new(IpAddr::V4(self.address_of(2)), 7443),
        ] {
            if let Err(e) = std::net::TcpListener::bind(addr) {
                panic!(
                    "{addr} is taken by another process ({e}): lab {} cannot run",
                    self.n
                );
            }
        }
        self.launch();
    }

    /// Start the daemon again after it was SIGKILLed ([`LabDaemon::kill_daemon`]): its agents
    /// may still hold their addresses, which the new daemon has to deal with.
    pub fn respawn_after_crash(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        self.launch();
    }

    /// SIGKILL the daemon (no clean-up of its own) and reap it.
    pub fn kill_daemon(&mut self) {
        let mut child = self.child.take().expect("daemon not running");
        let _ = child.kill();
        let _ = child.wait();
    }

    fn launch(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log");
        self.log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let (desired, state) = if self.options.relative_paths {
            (PathBuf::from("desired-state"), PathBuf::from("state"))
        } else {
            (self.desired.clone(), self.state.clone())
        };
        let mut command = Command::new(&self.program);
        if let Some((soft, hard)) = self.options.open_files {
            use std::os::unix::process::CommandExt;
            let limit = rustix::process::Rlimit {
                current: Some(soft),
                maximum: Some(hard),
            };
            // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent's.
            unsafe {
                command.pre_exec(move || {
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let child = command
            .current_dir(self.root_path.as_path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .envs(self.options.env.iter().copied())
            .arg("run")
            .arg("--lab")
            .arg("--desired-state")
            .arg(&desired)
            .arg("--state-dir")
            .arg(&state)
            .arg("--listen")
            .arg(self.api.to_string())
            .arg("--lab-first-address")
            .arg(self.address_of(1).to_string())
            .arg("--resync")
            .arg(self.options.resync)
            .args(&self.options.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot start steward run --lab");
        self.child = Some(child);
        // Ours must be the daemon that answers: it is still running and its CA exists.
        let started = crate::within(DEADLINE, POLL, || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("wait") {
                return Some(Err(status));
            }
            let answered = self.try_get("/healthz").is_ok_and(|(s, _)| s == 200);
            (answered && self.state.join("ca").join("ca.pem").exists()).then_some(Ok(()))
        });
        match started {
            Some(Ok(())) => {}
            Some(Err(status)) => {
                self.child = None;
                panic!(
                    "steward run --lab exited with {status} before its API answered\n{}",
                    self.log_tail(30)
                );
            }
            None => panic!(
                "the daemon's API did not answer within {DEADLINE:?}\n{}",
                self.log_tail(30)
            ),
        }
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGTERM the daemon and wait for it (SIGKILL after a deadline); its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon not running");
        signal(child.id() as i32, Signal::TERM);
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon did not exit within {STOP_DEADLINE:?} of SIGTERM\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, assert a clean exit (0) and that nothing of this lab keeps running.
    pub fn stop(&mut self) {
        let status = self.terminate();
        assert_eq!(
            status.code(),
            Some(0),
            "steward run --lab exited with {status}\n{}",
            self.log_tail(40)
        );
        let left = self.wait_for_no_processes(Duration::from_secs(10));
        if !left.is_empty() {
            let list = describe(&left);
            kill_all(&left);
            panic!("steward run --lab exited but left processes behind:\n{list}");
        }
    }

    fn wait_for_no_processes(&self, within: Duration) -> Vec<Proc> {
        crate::within(within, POLL, || {
            let left = self.processes();
            left.is_empty().then_some(left)
        })
        .unwrap_or_else(|| self.processes())
    }

    // ----- desired state (git) -----

    pub fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.desired)
            .args([
                "-c",
                "user.name=steward-e2e",
                "-c",
                "user.email=e2e@example.invalid",
            ])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .output()
            .expect("git (the end-to-end tests need git on PATH)");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stage everything and commit.
    pub fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.desired.join(rel)).expect("read desired-state file")
    }

    pub fn write(&self, rel: &str, text: &str) {
        fs::write(self.desired.join(rel), text).expect("write desired-state file");
    }

    /// Replace `from` (which must occur exactly once) by `to` in a desired-state file.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert_eq!(
            text.matches(from).count(),
            1,
            "{rel} should contain {from:?} exactly once:\n{text}"
        );
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// Edit a file and commit the edit.
    pub fn commit_edit(&self, rel: &str, from: &str, to: &str, message: &str) {
        self.edit(rel, from, to);
        self.commit(message);
    }

    /// Commit `mode: monitor` (from `autoCorrect`) and wait until the status shows it in
    /// force: steward then only reports, so what a test breaks stays broken.
    pub fn monitor_only(&self) {
        self.commit_edit(
            "installation.yaml",
            "mode: autoCorrect",
            "mode: monitor",
            "monitor only",
        );
        self.wait_status("monitor mode in force", |s| {
            s["installation"]["mode"] == "monitor"
        });
    }

    /// Commit `mode: autoCorrect` again after [`LabDaemon::monitor_only`] (not waited for:
    /// the test waits for the repair it expects).
    pub fn repairs_on(&self) {
        self.commit_edit(
            "installation.yaml",
            "mode: monitor",
            "mode: autoCorrect",
            "repairs on again",
        );
    }

    /// Watch a copy of another example (`examples/ha`, relative to the workspace) instead
    /// of `desired-state/`, committed; before [`LabDaemon::spawn`]. Its database moves to
    /// this lab's address and its password file into this lab's root, as for the bundled
    /// example.
    pub fn use_example(&self, example: &str) {
        for entry in fs::read_dir(&self.desired).expect("the desired state") {
            let entry = entry.expect("entry");
            if entry.file_name() == ".git" {
                continue;
            }
            if entry.file_type().expect("file type").is_dir() {
                fs::remove_dir_all(entry.path()).expect("remove a directory");
            } else {
                fs::remove_file(entry.path()).expect("remove a file");
            }
        }
        copy_dir(&crate::workspace_root().join(example), &self.desired);
        let installation = self.desired.join("installation.yaml");
        let text = fs::read_to_string(&installation).expect("installation.yaml");
        let text = text
            .replacen(
                "server: 127.0.0.1\n",
                &format!("server: 127.0.{}.10\n", self.n),
                1,
            )
            .replacen(
                "passwordRef: file:../../.steward/",
                "passwordRef: file:../.steward/",
                1,
            );
        fs::write(&installation, text).expect("installation.yaml");
        self.commit(&format!("the {example} deployment"));
    }

    // ----- the daemon's HTTP API -----

    pub fn try_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let resp = http::get(&self.api.to_string(), path)?;
        Ok((resp.status, resp.text()))
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|e| panic!("GET {path} from the daemon: {e}"))
    }

    pub fn status(&self) -> Value {
        let (code, body) = self.get("/api/v1/status");
        assert_eq!(code, 200, "GET /api/v1/status: {body}");
        serde_json::from_str(&body).expect("status is JSON")
    }

    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "GET /metrics: {body}");
        body
    }

    // ----- waiting -----

    /// Poll `probe` until it gives `Some`, or fail after `within` with the daemon's log.
    pub fn wait_until<T>(
        &self,
        what: &str,
        within: Duration,
        probe: impl FnMut() -> Option<T>,
    ) -> T {
        crate::within(within, POLL, probe).unwrap_or_else(|| {
            let status = self
                .try_get("/api/v1/status")
                .map(|(_, b)| summarize_status(&b))
                .unwrap_or_else(|e| format!("(status unavailable: {e})"));
            panic!(
                "timed out after {within:?} waiting for {what}\n--- status ---\n{status}\n--- daemon log ---\n{}",
                self.log_tail(30)
            )
        })
    }

    /// Poll the status document until `pred` holds; that document.
    pub fn wait_status(&self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        self.wait_until(what, DEADLINE, || {
            let (code, body) = self.try_get("/api/v1/status").ok()?;
            let doc: Value = serde_json::from_str(&body).ok()?;
            (code == 200 && pred(&doc)).then_some(doc)
        })
    }

    /// Wait until the daemon logs `converged in` for `generation` (in its current run)
    /// and the status agrees: that generation applied, valid, and every declared service
    /// installed, running and healthy. The status document.
    pub fn wait_converged(&self, generation: u64) -> Value {
        let needle = format!("generation={generation}");
        self.wait_log(
            &format!("`converged in` for generation {generation}"),
            |l| l.contains("converged in") && l.contains(&needle),
        );
        self.wait_status(
            &format!("generation {generation} applied and healthy"),
            |s| s["generation"] == generation && s["valid"] == true && all_declared_healthy(s),
        )
    }

    // ----- logs -----

    /// The daemon's log of the current run (ANSI escapes removed).
    pub fn log(&self) -> String {
        let raw = fs::read(self.log_path()).unwrap_or_default();
        let start = (self.log_start as usize).min(raw.len());
        strip_ansi(&String::from_utf8_lossy(&raw[start..]))
    }

    /// The daemon's log of every run.
    pub fn log_all(&self) -> String {
        strip_ansi(&fs::read_to_string(self.log_path()).unwrap_or_default())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log_all();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Wait until a line of the current run's log satisfies `pred`; that line.
    pub fn wait_log(&self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        self.wait_until(what, DEADLINE, || {
            self.log().lines().find(|l| pred(l)).map(str::to_owned)
        })
    }

    /// A lab agent's log (every run).
    pub fn agent_log(&self, server: &str) -> String {
        strip_ansi(
            &fs::read_to_string(self.state.join("lab").join(server).join("agent.log"))
                .unwrap_or_default(),
        )
    }

    // ----- the lab servers and their agents -----

    /// The loopback address of the `index`-th server in name order (app1 = 1).
    pub fn address_of(&self, index: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.n, 10 + index)
    }

    /// The address of `appK`.
    pub fn server_address(&self, server: &str) -> Ipv4Addr {
        let index: u8 = server
            .strip_prefix("app")
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| panic!("lab servers are app1, app2, ...: {server}"));
        self.address_of(index)
    }

    pub fn ca_pem(&self) -> String {
        fs::read_to_string(self.state.join("ca").join("ca.pem")).expect("STATE_DIR/ca/ca.pem")
    }

    /// mTLS client configuration with a client certificate issued by the lab's CA.
    pub fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        self.client_tls
            .get_or_init(|| self.issue_client_tls())
            .clone()
    }

    fn issue_client_tls(&self) -> Arc<rustls::ClientConfig> {
        let ca = CertificateAuthority::load(self.state.join("ca")).expect("load the steward CA");
        let issued = ca
            .issue_client("steward-e2e")
            .expect("issue a client certificate");
        let config = steward_pki::mtls_client_config(
            ca.cert_pem(),
            &issued.cert_pem,
            issued.key_pem.expose(),
        )
        .expect("mTLS client config");
        Arc::new(config)
    }

    /// `GET path` from `server`'s agent over mutual TLS.
    pub fn agent_get(&self, server: &str, path: &str) -> std::io::Result<(u16, String)> {
        let tls = self.client_tls();
        let addr = SocketAddr::new(IpAddr::V4(self.server_address(server)), 7443);
        https_get(tls, addr, &addr.ip().to_string(), path)
    }

    /// The agent's `GET /v1/services`, or `None` while it cannot answer (its CA not made
    /// yet, not listening yet, restarting): what a wait polls.
    pub fn try_agent_services(&self, server: &str) -> Option<Vec<Value>> {
        if !self.state.join("ca").join("ca.pem").exists() {
            return None;
        }
        let (code, body) = self.agent_get(server, "/v1/services").ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// The agent's `GET /v1/services` (a failed test if the agent does not answer).
    pub fn agent_services(&self, server: &str) -> Vec<Value> {
        let (code, body) = self
            .agent_get(server, "/v1/services")
            .unwrap_or_else(|e| panic!("GET /v1/services from {server}'s agent: {e}"));
        assert_eq!(code, 200, "GET /v1/services from {server}: {body}");
        serde_json::from_str(&body).expect("agent service list is JSON")
    }

    /// One service from the agent's list.
    pub fn agent_service(&self, server: &str, kind: &str) -> Option<Value> {
        self.agent_services(server)
            .into_iter()
            .find(|s| s["kind"] == kind)
    }

    /// (server, kind) -> pid, for every service the lab's agents list as running.
    pub fn service_pids(&self, servers: &[&str]) -> BTreeMap<(String, String), i64> {
        let mut pids = BTreeMap::new();
        for server in servers {
            for s in self.agent_services(server) {
                if let (Some(kind), Some(pid)) = (s["kind"].as_str(), s["pid"].as_i64()) {
                    pids.insert(((*server).to_owned(), kind.to_owned()), pid);
                }
            }
        }
        pids
    }

    /// Every live process whose command line mentions this lab's state directory.
    pub fn processes(&self) -> Vec<Proc> {
        let needle = self.state.to_string_lossy().into_owned();
        let relative = self.options.relative_paths;
        let root = self.root_path.as_path().to_path_buf();
        let mut found = Vec::new();
        for (pid, args) in crate::processes::command_lines() {
            let mine = args.iter().any(|a| a.contains(&needle))
                || (relative
                    && fs::read_link(format!("/proc/{pid}/cwd"))
                        .is_ok_and(|cwd| cwd.starts_with(&root))
                    && args.first().is_some_and(|a| a.ends_with("steward")));
            if mine && pid != std::process::id() as i32 {
                found.push(Proc { pid, args });
            }
        }
        found.sort_by_key(|p| p.pid);
        found
    }

    /// The lab-service processes of one kind.
    pub fn service_processes(&self, kind: &str) -> Vec<Proc> {
        self.processes()
            .into_iter()
            .filter(|p| p.service_kind() == Some(kind))
            .collect()
    }

    /// The agent process of `server` (found by its --state-dir).
    pub fn agent_process(&self, server: &str) -> Option<Proc> {
        let marker = format!("/lab/{server}/");
        self.processes()
            .into_iter()
            .find(|p| p.is_agent() && p.args.iter().any(|a| a.contains(&marker)))
    }
}

impl Drop for LabDaemon {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let mut problems = Vec::new();
        if self.child.is_some() {
            if panicking {
                // Best effort: stop it, but do not panic while unwinding.
                let mut child = self.child.take().unwrap();
                signal(child.id() as i32, Signal::TERM);
                let deadline = Instant::now() + STOP_DEADLINE;
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            } else {
                let status = self.terminate();
                if status.code() != Some(0) {
                    problems.push(format!(
                        "steward run --lab exited with {status}\n{}",
                        self.log_tail(40)
                    ));
                }
            }
        }
        let left = self.wait_for_no_processes(Duration::from_secs(10));
        if !left.is_empty() {
            problems.push(format!(
                "processes left behind by the lab (now killed):\n{}",
                describe(&left)
            ));
            kill_all(&left);
        }
        let keep =
            panicking || !problems.is_empty() || std::env::var_os("STEWARD_E2E_KEEP").is_some();
        if keep {
            if let Some(dir) = self.root.take() {
                let path = dir.keep();
                eprintln!("lab {} kept for inspection: {}", self.n, path.display());
            }
        }
        if !problems.is_empty() && !panicking {
            panic!("{}", problems.join("\n"));
        }
    }
}

/// `GET path` over TLS with `tls` to `addr`, verifying the server as `server_name`.
pub fn https_get(
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let addr = addr.to_string();
    let resp = Request {
        tls: Some((tls, server_name)),
        ..Request::get(&addr, path)
    }
    .send()?;
    Ok((resp.status, resp.text()))
}
