//! References to secrets, and the secrets themselves.
//!
//! Desired-state files are committed to git, so they may only *name* a secret
//! (`env:NAME` or `file:PATH`). The resolved value lives in [`SecretValue`], which has no
//! `Display`, redacts itself in `Debug` and `Serialize`, can only be read through
//! [`SecretValue::expose`] (so printing one by accident does not compile or shows nothing),
//! and wipes its memory when dropped (`zeroize`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use zeroize::Zeroizing;

/// Where a secret comes from. Displays as the reference, never as the value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// `env:NAME`: an environment variable of the daemon.
    Env(String),
    /// `file:PATH`: a file, relative to the desired-state directory unless absolute.
    File(PathBuf),
}

/// Why a string is not a secret reference. Deliberately carries no part of the input:
/// users paste passwords where references belong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    #[error("must be a reference `env:NAME` or `file:PATH`; the value given is not shown because it may be a secret")]
    NotAReference,
    #[error("`env:` must be followed by an environment variable name (letters, digits, `_`)")]
    BadEnvName,
    #[error("`file:` must be followed by a path")]
    EmptyPath,
}

impl SecretRef {
    pub fn parse(s: &str) -> Result<Self, SecretRefError> {
        if let Some(name) = s.strip_prefix("env:") {
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            return if valid {
                Ok(Self::Env(name.to_owned()))
            } else {
                Err(SecretRefError::BadEnvName)
            };
        }
        if let Some(path) = s.strip_prefix("file:") {
            return if path.trim().is_empty() {
                Err(SecretRefError::EmptyPath)
            } else {
                Ok(Self::File(PathBuf::from(path)))
            };
        }
        Err(SecretRefError::NotAReference)
    }

    /// Read the secret. `base` is the desired-state directory, against which relative
    /// `file:` paths resolve. Errors name the reference, never the content.
    pub fn resolve(&self, base: &Path) -> Result<SecretValue, SecretResolveError> {
        match self {
            Self::Env(name) => std::env::var(name)
                .map(SecretValue::new)
                .map_err(|_| SecretResolveError::EnvUnset(name.clone())),
            Self::File(path) => {
                let full = if path.is_absolute() {
                    path.clone()
                } else {
                    base.join(path)
                };
                // Bounded and non-blocking: `file:` may name a FIFO or `/dev/zero`.
                let bytes = crate::load::read_regular_file(&full, MAX_SECRET_BYTES)
                    .map_err(|e| SecretResolveError::File(path.clone(), e.kind()))?;
                let mut value = String::from_utf8(bytes).map_err(|e| {
                    zeroize::Zeroize::zeroize(&mut e.into_bytes());
                    SecretResolveError::File(path.clone(), std::io::ErrorKind::InvalidData)
                })?;
                // Trim in place: a trimmed copy would leave the original unwiped.
                let len = value.trim_end_matches(['\r', '\n']).len();
                value.truncate(len);
                Ok(SecretValue::new(value))
            }
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RefVisitor;
        impl Visitor<'_> for RefVisitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret reference `env:NAME` or `file:PATH`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretRef, E> {
                SecretRef::parse(v).map_err(E::custom)
            }
            // Any non-string is rejected without echoing it (serde's default message would).
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(SecretRefError::NotAReference))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(SecretRefError::NotAReference))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
                Err(E::custom(SecretRefError::NotAReference))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
                Err(E::custom(SecretRefError::NotAReference))
            }
        }
        d.deserialize_str(RefVisitor)
    }
}

impl schemars::JsonSchema for SecretRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretRef".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$",
            "description": "A reference to a secret: `env:NAME` (daemon environment variable) or `file:PATH` (relative to the desired-state directory or absolute). Never the secret itself."
        })
    }
}

/// Largest secret file read: passwords and keys, not data.
const MAX_SECRET_BYTES: u64 = 64 << 10;

/// Why a reference could not be resolved. Names the reference only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretResolveError {
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    #[error("secret file {path} cannot be read: {kind}", path = .0.display(), kind = .1)]
    File(PathBuf, std::io::ErrorKind),
}

impl SecretResolveError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::EnvUnset(_) => "secret_env_unset",
            Self::File(..) => "secret_file_unreadable",
        }
    }
}

/// A resolved secret. Never printed: `Debug` and `Serialize` redact it; its bytes are
/// overwritten when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself, for handing to a client library. The name makes every use
    /// easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// For command-line arguments and environment variables (`--reconcile-token`).
impl std::str::FromStr for SecretValue {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s.to_owned()))
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(
            SecretRef::parse("env:PS_DB_PASSWORD"),
            Ok(SecretRef::Env("PS_DB_PASSWORD".into()))
        );
        assert_eq!(
            SecretRef::parse("file:secrets/db"),
            Ok(SecretRef::File("secrets/db".into()))
        );
        assert_eq!(
            SecretRef::parse("hunter2"),
            Err(SecretRefError::NotAReference)
        );
        assert_eq!(SecretRef::parse("env:"), Err(SecretRefError::BadEnvName));
        assert_eq!(SecretRef::parse("env:1X"), Err(SecretRefError::BadEnvName));
        assert_eq!(SecretRef::parse("file: "), Err(SecretRefError::EmptyPath));
    }

    #[test]
    fn errors_never_echo_the_input() {
        let err = SecretRef::parse("Sup3rS3cret!").unwrap_err().to_string();
        assert!(!err.contains("Sup3rS3cret"), "{err}");
    }

    #[test]
    fn values_are_wiped_on_drop() {
        // Compiles only while the value sits in a type that zeroes it when dropped.
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let v: SecretValue = "Sup3rS3cret!".parse().unwrap();
        wiped_on_drop(&v.0);
        assert_eq!(format!("{v:?}"), "SecretValue(<redacted>)");
    }

    #[test]
    fn values_are_redacted() {
        let v = SecretValue::new("Sup3rS3cret!".into());
        assert_eq!(format!("{v:?}"), "SecretValue(<redacted>)");
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"<redacted>\"");
        assert_eq!(v.expose(), "Sup3rS3cret!");
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_that_is_a_fifo_or_huge_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pw");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // On another thread, so that a read that blocks fails the test instead of hanging it.
        let base = dir.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(SecretRef::File("pw".into()).resolve(&base)));
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("reading a FIFO blocked")
            .unwrap_err();
        assert_eq!(
            err,
            SecretResolveError::File("pw".into(), std::io::ErrorKind::InvalidInput)
        );
        std::fs::write(dir.path().join("big"), vec![b'x'; 1 << 20]).unwrap();
        let err = SecretRef::File("big".into())
            .resolve(dir.path())
            .unwrap_err();
        assert_eq!(err.metric_label(), "secret_file_unreadable");
    }

    #[test]
    fn resolves_files_relative_to_base_and_names_missing_env() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let v = SecretRef::File("pw".into()).resolve(dir.path()).unwrap();
        assert_eq!(v.expose(), "s3cret");
        let err = SecretRef::Env("STEWARD_TEST_SURELY_UNSET".into())
            .resolve(dir.path())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable STEWARD_TEST_SURELY_UNSET is not set"
        );
    }
}
