//! Values that remember where they were written.
//!
//! Every scalar a user can get wrong is wrapped in [`Located`], so that a semantic rule
//! (say, "this port is already used on app1") can point at the exact line and column of
//! the offending value, not just at the document.

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer};

/// A 1-based line and column in a desired-state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const fn new(line: u32, col: u32) -> Self {
        Self { line, col }
    }

    /// Shift a position found in one document of a multi-document file by the number of
    /// lines that precede that document.
    pub fn offset_lines(self, lines: u32) -> Self {
        Self {
            line: self.line + lines,
            col: self.col,
        }
    }

    pub(crate) fn from_saphyr(loc: &serde_saphyr::Location) -> Self {
        Self {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            col: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A deserialized value and the position of its first character.
///
/// Equality and hashing look at the value only: two snapshots that differ only in
/// formatting are the same desired state.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Located<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Self { value, pos }
    }

    /// A value that was not written in any file (a default), placed at `pos`.
    pub fn at(value: T, pos: Pos) -> Self {
        Self { value, pos }
    }
}

impl<T> Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Located<T> {}

thread_local! {
    /// Lines preceding the document being parsed in its file. The loader parses one
    /// document of a multi-document file at a time (so one broken document does not hide
    /// the others); the parser counts lines from that document's start, and this offset
    /// turns them back into file lines. Deserialization is synchronous, so a thread-local
    /// set around one parse is exact.
    static LINE_OFFSET: Cell<u32> = const { Cell::new(0) };
}

/// Run `parse` with positions offset by `lines`.
pub(crate) fn with_line_offset<R>(lines: u32, parse: impl FnOnce() -> R) -> R {
    let previous = LINE_OFFSET.with(|o| o.replace(lines));
    let result = parse();
    LINE_OFFSET.with(|o| o.set(previous));
    result
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        let offset = LINE_OFFSET.with(Cell::get);
        Ok(Self {
            pos: Pos::from_saphyr(&spanned.referenced).offset_lines(offset),
            value: spanned.value,
        })
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Located<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }
}
