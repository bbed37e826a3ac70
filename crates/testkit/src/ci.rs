//! "Am I in CI?" and "my peer is missing: do I fail or skip?", answered once.

use std::io::Write;
use std::path::PathBuf;

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
