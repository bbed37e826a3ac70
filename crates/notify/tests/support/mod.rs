//! Real aiosmtpd servers on loopback (tests/smtpd.py), their certificates, and the
//! Notifications objects that point at them. The end-to-end tests in the top-level
//! `tests/` include this same file (`#[path]`), so there is one harness for aiosmtpd.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use steward_model::notifications::{
    Credentials, NotificationEvent, Notifications, Smtp, SmtpTls, TlsVersion, DEFAULT_BODY,
    DEFAULT_SUBJECT,
};
use steward_model::SecretRef;

pub const PASSWORD: &str = "Tr0ub4dor&3-smtp";
pub const USER: &str = "steward-mailer";

/// The Python that has aiosmtpd, resolved past any shim (so the child's pid is the
/// server's), or a skip.
pub fn python() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys, aiosmtpd; print(sys.executable)"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            Some(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        }
        _ => {
            steward_testkit::skip(
                "python3 with aiosmtpd is not installed (pip install aiosmtpd==1.4.6; scripts/test-all.sh installs it)",
            );
            None
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server certificate for 127.0.0.1 and smtp.test from a fresh CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = steward_pki::CertificateAuthority::init(dir.path().join("ca")).unwrap();
        let issued = ca
            .issue_server(
                &["smtp.test".to_owned()],
                &[Ipv4Addr::LOCALHOST.into()],
                Duration::from_secs(3600),
            )
            .unwrap();
        let (cert, key) = issued.write_pair(dir.path(), "smtp").unwrap();
        Self {
            ca: ca.cert_path(),
            dir,
            cert,
            key,
        }
    }
}

#[derive(Clone, Default)]
pub struct ServerOptions {
    pub tls: Option<(&'static str, PathBuf, PathBuf)>,
    pub max_tls_12: bool,
    pub auth: bool,
    pub idle_timeout: Option<f64>,
    pub busy_at: Vec<u32>,
    pub refuse_rcpt: Vec<String>,
}

/// One aiosmtpd process; stopped when dropped.
pub struct Smtpd {
    python: PathBuf,
    pub port: u16,
    pub out: tempfile::TempDir,
    options: ServerOptions,
    child: Option<Child>,
}

impl Smtpd {
    pub fn start(python: &Path, options: ServerOptions) -> Self {
        let mut s = Self {
            python: python.to_owned(),
            port: free_port(),
            out: tempfile::tempdir().unwrap(),
            options,
            child: None,
        };
        s.restart();
        s
    }

    /// Start again on the same port (after [`Smtpd::stop`]).
    pub fn restart(&mut self) {
        // By the workspace root: the end-to-end tests (another crate) include this module.
        let script = steward_testkit::workspace_root().join("crates/notify/tests/smtpd.py");
        let mut cmd = Command::new(&self.python);
        cmd.arg(script)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--out")
            .arg(self.out.path())
            .env("SMTPD_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let o = &self.options;
        if let Some((mode, cert, key)) = &o.tls {
            cmd.args(["--tls", mode])
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key);
        }
        if o.max_tls_12 {
            cmd.args(["--max-tls", "1.2"]);
        }
        if o.auth {
            cmd.args(["--auth", USER]);
        }
        if let Some(t) = o.idle_timeout {
            cmd.args(["--idle-timeout", &t.to_string()]);
        }
        for n in &o.busy_at {
            cmd.args(["--busy-at", &n.to_string()]);
        }
        for r in &o.refuse_rcpt {
            cmd.args(["--refuse-rcpt", r]);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "smtpd did not start");
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The messages received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                Received {
                    from: v["mail_from"].as_str().unwrap().to_owned(),
                    to: v["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_owned())
                        .collect(),
                    data: v["data"].as_str().unwrap().to_owned(),
                }
            })
            .collect()
    }

    /// Wait (bounded) until `n` messages arrived.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..300 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("expected {n} messages, got {}", self.received().len());
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Received {
    /// A header's value (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .or_else(|| self.data.split_once("\n\n"))
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }
}

/// A Notifications object for a server on 127.0.0.1:`port`; credentials (as files in
/// `secrets`) when `secrets` is given.
pub fn notifications(
    port: u16,
    tls: SmtpTls,
    secrets: Option<&Path>,
    trust: Option<&Path>,
) -> Notifications {
    let credentials = secrets.map(|dir| {
        std::fs::write(dir.join("user"), USER).unwrap();
        std::fs::write(dir.join("password"), PASSWORD).unwrap();
        Credentials {
            username_ref: SecretRef::File(dir.join("user")),
            password_ref: SecretRef::File(dir.join("password")),
        }
    });
    Notifications {
        name: "admins".into(),
        smtp: Smtp {
            server: "127.0.0.1".into(),
            port,
            tls,
            min_tls_version: TlsVersion::Tls12,
            credentials,
            trust: trust.into_iter().map(Path::to_path_buf).collect(),
        },
        from: "steward@example.eng".into(),
        to: vec!["ps-admins@example.eng".into(), "oncall@example.eng".into()],
        events: NotificationEvent::ALL.to_vec(),
        rate_limit: Duration::from_secs(300),
        subject: DEFAULT_SUBJECT.into(),
        body: DEFAULT_BODY.into(),
    }
}
