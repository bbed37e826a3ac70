//! `steward backup` and `steward restore` as an operator runs them: the passphrase rules,
//! the archive's mode, a round trip, and refusals that leave the state directory as it was.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_steward");
const SECRET: &str = "Tr0ub4dor&3-backup-test";

fn steward(args: &[&str], passphrase: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("STEWARD_BACKUP_PASSPHRASE")
        .stdin(Stdio::null());
    if let Some(p) = passphrase {
        cmd.env("STEWARD_BACKUP_PASSPHRASE", p);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(SECRET), "the passphrase was printed: {text}");
    assert!(
        !text.contains("PRIVATE KEY"),
        "key material was printed: {text}"
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A state directory with a CA, an issued certificate and its memo.
fn state_dir(dir: &Path) {
    let ca = steward_pki::CertificateAuthority::init(dir.join("ca")).unwrap();
    let issued = ca.issue_agent("app1.example.eng", &[]).unwrap();
    issued.write_pair(&dir.join("lab/app1"), "agent").unwrap();
    std::fs::write(
        dir.join("issued-certificates.json"),
        format!(
            r#"{{"app1":{{"thumbprint":"{}","sans":["app1.example.eng"]}}}}"#,
            issued.sha1_thumbprint
        ),
    )
    .unwrap();
}

fn tree(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(here) = stack.pop() {
        for entry in std::fs::read_dir(&here).into_iter().flatten().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if meta.is_dir() {
                stack.push(path);
                out.push((rel, meta.permissions().mode() & 0o777, Vec::new()));
            } else {
                let mode = meta.permissions().mode() & 0o777;
                out.push((rel, mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn backup_needs_a_non_empty_passphrase_and_never_prompts() {
    let dir = tempfile::tempdir().unwrap();
    state_dir(&dir.path().join("state"));
    let archive = dir.path().join("b.age");
    let state = dir.path().join("state");
    let args = [
        "backup",
        "--out",
        archive.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let out = steward(&args, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("STEWARD_BACKUP_PASSPHRASE"),
        "{}",
        stderr(&out)
    );
    let out = steward(&args, Some(""));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
    assert!(!archive.exists());
    // A directory that is not a state directory is named, not backed up empty.
    let out = steward(
        &[
            "backup",
            "--out",
            archive.to_str().unwrap(),
            "--state-dir",
            "/nonexistent",
        ],
        Some(SECRET),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no steward CA"), "{}", stderr(&out));
}

#[test]
fn backup_then_restore_round_trips_and_refusals_leave_the_directory_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    state_dir(&state);
    let archive = dir.path().join("b.age");
    let pass_file = dir.path().join("passphrase");
    std::fs::write(&pass_file, format!("{SECRET}\n")).unwrap();
    let out = steward(
        &[
            "backup",
            "--out",
            archive.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--passphrase-file",
            pass_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));

    let target = dir.path().join("restored");
    let restore = |file: &Path, force: bool, pass: &str| {
        let mut args = vec![
            "restore",
            file.to_str().unwrap(),
            "--state-dir",
            target.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        steward(&args, Some(pass))
    };
    // Wrong passphrase and an altered byte: refused, nothing created.
    let out = restore(&archive, false, "not the passphrase");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    let altered = dir.path().join("altered.age");
    let mut bad = bytes.clone();
    let last = bad.len() - 5;
    bad[last] ^= 1;
    std::fs::write(&altered, &bad).unwrap();
    let out = restore(&altered, false, SECRET);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("fail authentication"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists());

    let out = restore(&archive, false, SECRET);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("restored 5 files"),
        "{}",
        stderr(&out)
    );
    let files = |d: &Path| -> Vec<_> {
        tree(d)
            .into_iter()
            .filter(|(_, _, c)| !c.is_empty())
            .collect()
    };
    assert_eq!(files(&target), files(&state));

    // Again: the CA exists now, so without --force nothing changes.
    let before = tree(&target);
    let out = restore(&archive, false, SECRET);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(tree(&target), before);
    let out = restore(&archive, true, SECRET);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
