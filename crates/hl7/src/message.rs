//! A minimal HL7 v2 message parser: enough to route, acknowledge and check ACKs.
//!
//! Fields are kept raw (still escaped); only the delimiters declared in MSH-1/MSH-2 are
//! interpreted, because a receiver has to honour whatever the sender declared.

/// The delimiters a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
        }
    }
}

impl Delimiters {
    /// MSH-2 as written on the wire.
    pub fn encoding_characters(&self) -> String {
        [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ]
        .iter()
        .collect()
    }

    /// Escapes text so it can be placed in a field without changing the structure.
    pub fn escape(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            let seq = match c {
                c if c == self.escape => 'E',
                c if c == self.field => 'F',
                c if c == self.component => 'S',
                c if c == self.repetition => 'R',
                c if c == self.subcomponent => 'T',
                // A segment terminator inside a field would split the segment.
                '\r' | '\n' => {
                    out.push(' ');
                    continue;
                }
                c => {
                    out.push(c);
                    continue;
                }
            };
            out.push(self.escape);
            out.push(seq);
            out.push(self.escape);
        }
        out
    }
}

/// Why a message cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message is empty")]
    Empty,
    #[error("message does not start with an MSH segment")]
    NoMsh,
    #[error("MSH-1/MSH-2 do not declare usable delimiters")]
    BadDelimiters,
    #[error("segment {index} has an invalid segment id `{id}`")]
    BadSegmentId { index: usize, id: String },
}

impl ParseError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NoMsh => "no_msh",
            Self::BadDelimiters => "bad_delimiters",
            Self::BadSegmentId { .. } => "bad_segment_id",
        }
    }
}

/// One segment: its id and its fields, numbered as HL7 numbers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    id: String,
    /// For MSH, `fields[0]` is MSH-1 (the field separator) and `fields[1]` MSH-2; for every
    /// other segment `fields[0]` is field 1. Either way `field(n)` is `fields[n - 1]`.
    fields: Vec<String>,
}

impl Segment {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Field `n` (1-based, HL7 numbering), raw. Empty fields are `Some("")`.
    pub fn field(&self, n: usize) -> Option<&str> {
        n.checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .map(String::as_str)
    }

    /// The number of the last field present.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }
}

/// A parsed HL7 v2 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    delimiters: Delimiters,
    segments: Vec<Segment>,
}

/// MSH-9 split into its components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageType {
    /// MSH-9.1, e.g. `ADT` or `ACK`.
    pub code: String,
    /// MSH-9.2, e.g. `A01`; may be empty.
    pub trigger: String,
    /// MSH-9.3, e.g. `ADT_A01`; may be empty.
    pub structure: String,
}

impl Message {
    /// Parses the segments of a message; segments are separated by `\r` (a `\n` after it,
    /// which some tools add, is tolerated).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut lines = text
            .split(['\r', '\n'])
            .filter(|line| !line.trim().is_empty());
        let msh = lines.next().ok_or(ParseError::Empty)?;
        if !msh.starts_with("MSH") {
            return Err(ParseError::NoMsh);
        }
        let delimiters = parse_delimiters(msh)?;
        let mut segments = vec![split_segment(msh, &delimiters, true)];
        for (i, line) in lines.enumerate() {
            let segment = split_segment(line, &delimiters, false);
            if !is_segment_id(&segment.id) {
                return Err(ParseError::BadSegmentId {
                    index: i + 2,
                    id: segment.id.chars().take(8).collect(),
                });
            }
            segments.push(segment);
        }
        Ok(Self {
            delimiters,
            segments,
        })
    }

    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    pub fn msh(&self) -> &Segment {
        &self.segments[0]
    }

    /// MSH-`n`, raw; `None` when absent, `Some("")` when empty.
    pub fn msh_field(&self, n: usize) -> Option<&str> {
        self.msh().field(n)
    }

    /// MSH-`n` if present and not empty.
    fn msh_value(&self, n: usize) -> Option<&str> {
        self.msh_field(n).filter(|v| !v.is_empty())
    }

    /// Component `c` (1-based) of a raw field.
    pub fn component<'a>(&self, field: &'a str, c: usize) -> Option<&'a str> {
        c.checked_sub(1)
            .and_then(|i| field.split(self.delimiters.component).nth(i))
    }

    /// MSH-9, when it names at least a message code.
    pub fn message_type(&self) -> Option<MessageType> {
        let raw = self.msh_value(9)?;
        let part = |c| self.component(raw, c).unwrap_or("").to_owned();
        let code = part(1);
        if code.is_empty() {
            return None;
        }
        Some(MessageType {
            code,
            trigger: part(2),
            structure: part(3),
        })
    }

    /// MSH-10.
    pub fn control_id(&self) -> Option<&str> {
        self.msh_value(10)
    }

    /// MSH-11, processing id (`P`, `T`, `D`).
    pub fn processing_id(&self) -> Option<&str> {
        self.msh_value(11).and_then(|v| self.component(v, 1))
    }

    /// MSH-12.1, e.g. `2.5.1`.
    pub fn version(&self) -> Option<&str> {
        self.msh_value(12)
            .and_then(|v| self.component(v, 1))
            .filter(|v| !v.is_empty())
    }
}

fn parse_delimiters(msh: &str) -> Result<Delimiters, ParseError> {
    let mut chars = msh.chars().skip(3);
    let field = chars.next().ok_or(ParseError::BadDelimiters)?;
    let encoding: Vec<char> = chars.take_while(|&c| c != field).collect();
    // MSH-2 has four characters (five with the v2.7 truncation character, ignored here).
    if encoding.len() < 4 || field.is_alphanumeric() {
        return Err(ParseError::BadDelimiters);
    }
    let delimiters = Delimiters {
        field,
        component: encoding[0],
        repetition: encoding[1],
        escape: encoding[2],
        subcomponent: encoding[3],
    };
    let mut all = [
        delimiters.field,
        delimiters.component,
        delimiters.repetition,
        delimiters.escape,
        delimiters.subcomponent,
    ];
    all.sort_unstable();
    // Control characters are refused too: MLLP's block characters among them could never
    // be framed in a reply that has to use the same delimiters.
    if all.windows(2).any(|w| w[0] == w[1])
        || all.iter().any(|c| c.is_alphanumeric() || c.is_control())
    {
        return Err(ParseError::BadDelimiters);
    }
    Ok(delimiters)
}

fn split_segment(line: &str, d: &Delimiters, is_msh: bool) -> Segment {
    let mut parts = line.split(d.field);
    let id = parts.next().unwrap_or_default().to_owned();
    let mut fields = Vec::new();
    if is_msh {
        fields.push(d.field.to_string());
    }
    fields.extend(parts.map(str::to_owned));
    Segment { id, fields }
}

fn is_segment_id(id: &str) -> bool {
    id.len() == 3
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &str =
        "MSH|^~\\&|EPIC|HOSP|PSECURE|PS|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5.1\r\
        EVN|A01|20240101120000\r\
        PID|1||12345^^^HOSP^MR||DOE^JOHN\r";

    #[test]
    fn msh_fields_follow_hl7_numbering() {
        let m = Message::parse(ADT).unwrap();
        assert_eq!(m.msh_field(1), Some("|"));
        assert_eq!(m.msh_field(2), Some("^~\\&"));
        assert_eq!(m.msh_field(3), Some("EPIC"));
        assert_eq!(m.msh_field(6), Some("PS"));
        assert_eq!(m.msh_field(8), Some(""));
        assert_eq!(
            m.message_type(),
            Some(MessageType {
                code: "ADT".into(),
                trigger: "A01".into(),
                structure: "ADT_A01".into()
            })
        );
        assert_eq!(m.control_id(), Some("MSG00001"));
        assert_eq!(m.processing_id(), Some("P"));
        assert_eq!(m.version(), Some("2.5.1"));
        assert_eq!(m.msh_field(13), None);
    }

    #[test]
    fn other_segments_number_from_one() {
        let m = Message::parse(ADT).unwrap();
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.field(1), Some("1"));
        assert_eq!(pid.field(3), Some("12345^^^HOSP^MR"));
        assert_eq!(m.component(pid.field(5).unwrap(), 2), Some("JOHN"));
        assert_eq!(pid.field(0), None);
        assert_eq!(m.segments().len(), 3);
    }

    #[test]
    fn declared_delimiters_are_honoured() {
        let m = Message::parse("MSH#$*!%#A#B#C#D###ORU$R01#42#P#2.3\nOBX#1").unwrap();
        assert_eq!(m.delimiters().field, '#');
        assert_eq!(m.delimiters().component, '$');
        assert_eq!(m.message_type().unwrap().trigger, "R01");
        assert_eq!(m.control_id(), Some("42"));
        assert_eq!(m.version(), Some("2.3"));
        assert_eq!(m.segment("OBX").unwrap().field(1), Some("1"));
    }

    #[test]
    fn malformed_messages_say_why() {
        assert_eq!(Message::parse(""), Err(ParseError::Empty));
        assert_eq!(Message::parse("\r\n"), Err(ParseError::Empty));
        assert_eq!(Message::parse("PID|1"), Err(ParseError::NoMsh));
        assert_eq!(Message::parse("MSH"), Err(ParseError::BadDelimiters));
        assert_eq!(Message::parse("MSH|^~|x"), Err(ParseError::BadDelimiters));
        assert_eq!(
            Message::parse("MSH|^^\\&|x"),
            Err(ParseError::BadDelimiters)
        );
        assert_eq!(
            Message::parse("MSH|^~\\&|A\rhello world"),
            Err(ParseError::BadSegmentId {
                index: 2,
                id: "hello wo".into()
            })
        );
    }

    #[test]
    fn missing_header_fields_are_none() {
        let m = Message::parse("MSH|^~\\&|A|B|C|D|||||").unwrap();
        assert_eq!(m.message_type(), None);
        assert_eq!(m.control_id(), None);
        assert_eq!(m.version(), None);
    }

    #[test]
    fn escape_protects_structure() {
        let d = Delimiters::default();
        assert_eq!(
            d.escape("a|b^c~d\\e&f\rg"),
            "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f g"
        );
        assert_eq!(d.encoding_characters(), "^~\\&");
    }
}
