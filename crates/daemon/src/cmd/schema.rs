//! `steward schema`: the JSON Schema of desired-state documents.

pub fn run() -> u8 {
    let schema = steward_model::schema::desired_state_schema();
    match serde_json::to_string_pretty(&schema) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("steward schema: {e}");
            1
        }
    }
}
