//! Every generated statement, checked by parsers that are not ours: sqlglot's T-SQL
//! tokenizer (decodes bracketed names and N'...' strings) and sqlfluff's tsql grammar (a
//! full parse). `tests/tsql_check.py` runs them and reports; the judgement is here.
//!
//! Needs `python3` with sqlfluff and sqlglot (scripts/test-all.sh installs pinned versions).
//! Missing: fails with CI=true, otherwise prints SKIPPED.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use steward_database::grants::{Role, EXECUTOR_ROLE};
use steward_database::provision::{plan, script, Step};

/// Database and service login names that try to break out of their quotes.
const CASES: &[(&str, &str)] = &[
    (
        "PatientSecure",
        "ImprivataPatientSecureServices_PatientSecure",
    ),
    (
        "x]; DROP DATABASE y; --",
        "ImprivataPatientSecureServices_x]; DROP DATABASE y; --",
    ),
    ("O'Brien; DROP LOGIN sa; --", "svc' OR 1=1; --"),
    ("Zürich 日本 😀", "Ñandú_サービス"),
    ("[a]]b", "c]d'e;f /* g */"),
    ("GO", "x -- y"),
];

/// Statement words that would mean something is removed or taken away.
const FORBIDDEN: &[&str] = &[
    "DROP", "REVOKE", "DENY", "DELETE", "TRUNCATE", "KILL", "SHUTDOWN", "DISABLE",
];

fn parsers_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import sqlfluff, sqlglot"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let reason = "python3 with sqlfluff and sqlglot is not installed (scripts/test-all.sh installs them)";
        steward_testkit::skip(reason);
    }
    ok
}

fn check(request: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tsql_check.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `[a]]b]` -> `a]b`, `N'a''b'` -> `a'b` (sqlfluff reports raw text).
fn unbracket(raw: &str) -> String {
    raw.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not a bracketed name: {raw}"))
        .replace("]]", "]")
}

fn unquote(raw: &str) -> String {
    raw.strip_prefix("N'")
        .or_else(|| raw.strip_prefix('\''))
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or_else(|| panic!("not a string literal: {raw}"))
        .replace("''", "'")
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_statement_parses_as_one_statement_with_its_names_intact() {
    if !parsers_available() {
        return;
    }
    let plans: Vec<_> = CASES
        .iter()
        .map(|(db, login)| plan(db, login).unwrap())
        .collect();
    let texts: Vec<String> = plans.iter().flatten().map(ToString::to_string).collect();
    let report = check(json!({ "statements": texts }));
    let reports = report["statements"].as_array().unwrap();
    assert_eq!(reports.len(), texts.len());

    let mut reports = reports.iter();
    let mut fully_parsed = 0;
    for ((db, login), statements) in CASES.iter().zip(&plans) {
        let mut allowed: BTreeSet<String> = [*db, *login, "master", EXECUTOR_ROLE]
            .into_iter()
            .map(str::to_owned)
            .collect();
        allowed.extend(Role::ALL.iter().map(|r| r.name().to_owned()));
        let mut literals = allowed.clone();
        literals.insert("$(ServicePassword)".into());
        literals.insert("R".into());

        for statement in statements {
            let r = reports.next().unwrap();
            let sql = statement.to_string();
            // sqlglot: the only `;` is the last token, so nothing runs after the statement.
            let tokens = r["sqlglot"]
                .as_array()
                .unwrap_or_else(|| panic!("{sql}: sqlglot: {}", r["sqlglot"]["error"]));
            let kind = |t: &Value| t["type"].as_str().unwrap().to_owned();
            let text = |t: &Value| t["text"].as_str().unwrap().to_owned();
            let semicolons = tokens.iter().filter(|t| kind(t) == "SEMICOLON").count();
            assert_eq!(semicolons, 1, "{sql}");
            assert_eq!(kind(tokens.last().unwrap()), "SEMICOLON", "{sql}");
            let names: BTreeSet<String> = tokens
                .iter()
                .filter(|t| kind(t) == "IDENTIFIER")
                .map(text)
                .collect();
            let strings: BTreeSet<String> = tokens
                .iter()
                .filter(|t| kind(t).ends_with("STRING"))
                .map(text)
                .collect();
            assert!(names.is_subset(&allowed), "{sql}: {names:?}");
            assert!(strings.is_subset(&literals), "{sql}: {strings:?}");
            for word in tokens
                .iter()
                .filter(|t| {
                    !matches!(
                        kind(t).as_str(),
                        "IDENTIFIER" | "STRING" | "NATIONAL_STRING"
                    )
                })
                .map(|t| text(t).to_uppercase())
            {
                assert!(!FORBIDDEN.contains(&word.as_str()), "{sql}: {word}");
            }
            // The names each step is about are there, decoded exactly.
            let expect: &[&str] = match statement.step() {
                Step::CreateDatabase | Step::UseDatabase => &[db],
                Step::CreateLogin
                | Step::CreateUser
                | Step::GrantServer(_)
                | Step::GrantViewDatabaseState
                | Step::AddRoleMember(_) => &[login],
                _ => &[],
            };
            for name in expect {
                assert!(names.contains(*name), "{sql}: {names:?} lacks {name}");
            }

            // sqlfluff: a full grammar parse, one statement of the expected type.
            let fluff = &r["sqlfluff"];
            if fluff.get("skipped").is_some() {
                assert!(
                    sql.contains("]]"),
                    "only ]] names are left to sqlglot: {sql}"
                );
                continue;
            }
            assert!(fluff.get("error").is_none(), "{sql}: {}", fluff["error"]);
            let batches = fluff["batches"].as_array().unwrap();
            assert_eq!(batches.len(), 1, "{sql}");
            let kinds = strs(&batches[0]);
            let want = match statement.step() {
                Step::UseMaster | Step::UseDatabase => "use_statement",
                Step::GrantServer(_)
                | Step::GrantViewDatabaseState
                | Step::GrantExecuteToExecutor => "grant_statement",
                _ => "if_then_statement",
            };
            assert_eq!(kinds, [want], "{sql}");
            for raw in strs(&fluff["identifiers"]) {
                assert!(allowed.contains(&unbracket(&raw)), "{sql}: {raw}");
            }
            for raw in strs(&fluff["literals"]) {
                assert!(literals.contains(&unquote(&raw)), "{sql}: {raw}");
            }
            for word in strs(&fluff["keywords"]) {
                assert!(!FORBIDDEN.contains(&word.as_str()), "{sql}: {word}");
            }
            fully_parsed += 1;
        }
    }
    // Every statement of the names sqlfluff can lex was fully parsed.
    let lexable = texts.iter().filter(|t| !t.contains("]]")).count();
    assert_eq!(fully_parsed, lexable);
    assert!(
        fully_parsed > texts.len() / 2,
        "{fully_parsed} of {}",
        texts.len()
    );
}

#[test]
fn the_dba_script_parses_as_one_batch_per_statement() {
    if !parsers_available() {
        return;
    }
    let cases = [
        (
            "PatientSecure",
            "ImprivataPatientSecureServices_PatientSecure",
        ),
        ("Zürich 日本 😀", "O'Brien; --"),
    ];
    let scripts: Vec<String> = cases.iter().map(|(d, l)| script(d, l).unwrap()).collect();
    let report = check(json!({ "scripts": scripts }));
    for ((db, login), r) in cases.iter().zip(report["scripts"].as_array().unwrap()) {
        assert!(r.get("error").is_none(), "{}", r["error"]);
        let batches = r["batches"].as_array().unwrap();
        assert_eq!(batches.len(), plan(db, login).unwrap().len());
        for batch in batches {
            assert_eq!(batch.as_array().unwrap().len(), 1, "{batch}");
        }
    }
}
