use std::path::PathBuf;

/// Everything that can go wrong while writing or restoring a backup.
///
/// No variant carries the passphrase or any file's contents: only paths, counts and
/// which check failed. The restore errors are distinct on purpose: an operator must be
/// able to tell "wrong passphrase" from "the file was damaged in transit".
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "the backup passphrase is empty; set STEWARD_BACKUP_PASSPHRASE or use --passphrase-file"
    )]
    EmptyPassphrase,
    #[error("no backup passphrase: set STEWARD_BACKUP_PASSPHRASE or use --passphrase-file (there is no default)")]
    NoPassphrase,
    #[error("{} is over {limit} bytes: not a passphrase file", path.display())]
    PassphraseFileTooLarge { path: PathBuf, limit: u64 },
    #[error("wrong passphrase (or the archive's key stanza is damaged): nothing was restored")]
    WrongPassphrase,
    #[error("not a steward backup: the file is not an age-encrypted archive")]
    NotAnArchive,
    #[error("not a steward backup: it is encrypted to age recipients, not to a passphrase")]
    NotPassphraseEncrypted,
    #[error("the archive's header is damaged (altered bytes or cut short): nothing was restored")]
    HeaderDamaged,
    #[error(
        "the archive is truncated (it ends before its last encrypted chunk): nothing was restored"
    )]
    Truncated,
    #[error("the archive's contents fail authentication (altered bytes, or cut short inside a chunk): nothing was restored")]
    BodyDamaged,
    #[error("the archive needs scrypt work factor 2^{required}, over the limit 2^{limit}: refusing it rather than spend minutes of CPU")]
    ExcessiveWork { required: u8, limit: u8 },
    #[error("the archive is format version {found}; this steward reads up to version {supported}: restore it with a newer steward")]
    NewerFormat { found: u32, supported: u32 },
    #[error("the archive decrypts but is not a steward backup: {reason}")]
    Malformed { reason: &'static str },
    #[error("entry {path} does not match its SHA-256 in the manifest")]
    ChecksumMismatch { path: String },
    #[error("entry {path} is not one of the state files steward backs up")]
    UnknownEntry { path: String },
    #[error("{} exists; refusing to replace the steward CA (every certificate it issued would be orphaned): pass --force to replace it", path.display())]
    CaExists { path: PathBuf },
    #[error("{}: no steward CA there; is --state-dir the daemon's state directory?", path.display())]
    NoState { path: PathBuf },
    #[error("{} is over {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encryption failed: {0}")]
    Encrypt(&'static str),
}

impl BackupError {
    /// A bounded label for metrics and logs (never the error text).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::EmptyPassphrase | Self::NoPassphrase | Self::PassphraseFileTooLarge { .. } => {
                "passphrase"
            }
            Self::WrongPassphrase => "wrong_passphrase",
            Self::NotAnArchive | Self::NotPassphraseEncrypted => "not_an_archive",
            Self::HeaderDamaged => "header_damaged",
            Self::Truncated => "truncated",
            Self::BodyDamaged => "body_damaged",
            Self::ExcessiveWork { .. } => "excessive_work",
            Self::NewerFormat { .. } => "newer_format",
            Self::Malformed { .. } => "malformed",
            Self::ChecksumMismatch { .. } => "checksum_mismatch",
            Self::UnknownEntry { .. } => "unknown_entry",
            Self::CaExists { .. } => "ca_exists",
            Self::NoState { .. } => "no_state",
            Self::TooLarge { .. } | Self::NotAFile { .. } | Self::Read { .. } => "read",
            Self::Write { .. } => "write",
            Self::Encrypt(_) => "encrypt",
        }
    }

    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Write {
            path: path.into(),
            source,
        }
    }
}
