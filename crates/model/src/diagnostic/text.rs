//! User text inside diagnostics: shortened and made inert.
//!
//! Diagnostics are printed on terminals, written to logs on every rejected load and served
//! by the status API, so a value from a file must not be able to grow them without bound
//! (a 50 MB name) or to forge output: a newline followed by `x.yaml:1:1: error[...]`
//! fakes a diagnostic line, and ANSI escape sequences rewrite the terminal.

use std::fmt::Write as _;

/// Characters of a user value kept when quoting it.
pub const QUOTE_MAX_CHARS: usize = 64;

/// Characters of a whole message kept: a backstop for text not built with [`quote`].
pub const MESSAGE_MAX_CHARS: usize = 512;

/// A user value for a message: in backticks, at most [`QUOTE_MAX_CHARS`] characters (then
/// `…`), control characters escaped.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(QUOTE_MAX_CHARS * 2) + 2);
    out.push('`');
    push_escaped(&mut out, value, QUOTE_MAX_CHARS);
    out.push('`');
    out
}

/// `text` with control characters escaped and cut at `max_chars` (then `…`).
pub fn escape(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(2)));
    push_escaped(&mut out, text, max_chars);
    out
}

/// Whether `text` would be changed by [`escape`] with this limit: the common case (plain
/// ASCII message of reasonable length) avoids a copy.
fn is_inert(text: &str, max_chars: usize) -> bool {
    text.len() <= max_chars && !text.chars().any(needs_escape)
}

/// `text` made inert, borrowing when it already is.
pub(crate) fn sanitize(text: String, max_chars: usize) -> String {
    if is_inert(&text, max_chars) {
        text
    } else {
        escape(&text, max_chars)
    }
}

fn push_escaped(out: &mut String, text: &str, max_chars: usize) {
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            return;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Control characters (C0, DEL, C1: ESC starts ANSI sequences) and the invisible
/// direction overrides that make text display in another order than it is stored.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_with_an_ellipsis() {
        let q = quote(&"a".repeat(10_000));
        assert_eq!(q, format!("`{}…`", "a".repeat(QUOTE_MAX_CHARS)));
        assert_eq!(quote("app1"), "`app1`");
        let exact = "b".repeat(QUOTE_MAX_CHARS);
        assert_eq!(quote(&exact), format!("`{exact}`"));
    }

    #[test]
    fn control_characters_cannot_forge_lines_or_colours() {
        let q = quote("x\nx.yaml:1:1: error[fake]: \u{1b}[31mred\u{7}\t\u{202e}");
        assert!(!q.chars().any(char::is_control), "{q}");
        assert_eq!(
            q,
            "`x\\nx.yaml:1:1: error[fake]: \\u{1b}[31mred\\u{7}\\t\\u{202e}`"
        );
        // Multi-byte characters are counted, not cut in half.
        assert_eq!(quote(&"é".repeat(70)).chars().count(), QUOTE_MAX_CHARS + 3);
    }

    #[test]
    fn plain_messages_are_kept_as_they_are() {
        let m = "port 7001 is already used".to_owned();
        assert_eq!(sanitize(m.clone(), MESSAGE_MAX_CHARS), m);
        let long = "x".repeat(MESSAGE_MAX_CHARS + 1);
        assert_eq!(
            sanitize(long, MESSAGE_MAX_CHARS).chars().count(),
            MESSAGE_MAX_CHARS + 1
        );
    }
}
