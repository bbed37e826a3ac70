//! `steward schema`: the JSON Schema of desired-state documents.

use super::console::{err_line, out_line, OutputError};

pub fn run() -> Result<u8, OutputError> {
    let schema = steward_model::schema::desired_state_schema();
    match serde_json::to_string_pretty(&schema) {
        Ok(s) => {
            out_line(s)?;
            Ok(0)
        }
        Err(e) => {
            err_line(format_args!("steward schema: {e}"))?;
            Ok(1)
        }
    }
}
