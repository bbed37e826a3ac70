//! Upgrade windows: when a rolling upgrade may run. A window opens at every start of its
//! cron schedule, read in its IANA time zone (croner over chrono-tz, whose database is
//! compiled in, so every host judges the same files alike), and stays open for its
//! duration of elapsed time (a 4h window across a DST change is still four hours).
//!
//! Without windows an upgrade may run at any time; with allow windows only inside one;
//! never inside a deny window (deny wins). Everything here is a pure function of the
//! instant it is asked about: callers inject the clock.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::Serialize;

use super::WindowKind;

/// How far ahead the next opening is looked for: a policy whose windows never open
/// within this is reported as never opening.
const HORIZON_STEPS: usize = 512;

/// One allow or deny window.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub kind: WindowKind,
    /// The cron schedule as written.
    pub schedule: String,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    #[serde(serialize_with = "zone_name")]
    pub time_zone: Tz,
    #[serde(skip)]
    cron: Cron,
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.schedule == other.schedule
            && self.duration == other.duration
            && self.time_zone == other.time_zone
    }
}

impl Eq for Window {}

/// Why a schedule or time zone cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("is not a five-field cron schedule (minute hour day-of-month month day-of-week): {0}")]
    Schedule(String),
    #[error("never matches a date")]
    NeverMatches,
    #[error("is not an IANA time zone name such as UTC or America/New_York")]
    TimeZone,
}

/// Parse a five-field cron schedule (no seconds, no years: the format of crontab(5)).
pub fn parse_schedule(s: &str) -> Result<Cron, WindowError> {
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(s)
        .map_err(|e| WindowError::Schedule(e.to_string()))?;
    // `0 0 30 2 *` parses but never happens; an allow window like that would hold an
    // upgrade forever, so it is refused when the files are read.
    let start = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
    match start.map(|t| cron.find_next_occurrence(&t, true)) {
        Some(Ok(_)) => Ok(cron),
        _ => Err(WindowError::NeverMatches),
    }
}

pub fn parse_time_zone(s: &str) -> Result<Tz, WindowError> {
    s.parse::<Tz>().map_err(|_| WindowError::TimeZone)
}

impl Window {
    pub fn new(
        kind: WindowKind,
        schedule: &str,
        duration: Duration,
        time_zone: &str,
    ) -> Result<Self, WindowError> {
        Ok(Self {
            kind,
            schedule: schedule.to_owned(),
            duration,
            time_zone: parse_time_zone(time_zone)?,
            cron: parse_schedule(schedule)?,
        })
    }

    /// The opening of this window that `at` falls in, as (start, end), if any.
    pub fn containing(&self, at: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let local = at.with_timezone(&self.time_zone);
        // The latest start at or before `at` has the latest end of all earlier starts.
        let start = self
            .cron
            .find_previous_occurrence(&local, true)
            .ok()?
            .with_timezone(&Utc);
        let end = start + chrono::Duration::from_std(self.duration).ok()?;
        (at < end).then_some((start, end))
    }

    /// The first start strictly after `at`.
    pub fn next_start(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.time_zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// `allow 0 22 * * 1-5 for 4h (America/New_York)`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            WindowKind::Allow => "allow",
            WindowKind::Deny => "deny",
        };
        format!(
            "{kind} window {} for {} ({})",
            self.schedule,
            crate::syntax::format_duration(self.duration),
            self.time_zone.name()
        )
    }
}

/// Every window of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Windows(pub Vec<Window>);

/// Whether an upgrade may run at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Open,
    /// Closed; `opens` is the next instant it may run (`None`: not within the horizon).
    Closed {
        reason: String,
        opens: Option<DateTime<Utc>>,
    },
}

impl Windows {
    fn allows(&self) -> impl Iterator<Item = &Window> {
        self.0.iter().filter(|w| w.kind == WindowKind::Allow)
    }

    fn denies(&self) -> impl Iterator<Item = &Window> {
        self.0.iter().filter(|w| w.kind == WindowKind::Deny)
    }

    fn open_at(&self, at: DateTime<Utc>) -> bool {
        self.denies().all(|w| w.containing(at).is_none())
            && (self.allows().next().is_none() || self.allows().any(|w| w.containing(at).is_some()))
    }

    /// Whether an upgrade may run at `at`, and if not, why and from when.
    pub fn verdict(&self, at: DateTime<Utc>) -> Verdict {
        if self.open_at(at) {
            return Verdict::Open;
        }
        let reason = match self.denies().find(|w| w.containing(at).is_some()) {
            Some(w) => format!("inside the {}", w.describe()),
            None => "outside every allow window".to_owned(),
        };
        Verdict::Closed {
            reason,
            opens: self.next_open(at),
        }
    }

    /// The first instant at or after `at` when an upgrade may run: a deny window is
    /// waited out to its end (a change committed during one starts when it ends), then
    /// an allow window's start is waited for, until both hold at once.
    pub fn next_open(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = at;
        for _ in 0..HORIZON_STEPS {
            if let Some(end) = self
                .denies()
                .filter_map(|w| w.containing(t).map(|(_, end)| end))
                .max()
            {
                t = end;
                continue;
            }
            if self.allows().next().is_none() || self.allows().any(|w| w.containing(t).is_some()) {
                return Some(t);
            }
            t = self.allows().filter_map(|w| w.next_start(t)).min()?;
        }
        None
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn zone_name<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

#[cfg(test)]
mod tests;
