//! Located problems in a desired-state directory, printed as
//! `FILE:LINE:COL: error[CODE]: message`.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A stable, documented identifier of a rule. Bounded: safe as a metric label.
pub type Code = &'static str;

/// One problem, pointing at the offending value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Relative to the desired-state directory; `.` for problems of the whole directory.
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
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn pos(&self) -> Pos {
        Pos::new(self.line, self.column)
    }
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
            self.file.display(),
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
        (&a.file, a.line, a.column, a.code).cmp(&(&b.file, b.line, b.column, b.code))
    });
}
