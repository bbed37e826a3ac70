//! The lab's database: when the desired state declares its SQL Server at a loopback
//! address and nothing listens on that port, the lab starts a real TDS server there
//! (iridium_server, `--memory --no-tls`) and restarts it if it dies. Never a fake: when
//! iridium-server is not installed, the database section says so and how to install it.
//!
//! The installer password is the one the desired state refers to. When that is a `file:`
//! reference to a file that does not exist yet, the lab writes a new random password there
//! (mode 0600, never overwriting) so that the daemon and the server it starts agree.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_model::secret::SecretResolveError;
use steward_model::{SecretRef, Snapshot};
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::supervise::{keep_running, lab_command};

/// The binary `cargo install iridium_server` installs.
const PROGRAM: &str = "iridium-server";
const INSTALL: &str = "cargo install iridium_server --locked --root target/peers";
/// iridium starts in well under a second; this is for a loaded machine.
const LISTEN_WITHIN: Duration = Duration::from_secs(20);

/// The TDS server the lab runs, if any.
#[derive(Debug)]
pub(crate) struct LabDatabase {
    /// The server's log.
    log: PathBuf,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What the lab could not do about the database, for the database section.
pub(crate) type Note = Option<String>;

impl LabDatabase {
    pub(crate) fn new(log: PathBuf) -> Self {
        Self { log, running: None }
    }

    /// Serve the declared database when it is on loopback and nobody serves it; `Some`
    /// says why the lab could not.
    pub(crate) async fn ensure(
        &mut self,
        snapshot: &Snapshot,
        desired_dir: &Path,
        steward: &Path,
    ) -> Note {
        let db = &snapshot.installation.database;
        let Some(ip) = loopback(&db.server) else {
            self.stop().await;
            return None;
        };
        let addr = SocketAddr::new(ip, db.port);
        if self.running.as_ref().is_some_and(|r| r.addr == addr) {
            return None;
        }
        self.stop().await;
        if listening(addr).await {
            tracing::info!(%addr, "lab: a TDS server already listens on the database's address; using it");
            return None;
        }
        let Some(program) = find_program(steward, std::env::var_os("PATH")) else {
            let note = not_installed(addr);
            tracing::warn!("lab: {note}");
            return Some(note);
        };
        let password = match lab_password(&db.password_ref, desired_dir) {
            Ok(p) => p,
            Err(why) => {
                let note = format!("the lab cannot start its TDS server on {addr}: {why}");
                tracing::warn!("lab: {note}");
                return Some(note);
            }
        };
        let server = Server {
            program,
            addr,
            user: db.user.clone(),
            password,
            log: self.log.clone(),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(server, stop.clone()));
        self.running = Some(Running { addr, stop, task });
        let deadline = tokio::time::Instant::now() + LISTEN_WITHIN;
        while !listening(addr).await {
            if tokio::time::Instant::now() > deadline {
                let note = format!("the lab's TDS server did not listen on {addr} within {LISTEN_WITHIN:?}; see {}", self.log.display());
                tracing::warn!("lab: {note}");
                return Some(note);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(%addr, "lab: TDS server (iridium) started for the database");
        None
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }
}

/// The declared server as a loopback address (`localhost` too); `None` for anything else,
/// including `\INSTANCE` names (iridium has no SQL Browser).
fn loopback(server: &str) -> Option<IpAddr> {
    if server.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    server.parse::<IpAddr>().ok().filter(IpAddr::is_loopback)
}

async fn listening(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Next to steward, in a `peers/bin` of a directory above it (`target/peers/bin`, where
/// `scripts/test-all.sh` installs it, for `target/debug/steward` and the tests' copies
/// in `target/tmp/...`), in `./target/peers/bin`, then on `PATH`.
fn find_program(steward: &Path, path: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = steward.parent() {
        candidates.push(dir.join(PROGRAM));
        candidates.extend(
            dir.ancestors()
                .skip(1)
                .take(3)
                .map(|a| a.join("peers/bin").join(PROGRAM)),
        );
    }
    candidates.push(PathBuf::from("target/peers/bin").join(PROGRAM));
    if let Some(path) = path {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(PROGRAM)));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// What the database section says when the lab has no TDS server to start.
fn not_installed(addr: SocketAddr) -> String {
    format!(
        "the lab's TDS server is not installed: nothing listens on {addr} and {PROGRAM} was found neither next to steward, nor in target/peers/bin, nor on PATH; install it with `{INSTALL}` (a few minutes) and restart `steward run --lab`"
    )
}

/// The password the daemon will read from `reference`: the existing secret, or a new one
/// written to a `file:` reference that does not exist yet.
fn lab_password(reference: &SecretRef, desired_dir: &Path) -> Result<String, String> {
    match reference.resolve(desired_dir) {
        Ok(value) => Ok(value.expose().to_owned()),
        Err(SecretResolveError::File(path, std::io::ErrorKind::NotFound)) => {
            let full = desired_dir.join(&path);
            let password = new_password();
            match write_new(&full, &password) {
                Ok(()) => {
                    tracing::info!(file = %full.display(), "lab: wrote a new database password");
                    Ok(password)
                }
                // Another lab on the same files wrote it first: theirs is the password.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => reference
                    .resolve(desired_dir)
                    .map(|v| v.expose().to_owned())
                    .map_err(|e| format!("database.passwordRef: {e}")),
                Err(e) => Err(format!(
                    "database.passwordRef file:{} cannot be created: {e}",
                    path.display()
                )),
            }
        }
        Err(e) => Err(format!("database.passwordRef: {e}")),
    }
}

fn new_password() -> String {
    use rand::Rng as _;
    let bytes: [u8; 18] = rand::rng().random();
    // Letters, digits and a symbol: what SQL Server's password policy asks for.
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("Lab-{hex}!")
}

fn write_new(path: &Path, password: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(password.as_bytes())
}

struct Server {
    program: PathBuf,
    addr: SocketAddr,
    user: String,
    password: String,
    log: PathBuf,
}

impl Server {
    fn spawn(&self) -> std::io::Result<Child> {
        let mut command = lab_command(&self.program, &self.log)?;
        command
            .arg("--host")
            .arg(self.addr.ip().to_string())
            .arg("--port")
            .arg(self.addr.port().to_string())
            .arg("--user")
            .arg(&self.user)
            // iridium takes its password only as an argument: a lab-only password on
            // loopback, never logged by steward.
            .arg("--password")
            .arg(&self.password)
            .arg("--memory")
            // iridium's TLS breaks after the handshake with tiberius 0.13
            // (InvalidContentType), so the lab serves plain TDS (`encrypt: false`).
            .arg("--no-tls");
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's. A daemon
        // that dies without cleaning up must not leave a server holding the address.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        command.spawn()
    }
}

/// Keep the server running until `stop`, restarted like a lab agent when it dies.
async fn supervise(server: Server, stop: CancellationToken) {
    let what = format!("the lab's TDS server on {}", server.addr);
    keep_running(&what, &stop, || life(&server, &stop)).await;
}

/// One life of the server: how long it ran, `None` when it did not start.
async fn life(server: &Server, stop: &CancellationToken) -> Option<Duration> {
    let mut child = match server.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(program = %server.program.display(), error = %e, "lab: cannot start the TDS server");
            return None;
        }
    };
    let started = tokio::time::Instant::now();
    tokio::select! {
        status = child.wait() => {
            tracing::warn!(addr = %server.addr, ?status, "lab: the TDS server exited");
        }
        () = stop.cancelled() => {
            let _ = child.kill().await;
        }
    }
    Some(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_are_served_by_the_lab() {
        assert_eq!(loopback("127.0.3.10"), Some("127.0.3.10".parse().unwrap()));
        assert_eq!(loopback("localhost"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(loopback("::1"), Some("::1".parse().unwrap()));
        assert_eq!(loopback("10.0.0.5"), None);
        assert_eq!(loopback("db.example.eng"), None);
        assert_eq!(loopback("127.0.0.1\\PS"), None);
    }

    #[test]
    fn the_server_is_looked_up_beside_steward_then_in_peers_then_on_path() {
        let root = tempfile::tempdir().unwrap();
        let steward = root.path().join("target/tmp/e2e-1/steward");
        let peers = root.path().join("target/peers/bin");
        let on_path = root.path().join("bin");
        for dir in [steward.parent().unwrap(), &peers, &on_path] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let path = Some(on_path.clone().into_os_string());
        assert_eq!(find_program(&steward, path.clone()), None);
        let note = not_installed("127.0.0.1:1433".parse().unwrap());
        assert!(
            note.starts_with("the lab's TDS server is not installed"),
            "{note}"
        );
        assert!(note.contains(INSTALL), "{note}");
        std::fs::write(on_path.join(PROGRAM), "").unwrap();
        assert_eq!(
            find_program(&steward, path.clone()),
            Some(on_path.join(PROGRAM))
        );
        std::fs::write(peers.join(PROGRAM), "").unwrap();
        assert_eq!(find_program(&steward, path), Some(peers.join(PROGRAM)));
    }

    #[test]
    fn a_missing_password_file_is_written_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let reference = SecretRef::parse("file:../state/lab/db-password").unwrap();
        let desired = dir.path().join("desired-state");
        std::fs::create_dir_all(&desired).unwrap();
        let first = lab_password(&reference, &desired).unwrap();
        let again = lab_password(&reference, &desired).unwrap();
        assert_eq!(first, again, "the daemon reads what the lab wrote");
        let file = dir.path().join("state/lab/db-password");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let unset = SecretRef::parse("env:STEWARD_LAB_TEST_UNSET").unwrap();
        let why = lab_password(&unset, &desired).unwrap_err();
        assert!(why.contains("STEWARD_LAB_TEST_UNSET"), "{why}");
    }
}
