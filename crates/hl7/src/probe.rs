//! The MLLP health probe: one test message, one ACK, one verdict.

use std::fmt;
use std::time::{Duration, SystemTime};

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::{timeout_at, Instant};
use tokio_util::codec::Framed;

use crate::ack::{hl7_timestamp, new_control_id, Ack, AckCode, AckError};
use crate::mllp::{FramingError, MllpCodec};

/// The step of a probe that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbePhase {
    Connect,
    Send,
    Receive,
}

impl fmt::Display for ProbePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Send => "send",
            Self::Receive => "receive",
        })
    }
}

/// Why a probe (or an exchange) failed.
#[derive(Debug, thiserror::Error)]
pub enum Hl7Error {
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("timed out during {phase}")]
    Timeout { phase: ProbePhase },
    #[error("I/O error during {phase}: {source}")]
    Io {
        phase: ProbePhase,
        #[source]
        source: std::io::Error,
    },
    #[error("bad MLLP framing from peer: {0}")]
    Framing(#[source] FramingError),
    #[error("peer closed the connection without acknowledging")]
    Closed,
    #[error("reply is not an ACK: {0}")]
    NotAnAck(#[from] AckError),
    #[error("message not accepted: MSA-1 = {code}{}", text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    NotAccepted { code: AckCode, text: Option<String> },
    #[error("ACK is for control id `{got}`, expected `{expected}`")]
    ControlIdMismatch { expected: String, got: String },
}

impl Hl7Error {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Timeout { .. } => "timeout",
            Self::Io { .. } => "io",
            Self::Framing(_) => "framing",
            Self::Closed => "closed",
            Self::NotAnAck(_) => "not_ack",
            Self::NotAccepted { code, .. } => match code {
                AckCode::ApplicationAccept => "ack_aa",
                AckCode::ApplicationError => "ack_ae",
                AckCode::ApplicationReject => "ack_ar",
                AckCode::CommitAccept => "ack_ca",
                AckCode::CommitError => "ack_ce",
                AckCode::CommitReject => "ack_cr",
            },
            Self::ControlIdMismatch { .. } => "control_id_mismatch",
        }
    }

    fn from_framing(phase: ProbePhase, err: FramingError) -> Self {
        match err {
            FramingError::Io(source) => Self::Io { phase, source },
            other => Self::Framing(other),
        }
    }
}

/// A successful probe.
#[derive(Debug, Clone)]
pub struct ProbeOutcome {
    /// The control id sent, echoed in MSA-2.
    pub control_id: String,
    /// From sending the message to reading the ACK.
    pub round_trip: Duration,
    /// MSH-3 of the ACK: the application that answered.
    pub responder: String,
    /// MSH-12 of the ACK.
    pub version: Option<String>,
}

/// The probe's test message: an ADT^A01 for an obviously synthetic patient, marked as
/// training data (MSH-11 = `T`) so that a real receiver does not treat it as production.
pub fn probe_message(control_id: &str) -> String {
    let now = hl7_timestamp(SystemTime::now());
    format!(
        "MSH|^~\\&|STEWARD|STEWARD|PATIENTSECURE|PATIENTSECURE|{now}||ADT^A01^ADT_A01|{control_id}|T|2.5.1\r\
         EVN|A01|{now}\r\
         PID|1||STEWARD-PROBE^^^STEWARD^MR||PROBE^STEWARD\r\
         PV1|1|N\r"
    )
}

/// Connects to `addr`, sends a test ADT^A01 over MLLP and checks that the reply is an ACK
/// with MSA-1 = AA for the control id sent, all within `timeout`.
pub async fn probe<A: ToSocketAddrs>(addr: A, timeout: Duration) -> Result<ProbeOutcome, Hl7Error> {
    let deadline = Instant::now() + timeout;
    let stream = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| Hl7Error::Timeout {
            phase: ProbePhase::Connect,
        })?
        .map_err(Hl7Error::Connect)?;
    // A probe is one small write; waiting for Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, MllpCodec::default());

    let control_id = new_control_id();
    let started = Instant::now();
    timeout_at(deadline, framed.send(probe_message(&control_id)))
        .await
        .map_err(|_| Hl7Error::Timeout {
            phase: ProbePhase::Send,
        })?
        .map_err(|e| Hl7Error::from_framing(ProbePhase::Send, e))?;

    let frame = timeout_at(deadline, framed.next())
        .await
        .map_err(|_| Hl7Error::Timeout {
            phase: ProbePhase::Receive,
        })?
        .ok_or(Hl7Error::Closed)?
        .map_err(|e| Hl7Error::from_framing(ProbePhase::Receive, e))?;
    let round_trip = started.elapsed();

    let ack = Ack::parse(&String::from_utf8_lossy(&frame))?;
    if ack.code != AckCode::ApplicationAccept {
        return Err(Hl7Error::NotAccepted {
            code: ack.code,
            text: ack.text,
        });
    }
    if ack.control_id != control_id {
        return Err(Hl7Error::ControlIdMismatch {
            expected: control_id,
            got: ack.control_id,
        });
    }
    Ok(ProbeOutcome {
        control_id,
        round_trip,
        responder: ack.message.msh_field(3).unwrap_or_default().to_owned(),
        version: ack.message.version().map(str::to_owned),
    })
}
