//! Rules across servers, and the compiled server list.

use std::collections::BTreeMap;
use std::path::Path;

use super::server::ServerDraft;
use super::{Placed, Report};
use crate::catalog::ServiceKind;
use crate::ports::{allocate, PortRequest};
use crate::resource::{CaMode, Environment};
use crate::snapshot::{CertificateSource, Installation, PlacedService, Server};
use crate::Pos;

pub(super) fn compile(
    inst: &Placed<Installation>,
    install_type_pos: Pos,
    drafts: Vec<ServerDraft<'_>>,
    servers_unparsed: bool,
    report: &mut Report,
) -> BTreeMap<String, Server> {
    let installation = &inst.value;
    unique_hostnames(&drafts, report);
    placement(installation, &drafts, report);
    // A Server that failed to parse may hold the prerequisite; claiming it missing would
    // send the reader after the wrong problem.
    if !servers_unparsed {
        prerequisites(&drafts, report);
    }
    certificates(installation, &drafts, report);
    install_type(inst, install_type_pos, &drafts, report);
    if drafts.is_empty() && !servers_unparsed {
        report.warning(
            &inst.file,
            Pos::new(1, 1),
            "no-servers",
            "the installation has no Server documents; nothing will be installed",
        );
    }
    drafts
        .into_iter()
        .filter_map(|d| {
            let certificate = d.certificate.clone()?;
            let requests: Vec<PortRequest> = d
                .services
                .iter()
                .map(|(kind, svc)| PortRequest {
                    kind: *kind,
                    explicit: svc.port.as_ref().map(|p| p.value),
                })
                .collect();
            let ports = allocate(&requests, &[d.agent_port]);
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
                    hostname: d.doc.spec.hostname.value.to_ascii_lowercase(),
                    agent_url: d.agent_url,
                    monitor: d.doc.spec.monitor.as_ref().is_none_or(|m| m.value),
                    certificate,
                    services,
                },
            ))
        })
        .collect()
}

fn unique_hostnames(drafts: &[ServerDraft<'_>], report: &mut Report) {
    let mut seen: BTreeMap<String, &ServerDraft<'_>> = BTreeMap::new();
    for d in drafts {
        let host = d.doc.spec.hostname.value.to_ascii_lowercase();
        if let Some(first) = seen.get(&host) {
            report.error(
                d.file,
                d.doc.spec.hostname.pos,
                "duplicate-hostname",
                format!(
                    "hostname `{host}` is already used by server `{}`",
                    first.name()
                ),
            );
        } else {
            seen.insert(host, d);
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
                    "service-placement",
                    format!(
                        "{kind} already runs on server `{other}`; a kind may run on several servers only behind a loadBalancer"
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
                        "missing-prerequisite",
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
                        "paired-service",
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
                        "generated-certificate-in-production",
                        "generated certificates are for test environments; production servers need a third-party certificate (certFile + keyFile, or pfxFile)",
                    );
                }
                if installation.certificate_authority.mode == CaMode::Existing {
                    report.error(
                        d.file,
                        generate_pos,
                        "generated-certificate-without-ca",
                        "certificateAuthority.mode is `existing`, so steward issues no certificates; give this server certFile + keyFile or pfxFile",
                    );
                }
                for (kind, svc) in &d.services {
                    if kind.spec().wants_third_party_certificate {
                        report.warning(
                            d.file,
                            svc.kind.pos,
                            "optional-service-certificate",
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
                        "shared-certificate",
                        format!("certificate file `{}` is already used by server `{other}`; one certificate may serve one server", cert_file.display()),
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
            "install-type-mismatch",
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
            "install-type-mismatch",
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
            "install-type-mismatch",
            format!("installType `{}` uses a generated certificate; use `advanced` for third-party certificates", it.as_str()),
        );
    }
}
