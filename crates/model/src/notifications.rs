//! The compiled `Notifications` kind: what the notify crate sends and how, and the one
//! definition of the template language both validation and delivery use.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use crate::resource::{NotificationEvent, SmtpTls};
use crate::SecretRef;

/// One `Notifications` object, validated, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    pub name: String,
    pub smtp: Smtp,
    pub from: String,
    pub to: Vec<String>,
    /// Sorted, each once.
    pub events: Vec<NotificationEvent>,
    #[serde(serialize_with = "serialize_secs")]
    pub rate_limit: Duration,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Smtp {
    pub server: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub min_tls_version: TlsVersion,
    /// Both or neither (validation enforces it).
    pub credentials: Option<Credentials>,
    /// As written: relative paths resolve against the desired-state directory.
    pub trust: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub username_ref: SecretRef,
    pub password_ref: SecretRef,
}

/// The oldest TLS version a connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl TlsVersion {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1.2" => Some(Self::Tls12),
            "1.3" => Some(Self::Tls13),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tls12 => "1.2",
            Self::Tls13 => "1.3",
        }
    }
}

impl SmtpTls {
    /// The port when none is given: submission, SMTPS, plain SMTP.
    pub const fn default_port(self) -> u16 {
        match self {
            Self::Starttls => 587,
            Self::Implicit => 465,
            Self::None => 25,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starttls => "starttls",
            Self::Implicit => "implicit",
            Self::None => "none",
        }
    }
}

pub const DEFAULT_RATE_LIMIT: Duration = Duration::from_secs(300);

pub const DEFAULT_SUBJECT: &str = "[PatientSecure] {{ event }}: {{ object }}";

pub const DEFAULT_BODY: &str = "{{ event }} on {{ object }} at {{ time }}.\n\n\
Reason: {{ reason }}\n\
{{ message }}\n\n\
-- \n\
Steward, installation {{ installation }} (notifications {{ notification }})\n";

/// The variables a subject or body template may use, each with what it holds. Documented
/// in docs/notifications.md; a template naming another is a validation error.
pub const TEMPLATE_VARIABLES: &[(&str, &str)] = &[
    ("event", "the event kind, e.g. ServiceDown"),
    ("object", "the object it is about, e.g. service/app1/PSIS"),
    (
        "kind",
        "the object's kind: service, server, certificate, installation ...",
    ),
    ("name", "the object's name without its kind, e.g. app1/PSIS"),
    (
        "reason",
        "the reason steward recorded, e.g. HealthCheckFailing",
    ),
    ("message", "the event's message"),
    ("time", "when it happened, RFC 3339 UTC"),
    ("severity", "warning or normal"),
    ("installation", "the Installation's name"),
    ("notification", "this Notifications object's name"),
];

/// Globals of the template engine that are not variables of ours.
const TEMPLATE_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "loop", "self"];

/// Operations one rendering may spend (minijinja's fuel): a template looping without
/// bound fails instead of holding up mail.
pub const TEMPLATE_FUEL: u64 = 50_000;

/// The template environment both validation and delivery use.
pub fn template_environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    // Mail is text: no HTML escaping of values.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

/// Why a template is refused: where (line within the template) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    pub line: Option<usize>,
    pub message: String,
}

/// Compile `source` and check it names only [`TEMPLATE_VARIABLES`].
pub fn check_template(source: &str) -> Result<(), TemplateProblem> {
    let env = template_environment();
    let template = env.template_from_str(source).map_err(|e| TemplateProblem {
        line: e.line(),
        message: e
            .detail()
            .map_or_else(|| e.kind().to_string(), str::to_owned),
    })?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| {
            !TEMPLATE_VARIABLES.iter().any(|(k, _)| k == v)
                && !TEMPLATE_GLOBALS.contains(&v.as_str())
        })
        .collect();
    unknown.sort();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(TemplateProblem {
            line: None,
            message: format!(
                "unknown variable{} {}; known: {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown
                    .iter()
                    .map(|u| crate::diagnostic::quote(u))
                    .collect::<Vec<_>>()
                    .join(", "),
                TEMPLATE_VARIABLES
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_templates_are_valid() {
        check_template(DEFAULT_SUBJECT).unwrap();
        check_template(DEFAULT_BODY).unwrap();
    }

    #[test]
    fn a_broken_template_says_which_line() {
        let e = check_template("line one\nline two {{ event | }}\nline three").unwrap_err();
        assert_eq!(e.line, Some(2), "{e:?}");
        let e = check_template("{{ evnt }}").unwrap_err();
        assert!(e.message.contains("`evnt`"), "{e:?}");
    }

    #[test]
    fn every_event_parses_back_from_its_name() {
        for e in NotificationEvent::ALL {
            assert_eq!(NotificationEvent::parse(e.as_str()), Some(e));
        }
    }
}
