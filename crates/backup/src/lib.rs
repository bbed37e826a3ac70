//! Encrypted backup and verify-before-write restore of the steward daemon's state
//! directory: the CA and its key, the memo of issued certificates, the lab agents'
//! credentials and records (the list is [`state::STATE_FILES`]).
//!
//! An archive is one age file (passphrase recipient: scrypt, ChaCha20-Poly1305 STREAM)
//! whose plaintext is a manifest (format version, creation time, steward version, size,
//! mode and SHA-256 per entry) followed by the entries ([`manifest`]). Restore decrypts
//! and checks everything in memory before it writes a byte.

mod archive;
mod error;
mod files;
pub mod manifest;
mod passphrase;
mod restore;
mod staging;
pub mod state;

pub use archive::{open, read_file, seal, VerifiedArchive, MAX_ARCHIVE_BYTES};
pub use error::BackupError;
pub use files::write_private_file;
pub use manifest::FORMAT_VERSION;
pub use passphrase::{Kdf, Passphrase, PASSPHRASE_ENV};
pub use restore::{restore, Restored};

/// Read the state under `state_dir` and seal it: the bytes of one archive file.
pub fn backup(
    state_dir: &std::path::Path,
    passphrase: &Passphrase,
    kdf: Kdf,
) -> Result<Vec<u8>, BackupError> {
    let entries = state::collect(state_dir)?;
    seal(&entries, passphrase, kdf)
}

/// Open `archive` (every check) and only then write it under `dir`: what `steward
/// restore` does. On any error `dir` is exactly as it was.
pub fn restore_archive(
    archive: &[u8],
    passphrase: &Passphrase,
    dir: &std::path::Path,
    force: bool,
) -> Result<(manifest::Manifest, Restored), BackupError> {
    let verified = open(archive, passphrase)?;
    let restored = restore(&verified, dir, force)?;
    Ok((verified.manifest, restored))
}
