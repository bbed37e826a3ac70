//! Every rule code ([`Code::ALL`]) has a fixture that breaks it (`fixtures/invalid/CODE`)
//! and a near miss that does not (`fixtures/valid/CODE`), and is documented in the README
//! and in docs/desired-state.md. A fixture is a file (`CODE.yaml`, read as bytes like
//! the loader does) or, for the loader's own rules (links, unreadable entries), a
//! directory (`CODE/`, loaded with `validate_dir`). The invalid fixtures' full output is
//! compared with a golden file (`CODE.expected`); run with `BLESS=1` to rewrite them
//! after an intended change, then review the diff.

use std::path::{Path, PathBuf};

use steward_model::load::{load_bytes, Loaded};
use steward_model::validate::compile;
use steward_model::{validate_dir, Code, Compiled};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The fixture of `code` in `kind` (`valid` or `invalid`): a file or a directory.
fn fixture(kind: &str, code: Code) -> Option<PathBuf> {
    let base = fixtures_dir().join(kind);
    let file = base.join(format!("{code}.yaml"));
    let dir = base.join(code.as_str());
    [file, dir].into_iter().find(|p| p.exists())
}

fn validate(code: Code, path: &Path) -> Compiled {
    if path.is_dir() {
        return validate_dir(path).unwrap();
    }
    let bytes = std::fs::read(path).unwrap();
    let mut loaded = Loaded::default();
    load_bytes(Path::new(&format!("{code}.yaml")), &bytes, &mut loaded);
    compile(loaded)
}

fn render(c: &Compiled) -> String {
    c.diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

/// Rules that only warn: their invalid fixture still yields a snapshot.
const WARNING_RULES: &[Code] = &[
    Code::OptionalServiceCertificate,
    Code::NoServers,
    Code::UnmappedGroupMembers,
    Code::MembersPolicyWithoutMembers,
    Code::PortDisplacesDefault,
];

#[test]
fn every_code_has_a_breaking_fixture_a_golden_and_a_near_miss() {
    let mut missing = Vec::new();
    for &code in Code::ALL {
        if fixture("invalid", code).is_none() {
            missing.push(format!("fixtures/invalid/{code}.yaml (or {code}/)"));
        }
        if !fixtures_dir()
            .join(format!("invalid/{code}.expected"))
            .exists()
        {
            missing.push(format!("fixtures/invalid/{code}.expected"));
        }
        if fixture("valid", code).is_none() {
            missing.push(format!("fixtures/valid/{code}.yaml (or {code}/)"));
        }
    }
    assert!(
        missing.is_empty(),
        "missing fixtures:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_fixture_belongs_to_a_code() {
    let known: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let mut strays = Vec::new();
    for kind in ["valid", "invalid"] {
        for entry in std::fs::read_dir(fixtures_dir().join(kind)).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if !known.contains(&stem.as_str()) {
                strays.push(path.display().to_string());
            }
        }
    }
    assert!(strays.is_empty(), "fixtures of no code: {strays:?}");
}

#[test]
fn invalid_fixtures_report_their_rule_at_a_location() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for &code in Code::ALL {
        let Some(path) = fixture("invalid", code) else {
            continue; // reported by the coverage test
        };
        let compiled = validate(code, &path);
        let out = render(&compiled);
        let expected_path = fixtures_dir().join(format!("invalid/{code}.expected"));
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
        let warning_only = WARNING_RULES.contains(&code);
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
    for &code in Code::ALL {
        let Some(path) = fixture("valid", code) else {
            continue;
        };
        let compiled = validate(code, &path);
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

/// The text of a document's section: from `heading` to the next heading of its level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} section"));
    let level = heading.chars().take_while(|c| *c == '#').count();
    let rest = &text[start + heading.len()..];
    let next = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| {
            let hashes = rest[i..].chars().take_while(|c| *c == '#').count();
            hashes > 0 && hashes <= level && rest[i..].chars().nth(hashes) == Some(' ')
        })
        .unwrap_or(rest.len());
    &rest[..next]
}

#[test]
fn every_code_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let docs = std::fs::read_to_string(root.join("docs/desired-state.md")).unwrap();
    let places = [
        (
            "README.md, Validation rules",
            section(&readme, "## Validation rules"),
        ),
        ("docs/desired-state.md, Rules", section(&docs, "## Rules")),
    ];
    let mut missing = Vec::new();
    for &code in Code::ALL.iter().chain(Code::DIRECTORY) {
        for (place, text) in places {
            if !text.contains(&format!("`{code}`")) {
                missing.push(format!("{code} in {place}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented codes:\n{}",
        missing.join("\n")
    );
}

#[test]
fn a_pasted_password_is_never_echoed() {
    let path = fixtures_dir().join("invalid/secret-reference.yaml");
    let compiled = validate(Code::SecretReference, &path);
    let out = render(&compiled);
    assert!(out.contains("secret-reference"), "{out}");
    assert!(!out.contains("Winter2026"), "secret echoed: {out}");
    // Also as a non-string value, where serde would normally quote it.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("Winter2026!", "7654321987");
    let mut loaded = Loaded::default();
    load_bytes(Path::new("x.yaml"), text.as_bytes(), &mut loaded);
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
    load_bytes(Path::new("s.yaml"), text.as_bytes(), &mut loaded);
    let out = render(&compile(loaded));
    assert!(out.contains("s.yaml:4:"), "{out}");
    assert!(out.contains("s.yaml:12:3: error[unknown-field]"), "{out}");
    // The first document's kind is unreadable, so "no Installation" is not claimed on top.
    assert_eq!(out.lines().count(), 2, "{out}");
}
