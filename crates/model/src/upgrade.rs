//! The compiled `UpgradePolicy`: how a release change rolls through the fleet, the
//! releases it may start from, and the windows it may run in ([`window`]).

pub mod window;

use std::time::Duration;

use serde::Serialize;

pub use crate::resource::WindowKind;
pub use window::{Verdict, Windows};

pub const DEFAULT_MAX_UNAVAILABLE: u32 = 1;
pub const DEFAULT_HEALTH_GATE: Duration = Duration::from_secs(60);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePolicy {
    pub name: String,
    /// Servers upgraded at once, and the cap on servers out of service at any time.
    pub max_unavailable: u32,
    #[serde(with = "duration_ms")]
    pub health_gate: Duration,
    pub drain: bool,
    #[serde(with = "duration_ms")]
    pub drain_timeout: Duration,
    /// Empty: an upgrade may start from any release.
    pub from: Vec<ReleasePattern>,
    pub windows: Windows,
}

impl UpgradePolicy {
    /// Whether an upgrade may start from `release` (build metadata is not compared).
    pub fn allows_from(&self, release: &str) -> bool {
        self.from.is_empty() || self.from.iter().any(|p| p.matches(release))
    }

    /// The patterns as written, for messages: `6.12.*, 6.11.4`.
    pub fn allowed_from(&self) -> String {
        let all: Vec<&str> = self.from.iter().map(|p| p.0.as_str()).collect();
        all.join(", ")
    }
}

/// A release pattern of `from`: dot-separated numbers, the last part may be `*` (any one
/// or more further parts): `6.12.*` matches `6.12.1` and `6.12.1.2040`, not `6.13.0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ReleasePattern(String);

impl ReleasePattern {
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('.').collect();
        let (last, init) = parts.split_last()?;
        let number =
            |p: &&str| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit());
        let ok = (1..=4).contains(&parts.len())
            && init.iter().all(number)
            && (number(last) || *last == "*")
            && (parts.len() >= 2 || *last == "*");
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, release: &str) -> bool {
        let core = release_core(release);
        let have: Vec<&str> = core.split('.').collect();
        let want: Vec<&str> = self.0.split('.').collect();
        match want.split_last() {
            Some((&"*", init)) => have.len() > init.len() && have.starts_with(init),
            _ => have == want,
        }
    }
}

/// A release without its build metadata: `6.13.0+lab-fail-PSWS` -> `6.13.0`.
pub fn release_core(release: &str) -> &str {
    release.split_once('+').map_or(release, |(core, _)| core)
}

/// The identifiers of a release's build metadata: `6.13.0+lab.x` -> `["lab", "x"]`.
pub fn build_metadata(release: &str) -> impl Iterator<Item = &str> {
    release
        .split_once('+')
        .map(|(_, meta)| meta)
        .into_iter()
        .flat_map(|m| m.split('.'))
}

mod duration_ms {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = ReleasePattern::parse("6.12.*").unwrap();
        assert!(p.matches("6.12.1"));
        assert!(p.matches("6.12.1.2040"));
        assert!(p.matches("6.12.3+lab-fail-PSWS"));
        assert!(!p.matches("6.12"));
        assert!(!p.matches("6.13.0"));
        let exact = ReleasePattern::parse("6.11.4").unwrap();
        assert!(exact.matches("6.11.4"));
        assert!(!exact.matches("6.11.40"));
        assert!(ReleasePattern::parse("*").unwrap().matches("7.0"));
        for bad in [
            "",
            "6",
            "6.x",
            "6.*.1",
            "6..1",
            "*.1",
            "6.12.*.*",
            "1.2.3.4.5",
        ] {
            assert!(ReleasePattern::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn build_metadata_is_split() {
        assert_eq!(release_core("6.13.0+lab-fail-PSWS"), "6.13.0");
        assert_eq!(
            build_metadata("6.13.0+lab-fail-PSWS.b7").collect::<Vec<_>>(),
            ["lab-fail-PSWS", "b7"]
        );
        assert_eq!(build_metadata("6.13.0").count(), 0);
    }
}
