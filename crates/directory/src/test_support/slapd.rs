//! OpenLDAP slapd on loopback: a temp directory, a `slapd.conf`, an LDIF seed loaded with
//! slapadd before start, plain (StartTLS) and LDAPS listeners. ~0.2 s to start.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::pki::{ServerCert, TestCa};
use super::{free_port, require_tool, write};

pub const SUFFIX: &str = "dc=example,dc=eng";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=eng";
pub const ADMIN_PASSWORD: &str = "slapd-Secret-Pw-7";

pub struct Slapd {
    child: Child,
    pub ldap_port: u16,
    pub ldaps_port: u16,
    pub ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Slapd {
    /// Freezes the server (SIGSTOP): the kernel still accepts connections and takes in
    /// requests, nothing answers. A directory that hangs.
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal).expect("signal slapd");
    }

    /// A slapd with the certificate from [`standard_cert`] (SANs dc1.example.eng,
    /// localhost, 127.0.0.1) and `seed` (LDIF, after the suffix entry). `None` when slapd
    /// is missing and not under CI.
    pub fn start(seed: &str) -> Option<Self> {
        Self::start_with(
            seed,
            |dir, ca| {
                ca.server(
                    dir,
                    "slapd",
                    &["dc1.example.eng", "localhost"],
                    &["127.0.0.1"],
                )
            },
            "",
        )
    }

    /// Like `start`, with the server certificate chosen by `cert` and extra global
    /// `slapd.conf` lines.
    pub fn start_with(
        seed: &str,
        cert: impl Fn(&Path, &TestCa) -> ServerCert,
        extra_conf: &str,
    ) -> Option<Self> {
        let slapd = require_tool("slapd", "slapd")?;
        let slapadd = require_tool("slapadd", "slapd")?;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path();
        let ca = TestCa::new(path, "slapd");
        let server = cert(path, &ca);
        std::fs::create_dir(path.join("db")).expect("db dir");
        let conf = path.join("slapd.conf");
        write(
            &conf,
            &format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 include /etc/ldap/schema/nis.schema\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 moduleload memberof\n\
                 pidfile {dir}/slapd.pid\n\
                 TLSCertificateFile {cert}\n\
                 TLSCertificateKeyFile {key}\n\
                 sizelimit unlimited\n\
                 {extra_conf}\n\
                 database mdb\n\
                 maxsize 104857600\n\
                 suffix \"{SUFFIX}\"\n\
                 rootdn \"{ADMIN_DN}\"\n\
                 rootpw {ADMIN_PASSWORD}\n\
                 directory {dir}/db\n\
                 overlay memberof\n",
                dir = path.display(),
                cert = server.cert.display(),
                key = server.key.display(),
            ),
        );
        let ldif = path.join("seed.ldif");
        write(
            &ldif,
            &format!("dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n\n{seed}"),
        );
        let status = Command::new(&slapadd)
            .args(["-q", "-f"])
            .arg(&conf)
            .arg("-l")
            .arg(&ldif)
            .status()
            .expect("run slapadd");
        assert!(status.success(), "slapadd failed on the seed");
        let (ldap_port, ldaps_port) = (free_port(), free_port());
        let child = Command::new(slapd)
            .args(["-d", "0", "-f"])
            .arg(&conf)
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start slapd");
        let slapd = Self {
            child,
            ldap_port,
            ldaps_port,
            ca: ca.cert_pem.clone(),
            _dir: dir,
        };
        slapd.wait_listening();
        Some(slapd)
    }

    fn wait_listening(&self) {
        for port in [self.ldap_port, self.ldaps_port] {
            let what = format!("slapd to listen on {port}");
            steward_testkit::eventually(
                &what,
                Duration::from_secs(20),
                Duration::from_millis(20),
                || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            );
        }
    }
}

/// LDIF for `n` groupOfNames `cn=<prefix><i>` (each with one empty member placeholder).
pub fn groups_ldif(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("dn: cn={prefix}{i},{SUFFIX}\nobjectClass: groupOfNames\ncn: {prefix}{i}\nmember:\n\n"))
        .collect()
}

/// LDIF for users `uid=<name>` (inetOrgPerson).
pub fn users_ldif(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "dn: uid={n},{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {n}\ncn: {n}\nsn: {n}\n\n"
            )
        })
        .collect()
}
