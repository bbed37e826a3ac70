//! Inputs the `agent_request` fuzz target found (fuzz/), kept as regression tests: each
//! file in `fuzz_regressions/` is one fuzz input (first byte: route and kind, as the
//! target reads it; then the request body). An install request the agent accepts holds
//! only what the catalog and its own checks allow.

use std::fs;
use std::path::Path;

use steward_agent::api::InstallRequest;
use steward_agent::validate_install;
use steward_model::ServiceKind;

/// The checks an accepted request must pass (those of the fuzz target).
fn assert_acceptable(kind: ServiceKind, request: &InstallRequest) {
    assert_eq!(request.ports.len(), kind.port_count(), "{request:?}");
    assert!(!request.installed_by.trim().is_empty(), "{request:?}");
    assert!(
        !request.installed_by.chars().any(char::is_control),
        "a control character in installedBy was accepted: {request:?}"
    );
}

#[test]
fn every_fuzz_regression_input_is_refused_or_acceptable() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut inputs = 0;
    for entry in fs::read_dir(&dir).expect("tests/fuzz_regressions") {
        let data = fs::read(entry.expect("entry").path()).expect("input");
        let (route, body) = data.split_first().expect("a route byte");
        assert!(route % 4 < 2, "install inputs only so far");
        let kind = ServiceKind::ALL[usize::from(route / 4) % ServiceKind::ALL.len()];
        let request: InstallRequest = serde_json::from_slice(body).expect("a request body");
        if let Ok(accepted) = validate_install(kind, request) {
            assert_acceptable(kind, &accepted);
        }
        inputs += 1;
    }
    assert!(inputs >= 1, "the committed inputs are there");
}

/// `installedBy` is shown in the status and logs: a line break or escape character at
/// either end (which a trimmed check would miss) is refused like one in the middle.
#[test]
fn installed_by_with_a_control_character_at_either_end_is_refused() {
    for by in ["steward\n", "\tsteward", "ste\u{1b}[2Jward", "steward\r"] {
        let request = InstallRequest {
            ports: vec![7007],
            drive: "C:".into(),
            release: "2024.1".into(),
            installed_by: by.into(),
        };
        assert!(
            validate_install(ServiceKind::Health, request).is_err(),
            "{by:?} accepted"
        );
    }
}
