//! The probe against tiny MLLP servers on loopback, good and misbehaving.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use steward_hl7::{acknowledge, probe, AckCode, Hl7Error, Message, MllpCodec, ProbePhase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one connection with `reply`, which turns each received frame into a response.
async fn serve_once<F>(reply: F) -> SocketAddr
where
    F: Fn(&str) -> Option<String> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, MllpCodec::default());
        while let Some(Ok(frame)) = framed.next().await {
            match reply(&String::from_utf8_lossy(&frame)) {
                Some(answer) => framed.send(answer).await.unwrap(),
                None => return,
            }
        }
    });
    addr
}

#[tokio::test]
async fn probe_gets_aa_from_a_real_acknowledger() {
    let addr = serve_once(|msg| Some(acknowledge(msg.as_bytes(), "SRV1").1)).await;
    let outcome = probe(addr, TIMEOUT).await.unwrap();
    assert_eq!(outcome.responder, "PATIENTSECURE");
    assert_eq!(outcome.version.as_deref(), Some("2.5.1"));
    assert_eq!(outcome.control_id.len(), 20);
}

#[tokio::test]
async fn probe_reports_application_error() {
    let addr = serve_once(|msg| {
        let m = Message::parse(msg).unwrap();
        Some(steward_hl7::build_ack(
            &m,
            AckCode::ApplicationError,
            Some("database down"),
            "SRV2",
        ))
    })
    .await;
    let err = probe(addr, TIMEOUT).await.unwrap_err();
    assert_eq!(err.metric_label(), "ack_ae");
    assert!(err.to_string().contains("AE (database down)"), "{err}");
}

#[tokio::test]
async fn probe_checks_the_echoed_control_id() {
    let addr =
        serve_once(|_| Some("MSH|^~\\&|X|X|S|S|||ACK^A01^ACK|1|P|2.5.1\rMSA|AA|OTHER\r".into()))
            .await;
    let err = probe(addr, TIMEOUT).await.unwrap_err();
    assert!(
        matches!(err, Hl7Error::ControlIdMismatch { ref got, .. } if got == "OTHER"),
        "{err}"
    );
    assert_eq!(err.metric_label(), "control_id_mismatch");
}

#[tokio::test]
async fn probe_refuses_a_reply_that_is_not_an_ack() {
    let addr = serve_once(|msg| Some(msg.to_owned())).await;
    let err = probe(addr, TIMEOUT).await.unwrap_err();
    assert_eq!(err.metric_label(), "not_ack");
}

#[tokio::test]
async fn probe_reports_a_close_without_answer() {
    let addr = serve_once(|_| None).await;
    let err = probe(addr, TIMEOUT).await.unwrap_err();
    assert_eq!(err.metric_label(), "closed", "{err}");
}

#[tokio::test]
async fn probe_reports_garbage_framing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await
            .unwrap();
        let _ = stream.read(&mut buf).await;
    });
    let err = probe(addr, TIMEOUT).await.unwrap_err();
    assert_eq!(err.metric_label(), "framing", "{err}");
}

#[tokio::test]
async fn probe_times_out_on_a_silent_peer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(stream);
    });
    let err = probe(addr, Duration::from_millis(200)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Hl7Error::Timeout {
                phase: ProbePhase::Receive
            }
        ),
        "{err}"
    );
    assert_eq!(err.metric_label(), "timeout");
    holder.abort();
}

#[tokio::test]
async fn probe_reports_connection_refused() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = probe(addr, TIMEOUT).await.unwrap_err();
    assert_eq!(err.metric_label(), "connect", "{err}");
}
