//! Existing (third-party) certificates end to end: files made at test time by the
//! `openssl` command-line tool (a corporate root and issuing CA, PEM chains, PFX files),
//! a desired state with `certificateAuthority.mode: existing` and a load balancer, the
//! controllers, and real agents (in-process `steward_agent` servers over mutual TLS).
//! Each broken certificate must stop at its own condition reason and never reach its
//! agent; the good ones must be installed with the thumbprint openssl computes.

#[path = "../../crates/pki/tests/support/openssl.rs"]
mod openssl;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openssl::LeafSpec;
use steward_agent::{AgentClient, AgentConfig, AgentServer, DriverConfig};
use steward_controllers::{
    AgentEndpoint, ConditionStatus, Controllers, ControllersConfig, Desired, Store,
};
use steward_pki::CertificateAuthority;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const LB: &str = "ps.example.eng";
const PATIENCE: Duration = Duration::from_secs(60);
const PFX_PASSWORD: &str = "Test-Pfx-Passw0rd";
/// Set for this process only; the name is unique to this test.
const PFX_ENV: &str = "STEWARD_TEST_CERT_CHECKS_PFX_PASSWORD";

struct Agent {
    url: String,
    client: AgentClient,
    stop: CancellationToken,
}

async fn agent(
    dir: &Path,
    ca: &CertificateAuthority,
    hostname: &str,
    tls: &rustls::ClientConfig,
) -> Agent {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let issued = ca.issue_agent(hostname, &[ip]).unwrap();
    let (cert, key) = issued.write_pair(dir, "agent").unwrap();
    let server = AgentServer::bind(AgentConfig {
        listen: SocketAddr::new(ip, 0),
        state_dir: dir.join("state"),
        ca_pem: ca.cert_path(),
        cert,
        key,
        hostname: Some(hostname.to_owned()),
        driver: DriverConfig {
            program: None,
            lab: true,
            bind: None,
            stop_timeout: Duration::from_secs(1),
            stop_services_on_exit: true,
        },
    })
    .await
    .unwrap();
    let url = format!("https://{}", server.local_addr());
    let stop = CancellationToken::new();
    tokio::spawn(server.run(stop.clone().cancelled_owned()));
    let client = AgentClient::new(&url, tls.clone(), Duration::from_secs(5)).unwrap();
    Agent { url, client, stop }
}

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
    let client_cert = steward_ca.issue_client("steward-daemon").unwrap();
    let agent_tls = steward_pki::mtls_client_config(
        steward_ca.cert_pem(),
        &client_cert.cert_pem,
        client_cert.key_pem.expose(),
    )
    .unwrap();

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

    let h = host("expired");
    let mut spec = LeafSpec::new(&h, &[]);
    let sans = [h.as_str(), LB];
    spec.dns = &sans;
    spec.start = Some("20200101000000Z");
    spec.end = Some("20200201000000Z");
    let leaf = ssl.leaf(&issuing, "expired", &spec);
    let chain = ssl.bundle("expired.chain.pem", &[&leaf.cert, &issuing.cert]);
    servers.push(("expired", pem_line(&chain, &leaf.key), "Expired"));

    let h = host("future");
    let mut spec = LeafSpec::new(&h, &[]);
    let sans = [h.as_str(), LB];
    spec.dns = &sans;
    spec.start = Some("20990101000000Z");
    spec.end = Some("20991231000000Z");
    let leaf = ssl.leaf(&issuing, "future", &spec);
    let chain = ssl.bundle("future.chain.pem", &[&leaf.cert, &issuing.cert]);
    servers.push(("future", pem_line(&chain, &leaf.key), "NotYetValid"));

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
        agents.push(agent(&tmp.path().join(name), &steward_ca, &host(name), &agent_tls).await);
    }
    let mut seeds = Vec::new();
    for a in &agents {
        seeds.push(a.client.certificate().await.unwrap().unwrap().thumbprint);
    }

    let desired_dir = tmp.path().join("desired");
    std::fs::write(
        desired_dir.join("installation.yaml"),
        format!(
            "apiVersion: steward/v1\nkind: Installation\nmetadata: {{name: corp}}\nspec:\n  environment: production\n  installType: advanced\n  release: \"6.12.1\"\n  loadBalancer: {{fqdn: {LB}}}\n  database: {{server: db.example.eng, name: PS, user: ps, passwordRef: env:PS_DB_PASSWORD}}\n  certificateAuthority: {{mode: existing, certFile: {}}}\n",
            rel(&root.cert)
        ),
    )
    .unwrap();
    for ((name, certificate, _), agent) in servers.iter().zip(&agents) {
        std::fs::write(
            desired_dir.join(format!("{name}.yaml")),
            format!(
                "apiVersion: steward/v1\nkind: Server\nmetadata: {{name: {name}}}\nspec:\n  hostname: {}\n  agent: {}\n  {certificate}\n",
                host(name),
                agent.url
            ),
        )
        .unwrap();
    }
    let compiled = steward_model::validate_dir(&desired_dir).unwrap();
    let snapshot = compiled
        .snapshot
        .unwrap_or_else(|| panic!("invalid desired state: {:?}", compiled.diagnostics));

    // SAFETY: set before the controllers start; no other thread of this test reads the
    // environment concurrently, and the name is this test's own.
    unsafe { std::env::set_var(PFX_ENV, PFX_PASSWORD) };
    let registry = steward_controllers::MetricsRegistry::default();
    let controllers = Controllers::new(
        ControllersConfig {
            ca: Some(steward_ca.clone()),
            agent_tls: agent_tls.clone(),
            probe_roots: vec![std::fs::read_to_string(&root.cert).unwrap()],
            endpoints: Arc::new(AgentEndpoint::from_server),
            resync: Duration::from_secs(1),
            agent_timeout: Duration::from_secs(5),
            max_concurrent: 8,
            per_server: 2,
            installed_by: "steward-cert-test".into(),
            state_dir: None,
        },
        &registry,
    )
    .unwrap();
    let store = controllers.store();
    let (_tx, rx) = watch::channel(Some(Desired {
        generation: 1,
        snapshot: Arc::new(snapshot),
        dir: desired_dir.clone(),
        diff: None,
    }));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(controllers.run(rx, shutdown.clone()));

    let started = tokio::time::Instant::now();
    loop {
        let got: Vec<Option<String>> = servers.iter().map(|(n, _, _)| reason(&store, n)).collect();
        let want: Vec<Option<String>> = servers
            .iter()
            .map(|(_, _, r)| Some((*r).to_owned()))
            .collect();
        if got == want {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "conditions never settled:\n got {got:?}\nwant {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let a few more reconciles pass: nothing bad may be installed later either.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let status = store.status();
    for (((name, _, expected), agent), seed) in servers.iter().zip(&agents).zip(&seeds) {
        let on_agent = agent
            .client
            .certificate()
            .await
            .unwrap()
            .unwrap()
            .thumbprint;
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

    shutdown.cancel();
    running.await.unwrap();
    for a in agents {
        a.stop.cancel();
    }
}
