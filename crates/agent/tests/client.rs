//! AgentClient against peers that misbehave: nothing listening, not TLS, not HTTP, not
//! JSON, too much, or nothing at all. Each must be a typed error, never a panic or a hang.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use steward_agent::{AgentClient, ClientError};
use steward_testkit::read_request_head;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn client(pki: &Pki, addr: SocketAddr, timeout: Duration) -> AgentClient {
    AgentClient::with_mtls(
        &format!("https://localhost:{}", addr.port()),
        pki.ca.cert_pem(),
        &pki.daemon.cert_pem,
        &pki.daemon.key_pem,
        timeout,
    )
    .unwrap()
}

#[derive(Clone, Copy)]
enum Peer {
    /// Plain TCP: write these bytes and close.
    RawJunk,
    /// Plain TCP: accept and never send anything.
    Silent,
    /// TLS with a CA-issued certificate, then write this after the request head.
    Tls(&'static [u8]),
    /// TLS, then never answer the request.
    TlsSilent,
    /// TLS, then a response that claims to be 20 MB and streams zeros.
    TlsHuge,
}

async fn fake_agent(pki: &Pki, peer: Peer) -> SocketAddr {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cert = std::fs::read_to_string(&pki.agent_cert).unwrap();
    let key = std::fs::read_to_string(&pki.agent_key).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(steward_pki::server_config(&cert, &key).unwrap()));
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match peer {
                    Peer::RawJunk => {
                        let _ = tcp.write_all(b"\x00\xffgarbage\r\n\r\n").await;
                    }
                    Peer::Silent => tokio::time::sleep(Duration::from_secs(60)).await,
                    Peer::Tls(_) | Peer::TlsSilent | Peer::TlsHuge => {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        if read_request_head(&mut tls).await.is_none() {
                            return;
                        }
                        match peer {
                            Peer::Tls(reply) => {
                                let _ = tls.write_all(reply).await;
                                let _ = tls.shutdown().await;
                            }
                            Peer::TlsHuge => {
                                let _ = tls
                                    .write_all(
                                        b"HTTP/1.1 200 OK\r\nContent-Length: 20000000\r\n\r\n",
                                    )
                                    .await;
                                let zeros = vec![b'0'; 64 * 1024];
                                while tls.write_all(&zeros).await.is_ok() {}
                            }
                            _ => tokio::time::sleep(Duration::from_secs(60)).await,
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn nothing_listening_is_connect_refused() {
    let pki = Pki::new();
    let listener = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client(&pki, addr, TIMEOUT).host().await.unwrap_err();
    assert!(matches!(err, ClientError::ConnectRefused), "{err:?}");
    assert_eq!(err.metric_label(), "connect_refused");
}

#[tokio::test]
async fn a_peer_that_is_not_tls_is_a_tls_failure() {
    let pki = Pki::new();
    let addr = fake_agent(&pki, Peer::RawJunk).await;
    let err = client(&pki, addr, TIMEOUT).services().await.unwrap_err();
    assert_eq!(err.metric_label(), "tls", "{err:?}");
}

#[tokio::test]
async fn garbage_after_the_handshake_is_a_protocol_error() {
    let pki = Pki::new();
    let addr = fake_agent(&pki, Peer::Tls(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")).await;
    let err = client(&pki, addr, TIMEOUT).services().await.unwrap_err();
    assert_eq!(err.metric_label(), "protocol", "{err:?}");
}

#[tokio::test]
async fn a_body_that_is_not_the_expected_json_is_invalid_body() {
    let pki = Pki::new();
    let not_json = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let addr = fake_agent(&pki, Peer::Tls(not_json)).await;
    let err = client(&pki, addr, TIMEOUT).services().await.unwrap_err();
    assert_eq!(err.metric_label(), "invalid_body", "{err:?}");

    let wrong_shape =
        b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"hostname\":42}";
    let addr = fake_agent(&pki, Peer::Tls(wrong_shape)).await;
    let err = client(&pki, addr, TIMEOUT).host().await.unwrap_err();
    assert_eq!(err.metric_label(), "invalid_body", "{err:?}");

    let truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\nConnection: close\r\n\r\n[{";
    let addr = fake_agent(&pki, Peer::Tls(truncated)).await;
    let err = client(&pki, addr, TIMEOUT).services().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Transport(_) | ClientError::InvalidBody(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_error_status_keeps_a_clean_snippet_of_the_body() {
    let pki = Pki::new();
    let reply = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 12\r\nConnection: close\r\n\r\nproxy\x1b[31m down";
    let addr = fake_agent(&pki, Peer::Tls(reply)).await;
    let err = client(&pki, addr, TIMEOUT).services().await.unwrap_err();
    let ClientError::Status {
        status,
        code,
        message,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*status, code.as_deref()), (502, None));
    assert!(
        message.starts_with("proxy") && !message.contains('\x1b'),
        "{message:?}"
    );
    assert_eq!(err.metric_label(), "http_status");
}

#[tokio::test]
async fn an_oversized_response_is_cut_off() {
    let pki = Pki::new();
    let addr = fake_agent(&pki, Peer::TlsHuge).await;
    let err = client(&pki, addr, TIMEOUT).services().await.unwrap_err();
    assert_eq!(err.metric_label(), "invalid_body", "{err:?}");
}

#[tokio::test]
async fn a_silent_peer_times_out() {
    let pki = Pki::new();
    let deadline = Duration::from_millis(400);
    // The error names the deadline that fired; how fast is a benchmark's question.
    for peer in [Peer::Silent, Peer::TlsSilent] {
        let addr = fake_agent(&pki, peer).await;
        let err = client(&pki, addr, deadline).host().await.unwrap_err();
        assert!(
            matches!(err, ClientError::Timeout(d) if d == deadline),
            "{err:?}"
        );
        assert_eq!(err.metric_label(), "timeout");
    }
}
