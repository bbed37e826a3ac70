use std::path::{Path, PathBuf};

use super::{Placed, Report};
use crate::resource::{CaMode, Document, InstallationSpec};
use crate::snapshot::{CertificateAuthority, Database, Installation};
use crate::syntax::{check_fqdn, is_valid_release, is_valid_sql_server};

/// The console limits these fields to 50 characters.
pub(crate) const CONSOLE_MAX_LEN: usize = 50;

pub(super) fn compile(
    file: &Path,
    doc: &Document<InstallationSpec>,
    report: &mut Report,
) -> Option<Placed<Installation>> {
    let spec = &doc.spec;
    if !is_valid_release(&spec.release) {
        report.error(
            file,
            spec.release.pos,
            "invalid-release",
            format!(
                "release `{}` must be a version like 6.12.1",
                spec.release.value
            ),
        );
    }
    if let Some(lb) = &spec.load_balancer {
        if let Err(e) = check_fqdn(&lb.fqdn) {
            report.error(
                file,
                lb.fqdn.pos,
                "invalid-fqdn",
                format!("loadBalancer.fqdn `{}` {e}", lb.fqdn.value),
            );
        }
    }
    let db = &spec.database;
    if db.server.chars().count() > CONSOLE_MAX_LEN {
        report.error(
            file,
            db.server.pos,
            "too-long",
            format!(
                "database.server is {} characters; at most {CONSOLE_MAX_LEN} are allowed",
                db.server.chars().count()
            ),
        );
    } else if !is_valid_sql_server(&db.server) {
        report.error(
            file,
            db.server.pos,
            "invalid-host",
            format!(
                "database.server `{}` must be a host name or IP address, optionally followed by \\INSTANCE",
                db.server.value
            ),
        );
    }
    if let Some(port) = &db.port {
        if port.value == 0 {
            report.error(
                file,
                port.pos,
                "invalid-port",
                "database.port must be 1-65535",
            );
        }
    }
    for (field, value) in [("name", &db.name), ("user", &db.user)] {
        if value.trim().is_empty() {
            report.error(
                file,
                value.pos,
                "empty-value",
                format!("database.{field} must not be empty"),
            );
        }
    }
    let ca = &spec.certificate_authority;
    match (ca.mode.value, &ca.cert_file) {
        (CaMode::Existing, None) => report.error(
            file,
            ca.mode.pos,
            "ca-cert-file",
            "certificateAuthority.mode `existing` needs certFile: the CA that issued the servers' certificates",
        ),
        (CaMode::Generated, Some(f)) => report.warning(
            file,
            f.pos,
            "ca-cert-file",
            "certFile is ignored when certificateAuthority.mode is `generated`",
        ),
        _ => {}
    }
    Some(Placed {
        file: file.to_owned(),
        value: Installation {
            name: doc.metadata.name.value.clone(),
            environment: spec.environment.value,
            install_type: spec.install_type.value,
            release: spec.release.value.clone(),
            mode: spec.mode.as_ref().map(|m| m.value).unwrap_or_default(),
            prune: spec.prune.as_ref().is_some_and(|p| p.value),
            load_balancer: spec.load_balancer.as_ref().map(|lb| lb.fqdn.value.clone()),
            database: Database {
                server: db.server.value.clone(),
                port: db.port.as_ref().map_or(1433, |p| p.value),
                name: db.name.value.clone(),
                user: db.user.value.clone(),
                password_ref: db.password_ref.value.clone(),
                create: db.create.as_ref().is_some_and(|c| c.value),
                encrypt: db.encrypt.as_ref().is_none_or(|e| e.value),
            },
            certificate_authority: CertificateAuthority {
                mode: ca.mode.value,
                cert_file: ca.cert_file.as_ref().map(|f| PathBuf::from(&f.value)),
                trust: ca.trust.iter().map(|t| PathBuf::from(&t.value)).collect(),
            },
        },
    })
}
