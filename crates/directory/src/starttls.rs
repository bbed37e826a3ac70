//! The StartTLS exchange (RFC 4511 4.14), done here on the raw socket rather than by
//! ldap3: its StartTLS waits forever when the server hangs up before answering, and it
//! cannot tell a refusal from a close. After a success the socket is handed to ldap3 as an
//! LDAPS connection, so the TLS handshake and everything after it is the same code path.

use ldap3::asn1::{parse_tag, StructureTag, PL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::result_name;

/// `LDAPMessage { messageID 1, ExtendedRequest { requestName 1.3.6.1.4.1.1466.20037 } }`.
const REQUEST: &[u8] = &[
    0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16, b'1', b'.', b'3', b'.', b'6', b'.', b'1',
    b'.', b'4', b'.', b'1', b'.', b'1', b'4', b'6', b'6', b'.', b'2', b'0', b'0', b'3', b'7',
];

/// A server answer larger than this is not a StartTLS response.
const MAX_RESPONSE: usize = 16 * 1024;

pub(crate) enum StartTlsFailure {
    /// Connection closed or reset before a complete answer.
    Closed,
    /// The server answered with a non-success result code.
    Refused(String),
    /// The answer is not an LDAP StartTLS response.
    Garbage(String),
}

pub(crate) async fn negotiate(stream: &mut TcpStream) -> Result<(), StartTlsFailure> {
    stream
        .write_all(REQUEST)
        .await
        .map_err(|_| StartTlsFailure::Closed)?;
    let mut buf = Vec::with_capacity(256);
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| StartTlsFailure::Closed)?;
        if n == 0 {
            return Err(StartTlsFailure::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_tag(&buf) {
            Ok((rest, tag)) => {
                check_response(tag)?;
                // The server speaks next only after our ClientHello.
                if !rest.is_empty() {
                    return Err(StartTlsFailure::Garbage(
                        "bytes after the StartTLS response".into(),
                    ));
                }
                return Ok(());
            }
            Err(e) if e.is_incomplete() && buf.len() < MAX_RESPONSE => continue,
            Err(_) => {
                return Err(StartTlsFailure::Garbage(
                    "the answer is not an LDAP message".into(),
                ))
            }
        }
    }
}

fn check_response(message: StructureTag) -> Result<(), StartTlsFailure> {
    let garbage = |why: &str| StartTlsFailure::Garbage(why.to_string());
    let PL::C(parts) = message.payload else {
        return Err(garbage("the answer is not an LDAP message"));
    };
    let mut parts = parts.into_iter();
    let id = parts.next().and_then(|t| match t.payload {
        PL::P(bytes) => Some(bytes),
        PL::C(_) => None,
    });
    let Some(op) = parts.next() else {
        return Err(garbage("the answer has no operation"));
    };
    // Message ID 0 is an unsolicited notification: the server is disconnecting us.
    if id.as_deref() == Some(&[0]) {
        return Err(StartTlsFailure::Refused(
            "the server sent a notice of disconnection".into(),
        ));
    }
    if id.as_deref() != Some(&[1]) || op.id != 24 {
        return Err(garbage("the answer is not a response to StartTLS"));
    }
    let PL::C(fields) = op.payload else {
        return Err(garbage("malformed extended response"));
    };
    let mut fields = fields.into_iter();
    let code = match fields.next().map(|t| t.payload) {
        Some(PL::P(bytes)) if !bytes.is_empty() && bytes.len() <= 4 => {
            bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
        }
        _ => return Err(garbage("malformed result code")),
    };
    if code == 0 {
        return Ok(());
    }
    let text = fields
        .nth(1)
        .and_then(|t| match t.payload {
            PL::P(bytes) => String::from_utf8(bytes).ok(),
            PL::C(_) => None,
        })
        .unwrap_or_default();
    let mut reason = format!("{} ({code})", result_name(code));
    if !text.trim().is_empty() {
        reason = format!("{reason}: {}", text.trim());
    }
    Err(StartTlsFailure::Refused(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> StructureTag {
        parse_tag(bytes).expect("BER").1
    }

    #[test]
    fn the_request_is_one_well_formed_ldap_message() {
        let (rest, tag) = parse_tag(REQUEST).unwrap();
        assert!(rest.is_empty());
        let PL::C(parts) = tag.payload else { panic!() };
        assert_eq!(parts[1].id, 23, "ExtendedRequest");
    }

    #[test]
    fn success_refusal_and_strangers_are_told_apart() {
        let ok = [
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        assert!(check_response(parse(&ok)).is_ok());
        let refused = [
            0x30, 0x0e, 0x02, 0x01, 0x01, 0x78, 0x09, 0x0a, 0x01, 53, 0x04, 0x00, 0x04, 0x02, b'n',
            b'o',
        ];
        match check_response(parse(&refused)) {
            Err(StartTlsFailure::Refused(r)) => assert_eq!(r, "unwillingToPerform (53): no"),
            _ => panic!("not a refusal"),
        }
        let other_id = [
            0x30, 0x0c, 0x02, 0x01, 0x07, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        assert!(matches!(
            check_response(parse(&other_id)),
            Err(StartTlsFailure::Garbage(_))
        ));
        let octets = [0x04, 0x02, b'h', b'i'];
        assert!(matches!(
            check_response(parse(&octets)),
            Err(StartTlsFailure::Garbage(_))
        ));
    }
}
