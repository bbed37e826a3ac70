//! `steward plan [DIR] [--json]`: exit 0 no changes, 2 changes pending, 1 error (like
//! `terraform plan -detailed-exitcode`).

use std::path::PathBuf;

use steward_model::plan::{plan, Observed};
use steward_model::validate_dir;

use super::console::{err_line, out, out_line, OutputError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The desired-state directory.
    dir: Option<PathBuf>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// Plan against the live fleet as a running daemon observes it, instead of an empty one.
    #[arg(long)]
    live: bool,
    /// The daemon to ask with --live.
    #[arg(long, default_value = super::daemon_client::DEFAULT_URL, requires = "live")]
    url: String,
}

pub fn run(args: &Args) -> Result<u8, OutputError> {
    let dir = super::desired_state_dir(&args.dir);
    let compiled = match validate_dir(&dir) {
        Ok(c) => c,
        Err(e) => {
            err_line(format_args!("steward plan: {e}"))?;
            return Ok(1);
        }
    };
    for d in &compiled.diagnostics {
        err_line(d)?;
    }
    let Some(snapshot) = compiled.snapshot else {
        err_line(format_args!(
            "steward plan: {} is invalid; fix the errors above (nothing planned)",
            dir.display()
        ))?;
        return Ok(1);
    };
    let observed = if args.live {
        match live_observed(&args.url) {
            Ok(o) => o,
            Err(e) => {
                err_line(format_args!("steward plan --live: {e}"))?;
                return Ok(1);
            }
        }
    } else {
        Observed::default()
    };
    let plan = plan(&snapshot, &observed);
    if args.json {
        match serde_json::to_string_pretty(&plan) {
            Ok(s) => out_line(s)?,
            Err(e) => {
                err_line(format_args!("steward plan: {e}"))?;
                return Ok(1);
            }
        }
    } else {
        out(plan.render_text())?;
    }
    Ok(if plan.has_changes() { 2 } else { 0 })
}

/// The fleet as the daemon last observed it (`GET /api/v1/observed`).
fn live_observed(url: &str) -> Result<Observed, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(super::daemon_client::get_json(url, "/api/v1/observed"))
}
