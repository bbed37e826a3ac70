use serde::Deserialize;

use crate::Located;

/// `kind: HealthCheck`: overrides the catalog's default test for one service kind.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheckSpec {
    /// The service kind this test is for.
    pub service: Located<String>,
    /// HTTP path; default the catalog's.
    #[serde(default)]
    pub path: Option<Located<String>>,
    /// Accepted status codes: ranges and lists, e.g. "200-299,301".
    #[serde(default)]
    pub accept_status: Option<Located<String>>,
    /// A substring the body must contain.
    #[serde(default)]
    pub response_match: Option<Located<String>>,
    /// How often to probe, e.g. "10s". Default 10s.
    #[serde(default)]
    pub interval: Option<Located<String>>,
    /// Per-probe timeout, e.g. "5s"; must be shorter than the interval. Default 5s.
    #[serde(default)]
    pub timeout: Option<Located<String>>,
    /// Consecutive passes to mark up. Default 2.
    #[serde(default)]
    pub rise: Option<Located<u32>>,
    /// Consecutive failures to mark down. Default 3.
    #[serde(default)]
    pub fall: Option<Located<u32>>,
    /// Servers that must pass for the service to be Healthy. Default 1.
    #[serde(default)]
    pub minimum_healthy: Option<Located<u32>>,
    /// How long a running service may fail its test before it is restarted (a liveness
    /// probe), e.g. "60s"; "0" never restarts it. Default 60s.
    #[serde(default)]
    pub restart_after: Option<Located<String>>,
}
