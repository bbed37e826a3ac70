//! Inputs the `hl7_mllp` fuzz target found (fuzz/), kept as regression tests: each file in
//! `fuzz_regressions/` is one fuzz input (first byte: read size; then the byte stream a
//! peer sent). Every frame in it gets an ACK that parses back and can be sent over MLLP,
//! which is what the lab HL7 listener does with it.

use std::fs;
use std::path::Path;

use bytes::BytesMut;
use steward_hl7::{acknowledge, Ack, AckCode, MllpCodec};
use tokio_util::codec::{Decoder, Encoder};

/// The ACK of `frame`, checked the way the listener and the prober use it.
fn acknowledged(frame: &[u8]) -> (AckCode, String) {
    let (code, ack) = acknowledge(frame, "ACK1");
    let parsed = Ack::parse(&ack).unwrap_or_else(|e| panic!("ACK unreadable ({e}): {ack:?}"));
    assert_eq!(parsed.code, code, "{ack:?}");
    let mut wire = BytesMut::new();
    MllpCodec::default()
        .encode(ack.as_bytes(), &mut wire)
        .unwrap_or_else(|e| panic!("the ACK cannot be framed ({e}): {ack:?}"));
    (code, ack)
}

#[test]
fn every_fuzz_regression_input_is_acknowledged_with_a_frameable_ack() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut inputs = 0;
    for entry in fs::read_dir(&dir).expect("tests/fuzz_regressions") {
        let path = entry.expect("entry").path();
        let data = fs::read(&path).expect("input");
        let mut stream = BytesMut::from(&data[1..]);
        let mut codec = MllpCodec::new(4096);
        let mut frames = 0;
        while let Ok(Some(frame)) = codec.decode(&mut stream) {
            acknowledged(&frame);
            frames += 1;
        }
        assert!(frames > 0, "{}: no frame", path.display());
        inputs += 1;
    }
    assert!(inputs >= 2, "the committed inputs are there");
}

/// A sender's MSH-3 holding MLLP's start block: the ACK names the sender as the receiver,
/// so it must carry the byte escaped (`\X0B\`), not raw, or the listener cannot reply.
#[test]
fn a_block_character_in_an_echoed_field_is_escaped_in_the_ack() {
    let (code, ack) = acknowledged(b"MSH|^~\\&|EP\x0bIC|HOSP|PS|PS|20240101||ADT^A01|M\x0b1|P|2.5");
    assert_eq!(code, AckCode::ApplicationAccept);
    let parsed = Ack::parse(&ack).unwrap();
    assert_eq!(parsed.message.msh().field(5), Some("EP\\X0B\\IC"));
    assert_eq!(parsed.control_id, "M\\X0B\\1");
}

/// Delimiters must be printable: a control character (here the start block as the
/// subcomponent separator) makes the header unusable, answered with AR in the default
/// delimiters.
#[test]
fn a_control_character_as_a_delimiter_is_rejected() {
    let (code, ack) = acknowledged(b"MSH|^~\\\x0b|A|B|C|D|||ADT^A01|1|P|2.5");
    assert_eq!(code, AckCode::ApplicationReject);
    assert!(ack.starts_with("MSH|^~\\&|"), "{ack:?}");
}

/// A blank line before the header (some senders start with `\n`) and a bad segment later:
/// the header is fine, so the reply is AE addressed to the sender, and the code returned
/// (logged, counted) is the one sent.
#[test]
fn a_blank_line_before_the_header_does_not_lose_the_header() {
    let (code, ack) = acknowledged(b"\nMSH|^~\\&|A|B|C|D|||ADT^A01|42|P|2.5\rnot a segment");
    assert_eq!(code, AckCode::ApplicationError);
    let parsed = Ack::parse(&ack).unwrap();
    assert_eq!(parsed.message.msh().field(5), Some("A"), "{ack:?}");
    assert_eq!(parsed.control_id, "42");
}

/// `+` (or `.`) as the field separator: the time stamp's `+0000` and the default version
/// `2.5.1` steward writes into the ACK must not split its fields.
#[test]
fn delimiters_in_what_steward_writes_are_escaped() {
    for message in [
        &b"MSH+^~\\&+A+B+C+D++++1+P+2.5"[..],
        b"MSH.^~\\&.A.B.C.D....1.P.",
    ] {
        let (code, ack) = acknowledged(message);
        assert_eq!(code, AckCode::ApplicationReject, "{ack:?}"); // no MSH-9
        let parsed = Ack::parse(&ack).unwrap();
        assert_eq!(parsed.message.msh().field(9), Some("ACK"), "{ack:?}");
        assert_eq!(parsed.control_id, "1", "{ack:?}");
    }
}
