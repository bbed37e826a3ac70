//! Backup -> restore through the public API, and every way an archive can be refused,
//! each leaving the target directory exactly as it was.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};
use steward_backup::{backup, restore_archive, BackupError, Kdf, Passphrase};

/// Cheap scrypt: these tests are about the archive, not the KDF's cost.
const FAST: Kdf = Kdf::WorkFactor(8);
const SECRET: &str = "correct horse battery staple";

fn passphrase(p: &str) -> Passphrase {
    Passphrase::new(p.to_owned()).unwrap()
}

/// Every file under `dir` (links included) with its mode and SHA-256.
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(here) = stack.pop() {
        let Ok(listing) = std::fs::read_dir(&here) else {
            continue;
        };
        for entry in listing {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                out.insert(rel, (mode, "dir".into()));
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(rel, (mode, hex::encode(Sha256::digest(bytes))));
            }
        }
    }
    out
}

struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    archive: Vec<u8>,
    source: std::path::PathBuf,
    /// A target that already holds something (not a CA), to see it untouched.
    target: std::path::PathBuf,
    ca_key: String,
}

fn fixture(servers: usize) -> Fixture {
    let source = tempfile::tempdir().unwrap();
    support::fleet::fleet_state(source.path(), servers);
    let archive = backup(source.path(), &passphrase(SECRET), FAST).unwrap();
    let target = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(target.path().join("desired-state")).unwrap();
    std::fs::write(
        target.path().join("desired-state/app.yaml"),
        "kind: Server\n",
    )
    .unwrap();
    let ca_key = std::fs::read_to_string(source.path().join("ca/ca.key")).unwrap();
    Fixture {
        archive,
        source: source.path().to_owned(),
        target: target.path().to_owned(),
        ca_key,
        _dirs: vec![source, target],
    }
}

/// Restore `archive` into the fixture's target and return the error, checking the
/// target did not change and the error shows no secret.
fn refused(fx: &Fixture, archive: &[u8], passphrase_text: &str) -> BackupError {
    let before = snapshot(&fx.target);
    let err = restore_archive(archive, &passphrase(passphrase_text), &fx.target, false)
        .expect_err("a damaged archive must be refused");
    assert_eq!(snapshot(&fx.target), before, "target changed after: {err}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(SECRET) && !text.contains("WRONG"), "{text}");
        assert!(!text.contains("PRIVATE KEY") && !text.contains(&fx.ca_key[40..80]));
    }
    err
}

/// age: the header ends at the line after "---", then a 16-byte nonce, then chunks of
/// 64 KiB + 16.
fn header_len(archive: &[u8]) -> usize {
    let mac = archive.windows(4).position(|w| w == b"\n---").unwrap() + 1;
    mac + archive[mac..].iter().position(|b| *b == b'\n').unwrap() + 1
}

#[test]
fn round_trip_is_byte_identical_with_modes_kept() {
    let fx = fixture(3);
    let (manifest, restored) =
        restore_archive(&fx.archive, &passphrase(SECRET), &fx.target, false).unwrap();
    assert_eq!(manifest.format_version, steward_backup::FORMAT_VERSION);
    assert_eq!(manifest.steward_version, env!("CARGO_PKG_VERSION"));
    // CA pem + key, memo, per server: server pem + key, agent-state, one install.json.
    assert_eq!(restored.files, 3 + 3 * 4);
    let source = snapshot(&fx.source);
    let target = snapshot(&fx.target);
    for (path, (mode, digest)) in &source {
        if digest == "dir" || path.ends_with("service.log") {
            continue;
        }
        assert_eq!(target.get(path), Some(&(*mode, digest.clone())), "{path}");
    }
    assert_eq!(target["ca/ca.key"].0, 0o600);
    assert_eq!(target["lab/app1/state/tls/server.key"].0, 0o600);
    assert!(!target.contains_key("lab/app0/state/services/PSIS/service.log"));
    assert!(
        target.contains_key("desired-state/app.yaml"),
        "other files are left alone"
    );
    // The restored CA loads and is the same CA.
    let restored = steward_pki::CertificateAuthority::load(fx.target.join("ca")).unwrap();
    let original = steward_pki::CertificateAuthority::load(fx.source.join("ca")).unwrap();
    assert_eq!(restored.cert_pem(), original.cert_pem());
}

#[test]
fn wrong_passphrase_is_named() {
    let fx = fixture(1);
    assert!(matches!(
        refused(&fx, &fx.archive, "WRONG passphrase"),
        BackupError::WrongPassphrase
    ));
}

#[test]
fn every_header_byte_flipped_is_refused() {
    let fx = fixture(1);
    for i in 0..header_len(&fx.archive) {
        let mut bad = fx.archive.clone();
        bad[i] ^= 0x01;
        let err = refused(&fx, &bad, SECRET);
        assert!(
            matches!(
                err,
                BackupError::NotAnArchive
                    | BackupError::HeaderDamaged
                    | BackupError::WrongPassphrase
                    | BackupError::NotPassphraseEncrypted
                    | BackupError::ExcessiveWork { .. }
                    | BackupError::Truncated
            ),
            "byte {i}: {err}"
        );
    }
}

#[test]
fn body_bytes_flipped_are_refused_as_damaged() {
    // Enough servers for several 64 KiB chunks.
    let fx = fixture(160);
    let start = header_len(&fx.archive);
    let len = fx.archive.len();
    assert!(
        len - start > 3 * 65_552,
        "want several chunks, have {len} bytes"
    );
    let mut positions = vec![
        start,
        start + 15,
        start + 16,
        len - 1,
        len - 17,
        (start + len) / 2,
    ];
    positions.extend((1..3).map(|k| start + 16 + k * 65_552));
    positions.extend((1..3).map(|k| start + 16 + k * 65_552 - 1));
    for i in positions {
        let mut bad = fx.archive.clone();
        bad[i] ^= 0x80;
        let err = refused(&fx, &bad, SECRET);
        assert!(matches!(err, BackupError::BodyDamaged), "byte {i}: {err}");
    }
}

#[test]
fn truncations_are_refused() {
    let fx = fixture(160);
    let header = header_len(&fx.archive);
    let len = fx.archive.len();
    // Cut at a chunk boundary, or before the payload's first chunk: age sees the
    // stream end before its last chunk.
    for cut in [
        header,
        header + 16,
        header + 16 + 65_552,
        header + 16 + 2 * 65_552,
    ] {
        let err = refused(&fx, &fx.archive[..cut], SECRET);
        assert!(matches!(err, BackupError::Truncated), "cut at {cut}: {err}");
    }
    // Inside a chunk: the shortened chunk fails authentication.
    for cut in [header + 17, header + 16 + 65_552 + 100, len - 1, len - 17] {
        let err = refused(&fx, &fx.archive[..cut], SECRET);
        assert!(
            matches!(err, BackupError::BodyDamaged),
            "cut at {cut}: {err}"
        );
    }
    // Inside the header.
    for cut in [0, 10, header / 2, header - 1] {
        let err = refused(&fx, &fx.archive[..cut], SECRET);
        assert!(
            matches!(
                err,
                BackupError::NotAnArchive | BackupError::HeaderDamaged | BackupError::Truncated
            ),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn a_newer_format_version_is_named() {
    let fx = fixture(1);
    let manifest = br#"{"formatVersion":2,"created":"2030-01-01T00:00:00Z","stewardVersion":"9.0.0","entries":[],"chunked":true}"#;
    let mut plain = b"steward-backup\n".to_vec();
    plain.extend_from_slice(&(manifest.len() as u32).to_be_bytes());
    plain.extend_from_slice(manifest);
    let mut recipient = age::scrypt::Recipient::new(SECRET.to_owned().into());
    recipient.set_work_factor(8);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .unwrap();
    let mut archive = Vec::new();
    let mut writer = encryptor.wrap_output(&mut archive).unwrap();
    std::io::Write::write_all(&mut writer, &plain).unwrap();
    writer.finish().unwrap();
    let err = refused(&fx, &archive, SECRET);
    assert!(
        matches!(
            err,
            BackupError::NewerFormat {
                found: 2,
                supported: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("newer steward"), "{err}");
}

#[test]
fn an_existing_ca_is_kept_without_force_and_replaced_with_it() {
    let fx = fixture(1);
    let other = steward_pki::CertificateAuthority::init(fx.target.join("ca")).unwrap();
    let err = refused(&fx, &fx.archive, SECRET);
    assert!(matches!(err, BackupError::CaExists { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    let (_, restored) =
        restore_archive(&fx.archive, &passphrase(SECRET), &fx.target, true).unwrap();
    assert!(restored.files > 2);
    let now = std::fs::read_to_string(fx.target.join("ca/ca.pem")).unwrap();
    assert_ne!(now, other.cert_pem());
    assert_eq!(
        now,
        std::fs::read_to_string(fx.source.join("ca/ca.pem")).unwrap()
    );
}

#[test]
fn not_an_archive_at_all() {
    let fx = fixture(1);
    let err = refused(&fx, b"-----BEGIN PRIVATE KEY-----\n", SECRET);
    assert!(matches!(err, BackupError::NotAnArchive), "{err}");
}
