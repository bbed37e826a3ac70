use std::fmt;
use std::time::Duration;

use crate::error::LeaderError;

/// etcd's client URLs, from `etcd://HOST:PORT[,HOST:PORT...]` (plain HTTP/2) or
/// `etcds://...` (TLS: the members' client port serves HTTPS, as etcd does with
/// `--cert-file` and `--key-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    urls: Vec<String>,
    tls: bool,
}

impl Endpoints {
    /// Parse `etcd://h1:2379,h2:2379` or `etcds://h1:2379,h2:2379` (each member may
    /// repeat the scheme; all members use the same one).
    pub fn parse(raw: &str) -> Result<Self, LeaderError> {
        let invalid = || LeaderError::Endpoints(raw.chars().take(200).collect());
        let (scheme, tls, rest) = if let Some(rest) = raw.strip_prefix("etcds://") {
            ("etcds://", true, rest)
        } else if let Some(rest) = raw.strip_prefix("etcd://") {
            ("etcd://", false, rest)
        } else {
            return Err(invalid());
        };
        let http = if tls { "https" } else { "http" };
        let mut urls = Vec::new();
        for member in rest.split(',') {
            let member = member.trim();
            let member = member.strip_prefix(scheme).unwrap_or(member);
            let (host, port) = member.rsplit_once(':').ok_or_else(invalid)?;
            let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
            let host_ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c));
            if !port_ok || !host_ok {
                return Err(invalid());
            }
            urls.push(format!("{http}://{host}:{port}"));
        }
        Ok(Self { urls, tls })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Whether the members are reached over TLS (`etcds://`).
    pub fn tls(&self) -> bool {
        self.tls
    }
}

impl fmt::Display for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&str> = self
            .urls
            .iter()
            .map(|u| u.split_once("://").map_or(u.as_str(), |(_, host)| host))
            .collect();
        let scheme = if self.tls { "etcds" } else { "etcd" };
        write!(f, "{scheme}://{}", hosts.join(","))
    }
}

/// TLS to etcd's client port (`etcds://`): the CA that signed the members' server
/// certificates (never the system's roots: an etcd cluster has its own CA), and this
/// daemon's client certificate for members started with `--client-cert-auth`.
#[derive(Clone)]
pub struct EtcdTls {
    /// PEM, one or more CA certificates.
    pub trust_pem: String,
    pub client: Option<ClientIdentity>,
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// A client certificate and its private key, both PEM. The key is wiped from memory when
/// dropped and never printed.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    key_pem: zeroize::Zeroizing<String>,
}

impl ClientIdentity {
    pub fn new(cert_pem: String, key_pem: String) -> Self {
        Self {
            cert_pem,
            key_pem: zeroize::Zeroizing::new(key_pem),
        }
    }

    pub(crate) fn key_pem(&self) -> &str {
        &self.key_pem
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
    /// Required with `etcds://` endpoints, refused with `etcd://`.
    pub tls: Option<EtcdTls>,
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
            tls: None,
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
        match (self.endpoints.tls(), &self.tls) {
            (true, None) => {
                return bad(format!(
                    "`{}` is TLS: name the CA that signed etcd's certificates (--ha-trust FILE)",
                    self.endpoints
                ))
            }
            (false, Some(_)) => {
                return bad(format!(
                    "TLS settings (--ha-trust, --ha-cert, --ha-key) were given but `{}` is plain: \
                     write the endpoints as etcds://HOST:PORT",
                    self.endpoints
                ))
            }
            _ => {}
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
        let tls = Endpoints::parse("etcds://a:1,etcds://b:2").unwrap();
        assert!(tls.tls());
        assert_eq!(tls.urls(), ["https://a:1", "https://b:2"]);
        assert_eq!(tls.to_string(), "etcds://a:1,b:2");
        for bad in [
            "etcds://a:1,etcd://b:2",
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
        let tls = EtcdTls {
            trust_pem: "-----BEGIN CERTIFICATE-----".into(),
            client: None,
        };
        let mut plain_with_tls = base.clone();
        plain_with_tls.tls = Some(tls.clone());
        let err = plain_with_tls.validate().unwrap_err().to_string();
        assert!(err.contains("etcds://"), "{err}");
        let mut tls_without = base.clone();
        tls_without.endpoints = Endpoints::parse("etcds://a:1").unwrap();
        let err = tls_without.validate().unwrap_err().to_string();
        assert!(err.contains("--ha-trust"), "{err}");
        tls_without.tls = Some(tls);
        tls_without.validate().unwrap();
        assert!(with(|c| {
            c.ttl = Duration::from_secs(3);
            c.renew_every = Duration::from_secs(1);
        })
        .is_ok());
    }
}
