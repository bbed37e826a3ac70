//! Existing (third-party) certificates end to end: files made at test time by the
//! `openssl` command-line tool (a corporate root and issuing CA, PEM chains, PFX files),
//! a desired state with `certificateAuthority.mode: existing` and a load balancer, the
//! controllers, and real agents (in-process `steward_agent` servers over mutual TLS).
//! Each broken certificate must stop at its own condition reason and never reach its
//! agent; the good ones must be installed with the thumbprint openssl computes.

#[path = "../../crates/pki/tests/support/openssl.rs"]
mod openssl;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openssl::LeafSpec;
use steward_controllers::{AgentEndpoint, ConditionStatus, ControllersConfig, Store};
use steward_pki::CertificateAuthority;

mod support;
use steward_testkit::{within_async, Fixture};
use support::agents::{
    controllers_config, daemon_tls, snapshot_of, RunningControllers, Services, TestAgent,
};

const LB: &str = "ps.example.eng";
const PATIENCE: Duration = Duration::from_secs(60);
const PFX_PASSWORD: &str = "Test-Pfx-Passw0rd";
/// Set for this process only; the name is unique to this test.
const PFX_ENV: &str = "STEWARD_TEST_CERT_CHECKS_PFX_PASSWORD";

/// The reason of the certificate's headline condition.
fn reason(store: &Store, server: &str) -> Option<String> {
    let status = store.status();
    let cert = &status
        .servers
        .iter()
        .find(|s| s.name == server)?
        .certificate;
    cert.conditions
        .iter()
        .find(|c| {
            c.condition_type != steward_controllers::ConditionType::Ready
                && c.status == ConditionStatus::True
        })
        .or_else(|| {
            cert.conditions
                .iter()
                .find(|c| c.condition_type == steward_controllers::ConditionType::Ready)
        })
        .map(|c| c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_certificate_stops_at_its_own_reason_and_good_ones_are_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(ssl) = openssl::openssl(&tmp.path().join("desired/certs")) else {
        return;
    };
    // The corporate PKI: root (certificateAuthority.certFile) -> issuing CA -> servers.
    let root = ssl.root_ca("root", "Corp Root CA");
    let issuing = ssl.intermediate_ca(&root, "issuing", "Corp Issuing CA");
    let other = ssl.root_ca("other", "Elsewhere Root CA");

    // The steward CA still exists (mutual TLS to the agents) but must issue nothing.
    let steward_ca = Arc::new(CertificateAuthority::init(tmp.path().join("steward-ca")).unwrap());
    let agent_tls = daemon_tls(&steward_ca);

    // name -> (certificate line, expected reason)
    let mut servers: Vec<(&str, String, &str)> = Vec::new();
    let host = |name: &str| format!("{name}.example.eng");
    let pem_line = |chain: &Path, key: &Path| {
        format!(
            "certificate: {{certFile: {}, keyFile: {}}}",
            rel(chain),
            rel(key)
        )
    };
    fn rel(p: &Path) -> String {
        format!("certs/{}", p.file_name().unwrap().to_string_lossy())
    }

    let good = ssl.leaf(
        &issuing,
        "good",
        &LeafSpec::new(&host("good"), &[&host("good"), LB]),
    );
    let chain = ssl.bundle("good.chain.pem", &[&good.cert, &issuing.cert]);
    servers.push(("good", pem_line(&chain, &good.key), "CertificateInstalled"));

    let h = host("goodpfx");
    let leaf = ssl.leaf(&issuing, "goodpfx", &LeafSpec::new(&h, &[&h, LB]));
    let pfx = ssl.pfx(
        "goodpfx.pfx",
        &leaf,
        &[&issuing.cert, &root.cert],
        PFX_PASSWORD,
        false,
    );
    servers.push((
        "goodpfx",
        format!(
            "certificate: {{pfxFile: {}, passwordRef: \"env:{PFX_ENV}\"}}",
            rel(&pfx)
        ),
        "CertificateInstalled",
    ));
    let good_pfx_thumbprint = ssl.sha1_thumbprint(&leaf.cert);

    let h = host("pfxwrong");
    let leaf = ssl.leaf(&issuing, "pfxwrong", &LeafSpec::new(&h, &[&h, LB]));
    let pfx = ssl.pfx(
        "pfxwrong.pfx",
        &leaf,
        &[&issuing.cert],
        "another password",
        true,
    );
    servers.push((
        "pfxwrong",
        format!(
            "certificate: {{pfxFile: {}, passwordRef: \"env:{PFX_ENV}\"}}",
            rel(&pfx)
        ),
        "PfxPasswordWrong",
    ));

    let h = host("nosecret");
    let leaf = ssl.leaf(&issuing, "nosecret", &LeafSpec::new(&h, &[&h, LB]));
    let pfx = ssl.pfx("nosecret.pfx", &leaf, &[], PFX_PASSWORD, false);
    servers.push((
        "nosecret",
        format!(
            "certificate: {{pfxFile: {}, passwordRef: env:STEWARD_TEST_CERT_CHECKS_UNSET}}",
            rel(&pfx)
        ),
        "SecretUnresolved",
    ));

    // A chain whose leaf `name` is valid only from `start` to `end` (ASN.1 times).
    let dated = |name: &str, start: &'static str, end: &'static str| {
        let h = host(name);
        let mut spec = LeafSpec::new(&h, &[]);
        let sans = [h.as_str(), LB];
        spec.dns = &sans;
        spec.start = Some(start);
        spec.end = Some(end);
        let leaf = ssl.leaf(&issuing, name, &spec);
        let chain = ssl.bundle(&format!("{name}.chain.pem"), &[&leaf.cert, &issuing.cert]);
        pem_line(&chain, &leaf.key)
    };
    servers.push((
        "expired",
        dated("expired", "20200101000000Z", "20200201000000Z"),
        "Expired",
    ));
    servers.push((
        "future",
        dated("future", "20990101000000Z", "20991231000000Z"),
        "NotYetValid",
    ));

    let h = host("nosan");
    let leaf = ssl.leaf(&issuing, "nosan", &LeafSpec::new(&h, &[]));
    let chain = ssl.bundle("nosan.chain.pem", &[&leaf.cert, &issuing.cert]);
    servers.push(("nosan", pem_line(&chain, &leaf.key), "NoSubjectAltName"));

    let h = host("nolb");
    let leaf = ssl.leaf(&issuing, "nolb", &LeafSpec::new(&h, &[&h]));
    let chain = ssl.bundle("nolb.chain.pem", &[&leaf.cert, &issuing.cert]);
    servers.push(("nolb", pem_line(&chain, &leaf.key), "HostnameNotInSan"));

    let leaf = ssl.leaf(
        &issuing,
        "wronghost",
        &LeafSpec::new("elsewhere.example.eng", &["elsewhere.example.eng", LB]),
    );
    let chain = ssl.bundle("wronghost.chain.pem", &[&leaf.cert, &issuing.cert]);
    servers.push(("wronghost", pem_line(&chain, &leaf.key), "HostnameNotInSan"));

    let h = host("keymismatch");
    let a = ssl.leaf(&issuing, "keymismatch-a", &LeafSpec::new(&h, &[&h, LB]));
    let b = ssl.leaf(&issuing, "keymismatch-b", &LeafSpec::new(&h, &[&h, LB]));
    let chain = ssl.bundle("keymismatch.chain.pem", &[&a.cert, &issuing.cert]);
    servers.push(("keymismatch", pem_line(&chain, &b.key), "KeyMismatch"));

    let h = host("foreign");
    let leaf = ssl.leaf(&other, "foreign", &LeafSpec::new(&h, &[&h, LB]));
    servers.push((
        "foreign",
        pem_line(&leaf.cert, &leaf.key),
        "UntrustedIssuer",
    ));

    servers.push((
        "missing",
        "certificate: {certFile: certs/missing.pem, keyFile: certs/missing.key}".into(),
        "FileUnreadable",
    ));

    // One agent per server.
    let mut agents = Vec::new();
    for (name, _, _) in &servers {
        let dir = tmp.path().join(name);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let agent = TestAgent::start(&dir, &steward_ca, &host(name), ip, Services::Stub).await;
        let client = agent.client(&agent_tls);
        agents.push((agent, client));
    }
    let mut seeds = Vec::new();
    for (_, client) in &agents {
        seeds.push(client.certificate().await.unwrap().unwrap().thumbprint);
    }

    let desired_dir = tmp.path().join("desired");
    let mut desired_state = Fixture::installation()
        .name("corp")
        .environment("production")
        .load_balancer(LB)
        .database("PS", "ps", "env:PS_DB_PASSWORD")
        .certificate_authority(&format!(
            "{{mode: existing, certFile: {}}}",
            rel(&root.cert)
        ));
    for ((name, certificate, _), (agent, _)) in servers.iter().zip(&agents) {
        let certificate = certificate.strip_prefix("certificate: ").unwrap();
        desired_state = desired_state.server(
            Fixture::server(name)
                .hostname(&host(name))
                .agent(&agent.url)
                .certificate(certificate),
        );
    }
    desired_state.write(&desired_dir);
    let snapshot = snapshot_of(&desired_dir);

    // SAFETY: set before the controllers start; no other thread of this test reads the
    // environment concurrently, and the name is this test's own.
    unsafe { std::env::set_var(PFX_ENV, PFX_PASSWORD) };
    let config = ControllersConfig {
        endpoints: Arc::new(AgentEndpoint::from_server),
        ..controllers_config(
            steward_ca.clone(),
            agent_tls.clone(),
            vec![std::fs::read_to_string(&root.cert).unwrap()],
            "steward-cert-test",
        )
    };
    let controllers = RunningControllers::start(config, snapshot, &desired_dir);
    let (store, registry) = (&controllers.store, &controllers.registry);

    let want: Vec<Option<String>> = servers
        .iter()
        .map(|(_, _, r)| Some((*r).to_owned()))
        .collect();
    let settled = within_async(PATIENCE, Duration::from_millis(100), || {
        let got: Vec<Option<String>> = servers.iter().map(|(n, _, _)| reason(store, n)).collect();
        std::future::ready(got == want)
    })
    .await;
    if settled.is_none() {
        let got: Vec<Option<String>> = servers.iter().map(|(n, _, _)| reason(store, n)).collect();
        panic!("conditions never settled:\n got {got:?}\nwant {want:?}");
    }
    // Let a few more reconciles pass: nothing bad may be installed later either.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let status = store.status();
    for (((name, _, expected), (_, client)), seed) in servers.iter().zip(&agents).zip(&seeds) {
        let on_agent = client.certificate().await.unwrap().unwrap().thumbprint;
        let summary = &status
            .servers
            .iter()
            .find(|s| s.name == *name)
            .unwrap()
            .certificate;
        if *expected == "CertificateInstalled" {
            assert_ne!(&on_agent, seed, "{name}: not installed");
            assert_eq!(summary.thumbprint.as_deref(), Some(on_agent.as_str()));
            assert!(summary.not_after.is_some());
        } else {
            assert_eq!(
                &on_agent, seed,
                "{name}: a refused certificate reached the agent"
            );
            // Not in place, as far as `steward plan --live` is concerned.
            let observed = store.observed();
            let planned = observed.servers.get(*name);
            assert!(planned.is_none_or(|s| s.certificate_thumbprint.is_none()));
        }
    }
    let installed = |name: &str| {
        status
            .servers
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.certificate.thumbprint.clone())
            .unwrap()
    };
    // Thumbprints as Windows shows them: openssl's SHA-1 fingerprint, uppercase.
    assert_eq!(installed("good"), ssl.sha1_thumbprint(&good.cert));
    assert_eq!(installed("goodpfx"), good_pfx_thumbprint);

    // Nothing secret leaks into the status document (events included) or the metrics.
    let text = serde_json::to_string(&status).unwrap();
    assert!(!text.contains(PFX_PASSWORD), "password in status");
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("BEGIN"),
        "PEM in status"
    );
    for (name, _, expected) in &servers {
        assert!(
            text.contains(expected),
            "{name}: no {expected} in the status or its events"
        );
    }
    let metrics = { registry.text() };
    assert!(!metrics.contains(PFX_PASSWORD));
    assert!(
        metrics.contains("steward_certificate_renewal_timestamp_seconds{server=\"good\"}"),
        "{metrics}"
    );

    controllers.stop().await;
    for (agent, _) in agents {
        agent.shutdown().await;
    }
}
