//! Synthetic fleets for the benchmarks in `benches/` (not part of the API): a desired
//! state of N servers each running all eleven kinds behind a load balancer, a store that
//! has seen all of it converge, and the metrics of such a fleet.

use std::path::Path;
use std::time::Duration;

use steward_agent::api::{HostInfo, ServiceInfo, ServiceStatus};
use steward_model::load::{load_text, Loaded};
use steward_model::{ServiceKind, Snapshot};
use time::OffsetDateTime;

use crate::metrics::{Metrics, MetricsError, MetricsRegistry};
use crate::prober::{ProbeError, ProbeResult};
use crate::service_key::ServiceKey;
use crate::status::{EventType, Phase};
use crate::store::Store;

/// `servers` servers named `app0001`..., each with every catalog kind.
pub fn snapshot(servers: usize) -> Snapshot {
    let mut text = String::from(
        "apiVersion: steward/v1\nkind: Installation\nmetadata: {name: ps}\nspec:\n  environment: non-production\n  installType: advanced\n  release: \"6.12.1\"\n  loadBalancer: {fqdn: lb.example.eng}\n  database: {server: db.example.eng, name: PS, user: u, passwordRef: env:PW}\n  certificateAuthority: {mode: generated}\n",
    );
    let kinds: Vec<String> = ServiceKind::ALL
        .iter()
        .map(|k| format!("{{kind: {k}}}"))
        .collect();
    for i in 1..=servers {
        text.push_str(&format!(
            "---\napiVersion: steward/v1\nkind: Server\nmetadata: {{name: app{i:04}}}\nspec:\n  hostname: app{i:04}.example.eng\n  certificate: {{generate: true}}\n  services: [{}]\n",
            kinds.join(", ")
        ));
    }
    let mut loaded = Loaded::default();
    load_text(Path::new("fleet.yaml"), &text, &mut loaded);
    let compiled = steward_model::validate::compile(loaded);
    compiled
        .snapshot
        .unwrap_or_else(|| panic!("invalid synthetic fleet: {:?}", compiled.diagnostics))
}

fn probe(success: bool) -> ProbeResult {
    ProbeResult {
        duration: Duration::from_micros(2300),
        http_status: Some(if success { 200 } else { 503 }),
        cert_not_after: Some(OffsetDateTime::now_utc() + Duration::from_secs(60 * 86400)),
        reused_connection: true,
        outcome: if success {
            Ok(())
        } else {
            Err(ProbeError::Status {
                status: 503,
                accepted: "200-399".into(),
            })
        },
    }
}

/// A store that has seen `snapshot` converge: every server up with host and certificate,
/// every service installed, running, probed and healthy, and a full event ring.
pub fn store(snapshot: &Snapshot) -> Store {
    let store = Store::default();
    store.sync_desired(1, snapshot);
    let now = OffsetDateTime::now_utc();
    for server in snapshot.servers.values() {
        store.with_server(&server.name, |r| {
            r.agent_up = Some(true);
            r.observed_generation = Some(1);
            r.host = Some(HostInfo {
                hostname: server.hostname.clone(),
                computer_name: server.name.to_uppercase(),
                os: "Windows Server 2022".into(),
                agent_version: "0.1.0".into(),
            });
            r.cert.thumbprint = Some("411CBDB5756F85E683EF8732C826B1840C81075A".into());
            r.cert.not_after = Some(now + Duration::from_secs(60 * 86400));
            r.cert.ready = true;
            r.cert.conditions.set(Phase::Ready, "Installed", "in place");
            r.conditions
                .set(Phase::Ready, "AgentReady", "agent 0.1.0 answers");
        });
        for placed in &server.services {
            let key = ServiceKey::new(&server.name, placed.kind);
            let last = crate::probes::last_probe(&probe(true));
            store.with_service(&key, |r| {
                r.observed = Some(ServiceInfo {
                    kind: placed.kind,
                    ports: placed.ports.clone(),
                    listen_ports: placed.ports.clone(),
                    drive: placed.drive.clone(),
                    release: "6.12.1".into(),
                    installed_by: "steward".into(),
                    installed_at: now,
                    status: ServiceStatus::Running,
                    held: false,
                    tls_thumbprint: None,
                    link: format!("https://{}:{}/", server.hostname, placed.ports[0]),
                    pid: Some(4242),
                    exit_code: None,
                    message: None,
                    last_failure: None,
                });
                r.verdict = Some(true);
                r.last_probe = Some(last);
                r.observed_generation = Some(1);
                r.conditions.set(
                    Phase::Ready,
                    "Healthy",
                    format!(
                        "GET https://{}:{}/api: 200",
                        server.hostname, placed.ports[0]
                    ),
                );
            });
        }
    }
    for i in 0..300 {
        store.event(
            format!("service/app{:04}/PSIS", i % 1000 + 1),
            EventType::Normal,
            "Installed",
            "PSIS installed on port 7001, release 6.12.1",
        );
    }
    store
}

/// Every controllers' series for `snapshot`'s fleet, registered into `registry`.
pub fn metrics(registry: &MetricsRegistry, snapshot: &Snapshot) -> Result<(), MetricsError> {
    let metrics = Metrics::register(registry, &["server", "certificate", "service"])?;
    let expiry = OffsetDateTime::now_utc().unix_timestamp() + 60 * 86400;
    for server in snapshot.servers.values() {
        metrics.agent_up(&server.name, true);
        metrics.certificate_expiry(&server.name, expiry);
        metrics.certificate_renewal(&server.name, expiry - 30 * 86400);
        for placed in &server.services {
            metrics.service(&server.name, placed.kind, true, Some(true));
            metrics.probe(&server.name, placed.kind, &probe(true));
            if placed.kind == ServiceKind::Hl7 {
                metrics.hl7_active(&server.name, server.name == "app0001");
            }
        }
    }
    for kind in ServiceKind::ALL {
        metrics.service_kind(kind, Some(true));
    }
    Ok(())
}

/// Every service of `servers` probed once more with the same outcome, a second later than
/// its last probe: what a second of health checks changes in a converged fleet.
pub fn probed_again<'a>(store: &Store, servers: impl IntoIterator<Item = &'a str>) {
    for server in servers {
        for kind in ServiceKind::ALL {
            store.with_service(&ServiceKey::new(server, kind), |r| {
                if let Some(probe) = r.last_probe.as_mut() {
                    probe.time += Duration::from_secs(1);
                }
            });
        }
    }
}
