//! A byte stream from an HL7 peer, cut into reads of fuzzer-chosen sizes, through the MLLP
//! codec the lab HL7 listener uses; every frame is acknowledged as the listener does and the
//! ACK must be one the prober reads back. The message parser and its accessors get every
//! frame too, and a payload that can be framed comes back unchanged from encode + decode.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use steward_hl7::{acknowledge, Ack, Message, MllpCodec};
use tokio_util::codec::{Decoder, Encoder};

/// Small, so the size limit is reached within a fuzz input.
const MAX_FRAME: usize = 4096;

fn check_frame(frame: &[u8]) {
    let text = String::from_utf8_lossy(frame);
    if let Ok(message) = Message::parse(&text) {
        let _ = (
            message.message_type(),
            message.control_id(),
            message.version(),
        );
        for segment in message.segments() {
            for n in 0..segment.field_count().min(32) {
                if let Some(field) = segment.field(n) {
                    let _ = message.component(field, n % 4);
                }
            }
        }
    }
    let (code, ack) = acknowledge(frame, "FUZZACK1");
    let parsed = Ack::parse(&ack).unwrap_or_else(|e| panic!("own ACK unreadable ({e}): {ack:?}"));
    assert_eq!(parsed.code, code, "ACK code in {ack:?}");
    // And it can be sent back over MLLP.
    let mut out = BytesMut::new();
    MllpCodec::default()
        .encode(ack.as_bytes(), &mut out)
        .unwrap_or_else(|e| panic!("own ACK cannot be framed ({e}): {ack:?}"));
}

/// The frames `stream` decodes to when it arrives in reads of `chunk` bytes, and whether
/// the stream was refused.
fn frames(stream: &[u8], chunk: usize) -> (Vec<bytes::Bytes>, bool) {
    let mut codec = MllpCodec::new(MAX_FRAME);
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        buffer.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buffer) {
            Ok(Some(frame)) => out.push(frame),
            Ok(None) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    // Reads of 1..=256 bytes: a stream arriving in pieces decodes like one in a single read.
    let (pieces, refused) = frames(stream, usize::from(cut) + 1);
    let whole = frames(stream, stream.len().max(1));
    assert_eq!(
        (&pieces, refused),
        (&whole.0, whole.1),
        "read size changed the result"
    );
    for frame in &pieces {
        assert!(frame.len() <= MAX_FRAME, "frame over the limit");
        check_frame(frame);
    }

    // Round trip of the whole input as one payload.
    let mut framed = BytesMut::new();
    let payload = bytes::Bytes::copy_from_slice(stream);
    if MllpCodec::new(usize::MAX)
        .encode(payload, &mut framed)
        .is_ok()
    {
        let frame = MllpCodec::new(usize::MAX)
            .decode(&mut framed)
            .expect("a frame the codec wrote decodes")
            .expect("a whole frame is there");
        assert_eq!(&frame[..], stream);
    }
});
