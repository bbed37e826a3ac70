//! The `steward` binary: one entry point for the validator, the planner, the daemon, the
//! agent and the lab services. Each subcommand lives in its own module under `cmd/`; this
//! file only parses arguments and maps results to exit codes.
//!
//! Exit codes of the short-lived commands are documented in their `--help`; every one of
//! them ends with 141 (128 + SIGPIPE, as a shell reports `yes | head -1`) and prints
//! nothing when the reader of its output goes away (`steward status | head -1`).

mod api;
mod cmd;
mod dashboard;
mod embedded;
mod ha;
mod heap;
mod lab;
mod logging;
mod metrics;
mod open_files;
mod signals;

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
    /// Log format of long-running commands; the lab's agents and services inherit it.
    #[arg(
        long,
        global = true,
        value_enum,
        env = logging::LOG_FORMAT_ENV,
        default_value_t = logging::LogFormat::Human
    )]
    log_format: logging::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a desired-state directory and print every problem as FILE:LINE:COL.
    Validate(cmd::validate::Args),
    /// Show the ordered actions that would bring the fleet to the desired state.
    Plan(cmd::plan::Args),
    /// Run the daemon: watch the desired state and drive the fleet toward it.
    Run(cmd::run::Args),
    /// Print the status of a running daemon; exit 0 healthy, 3 degraded, 1 unreachable.
    Status(cmd::status::Args),
    /// Print the JSON Schema of desired-state files (for editors and CI).
    Schema,
    /// The steward certificate authority: init, export, issue-agent.
    Ca(cmd::ca::Args),
    /// The Installation's SQL Server database: `script` prints the provisioning T-SQL.
    Db(cmd::db::Args),
    /// Run the agent on an application server (HTTPS with mutual TLS).
    Agent(cmd::agent::Args),
    /// Run one lab service (started by a lab agent's process driver).
    LabService(cmd::lab_service::LabServiceCli),
    /// Act on a running lab: `steward lab kill SERVER KIND`.
    Lab(cmd::lab::Args),
    /// Mail notifications: `steward notify test [DIR]` sends a test message.
    Notify(cmd::notify::Args),
    /// Rolling upgrades: `steward upgrade resume` resumes a halted one.
    Upgrade(cmd::upgrade::Args),
    /// Write an encrypted archive of the daemon's state (CA, issued certificates...).
    Backup(cmd::backup::Args),
    /// Verify a backup whole, then restore it into a state directory.
    Restore(cmd::restore::Args),
    /// A simulated fleet (`steward sim --servers N`), or its desired state (`generate`).
    Sim(cmd::sim::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Child processes (the lab's agents, and their lab services) log the same way; set
    // while this process is still single-threaded.
    logging::pass_to_children(cli.log_format);
    if let Command::Run(args) = &cli.command {
        if args.lab() {
            lab::directory::provide_password();
        }
    }
    use cmd::console::exit_code;
    let code = match cli.command {
        Command::Validate(args) => exit_code("validate", cmd::validate::run(&args), 2),
        Command::Plan(args) => exit_code("plan", cmd::plan::run(&args), 1),
        Command::Schema => exit_code("schema", cmd::schema::run(), 1),
        Command::Ca(args) => exit_code("ca", cmd::ca::run(&args), 1),
        Command::Db(args) => exit_code("db", cmd::db::run(&args), 2),
        Command::Run(args) => async_main(cli.log_format, cmd::run::run(args)),
        Command::Status(args) => async_main(cli.log_format, async {
            exit_code(
                "status",
                cmd::status::run(args).await,
                cmd::status::UNREACHABLE,
            )
        }),
        Command::Agent(args) => async_main(cli.log_format, cmd::agent::run(args)),
        Command::LabService(args) => async_main(cli.log_format, cmd::lab_service::run(args)),
        Command::Lab(args) => cmd::lab::run(&args),
        Command::Notify(args) => async_main(cli.log_format, async {
            exit_code("notify", cmd::notify::run(args).await, 2)
        }),
        Command::Upgrade(args) => async_main(cli.log_format, async {
            exit_code("upgrade", cmd::upgrade::run(args).await, 1)
        }),
        Command::Backup(args) => exit_code("backup", cmd::backup::run(&args), 1),
        Command::Restore(args) => exit_code("restore", cmd::restore::run(&args), 1),
        Command::Sim(args) => async_main(cli.log_format, cmd::sim::run(args)),
    };
    ExitCode::from(code)
}

/// Long-running commands: logging, then a multi-threaded runtime.
fn async_main(
    log_format: logging::LogFormat,
    command: impl std::future::Future<Output = u8>,
) -> u8 {
    logging::init(log_format);
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(command),
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reconcile_token_never_shows_in_debug() {
        let cli =
            Cli::try_parse_from(["steward", "run", "--reconcile-token", "Sup3rS3cret"]).unwrap();
        let debug = format!("{cli:?}");
        assert!(!debug.contains("Sup3rS3cret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}
