//! docs/metrics.md against what a running daemon really exports: every family of the
//! encoded `/metrics` (name, type, label names) must be in the "Exported" table, every row
//! of that table must be exported, and no "Reserved" name may be.

use std::collections::{BTreeMap, BTreeSet};

/// Type and label names of one metric family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub kind: String,
    pub labels: BTreeSet<String>,
}

/// The families of a text exposition: `# TYPE` lines name them, samples give their labels
/// (a histogram's `_bucket`/`_sum`/`_count` samples count for the histogram, `le` aside).
pub fn exported(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE NAME KIND");
            families.insert(
                name.to_owned(),
                Family {
                    kind: kind.trim().to_owned(),
                    labels: BTreeSet::new(),
                },
            );
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("a sample");
        let sample = &line[..name_end];
        let family = ["_bucket", "_sum", "_count", ""]
            .iter()
            .filter_map(|suffix| sample.strip_suffix(suffix))
            .find(|base| families.contains_key(*base))
            .unwrap_or_else(|| panic!("sample {sample} of no # TYPE family"))
            .to_owned();
        if line[name_end..].starts_with('{') {
            let labels = label_names(&line[name_end + 1..]);
            let entry = families.get_mut(&family).unwrap();
            entry
                .labels
                .extend(labels.into_iter().filter(|l| l != "le"));
        }
    }
    families
}

/// The label names of `a="x",b="y\"z"} 1` (values may hold escaped quotes and commas).
fn label_names(mut rest: &str) -> Vec<String> {
    let mut names = Vec::new();
    while let Some((name, after)) = rest.split_once("=\"") {
        names.push(name.trim_start_matches(',').to_owned());
        let mut escaped = false;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                let close = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                close
            })
            .map(|(i, _)| i)
            .expect("a closed label value");
        rest = &after[end + 1..];
        if rest.starts_with('}') {
            break;
        }
    }
    names
}

/// The rows of a `## {section}` table of docs/metrics.md: metric -> family.
pub fn documented(doc: &str, section: &str) -> BTreeMap<String, Family> {
    let heading = format!("## {section}\n");
    let start = doc.find(&heading).unwrap_or_else(|| panic!("no {heading}")) + heading.len();
    let body = doc[start..].split("\n## ").next().unwrap();
    let mut rows = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with("| `steward_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        let family = Family {
            kind: cells[2].to_owned(),
            labels,
        };
        assert!(rows.insert(name.clone(), family).is_none(), "{name} twice");
    }
    // "Reserved" may be empty (every name exported); "Exported" never is.
    assert!(
        section == "Reserved" || !rows.is_empty(),
        "no rows under {heading}"
    );
    rows
}

/// Every difference between the exported families and the documentation.
pub fn differences(text: &str, doc: &str) -> Vec<String> {
    let exported = exported(text);
    let documented = documented(doc, "Exported");
    let reserved = documented_names(doc, "Reserved");
    let mut problems = Vec::new();
    for (name, family) in &exported {
        match documented.get(name) {
            None => problems.push(format!("{name} is exported but not in docs/metrics.md")),
            Some(doc) if doc != family => problems.push(format!(
                "{name}: exported as {family:?}, documented as {doc:?}"
            )),
            Some(_) => {}
        }
        if reserved.contains(name) {
            problems.push(format!("{name} is exported but listed as reserved"));
        }
    }
    for name in documented.keys() {
        if !exported.contains_key(name) {
            problems.push(format!("{name} is documented but not exported"));
        }
    }
    problems
}

fn documented_names(doc: &str, section: &str) -> BTreeSet<String> {
    documented(doc, section).into_keys().collect()
}

#[test]
fn the_comparison_finds_missing_extra_and_mistyped_metrics() {
    let doc = "## Exported\n\n| metric | type | labels | meaning |\n|---|---|---|---|\n\
        | `steward_a` | gauge | `server` | a |\n\
        | `steward_h` | histogram | `controller` | h |\n\n\
        ## Reserved\n\n| `steward_r` | gauge | | r |\n";
    let good = "# TYPE steward_a gauge\nsteward_a{server=\"x,\\\"y\"} 1\n\
        # TYPE steward_h histogram\nsteward_h_bucket{controller=\"s\",le=\"+Inf\"} 1\n\
        steward_h_sum{controller=\"s\"} 1\nsteward_h_count{controller=\"s\"} 1\n";
    assert_eq!(differences(good, doc), Vec::<String>::new());
    let extra = format!("{good}# TYPE steward_b counter\nsteward_b 1\n");
    assert_eq!(differences(&extra, doc).len(), 1);
    let reserved = format!("{good}# TYPE steward_r gauge\nsteward_r 1\n");
    assert_eq!(differences(&reserved, doc).len(), 2);
    let missing = "# TYPE steward_a gauge\nsteward_a{server=\"x\"} 1\n";
    assert_eq!(differences(missing, doc).len(), 1);
    let relabelled = good.replace("server=", "host=");
    assert_eq!(differences(&relabelled, doc).len(), 1);
    let retyped = good.replace("steward_a gauge", "steward_a counter");
    assert_eq!(differences(&retyped, doc).len(), 1);
}
