//! MLLP (Minimal Lower Layer Protocol) framing: `0x0B <message> 0x1C 0x0D`.
//!
//! The codec is strict about what lies between frames so that a peer speaking another
//! protocol (TLS, HTTP) is told apart from HL7 on its first bytes instead of being buffered
//! until the size limit.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Start block.
pub const START_BLOCK: u8 = 0x0B;
/// First byte of the end block.
pub const END_BLOCK: u8 = 0x1C;
/// Second byte of the end block.
pub const CARRIAGE_RETURN: u8 = 0x0D;

/// Large enough for any ADT with embedded documents we expect, small enough that a peer
/// streaming garbage without an end block cannot make us hold much memory.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1024 * 1024;

/// Why a byte stream is not valid MLLP.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    #[error("expected MLLP start block 0x0B, got 0x{byte:02X}")]
    NoStartBlock { byte: u8 },
    #[error("MLLP frame exceeds {limit} bytes without an end block")]
    Oversize { limit: usize },
    #[error("MLLP end block 0x1C not followed by 0x0D (got 0x{byte:02X})")]
    BadEndBlock { byte: u8 },
    #[error("connection closed in the middle of an MLLP frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    #[error("message contains an MLLP block character and cannot be framed")]
    UnframeablePayload,
    #[error("MLLP I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl FramingError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NoStartBlock { .. } => "no_start_block",
            Self::Oversize { .. } => "oversize",
            Self::BadEndBlock { .. } => "bad_end_block",
            Self::Truncated { .. } => "truncated",
            Self::UnframeablePayload => "unframeable",
            Self::Io(_) => "io",
        }
    }
}

/// Decodes MLLP frames into their payloads and encodes payloads into frames.
#[derive(Debug, Clone)]
pub struct MllpCodec {
    max_frame_len: usize,
    /// How far into the buffered frame the end block has already been searched for, so a
    /// message arriving in many small reads is scanned once, not quadratically.
    scanned: usize,
}

impl Default for MllpCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl MllpCodec {
    /// `max_frame_len` bounds the payload (without the block characters).
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            max_frame_len,
            scanned: 0,
        }
    }

    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }
}

impl Decoder for MllpCodec {
    type Item = Bytes;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        if self.scanned == 0 {
            // Some senders end each frame with an extra line feed or carriage return.
            let skip = src
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            src.advance(skip);
            let Some(&first) = src.first() else {
                return Ok(None);
            };
            if first != START_BLOCK {
                return Err(FramingError::NoStartBlock { byte: first });
            }
        }
        // Payload starts at 1; the end block may straddle the previous scan boundary.
        let from = self.scanned.max(1);
        let payload_end = src[from..]
            .iter()
            .position(|&b| b == END_BLOCK)
            .map(|i| from + i);
        match payload_end {
            Some(end) => {
                let Some(&after) = src.get(end + 1) else {
                    self.scanned = end;
                    return Ok(None);
                };
                if after != CARRIAGE_RETURN {
                    return Err(FramingError::BadEndBlock { byte: after });
                }
                if end - 1 > self.max_frame_len {
                    return Err(FramingError::Oversize {
                        limit: self.max_frame_len,
                    });
                }
                let mut frame = src.split_to(end + 2);
                self.scanned = 0;
                frame.advance(1);
                frame.truncate(end - 1);
                Ok(Some(frame.freeze()))
            }
            None => {
                if src.len() - 1 > self.max_frame_len {
                    return Err(FramingError::Oversize {
                        limit: self.max_frame_len,
                    });
                }
                self.scanned = src.len();
                src.reserve(4096);
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        let trailing = src.iter().filter(|b| !matches!(b, b'\r' | b'\n')).count();
        if trailing == 0 {
            src.clear();
            return Ok(None);
        }
        Err(FramingError::Truncated {
            buffered: src.len(),
        })
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for MllpCodec {
    type Error = FramingError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), FramingError> {
        let payload = item.as_ref();
        if payload.len() > self.max_frame_len {
            return Err(FramingError::Oversize {
                limit: self.max_frame_len,
            });
        }
        if payload.iter().any(|&b| b == START_BLOCK || b == END_BLOCK) {
            return Err(FramingError::UnframeablePayload);
        }
        dst.reserve(payload.len() + 3);
        dst.put_u8(START_BLOCK);
        dst.put_slice(payload);
        dst.put_u8(END_BLOCK);
        dst.put_u8(CARRIAGE_RETURN);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = vec![START_BLOCK];
        v.extend_from_slice(payload);
        v.extend_from_slice(&[END_BLOCK, CARRIAGE_RETURN]);
        v
    }

    #[test]
    fn frame_split_across_many_reads() {
        let wire = frame(b"MSH|^~\\&|A\rPID|1\r");
        let mut codec = MllpCodec::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for byte in &wire {
            buf.put_u8(*byte);
            if let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, vec![Bytes::from_static(b"MSH|^~\\&|A\rPID|1\r")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn end_block_split_between_reads() {
        let mut codec = MllpCodec::default();
        let mut buf = BytesMut::from(&b"\x0bABC\x1c"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.put_u8(CARRIAGE_RETURN);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"ABC"[..]);
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut wire = frame(b"one");
        wire.extend(frame(b"two"));
        wire.extend_from_slice(b"\n");
        wire.extend(frame(b""));
        wire.extend_from_slice(&[START_BLOCK, b'p']);
        let mut codec = MllpCodec::default();
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"one"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"two"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b""[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(&buf[..], &[START_BLOCK, b'p']);
    }

    #[test]
    fn garbage_before_start_block_is_refused() {
        let mut codec = MllpCodec::default();
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, FramingError::NoStartBlock { byte: b'G' }),
            "{err}"
        );
        assert_eq!(err.metric_label(), "no_start_block");
    }

    #[test]
    fn end_block_without_carriage_return_is_refused() {
        let mut codec = MllpCodec::default();
        let mut buf = BytesMut::from(&b"\x0bABC\x1cX"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FramingError::BadEndBlock { byte: b'X' })
        ));
    }

    #[test]
    fn oversize_frame_is_refused_before_its_end_arrives() {
        let mut codec = MllpCodec::new(8);
        let mut buf = BytesMut::from(&b"\x0b12345678"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.put_u8(b'9');
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FramingError::Oversize { limit: 8 })
        ));
        let mut exact = BytesMut::from(&frame(b"12345678")[..]);
        assert_eq!(
            MllpCodec::new(8).decode(&mut exact).unwrap().unwrap(),
            &b"12345678"[..]
        );
    }

    #[test]
    fn eof_mid_frame_is_truncated_and_clean_eof_is_not() {
        let mut codec = MllpCodec::default();
        let mut buf = BytesMut::from(&b"\x0bMSH|"[..]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FramingError::Truncated { buffered: 5 })
        ));
        let mut codec = MllpCodec::default();
        let mut buf = BytesMut::from(&b"\r\n"[..]);
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn encode_wraps_and_refuses_block_characters() {
        let mut codec = MllpCodec::default();
        let mut dst = BytesMut::new();
        codec.encode(b"MSH|x", &mut dst).unwrap();
        assert_eq!(&dst[..], &frame(b"MSH|x")[..]);
        assert!(matches!(
            codec.encode(b"a\x1cb", &mut dst),
            Err(FramingError::UnframeablePayload)
        ));
        assert!(matches!(
            MllpCodec::new(2).encode(b"abc", &mut dst),
            Err(FramingError::Oversize { limit: 2 })
        ));
    }
}
