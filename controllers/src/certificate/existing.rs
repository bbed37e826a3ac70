//! Existing (third-party) certificates: read from the desired-state directory (PEM chain +
//! key, or PFX + password), then checked before anything is sent to the server — the key
//! belongs to the certificate, it is valid now, its subjectAltName covers the hostname
//! (and the load balancer's name), and it chains to the installation's CAs. Each failure
//! becomes its own condition reason; nothing half-checked is ever installed.
//!
//! Messages name files and what is wrong with them, never their content, the key or the
//! password.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};
use steward_model::resource::CaMode;
use steward_model::snapshot::CertificateAuthority as CaSettings;
use steward_model::SecretRef;
use steward_pki::{
    CertificateProblem, Expectations, PfxContents, PfxError, PrivateKeyPem, TrustAnchors,
};
use time::OffsetDateTime;

use super::decide::{Material, Unavailable};

/// Where the certificate comes from, with paths as the files write them (for messages).
pub(super) enum Source<'a> {
    Pem {
        cert: &'a Path,
        key: &'a Path,
    },
    Pfx {
        pfx: &'a Path,
        password: &'a SecretRef,
    },
}

/// Read and check the certificate of a server. `names`: the hostname and the load
/// balancer's name; `steward_ca`: the steward CA's certificate (generated mode).
pub(super) fn load(
    dir: &Path,
    source: &Source<'_>,
    names: &[String],
    ca: &CaSettings,
    steward_ca: Option<&str>,
) -> Result<Material, Unavailable> {
    let (cert_pem, key_pem, shown) = match source {
        Source::Pem { cert, key } => {
            let cert_pem = read_text(dir, cert)?;
            let key_pem = PrivateKeyPem::new(read_text(dir, key)?);
            (cert_pem, key_pem, cert.display().to_string())
        }
        Source::Pfx { pfx, password } => {
            let contents = open_pfx(dir, pfx, password)?;
            (
                contents.cert_pem,
                contents.key_pem,
                pfx.display().to_string(),
            )
        }
    };
    let anchors = trust_anchors(dir, ca, steward_ca)?;
    let expect = Expectations {
        names,
        anchors: anchors.as_ref(),
        now: OffsetDateTime::now_utc(),
    };
    let info = steward_pki::check_server_certificate(&cert_pem, key_pem.expose(), &expect)
        .map_err(|problems| refused(&shown, &problems))?;
    Ok(Material {
        cert_pem,
        key_pem,
        thumbprint: info.sha1_thumbprint,
        sans: info.dns_names,
    })
}

fn refused(file: &str, problems: &[CertificateProblem]) -> Unavailable {
    let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Unavailable {
        reason: problems
            .first()
            .map_or("CertificateInvalid", CertificateProblem::reason),
        message: format!("{file}: {}; not installed", listed.join("; ")),
    }
}

fn full_path(dir: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        dir.join(file)
    }
}

fn unreadable(file: &Path, e: &std::io::Error) -> Unavailable {
    Unavailable {
        reason: "FileUnreadable",
        message: format!("{}: cannot be read: {}", file.display(), e.kind()),
    }
}

/// Certificate, key and PFX files are small; a bigger one is not what the file names.
const MAX_CERTIFICATE_FILE: u64 = 1 << 20;

/// Bounded, and refusing a FIFO or device (which would block the reconcile for good).
fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    steward_model::load::read_regular_file(path, MAX_CERTIFICATE_FILE)
}

fn read_text(dir: &Path, file: &Path) -> Result<String, Unavailable> {
    let bytes = read_file(&full_path(dir, file)).map_err(|e| unreadable(file, &e))?;
    // The content is never quoted, valid UTF-8 or not.
    String::from_utf8(bytes).map_err(|_| Unavailable {
        reason: "CertificateInvalid",
        message: format!("{}: not a PEM text file", file.display()),
    })
}

/// The CAs an existing certificate must chain to: `certFile` (existing mode) and `trust`,
/// plus the steward CA in generated mode. `None` when the installation names none (then
/// the chain is not checked: there is nothing to check it against).
fn trust_anchors(
    dir: &Path,
    ca: &CaSettings,
    steward_ca: Option<&str>,
) -> Result<Option<TrustAnchors>, Unavailable> {
    let mut files: Vec<&Path> = Vec::new();
    if ca.mode == CaMode::Existing {
        files.extend(ca.cert_file.as_deref());
    }
    files.extend(ca.trust.iter().map(PathBuf::as_path));
    if files.is_empty() {
        return Ok(None);
    }
    let mut pems = Vec::with_capacity(files.len() + 1);
    for file in &files {
        pems.push(read_text(dir, file)?);
    }
    if ca.mode == CaMode::Generated {
        pems.extend(steward_ca.map(str::to_owned));
    }
    TrustAnchors::from_pem(&pems)
        .map(Some)
        .map_err(|e| Unavailable {
            reason: "CaCertificateInvalid",
            message: format!(
                "the trusted CA files ({}) are unusable: {e}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// A PFX opened before, by file: opening costs two key derivations (~2,000 hash
/// iterations each), and every reconcile polls the file for changes. Reused only while
/// the file's bytes and the password are the same (compared by SHA-256).
struct Opened {
    file_sha256: [u8; 32],
    password_sha256: [u8; 32],
    contents: Arc<PfxContents>,
}

fn opened() -> &'static Mutex<HashMap<PathBuf, Opened>> {
    static OPENED: OnceLock<Mutex<HashMap<PathBuf, Opened>>> = OnceLock::new();
    OPENED.get_or_init(Default::default)
}

fn open_pfx(dir: &Path, file: &Path, password: &SecretRef) -> Result<PfxContents, Unavailable> {
    let path = full_path(dir, file);
    let bytes = read_file(&path).map_err(|e| unreadable(file, &e))?;
    let password = password.resolve(dir).map_err(|e| Unavailable {
        reason: "SecretUnresolved",
        // Names the reference (env:NAME / file:PATH), never the value.
        message: format!("passwordRef of {}: {e}", file.display()),
    })?;
    let file_sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let password_sha256: [u8; 32] = Sha256::digest(password.expose().as_bytes()).into();
    {
        let cache = opened().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache.get(&path) {
            if hit.file_sha256 == file_sha256 && hit.password_sha256 == password_sha256 {
                return Ok(PfxContents::clone(&hit.contents));
            }
        }
    }
    let contents = steward_pki::read_pfx(&bytes, password.expose()).map_err(|e| Unavailable {
        reason: e.reason(),
        message: match e {
            PfxError::WrongPassword => format!(
                "{}: the password from its passwordRef does not open it (integrity check failed)",
                file.display()
            ),
            other => format!("{}: {other}", file.display()),
        },
    })?;
    opened().lock().unwrap_or_else(|p| p.into_inner()).insert(
        path,
        Opened {
            file_sha256,
            password_sha256,
            contents: Arc::new(contents.clone()),
        },
    );
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_named_as_the_certificate_is_unreadable_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("app1.pem"))
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let root = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_text(&root, Path::new("app1.pem")));
        });
        let read = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("reading a FIFO returned instead of blocking");
        let e = read.expect_err("a FIFO is not a certificate");
        assert_eq!(e.reason, "FileUnreadable");
        assert!(
            e.message.starts_with("app1.pem: cannot be read"),
            "{}",
            e.message
        );
    }
}
