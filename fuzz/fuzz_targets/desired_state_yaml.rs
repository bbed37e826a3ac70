//! One desired-state file of any bytes, through the loader and validation as `steward
//! validate` runs them, then the planner. Never a panic; errors are located; no diagnostic
//! line carries a control character (a file must not forge output lines or terminal codes);
//! a snapshot exists exactly when there is no error, and every snapshot plans and diffs.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use steward_model::load::{load_bytes, Loaded};
use steward_model::plan::{plan, Observed};
use steward_model::validate::compile;

fuzz_target!(|data: &[u8]| {
    let mut loaded = Loaded::default();
    load_bytes(Path::new("servers/app1.yaml"), data, &mut loaded);
    let compiled = compile(loaded);
    assert_eq!(compiled.snapshot.is_some(), !compiled.has_errors());
    for d in &compiled.diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "unlocated: {d}");
        assert!(!d.message.is_empty(), "empty message: {d:?}");
        let line = d.to_string();
        assert!(
            !line.chars().any(char::is_control),
            "control character in a diagnostic: {line:?}"
        );
    }
    if let Some(snapshot) = &compiled.snapshot {
        let _ = plan(snapshot, &Observed::default());
        let _ = steward_model::diff::diff(None, snapshot);
    }
});
