//! Arbitrary and mutated input never panics the loader; it always yields either a snapshot
//! or located errors.

use std::path::Path;

use proptest::prelude::*;
use steward_model::load::{load_text, Loaded};
use steward_model::validate::compile;

const BUNDLED: &[&str] = &[
    include_str!("../../../desired-state/installation.yaml"),
    include_str!("../../../desired-state/servers/app1.yaml"),
    include_str!("../../../desired-state/servers/app2.yaml"),
    include_str!("../../../desired-state/active-directory/corp.yaml"),
    include_str!("../../../desired-state/health-checks.yaml"),
];

fn check(texts: &[String]) -> Result<(), TestCaseError> {
    let mut loaded = Loaded::default();
    for (i, t) in texts.iter().enumerate() {
        load_text(Path::new(&format!("f{i}.yaml")), t, &mut loaded);
    }
    let compiled = compile(loaded);
    let has_errors = compiled.has_errors();
    prop_assert_eq!(compiled.snapshot.is_some(), !has_errors);
    for d in &compiled.diagnostics {
        prop_assert!(d.line >= 1 && d.column >= 1, "unlocated: {}", d);
        prop_assert!(!d.message.is_empty());
    }
    Ok(())
}

/// One edit of a text: delete, duplicate or replace a byte range, or splice in a token
/// that YAML gives meaning to.
fn mutate(text: &str, at: usize, len: usize, op: u8, token: &str) -> String {
    let bytes = text.as_bytes();
    let at = at % (bytes.len() + 1);
    let end = (at + len).min(bytes.len());
    let mut out = bytes[..at].to_vec();
    match op % 4 {
        0 => {}
        1 => {
            out.extend_from_slice(&bytes[at..end]);
            out.extend_from_slice(&bytes[at..end]);
        }
        2 => out.extend_from_slice(token.as_bytes()),
        _ => {
            out.extend_from_slice(token.as_bytes());
            out.extend_from_slice(&bytes[at..end]);
        }
    }
    out.extend_from_slice(&bytes[end..]);
    String::from_utf8_lossy(&out).into_owned()
}

const TOKENS: &[&str] = &[
    ":",
    "- ",
    "\n---\n",
    "[",
    "{",
    "}",
    "]",
    "&a ",
    "*a",
    "!!int ",
    "'",
    "\"",
    "#",
    "\t",
    "  ",
    "\n",
    "? ",
    "|\n",
    ">-\n",
    "null",
    "~",
    "0x1F",
    "1e9",
    "-1",
    "kind: Server\n",
    "port: 99999",
    "<<: *a",
    "...\n",
    "%YAML 1.2\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(texts in proptest::collection::vec(".{0,300}", 1..4)) {
        check(&texts)?;
    }

    #[test]
    fn mutated_bundled_state_never_panics(
        file in 0..BUNDLED.len(),
        edits in proptest::collection::vec((any::<usize>(), 0usize..40, any::<u8>(), 0..TOKENS.len()), 1..6),
    ) {
        let mut texts: Vec<String> = BUNDLED.iter().map(|s| (*s).to_owned()).collect();
        for (at, len, op, token) in edits {
            texts[file] = mutate(&texts[file], at, len, op, TOKENS[token]);
        }
        check(&texts)?;
    }
}

#[test]
fn bundled_state_is_valid() {
    let texts: Vec<String> = BUNDLED.iter().map(|s| (*s).to_owned()).collect();
    let mut loaded = Loaded::default();
    for (i, t) in texts.iter().enumerate() {
        load_text(Path::new(&format!("f{i}.yaml")), t, &mut loaded);
    }
    let compiled = compile(loaded);
    assert!(compiled.snapshot.is_some(), "{:?}", compiled.diagnostics);
}
