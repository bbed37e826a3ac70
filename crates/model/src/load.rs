//! Reading a desired-state directory into raw, located documents.
//!
//! Every `*.yaml`/`*.yml` file below the directory is read (names starting with `.` are
//! skipped, so `.git/` is); each file may hold several documents. A document that does
//! not parse yields a located diagnostic and the others are still read, so one run
//! reports every broken document.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::diagnostic::Diagnostic;
use crate::located::with_line_offset;
use crate::resource::{Document, Header, Resource, API_VERSION, KINDS};
use crate::{Located, Pos};

/// A document and the file it came from (relative to the directory).
#[derive(Debug, Clone)]
pub struct Sourced {
    pub file: PathBuf,
    pub resource: Resource,
}

/// What a directory holds: the documents that parsed and the problems of those that did not.
#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<Sourced>,
    pub diagnostics: Vec<Diagnostic>,
    /// How many files were read.
    pub files: usize,
    /// Kinds of documents that were present but did not parse. Rules about a kind's count
    /// ("exactly one Installation") stay quiet for these, rather than pile a misleading
    /// second error on the real one. `?` stands for a document whose kind is unreadable.
    pub unparsed_kinds: Vec<String>,
}

impl Loaded {
    /// Whether a document of `kind` (or of unreadable kind) failed to parse.
    pub fn may_have_lost(&self, kind: &str) -> bool {
        self.unparsed_kinds.iter().any(|k| k == kind || k == "?")
    }
}

/// The directory itself could not be read: a usage or I/O problem, not invalid content.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
}

/// Read every desired-state file below `dir`.
pub fn load_dir(dir: &Path) -> Result<Loaded, LoadError> {
    let meta = std::fs::metadata(dir).map_err(|source| LoadError::Io {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(LoadError::NotADirectory(dir.to_owned()));
    }
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    // Files parse independently; split them into contiguous runs, one per core, and
    // concatenate the results in order so output stays deterministic.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let run = files.len().div_ceil(workers).max(1);
    let parts: Vec<Result<Loaded, LoadError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(run)
            .map(|chunk| scope.spawn(move || load_files(dir, chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut loaded = Loaded::default();
    for part in parts {
        let part = part?;
        loaded.documents.extend(part.documents);
        loaded.diagnostics.extend(part.diagnostics);
        loaded.unparsed_kinds.extend(part.unparsed_kinds);
        loaded.files += part.files;
    }
    Ok(loaded)
}

fn load_files(dir: &Path, files: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    for rel in files {
        let path = dir.join(rel);
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        loaded.files += 1;
        match String::from_utf8(bytes) {
            Ok(text) => load_text(rel, &text, &mut loaded),
            Err(_) => loaded.diagnostics.push(Diagnostic::error(
                rel,
                Pos::new(1, 1),
                "encoding",
                "file is not valid UTF-8",
            )),
        }
    }
    Ok(loaded)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks on purpose: a desired-state directory assembled with links
        // should behave as if the files were there.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else if is_yaml(&path) {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
        }
    }
    Ok(())
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Parse the documents of one file's text into `loaded`.
pub fn load_text(file: &Path, text: &str, loaded: &mut Loaded) {
    for chunk in split_documents(text) {
        if let Some(result) = load_document(file, chunk.text, chunk.first_line) {
            match result {
                Ok(resource) => loaded.documents.push(Sourced {
                    file: file.to_owned(),
                    resource,
                }),
                Err((diagnostic, kind)) => {
                    loaded.diagnostics.push(diagnostic);
                    // A document too broken to show its kind might have been of any kind.
                    loaded
                        .unparsed_kinds
                        .push(kind.unwrap_or_else(|| "?".to_owned()));
                }
            }
        }
    }
}

/// One YAML document's text and the 0-based line it starts at in its file.
#[derive(Debug, PartialEq, Eq)]
struct Chunk<'a> {
    first_line: u32,
    text: &'a str,
}

/// Split a stream at document markers. YAML only recognises `---` and `...` as markers at
/// the very start of a line, where no scalar content can stand, so splitting on them is
/// exact; it lets one broken document be reported without hiding the others.
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0usize;
    let mut start_line = 0u32;
    let mut offset = 0usize;
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let line_no = u32::try_from(line_no).unwrap_or(u32::MAX);
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = is_marker(bare, "---");
        let is_end = is_marker(bare, "...");
        if is_start && offset > start {
            chunks.push(Chunk {
                first_line: start_line,
                text: &text[start..offset],
            });
            start = offset;
            start_line = line_no;
        }
        offset += line.len();
        if is_end {
            chunks.push(Chunk {
                first_line: start_line,
                text: &text[start..offset],
            });
            start = offset;
            start_line = line_no + 1;
        }
    }
    if start < text.len() {
        chunks.push(Chunk {
            first_line: start_line,
            text: &text[start..],
        });
    }
    chunks
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// Whether a chunk holds anything but markers, comments and blank lines.
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !(t.is_empty() || t.starts_with('#') || t == "---" || t == "...")
    })
}

/// A parsed resource, or the problem and (when it could be read) the document's kind.
type DocumentResult = Result<Resource, (Diagnostic, Option<String>)>;

fn load_document(file: &Path, text: &str, first_line: u32) -> Option<DocumentResult> {
    let result = parse_document(file, text, first_line)?;
    let kind = || {
        with_line_offset(first_line, || serde_saphyr::from_str::<Header>(text))
            .ok()
            .and_then(|h| h.kind)
            .map(|k| k.value)
    };
    Some(result.map_err(|d| (d, kind())))
}

fn parse_document(
    file: &Path,
    text: &str,
    first_line: u32,
) -> Option<Result<Resource, Diagnostic>> {
    if !has_content(text) {
        return None;
    }
    let header = match quick_header(text) {
        Some(h) => h,
        None => match with_line_offset(first_line, || serde_saphyr::from_str(text)) {
            Ok(h) => h,
            Err(e) => return Some(Err(parse_diagnostic(file, &e, first_line))),
        },
    };
    let doc_start = Pos::new(first_line + 1, 1);
    let Some(kind) = header.kind else {
        return Some(Err(Diagnostic::error(
            file,
            doc_start,
            "missing-field",
            "document has no `kind` (one of Installation, Server, ActiveDirectory, HealthCheck)",
        )));
    };
    match header.api_version {
        Some(v) if v.value == API_VERSION => {}
        Some(v) => {
            return Some(Err(Diagnostic::error(
                file,
                v.pos,
                "api-version",
                format!(
                    "unsupported apiVersion `{}`; this release reads `{API_VERSION}`",
                    v.value
                ),
            )))
        }
        None => {
            return Some(Err(Diagnostic::error(
                file,
                doc_start,
                "missing-field",
                format!("document has no `apiVersion` (expected `{API_VERSION}`)"),
            )))
        }
    }
    let parsed = with_line_offset(first_line, || match kind.value.as_str() {
        "Installation" => typed(text).map(|d| Ok(Resource::Installation(d))),
        "Server" => typed(text).map(|d| Ok(Resource::Server(d))),
        "ActiveDirectory" => typed(text).map(|d| Ok(Resource::ActiveDirectory(d))),
        "HealthCheck" => typed(text).map(|d| Ok(Resource::HealthCheck(d))),
        other => Ok(Err(Diagnostic::error(
            file,
            kind.pos,
            "unknown-kind",
            format!(
                "unknown kind `{other}`; expected one of {}",
                KINDS.join(", ")
            ),
        ))),
    });
    Some(match parsed {
        Ok(inner) => inner,
        Err(e) => Err(parse_diagnostic(file, &e, first_line)),
    })
}

/// The header of a conventionally written document (`apiVersion: steward/v1` and
/// `kind: <Kind>` as plain top-level lines), without a YAML parse: it halves load time for
/// large fleets. Anything unusual returns `None` and takes the full parse, which also
/// produces the precise errors; the typed parse that follows checks the document whole.
fn quick_header(text: &str) -> Option<Header> {
    let mut api_version = None;
    let mut kind = None;
    for line in text.lines() {
        let value = |key: &str| {
            let v = line.strip_prefix(key)?.split(" #").next()?.trim();
            (!v.is_empty()).then_some(v)
        };
        if let Some(v) = value("apiVersion:") {
            if api_version.replace(v).is_some() {
                return None;
            }
        } else if let Some(v) = value("kind:") {
            if kind.replace(v).is_some() {
                return None;
            }
        }
    }
    let kind = kind.filter(|k| KINDS.contains(k))?;
    api_version.filter(|v| *v == API_VERSION)?;
    // Positions are only used for errors, and a recognised kind and version raise none.
    Some(Header {
        api_version: Some(Located::new(API_VERSION.to_owned(), Pos::default())),
        kind: Some(Located::new(kind.to_owned(), Pos::default())),
    })
}

fn typed<S: DeserializeOwned>(text: &str) -> Result<Document<S>, serde_saphyr::Error> {
    serde_saphyr::from_str(text)
}

/// A located diagnostic from a parser error. Only the parser's short message is used, never
/// its rendered snippet: a snippet would quote the file, and files may hold a pasted secret.
fn parse_diagnostic(file: &Path, err: &serde_saphyr::Error, first_line: u32) -> Diagnostic {
    use serde_saphyr::MessageFormatter;
    let inner = err.without_snippet();
    let pos = inner
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Pos::from_saphyr(&l).offset_lines(first_line))
        .unwrap_or(Pos::new(first_line + 1, 1));
    let message = serde_saphyr::UserMessageFormatter
        .format_message(inner)
        .into_owned();
    let message = strip_location_prefix(&message);
    let code = classify(message);
    Diagnostic::error(file, pos, code, plain_words(message))
}

/// Say what a number field wants instead of naming a Rust type.
fn plain_words(message: &str) -> String {
    match message {
        "invalid u16" => "expected a whole number from 0 to 65535".to_owned(),
        "invalid u32" => "expected a whole number from 0 to 4294967295".to_owned(),
        other => other.to_owned(),
    }
}

/// The parser prefixes some messages with "line N column M: "; we print our own.
fn strip_location_prefix(message: &str) -> &str {
    let m = message.trim();
    let m = m.strip_prefix("error: ").unwrap_or(m);
    if let Some(rest) = m.strip_prefix("line ") {
        if let Some((_, after)) = rest.split_once(": ") {
            return after;
        }
    }
    m
}

fn classify(message: &str) -> &'static str {
    if message.starts_with("unknown field") {
        "unknown-field"
    } else if message.starts_with("missing field") {
        "missing-field"
    } else if message.starts_with("unknown variant") {
        "invalid-value"
    } else if message.starts_with("duplicate mapping key") {
        "duplicate-key"
    } else if message.contains("must be a reference")
        || message.starts_with("`env:")
        || message.starts_with("`file:")
    {
        "secret-reference"
    } else if message.starts_with("invalid") || message.starts_with("expected") {
        "invalid-type"
    } else {
        "yaml-syntax"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_markers_only_at_line_start() {
        let text = "a: 1\n---\nb: '---'\n  ---\n...\nc: 3\n--- # x\nd: 4\n";
        let chunks = split_documents(text);
        let starts: Vec<u32> = chunks.iter().map(|c| c.first_line).collect();
        assert_eq!(starts, vec![0, 1, 5, 6]);
        assert_eq!(chunks[1].text, "---\nb: '---'\n  ---\n...\n");
    }

    #[test]
    fn blank_and_comment_documents_are_skipped() {
        let mut loaded = Loaded::default();
        load_text(
            Path::new("x.yaml"),
            "# only a comment\n---\n\n---\n",
            &mut loaded,
        );
        assert!(loaded.documents.is_empty());
        assert!(loaded.diagnostics.is_empty());
    }
}
