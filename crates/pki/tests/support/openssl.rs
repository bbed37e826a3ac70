//! Certificates made at test time by the `openssl` command-line tool (Debian's), so that
//! steward is tested against files a third-party CA and Windows-style tooling produce,
//! not only against its own. Shared by crates/pki/tests and controllers/tests.
//!
//! Without `openssl` on the PATH the tests that need it are skipped with a note, except
//! in CI (`CI` set), where a missing tool is a failure: scripts/test-all.sh installs it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The tool, or `None` (outside CI) when it is not installed.
pub fn openssl(dir: &Path) -> Option<Openssl> {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        steward_testkit::skip(
            "the `openssl` command-line tool is missing (Debian package `openssl`; scripts/test-all.sh installs it)",
        );
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    Some(Openssl {
        dir: dir.to_path_buf(),
    })
}

pub struct Openssl {
    pub dir: PathBuf,
}

/// A CA made by openssl: its certificate, key and the files `openssl ca` keeps.
#[derive(Debug, Clone)]
pub struct Ca {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    config: PathBuf,
}

/// A leaf certificate and its key.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a leaf should look like.
#[derive(Debug, Clone)]
pub struct LeafSpec<'a> {
    pub common_name: &'a str,
    /// subjectAltName DNS names; empty: no subjectAltName extension at all.
    pub dns: &'a [&'a str],
    /// `openssl ca` dates, `YYYYMMDDHHMMSSZ`; `None`: now until a year from now.
    pub start: Option<&'a str>,
    pub end: Option<&'a str>,
    /// `rsa` instead of ECDSA P-256.
    pub rsa: bool,
}

impl<'a> LeafSpec<'a> {
    pub fn new(common_name: &'a str, dns: &'a [&'a str]) -> Self {
        Self {
            common_name,
            dns,
            start: None,
            end: None,
            rsa: false,
        }
    }
}

impl Openssl {
    /// Run openssl; panics with its stderr when it fails.
    pub fn run(&self, args: &[&str]) {
        self.run_env(args, &[]);
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(&self.dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn key_args(rsa: bool) -> Vec<&'static str> {
        if rsa {
            vec!["-newkey", "rsa:2048"]
        } else {
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        }
    }

    /// A self-signed root CA.
    pub fn root_ca(&self, name: &str, common_name: &str) -> Ca {
        let (cert, key) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        let subject = format!("/CN={common_name}/O=Test Corp");
        let mut args = vec!["req", "-x509"];
        args.extend(Self::key_args(false));
        args.extend([
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "3650",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        self.run(&args);
        self.ca_files(name, cert, key)
    }

    /// An intermediate CA signed by `parent`.
    pub fn intermediate_ca(&self, parent: &Ca, name: &str, common_name: &str) -> Ca {
        let ext = self.path(&format!("{name}.ext"));
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .unwrap();
        let (cert, key) = self.sign(parent, name, common_name, false, &ext, None, None);
        self.ca_files(name, cert, key)
    }

    fn ca_files(&self, name: &str, cert: PathBuf, key: PathBuf) -> Ca {
        let db = self.path(&format!("{name}.db"));
        std::fs::create_dir_all(db.join("new")).unwrap();
        std::fs::write(db.join("index.txt"), "").unwrap();
        std::fs::write(db.join("serial"), "1000\n").unwrap();
        let config = self.path(&format!("{name}.cnf"));
        std::fs::write(
            &config,
            format!(
                "[ca]\ndefault_ca = this\n[this]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}/new\nserial = {db}/serial\ndefault_md = sha256\ndefault_days = 365\npolicy = any\nunique_subject = no\ncopy_extensions = none\n[any]\ncommonName = supplied\norganizationName = optional\n",
                db = db.display()
            ),
        )
        .unwrap();
        Ca {
            name: name.to_owned(),
            cert,
            key,
            config,
        }
    }

    /// A key and CSR, signed by `ca` with `openssl ca` (which, unlike `x509 -req` in
    /// OpenSSL 3.0, sets arbitrary validity dates).
    #[allow(clippy::too_many_arguments)]
    fn sign(
        &self,
        ca: &Ca,
        name: &str,
        common_name: &str,
        rsa: bool,
        ext: &Path,
        start: Option<&str>,
        end: Option<&str>,
    ) -> (PathBuf, PathBuf) {
        let (cert, key, csr) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.csr")),
        );
        let subject = format!("/CN={common_name}");
        let mut args = vec!["req", "-new"];
        args.extend(Self::key_args(rsa));
        args.extend([
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
            "-subj",
            &subject,
        ]);
        self.run(&args);
        let mut args = vec![
            "ca",
            "-batch",
            "-notext",
            "-config",
            ca.config.to_str().unwrap(),
            "-cert",
            ca.cert.to_str().unwrap(),
            "-keyfile",
            ca.key.to_str().unwrap(),
            "-in",
            csr.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-extfile",
            ext.to_str().unwrap(),
        ];
        if let Some(start) = start {
            args.extend(["-startdate", start]);
        }
        if let Some(end) = end {
            args.extend(["-enddate", end]);
        }
        self.run(&args);
        (cert, key)
    }

    /// A TLS server certificate issued by `ca`.
    pub fn leaf(&self, ca: &Ca, name: &str, spec: &LeafSpec<'_>) -> Leaf {
        let ext = self.path(&format!("{name}.ext"));
        let mut text = String::from(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        );
        if !spec.dns.is_empty() {
            let sans: Vec<String> = spec.dns.iter().map(|d| format!("DNS:{d}")).collect();
            text.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        std::fs::write(&ext, text).unwrap();
        let (cert, key) = self.sign(
            ca,
            name,
            spec.common_name,
            spec.rsa,
            &ext,
            spec.start,
            spec.end,
        );
        Leaf { cert, key }
    }

    /// Concatenate PEM files (a chain: leaf first).
    pub fn bundle(&self, name: &str, parts: &[&Path]) -> PathBuf {
        let out = self.path(name);
        let text: String = parts
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        std::fs::write(&out, text).unwrap();
        out
    }

    /// `openssl pkcs12 -export` of a leaf, its key and `extra` certificates (chain). The
    /// password goes through the environment, not the command line. `legacy_3des`: the
    /// PBE-SHA1-3DES encryption and SHA-1 MAC older Windows versions write.
    pub fn pfx(
        &self,
        name: &str,
        leaf: &Leaf,
        extra: &[&Path],
        password: &str,
        legacy_3des: bool,
    ) -> PathBuf {
        let out = self.path(name);
        let chain = self.bundle(&format!("{name}.chain.pem"), extra);
        let mut args = vec![
            "pkcs12",
            "-export",
            "-in",
            leaf.cert.to_str().unwrap(),
            "-inkey",
            leaf.key.to_str().unwrap(),
            "-name",
            "server",
            "-out",
            out.to_str().unwrap(),
            "-passout",
            "env:STEWARD_TEST_PFX_PASSWORD",
        ];
        if !extra.is_empty() {
            args.extend(["-certfile", chain.to_str().unwrap()]);
        }
        if legacy_3des {
            args.extend([
                "-keypbe",
                "PBE-SHA1-3DES",
                "-certpbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ]);
        }
        self.run_env(&args, &[("STEWARD_TEST_PFX_PASSWORD", password)]);
        out
    }

    /// The SHA-1 fingerprint as openssl prints it, colons removed: what Windows shows as
    /// the thumbprint.
    pub fn sha1_thumbprint(&self, cert: &Path) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha1", "-in"])
            .arg(cert)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        text.trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_ascii_uppercase()
    }
}
