//! Acknowledgements: building the ACK a receiver owes a sender, and reading one back.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::message::{Delimiters, Message, ParseError};
use crate::mllp::{END_BLOCK, START_BLOCK};

/// The version put in an ACK when the original did not say which it speaks.
pub const DEFAULT_VERSION: &str = "2.5.1";

/// MSA-1. `Application*` codes are original-mode acknowledgements, `Commit*` the
/// enhanced-mode accept acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// AA
    ApplicationAccept,
    /// AE: the message was understood but its content is in error.
    ApplicationError,
    /// AR: the message header was unacceptable (type, version, control id ...).
    ApplicationReject,
    /// CA
    CommitAccept,
    /// CE
    CommitError,
    /// CR
    CommitReject,
}

impl AckCode {
    pub const ALL: [AckCode; 6] = [
        Self::ApplicationAccept,
        Self::ApplicationError,
        Self::ApplicationReject,
        Self::CommitAccept,
        Self::CommitError,
        Self::CommitReject,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApplicationAccept => "AA",
            Self::ApplicationError => "AE",
            Self::ApplicationReject => "AR",
            Self::CommitAccept => "CA",
            Self::CommitError => "CE",
            Self::CommitReject => "CR",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a reply is not a usable ACK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("reply is not a valid HL7 message: {0}")]
    Parse(#[from] ParseError),
    #[error("reply is a `{message_type}` message, not an ACK")]
    NotAnAck { message_type: String },
    #[error("ACK has no MSA segment")]
    MissingMsa,
    #[error("ACK has an unknown MSA-1 acknowledgement code `{0}`")]
    UnknownCode(String),
}

impl AckError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Parse(_) => "unparsable",
            Self::NotAnAck { .. } => "not_ack",
            Self::MissingMsa => "missing_msa",
            Self::UnknownCode(_) => "unknown_ack_code",
        }
    }
}

/// A parsed acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// MSA-1.
    pub code: AckCode,
    /// MSA-2: the control id of the message acknowledged.
    pub control_id: String,
    /// MSA-3, if the responder explained itself.
    pub text: Option<String>,
    /// The whole reply, for its header (MSH-3 names the responder).
    pub message: Message,
}

impl Ack {
    pub fn parse(text: &str) -> Result<Self, AckError> {
        let message = Message::parse(text)?;
        let message_type = message.message_type();
        if message_type.as_ref().map(|t| t.code.as_str()) != Some("ACK") {
            return Err(AckError::NotAnAck {
                message_type: message_type
                    .map(|t| format!("{}^{}", t.code, t.trigger))
                    .unwrap_or_default(),
            });
        }
        let msa = message.segment("MSA").ok_or(AckError::MissingMsa)?;
        let raw_code = msa.field(1).unwrap_or_default();
        let code =
            AckCode::parse(raw_code).ok_or_else(|| AckError::UnknownCode(raw_code.to_owned()))?;
        let control_id = msa.field(2).unwrap_or_default().to_owned();
        let text = msa.field(3).filter(|t| !t.is_empty()).map(str::to_owned);
        Ok(Self {
            code,
            control_id,
            text,
            message,
        })
    }
}

/// Builds the ACK for `original`: its sender becomes the receiver, its delimiters, version
/// and processing id are reused, and MSA-2 echoes its control id.
pub fn build_ack(
    original: &Message,
    code: AckCode,
    text: Option<&str>,
    ack_control_id: &str,
) -> String {
    let d = original.delimiters();
    let field = |n| original.msh_field(n).unwrap_or_default();
    let message_type = match original.message_type() {
        Some(t) if !t.trigger.is_empty() => {
            format!("ACK{c}{}{c}ACK", t.trigger, c = d.component)
        }
        _ => "ACK".to_owned(),
    };
    let processing_id = Some(field(11)).filter(|p| !p.is_empty()).unwrap_or("P");
    // What steward writes itself is escaped: any non-alphanumeric character may be a
    // delimiter of the original (`+` or `.` as the field separator would split the time
    // stamp's offset or the version).
    let version = match field(12) {
        "" => d.escape(DEFAULT_VERSION),
        v => v.to_owned(),
    };
    let header = [
        field(5),
        field(6),
        field(3),
        field(4),
        &d.escape(&hl7_timestamp(SystemTime::now())),
        "",
        &message_type,
        &d.escape(ack_control_id),
        processing_id,
        &version,
    ];
    ack_text(d, &header, code, field(10), text)
}

/// The reply a receiver sends for any frame it got: AA for a well-formed message, AR when
/// the header is unusable (so the sender does not retry it unchanged), AE when the header
/// is fine but a later segment is not.
pub fn acknowledge(frame: &[u8], ack_control_id: &str) -> (AckCode, String) {
    let text = String::from_utf8_lossy(frame);
    match Message::parse(&text) {
        Ok(message) => {
            let missing = [
                (message.message_type().is_none(), "MSH-9 message type"),
                (message.control_id().is_none(), "MSH-10 message control id"),
                (message.version().is_none(), "MSH-12 version id"),
            ]
            .into_iter()
            .find_map(|(missing, what)| missing.then_some(what));
            match missing {
                Some(what) => {
                    let reason = format!("{what} is missing");
                    let code = AckCode::ApplicationReject;
                    (
                        code,
                        build_ack(&message, code, Some(&reason), ack_control_id),
                    )
                }
                None => {
                    let code = AckCode::ApplicationAccept;
                    (code, build_ack(&message, code, None, ack_control_id))
                }
            }
        }
        Err(err @ ParseError::BadSegmentId { .. }) => {
            // The header is the first non-blank line, as the parser found it.
            let header_only = text
                .split(['\r', '\n'])
                .find(|line| !line.trim().is_empty())
                .unwrap_or_default();
            match Message::parse(header_only) {
                Ok(header) => {
                    let code = AckCode::ApplicationError;
                    let reason = err.to_string();
                    (
                        code,
                        build_ack(&header, code, Some(&reason), ack_control_id),
                    )
                }
                Err(_) => {
                    let code = AckCode::ApplicationReject;
                    (code, headerless_ack(code, &err, ack_control_id))
                }
            }
        }
        Err(err) => {
            let code = AckCode::ApplicationReject;
            (code, headerless_ack(code, &err, ack_control_id))
        }
    }
}

/// An ACK for a message whose header could not be read, so there is nobody to address it
/// to and no control id to echo.
fn headerless_ack(code: AckCode, err: &ParseError, ack_control_id: &str) -> String {
    let d = Delimiters::default();
    let header = [
        "",
        "",
        "",
        "",
        &hl7_timestamp(SystemTime::now()),
        "",
        "ACK",
        &d.escape(ack_control_id),
        "P",
        DEFAULT_VERSION,
    ];
    ack_text(&d, &header, code, "", Some(&err.to_string()))
}

/// `header` holds MSH-3 to MSH-12, already escaped.
fn ack_text(
    d: &Delimiters,
    header: &[&str; 10],
    code: AckCode,
    acked_control_id: &str,
    text: Option<&str>,
) -> String {
    let f = d.field;
    let mut out = format!("MSH{f}{}", d.encoding_characters());
    for value in header {
        out.push(f);
        out.push_str(value);
    }
    out.push_str(&format!("\rMSA{f}{code}{f}{acked_control_id}"));
    if let Some(text) = text {
        out.push(f);
        out.push_str(&d.escape(text));
    }
    out.push('\r');
    escape_block_characters(d, out)
}

/// The fields an ACK echoes come from the sender and may hold MLLP's block characters,
/// which no frame can carry: they travel as HL7 hex escapes (`\X0B\`), so the ACK can
/// always be sent. Delimiters are never control characters (the parser refuses them), so
/// only field content is touched.
fn escape_block_characters(d: &Delimiters, text: String) -> String {
    let block = |c: char| c == char::from(START_BLOCK) || c == char::from(END_BLOCK);
    if !text.contains(block) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if block(c) {
            out.push_str(&format!("{e}X{:02X}{e}", u32::from(c), e = d.escape));
        } else {
            out.push(c);
        }
    }
    out
}

/// A control id unique enough for probes: time, process and a counter, within MSH-10's
/// 20 characters.
pub fn new_control_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xFFFF;
    let pid = std::process::id() & 0xFFFF;
    format!("S{:011X}{pid:04X}{n:04X}", millis & 0xFFF_FFFF_FFFF)
}

/// HL7 DTM in UTC, e.g. `20240101120000+0000`.
pub fn hl7_timestamp(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &str =
        "MSH|^~\\&|EPIC|HOSP|PSECURE|PS|20240101120000||ADT^A01^ADT_A01|MSG00001|T|2.3\r\
        PID|1||12345\r";

    #[test]
    fn ack_swaps_parties_and_echoes_control_id() {
        let original = Message::parse(ADT).unwrap();
        let ack = build_ack(&original, AckCode::ApplicationAccept, None, "ACK1");
        let parsed = Ack::parse(&ack).unwrap();
        let msh = parsed.message.msh();
        assert_eq!(msh.field(3), Some("PSECURE"));
        assert_eq!(msh.field(4), Some("PS"));
        assert_eq!(msh.field(5), Some("EPIC"));
        assert_eq!(msh.field(6), Some("HOSP"));
        assert_eq!(msh.field(9), Some("ACK^A01^ACK"));
        assert_eq!(msh.field(10), Some("ACK1"));
        assert_eq!(msh.field(11), Some("T"));
        assert_eq!(parsed.message.version(), Some("2.3"));
        assert_eq!(parsed.code, AckCode::ApplicationAccept);
        assert_eq!(parsed.control_id, "MSG00001");
        assert_eq!(parsed.text, None);
        assert!(ack.ends_with("\rMSA|AA|MSG00001\r"), "{ack:?}");
    }

    #[test]
    fn ack_uses_the_senders_delimiters() {
        let original = Message::parse("MSH#$*!%#A#B#C#D###ADT$A08#7#P#2.4").unwrap();
        let ack = build_ack(
            &original,
            AckCode::ApplicationError,
            Some("bad # here"),
            "9",
        );
        assert!(ack.starts_with("MSH#$*!%#C#D#A#B#"), "{ack:?}");
        let parsed = Ack::parse(&ack).unwrap();
        assert_eq!(parsed.code, AckCode::ApplicationError);
        assert_eq!(parsed.control_id, "7");
        assert_eq!(parsed.text.as_deref(), Some("bad !F! here"));
    }

    #[test]
    fn acknowledge_accepts_a_good_message() {
        let (code, ack) = acknowledge(ADT.as_bytes(), "X1");
        assert_eq!(code, AckCode::ApplicationAccept);
        assert_eq!(Ack::parse(&ack).unwrap().control_id, "MSG00001");
    }

    #[test]
    fn acknowledge_rejects_an_unusable_header() {
        let (code, ack) = acknowledge(b"MSH|^~\\&|A|B|C|D|||ADT^A01||P|2.5", "X2");
        assert_eq!(code, AckCode::ApplicationReject);
        let parsed = Ack::parse(&ack).unwrap();
        assert_eq!(parsed.code, AckCode::ApplicationReject);
        assert!(parsed.text.unwrap().contains("MSH-10"));

        let (code, ack) = acknowledge(b"GET / HTTP/1.1", "X3");
        assert_eq!(code, AckCode::ApplicationReject);
        let parsed = Ack::parse(&ack).unwrap();
        assert_eq!(parsed.control_id, "");
        assert_eq!(parsed.message.control_id(), Some("X3"));
    }

    #[test]
    fn acknowledge_flags_bad_content_as_error() {
        let (code, ack) = acknowledge(b"MSH|^~\\&|A|B|C|D|||ADT^A01|42|P|2.5\rnot a segment", "X4");
        assert_eq!(code, AckCode::ApplicationError);
        let parsed = Ack::parse(&ack).unwrap();
        assert_eq!(parsed.control_id, "42");
        assert_eq!(parsed.message.msh_field(5), Some("A"));
    }

    #[test]
    fn ack_parse_refuses_non_acks() {
        assert!(matches!(
            Ack::parse(ADT),
            Err(AckError::NotAnAck { message_type }) if message_type == "ADT^A01"
        ));
        assert_eq!(
            Ack::parse("MSH|^~\\&|A|B|C|D|||ACK|1|P|2.5").unwrap_err(),
            AckError::MissingMsa
        );
        let err = Ack::parse("MSH|^~\\&|A|B|C|D|||ACK|1|P|2.5\rMSA|ZZ|1").unwrap_err();
        assert_eq!(err, AckError::UnknownCode("ZZ".into()));
        assert_eq!(err.metric_label(), "unknown_ack_code");
        assert_eq!(Ack::parse("").unwrap_err().metric_label(), "unparsable");
    }

    #[test]
    fn every_ack_code_round_trips() {
        for code in AckCode::ALL {
            assert_eq!(AckCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(AckCode::parse("aa"), None);
    }

    #[test]
    fn control_ids_are_unique_and_fit_msh_10() {
        let a = new_control_id();
        let b = new_control_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
    }

    #[test]
    fn timestamp_is_hl7_dtm() {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_704_110_400);
        assert_eq!(hl7_timestamp(at), "20240101120000+0000");
    }
}
