//! `steward upgrade resume [--url URL]`: resume a halted rolling upgrade through the
//! daemon's `POST /api/v1/upgrade/resume`, with the token in `STEWARD_RECONCILE_TOKEN`
//! (read from the environment only, so it never shows in a process list). Exit 0 resumed,
//! 3 nothing to resume, 1 refused or unreachable.

use super::console::{err_line, out_line, OutputError};
use super::daemon_client::{post_bearer, DEFAULT_URL};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: UpgradeCommand,
}

#[derive(Debug, clap::Subcommand)]
enum UpgradeCommand {
    /// Resume a halted upgrade: the failed server is upgraded again from its start.
    Resume {
        /// The daemon's API.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
    },
}

/// Nothing halted: not an error of the command, but not what was asked either.
pub const NOTHING_TO_RESUME: u8 = 3;

pub async fn run(args: Args) -> Result<u8, OutputError> {
    let UpgradeCommand::Resume { url } = args.command;
    let Some(token) = std::env::var("STEWARD_RECONCILE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    else {
        err_line("steward upgrade resume: set STEWARD_RECONCILE_TOKEN to the daemon's token")?;
        return Ok(1);
    };
    match post_bearer(&url, "/api/v1/upgrade/resume", &token).await {
        Ok((202, body)) => {
            out_line(body)?;
            Ok(0)
        }
        Ok((409, body)) => {
            err_line(format_args!("steward upgrade resume: {body}"))?;
            Ok(NOTHING_TO_RESUME)
        }
        Ok((status, body)) => {
            err_line(format_args!(
                "steward upgrade resume: HTTP {status}: {body}"
            ))?;
            Ok(1)
        }
        Err(e) => {
            err_line(format_args!("steward upgrade resume: {e}"))?;
            Ok(1)
        }
    }
}
