use std::path::Path;
use std::time::Duration;

use super::{max_len, Report};
use crate::diagnostic::{quote, Code};
use crate::resource::{Document, UpgradePolicySpec};
use crate::upgrade::window::{Window, WindowError};
use crate::upgrade::{
    ReleasePattern, UpgradePolicy, Windows, DEFAULT_DRAIN_TIMEOUT, DEFAULT_HEALTH_GATE,
    DEFAULT_MAX_UNAVAILABLE,
};
use crate::Located;

/// More windows than anyone maintains by hand; each is evaluated at every pass.
const MAX_WINDOWS: usize = 32;
/// Release patterns in `from`.
const MAX_FROM: usize = 32;

pub(super) fn compile(
    file: &Path,
    doc: &Document<UpgradePolicySpec>,
    report: &mut Report,
) -> Option<UpgradePolicy> {
    let spec = &doc.spec;
    let mut ok = true;
    let max_unavailable = match &spec.max_unavailable {
        Some(n) if n.value == 0 => {
            report.error(
                file,
                n.pos,
                Code::InvalidCount,
                "maxUnavailable must be at least 1 (servers upgraded at once)",
            );
            ok = false;
            0
        }
        Some(n) => n.value,
        None => DEFAULT_MAX_UNAVAILABLE,
    };
    let health_gate = duration(file, "healthGate", spec.health_gate.as_ref(), report)
        .unwrap_or(Some(DEFAULT_HEALTH_GATE));
    let drain_timeout = duration(file, "drainTimeout", spec.drain_timeout.as_ref(), report)
        .unwrap_or(Some(DEFAULT_DRAIN_TIMEOUT));
    ok &= health_gate.is_some() && drain_timeout.is_some();

    if spec.from.len() > MAX_FROM {
        report.error(
            file,
            spec.from[MAX_FROM].pos,
            Code::TooLong,
            format!(
                "`from` lists {} releases; at most {MAX_FROM}",
                spec.from.len()
            ),
        );
        ok = false;
    }
    let mut from = Vec::new();
    for pattern in &spec.from {
        if !report.within_length(file, "from", pattern, max_len::SHORT) {
            ok = false;
            continue;
        }
        match ReleasePattern::parse(pattern) {
            Some(p) => from.push(p),
            None => {
                report.error(
                    file,
                    pattern.pos,
                    Code::InvalidRelease,
                    format!(
                        "from: {} is not a release pattern like 6.12.1 or 6.12.* (numbers, the last part may be *)",
                        quote(pattern)
                    ),
                );
                ok = false;
            }
        }
    }

    if spec.windows.len() > MAX_WINDOWS {
        report.error(
            file,
            doc.metadata.name.pos,
            Code::TooLong,
            format!(
                "{} windows; at most {MAX_WINDOWS} are allowed",
                spec.windows.len()
            ),
        );
        ok = false;
    }
    let mut windows = Vec::new();
    for w in &spec.windows {
        let length = duration(file, "duration", Some(&w.duration), report).flatten();
        if length == Some(Duration::ZERO) {
            report.error(
                file,
                w.duration.pos,
                Code::InvalidDuration,
                "a window's duration must be longer than zero",
            );
            ok = false;
            continue;
        }
        let default_zone = Located::new("UTC".to_owned(), w.kind.pos);
        let zone = w.time_zone.as_ref().unwrap_or(&default_zone);
        if !report.within_length(file, "schedule", &w.schedule, max_len::SHORT)
            || !report.within_length(file, "timeZone", zone, max_len::SHORT)
        {
            ok = false;
            continue;
        }
        let Some(length) = length else {
            ok = false;
            continue;
        };
        match Window::new(w.kind.value, &w.schedule, length, zone) {
            Ok(window) => windows.push(window),
            Err(WindowError::TimeZone) => {
                report.error(
                    file,
                    zone.pos,
                    Code::InvalidTimeZone,
                    format!("timeZone {} {}", quote(zone), WindowError::TimeZone),
                );
                ok = false;
            }
            Err(e) => {
                report.error(
                    file,
                    w.schedule.pos,
                    Code::InvalidSchedule,
                    format!("schedule {} {e}", quote(&w.schedule)),
                );
                ok = false;
            }
        }
    }
    let (Some(health_gate), Some(drain_timeout)) = (health_gate, drain_timeout) else {
        return None;
    };
    ok.then(|| UpgradePolicy {
        name: doc.metadata.name.value.clone(),
        max_unavailable,
        health_gate,
        drain: spec.drain.as_ref().is_none_or(|d| d.value),
        drain_timeout,
        from,
        windows: Windows(windows),
    })
}

/// `None`: absent; `Some(None)`: reported as invalid.
fn duration(
    file: &Path,
    field: &str,
    value: Option<&Located<String>>,
    report: &mut Report,
) -> Option<Option<Duration>> {
    let value = value?;
    Some(report.duration(file, field, value, Duration::ZERO))
}

/// At most one UpgradePolicy: the second and later are errors pointing at the first.
pub(super) fn one(
    policies: Vec<(&Path, &Document<UpgradePolicySpec>)>,
    report: &mut Report,
) -> Option<UpgradePolicy> {
    let mut iter = policies.into_iter();
    let (file, first) = iter.next()?;
    let mut extra = false;
    for (other, d) in iter {
        report.error(
            other,
            d.kind.pos,
            Code::UpgradePolicyCount,
            format!(
                "a second UpgradePolicy; at most one is allowed (the first is {} in {})",
                quote(&first.metadata.name),
                super::display_path(file)
            ),
        );
        extra = true;
    }
    let policy = compile(file, first, report);
    (!extra).then_some(policy).flatten()
}
