//! One file's text into documents: split at markers, parse each on its own, and turn
//! parser errors into located diagnostics.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::Loaded;
use crate::diagnostic::{quote, Code, Diagnostic};
use crate::load::Sourced;
use crate::located::with_line_offset;
use crate::resource::{Document, Header, Resource, API_VERSION, KINDS};
use crate::{Located, Pos};

/// Parse the documents of one file's text into `loaded`.
pub fn load_text(file: &Path, text: &str, loaded: &mut Loaded) {
    for chunk in split_documents(text) {
        if let Some(result) = load_document(file, chunk.text, chunk.first_line) {
            match result {
                Ok(resource) => {
                    check_plain_integers(file, &resource, &chunk, &mut loaded.diagnostics);
                    loaded.documents.push(Sourced {
                        file: file.to_owned(),
                        resource,
                    });
                }
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

/// Parse one file's bytes: text must be UTF-8; the error points at the first bad byte.
pub fn load_bytes(file: &Path, bytes: &[u8], loaded: &mut Loaded) {
    match std::str::from_utf8(bytes) {
        Ok(text) => load_text(file, text, loaded),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            // The valid prefix is UTF-8, so its characters can be counted.
            let col =
                std::str::from_utf8(&valid[line_start..]).map_or(1, |s| s.chars().count() + 1);
            loaded.diagnostics.push(Diagnostic::error(
                file,
                Pos::new(saturate(line), saturate(col)),
                Code::Encoding,
                format!(
                    "file is not valid UTF-8 (byte 0x{:02x}); save it as UTF-8",
                    bytes[e.valid_up_to()]
                ),
            ));
            loaded.unparsed_kinds.push("?".to_owned());
        }
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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

/// The 0-based line (within the chunk) of its first line holding anything but markers,
/// comments and blank lines; `None` for a chunk without content.
fn first_content_line(text: &str) -> Option<usize> {
    text.lines().position(|l| {
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
    let content_line = first_content_line(text)?;
    let header = match quick_header(text) {
        Some(h) => h,
        None => match with_line_offset(first_line, || serde_saphyr::from_str(text)) {
            Ok(h) => h,
            Err(e) => return Some(Err(parse_diagnostic(file, &e, first_line))),
        },
    };
    // Where a problem of the whole document is shown: its first line of content.
    let doc_start = Pos::new(first_line + 1 + saturate(content_line), 1);
    let Some(kind) = header.kind else {
        return Some(Err(Diagnostic::error(
            file,
            doc_start,
            Code::MissingField,
            "document has no `kind` (one of Installation, Server, ActiveDirectory, HealthCheck, Notifications, UpgradePolicy)",
        )));
    };
    match header.api_version {
        Some(v) if v.value == API_VERSION => {}
        Some(v) => {
            return Some(Err(Diagnostic::error(
                file,
                v.pos,
                Code::ApiVersion,
                format!(
                    "unsupported apiVersion {}; this release reads `{API_VERSION}`",
                    quote(&v.value)
                ),
            )))
        }
        None => {
            return Some(Err(Diagnostic::error(
                file,
                doc_start,
                Code::MissingField,
                format!("document has no `apiVersion` (expected `{API_VERSION}`)"),
            )))
        }
    }
    let parsed = with_line_offset(first_line, || match kind.value.as_str() {
        "Installation" => typed(text).map(|d| Ok(Resource::Installation(d))),
        "Server" => typed(text).map(|d| Ok(Resource::Server(d))),
        "ActiveDirectory" => typed(text).map(|d| Ok(Resource::ActiveDirectory(d))),
        "HealthCheck" => typed(text).map(|d| Ok(Resource::HealthCheck(d))),
        "Notifications" => typed(text).map(|d| Ok(Resource::Notifications(d))),
        "UpgradePolicy" => typed(text).map(|d| Ok(Resource::UpgradePolicy(d))),
        other => Ok(Err(Diagnostic::error(
            file,
            kind.pos,
            Code::UnknownKind,
            format!(
                "unknown kind {}; expected one of {}",
                quote(other),
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
    let (code, message) = match message {
        // Ports are the only `u16` fields and counts the only `u32` ones.
        "invalid u16" => (Code::InvalidPort, PORT_RANGE.to_owned()),
        "invalid u32" => (
            Code::InvalidCount,
            "must be a whole number from 1 to 4294967295".to_owned(),
        ),
        other => (classify(other), shorten_quoted(other)),
    };
    Diagnostic::error(file, pos, code, message)
}

/// The one wording of a port's range, wherever a port is checked.
pub(crate) const PORT_RANGE: &str = "port must be a whole number from 1 to 65535";

/// Parser messages quote user text in backticks (an unknown field's name, an unknown
/// variant): shorten and escape each quoted part like any other user value.
fn shorten_quoted(message: &str) -> String {
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                // `quote` brings its own backticks.
                let q = quote(part);
                q[1..q.len() - 1].to_owned()
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
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

fn classify(message: &str) -> Code {
    if message.starts_with("unknown field") {
        Code::UnknownField
    } else if message.starts_with("missing field") {
        Code::MissingField
    } else if message.starts_with("unknown variant") {
        Code::InvalidValue
    } else if message.starts_with("duplicate mapping key") {
        Code::DuplicateKey
    } else if message.contains("must be a reference")
        || message.starts_with("`env:")
        || message.starts_with("`file:")
    {
        Code::SecretReference
    } else if message.starts_with("invalid") || message.starts_with("expected") {
        Code::InvalidType
    } else {
        Code::YamlSyntax
    }
}

/// Integer fields must be written as plain decimal numbers. The parser also turns
/// `"7001"` (a string), `0x1b59`, `0o15531` and `7_001` into an integer, which hides a
/// typo or makes a port hard to review, so the text as written is checked.
fn check_plain_integers(
    file: &Path,
    resource: &Resource,
    chunk: &Chunk<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let mut check = |field: &str, pos: Option<Pos>, code: Code| {
        let Some(raw) = pos.and_then(|pos| raw_scalar(chunk, pos)) else {
            return;
        };
        if !is_plain_decimal(raw) {
            out.push(Diagnostic::error(
                file,
                pos.unwrap_or_default(),
                code,
                format!(
                    "{field} must be written as a plain whole number (like 7001), not {}",
                    quote(raw)
                ),
            ));
        }
    };
    match resource {
        Resource::Installation(d) => check(
            "database.port",
            d.spec.database.port.as_ref().map(|p| p.pos),
            Code::InvalidPort,
        ),
        Resource::Server(d) => {
            for svc in &d.spec.services {
                check("port", svc.port.as_ref().map(|p| p.pos), Code::InvalidPort);
            }
        }
        Resource::HealthCheck(d) => {
            for (field, value) in [
                ("rise", &d.spec.rise),
                ("fall", &d.spec.fall),
                ("minimumHealthy", &d.spec.minimum_healthy),
            ] {
                check(field, value.as_ref().map(|v| v.pos), Code::InvalidCount);
            }
        }
        Resource::Notifications(d) => check(
            "smtp.port",
            d.spec.smtp.port.as_ref().map(|p| p.pos),
            Code::InvalidPort,
        ),
        Resource::UpgradePolicy(d) => check(
            "maxUnavailable",
            d.spec.max_unavailable.as_ref().map(|v| v.pos),
            Code::InvalidCount,
        ),
        Resource::ActiveDirectory(_) => {}
    }
}

/// The scalar written at `pos` (a file position inside `chunk`), up to the next flow
/// delimiter, blank or comment.
fn raw_scalar<'a>(chunk: &Chunk<'a>, pos: Pos) -> Option<&'a str> {
    let line = pos.line.checked_sub(chunk.first_line + 1)?;
    let text = chunk.text.lines().nth(usize::try_from(line).ok()?)?;
    let col = usize::try_from(pos.col.checked_sub(1)?).ok()?;
    let (start, _) = text.char_indices().nth(col)?;
    let rest = &text[start..];
    let end = rest.find([',', '}', ']', ' ', '\t']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// `7001`, but not `07001`, `+7001`, `7_001`, `0x1b59` or `"7001"`.
fn is_plain_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
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
    fn a_document_problem_points_at_its_first_line_of_content() {
        let mut loaded = Loaded::default();
        let text = "kind: Installation\n---\n# a comment\n\nkind: Server\nmetadata: {name: a}\n";
        load_text(Path::new("x.yaml"), text, &mut loaded);
        let missing: Vec<_> = loaded.diagnostics.iter().map(|d| d.pos()).collect();
        assert_eq!(missing, [Pos::new(1, 1), Pos::new(5, 1)]);
    }

    #[test]
    fn a_file_that_is_not_utf8_is_located_at_the_first_bad_byte() {
        let mut loaded = Loaded::default();
        load_bytes(
            Path::new("x.yaml"),
            b"kind: Server\nname: Caf\xe9\n",
            &mut loaded,
        );
        let d = &loaded.diagnostics[0];
        assert_eq!((d.code, d.pos()), (Code::Encoding, Pos::new(2, 10)));
        assert!(loaded.may_have_lost("Installation"));
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
