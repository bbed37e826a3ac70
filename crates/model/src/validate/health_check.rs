use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{max_len, Placed, Report};
use crate::catalog::{HealthTest, ServiceKind};
use crate::diagnostic::{quote, Code};
use crate::resource::{Document, HealthCheckSpec};
use crate::snapshot::HealthCheck;
use crate::syntax::parse_duration;
use crate::{Pos, StatusRanges};

pub(super) struct Compiled {
    placed: Placed<HealthCheck>,
    service_pos: Pos,
}

pub(super) fn compile(
    file: &Path,
    doc: &Document<HealthCheckSpec>,
    report: &mut Report,
) -> Option<Compiled> {
    let spec = &doc.spec;
    let kind = super::server::service_kind(file, &spec.service, report)?;
    let mut check = HealthCheck::catalog_default(kind);
    let mut ok = true;
    let is_http = matches!(kind.spec().health, HealthTest::Https { .. });
    if !is_http {
        for (field, located) in [
            ("path", spec.path.as_ref().map(|v| v.pos)),
            ("acceptStatus", spec.accept_status.as_ref().map(|v| v.pos)),
            ("responseMatch", spec.response_match.as_ref().map(|v| v.pos)),
        ] {
            if let Some(pos) = located {
                report.error(
                    file,
                    pos,
                    Code::NotHttp,
                    format!("{kind} is tested over MLLP (HL7 ACK), so `{field}` does not apply"),
                );
                ok = false;
            }
        }
    }
    if let Some(path) = &spec.path {
        if !report.within_length(file, "path", path, max_len::HTTP_PATH) {
            ok = false;
        } else if !path.starts_with('/') || path.chars().any(char::is_whitespace) {
            report.error(
                file,
                path.pos,
                Code::InvalidPath,
                format!(
                    "path {} must start with / and hold no spaces or control characters",
                    quote(path)
                ),
            );
            ok = false;
        }
        check.path = Some(path.value.clone());
    }
    if let Some(accept) = &spec.accept_status {
        if !report.within_length(file, "acceptStatus", accept, max_len::SHORT) {
            ok = false;
        } else {
            match StatusRanges::parse(accept) {
                Ok(r) => check.accept_status = Some(r),
                Err(e) => {
                    report.error(
                        file,
                        accept.pos,
                        Code::InvalidStatusRange,
                        format!("acceptStatus: {e}"),
                    );
                    ok = false;
                }
            }
        }
    }
    if let Some(m) = &spec.response_match {
        if !report.within_length(file, "responseMatch", m, max_len::RESPONSE_MATCH) {
            ok = false;
        }
        check.response_match = Some(m.value.clone());
    }
    for (field, value, target) in [
        ("interval", &spec.interval, &mut check.interval),
        ("timeout", &spec.timeout, &mut check.timeout),
    ] {
        if let Some(v) = value {
            match report.duration(file, field, v, Report::LONGER_THAN_0) {
                Some(d) => *target = d,
                None => ok = false,
            }
        }
    }
    if let Some(v) = &spec.restart_after {
        if !report.within_length(file, "restartAfter", v, max_len::SHORT) {
            ok = false;
        } else {
            // Zero is allowed here: it turns liveness restarts off.
            let parsed = if v.trim() == "0" {
                Ok(std::time::Duration::ZERO)
            } else {
                parse_duration(v)
            };
            match parsed {
                Ok(d) => check.restart_after = d,
                Err(e) => {
                    report.error(
                        file,
                        v.pos,
                        Code::InvalidDuration,
                        format!("restartAfter: {e}"),
                    );
                    ok = false;
                }
            }
        }
    }
    if ok && check.timeout >= check.interval {
        let pos = spec
            .timeout
            .as_ref()
            .or(spec.interval.as_ref())
            .map_or(doc.metadata.name.pos, |v| v.pos);
        report.error(
            file,
            pos,
            Code::TimeoutNotBelowInterval,
            format!(
                "timeout ({:?}) must be shorter than interval ({:?})",
                check.timeout, check.interval
            ),
        );
    }
    for (field, value, target) in [
        ("rise", &spec.rise, &mut check.rise),
        ("fall", &spec.fall, &mut check.fall),
        (
            "minimumHealthy",
            &spec.minimum_healthy,
            &mut check.minimum_healthy,
        ),
    ] {
        if let Some(v) = value {
            if v.value == 0 {
                report.error(
                    file,
                    v.pos,
                    Code::InvalidCount,
                    format!("{field} must be at least 1"),
                );
            }
            *target = v.value;
        }
    }
    Some(Compiled {
        placed: Placed {
            file: PathBuf::from(file),
            value: check,
        },
        service_pos: spec.service.pos,
    })
}

/// One override per service kind.
pub(super) fn index(
    checks: Vec<Compiled>,
    report: &mut Report,
) -> BTreeMap<ServiceKind, HealthCheck> {
    let mut by_kind: BTreeMap<ServiceKind, HealthCheck> = BTreeMap::new();
    let mut first_file: BTreeMap<ServiceKind, PathBuf> = BTreeMap::new();
    for c in checks {
        let kind = c.placed.value.service;
        if let Some(file) = first_file.get(&kind) {
            report.error(
                &c.placed.file,
                c.service_pos,
                Code::DuplicateHealthCheck,
                format!("{kind} already has a HealthCheck (in {})", file.display()),
            );
            continue;
        }
        first_file.insert(kind, c.placed.file);
        by_kind.insert(kind, c.placed.value);
    }
    by_kind
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::catalog::ServiceKind;
    use steward_testkit::Fixture;

    use crate::load::{load_text, Loaded};
    use crate::snapshot::DEFAULT_RESTART_AFTER;

    /// `restartAfter` of PSWS with this HealthCheck spec line (none: no HealthCheck).
    fn restart_after(line: Option<&str>) -> Result<Duration, Vec<String>> {
        let mut fleet = Fixture::installation().servers([("app1", &["PSIS", "PSWS"][..])]);
        if let Some(line) = line {
            fleet = fleet.document(&format!(
                "apiVersion: steward/v1\nkind: HealthCheck\nmetadata: {{name: psws}}\nspec:\n  service: PSWS\n  {line}\n"
            ));
        }
        let text = fleet.documents();
        let mut loaded = Loaded::default();
        load_text(Path::new("h.yaml"), &text, &mut loaded);
        let compiled = crate::validate::compile(loaded);
        match compiled.snapshot {
            Some(s) => Ok(s.health_check(ServiceKind::Psws).restart_after),
            None => Err(compiled.diagnostics.iter().map(|d| d.to_string()).collect()),
        }
    }

    #[test]
    fn restart_after_defaults_to_a_minute_and_zero_turns_it_off() {
        assert_eq!(restart_after(None), Ok(DEFAULT_RESTART_AFTER));
        assert_eq!(restart_after(Some("rise: 2")), Ok(DEFAULT_RESTART_AFTER));
        assert_eq!(
            restart_after(Some("restartAfter: 2m")),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(
            restart_after(Some("restartAfter: \"0\"")),
            Ok(Duration::ZERO)
        );
        assert_eq!(restart_after(Some("restartAfter: 0s")), Ok(Duration::ZERO));
        assert_eq!(restart_after(Some("restartAfter: 0")), Ok(Duration::ZERO));
        let errors = restart_after(Some("restartAfter: soon")).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains("restartAfter")),
            "{errors:?}"
        );
    }
}
