//! HL7 v2 over MLLP for steward: the framing codec, a minimal message parser, ACKs, and
//! the health probe the prober runs against an HL7 listener.
//!
//! The lab HL7 service uses the receiving half ([`MllpCodec`] + [`acknowledge`]); steward's
//! prober uses [`probe`].

pub mod ack;
pub mod message;
pub mod mllp;
pub mod probe;

pub use ack::{acknowledge, build_ack, new_control_id, Ack, AckCode, AckError};
pub use message::{Delimiters, Message, MessageType, ParseError, Segment};
pub use mllp::{FramingError, MllpCodec, DEFAULT_MAX_FRAME_LEN};
pub use probe::{probe, probe_message, Hl7Error, ProbeOutcome, ProbePhase};
