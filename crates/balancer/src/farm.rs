//! The farms of a validated snapshot: what every renderer and the HAProxy driver draw from,
//! so all vendors agree on names, ports, members and health tests.

use std::time::Duration;

use steward_model::resource::{Affinity, LbVendor};
use steward_model::snapshot::{HealthCheck, LoadBalancer};
use steward_model::{PortRule, ServiceKind, Snapshot, StatusRanges};

/// Everything the load balancer serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Farms {
    pub vendor: LbVendor,
    /// Where clients reach the HTTP farms.
    pub fqdn: String,
    /// Where HL7 senders connect.
    pub hl7_fqdn: String,
    /// The virtual servers' IP address (set for citrix-adc and f5, validated).
    pub address: Option<std::net::IpAddr>,
    pub affinity: Affinity,
    /// Client and server side idle timeouts of every farm (>= 1860 s, validated).
    pub idle_timeout: Duration,
    /// In catalog order.
    pub farms: Vec<Farm>,
}

/// One service kind behind the load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Farm {
    pub kind: ServiceKind,
    /// The vendor guide's farm name, e.g. "PatientSecure Identity Server".
    pub title: &'static str,
    /// The ports the load balancer listens on for this kind: the farm port first, then
    /// the kind's other ports (ADMIN's 80, EMERGENCY's palm vein port).
    pub listeners: Vec<Listener>,
    /// By server name. HL7's standbys are listed but not routed to (`active: false`).
    pub members: Vec<Member>,
    pub check: Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The port on the load balancer.
    pub port: u16,
    /// Which of a member's ports it forwards to (index into [`Member::ports`]).
    pub slot: usize,
    /// False for ADMIN's plain-HTTP redirect port and HL7 (MLLP over TCP).
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub server: String,
    pub hostname: String,
    /// The service's ports on that server, as allocated (the first is health-tested).
    pub ports: Vec<u16>,
    /// Receives traffic. Always true for HTTP farms; for HL7 only the active listener.
    pub active: bool,
}

/// How the load balancer tests a member: the kind's effective health test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// HTTPS GET of `path` on the member's first port.
    Https {
        path: String,
        accept: StatusRanges,
        response_match: Option<String>,
    },
    /// HL7: a TCP connection to the listener (the MLLP round trip is steward's own probe).
    Tcp,
}

impl Farms {
    /// The farms of a snapshot whose load balancer has a vendor; `hl7_active` names the
    /// server whose HL7 listener receives traffic (default: `hl7.preferred`, else the first
    /// server running HL7 by name).
    pub fn from_snapshot(snapshot: &Snapshot, hl7_active: Option<&str>) -> Option<Self> {
        let lb: &LoadBalancer = snapshot.installation.load_balancer.as_ref()?;
        let vendor = lb.vendor?;
        let hl7_active = hl7_active
            .or(snapshot.installation.hl7.preferred.as_deref())
            .filter(|s| {
                snapshot
                    .servers
                    .get(*s)
                    .is_some_and(|s| s.service(ServiceKind::Hl7).is_some())
            })
            .or_else(|| {
                snapshot
                    .servers_with(ServiceKind::Hl7)
                    .next()
                    .map(|(s, _)| s.name.as_str())
            });
        let farms = lb
            .farm_ports
            .iter()
            .map(|(&kind, &port)| {
                let members = snapshot
                    .servers_with(kind)
                    .map(|(server, placed)| Member {
                        server: server.name.clone(),
                        hostname: server.hostname.clone(),
                        ports: placed.ports.clone(),
                        active: kind != ServiceKind::Hl7
                            || Some(server.name.as_str()) == hl7_active,
                    })
                    .collect();
                Farm {
                    kind,
                    title: title(kind),
                    listeners: listeners(kind, port),
                    members,
                    check: check(&snapshot.health_check(kind)),
                }
            })
            .collect();
        Some(Self {
            vendor,
            fqdn: lb.fqdn.clone(),
            hl7_fqdn: lb.hl7_fqdn.clone(),
            address: lb.address,
            affinity: lb.affinity,
            idle_timeout: lb.idle_timeout,
            farms,
        })
    }

    /// HL7's farm, if HL7 is placed anywhere.
    pub fn hl7(&self) -> Option<&Farm> {
        self.farms.iter().find(|f| f.kind == ServiceKind::Hl7)
    }
}

impl Farm {
    /// The members traffic goes to.
    pub fn routed(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.active)
    }

    /// A name usable as an identifier by every vendor: `psis`, `admin_80`.
    pub fn id(&self, listener: &Listener) -> String {
        let kind = self.kind.as_str().to_ascii_lowercase();
        if listener.slot == 0 {
            kind
        } else {
            format!("{kind}_{}", listener.port)
        }
    }
}

fn listeners(kind: ServiceKind, port: u16) -> Vec<Listener> {
    let tls = kind != ServiceKind::Hl7;
    let mut all = vec![Listener { port, slot: 0, tls }];
    if let PortRule::Fixed(p) | PortRule::Default(p) = kind.spec().ports {
        all.extend(p.iter().enumerate().skip(1).map(|(slot, &port)| Listener {
            port,
            slot,
            // ADMIN's second port is its plain-HTTP redirect.
            tls: kind != ServiceKind::Admin,
        }));
    }
    all
}

fn check(hc: &HealthCheck) -> Check {
    let kind = match (&hc.path, &hc.accept_status) {
        (Some(path), Some(accept)) => CheckKind::Https {
            path: path.clone(),
            accept: accept.clone(),
            response_match: hc.response_match.clone(),
        },
        _ => CheckKind::Tcp,
    };
    Check {
        kind,
        interval: hc.interval,
        timeout: hc.timeout,
        rise: hc.rise,
        fall: hc.fall,
    }
}

/// The farm names the vendor's High Availability guide uses.
pub fn title(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Psis => "PatientSecure Identity Server",
        ServiceKind::Psws => "PatientSecure Web Services",
        ServiceKind::Client => "PatientSecure User Interface Server",
        ServiceKind::Report => "PatientSecure Reporting Service",
        ServiceKind::Admin => "PatientSecure Admin Console",
        ServiceKind::Emergency => "PatientSecure Emergency Search Service",
        ServiceKind::Health => "PatientSecure System Health Service",
        ServiceKind::Fhir => "PatientSecure FHIR Service",
        ServiceKind::Empi => "PatientSecure EMPI Service",
        ServiceKind::Job => "PatientSecure Job Scheduler",
        ServiceKind::Hl7 => "PatientSecure HL7 Listener",
    }
}
