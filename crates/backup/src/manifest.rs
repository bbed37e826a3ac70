//! The plaintext inside the encryption: a magic line, the manifest, then the entries.
//!
//! ```text
//! "steward-backup\n"            15 bytes
//! manifest length               u32, big-endian
//! manifest                      JSON (Manifest)
//! entry bodies                  concatenated, in manifest order, sizes from the manifest
//! ```
//!
//! age authenticates every byte (and the end); the SHA-256 per entry is checked on top,
//! so an archive assembled wrongly is refused as well as one altered in transit.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::state::{self, StateEntry, MAX_FILE_BYTES};
use crate::BackupError;

const MAGIC: &[u8] = b"steward-backup\n";
/// The version this steward writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const MAX_MANIFEST_BYTES: u32 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub steward_version: String,
    pub entries: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestEntry {
    pub path: String,
    /// Permission bits (e.g. 0o600 = 384 for keys).
    pub mode: u32,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// Only the version, read before anything else so a newer archive is named as such
/// rather than as malformed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionOnly {
    format_version: u32,
}

pub(crate) fn encode(entries: &[StateEntry], created: OffsetDateTime) -> Vec<u8> {
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        created,
        steward_version: env!("CARGO_PKG_VERSION").to_owned(),
        entries: entries
            .iter()
            .map(|e| ManifestEntry {
                path: e.path.clone(),
                mode: e.mode,
                size: e.contents.len() as u64,
                sha256: hex::encode(Sha256::digest(&e.contents)),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&manifest).expect("a manifest always serializes");
    let body: usize = entries.iter().map(|e| e.contents.len()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + json.len() + body);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    for entry in entries {
        out.extend_from_slice(&entry.contents);
    }
    out
}

/// Parse and check the whole plaintext: magic, version, manifest, sizes, checksums and
/// that every path is one of the listed state files.
pub(crate) fn decode(plain: &[u8]) -> Result<(Manifest, Vec<StateEntry>), BackupError> {
    let malformed = |reason| BackupError::Malformed { reason };
    let rest = plain
        .strip_prefix(MAGIC)
        .ok_or(malformed("no steward-backup marker"))?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(malformed("no manifest"))?;
    let len = u32::from_be_bytes(*len);
    if len > MAX_MANIFEST_BYTES || len as usize > rest.len() {
        return Err(malformed("manifest length out of range"));
    }
    let (json, mut body) = rest.split_at(len as usize);
    let version: VersionOnly =
        serde_json::from_slice(json).map_err(|_| malformed("no manifest format version"))?;
    if version.format_version > FORMAT_VERSION {
        return Err(BackupError::NewerFormat {
            found: version.format_version,
            supported: FORMAT_VERSION,
        });
    }
    let manifest: Manifest =
        serde_json::from_slice(json).map_err(|_| malformed("the manifest does not parse"))?;
    let mut entries = Vec::with_capacity(manifest.entries.len());
    let mut seen = std::collections::HashSet::with_capacity(manifest.entries.len());
    for entry in &manifest.entries {
        if state::matching(&entry.path).is_none() {
            return Err(BackupError::UnknownEntry {
                path: escape(&entry.path),
            });
        }
        if entry.size > MAX_FILE_BYTES || entry.size > body.len() as u64 {
            return Err(malformed("an entry's size runs past the archive"));
        }
        if entry.mode & !0o777 != 0 {
            return Err(malformed("an entry's mode is not permission bits"));
        }
        let (contents, rest) = body.split_at(entry.size as usize);
        body = rest;
        if hex::encode(Sha256::digest(contents)) != entry.sha256 {
            return Err(BackupError::ChecksumMismatch {
                path: entry.path.clone(),
            });
        }
        if !seen.insert(entry.path.as_str()) {
            return Err(malformed("an entry appears twice"));
        }
        entries.push(StateEntry {
            path: entry.path.clone(),
            mode: entry.mode,
            contents: contents.to_vec(),
        });
    }
    if !body.is_empty() {
        return Err(malformed("bytes after the last entry"));
    }
    Ok((manifest, entries))
}

/// A path from an archive in an error: bounded and without control characters.
fn escape(path: &str) -> String {
    path.chars()
        .take(128)
        .flat_map(char::escape_default)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<StateEntry> {
        vec![
            StateEntry {
                path: "issued-certificates.json".into(),
                mode: 0o644,
                contents: b"{}".to_vec(),
            },
            StateEntry {
                path: "ca/ca.key".into(),
                mode: 0o600,
                contents: b"key".to_vec(),
            },
        ]
    }

    #[test]
    fn round_trip() {
        let plain = encode(&sample(), OffsetDateTime::UNIX_EPOCH);
        let (manifest, entries) = decode(&plain).unwrap();
        assert_eq!(entries, sample());
        assert_eq!(manifest.format_version, FORMAT_VERSION);
        assert_eq!(manifest.entries[1].mode, 0o600);
    }

    fn with_manifest(edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
        let plain = encode(&sample(), OffsetDateTime::UNIX_EPOCH);
        let len = u32::from_be_bytes(plain[15..19].try_into().unwrap()) as usize;
        let mut manifest: serde_json::Value = serde_json::from_slice(&plain[19..19 + len]).unwrap();
        edit(&mut manifest);
        let json = serde_json::to_vec(&manifest).unwrap();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&plain[19 + len..]);
        out
    }

    #[test]
    fn newer_version_is_named_even_with_fields_this_version_does_not_know() {
        let plain = with_manifest(|m| {
            m["formatVersion"] = 2.into();
            m["compression"] = "zstd".into();
        });
        assert!(matches!(
            decode(&plain),
            Err(BackupError::NewerFormat {
                found: 2,
                supported: 1
            })
        ));
    }

    #[test]
    fn paths_outside_the_list_and_bad_checksums_are_refused() {
        let plain = with_manifest(|m| m["entries"][0]["path"] = "../../etc/passwd".into());
        assert!(matches!(
            decode(&plain),
            Err(BackupError::UnknownEntry { .. })
        ));
        let plain = with_manifest(|m| m["entries"][1]["sha256"] = "00".into());
        assert!(matches!(
            decode(&plain),
            Err(BackupError::ChecksumMismatch { .. })
        ));
        let plain = with_manifest(|m| m["entries"][1]["size"] = 100.into());
        assert!(matches!(decode(&plain), Err(BackupError::Malformed { .. })));
        let plain = with_manifest(|m| m["entries"][1]["mode"] = 0o4755.into());
        assert!(matches!(decode(&plain), Err(BackupError::Malformed { .. })));
    }
}
