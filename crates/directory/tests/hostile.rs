//! Servers that misbehave: silent, closing, speaking garbage, refusing StartTLS, or not
//! there at all. Each costs one bounded call and a precise error; none leads to a bind
//! in clear.

use steward_directory::test_support as support;

use std::time::Duration;

use steward_directory::{DirectoryConfig, Password, Session};
use steward_testkit::serve_each;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const PASSWORD: &str = "Hostile-Test-Pw-1";

fn config(url: String) -> DirectoryConfig {
    let mut config = DirectoryConfig::new(
        url,
        "example.eng",
        "cn=svc,dc=example,dc=eng",
        Password::new(PASSWORD),
    );
    config.connect_timeout = Duration::from_millis(300);
    config.operation_timeout = Duration::from_millis(300);
    config
}

fn assert_no_secret(err: &steward_directory::DirectoryError) {
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_is_a_bounded_timeout() {
    let port = serve_each(|mut stream| async move {
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
    })
    .await;
    for (url, during) in [
        (format!("ldaps://127.0.0.1:{port}"), "TLS handshake"),
        (format!("ldap://127.0.0.1:{port}"), "StartTLS"),
    ] {
        let err = Session::connect(&config(url.clone())).await.unwrap_err();
        assert_eq!(err.label(), "Timeout", "{url}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("no answer within 300ms while {during}")),
            "{err}"
        );
        assert_no_secret(&err);
    }
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let port = support::free_port();
    let err = Session::connect(&config(format!("ldaps://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert_eq!(err.label(), "Unreachable", "{err}");
    assert!(
        err.to_string()
            .contains(&format!("TCP connect to 127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_is_unreachable() {
    let port = serve_each(|stream| async move { drop(stream) }).await;
    for url in [
        format!("ldaps://127.0.0.1:{port}"),
        format!("ldap://127.0.0.1:{port}"),
    ] {
        let err = Session::connect(&config(url.clone())).await.unwrap_err();
        assert_eq!(err.label(), "Unreachable", "{url}: {err}");
        assert!(err.to_string().contains("closed the connection"), "{err}");
    }
}

#[tokio::test]
async fn a_server_speaking_garbage_is_a_protocol_error() {
    let port = serve_each(|mut stream| async move {
        let mut buf = [0u8; 512];
        let _ = stream.read(&mut buf).await;
        // An HTTP server on the LDAP port: long enough to be a complete (wrong) answer.
        let body = "x".repeat(200);
        let answer = format!("HTTP/1.1 400 Bad Request\r\nContent-Length: 200\r\n\r\n{body}");
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.read(&mut buf).await;
    })
    .await;
    for url in [
        format!("ldaps://127.0.0.1:{port}"),
        format!("ldap://127.0.0.1:{port}"),
    ] {
        let err = Session::connect(&config(url.clone())).await.unwrap_err();
        assert_eq!(err.label(), "Protocol", "{url}: {err}");
        assert_no_secret(&err);
    }
}

/// The StartTLS request is answered with unwillingToPerform (53). The client must give
/// up: the server then records every byte that still arrives, and a bind would be one.
#[tokio::test]
async fn a_refused_starttls_never_leads_to_a_bind_in_clear() {
    let (seen_tx, seen_rx) = oneshot::channel::<Vec<u8>>();
    let seen_tx = std::sync::Mutex::new(Some(seen_tx));
    let seen_tx = std::sync::Arc::new(seen_tx);
    let port = serve_each(move |mut stream| {
        let seen_tx = seen_tx.clone();
        async move {
            let mut request = [0u8; 256];
            let n = stream.read(&mut request).await.unwrap_or(0);
            // LDAPMessage ::= SEQUENCE { messageID, extendedReq }: the ID is the 5th byte
            // for the short lengths a StartTLS request has.
            let id = if n > 4 { request[4] } else { 1 };
            let refusal = [
                0x30, 0x0c, 0x02, 0x01, id, // message ID
                0x78, 0x07, 0x0a, 0x01, 53, 0x04, 0x00, 0x04, 0x00, // ExtendedResponse(53)
            ];
            let _ = stream.write_all(&refusal).await;
            let mut after = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut after)).await;
            if let Some(tx) = seen_tx.lock().unwrap().take() {
                let _ = tx.send(after);
            }
        }
    })
    .await;
    let err = Session::connect(&config(format!("ldap://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert_eq!(err.label(), "Protocol", "{err}");
    assert!(
        err.to_string()
            .contains("refused StartTLS (unwillingToPerform (53))"),
        "{err}"
    );
    assert!(
        err.to_string().contains("the bind is not sent without TLS"),
        "{err}"
    );
    let after = seen_rx.await.unwrap();
    assert!(
        !after
            .windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes()),
        "the password reached the server in clear"
    );
    assert!(
        after.is_empty(),
        "nothing may follow a refused StartTLS: {after:02x?}"
    );
}
