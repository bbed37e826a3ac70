//! The repository's example deployment, and running a command-line program under test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The repository's example deployment (`desired-state/`), which the lab runs and many
/// tests start from (copy it with [`crate::copy_dir`] before changing anything).
pub fn bundled_desired_state() -> PathBuf {
    workspace_root().join("desired-state")
}

/// Run `program` with `args` and the extra environment `env`; its output.
pub fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Output bytes as text (invalid UTF-8 replaced), for assertions and messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
