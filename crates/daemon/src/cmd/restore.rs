//! `steward restore FILE --state-dir DIR [--force]`: decrypt and verify the whole archive
//! (age's AEAD, the format version, every entry's SHA-256) before writing anything; then
//! write each file atomically with the mode it had. An existing CA is replaced only with
//! `--force`.

use std::path::PathBuf;

use steward_backup::Passphrase;

use super::backup::conclude;
use super::console::OutputError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive `steward backup` wrote.
    file: PathBuf,
    /// The state directory to restore into (created if missing).
    #[arg(long)]
    state_dir: PathBuf,
    /// Replace an existing steward CA (its certificates will no longer be trusted).
    #[arg(long)]
    force: bool,
    /// A file whose first line is the passphrase [default: $STEWARD_BACKUP_PASSPHRASE;
    /// there is no default passphrase and no prompt].
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<u8, OutputError> {
    conclude(execute(args), |e| {
        format!(
            "steward restore: {e} ({} is unchanged)",
            args.state_dir.display()
        )
    })
}

fn execute(args: &Args) -> Result<String, steward_backup::BackupError> {
    let passphrase = Passphrase::from_file_or_env(args.passphrase_file.as_deref())?;
    let archive = steward_backup::read_file(&args.file)?;
    let (manifest, restored) =
        steward_backup::restore_archive(&archive, &passphrase, &args.state_dir, args.force)?;
    let created = manifest
        .created
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok(format!(
        "restored {} files ({} bytes) into {} from a backup made {created} by steward {}",
        restored.files,
        restored.bytes,
        args.state_dir.display(),
        manifest.steward_version
    ))
}
