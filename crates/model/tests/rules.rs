//! Every validation rule has a fixture that breaks it (`fixtures/invalid/CODE.yaml`) and a
//! near miss that does not (`fixtures/valid/CODE.yaml`). The invalid fixtures' full output
//! is compared with a golden file (`CODE.expected`); run with `BLESS=1` to rewrite them
//! after an intended change, then review the diff.

use std::path::{Path, PathBuf};

use steward_model::load::{load_text, Loaded};
use steward_model::validate::compile;
use steward_model::Compiled;

fn fixtures(kind: &str) -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    assert!(
        out.len() >= 40,
        "expected a fixture per rule in {}",
        dir.display()
    );
    out
}

fn validate(name: &str, path: &Path) -> Compiled {
    let text = std::fs::read_to_string(path).unwrap();
    let mut loaded = Loaded::default();
    load_text(Path::new(&format!("{name}.yaml")), &text, &mut loaded);
    compile(loaded)
}

fn render(c: &Compiled) -> String {
    c.diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

/// Rules that only warn: their invalid fixture still yields a snapshot.
const WARNING_RULES: &[&str] = &["optional-service-certificate"];

#[test]
fn invalid_fixtures_report_their_rule_at_a_location() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for (code, path) in fixtures("invalid") {
        let compiled = validate(&code, &path);
        let out = render(&compiled);
        let expected_path = path.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &out).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if out != expected {
            failures.push(format!(
                "{code}: output differs from golden\n--- got\n{out}--- expected\n{expected}"
            ));
        }
        if !compiled.diagnostics.iter().any(|d| d.code == code) {
            failures.push(format!("{code}: rule not reported; got\n{out}"));
        }
        for d in &compiled.diagnostics {
            if d.line == 0 || d.column == 0 {
                failures.push(format!("{code}: unlocated diagnostic {d}"));
            }
        }
        let warning_only = WARNING_RULES.contains(&code.as_str());
        if warning_only != compiled.snapshot.is_some() {
            failures.push(format!(
                "{code}: snapshot presence wrong (warning-only rule: {warning_only})"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_fixtures_are_near_misses() {
    let mut failures = Vec::new();
    for (code, path) in fixtures("valid") {
        let compiled = validate(&code, &path);
        if compiled.snapshot.is_none() || compiled.has_errors() {
            failures.push(format!(
                "{code}: expected valid, got\n{}",
                render(&compiled)
            ));
        }
        if compiled.diagnostics.iter().any(|d| d.code == code) {
            failures.push(format!("{code}: near miss still reports the rule"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_has_both_fixtures() {
    let valid: Vec<String> = fixtures("valid").into_iter().map(|f| f.0).collect();
    let invalid: Vec<String> = fixtures("invalid").into_iter().map(|f| f.0).collect();
    assert_eq!(valid, invalid);
}

#[test]
fn a_pasted_password_is_never_echoed() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/secret-reference.yaml");
    let compiled = validate("secret-reference", &path);
    let out = render(&compiled);
    assert!(out.contains("secret-reference"), "{out}");
    assert!(!out.contains("Winter2026"), "secret echoed: {out}");
    // Also as a non-string value, where serde would normally quote it.
    let mut loaded = Loaded::default();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("Winter2026!", "7654321987");
    load_text(Path::new("x.yaml"), &text, &mut loaded);
    let out = render(&compile(loaded));
    assert!(
        out.contains("secret-reference") && !out.contains("7654321987"),
        "{out}"
    );
}

#[test]
fn one_broken_document_does_not_hide_the_others() {
    let text = "apiVersion: steward/v1\nkind: Server\nmetadata: {name: a}\nspec: {hostname: [}\n---\napiVersion: steward/v1\nkind: Server\nmetadata: {name: B}\nspec:\n  hostname: b.example.eng\n  certificate: {generate: true}\n  bogus: 1\n";
    let mut loaded = Loaded::default();
    load_text(Path::new("s.yaml"), text, &mut loaded);
    let out = render(&compile(loaded));
    assert!(out.contains("s.yaml:4:"), "{out}");
    assert!(out.contains("s.yaml:12:3: error[unknown-field]"), "{out}");
    // The first document's kind is unreadable, so "no Installation" is not claimed on top.
    assert_eq!(out.lines().count(), 2, "{out}");
}
