//! The backup passphrase and how hard scrypt works on it.

use std::fmt;
use std::io::Read;
use std::path::Path;

use age::secrecy::{ExposeSecret, SecretString};

use crate::BackupError;

/// The environment variable `steward backup` and `GET /api/v1/backup` read.
pub const PASSPHRASE_ENV: &str = "STEWARD_BACKUP_PASSPHRASE";

/// A passphrase file is one line; anything bigger is the wrong file.
const MAX_PASSPHRASE_FILE: u64 = 4096;

/// A non-empty passphrase. Its `Debug` never shows it, and it is wiped on drop.
#[derive(Clone)]
pub struct Passphrase(SecretString);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Passphrase {
    /// Refuses an empty passphrase: an archive anyone can open is not a backup of a CA key.
    pub fn new(passphrase: String) -> Result<Self, BackupError> {
        if passphrase.is_empty() {
            return Err(BackupError::EmptyPassphrase);
        }
        Ok(Self(SecretString::from(passphrase)))
    }

    /// The first line of `path` (a trailing `\n` or `\r\n` is not part of it, as an
    /// editor or `echo` adds one).
    pub fn from_file(path: &Path) -> Result<Self, BackupError> {
        let file = std::fs::File::open(path).map_err(|e| BackupError::read(path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_PASSPHRASE_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| BackupError::read(path, e))?;
        if bytes.len() as u64 > MAX_PASSPHRASE_FILE {
            return Err(BackupError::PassphraseFileTooLarge {
                path: path.to_owned(),
                limit: MAX_PASSPHRASE_FILE,
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            BackupError::read(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
            )
        })?;
        let line = text
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&text);
        Self::new(line.to_owned())
    }

    /// `--passphrase-file` when given, else `STEWARD_BACKUP_PASSPHRASE`; no default.
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Self, BackupError> {
        match file {
            Some(path) => Self::from_file(path),
            None => Self::from_env(),
        }
    }

    /// `STEWARD_BACKUP_PASSPHRASE`: unset is [`BackupError::NoPassphrase`].
    pub fn from_env() -> Result<Self, BackupError> {
        match std::env::var(PASSPHRASE_ENV) {
            Ok(value) => Self::new(value),
            Err(_) => Err(BackupError::NoPassphrase),
        }
    }

    pub(crate) fn secret(&self) -> SecretString {
        SecretString::from(self.0.expose_secret().to_owned())
    }
}

/// How much work scrypt does on the passphrase when an archive is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kdf {
    /// age's own calibration: about one second on this machine, which is the point (every
    /// guess at the passphrase costs an attacker as much).
    #[default]
    Calibrated,
    /// `N = 2^log_n`: for tests and benchmarks that measure everything but the KDF.
    WorkFactor(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_passphrase_is_refused() {
        assert!(matches!(
            Passphrase::new(String::new()),
            Err(BackupError::EmptyPassphrase)
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Passphrase::from_file(&path),
            Err(BackupError::EmptyPassphrase)
        ));
    }

    #[test]
    fn file_passphrase_drops_one_line_ending_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, "correct horse \r\n").unwrap();
        let p = Passphrase::from_file(&path).unwrap();
        assert_eq!(p.secret().expose_secret(), "correct horse ");
        std::fs::write(&path, vec![b'x'; 5000]).unwrap();
        assert!(matches!(
            Passphrase::from_file(&path),
            Err(BackupError::PassphraseFileTooLarge { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_passphrase() {
        let p = Passphrase::new("hunter2-secret".to_owned()).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
