use serde::{Deserialize, Serialize};

use crate::Located;

/// `kind: UpgradePolicy` (at most one): how a change of `Installation.release` rolls
/// through the fleet, server by server.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpgradePolicySpec {
    /// Servers upgraded at once, and the most servers out of service at any time
    /// (a halted server counts). Default 1.
    #[serde(default)]
    pub max_unavailable: Option<Located<u32>>,
    /// How long every service of an upgraded server must stay healthy before the next
    /// server, e.g. "60s". Default 60s.
    #[serde(default)]
    pub health_gate: Option<Located<String>>,
    /// Take each server out of the load balancer before upgrading it. Default true.
    #[serde(default)]
    pub drain: Option<Located<bool>>,
    /// The longest wait for a drained server's sessions to end, e.g. "120s". Default 120s.
    #[serde(default)]
    pub drain_timeout: Option<Located<String>>,
    /// Releases an upgrade may start from, e.g. `6.12.*`; empty: any. Else refused.
    #[serde(default)]
    pub from: Vec<Located<String>>,
    /// When an upgrade may run: none, any time; with allow windows, only inside one;
    /// never inside a deny window (deny wins).
    #[serde(default)]
    pub windows: Vec<UpgradeWindowSpec>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpgradeWindowSpec {
    pub kind: Located<WindowKind>,
    /// Five-field cron (minute hour day-of-month month day-of-week) of the window's start,
    /// e.g. "0 22 * * 1-5".
    pub schedule: Located<String>,
    /// How long the window stays open from each start, e.g. "4h".
    pub duration: Located<String>,
    /// IANA time zone the schedule is read in, e.g. `America/New_York`. Default UTC.
    #[serde(default)]
    pub time_zone: Option<Located<String>>,
}

/// Whether a window admits an upgrade or forbids one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WindowKind {
    Allow,
    Deny,
}
