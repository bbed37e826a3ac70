//! Every kind serves exactly its catalog health surface over real TLS on loopback.

mod common;

use std::time::Duration;

use common::{args, plain_get, CertFiles, Running, TestCa};
use hyper::header::LOCATION;
use hyper::{Method, StatusCode};
use steward_lab::{LabError, LabService};
use steward_model::catalog::{HealthTest, ServiceKind};

#[tokio::test]
async fn every_https_kind_serves_its_catalog_path_and_404_elsewhere() {
    let ca = TestCa::new();
    let leaf = ca.leaf("lab");
    let files = CertFiles::new(&leaf);
    let client = ca.client();
    for kind in ServiceKind::ALL {
        let HealthTest::Https {
            path,
            body_contains,
            ..
        } = kind.spec().health
        else {
            continue;
        };
        let running = Running::start(args(kind, Some(&files))).await;
        // ADMIN's second port is the plain-HTTP redirect, tested on its own.
        let https_ports = match kind {
            ServiceKind::Admin => &running.addrs[..1],
            _ => &running.addrs[..],
        };
        for &addr in https_ports {
            let ok = client.get(addr, path).await.unwrap();
            assert_eq!(ok.status, StatusCode::OK, "{kind} {path} on {addr}");
            if let Some(needle) = body_contains {
                assert!(ok.body.contains(needle), "{kind}: {:?}", ok.body);
            }
            assert_eq!(
                ok.peer_cert, leaf.der,
                "{kind} serves the given certificate"
            );

            for other in [
                "/nope",
                "/identityserver/x",
                "/api/v2",
                "/psws",
                "/index.html",
            ] {
                if other == path {
                    continue;
                }
                let nf = client.get(addr, other).await.unwrap();
                assert_eq!(nf.status, StatusCode::NOT_FOUND, "{kind} {other}");
            }
            let post = client.request(addr, Method::POST, path).await.unwrap();
            assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED, "{kind}");
        }
        running.stop().await.unwrap();
    }
}

#[tokio::test]
async fn lab_endpoint_reports_what_the_agent_handed_over() {
    let ca = TestCa::new();
    let leaf = ca.leaf("lab");
    let files = CertFiles::new(&leaf);
    let strings = files.dir.path().join("connection-strings.json");
    std::fs::write(
        &strings,
        r#"{"PSIS":"https://lb.example.org:7001/identityserver",
            "Database":"Server=sql;Database=PatientSecure;User Id=ps;Password=s3cret"}"#,
    )
    .unwrap();
    let mut a = args(ServiceKind::Psws, Some(&files));
    a.connection_strings = Some(strings.clone());
    let running = Running::start(a).await;
    let reply = ca
        .client()
        .get(running.addrs[0], "/steward/lab")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.body.contains("s3cret"), "{}", reply.body);
    let doc: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(doc["kind"], "PSWS");
    assert_eq!(doc["release"], "7.1.0-lab");
    assert_eq!(doc["ports"][0], running.addrs[0].port());
    assert_eq!(doc["pid"], std::process::id());
    assert_eq!(
        doc["connectionStrings"]["PSIS"],
        "https://lb.example.org:7001/identityserver"
    );
    assert_eq!(
        doc["connectionStrings"]["Database"],
        "Server=sql;Database=PatientSecure;User Id=ps;Password=***"
    );
    let thumbprint = doc["certificate"]["thumbprint"].as_str().unwrap();
    assert_eq!(thumbprint.len(), 40);

    // The agent may rewrite the file; the endpoint shows the current content.
    std::fs::write(&strings, "PSIS=https://a:7001/identityserver\n").unwrap();
    let reply = ca
        .client()
        .get(running.addrs[0], "/steward/lab")
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        doc["connectionStrings"]["PSIS"],
        "https://a:7001/identityserver"
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn admin_redirects_plain_http_to_its_https_port() {
    let ca = TestCa::new();
    let files = CertFiles::new(&ca.leaf("admin"));
    let running = Running::start(args(ServiceKind::Admin, Some(&files))).await;
    let (https, http) = (running.addrs[0], running.addrs[1]);

    let reply = plain_get(http, "/AdminConsole?tab=1").await.unwrap();
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    let location = reply.headers[LOCATION].to_str().unwrap();
    assert_eq!(
        location,
        format!("https://127.0.0.1:{}/AdminConsole?tab=1", https.port())
    );

    // Following the redirect lands on the health path.
    let followed = ca.client().get(https, "/AdminConsole?tab=1").await.unwrap();
    assert_eq!(followed.status, StatusCode::OK);
    assert!(followed.body.contains("Admin Console"), "{}", followed.body);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn hl7_listener_answers_the_probe_with_a_real_ack() {
    let running = Running::start(args(ServiceKind::Hl7, None)).await;
    let addr = running.addrs[0];
    let outcome = steward_hl7::probe(addr, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(outcome.responder, "PATIENTSECURE");
    assert_eq!(outcome.version.as_deref(), Some("2.5.1"));

    // Garbage on one connection does not affect the next probe.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("server closes a garbage connection")
            .unwrap_or(0);
        assert_eq!(n, 0, "nothing is sent back for non-MLLP bytes");
    }
    steward_hl7::probe(addr, Duration::from_secs(5))
        .await
        .unwrap();
    running.stop().await.unwrap();
}

#[tokio::test]
async fn hl7_listener_acknowledges_several_messages_per_connection() {
    use futures::{SinkExt, StreamExt};
    let running = Running::start(args(ServiceKind::Hl7, None)).await;
    let stream = tokio::net::TcpStream::connect(running.addrs[0])
        .await
        .unwrap();
    let mut framed = tokio_util::codec::Framed::new(stream, steward_hl7::MllpCodec::default());
    for (id, expected) in [("A1", "AA"), ("A2", "AA")] {
        framed.send(steward_hl7::probe_message(id)).await.unwrap();
        let frame = framed.next().await.unwrap().unwrap();
        let ack = steward_hl7::Ack::parse(&String::from_utf8_lossy(&frame)).unwrap();
        assert_eq!((ack.code.as_str(), ack.control_id.as_str()), (expected, id));
    }
    framed
        .send("MSH|^~\\&|A|B|C|D|||ADT^A01||P|2.5")
        .await
        .unwrap();
    let frame = framed.next().await.unwrap().unwrap();
    let ack = steward_hl7::Ack::parse(&String::from_utf8_lossy(&frame)).unwrap();
    assert_eq!(ack.code, steward_hl7::AckCode::ApplicationReject);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn arguments_that_do_not_fit_the_catalog_are_refused() {
    let ca = TestCa::new();
    let files = CertFiles::new(&ca.leaf("x"));

    let mut a = args(ServiceKind::Emergency, Some(&files));
    a.ports = vec![0];
    let err = LabService::bind(a).await.err().unwrap();
    assert!(
        matches!(
            err,
            LabError::PortCount {
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.metric_label(), "port_count");

    let err = LabService::bind(args(ServiceKind::Psis, None))
        .await
        .err()
        .unwrap();
    assert_eq!(err.metric_label(), "missing_certificate", "{err}");

    let mut a = args(ServiceKind::Psis, Some(&files));
    a.key = Some(files.cert.clone());
    let err = LabService::bind(a).await.err().unwrap();
    assert_eq!(err.metric_label(), "certificate", "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut a = args(ServiceKind::Client, Some(&files));
    a.ports = vec![taken.local_addr().unwrap().port()];
    let err = LabService::bind(a).await.err().unwrap();
    // A taken port is its own error (and exit code), so the agent can say why.
    assert_eq!(err.metric_label(), "port_in_use", "{err}");
    assert_eq!(err.exit_code(), steward_lab::EXIT_PORT_IN_USE);
}

#[tokio::test]
async fn a_release_marked_lab_fail_fails_the_health_test_where_it_says() {
    let ca = TestCa::new();
    let leaf = ca.leaf("lab");
    let files = CertFiles::new(&leaf);
    let client = ca.client();
    let HealthTest::Https { path, .. } = ServiceKind::Psws.spec().health else {
        unreachable!("PSWS is tested over HTTPS");
    };
    let mut cases = vec![
        ("6.13.0+lab-fail-PSWS", StatusCode::SERVICE_UNAVAILABLE),
        ("6.13.0+lab-fail-PSIS", StatusCode::OK),
        ("6.13.0+lab-fail-PSWS-at-10-9-9-9", StatusCode::OK),
    ];
    let a = args(ServiceKind::Psws, Some(&files));
    let here = format!(
        "6.13.0+lab-fail-PSWS-at-{}",
        a.bind.to_string().replace('.', "-")
    );
    cases.push((&here, StatusCode::SERVICE_UNAVAILABLE));
    for (release, expected) in cases {
        let mut a = args(ServiceKind::Psws, Some(&files));
        a.release = Some(release.to_owned());
        let running = Running::start(a).await;
        let reply = client.get(running.addrs[0], path).await.unwrap();
        assert_eq!(reply.status, expected, "{release}");
        running.stop().await.unwrap();
    }
}
