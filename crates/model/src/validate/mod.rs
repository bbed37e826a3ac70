//! Compiling raw documents into a [`Snapshot`], collecting every problem.
//!
//! Each resource is checked on its own first (`installation`, `server`, `directory`,
//! `health_check`), then the fleet as a whole (`fleet`). Every rule reports through one
//! [`Report`] and keeps going, so a single run lists all problems; a snapshot is produced
//! only when no error was found (warnings are allowed).

mod balancer;
mod directory;
mod fleet;
mod health_check;
mod installation;
mod notifications;
mod server;
mod upgrade_policy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diagnostic::{self, display_path, quote, Code, Diagnostic};
use crate::load::{Loaded, Sourced};
use crate::resource::Resource;
use crate::snapshot::Snapshot;
pub(crate) use crate::syntax::normalize_host;
use crate::syntax::{format_duration, is_valid_name, parse_duration};
use crate::{Located, Pos};

/// The outcome of validating a directory.
#[derive(Debug)]
pub struct Compiled {
    /// Present when there are no errors.
    pub snapshot: Option<Snapshot>,
    /// Errors and warnings, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }
}

/// Collects diagnostics for one validation run.
#[derive(Debug, Default)]
pub(crate) struct Report {
    diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn error(&mut self, file: &Path, pos: Pos, code: Code, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::error(file, pos, code, message));
    }

    pub fn warning(&mut self, file: &Path, pos: Pos, code: Code, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::warning(file, pos, code, message));
    }

    fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Free text is bounded: report `field` when it is over `max` characters. Returns
    /// whether it is within bounds, so callers skip checks that would quote it again.
    pub fn within_length(
        &mut self,
        file: &Path,
        field: &str,
        value: &Located<String>,
        max: usize,
    ) -> bool {
        // Counting stops just past the bound: a 50 MB value costs no more than a short one.
        let len = value.chars().take(max + 1).count();
        if len <= max {
            return true;
        }
        self.error(
            file,
            value.pos,
            Code::TooLong,
            format!(
                "{field} is {} characters; at most {max} are allowed",
                value.chars().count()
            ),
        );
        false
    }

    /// A duration field (short text), parsed and at least `min`
    /// ([`Report::LONGER_THAN_0`]: any but zero); otherwise reported as
    /// `invalid-duration`, "FIELD: why" or "FIELD must be longer than 0 / at least ...".
    pub fn duration(
        &mut self,
        file: &Path,
        field: &str,
        value: &Located<String>,
        min: Duration,
    ) -> Option<Duration> {
        if !self.within_length(file, field, value, max_len::SHORT) {
            return None;
        }
        match parse_duration(value) {
            Ok(d) if d < min => {
                let min = if min <= Duration::from_millis(1) {
                    "longer than 0".to_owned()
                } else {
                    format!("at least {}", format_duration(min))
                };
                self.error(
                    file,
                    value.pos,
                    Code::InvalidDuration,
                    format!("{field} must be {min}"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    file,
                    value.pos,
                    Code::InvalidDuration,
                    format!("{field}: {e}"),
                );
                None
            }
        }
    }

    /// The least duration of a field that must not be zero.
    pub const LONGER_THAN_0: Duration = Duration::from_nanos(1);
}

impl Report {
    /// A secret reference's name or path is bounded like any other text (it is shown in
    /// plans and conditions; the secret itself never is).
    pub fn secret_ref_within_length(
        &mut self,
        file: &Path,
        field: &str,
        value: &Located<crate::SecretRef>,
    ) -> bool {
        let (len, max) = match &value.value {
            crate::SecretRef::Env(name) => (name.chars().count(), max_len::ACCOUNT),
            crate::SecretRef::File(path) => (path.as_os_str().len(), max_len::PATH),
        };
        if len <= max {
            return true;
        }
        self.error(
            file,
            value.pos,
            Code::TooLong,
            format!("{field} names a secret in {len} characters; at most {max} are allowed"),
        );
        false
    }
}

/// Longest values of free-text fields (characters). Names, ports, durations and the like
/// have grammars of their own; these bound what a grammar does not.
pub(crate) mod max_len {
    /// Fields the PatientSecure console limits: hostname, displayName, database.server.
    pub const CONSOLE: usize = 50;
    /// A DNS name (RFC 1035).
    pub const FQDN: usize = 253;
    /// SQL Server identifiers (`sysname`): database name and login.
    pub const SQL_NAME: usize = 128;
    /// URLs of agents and directory servers.
    pub const URL: usize = 2048;
    /// File paths (PATH_MAX).
    pub const PATH: usize = 4096;
    /// LDAP distinguished names: account, container.
    pub const DN: usize = 1024;
    /// AD group and account names.
    pub const ACCOUNT: usize = 256;
    /// A health check's HTTP path.
    pub const HTTP_PATH: usize = 2048;
    /// A health check's `responseMatch` substring.
    pub const RESPONSE_MATCH: usize = 1024;
    /// Short grammars: durations, status ranges, releases, drives.
    pub const SHORT: usize = 64;
}

/// Load and validate a directory: the one call the CLI and the daemon make.
pub fn validate_dir(dir: &Path) -> Result<Compiled, crate::load::LoadError> {
    Ok(compile(crate::load::load_dir(dir)?))
}

/// Validate loaded documents.
pub fn compile(loaded: Loaded) -> Compiled {
    let installation_unparsed = loaded.may_have_lost("Installation");
    let servers_unparsed = loaded.may_have_lost("Server");
    let mut report = Report {
        diagnostics: loaded.diagnostics,
    };
    check_names(&loaded.documents, &mut report);

    let mut installations = Vec::new();
    let mut servers = Vec::new();
    let mut directories = BTreeMap::new();
    let mut health_checks = Vec::new();
    let mut notifications = BTreeMap::new();
    let mut upgrade_policies = Vec::new();
    for doc in &loaded.documents {
        match &doc.resource {
            Resource::Installation(d) => installations.push((doc.file.as_path(), d)),
            Resource::Server(d) => {
                if let Some(s) = server::compile(&doc.file, d, &mut report) {
                    servers.push(s);
                }
            }
            Resource::ActiveDirectory(d) => {
                if let Some(ad) = directory::compile(&doc.file, d, &mut report) {
                    directories.insert(ad.name.clone(), ad);
                }
            }
            Resource::HealthCheck(d) => {
                if let Some(hc) = health_check::compile(&doc.file, d, &mut report) {
                    health_checks.push(hc);
                }
            }
            Resource::Notifications(d) => {
                if let Some(n) = notifications::compile(&doc.file, d, &mut report) {
                    notifications.insert(n.name.clone(), n);
                }
            }
            Resource::UpgradePolicy(d) => upgrade_policies.push((doc.file.as_path(), d)),
        }
    }
    directory::check_across(&loaded.documents, &mut report);
    let upgrade_policy = upgrade_policy::one(upgrade_policies, &mut report);

    let mut installation = match installations.as_slice() {
        [] if installation_unparsed => None,
        [] => {
            report.error(
                Path::new("."),
                Pos::new(1, 1),
                Code::InstallationCount,
                "no Installation document: exactly one is required",
            );
            None
        }
        [(file, doc), rest @ ..] => {
            for (other, d) in rest {
                report.error(
                    other,
                    d.kind.pos,
                    Code::InstallationCount,
                    format!(
                        "a second Installation; exactly one is allowed (the first is in {})",
                        file.display()
                    ),
                );
            }
            installation::compile(file, doc, &mut report).map(|inst| {
                (
                    inst,
                    fleet::At {
                        kind: doc.kind.pos,
                        install_type: doc.spec.install_type.pos,
                    },
                    &doc.spec,
                )
            })
        }
    };

    let health_checks = health_check::index(health_checks, &mut report);
    let servers = match &mut installation {
        Some((inst, at, spec)) => {
            let (servers, farm_ports) =
                fleet::compile(inst, *at, servers, servers_unparsed, &mut report);
            if let Some(lb) = &mut inst.value.load_balancer {
                lb.farm_ports = farm_ports;
            }
            if let Some(hl7) = &spec.hl7 {
                balancer::hl7_preferred(&inst.file, hl7, servers_unparsed, &servers, &mut report);
            }
            servers
        }
        None => BTreeMap::new(),
    };

    let snapshot = match installation {
        Some((inst, _, _)) if !report.has_errors() => Some(Snapshot {
            installation: inst.value,
            servers,
            directories,
            health_checks,
            notifications,
            upgrade_policy,
        }),
        _ => None,
    };
    let mut diagnostics = report.diagnostics;
    diagnostic::sort(&mut diagnostics);
    diagnostics.dedup();
    Compiled {
        snapshot,
        diagnostics,
    }
}

/// Names: syntax, and unique per kind.
fn check_names(documents: &[Sourced], report: &mut Report) {
    let mut seen: BTreeMap<(&str, &str), (&PathBuf, Pos)> = BTreeMap::new();
    for doc in documents {
        let name = doc.resource.name();
        if !is_valid_name(name) {
            report.error(
                &doc.file,
                name.pos,
                Code::InvalidName,
                format!(
                    "name {} must be lowercase letters, digits and `-`, start and end alphanumeric, at most 63 characters",
                    quote(&name.value)
                ),
            );
        }
        let key = (doc.resource.kind(), name.value.as_str());
        if let Some((file, pos)) = seen.get(&key) {
            report.error(
                &doc.file,
                name.pos,
                Code::DuplicateName,
                format!(
                    "{} {} is already defined at {}:{}",
                    key.0,
                    quote(key.1),
                    display_path(file),
                    pos
                ),
            );
        } else {
            seen.insert(key, (&doc.file, name.pos));
        }
    }
}

/// A compiled value together with where its document is, for cross-resource rules.
#[derive(Debug, Clone)]
pub(crate) struct Placed<T> {
    pub file: PathBuf,
    pub value: T,
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    /// What `Report::duration` says of `text` with `min`: the value, or the message.
    fn judged(text: &str, min: Duration) -> Result<Duration, String> {
        let mut report = Report::default();
        let value = Located::new(text.to_owned(), Pos { line: 1, col: 1 });
        report
            .duration(Path::new("x.yaml"), "f", &value, min)
            .ok_or_else(|| {
                let [d] = &report.diagnostics[..] else {
                    panic!("{:?}", report.diagnostics)
                };
                assert_eq!(d.code, Code::InvalidDuration);
                d.message.clone()
            })
    }

    #[test]
    fn a_duration_is_parsed_or_reported_in_the_fields_words() {
        let zero = Duration::ZERO;
        assert_eq!(judged("90s", zero), Ok(Duration::from_secs(90)));
        assert_eq!(judged("0s", zero), Ok(zero));
        assert_eq!(
            judged("0s", Report::LONGER_THAN_0),
            Err("f must be longer than 0".into())
        );
        assert_eq!(
            judged("30m", Duration::from_secs(3600)),
            Err("f must be at least 1h".into())
        );
        assert!(judged("soon", zero).unwrap_err().starts_with("f: "));
    }
}
