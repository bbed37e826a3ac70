//! `steward sim generate`: the desired state of a simulated fleet, for `steward run
//! --desired-state DIR` to manage like a real one. The same servers as `steward sim`
//! with the same `--servers` and `--first-address` serves ([`sim_servers`]).
//!
//! Every Server's agent URL names its loopback address, which the daemon also connects
//! its health probes to (the TLS name checked is still the host name). Several servers
//! run each kind, so the Installation has a load balancer (`fqdn` only: nothing to
//! configure). The database is the lab's: a TDS server on 127.0.0.1:1433 that
//! `steward sim` starts when given `--desired-state`.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use steward_model::ServiceKind;

use crate::error::SimError;
use crate::servers::{sim_servers, SimServer};

/// The file beside the generated files holding the lab database's password.
pub const DATABASE_PASSWORD_FILE: &str = "database-password";

#[derive(Debug, Clone)]
pub struct FleetShape {
    pub servers: usize,
    /// 1-11: the first K kinds of the catalog (PSIS, PSWS, CLIENT, REPORT, ADMIN, ...).
    pub services_per_server: usize,
    pub first_address: Ipv4Addr,
    pub agent_port: u16,
    /// Every kind's HealthCheck interval.
    pub probe_interval: Duration,
}

/// The kinds each server runs: the catalog's first `k`, with REPORT and ADMIN kept
/// together (the vendor pairs them).
pub fn kinds(k: usize) -> Vec<ServiceKind> {
    let mut kinds: Vec<ServiceKind> = ServiceKind::ALL.iter().copied().take(k.min(11)).collect();
    let has = |kinds: &[ServiceKind], kind| kinds.contains(&kind);
    if has(&kinds, ServiceKind::Report) != has(&kinds, ServiceKind::Admin) {
        kinds.retain(|k| !matches!(k, ServiceKind::Report | ServiceKind::Admin));
    }
    kinds
}

/// Write the Installation, the HealthChecks and one file per Server below `out`
/// (`servers/NAME.yaml`), and a database password when there is none yet.
pub fn write(shape: &FleetShape, out: &Path) -> Result<Vec<SimServer>, SimError> {
    let servers = sim_servers(shape.servers, shape.first_address)?;
    let servers_dir = out.join("servers");
    std::fs::create_dir_all(&servers_dir).map_err(|e| SimError::io(&servers_dir, e))?;
    write_file(&out.join("installation.yaml"), &installation())?;
    write_file(
        &out.join("health-checks.yaml"),
        &health_checks(&kinds(shape.services_per_server), shape.probe_interval),
    )?;
    let kinds = kinds(shape.services_per_server);
    for server in &servers {
        write_file(
            &servers_dir.join(format!("{}.yaml", server.name)),
            &server_document(server, shape.agent_port, &kinds),
        )?;
    }
    let password = out.join(DATABASE_PASSWORD_FILE);
    if !password.exists() {
        let value = format!("Sim-{:032x}!", rand::random::<u128>());
        steward_pki::write_new_private_file(&password, value.as_bytes())
            .map_err(|e| SimError::io(&password, std::io::Error::other(e.to_string())))?;
    }
    Ok(servers)
}

fn write_file(path: &Path, text: &str) -> Result<(), SimError> {
    std::fs::write(path, text).map_err(|e| SimError::io(path, e))
}

fn installation() -> String {
    format!(
        "# A simulated fleet (steward sim generate).
apiVersion: steward/v1
kind: Installation
metadata:
  name: sim
spec:
  environment: non-production
  installType: advanced
  release: \"6.12.1\"
  prune: false
  loadBalancer:
    fqdn: lb.sim.example.eng
  database:
    server: 127.0.0.1
    port: 1433
    name: iridium_sql
    user: sa
    passwordRef: file:{DATABASE_PASSWORD_FILE}
    encrypt: false
  certificateAuthority:
    mode: generated
"
    )
}

fn health_checks(kinds: &[ServiceKind], interval: Duration) -> String {
    let secs = interval.as_secs().max(2);
    let timeout = (secs / 2).clamp(1, 5);
    let mut text = String::new();
    for kind in kinds {
        let _ = write!(
            text,
            "---
apiVersion: steward/v1
kind: HealthCheck
metadata:
  name: {name}
spec:
  service: {kind}
  interval: {secs}s
  timeout: {timeout}s
",
            name = kind.as_str().to_ascii_lowercase(),
            kind = kind.as_str(),
        );
    }
    text
}

fn server_document(server: &SimServer, agent_port: u16, kinds: &[ServiceKind]) -> String {
    let mut text = format!(
        "apiVersion: steward/v1
kind: Server
metadata:
  name: {name}
spec:
  hostname: {hostname}
  agent: https://{address}:{agent_port}
  certificate:
    generate: true
  services:
",
        name = server.name,
        hostname = server.hostname,
        address = server.address,
    );
    for kind in kinds {
        let _ = writeln!(text, "    - kind: {}", kind.as_str());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_report_and_admin_together() {
        assert_eq!(kinds(2), vec![ServiceKind::Psis, ServiceKind::Psws]);
        assert_eq!(kinds(11).len(), 11);
        let four = kinds(4);
        assert!(!four.contains(&ServiceKind::Report), "{four:?}");
        assert!(kinds(5).contains(&ServiceKind::Admin));
    }

    #[test]
    fn the_generated_fleet_is_a_valid_desired_state() {
        let dir = tempfile::tempdir().unwrap();
        let shape = FleetShape {
            servers: 3,
            services_per_server: 11,
            first_address: Ipv4Addr::new(127, 1, 0, 1),
            agent_port: 7443,
            probe_interval: Duration::from_secs(10),
        };
        let servers = write(&shape, dir.path()).unwrap();
        assert_eq!(servers.len(), 3);
        let compiled = steward_model::validate_dir(dir.path()).unwrap();
        let snapshot = compiled
            .snapshot
            .unwrap_or_else(|| panic!("{:#?}", compiled.diagnostics));
        // FHIR and EMPI on generated certificates: the one warning, as for any test fleet.
        let warnings: Vec<_> = compiled
            .diagnostics
            .iter()
            .map(|d| d.code)
            .filter(|c| *c != steward_model::Code::OptionalServiceCertificate)
            .collect();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(snapshot.servers.len(), 3);
        let sim2 = snapshot
            .servers
            .values()
            .find(|s| s.name == "sim0002")
            .unwrap();
        assert_eq!(sim2.agent_url, "https://127.1.0.2:7443");
        assert_eq!(sim2.services.len(), 11);
        // A second run keeps the password the daemon may already use.
        let password = std::fs::read(dir.path().join(DATABASE_PASSWORD_FILE)).unwrap();
        write(&shape, dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(DATABASE_PASSWORD_FILE)).unwrap(),
            password
        );
    }
}
