//! `steward validate [DIR] [--format text|json]`: exit 0 valid (warnings allowed),
//! 1 invalid, 2 usage or I/O error.

use std::path::PathBuf;

use serde_json::json;
use steward_model::validate_dir;

use super::console::{err_line, out_line, OutputError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The desired-state directory.
    dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(args: &Args) -> Result<u8, OutputError> {
    let dir = super::desired_state_dir(&args.dir);
    let compiled = match validate_dir(&dir) {
        Ok(c) => c,
        Err(e) => {
            err_line(format_args!("steward validate: {e}"))?;
            return Ok(2);
        }
    };
    let errors = compiled.errors().count();
    let warnings = compiled.diagnostics.len() - errors;
    match args.format {
        Format::Text => {
            for d in &compiled.diagnostics {
                out_line(d)?;
            }
            if errors == 0 {
                err_line(format_args!(
                    "{}: valid ({warnings} warning{})",
                    dir.display(),
                    plural(warnings)
                ))?;
            } else {
                err_line(format_args!(
                    "{}: invalid: {errors} error{}, {warnings} warning{}",
                    dir.display(),
                    plural(errors),
                    plural(warnings)
                ))?;
            }
        }
        Format::Json => {
            let doc = json!({
                "valid": errors == 0,
                "errors": errors,
                "warnings": warnings,
                "diagnostics": compiled.diagnostics,
            });
            out_line(serde_json::to_string_pretty(&doc).unwrap_or_default())?;
        }
    }
    Ok(u8::from(errors > 0))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
