//! Rules across servers, and the compiled server list.

use std::collections::BTreeMap;
use std::path::Path;

use super::server::ServerDraft;
use super::{balancer, Placed, Report};
use crate::catalog::{PortRule, ServiceKind};
use crate::diagnostic::{display_path, quote, Code};
use crate::ports::{allocate, PortRequest};
use crate::resource::{CaMode, Environment};
use crate::snapshot::{CertificateSource, Installation, PlacedService, Server};
use crate::Pos;

/// Where in the Installation document fleet-wide problems are shown.
#[derive(Debug, Clone, Copy)]
pub(super) struct At {
    /// Its `kind:`, for problems of the installation as a whole.
    pub kind: Pos,
    pub install_type: Pos,
}

pub(super) fn compile(
    inst: &Placed<Installation>,
    at: At,
    drafts: Vec<ServerDraft<'_>>,
    servers_unparsed: bool,
    report: &mut Report,
) -> (BTreeMap<String, Server>, BTreeMap<ServiceKind, u16>) {
    let installation = &inst.value;
    unique_hostnames(&drafts, report);
    placement(installation, &drafts, report);
    // A Server that failed to parse may hold the prerequisite; claiming it missing would
    // send the reader after the wrong problem.
    if !servers_unparsed {
        prerequisites(&drafts, report);
    }
    certificates(installation, &drafts, report);
    install_type(inst, at.install_type, &drafts, report);
    if drafts.is_empty() && !servers_unparsed {
        report.warning(
            &inst.file,
            at.kind,
            Code::NoServers,
            "the installation has no Server documents; nothing will be installed",
        );
    }
    let servers = drafts
        .iter()
        .filter_map(|d| {
            let requests: Vec<PortRequest> = d
                .services
                .iter()
                .map(|(kind, svc)| PortRequest {
                    kind: *kind,
                    explicit: svc.port.as_ref().map(|p| p.value),
                })
                .collect();
            let ports = allocate(&requests, &[d.agent_port]);
            displaced_defaults(d, &ports, report);
            let certificate = d.certificate.clone()?;
            let mut services: Vec<PlacedService> = d
                .services
                .iter()
                .zip(ports)
                .map(|((kind, svc), ports)| PlacedService {
                    kind: *kind,
                    ports,
                    drive: svc
                        .drive
                        .as_ref()
                        .map_or_else(|| "C:".to_owned(), |d| d.value.to_ascii_uppercase()),
                })
                .collect();
            services.sort_by_key(|s| s.kind.install_rank());
            let name = d.name().to_owned();
            Some((
                name.clone(),
                Server {
                    name,
                    hostname: d.hostname.clone(),
                    agent_url: d.agent_url.clone(),
                    monitor: d.doc.spec.monitor.as_ref().is_none_or(|m| m.value),
                    certificate,
                    services,
                },
            ))
        })
        .collect();
    let farm_ports = match &installation.load_balancer {
        Some(_) => balancer::farm_ports(&drafts, &servers, report),
        None => BTreeMap::new(),
    };
    (servers, farm_ports)
}

/// An explicit port equal to another service's catalog default on the same server moves
/// that service (allocation gives it the next free port), which changes its URL for every
/// service that calls it. Allowed, since the allocation rule says so, but never silent:
/// the warning stands at the explicit port that caused the move (or, when the move is a
/// knock-on effect of another, at the moved service).
fn displaced_defaults(d: &ServerDraft<'_>, ports: &[Vec<u16>], report: &mut Report) {
    for (i, (kind, svc)) in d.services.iter().enumerate() {
        let PortRule::Default(defaults) = kind.spec().ports else {
            continue;
        };
        for (slot, default) in defaults.iter().enumerate().take(kind.port_count()) {
            let got = ports[i].get(slot).copied();
            // A port the service chose itself is not a displacement.
            if got == Some(*default) || (slot == 0 && svc.port.is_some()) {
                continue;
            }
            let holder = d
                .services
                .iter()
                .zip(ports)
                .enumerate()
                .find(|(j, (_, p))| *j != i && p.contains(default));
            let (by, at) = match holder {
                Some((_, ((other, other_svc), _))) => match &other_svc.port {
                    Some(p) if p.value == *default => (other.to_string(), p.pos),
                    _ => (format!("{other} (itself moved)"), svc.kind.pos),
                },
                None if *default == d.agent_port => (
                    "the steward agent".to_owned(),
                    d.doc.spec.agent.as_ref().map_or(svc.kind.pos, |a| a.pos),
                ),
                None => continue,
            };
            let moved = got.map_or_else(|| "another port".to_owned(), |p| format!("port {p}"));
            let effect = if *kind == ServiceKind::Hl7 {
                "where HL7 senders connect".to_owned()
            } else {
                format!("{kind}'s URL for every service")
            };
            report.warning(
                d.file,
                at,
                Code::PortDisplacesDefault,
                format!(
                    "port {default} is {kind}'s default and {by} takes it, so {kind} moves to {moved}, changing {effect}; give one of them another port"
                ),
            );
        }
    }
}

fn unique_hostnames(drafts: &[ServerDraft<'_>], report: &mut Report) {
    let mut seen: BTreeMap<&str, &ServerDraft<'_>> = BTreeMap::new();
    for d in drafts {
        if let Some(first) = seen.get(d.hostname.as_str()) {
            report.error(
                d.file,
                d.doc.spec.hostname.pos,
                Code::DuplicateHostname,
                format!(
                    "hostname {} is already used by server {} (names are compared without case or a trailing dot)",
                    quote(&d.doc.spec.hostname),
                    quote(first.name())
                ),
            );
        } else {
            seen.insert(&d.hostname, d);
        }
    }
}

/// Without a load balancer, each kind runs on at most one server.
fn placement(installation: &Installation, drafts: &[ServerDraft<'_>], report: &mut Report) {
    if installation.load_balancer.is_some() {
        return;
    }
    let mut first: BTreeMap<ServiceKind, &str> = BTreeMap::new();
    for d in drafts {
        for (kind, svc) in &d.services {
            if let Some(other) = first.get(kind) {
                report.error(
                    d.file,
                    svc.kind.pos,
                    Code::ServicePlacement,
                    format!(
                        "{kind} already runs on server {}; a kind may run on several servers only behind a loadBalancer",
                        quote(other)
                    ),
                );
            } else {
                first.insert(*kind, d.name());
            }
        }
    }
}

/// PSIS and PSWS before anything else; ADMIN and REPORT together.
fn prerequisites(drafts: &[ServerDraft<'_>], report: &mut Report) {
    let present = |k: ServiceKind| {
        drafts
            .iter()
            .any(|d| d.services.iter().any(|(x, _)| *x == k))
    };
    let mut reported_core = false;
    for d in drafts {
        for (kind, svc) in &d.services {
            if !reported_core {
                let missing: Vec<&str> = kind
                    .spec()
                    .depends_on
                    .iter()
                    .filter(|dep| !present(**dep))
                    .map(|dep| dep.as_str())
                    .collect();
                if !missing.is_empty() {
                    report.error(
                        d.file,
                        svc.kind.pos,
                        Code::MissingPrerequisite,
                        format!(
                            "{kind} needs {} in the installation (installed first, on any server)",
                            missing.join(" and ")
                        ),
                    );
                    reported_core = true;
                }
            }
            if let Some(companion) = kind.companion() {
                if !present(companion) {
                    report.error(
                        d.file,
                        svc.kind.pos,
                        Code::PairedService,
                        format!("{kind} requires {companion}: both must exist in the installation"),
                    );
                }
            }
        }
    }
}

fn certificates(installation: &Installation, drafts: &[ServerDraft<'_>], report: &mut Report) {
    let mut files: BTreeMap<std::path::PathBuf, &str> = BTreeMap::new();
    for d in drafts {
        let cert = &d.doc.spec.certificate;
        let generate_pos = cert.value.generate.as_ref().map_or(cert.pos, |g| g.pos);
        match &d.certificate {
            Some(CertificateSource::Generate) => {
                if installation.environment == Environment::Production {
                    report.error(
                        d.file,
                        generate_pos,
                        Code::GeneratedCertificateInProduction,
                        "generated certificates are for test environments; production servers need a third-party certificate (certFile + keyFile, or pfxFile)",
                    );
                }
                if installation.certificate_authority.mode == CaMode::Existing {
                    report.error(
                        d.file,
                        generate_pos,
                        Code::GeneratedCertificateWithoutCa,
                        "certificateAuthority.mode is `existing`, so steward issues no certificates; give this server certFile + keyFile or pfxFile",
                    );
                }
                for (kind, svc) in &d.services {
                    if kind.spec().wants_third_party_certificate {
                        report.warning(
                            d.file,
                            svc.kind.pos,
                            Code::OptionalServiceCertificate,
                            format!("{kind} is meant to run with a third-party certificate; this server's is generated"),
                        );
                    }
                }
            }
            Some(
                CertificateSource::Pem { cert_file, .. }
                | CertificateSource::Pfx {
                    pfx_file: cert_file,
                    ..
                },
            ) => {
                let pos = cert
                    .value
                    .cert_file
                    .as_ref()
                    .or(cert.value.pfx_file.as_ref())
                    .map_or(cert.pos, |f| f.pos);
                let key = normalize(cert_file);
                if let Some(other) = files.get(&key) {
                    report.error(
                        d.file,
                        pos,
                        Code::SharedCertificate,
                        format!(
                            "certificate file {} is already used by server {}; one certificate may serve one server",
                            quote(&display_path(cert_file)),
                            quote(other)
                        ),
                    );
                } else {
                    files.insert(key, d.name());
                }
            }
            None => {}
        }
    }
}

/// `a/./b.pem` and `a/b.pem` are the same file for the sharing rule.
fn normalize(path: &Path) -> std::path::PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn install_type(
    inst: &Placed<Installation>,
    pos: Pos,
    drafts: &[ServerDraft<'_>],
    report: &mut Report,
) {
    let it = inst.value.install_type;
    let Some(required) = it.required_services() else {
        return;
    };
    let file = inst.file.as_path();
    if drafts.len() != 1 {
        report.error(
            file,
            pos,
            Code::InstallTypeMismatch,
            format!(
                "installType `{}` is a single-server install, but {} servers are declared; use `advanced`",
                it.as_str(),
                drafts.len()
            ),
        );
        return;
    }
    let d = &drafts[0];
    let have: Vec<ServiceKind> = d.services.iter().map(|(k, _)| *k).collect();
    let missing: Vec<&str> = required
        .iter()
        .filter(|k| !have.contains(k))
        .map(|k| k.as_str())
        .collect();
    let extra: Vec<&str> = have
        .iter()
        .filter(|k| !required.contains(k))
        .map(|k| k.as_str())
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            parts.push(format!("not part of it: {}", extra.join(", ")));
        }
        report.error(
            file,
            pos,
            Code::InstallTypeMismatch,
            format!(
                "installType `{}` has a fixed service set ({}); use `advanced` for any other set",
                it.as_str(),
                parts.join("; ")
            ),
        );
    }
    if matches!(d.certificate, Some(ref c) if c.is_third_party()) {
        report.error(
            file,
            pos,
            Code::InstallTypeMismatch,
            format!("installType `{}` uses a generated certificate; use `advanced` for third-party certificates", it.as_str()),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use steward_testkit::Fixture;

    use crate::load::{load_text, Loaded};
    use crate::{Code, Compiled};

    fn server(spec: &str) -> Compiled {
        let text = Fixture::installation()
            .server(Fixture::server("app1").spec_lines(spec))
            .documents();
        let mut loaded = Loaded::default();
        load_text(Path::new("s.yaml"), &text, &mut loaded);
        crate::validate::compile(loaded)
    }

    fn displaced(c: &Compiled) -> Vec<String> {
        c.diagnostics
            .iter()
            .filter(|d| d.code == Code::PortDisplacesDefault)
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect()
    }

    #[test]
    fn taking_hl7_s_mllp_port_is_warned_like_any_default() {
        let c = server("  services:\n    - kind: PSIS\n    - kind: PSWS\n    - kind: HL7\n    - kind: JOB\n      port: 2244\n");
        let w = displaced(&c);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("22:13 port 2244 is HL7's default and JOB takes it, so HL7 moves to port 7000, changing where HL7 senders connect"), "{w:?}");
        assert!(c.snapshot.is_some(), "a warning, not an error");
    }

    #[test]
    fn the_agent_s_port_and_a_second_port_displace_too() {
        let c = server("  agent: https://app1.example.eng:7001\n  services:\n    - kind: PSIS\n    - kind: PSWS\n    - kind: EMERGENCY\n    - kind: CLIENT\n      port: 7006\n");
        let w = displaced(&c);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w.iter().any(|m| m
                .starts_with("17:10 port 7001 is PSIS's default and the steward agent takes it")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|m| m.contains("port 7006 is EMERGENCY's default and CLIENT takes it")),
            "{w:?}"
        );
    }

    #[test]
    fn a_knock_on_move_is_warned_at_the_moved_service() {
        // CLIENT takes 7001, so PSIS moves; 7000 is taken, so PSIS lands on PSWS's 7002.
        let c = server("  services:\n    - kind: PSIS\n    - kind: PSWS\n    - kind: CLIENT\n      port: 7001\n    - kind: REPORT\n      port: 7000\n    - kind: ADMIN\n");
        let w = displaced(&c);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w.iter()
                .any(|m| m
                    .contains("PSIS's default and CLIENT takes it, so PSIS moves to port 7002")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|m| m
                .starts_with("19:13 port 7002 is PSWS's default and PSIS (itself moved) takes it")),
            "{w:?}"
        );
    }

    #[test]
    fn no_warning_when_the_default_s_owner_is_elsewhere_or_keeps_it() {
        let c = server("  services:\n    - kind: PSIS\n    - kind: PSWS\n    - kind: CLIENT\n      port: 7009\n    - kind: HEALTH\n      port: 7007\n");
        assert!(displaced(&c).is_empty(), "{:?}", displaced(&c));
    }
}
