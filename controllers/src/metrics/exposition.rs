//! The Prometheus text exposition format (0.0.4), written directly: a family's header,
//! label sets and sample values. What `promtool check metrics` and every Prometheus read.

/// A sample's value, printed the way Prometheus parses it back exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    /// Millionths (durations in seconds, to the microsecond): exact in decimal, so
    /// printed without float formatting.
    Micros(u64),
    Float(f64),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl Value {
    pub(crate) fn push(self, out: &mut Vec<u8>) {
        match self {
            Self::Int(v) => {
                if v < 0 {
                    out.push(b'-');
                }
                push_digits(out, v.unsigned_abs(), 1);
            }
            Self::Micros(v) => {
                push_digits(out, v / 1_000_000, 1);
                let mut fraction = v % 1_000_000;
                if fraction > 0 {
                    let mut width = 6;
                    while fraction % 10 == 0 {
                        fraction /= 10;
                        width -= 1;
                    }
                    out.push(b'.');
                    push_digits(out, fraction, width);
                }
            }
            Self::Float(v) => push_float(out, v),
        }
    }
}

/// `value` in decimal, zero-padded to `width` digits.
fn push_digits(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut at = buf.len();
    while value > 0 || buf.len() - at < width {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(&buf[at..]);
}

/// Rust prints the shortest decimal that reads back as the same `f64`, never in exponent
/// form; only the infinities are spelled differently in the format.
pub(crate) fn push_float(out: &mut Vec<u8>, v: f64) {
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        out.extend_from_slice(v.to_string().as_bytes());
    }
}

/// `# HELP` and `# TYPE` of one family.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    for part in ["# HELP ", name, " "] {
        out.extend_from_slice(part.as_bytes());
    }
    // HELP escapes backslash and newline (label values also escape the double quote).
    out.extend_from_slice(help.replace('\\', "\\\\").replace('\n', "\\n").as_bytes());
    for part in ["\n# TYPE ", name, " ", kind, "\n"] {
        out.extend_from_slice(part.as_bytes());
    }
}

/// `a="x",b="y"` (no braces), values escaped.
pub(crate) fn label_pairs(names: &[&str], values: &[&str]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(
            &value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n"),
        );
        out.push('"');
    }
    out
}

/// `{pairs}`, or nothing for a series without labels.
pub(crate) fn braced(pairs: &str) -> String {
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{pairs}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: Value) -> String {
        let mut out = Vec::new();
        value.push(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_print_as_their_f64_reads_back() {
        // Integers up to 2^53 (status codes, timestamps, 0 and 1) are exact in an f64.
        for v in [0, 1, -1, 9, 10, 200, 503, 1_900_000_000, 1 << 53, -40] {
            assert_eq!(text(Value::Int(v)), (v as f64).to_string());
        }
        for v in [
            0, 1, 10, 1234, 2300, 500_000, 1_000_000, 12_345_678, 999_999,
        ] {
            assert_eq!(text(Value::Micros(v)), (v as f64 / 1e6).to_string(), "{v}");
        }
        assert_eq!(text(Value::Float(0.005)), "0.005");
        assert_eq!(text(Value::Float(1_700_000_000.25)), "1700000000.25");
        assert_eq!(text(Value::Float(f64::INFINITY)), "+Inf");
        assert_eq!(text(Value::Float(f64::NEG_INFINITY)), "-Inf");
        assert_eq!(text(Value::Float(f64::NAN)), "NaN");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(
            label_pairs(&["a", "b"], &["x\"y", "back\\slash\nline"]),
            r#"a="x\"y",b="back\\slash\nline""#
        );
        assert_eq!(braced(""), "");
        let mut out = Vec::new();
        push_header(&mut out, "steward_x", "two\nlines \\ here", "gauge");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# HELP steward_x two\\nlines \\\\ here\n# TYPE steward_x gauge\n"
        );
    }
}
