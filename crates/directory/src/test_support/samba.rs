//! One Samba AD DC per test binary (its ports are fixed): provisioned into a temp
//! directory (~10 s), given our own CA and server certificate (Samba's self-made one has no
//! subjectAltName), started in the foreground in its own process group, stopped on drop.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{DirectoryConfig, Password, Session};

use super::pki::TestCa;
use super::{require_tool, skip};

/// How often a starting peer is asked whether it answers yet.
const POLL: Duration = Duration::from_millis(200);

pub const DOMAIN: &str = "example.eng";
pub const BASE: &str = "DC=example,DC=eng";
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=example,DC=eng";
pub const ADMIN_PASSWORD: &str = "Adm1n-Samba-Pw-42!";
/// The service account steward binds as: a member of Account Operators, which may create
/// groups and change their members, as the install guide's account would.
pub const SERVICE_DN: &str = "CN=svc-steward,CN=Users,DC=example,DC=eng";
pub const SERVICE_PASSWORD: &str = "Svc-Steward-Pw-77!";
pub const CONTAINER: &str = "OU=PatientSecure,DC=example,DC=eng";

pub struct Samba {
    /// The running DC; `None` while stopped.
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    ldapmodify: PathBuf,
    samba: PathBuf,
    conf: PathBuf,
    durable: bool,
}

impl Drop for Samba {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Samba {
    /// Provisions and starts the DC, creates the service account and the container.
    /// `durable: false` turns off fsync of the DC's database (`ldb:nosync`, as Samba's own
    /// test suite does): the DC is thrown away afterwards, and each add then costs a few
    /// ms instead of ~70 ms (a synced transaction per add). Timings of writes that stand
    /// for a production DC need `durable: true`. Provisioning never syncs (the option is
    /// given to `samba-tool` only; the running DC gets its own on the command line):
    /// a provisioning that is interrupted is thrown away anyway, and syncing it took a
    /// minute on a busy disk.
    /// `None` when samba is missing (or we are not root) and not under CI.
    pub async fn start(durable: bool) -> Option<Self> {
        let samba = require_tool("samba", "samba-ad-dc")?;
        let samba_tool = require_tool("samba-tool", "samba-ad-dc")?;
        let ldapmodify = require_tool("ldapmodify", "ldap-utils")?;
        if !rustix::process::getuid().is_root() {
            skip("the Samba AD DC needs root (ports 389/636 and its database permissions)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let ca = TestCa::new(&path, "samba");
        let cert = ca.server(
            &path,
            "dc1",
            &["dc1.example.eng", "localhost"],
            &["127.0.0.1"],
        );
        let target = path.join("dc");
        let conf = target.join("etc/smb.conf");
        let started = Instant::now();
        let options = [
            "interfaces=lo".to_string(),
            "bind interfaces only=yes".to_string(),
            "server services=ldap".to_string(),
            "tls enabled=yes".to_string(),
            format!("tls certfile={}", cert.cert.display()),
            format!("tls keyfile={}", cert.key.display()),
            format!("tls cafile={}", ca.cert_pem.display()),
            format!("log file={}/samba.log", path.display()),
            // The default, /run/samba, would make two DCs on one machine refuse each other
            // even in separate network namespaces.
            format!("pid directory={}", path.display()),
        ];
        let nosync = |on: bool| format!("ldb:nosync={on}");
        let mut provision = Command::new(&samba_tool);
        provision.args([
            "domain",
            "provision",
            "--realm=EXAMPLE.ENG",
            "--domain=EXAMPLE",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--use-rfc2307",
            "--host-name=dc1",
        ]);
        provision.arg(format!("--adminpass={ADMIN_PASSWORD}"));
        provision.arg(format!("--targetdir={}", target.display()));
        for option in options.iter().chain([&nosync(true)]) {
            provision.arg(format!("--option={option}"));
        }
        run(&mut provision, &path.join("provision.log"));
        run(
            Command::new(&samba_tool)
                .args(["user", "add", "svc-steward", SERVICE_PASSWORD, "-s"])
                .arg(&conf),
            &path.join("user-add.log"),
        );
        run(
            Command::new(&samba_tool)
                .args([
                    "group",
                    "addmembers",
                    "Account Operators",
                    "svc-steward",
                    "-s",
                ])
                .arg(&conf),
            &path.join("addmembers.log"),
        );
        eprintln!(
            "samba: provisioned in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let mut samba = Self {
            child: None,
            ca: ca.cert_pem.clone(),
            dir,
            ldapmodify,
            samba,
            conf,
            durable,
        };
        samba.spawn();
        samba.wait_ready().await;
        eprintln!(
            "samba: answering LDAPS {:.1} s after start of provisioning",
            started.elapsed().as_secs_f64()
        );
        samba.ldif(&format!(
            "dn: {CONTAINER}\nobjectClass: organizationalUnit\nou: PatientSecure\n"
        ));
        Some(samba)
    }

    /// Starts the DC's process on the provisioned database (its log appended to
    /// `samba.out`).
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("samba.out"))
            .expect("samba.out");
        let child = Command::new(&self.samba)
            .args(["-i", "-s"])
            .arg(&self.conf)
            .arg(format!("--option=ldb:nosync={}", !self.durable))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start samba");
        self.child = Some(child);
    }

    /// Stops the DC as a crash or a reboot would take it away: SIGTERM to its process
    /// group (samba forks workers into it), SIGKILL after 10 s. Its database stays.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let _ = child.wait();
    }

    /// Starts a stopped DC again on the same database and waits until it answers LDAPS.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let config = self.admin_config("ldaps://127.0.0.1:636");
        let connect = || async { Session::connect(&config).await.ok() };
        match steward_testkit::within_async(Duration::from_secs(120), POLL, connect).await {
            Some(session) => session.close().await,
            // Once more, to say why.
            None => match Session::connect(&config).await {
                Ok(session) => session.close().await,
                Err(e) => panic!("samba never answered LDAPS within 120 s: {e}"),
            },
        }
    }

    fn config(&self, url: &str, bind_dn: &str, password: &str) -> DirectoryConfig {
        let mut config = DirectoryConfig::new(url, DOMAIN, bind_dn, Password::new(password));
        config.trust = vec![self.ca.clone()];
        config.container = Some(CONTAINER.to_string());
        config
    }

    /// The service account's configuration (what the controller would build).
    pub fn service_config(&self, url: &str) -> DirectoryConfig {
        self.config(url, SERVICE_DN, SERVICE_PASSWORD)
    }

    pub fn admin_config(&self, url: &str) -> DirectoryConfig {
        self.config(url, ADMIN_DN, ADMIN_PASSWORD)
    }

    /// Applies LDIF changes as Administrator with ldapmodify over LDAPS (`-a`: records
    /// without a changetype are adds). Used to arrange what an administrator would do by
    /// hand, behind steward's back.
    pub fn ldif(&self, ldif: &str) {
        let file = self.dir.path().join("change.ldif");
        std::fs::File::create(&file)
            .and_then(|mut f| f.write_all(ldif.as_bytes()))
            .expect("write ldif");
        let output = Command::new(&self.ldapmodify)
            .args([
                "-x",
                "-a",
                "-H",
                "ldaps://127.0.0.1:636",
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
                "-f",
            ])
            .arg(&file)
            .env("LDAPTLS_CACERT", &self.ca)
            .output()
            .expect("run ldapmodify");
        assert!(
            output.status.success(),
            "ldapmodify failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn run(command: &mut Command, log: &Path) {
    let output = command.output().expect("run samba-tool");
    std::fs::write(log, [&output.stdout[..], &output.stderr[..]].concat()).ok();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates `n` contacts and a global security group `name` holding all of them (below
/// the container), as an administrator would with LDIF; returns the group's DN. Contacts,
/// not users: range retrieval does not care, and a contact is the cheapest object AD has.
pub fn big_group(samba: &Samba, name: &str, n: usize) -> String {
    let members: Vec<String> = (0..n)
        .map(|i| format!("CN={name}-m{i:05},CN=Users,{BASE}"))
        .collect();
    let started = Instant::now();
    let ldif: String = members
        .iter()
        .map(|dn| format!("dn: {dn}\nobjectClass: contact\n\n"))
        .collect();
    samba.ldif(&ldif);
    let group = format!("CN={name},{CONTAINER}");
    let mut ldif = format!(
        "dn: {group}\nobjectClass: group\nsAMAccountName: {name}\ngroupType: -2147483646\n"
    );
    for dn in &members {
        ldif.push_str(&format!("member: {dn}\n"));
    }
    samba.ldif(&ldif);
    eprintln!(
        "samba: {n} contacts and a group of them created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    group
}
