//! Sealing the state into one age file, and opening one with every check done before
//! the caller sees a single entry.

use std::io::{Read, Write};
use std::path::Path;

use age::DecryptError;
use time::OffsetDateTime;

use crate::manifest::{self, Manifest};
use crate::passphrase::{Kdf, Passphrase};
use crate::state::{StateEntry, MAX_TOTAL_BYTES};
use crate::BackupError;

/// The largest archive file restore reads: all state plus the manifest and age's overhead.
pub const MAX_ARCHIVE_BYTES: u64 = MAX_TOTAL_BYTES + (32 << 20);

const AGE_INTRO: &[u8] = b"age-encryption.org/";

/// A decrypted archive whose AEAD, version, manifest and checksums all passed.
#[derive(Debug)]
pub struct VerifiedArchive {
    pub manifest: Manifest,
    pub entries: Vec<StateEntry>,
}

/// Encrypt `entries` (with their manifest) to `passphrase`.
pub fn seal(
    entries: &[StateEntry],
    passphrase: &Passphrase,
    kdf: Kdf,
) -> Result<Vec<u8>, BackupError> {
    let plain = manifest::encode(entries, OffsetDateTime::now_utc());
    let mut recipient = age::scrypt::Recipient::new(passphrase.secret());
    if let Kdf::WorkFactor(log_n) = kdf {
        recipient.set_work_factor(log_n.clamp(1, 30));
    }
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|_| BackupError::Encrypt("no usable recipient"))?;
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 4096 + 256);
    let failed = |_| BackupError::Encrypt("the age stream failed");
    let mut writer = encryptor.wrap_output(&mut out).map_err(failed)?;
    writer.write_all(&plain).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

/// Decrypt and verify `archive` whole. Nothing is returned unless every check passed.
pub fn open(archive: &[u8], passphrase: &Passphrase) -> Result<VerifiedArchive, BackupError> {
    if !archive.starts_with(AGE_INTRO) {
        return Err(BackupError::NotAnArchive);
    }
    let decryptor = age::Decryptor::new_buffered(archive).map_err(header_error)?;
    if !decryptor.is_scrypt() {
        return Err(BackupError::NotPassphraseEncrypted);
    }
    let identity = age::scrypt::Identity::new(passphrase.secret());
    let reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(key_error)?;
    let plain = read_stream(reader)?;
    let (manifest, entries) = manifest::decode(&plain)?;
    Ok(VerifiedArchive { manifest, entries })
}

/// Read an archive file, bounded.
pub fn read_file(path: &Path) -> Result<Vec<u8>, BackupError> {
    let file = std::fs::File::open(path).map_err(|e| BackupError::read(path, e))?;
    let meta = file.metadata().map_err(|e| BackupError::read(path, e))?;
    if !meta.is_file() {
        return Err(BackupError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_ARCHIVE_BYTES) as usize);
    file.take(MAX_ARCHIVE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| BackupError::read(path, e))?;
    if bytes.len() as u64 > MAX_ARCHIVE_BYTES {
        return Err(BackupError::TooLarge {
            path: path.to_owned(),
            limit: MAX_ARCHIVE_BYTES,
        });
    }
    Ok(bytes)
}

fn read_stream(reader: impl Read) -> Result<Vec<u8>, BackupError> {
    let mut plain = Vec::new();
    match reader.take(MAX_ARCHIVE_BYTES + 1).read_to_end(&mut plain) {
        Ok(_) if plain.len() as u64 > MAX_ARCHIVE_BYTES => Err(BackupError::Malformed {
            reason: "larger than any steward state",
        }),
        Ok(_) => Ok(plain),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(BackupError::Truncated),
        Err(_) => Err(BackupError::BodyDamaged),
    }
}

/// Errors while parsing the header (before any key is tried).
fn header_error(e: DecryptError) -> BackupError {
    match e {
        DecryptError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            BackupError::Truncated
        }
        _ => BackupError::HeaderDamaged,
    }
}

/// Errors while unwrapping the file key with the passphrase and checking the header MAC.
fn key_error(e: DecryptError) -> BackupError {
    match e {
        // The scrypt stanza's AEAD fails: the passphrase, or (indistinguishably) the stanza.
        DecryptError::DecryptionFailed | DecryptError::KeyDecryptionFailed => {
            BackupError::WrongPassphrase
        }
        DecryptError::NoMatchingKeys => BackupError::NotPassphraseEncrypted,
        DecryptError::ExcessiveWork { required, target } => BackupError::ExcessiveWork {
            required,
            limit: target.saturating_add(4),
        },
        DecryptError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            BackupError::Truncated
        }
        _ => BackupError::HeaderDamaged,
    }
}
