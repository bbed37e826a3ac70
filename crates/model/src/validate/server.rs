use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{max_len, normalize_host, Report};
use crate::catalog::{PortRule, ServiceKind, DEFAULT_AGENT_PORT};
use crate::diagnostic::{quote, Code};
use crate::load::PORT_RANGE;
use crate::resource::{Document, ServerServiceSpec, ServerSpec};
use crate::snapshot::CertificateSource;
use crate::syntax::{check_fqdn, is_valid_drive, parse_host_url};
use crate::Pos;

/// A server whose own rules were checked, kept with its document for fleet-wide rules.
#[derive(Debug)]
pub(super) struct ServerDraft<'a> {
    pub file: &'a Path,
    pub doc: &'a Document<ServerSpec>,
    /// Lowercase, without a trailing dot: what uniqueness is checked on and agents use.
    pub hostname: String,
    pub agent_url: String,
    pub agent_port: u16,
    pub certificate: Option<CertificateSource>,
    /// Services whose kind is known, in the order written.
    pub services: Vec<(ServiceKind, &'a ServerServiceSpec)>,
}

impl ServerDraft<'_> {
    pub fn name(&self) -> &str {
        &self.doc.metadata.name
    }
}

pub(super) fn compile<'a>(
    file: &'a Path,
    doc: &'a Document<ServerSpec>,
    report: &mut Report,
) -> Option<ServerDraft<'a>> {
    let spec = &doc.spec;
    let host = &spec.hostname;
    if report.within_length(file, "hostname", host, max_len::CONSOLE) {
        if let Err(e) = check_fqdn(host) {
            report.error(
                file,
                host.pos,
                Code::InvalidFqdn,
                format!("hostname {} {e}", quote(host)),
            );
        }
    }
    let hostname = normalize_host(host);

    let (agent_url, agent_port) = match &spec.agent {
        Some(url) if !report.within_length(file, "agent", url, max_len::URL) => {
            (String::new(), DEFAULT_AGENT_PORT)
        }
        Some(url) => match parse_host_url(url, &["https"], "https:// (agents speak TLS only)") {
            Ok(u) => {
                let port = u.port.unwrap_or(443);
                (format!("https://{}:{port}", bracket(&u.host)), port)
            }
            Err(e) => {
                report.error(
                    file,
                    url.pos,
                    Code::InvalidUrl,
                    format!("agent URL {} {e}", quote(url)),
                );
                (String::new(), DEFAULT_AGENT_PORT)
            }
        },
        None => (
            format!("https://{hostname}:{DEFAULT_AGENT_PORT}"),
            DEFAULT_AGENT_PORT,
        ),
    };

    let certificate = certificate_source(file, spec, report);
    let services = services(file, spec, agent_port, report);
    Some(ServerDraft {
        file,
        doc,
        hostname,
        agent_url,
        agent_port,
        certificate,
        services,
    })
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn certificate_source(
    file: &Path,
    spec: &ServerSpec,
    report: &mut Report,
) -> Option<CertificateSource> {
    let c = &spec.certificate.value;
    let at = spec.certificate.pos;
    for (field, path) in [
        ("certificate.certFile", &c.cert_file),
        ("certificate.keyFile", &c.key_file),
        ("certificate.pfxFile", &c.pfx_file),
    ] {
        if let Some(path) = path {
            if !report.within_length(file, field, path, max_len::PATH) {
                return None;
            }
        }
    }
    let generate = c.generate.as_ref().is_some_and(|g| g.value);
    let pem = c.cert_file.is_some() || c.key_file.is_some();
    if let Some(pw) = &c.password_ref {
        if !report.secret_ref_within_length(file, "certificate.passwordRef", pw) {
            return None;
        }
    }
    let pfx = c.pfx_file.is_some() || c.password_ref.is_some();
    let chosen = [generate, pem, pfx].iter().filter(|b| **b).count();
    if chosen != 1 {
        let why = if chosen == 0 {
            "certificate needs exactly one of `generate: true`, `certFile` + `keyFile`, or `pfxFile` + `passwordRef`"
        } else {
            "certificate sets more than one source; choose one of `generate: true`, `certFile` + `keyFile`, or `pfxFile` + `passwordRef`"
        };
        report.error(file, at, Code::CertificateSource, why);
        return None;
    }
    if generate {
        return Some(CertificateSource::Generate);
    }
    if pem {
        return match (&c.cert_file, &c.key_file) {
            (Some(cert), Some(key)) => Some(CertificateSource::Pem {
                cert_file: PathBuf::from(&cert.value),
                key_file: PathBuf::from(&key.value),
            }),
            (Some(cert), None) => {
                report.error(
                    file,
                    cert.pos,
                    Code::CertificateSource,
                    "certFile needs keyFile (the certificate's private key)",
                );
                None
            }
            (None, Some(key)) => {
                report.error(
                    file,
                    key.pos,
                    Code::CertificateSource,
                    "keyFile needs certFile (the certificate chain)",
                );
                None
            }
            (None, None) => None,
        };
    }
    match (&c.pfx_file, &c.password_ref) {
        (Some(pfx), Some(pw)) => Some(CertificateSource::Pfx {
            pfx_file: PathBuf::from(&pfx.value),
            password_ref: pw.value.clone(),
        }),
        (Some(pfx), None) => {
            report.error(
                file,
                pfx.pos,
                Code::CertificateSource,
                "pfxFile needs passwordRef (env:NAME or file:PATH)",
            );
            None
        }
        (None, Some(pw)) => {
            report.error(
                file,
                pw.pos,
                Code::CertificateSource,
                "passwordRef is only used with pfxFile",
            );
            None
        }
        (None, None) => None,
    }
}

fn services<'a>(
    file: &Path,
    spec: &'a ServerSpec,
    agent_port: u16,
    report: &mut Report,
) -> Vec<(ServiceKind, &'a ServerServiceSpec)> {
    let mut known: Vec<(ServiceKind, &ServerServiceSpec)> = Vec::new();
    let mut first_of_kind: BTreeMap<ServiceKind, Pos> = BTreeMap::new();
    for svc in &spec.services {
        let Some(kind) = service_kind(file, &svc.kind, report) else {
            continue;
        };
        if let Some(first) = first_of_kind.get(&kind) {
            report.error(
                file,
                svc.kind.pos,
                Code::DuplicateService,
                format!("{kind} is already on this server (line {})", first.line),
            );
            continue;
        }
        first_of_kind.insert(kind, svc.kind.pos);
        if let (PortRule::Fixed(ports), Some(port)) = (kind.spec().ports, &svc.port) {
            report.error(
                file,
                port.pos,
                Code::FixedPort,
                format!(
                    "{kind}'s port is fixed ({}); remove `port`",
                    ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            );
        }
        if let Some(port) = &svc.port {
            if port.value == 0 {
                report.error(file, port.pos, Code::InvalidPort, PORT_RANGE);
            }
        }
        if let Some(drive) = &svc.drive {
            if !is_valid_drive(drive) {
                report.error(
                    file,
                    drive.pos,
                    Code::InvalidDrive,
                    format!(
                        "drive {} must be a letter and a colon, like \"D:\"",
                        quote(drive)
                    ),
                );
            }
        }
        known.push((kind, svc));
    }
    check_explicit_ports(file, &known, agent_port, report);
    known
}

/// Explicit and fixed ports must not collide with each other or with the agent.
fn check_explicit_ports(
    file: &Path,
    services: &[(ServiceKind, &ServerServiceSpec)],
    agent_port: u16,
    report: &mut Report,
) {
    let mut owners: BTreeMap<u16, String> = BTreeMap::new();
    owners.insert(agent_port, "the steward agent".to_owned());
    for (kind, svc) in services {
        if let PortRule::Fixed(ports) = kind.spec().ports {
            for p in ports {
                if let Some(owner) = owners.get(p) {
                    report.error(
                        file,
                        svc.kind.pos,
                        Code::DuplicatePort,
                        format!("{kind} needs port {p}, already used by {owner}"),
                    );
                } else {
                    owners.insert(*p, kind.to_string());
                }
            }
        }
    }
    for (kind, svc) in services {
        if matches!(kind.spec().ports, PortRule::Fixed(_)) {
            continue;
        }
        if let Some(port) = &svc.port {
            if let Some(owner) = owners.get(&port.value) {
                report.error(
                    file,
                    port.pos,
                    Code::DuplicatePort,
                    format!(
                        "port {} is already used on this server by {owner}",
                        port.value
                    ),
                );
            } else {
                owners.insert(port.value, kind.to_string());
            }
        }
    }
}

/// A service kind from the catalog, or an error quoting what was written.
pub(super) fn service_kind(
    file: &Path,
    kind: &crate::Located<String>,
    report: &mut Report,
) -> Option<ServiceKind> {
    let parsed = kind.parse::<ServiceKind>().ok();
    if parsed.is_none() {
        report.error(
            file,
            kind.pos,
            Code::UnknownServiceKind,
            format!(
                "unknown service kind {}; expected one of {}",
                quote(kind),
                ServiceKind::ALL.map(ServiceKind::as_str).join(", ")
            ),
        );
    }
    parsed
}
