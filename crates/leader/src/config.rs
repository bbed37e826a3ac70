use std::fmt;
use std::time::Duration;

use crate::error::LeaderError;

/// etcd's client URLs, from `etcd://HOST:PORT[,HOST:PORT...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints(Vec<String>);

impl Endpoints {
    /// Parse `etcd://h1:2379,h2:2379` (each member may repeat the `etcd://`).
    pub fn parse(raw: &str) -> Result<Self, LeaderError> {
        let invalid = || LeaderError::Endpoints(raw.chars().take(200).collect());
        let rest = raw.strip_prefix("etcd://").ok_or_else(invalid)?;
        let mut urls = Vec::new();
        for member in rest.split(',') {
            let member = member.trim();
            let member = member.strip_prefix("etcd://").unwrap_or(member);
            let (host, port) = member.rsplit_once(':').ok_or_else(invalid)?;
            let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
            let host_ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c));
            if !port_ok || !host_ok {
                return Err(invalid());
            }
            urls.push(format!("http://{host}:{port}"));
        }
        Ok(Self(urls))
    }

    pub fn urls(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&str> = self
            .0
            .iter()
            .map(|u| u.strip_prefix("http://").unwrap_or(u))
            .collect();
        write!(f, "etcd://{}", hosts.join(","))
    }
}

/// How a daemon takes part in the election.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub endpoints: Endpoints,
    /// This daemon's name (`--ha-id`), unique among the daemons.
    pub id: String,
    /// Where this daemon's API answers, as the other daemons should tell clients
    /// (`http://host:9464`).
    pub api: String,
    /// Keys live below this prefix (`/steward` by default), so one etcd can serve
    /// several installations.
    pub prefix: String,
    /// The lease's time to live: how long after its last renewal a dead leader keeps
    /// the others waiting. Whole seconds, at least 2 (etcd's shortest lease).
    pub ttl: Duration,
    /// How often the leader renews its lease; well below `ttl`, so that a failed renewal
    /// can be retried before the deadline.
    pub renew_every: Duration,
    /// How soon a failed etcd call (campaign, watch, renewal) is tried again.
    pub retry_every: Duration,
}

impl ElectionConfig {
    /// The defaults: a 10 s lease renewed every 2 s, retries every 500 ms. A leader
    /// killed outright is replaced within about 10 s; one that stops (SIGTERM) at once.
    pub fn new(endpoints: Endpoints, id: impl Into<String>, api: impl Into<String>) -> Self {
        Self {
            endpoints,
            id: id.into(),
            api: api.into(),
            prefix: "/steward".to_owned(),
            ttl: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
            retry_every: Duration::from_millis(500),
        }
    }

    /// Reject settings under which the lease would lapse between two renewals.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let bad = |m: String| Err(LeaderError::Config(m));
        if self.id.is_empty()
            || self.id.len() > 63
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return bad(format!(
                "--ha-id `{}` must be 1-63 letters, digits, `-`, `_` or `.`",
                self.id.chars().take(64).collect::<String>()
            ));
        }
        if self.ttl < Duration::from_secs(2) || self.ttl.subsec_nanos() != 0 {
            return bad(format!(
                "the lease TTL ({:?}) must be whole seconds, at least 2 s (etcd's shortest lease)",
                self.ttl
            ));
        }
        if self.renew_every.is_zero() || self.renew_every * 2 > self.ttl {
            return bad(format!(
                "renewing every {:?} leaves no second try within the {:?} lease: renew at most every TTL/2",
                self.renew_every, self.ttl
            ));
        }
        if self.retry_every.is_zero() || self.retry_every > self.renew_every {
            return bad(format!(
                "retry period {:?} must be above zero and at most the renew period {:?}",
                self.retry_every, self.renew_every
            ));
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') {
            return bad(format!(
                "key prefix `{}` must start with `/` and not end with one",
                self.prefix
            ));
        }
        Ok(())
    }

    pub(crate) fn leader_key(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    pub(crate) fn ca_key(&self) -> String {
        format!("{}/ca-sha256", self.prefix)
    }

    /// The longest a single etcd call may take before it counts as failed.
    pub(crate) fn call_timeout(&self) -> Duration {
        (self.ttl / 2).max(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_one_or_many_members() {
        let e = Endpoints::parse("etcd://127.0.0.1:2379,etcd2.example.eng:2379").unwrap();
        assert_eq!(
            e.urls(),
            ["http://127.0.0.1:2379", "http://etcd2.example.eng:2379"]
        );
        assert_eq!(
            e.to_string(),
            "etcd://127.0.0.1:2379,etcd2.example.eng:2379"
        );
        assert_eq!(
            Endpoints::parse("etcd://a:1,etcd://b:2").unwrap().urls(),
            ["http://a:1", "http://b:2"]
        );
        for bad in [
            "http://a:1",
            "etcd://",
            "etcd://a",
            "etcd://a:0",
            "etcd://a:1,",
            "etcd://u@a:1",
            "etcd://a:1/x",
        ] {
            assert!(Endpoints::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_valid_and_unsafe_settings_are_refused() {
        let base = ElectionConfig::new(Endpoints::parse("etcd://a:1").unwrap(), "a", "http://x");
        base.validate().unwrap();
        let with = |f: fn(&mut ElectionConfig)| {
            let mut c = base.clone();
            f(&mut c);
            c.validate()
        };
        assert!(with(|c| c.ttl = Duration::from_secs(1)).is_err());
        assert!(with(|c| c.ttl = Duration::from_millis(2500)).is_err());
        assert!(with(|c| c.renew_every = Duration::from_secs(6)).is_err());
        assert!(with(|c| c.retry_every = Duration::ZERO).is_err());
        assert!(with(|c| c.id = "a b".into()).is_err());
        assert!(with(|c| c.prefix = "steward".into()).is_err());
        assert!(with(|c| {
            c.ttl = Duration::from_secs(3);
            c.renew_every = Duration::from_secs(1);
        })
        .is_ok());
    }
}
