//! Misbehaving clients cost one task, and shutdown is clean.

mod common;

use std::time::Duration;

use common::{args, CertFiles, Running, TestCa};
use hyper::StatusCode;
use steward_lab::Timeouts;
use steward_model::catalog::ServiceKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn short_timeouts() -> Timeouts {
    Timeouts {
        handshake: Duration::from_millis(300),
        idle: Duration::from_millis(500),
        drain: Duration::from_secs(2),
    }
}

/// A lab service of `kind` on TLS with `short_timeouts`; its CA and certificate files.
async fn serving_tls(kind: ServiceKind) -> (TestCa, CertFiles, Running) {
    let ca = TestCa::new();
    let files = CertFiles::new(&ca.leaf("lab"));
    let running = Running::start_with(args(kind, Some(&files)), short_timeouts()).await;
    (ca, files, running)
}

/// Reads until the server closes; `None` if it does not within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut buf)).await {
        Ok(_) => Some(buf),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let (ca, _files, running) = serving_tls(ServiceKind::Health).await;
    let addr = running.addrs[0];

    let mut silent: Vec<TcpStream> = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // While they hang, everybody else is served.
    let reply = ca.client().get(addr, "/api").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);

    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(3)).await.is_some(),
            "silent client not dropped"
        );
    }
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_silent_after_the_handshake_is_dropped_after_the_idle_timeout() {
    let (ca, _files, running) = serving_tls(ServiceKind::Report).await;
    let mut tls = ca.client().raw_tls(running.addrs[0]).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "idle TLS connection not closed");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn garbage_on_the_tls_port_costs_nothing_else() {
    let (ca, _files, running) = serving_tls(ServiceKind::Fhir).await;
    let addr = running.addrs[0];

    for garbage in [
        &b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3],
        &[0u8; 4096],
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(garbage).await;
        assert!(closed_within(&mut s, Duration::from_secs(3))
            .await
            .is_some());
    }
    let reply = ca.client().get(addr, "/api").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_accepting_and_finishes_the_request_in_flight() {
    let (ca, _files, running) = serving_tls(ServiceKind::Empi).await;
    let addr = running.addrs[0];
    let client = ca.client();

    // An idle kept-alive connection and a request whose head is half sent.
    let mut idle = client.connect(addr).await.unwrap();
    assert_eq!(idle.get("/api").await.unwrap().status, StatusCode::OK);
    let mut in_flight = client.raw_tls(addr).await.unwrap();
    in_flight
        .write_all(b"GET /api HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    in_flight.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let stopping = tokio::spawn(running.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    in_flight.write_all(b"\r\n").await.unwrap();
    in_flight.flush().await.unwrap();
    let mut response = Vec::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(3), in_flight.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");

    tokio::time::timeout(Duration::from_secs(3), stopping)
        .await
        .expect("serve returns promptly")
        .unwrap()
        .unwrap();
    assert!(idle.get("/api").await.is_err(), "idle connection closed");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
