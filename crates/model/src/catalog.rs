//! The PatientSecure service catalog: the single source of truth for what each service
//! kind is, which ports it takes, what it depends on and how it is health-tested.
//!
//! Everything else (validation, port allocation, the plan, the lab services, the prober)
//! reads these tables instead of repeating them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::status_range::StatusRanges;

/// One of the eleven PatientSecure services, in catalog (install) order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum ServiceKind {
    Psis,
    Psws,
    Client,
    Report,
    Admin,
    Emergency,
    Health,
    Fhir,
    Empi,
    Job,
    Hl7,
}

/// How a service kind gets its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRule {
    /// These ports and no others; setting `port` is an error (ADMIN: 443, plus 80 redirecting).
    Fixed(&'static [u16]),
    /// These ports when free on the server, otherwise the next free ports from 7000 up.
    /// The first is the one `port:` overrides and the one health-tested.
    Default(&'static [u16]),
    /// No default: the next free port from 7000 up (JOB).
    NextFree,
}

/// The first port searched when a default is taken or absent.
pub const FIRST_DYNAMIC_PORT: u16 = 7000;

/// The port a steward agent listens on unless the Server says otherwise.
pub const DEFAULT_AGENT_PORT: u16 = 7443;

/// The catalog's built-in health test for a service kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    /// HTTPS GET of `path` on the service's first port.
    Https {
        path: &'static str,
        accept: &'static str,
        body_contains: Option<&'static str>,
    },
    /// Send an HL7 v2 message over MLLP and expect an ACK with MSA-1 = AA.
    Mllp,
}

impl HealthTest {
    /// The accepted status ranges of an HTTPS test, parsed (the catalog's are known-good).
    pub fn accept_ranges(&self) -> Option<StatusRanges> {
        match self {
            Self::Https { accept, .. } => StatusRanges::parse(accept).ok(),
            Self::Mllp => None,
        }
    }
}

/// What the catalog says about one service kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub kind: ServiceKind,
    /// The console's name for it.
    pub display_name: &'static str,
    pub ports: PortRule,
    /// Kinds that must be installed and healthy (anywhere in the installation) before
    /// this one is installed.
    pub depends_on: &'static [ServiceKind],
    pub health: HealthTest,
    /// Optional services (FHIR, EMPI) warn unless their server has a third-party certificate.
    pub wants_third_party_certificate: bool,
}

const CORE: &[ServiceKind] = &[ServiceKind::Psis, ServiceKind::Psws];

const fn https(
    path: &'static str,
    accept: &'static str,
    body_contains: Option<&'static str>,
) -> HealthTest {
    HealthTest::Https {
        path,
        accept,
        body_contains,
    }
}

const fn api_service(
    kind: ServiceKind,
    display_name: &'static str,
    ports: PortRule,
    optional: bool,
) -> ServiceSpec {
    ServiceSpec {
        kind,
        display_name,
        ports,
        depends_on: CORE,
        health: https("/api", "200-399", None),
        wants_third_party_certificate: optional,
    }
}

static CATALOG: [ServiceSpec; 11] = [
    ServiceSpec {
        kind: ServiceKind::Psis,
        display_name: "Identity Server",
        ports: PortRule::Default(&[7001]),
        depends_on: &[],
        health: https("/identityserver", "200-399", Some("IdentityServer4")),
        wants_third_party_certificate: false,
    },
    ServiceSpec {
        kind: ServiceKind::Psws,
        display_name: "Web Services",
        ports: PortRule::Default(&[7002]),
        depends_on: &[ServiceKind::Psis],
        health: https("/psws/api/public/status", "200-302", Some("Success")),
        wants_third_party_certificate: false,
    },
    ServiceSpec {
        kind: ServiceKind::Client,
        display_name: "User Interface",
        ports: PortRule::Default(&[7003]),
        depends_on: CORE,
        health: https("/", "200-399", Some("UserInterface3")),
        wants_third_party_certificate: false,
    },
    api_service(
        ServiceKind::Report,
        "Reporting Service",
        PortRule::Default(&[7004]),
        false,
    ),
    ServiceSpec {
        kind: ServiceKind::Admin,
        display_name: "Admin Console",
        ports: PortRule::Fixed(&[443, 80]),
        depends_on: CORE,
        health: https("/AdminConsole", "200-399", None),
        wants_third_party_certificate: false,
    },
    api_service(
        ServiceKind::Emergency,
        "Emergency Search & Palm Vein Auth",
        PortRule::Default(&[7005, 7006]),
        false,
    ),
    api_service(
        ServiceKind::Health,
        "System Health Service",
        PortRule::Default(&[7007]),
        false,
    ),
    api_service(
        ServiceKind::Fhir,
        "FHIR Service",
        PortRule::Default(&[7008]),
        true,
    ),
    api_service(
        ServiceKind::Empi,
        "EMPI Service",
        PortRule::Default(&[7009]),
        true,
    ),
    api_service(ServiceKind::Job, "Job Scheduler", PortRule::NextFree, false),
    ServiceSpec {
        kind: ServiceKind::Hl7,
        display_name: "HL7 Listener/Processor/Sender",
        ports: PortRule::Default(&[2244]),
        depends_on: CORE,
        health: HealthTest::Mllp,
        wants_third_party_certificate: false,
    },
];

impl ServiceKind {
    /// Every kind, in install order: PSIS, PSWS, then the rest.
    pub const ALL: [ServiceKind; 11] = [
        Self::Psis,
        Self::Psws,
        Self::Client,
        Self::Report,
        Self::Admin,
        Self::Emergency,
        Self::Health,
        Self::Fhir,
        Self::Empi,
        Self::Job,
        Self::Hl7,
    ];

    pub fn spec(self) -> &'static ServiceSpec {
        &CATALOG[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Psis => "PSIS",
            Self::Psws => "PSWS",
            Self::Client => "CLIENT",
            Self::Report => "REPORT",
            Self::Admin => "ADMIN",
            Self::Emergency => "EMERGENCY",
            Self::Health => "HEALTH",
            Self::Fhir => "FHIR",
            Self::Empi => "EMPI",
            Self::Job => "JOB",
            Self::Hl7 => "HL7",
        }
    }

    /// The position in install order; uninstall runs in the reverse.
    pub fn install_rank(self) -> usize {
        self as usize
    }

    /// How many ports the kind listens on.
    pub fn port_count(self) -> usize {
        match self.spec().ports {
            PortRule::Fixed(p) | PortRule::Default(p) => p.len(),
            PortRule::NextFree => 1,
        }
    }

    /// Kinds that must exist together in an installation (ADMIN needs REPORT and back).
    pub fn companion(self) -> Option<ServiceKind> {
        match self {
            Self::Admin => Some(Self::Report),
            Self::Report => Some(Self::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not one of the catalog's kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service kind `{0}`; expected one of PSIS, PSWS, CLIENT, REPORT, ADMIN, EMERGENCY, HEALTH, FHIR, EMPI, JOB, HL7")]
pub struct UnknownServiceKind(pub String);

impl FromStr for ServiceKind {
    type Err = UnknownServiceKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownServiceKind(s.to_owned()))
    }
}

/// `Installation.spec.installType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstallType {
    /// One server with the nine core services and a generated certificate.
    Basic,
    /// Basic plus EMPI and FHIR.
    Complete,
    /// Any valid set of servers and services.
    Advanced,
}

impl InstallType {
    /// The exact service set the type requires, or `None` for `advanced`.
    pub fn required_services(self) -> Option<&'static [ServiceKind]> {
        use ServiceKind::*;
        const BASIC: &[ServiceKind] = &[
            Psis, Psws, Client, Report, Admin, Emergency, Health, Job, Hl7,
        ];
        const COMPLETE: &[ServiceKind] = &[
            Psis, Psws, Client, Report, Admin, Emergency, Health, Fhir, Empi, Job, Hl7,
        ];
        match self {
            Self::Basic => Some(BASIC),
            Self::Complete => Some(COMPLETE),
            Self::Advanced => None,
        }
    }

    /// Basic and complete installs are single-server with a generated certificate.
    pub fn is_single_server(self) -> bool {
        !matches!(self, Self::Advanced)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Complete => "complete",
            Self::Advanced => "advanced",
        }
    }
}

/// Whether a kind may run on more than one server: only behind a load balancer.
pub fn may_run_on_several_servers(has_load_balancer: bool) -> bool {
    has_load_balancer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_indexed_by_kind() {
        for kind in ServiceKind::ALL {
            assert_eq!(kind.spec().kind, kind);
            assert_eq!(kind.as_str().parse::<ServiceKind>(), Ok(kind));
        }
    }

    #[test]
    fn psis_then_psws_then_the_rest() {
        assert_eq!(ServiceKind::ALL[0], ServiceKind::Psis);
        assert_eq!(ServiceKind::ALL[1], ServiceKind::Psws);
        for kind in &ServiceKind::ALL[2..] {
            assert_eq!(kind.spec().depends_on, CORE, "{kind}");
        }
        for kind in ServiceKind::ALL {
            for dep in kind.spec().depends_on {
                assert!(dep.install_rank() < kind.install_rank());
            }
        }
    }

    #[test]
    fn catalog_health_ranges_parse() {
        for kind in ServiceKind::ALL {
            if let HealthTest::Https { accept, .. } = kind.spec().health {
                StatusRanges::parse(accept).expect(accept);
            }
        }
    }

    #[test]
    fn unknown_kind_lists_the_catalog() {
        let err = "PSXX".parse::<ServiceKind>().unwrap_err().to_string();
        assert!(err.contains("PSXX") && err.contains("HL7"), "{err}");
    }
}
