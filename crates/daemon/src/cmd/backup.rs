//! `steward backup --out FILE`: one encrypted archive of the daemon's state directory
//! (the CA and its key, the memo of issued certificates, the lab agents' credentials and
//! records), safe to take while the daemon runs: each file is read once and whole, and
//! the daemon only ever replaces its files by rename.

use std::path::PathBuf;

use steward_backup::{Kdf, Passphrase};

use super::console::{err_line, OutputError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the archive (mode 0600, replaced atomically if it exists).
    #[arg(long)]
    out: PathBuf,
    /// The daemon's state directory.
    #[arg(long, default_value = ".steward")]
    state_dir: PathBuf,
    /// A file whose first line is the passphrase [default: $STEWARD_BACKUP_PASSPHRASE;
    /// there is no default passphrase and no prompt].
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<u8, OutputError> {
    conclude(execute(args), |e| format!("steward backup: {e}"))
}

/// How a backup or a restore ends: its note on stderr and 0, or its failure in the
/// command's words (`failed`) and 1.
pub(super) fn conclude(
    outcome: Result<String, steward_backup::BackupError>,
    failed: impl FnOnce(steward_backup::BackupError) -> String,
) -> Result<u8, OutputError> {
    let (line, code) = match outcome {
        Ok(note) => (note, 0),
        Err(e) => (failed(e), 1),
    };
    err_line(line)?;
    Ok(code)
}

fn execute(args: &Args) -> Result<String, steward_backup::BackupError> {
    let passphrase = Passphrase::from_file_or_env(args.passphrase_file.as_deref())?;
    // A backup without the CA restores nothing a daemon can use: a wrong --state-dir.
    if !args.state_dir.join("ca").join("ca.pem").is_file() {
        return Err(steward_backup::BackupError::NoState {
            path: args.state_dir.clone(),
        });
    }
    let entries = steward_backup::state::collect(&args.state_dir)?;
    let archive = steward_backup::seal(&entries, &passphrase, Kdf::Calibrated)?;
    steward_backup::write_private_file(&args.out, &archive)?;
    let bytes: usize = entries.iter().map(|e| e.contents.len()).sum();
    Ok(format!(
        "wrote {}: {} state files ({bytes} bytes) from {}, encrypted to the passphrase",
        args.out.display(),
        entries.len(),
        args.state_dir.display()
    ))
}
