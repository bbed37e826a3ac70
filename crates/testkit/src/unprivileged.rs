//! Tests about unreadable files, which prove nothing when run as root.

use crate::require_tool;

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
