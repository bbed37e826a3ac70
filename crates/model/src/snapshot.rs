//! The validated desired state that controllers work from.
//!
//! A [`Snapshot`] only exists when every rule passed, so controllers never re-check the
//! rules; ports are already allocated and defaults applied. It compares by value, so two
//! snapshots are equal when the desired state is, however the files were formatted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::catalog::{HealthTest, InstallType, ServiceKind};
use crate::resource::{
    Affinity, CaMode, Environment, Failback, Hl7Failover, LbVendor, MembersPolicy, Mode,
};
use crate::{SecretRef, StatusRanges};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub installation: Installation,
    /// By `metadata.name`.
    pub servers: BTreeMap<String, Server>,
    /// By `metadata.name`.
    pub directories: BTreeMap<String, ActiveDirectory>,
    /// Overrides of the catalog's default test, by service kind.
    pub health_checks: BTreeMap<ServiceKind, HealthCheck>,
    /// Mail notifications, by `metadata.name`.
    pub notifications: BTreeMap<String, crate::notifications::Notifications>,
    /// How a release change rolls out; `None`: every server at once.
    pub upgrade_policy: Option<crate::upgrade::UpgradePolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Installation {
    pub name: String,
    pub environment: Environment,
    pub install_type: InstallType,
    pub release: String,
    pub mode: Mode,
    pub prune: bool,
    pub load_balancer: Option<LoadBalancer>,
    pub hl7: Hl7,
    pub database: Database,
    pub certificate_authority: CertificateAuthority,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    /// Lowercase, without a trailing dot: where service URLs point.
    pub fqdn: String,
    /// `None`: steward manages no load balancer, it only points the URLs at `fqdn`.
    pub vendor: Option<LbVendor>,
    pub affinity: Affinity,
    /// At least [`MIN_IDLE_TIMEOUT`].
    #[serde(with = "duration_ms")]
    pub idle_timeout: Duration,
    /// The virtual servers' IP address; always set for vendors citrix-adc and f5.
    pub address: Option<std::net::IpAddr>,
    /// Where HL7 senders connect (`fqdn` unless set).
    pub hl7_fqdn: String,
    /// Vendor haproxy: relative paths are below the daemon's state directory.
    pub haproxy: HaproxyFiles,
    /// Rendered vendors: the directory written to, relative to the state directory
    /// unless absolute.
    pub render: PathBuf,
    /// The port each farm serves on the load balancer, by kind: for every kind placed on
    /// some server, its explicit port (the same on every server), else its catalog port,
    /// else (JOB) the port of its first server by name.
    pub farm_ports: BTreeMap<ServiceKind, u16>,
}

/// A TCP session must outlive a console session (30 minutes) plus a margin, as the
/// vendor's High Availability guide requires of every farm.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1860);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HaproxyFiles {
    pub config_file: PathBuf,
    pub admin_socket: PathBuf,
}

impl Default for HaproxyFiles {
    fn default() -> Self {
        Self {
            config_file: PathBuf::from("haproxy/haproxy.cfg"),
            admin_socket: PathBuf::from("haproxy/admin.sock"),
        }
    }
}

/// How the HL7 listener is chosen and moved (`Installation.spec.hl7`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hl7 {
    pub failover: Hl7Failover,
    /// A server that runs HL7.
    pub preferred: Option<String>,
    #[serde(with = "duration_ms")]
    pub failover_after: Duration,
    pub failback: Failback,
}

pub const DEFAULT_FAILOVER_AFTER: Duration = Duration::from_secs(3);

impl Default for Hl7 {
    fn default() -> Self {
        Self {
            failover: Hl7Failover::Manual,
            preferred: None,
            failover_after: DEFAULT_FAILOVER_AFTER,
            failback: Failback::Manual,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Database {
    pub server: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password_ref: SecretRef,
    pub create: bool,
    pub encrypt: bool,
    /// Extra CA files (PEM) trusted for the server's certificate; relative paths resolve
    /// against the desired-state directory.
    pub trust: Vec<PathBuf>,
    pub service_login: ServiceLogin,
}

/// The login PatientSecure's services use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLogin {
    /// `ImprivataPatientSecureServices_<database>` unless the files name another.
    pub name: String,
    /// Needed only to create the login (`create: true`).
    pub password_ref: Option<SecretRef>,
}

/// The vendor's naming convention for the service login.
pub fn default_service_login(database: &str) -> String {
    format!("ImprivataPatientSecureServices_{database}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateAuthority {
    pub mode: CaMode,
    pub cert_file: Option<PathBuf>,
    pub trust: Vec<PathBuf>,
    /// Lifetime of the server certificates steward issues.
    #[serde(with = "duration_ms")]
    pub duration: Duration,
    /// Renew this long before `notAfter` (cert-manager's `renewBefore`); always shorter
    /// than `duration`.
    #[serde(with = "duration_ms")]
    pub renew_before: Duration,
}

/// cert-manager's default certificate lifetime.
pub const DEFAULT_CERTIFICATE_DURATION: Duration = Duration::from_secs(90 * 24 * 3600);
/// The shortest certificate lifetime accepted: renewal needs time to happen before expiry.
pub const MIN_CERTIFICATE_DURATION: Duration = Duration::from_secs(60);

impl CertificateAuthority {
    /// The default `renewBefore` for a lifetime: a third of it, so that renewal happens at
    /// two thirds of the lifetime (cert-manager's default).
    pub fn default_renew_before(duration: Duration) -> Duration {
        duration / 3
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub name: String,
    pub hostname: String,
    /// `https://host:port`, without a trailing slash.
    pub agent_url: String,
    pub monitor: bool,
    pub certificate: CertificateSource,
    /// In install order (PSIS, PSWS, then the catalog's order).
    pub services: Vec<PlacedService>,
}

impl Server {
    pub fn service(&self, kind: ServiceKind) -> Option<&PlacedService> {
        self.services.iter().find(|s| s.kind == kind)
    }
}

/// Where a server's TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "source"
)]
pub enum CertificateSource {
    /// Issued by the steward CA.
    Generate,
    /// A PEM chain and key.
    Pem {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// A PKCS#12 bundle and its password.
    Pfx {
        pfx_file: PathBuf,
        password_ref: SecretRef,
    },
}

impl CertificateSource {
    pub fn is_third_party(&self) -> bool {
        !matches!(self, Self::Generate)
    }
}

/// A service on a server, with its ports allocated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacedService {
    pub kind: ServiceKind,
    /// The first is the health-tested one; EMERGENCY has two, ADMIN 443 and 80.
    pub ports: Vec<u16>,
    pub drive: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Owners,
    Administrators,
    Users,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owners, Role::Administrators, Role::Users];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owners => "owners",
            Self::Administrators => "administrators",
            Self::Users => "users",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveDirectory {
    pub name: String,
    pub display_name: String,
    pub domain: String,
    /// `ldap://host:port` or `ldaps://host:port`.
    pub server: String,
    pub container: Option<String>,
    pub account: String,
    pub password_ref: SecretRef,
    pub roles: BTreeMap<Role, Vec<String>>,
    /// Only when set does steward manage membership.
    pub members: Option<BTreeMap<String, Vec<String>>>,
    pub members_policy: MembersPolicy,
    pub create_missing_groups: bool,
    /// Extra CAs for the directory's certificate, as written (relative to the directory).
    pub trust: Vec<PathBuf>,
}

/// The effective test of one service kind: the catalog's default with any override applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub service: ServiceKind,
    /// `None` for HL7 (MLLP round trip).
    pub path: Option<String>,
    #[serde(serialize_with = "serialize_display")]
    pub accept_status: Option<StatusRanges>,
    pub response_match: Option<String>,
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub minimum_healthy: u32,
    /// How long a running service may fail its test before it is restarted; zero: never.
    #[serde(with = "duration_ms")]
    pub restart_after: Duration,
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
/// Long enough for a slow start or a brief stall (fall x interval is 30 s) to pass first.
pub const DEFAULT_RESTART_AFTER: Duration = Duration::from_secs(60);

impl HealthCheck {
    /// The catalog's default test for `kind`.
    pub fn catalog_default(kind: ServiceKind) -> Self {
        let (path, accept_status, response_match) = match &kind.spec().health {
            HealthTest::Https {
                path,
                body_contains,
                ..
            } => (
                Some((*path).to_owned()),
                kind.spec().health.accept_ranges(),
                body_contains.map(str::to_owned),
            ),
            HealthTest::Mllp => (None, None, None),
        };
        Self {
            service: kind,
            path,
            accept_status,
            response_match,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            minimum_healthy: 1,
            restart_after: DEFAULT_RESTART_AFTER,
        }
    }
}

fn serialize_display<S: serde::Serializer>(
    v: &Option<StatusRanges>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(r) => s.collect_str(r),
        None => s.serialize_none(),
    }
}

mod duration_ms {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// The URLs every service is handed as connection strings (the console's "Update Service
/// Connection Strings"): at the load balancer when there is one, else at the server that
/// runs the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStrings {
    pub identity_server: Option<String>,
    pub psws: Option<String>,
    pub client: Option<String>,
    /// The reporting service's API.
    pub api: Option<String>,
}

impl Snapshot {
    /// The effective health test of a kind (override or catalog default).
    pub fn health_check(&self, kind: ServiceKind) -> HealthCheck {
        self.health_checks
            .get(&kind)
            .cloned()
            .unwrap_or_else(|| HealthCheck::catalog_default(kind))
    }

    /// Servers running `kind`, by name.
    pub fn servers_with(
        &self,
        kind: ServiceKind,
    ) -> impl Iterator<Item = (&Server, &PlacedService)> {
        self.servers
            .values()
            .filter_map(move |s| s.service(kind).map(|p| (s, p)))
    }

    pub fn connection_strings(&self) -> ConnectionStrings {
        let url = |kind: ServiceKind, suffix: &str| -> Option<String> {
            let (server, placed) = self.servers_with(kind).next()?;
            // Behind a load balancer the URL names its farm, whose port every server of
            // the farm agrees on (validated).
            let (host, port) = match &self.installation.load_balancer {
                Some(lb) => (
                    lb.fqdn.as_str(),
                    lb.farm_ports.get(&kind).copied().unwrap_or(placed.ports[0]),
                ),
                None => (server.hostname.as_str(), placed.ports[0]),
            };
            Some(format!("https://{host}:{port}{suffix}"))
        };
        ConnectionStrings {
            identity_server: url(ServiceKind::Psis, "/identityserver"),
            psws: url(ServiceKind::Psws, "/psws/api"),
            client: url(ServiceKind::Client, ""),
            api: url(ServiceKind::Report, "/api"),
        }
    }

    /// Service placements across the fleet, in install order: every PSIS, then every
    /// PSWS, then the rest server by server. This is the order controllers gate on.
    pub fn install_order(&self) -> Vec<(&Server, &PlacedService)> {
        let mut all: Vec<(&Server, &PlacedService)> = self
            .servers
            .values()
            .flat_map(|s| s.services.iter().map(move |p| (s, p)))
            .collect();
        all.sort_by_key(|(s, p)| (p.kind.install_rank().min(2), s.name.as_str(), p.kind));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_source_fields_are_camel_case() {
        let pem = CertificateSource::Pem {
            cert_file: "certs/app1.pem".into(),
            key_file: "certs/app1.key".into(),
        };
        let json = serde_json::to_value(&pem).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"source": "pem", "certFile": "certs/app1.pem", "keyFile": "certs/app1.key"})
        );
    }
}
