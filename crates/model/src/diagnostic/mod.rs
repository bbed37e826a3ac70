//! Located problems in a desired-state directory, printed as
//! `FILE:LINE:COL: error[CODE]: message`.

mod code;
mod text;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

pub use code::Code;
pub use text::{escape, quote, MESSAGE_MAX_CHARS, QUOTE_MAX_CHARS};

use crate::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, pointing at the offending value.
///
/// The message is made inert when the diagnostic is built (control characters escaped,
/// length capped) and the file name when it is shown, so every output (terminal, log, the
/// status API) is safe whatever the files hold; values inside messages are quoted with
/// [`quote`], which also shortens them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Relative to the desired-state directory; `.` for problems of the whole directory.
    #[serde(serialize_with = "serialize_file")]
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    pub severity: Severity,
    pub code: Code,
    pub message: String,
}

impl Diagnostic {
    pub fn error(
        file: impl Into<PathBuf>,
        pos: Pos,
        code: Code,
        message: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Error, file, pos, code, message)
    }

    pub fn warning(
        file: impl Into<PathBuf>,
        pos: Pos,
        code: Code,
        message: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Warning, file, pos, code, message)
    }

    fn new(
        severity: Severity,
        file: impl Into<PathBuf>,
        pos: Pos,
        code: Code,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line: pos.line,
            column: pos.col,
            severity,
            code,
            message: text::sanitize(message.into(), MESSAGE_MAX_CHARS),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn pos(&self) -> Pos {
        Pos::new(self.line, self.column)
    }

    /// The file name as printed: lossy UTF-8, control characters escaped.
    pub fn file_display(&self) -> String {
        display_path(&self.file)
    }
}

/// A path as diagnostics print it. File names come from the directory and may hold any
/// byte but `/` and NUL, newlines included.
pub fn display_path(path: &Path) -> String {
    text::sanitize(path.to_string_lossy().into_owned(), usize::MAX)
}

fn serialize_file<S: Serializer>(file: &Path, s: S) -> Result<S::Ok, S::Error> {
    // Not `PathBuf`'s own impl: it fails on a name that is not UTF-8.
    s.serialize_str(&display_path(file))
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}[{}]: {}",
            self.file_display(),
            self.line,
            self.column,
            self.code,
            self.message
        )
    }
}

/// Sort for output: by file, then position, then code, so runs are reproducible.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.code.as_str()).cmp(&(
            &b.file,
            b.line,
            b.column,
            b.code.as_str(),
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_file_name_or_message_stays_on_one_line() {
        let d = Diagnostic::error(
            "a\nb.yaml:1:1: error[fake]: \u{1b}[2J.yaml",
            Pos::new(1, 1),
            Code::Unreadable,
            "value \u{1b}[31m\nnext",
        );
        let shown = d.to_string();
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(!shown.chars().any(char::is_control), "{shown}");
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains(r#""file":"a\\nb.yaml"#), "{json}");
        assert!(json.contains(r#""code":"unreadable""#), "{json}");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_name_that_is_not_utf8_still_serializes() {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"bad\xff.yaml");
        let d = Diagnostic::error(name, Pos::new(1, 1), Code::Encoding, "x");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["file"], "bad\u{fffd}.yaml");
    }
}
