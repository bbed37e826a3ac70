//! A two-server farm with every kind on both servers, as the tests' common input.

use std::path::Path;

use steward_balancer::Farms;
use steward_model::load::{load_text, Loaded};
use steward_model::ServiceKind;
use steward_testkit::Fixture;

/// The farms of a desired state whose loadBalancer block is `lb` (YAML, indented two).
pub fn farms(lb: &str) -> Farms {
    let all = ServiceKind::ALL.map(ServiceKind::as_str);
    let text = Fixture::installation()
        .spec_lines(&format!("{lb}\n  hl7: {{preferred: app2}}\n"))
        .servers([("app1", &all[..]), ("app2", &all[..])])
        .document("apiVersion: steward/v1\nkind: HealthCheck\nmetadata: {name: psws}\nspec: {service: PSWS, interval: 5s, timeout: 2s, rise: 2, fall: 2}\n")
        .documents();
    let mut loaded = Loaded::default();
    load_text(Path::new("farms.yaml"), &text, &mut loaded);
    let compiled = steward_model::validate::compile(loaded);
    let errors: Vec<String> = compiled.errors().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    Farms::from_snapshot(&compiled.snapshot.unwrap(), None).expect("a vendor is set")
}

/// Compares `got` with `golden/NAME`; `BLESS=1` rewrites the file.
pub fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "{name} differs from its golden file (BLESS=1 rewrites it)\n--- got\n{got}"
    );
}
