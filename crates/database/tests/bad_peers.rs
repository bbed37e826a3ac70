//! Servers that are not SQL Server, on loopback: nothing listening, a server that accepts
//! and never answers, one that answers garbage, one that hangs up mid-login. Each costs one
//! bounded call and is classified precisely.

use std::time::Duration;

use steward_database::{Connection, DatabaseConfig, Error, Password, Stage};
use steward_testkit::serve_each;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "Bad-Peer-Sentinel-Pw";

fn config(port: u16) -> DatabaseConfig {
    let mut c = DatabaseConfig::new("127.0.0.1", "PatientSecure", "sa", Password::new(PASSWORD));
    c.port = Some(port);
    c.encrypt = false;
    c.timeouts.connect = Duration::from_secs(2);
    c.timeouts.login = Duration::from_millis(300);
    c.timeouts.command = Duration::from_millis(300);
    c
}

fn no_password_in(err: &Error) {
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Connection::open(&config(port)).await.err().unwrap();
    assert_eq!(err.label(), "unreachable", "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_at_login() {
    let port = serve_each(|mut stream| async move {
        // Read whatever comes, say nothing, keep the socket open.
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let err = Connection::open(&config(port)).await.err().unwrap();
    match &err {
        Error::Timeout { stage, after, .. } => {
            assert_eq!(*stage, Stage::Login);
            assert_eq!(*after, Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }
    no_password_in(&err);
}

#[tokio::test]
async fn a_server_that_answers_garbage_is_a_protocol_error() {
    let port = serve_each(|mut stream| async move {
        let mut buf = [0u8; 512];
        let _ = stream.read(&mut buf).await;
        // An HTTP error page, padded past the largest TDS packet (64 KiB) so that whatever
        // length the client reads from the first bytes, it gets all of it.
        let mut answer = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n\r\n".to_vec();
        answer.extend(b"<html>not SQL Server</html>".iter().cycle().take(70_000));
        let _ = stream.write_all(&answer).await;
        // Stay open so the client judges the bytes, not a hang-up.
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let err = Connection::open(&config(port)).await.err().unwrap();
    assert_eq!(err.label(), "protocol", "{err}");
    no_password_in(&err);
}

#[tokio::test]
async fn a_server_that_hangs_up_mid_login_is_unreachable() {
    let port = serve_each(|mut stream| async move {
        let mut buf = [0u8; 512];
        let _ = stream.read(&mut buf).await;
        drop(stream);
    })
    .await;
    let err = Connection::open(&config(port)).await.err().unwrap();
    assert_eq!(err.label(), "unreachable", "{err}");
    assert!(err.to_string().contains("during login"), "{err}");
    no_password_in(&err);
}

#[tokio::test]
async fn a_missing_trust_file_is_named() {
    let mut c = config(1);
    c.encrypt = true;
    c.trust = vec!["/nonexistent/sql-ca.pem".into()];
    let err = Connection::open(&c).await.err().unwrap();
    assert_eq!(err.label(), "trust_file", "{err}");
    assert!(err.to_string().contains("/nonexistent/sql-ca.pem"));
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_unreachable() {
    let mut c = config(1433);
    c.server = steward_database::ServerName::parse("no-such-host.invalid");
    let err = Connection::open(&c).await.err().unwrap();
    assert_eq!(err.label(), "unreachable", "{err}");
    assert!(
        err.to_string().contains("no-such-host.invalid:1433"),
        "{err}"
    );
}
