//! The test kit: one answer, for every test in the workspace, to "am I in CI?" and "my
//! peer is missing: do I fail or skip?".
//!
//! In CI (`CI` set to anything but empty, `0`, `false` or `no`) a missing peer fails the
//! test: a green run must mean every test ran. Elsewhere the test prints
//! `SKIPPED: <reason>` and returns, and the skip is appended to the file named by
//! `STEWARD_SKIPPED_LOG` (the test script sets it) so the closing summary can count skips
//! that libtest, which captures a passing test's output, would otherwise hide.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Whether this run is CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    ci_value(std::env::var("CI").ok().as_deref())
}

fn ci_value(value: Option<&str>) -> bool {
    match value.map(str::trim) {
        None => false,
        Some(v) => !matches!(
            v.to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        ),
    }
}

/// A test cannot run because `reason`: fail in CI, otherwise print and record the skip.
/// The caller returns right after.
pub fn skip(reason: &str) {
    assert!(!in_ci(), "CI is set and {reason}");
    eprintln!("SKIPPED: {reason}");
    if let Some(log) = std::env::var_os("STEWARD_SKIPPED_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            let _ = writeln!(file, "{test}: {}", reason.replace('\n', " "));
        }
    }
}

/// The executable `name` from `PATH`, `/usr/sbin` or `/sbin` (daemons such as slapd live
/// there, off a normal user's `PATH`). Missing: [`skip`] naming the Debian package, `None`.
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    if let Some(found) = find_tool(name) {
        return Some(found);
    }
    skip(&format!(
        "`{name}` is not installed (Debian package `{package}`; scripts/test-all.sh installs it)"
    ));
    None
}

/// The executable `name` from `PATH`, `/usr/sbin` or `/sbin`, if any.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Copy the directory tree `from` into `to` (created), following links to files: how a
/// test gets its own writable copy of a desired-state directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the directory to copy") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// Root reads every file whatever its mode, so a test about unreadable files proves nothing
/// as root. Called first in such a test: as root, it runs this same test again as `nobody`
/// (uid/gid 65534, through util-linux's `setpriv`), asserts that run passed and returns
/// `true` (the caller returns); as anyone else it returns `false` (run the test body).
/// `test` is the test's name as libtest prints it.
pub fn rerun_unprivileged(test: &str) -> bool {
    if !running_as_root() {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // `nobody` must be able to reach the binary: every directory above it searchable.
    let reachable = exe.ancestors().skip(1).all(|dir| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    });
    if !reachable {
        eprintln!(
            "{test}: ran as root only: {} is not reachable by other users",
            exe.display()
        );
        return false;
    }
    let Some(setpriv) = require_tool("setpriv", "util-linux") else {
        return true;
    };
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("TMPDIR", std::env::temp_dir())
        .output()
        .expect("run the test again as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} as nobody: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_means_set_and_not_false() {
        assert!(!ci_value(None));
        for off in ["", "0", "false", "FALSE", "no", " off "] {
            assert!(!ci_value(Some(off)), "{off:?}");
        }
        for on in ["true", "1", "yes", "TRUE", "github"] {
            assert!(ci_value(Some(on)), "{on:?}");
        }
    }

    #[test]
    fn tools_are_found_on_path_and_missing_ones_are_not() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("no-such-tool-steward-testkit").is_none());
    }
}
