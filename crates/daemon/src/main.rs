//! The `steward` binary: one entry point for the validator, the planner, the daemon, the
//! agent and the lab services. Each subcommand lives in its own module under `cmd/`; this
//! file only parses arguments and maps results to exit codes.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "steward",
    version,
    about = "Reconciling control plane for PatientSecure server deployments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a desired-state directory and print every problem as FILE:LINE:COL.
    Validate(cmd::validate::Args),
    /// Show the ordered actions that would bring the fleet to the desired state.
    Plan(cmd::plan::Args),
    /// Print the JSON Schema of desired-state files (for editors and CI).
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate(args) => cmd::validate::run(&args),
        Command::Plan(args) => cmd::plan::run(&args),
        Command::Schema => cmd::schema::run(),
    };
    ExitCode::from(code)
}
