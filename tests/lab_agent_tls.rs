//! End-to-end: a lab agent serves only clients holding a certificate from the steward CA.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use support::*;

#[test]
fn agent_refuses_clients_without_a_steward_certificate() {
    let mut lab = Lab::start(129);
    lab.wait_status("app1's agent up", |s| {
        server(s, "app1").is_some_and(|a| a["agentUp"] == true)
    });
    let addr = SocketAddr::new(IpAddr::V4(lab.server_address("app1")), 7443);
    let name = addr.ip().to_string();
    let ca_pem = lab.ca_pem();

    // No client certificate at all: the handshake or the first request fails.
    let anonymous = Arc::new(steward_pki::client_config(std::slice::from_ref(&ca_pem)).unwrap());
    match https_get(anonymous, addr, &name, "/v1/host") {
        Err(_) => {}
        Ok((code, body)) => panic!("served without a client certificate: {code} {body}"),
    }

    // A client certificate from another CA: refused too.
    let other = tempfile::tempdir().unwrap();
    let stranger = steward_pki::CertificateAuthority::init(other.path().join("ca")).unwrap();
    let issued = stranger.issue_client("intruder").unwrap();
    let foreign = Arc::new(
        steward_pki::mtls_client_config(&ca_pem, &issued.cert_pem, issued.key_pem.expose())
            .unwrap(),
    );
    match https_get(foreign, addr, &name, "/v1/host") {
        Err(_) => {}
        Ok((code, body)) => panic!("served a client certificate from another CA: {code} {body}"),
    }

    // A certificate issued by the lab's steward CA: 200 and the host document.
    let (code, body) = lab
        .agent_get("app1", "/v1/host")
        .expect("mTLS GET /v1/host");
    assert_eq!(code, 200, "{body}");
    let host: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(host["hostname"], "app1.example.eng", "{host}");
    assert_eq!(host["computerName"], "APP1", "{host}");
    lab.stop();
}
