use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{balancer, max_len, Placed, Report};
use crate::diagnostic::{quote, Code};
use crate::load::PORT_RANGE;
use crate::resource::{CaMode, DatabaseSpec, Document, InstallationSpec};
use crate::snapshot::{
    default_service_login, CertificateAuthority, Database, Installation, ServiceLogin,
    DEFAULT_CERTIFICATE_DURATION, MIN_CERTIFICATE_DURATION,
};
use crate::syntax::{format_duration, is_valid_release, is_valid_sql_server};
use crate::Located;

/// The service login: a usable name, and its password when steward is to create it.
fn database_service_login(file: &Path, db: &DatabaseSpec, report: &mut Report) {
    let login = db.service_login.as_ref();
    if let Some(name) = login.and_then(|l| l.name.as_ref()) {
        let field = "database.serviceLogin.name";
        if report.within_length(file, field, name, max_len::SQL_NAME) && name.trim().is_empty() {
            report.error(
                file,
                name.pos,
                Code::EmptyValue,
                format!("{field} must not be empty"),
            );
        }
    }
    let password = login.and_then(|l| l.password_ref.as_ref());
    if let Some(password) = password {
        report.secret_ref_within_length(file, "database.serviceLogin.passwordRef", password);
    }
    if let (Some(create), None) = (db.create.as_ref().filter(|c| c.value), password) {
        report.error(
            file,
            create.pos,
            Code::ServicePassword,
            "database.create: true needs database.serviceLogin.passwordRef: the service login is created with that password",
        );
    }
}

pub(super) fn compile(
    file: &Path,
    doc: &Document<InstallationSpec>,
    report: &mut Report,
) -> Option<Placed<Installation>> {
    let spec = &doc.spec;
    if report.within_length(file, "release", &spec.release, max_len::SHORT)
        && !is_valid_release(&spec.release)
    {
        report.error(
            file,
            spec.release.pos,
            Code::InvalidRelease,
            format!(
                "release {} must be a version like 6.12.1",
                quote(&spec.release)
            ),
        );
    }
    let load_balancer = spec
        .load_balancer
        .as_ref()
        .map(|lb| balancer::load_balancer(file, lb, report));
    let hl7 = spec.hl7.as_ref().map_or_else(Default::default, |h| {
        balancer::hl7(file, h, spec.load_balancer.as_deref(), report)
    });
    let db = &spec.database;
    if report.within_length(file, "database.server", &db.server, max_len::CONSOLE)
        && !is_valid_sql_server(&db.server)
    {
        report.error(
            file,
            db.server.pos,
            Code::InvalidHost,
            format!(
                "database.server {} must be a host name or IP address, optionally followed by \\INSTANCE",
                quote(&db.server)
            ),
        );
    }
    if let Some(port) = &db.port {
        if port.value == 0 {
            report.error(
                file,
                port.pos,
                Code::InvalidPort,
                format!("database.{PORT_RANGE}"),
            );
        }
    }
    report.secret_ref_within_length(file, "database.passwordRef", &db.password_ref);
    for (field, value) in [("name", &db.name), ("user", &db.user)] {
        let field = format!("database.{field}");
        if !report.within_length(file, &field, value, max_len::SQL_NAME) {
            continue;
        }
        if value.trim().is_empty() {
            report.error(
                file,
                value.pos,
                Code::EmptyValue,
                format!("{field} must not be empty"),
            );
        }
    }
    database_service_login(file, db, report);
    for path in &db.trust {
        report.within_length(file, "database.trust", path, max_len::PATH);
    }
    let ca = &spec.certificate_authority;
    match (ca.mode.value, &ca.cert_file) {
        (CaMode::Existing, None) => report.error(
            file,
            ca.mode.pos,
            Code::CaCertFile,
            "certificateAuthority.mode `existing` needs certFile: the CA that issued the servers' certificates",
        ),
        (CaMode::Generated, Some(f)) => report.warning(
            file,
            f.pos,
            Code::CaCertFile,
            "certFile is ignored when certificateAuthority.mode is `generated`",
        ),
        _ => {}
    }
    for (field, path) in ca
        .cert_file
        .iter()
        .map(|f| ("certificateAuthority.certFile", f))
        .chain(ca.trust.iter().map(|t| ("certificateAuthority.trust", t)))
    {
        report.within_length(file, field, path, max_len::PATH);
    }
    let (duration, renew_before) = certificate_timing(file, ca, report);
    Some(Placed {
        file: file.to_owned(),
        value: Installation {
            name: doc.metadata.name.value.clone(),
            environment: spec.environment.value,
            install_type: spec.install_type.value,
            release: spec.release.value.clone(),
            mode: spec.mode.as_ref().map(|m| m.value).unwrap_or_default(),
            prune: spec.prune.as_ref().is_some_and(|p| p.value),
            load_balancer,
            hl7,
            database: Database {
                server: db.server.value.clone(),
                port: db.port.as_ref().map_or(1433, |p| p.value),
                name: db.name.value.clone(),
                user: db.user.value.clone(),
                password_ref: db.password_ref.value.clone(),
                create: db.create.as_ref().is_some_and(|c| c.value),
                encrypt: db.encrypt.as_ref().is_none_or(|e| e.value),
                trust: db.trust.iter().map(|t| PathBuf::from(&t.value)).collect(),
                service_login: ServiceLogin {
                    name: db
                        .service_login
                        .as_ref()
                        .and_then(|l| l.name.as_ref())
                        .map_or_else(|| default_service_login(&db.name), |n| n.value.clone()),
                    password_ref: db
                        .service_login
                        .as_ref()
                        .and_then(|l| l.password_ref.as_ref())
                        .map(|r| r.value.clone()),
                },
            },
            certificate_authority: CertificateAuthority {
                mode: ca.mode.value,
                cert_file: ca.cert_file.as_ref().map(|f| PathBuf::from(&f.value)),
                trust: ca.trust.iter().map(|t| PathBuf::from(&t.value)).collect(),
                duration,
                renew_before,
            },
        },
    })
}

/// `certificateAuthority.duration` and `renewBefore`, cert-manager style: both positive,
/// the lifetime at least [`MIN_CERTIFICATE_DURATION`], renewal strictly before the whole
/// lifetime has passed. Unusable values fall back to the defaults (the snapshot is refused
/// anyway, since an error was reported).
fn certificate_timing(
    file: &Path,
    ca: &crate::resource::CertificateAuthoritySpec,
    report: &mut Report,
) -> (Duration, Duration) {
    let mut parse = |field: &str, value: &Located<String>, min: Duration| {
        report.duration(file, &format!("certificateAuthority.{field}"), value, min)
    };
    let duration = ca
        .duration
        .as_ref()
        .map(|d| parse("duration", d, MIN_CERTIFICATE_DURATION));
    let renew_before = ca
        .renew_before
        .as_ref()
        .map(|r| parse("renewBefore", r, Duration::from_millis(1)));
    // `Some(None)`: given but unusable, already reported.
    let duration_unusable = duration == Some(None);
    let lifetime = duration.flatten().unwrap_or(DEFAULT_CERTIFICATE_DURATION);
    let renew = match renew_before {
        Some(Some(r)) => {
            if !duration_unusable && r >= lifetime {
                let pos = ca.renew_before.as_ref().map_or(ca.mode.pos, |r| r.pos);
                let whose = if ca.duration.is_some() {
                    "duration"
                } else {
                    "the default duration"
                };
                report.error(
                    file,
                    pos,
                    Code::RenewBeforeNotBelowDuration,
                    format!(
                        "renewBefore ({}) must be shorter than {whose} ({}): the certificate would be renewed as soon as it is issued",
                        format_duration(r),
                        format_duration(lifetime)
                    ),
                );
            }
            r
        }
        _ => CertificateAuthority::default_renew_before(lifetime),
    };
    (lifetime, renew)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use steward_testkit::Fixture;

    use crate::load::{load_text, Loaded};
    use crate::Code;

    fn compile(ca: &str) -> crate::Compiled {
        let text = Fixture::installation()
            .certificate_authority(ca)
            .servers([("app1", &["PSIS", "PSWS"][..])])
            .documents();
        let mut loaded = Loaded::default();
        load_text(Path::new("i.yaml"), &text, &mut loaded);
        crate::validate::compile(loaded)
    }

    fn codes(c: &crate::Compiled) -> Vec<Code> {
        c.diagnostics.iter().map(|d| d.code).collect()
    }

    #[test]
    fn certificate_timing_defaults_like_cert_manager() {
        let c = compile("{mode: generated}");
        let ca = &c.snapshot.unwrap().installation.certificate_authority;
        assert_eq!(ca.duration, Duration::from_secs(90 * 86_400));
        assert_eq!(ca.renew_before, Duration::from_secs(30 * 86_400));

        // Only the lifetime: renewal at two thirds of it.
        let c = compile("{mode: generated, duration: 3m}");
        let ca = &c.snapshot.unwrap().installation.certificate_authority;
        assert_eq!(ca.renew_before, Duration::from_secs(60));

        let c = compile("{mode: generated, duration: 2m, renewBefore: 1m40s}");
        let ca = &c.snapshot.unwrap().installation.certificate_authority;
        assert_eq!(
            (ca.duration, ca.renew_before),
            (Duration::from_secs(120), Duration::from_secs(100))
        );
    }

    #[test]
    fn renew_before_is_compared_with_the_default_duration() {
        let c = compile("{mode: generated, renewBefore: 90d}");
        assert_eq!(codes(&c), [Code::RenewBeforeNotBelowDuration]);
        assert!(c.diagnostics[0]
            .message
            .contains("the default duration (90d)"));
        // An unusable duration is reported once, not again as a comparison.
        let c = compile("{mode: generated, duration: soon, renewBefore: 1h}");
        assert_eq!(codes(&c), [Code::InvalidDuration]);
        let c = compile("{mode: generated, duration: 0s}");
        assert_eq!(codes(&c), [Code::InvalidDuration]);
        assert!(
            c.diagnostics[0].message.contains("at least 1m"),
            "{}",
            c.diagnostics[0]
        );
    }
}
