//! Health probes, as blackbox_exporter would run them, on their own schedule.
//!
//! * [`NetworkProber`]: an HTTPS GET of the service's test path on its first listening
//!   port, verified against the trusted CAs under the server's hostname (SNI), through a
//!   kept-alive connection pooled per (address, name); or an HL7 MLLP round trip that must
//!   come back `AA`. Each probe reports success, duration, HTTP status, the served leaf
//!   certificate's notAfter, and, failing, why ([`ProbeError`]).
//! * [`Monitor`]: probes every watched service every `interval` with bounded
//!   concurrency, turns outcomes into verdicts with `rise`/`fall`, and hands them to a
//!   [`ProbeSink`] (the controllers' store and metrics, and a reconcile of the service when
//!   its verdict changes).

mod error;
mod health;
mod monitor;
mod network;

#[cfg(test)]
mod exhaustion_tests;
#[cfg(test)]
mod peers;
#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use steward_model::snapshot::HealthCheck;
use steward_model::ServiceKind;
use time::OffsetDateTime;

pub use error::{HttpsError, Phase, ProbeError, ProbePhase, TlsFailure};
pub use health::Health;
pub use monitor::{Monitor, MonitorSettings, ProbeReport, ProbeSink, SETTLE_PACE};
pub use network::{NetworkProber, PROBE_POOL};
pub use steward_https_client::PoolLimits;

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub kind: ServiceKind,
    /// TLS name (SNI and certificate check) and `Host` header.
    pub hostname: String,
    /// Connect here instead of resolving `hostname`.
    pub connect_ip: Option<IpAddr>,
    pub port: u16,
    pub check: HealthCheck,
}

impl ProbeTarget {
    /// `GET https://app1.example.eng:7001/identityserver`, or `MLLP app2.example.eng:2244`.
    pub fn describe(&self) -> String {
        match &self.check.path {
            Some(path) => format!("GET https://{}:{}{path}", self.hostname, self.port),
            None => format!("MLLP {}:{}", self.hostname, self.port),
        }
    }
}

/// One probe, as blackbox_exporter reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub duration: Duration,
    /// The status of the response, also when it failed the check.
    pub http_status: Option<u16>,
    /// notAfter of the leaf certificate served (HTTPS only).
    pub cert_not_after: Option<OffsetDateTime>,
    /// The request went over a kept-alive connection of an earlier probe.
    pub reused_connection: bool,
    pub outcome: Result<(), ProbeError>,
}

impl ProbeResult {
    pub fn success(&self) -> bool {
        self.outcome.is_ok()
    }

    pub fn failed(duration: Duration, error: ProbeError) -> Self {
        Self {
            duration,
            http_status: None,
            cert_not_after: None,
            reused_connection: false,
            outcome: Err(error),
        }
    }
}

#[async_trait]
pub trait Prober: Send + Sync {
    /// Never fails: a failure is a result. Ends within `target.check.timeout`.
    async fn probe(&self, target: &ProbeTarget) -> ProbeResult;

    /// From now on, trust exactly these CA certificates (PEM). Refused (and the old set
    /// kept) when one is unusable.
    fn trust(&self, roots: &[String]) -> Result<(), steward_pki::PkiError> {
        let _ = roots;
        Ok(())
    }
}
