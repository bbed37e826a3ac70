//! Quoting names and text into T-SQL.
//!
//! Database and login names come from desired-state files, so they are untrusted text. Every
//! name that reaches a statement goes through [`identifier`] (what the server's
//! `QUOTENAME(name)` returns: `[` + name with `]` doubled + `]`) and every text value through
//! [`literal`] (`N'` + text with `'` doubled + `'`). Inside those delimiters no character
//! ends the token early, so `x]; DROP DATABASE y; --` stays one name.

/// The longest name SQL Server accepts (`sysname` is `nvarchar(128)`), in UTF-16 units.
pub const MAX_NAME_UNITS: usize = 128;

/// `[name]` with every `]` doubled, like `QUOTENAME(name)`.
pub fn identifier(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `N'text'` with every `'` doubled: a Unicode string literal.
pub fn literal(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// Why a name cannot be used as a SQL Server object name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_NAME_UNITS} characters (SQL Server's sysname)")]
    TooLong,
    #[error("contains a NUL or line-break character")]
    ControlCharacter,
}

/// Checks what the server itself would refuse, so the refusal is ours and precise.
/// Line breaks are refused too: a DBA reading a generated script must see each name on one
/// line, and sqlcmd reads `GO` only at the start of a line.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.encode_utf16().count() > MAX_NAME_UNITS {
        return Err(NameError::TooLong);
    }
    if name.contains(['\0', '\r', '\n']) {
        return Err(NameError::ControlCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_doubles_closing_brackets_only() {
        assert_eq!(identifier("PatientSecure"), "[PatientSecure]");
        assert_eq!(
            identifier("x]; DROP DATABASE y; --"),
            "[x]]; DROP DATABASE y; --]"
        );
        assert_eq!(identifier("[a]"), "[[a]]]");
        assert_eq!(identifier("O'Brien"), "[O'Brien]");
    }

    #[test]
    fn literal_doubles_single_quotes_only() {
        assert_eq!(literal("PatientSecure"), "N'PatientSecure'");
        assert_eq!(literal("x'; DROP LOGIN y; --"), "N'x''; DROP LOGIN y; --'");
        assert_eq!(literal("a]b"), "N'a]b'");
        assert_eq!(literal("Zürich_日本"), "N'Zürich_日本'");
    }

    #[test]
    fn names_are_checked_like_sysname() {
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name(&"a".repeat(128)), Ok(()));
        assert_eq!(check_name(&"a".repeat(129)), Err(NameError::TooLong));
        // 64 characters outside the BMP are 128 UTF-16 units.
        assert_eq!(check_name(&"😀".repeat(64)), Ok(()));
        assert_eq!(check_name(&"😀".repeat(65)), Err(NameError::TooLong));
        assert_eq!(check_name("a\nGO"), Err(NameError::ControlCharacter));
        assert_eq!(check_name("x]; DROP DATABASE y; --"), Ok(()));
    }
}
