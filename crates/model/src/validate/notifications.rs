use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{max_len, Report};
use crate::diagnostic::{quote, Code};
use crate::notifications::{
    check_template, Credentials, Notifications, Smtp, TlsVersion, DEFAULT_BODY, DEFAULT_RATE_LIMIT,
    DEFAULT_SUBJECT,
};
use crate::resource::{Document, NotificationsSpec, SmtpTls};
use crate::syntax::is_valid_host;
use crate::Located;

/// Longest subject template and body template (characters).
const MAX_SUBJECT: usize = 998; // RFC 5322's line limit
const MAX_BODY: usize = 65_536;
/// Recipients of one Notifications object.
const MAX_RECIPIENTS: usize = 100;

pub(super) fn compile(
    file: &Path,
    doc: &Document<NotificationsSpec>,
    report: &mut Report,
) -> Option<Notifications> {
    let spec = &doc.spec;
    let mut ok = true;
    let smtp = smtp(file, &spec.smtp, report);
    ok &= address(file, "from", &spec.from, report);
    if spec.to.is_empty() {
        report.error(
            file,
            doc.metadata.name.pos,
            Code::EmptyValue,
            "`to` must list at least one recipient",
        );
        ok = false;
    } else if spec.to.len() > MAX_RECIPIENTS {
        report.error(
            file,
            spec.to[MAX_RECIPIENTS].pos,
            Code::TooLong,
            format!(
                "`to` lists {} recipients; at most {MAX_RECIPIENTS} are allowed",
                spec.to.len()
            ),
        );
        ok = false;
    }
    for to in &spec.to {
        ok &= address(file, "to", to, report);
    }
    if spec.events.is_empty() {
        report.error(
            file,
            doc.metadata.name.pos,
            Code::EmptyValue,
            "`events` must list at least one event",
        );
        ok = false;
    }
    let events: BTreeSet<_> = spec.events.iter().map(|e| e.value).collect();
    let rate_limit = match &spec.rate_limit {
        None => DEFAULT_RATE_LIMIT,
        Some(v) => match report.duration(file, "rateLimit", v, Report::LONGER_THAN_0) {
            Some(d) => d,
            None => {
                ok = false;
                DEFAULT_RATE_LIMIT
            }
        },
    };
    let subject = template(
        file,
        "subject",
        spec.subject.as_ref(),
        DEFAULT_SUBJECT,
        MAX_SUBJECT,
        report,
    );
    let body = template(
        file,
        "body",
        spec.body.as_ref(),
        DEFAULT_BODY,
        MAX_BODY,
        report,
    );
    if let Some(s) = &spec.subject {
        if subject.is_some() && s.contains(['\r', '\n']) {
            report.error(
                file,
                s.pos,
                Code::InvalidTemplate,
                "subject must be one line (a line break would end the mail header)",
            );
            ok = false;
        }
    }
    let (smtp, subject, body) = (smtp?, subject?, body?);
    ok.then(|| Notifications {
        name: doc.metadata.name.value.clone(),
        smtp,
        from: spec.from.value.clone(),
        to: spec.to.iter().map(|t| t.value.clone()).collect(),
        events: events.into_iter().collect(),
        rate_limit,
        subject,
        body,
    })
}

fn smtp(file: &Path, spec: &crate::resource::SmtpSpec, report: &mut Report) -> Option<Smtp> {
    let mut ok = true;
    if !report.within_length(file, "smtp.server", &spec.server, max_len::FQDN) {
        ok = false;
    } else if !is_valid_host(&spec.server) {
        report.error(
            file,
            spec.server.pos,
            Code::InvalidHost,
            format!(
                "smtp.server {} must be a host name or IP address",
                quote(&spec.server)
            ),
        );
        ok = false;
    }
    let tls = spec.tls.as_ref().map_or(SmtpTls::default(), |t| t.value);
    let port = match &spec.port {
        Some(p) if p.value == 0 => {
            report.error(file, p.pos, Code::InvalidPort, "smtp.port must be 1-65535");
            ok = false;
            0
        }
        Some(p) => p.value,
        None => tls.default_port(),
    };
    let min_tls_version = match &spec.min_tls_version {
        None => TlsVersion::default(),
        Some(v) => TlsVersion::parse(v).unwrap_or_else(|| {
            report.error(
                file,
                v.pos,
                Code::InvalidValue,
                format!("minTlsVersion {} must be \"1.2\" or \"1.3\"", quote(v)),
            );
            ok = false;
            TlsVersion::default()
        }),
    };
    for r in [&spec.username_ref, &spec.password_ref]
        .into_iter()
        .flatten()
    {
        ok &= report.secret_ref_within_length(file, "smtp credentials", r);
    }
    let credentials = match (&spec.username_ref, &spec.password_ref) {
        (Some(u), Some(p)) => {
            if tls == SmtpTls::None {
                report.error(
                    file,
                    u.pos,
                    Code::SmtpCredentials,
                    "credentials with `tls: none` would cross the network in clear; use starttls or implicit",
                );
                ok = false;
            }
            Some(Credentials {
                username_ref: u.value.clone(),
                password_ref: p.value.clone(),
            })
        }
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => {
            let (given, missing) = if spec.username_ref.is_some() {
                ("usernameRef", "passwordRef")
            } else {
                ("passwordRef", "usernameRef")
            };
            report.error(
                file,
                one.pos,
                Code::SmtpCredentials,
                format!("{given} is given without {missing}: give both or neither"),
            );
            ok = false;
            None
        }
    };
    let mut trust = Vec::new();
    for t in &spec.trust {
        if !report.within_length(file, "trust", t, max_len::PATH) {
            ok = false;
        } else if t.trim().is_empty() {
            report.error(file, t.pos, Code::EmptyValue, "a trust file must be named");
            ok = false;
        } else {
            trust.push(PathBuf::from(&t.value));
        }
    }
    ok.then(|| Smtp {
        server: spec.server.value.clone(),
        port,
        tls,
        min_tls_version,
        credentials,
        trust,
    })
}

/// `local@domain`: the shape SMTP's envelope takes, no display names or comments.
fn address(file: &Path, field: &str, value: &Located<String>, report: &mut Report) -> bool {
    if !report.within_length(file, field, value, max_len::ACCOUNT) {
        return false;
    }
    let valid = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && local.len() <= 64
            && !domain.contains('@')
            && is_valid_host(domain.trim_start_matches('[').trim_end_matches(']'))
            && local
                .chars()
                .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"@".contains(c))
    });
    if !valid {
        report.error(
            file,
            value.pos,
            Code::InvalidEmail,
            format!(
                "{field} {} must be a mail address like name@example.eng",
                quote(value)
            ),
        );
    }
    valid
}

fn template(
    file: &Path,
    field: &str,
    value: Option<&Located<String>>,
    default: &str,
    max: usize,
    report: &mut Report,
) -> Option<String> {
    let Some(value) = value else {
        return Some(default.to_owned());
    };
    if !report.within_length(file, field, value, max) {
        return None;
    }
    match check_template(value) {
        Ok(()) => Some(value.value.clone()),
        Err(problem) => {
            let at = problem
                .line
                .map(|l| format!(" (template line {l})"))
                .unwrap_or_default();
            report.error(
                file,
                value.pos,
                Code::InvalidTemplate,
                format!("{field} template does not compile{at}: {}", problem.message),
            );
            None
        }
    }
}
