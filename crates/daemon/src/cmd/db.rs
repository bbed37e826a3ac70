//! `steward db script [DIR]`: the provisioning T-SQL for the Installation's database, for a
//! DBA to run instead of `create: true` (the vendor's "create an empty database by SQL
//! script" path). Names are filled in from the desired state; the service password is the
//! SQLCMD variable `$(ServicePassword)`, never a value. Exit 0, 1 when the desired state is
//! invalid or a name cannot go into a script, 2 on I/O errors.

use std::path::PathBuf;

use steward_database::provision;
use steward_model::validate_dir;

use super::console::{err_line, out, OutputError};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DbCommand {
    /// Print the idempotent T-SQL that creates the database, the service login, its user,
    /// roles and grants (run with `sqlcmd -v ServicePassword=...`).
    Script {
        /// The desired-state directory.
        dir: Option<PathBuf>,
    },
}

pub fn run(args: &Args) -> Result<u8, OutputError> {
    match &args.command {
        DbCommand::Script { dir } => script(&super::desired_state_dir(dir)),
    }
}

fn script(dir: &std::path::Path) -> Result<u8, OutputError> {
    let compiled = match validate_dir(dir) {
        Ok(c) => c,
        Err(e) => {
            err_line(format_args!("steward db script: {e}"))?;
            return Ok(2);
        }
    };
    let Some(snapshot) = compiled.snapshot else {
        for d in compiled.errors() {
            err_line(d)?;
        }
        err_line(format_args!(
            "steward db script: {} is invalid; fix the errors above",
            dir.display()
        ))?;
        return Ok(1);
    };
    let database = &snapshot.installation.database;
    match provision::script(&database.name, &database.service_login.name) {
        Ok(text) => {
            out(text)?;
            Ok(0)
        }
        Err(e) => {
            err_line(format_args!("steward db script: {e}"))?;
            Ok(1)
        }
    }
}
