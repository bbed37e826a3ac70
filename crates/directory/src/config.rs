//! What the controller hands the crate: where the directory is, how to bind, whom to trust.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::DirectoryError;

/// The bind password. Its `Debug` never shows the value, nothing in this crate copies it
/// into an error, a log line or a `Display`, and its memory is wiped on drop.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// How to reach and bind to one directory.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// `ldaps://host[:636]` (TLS from the first byte) or `ldap://host[:389]` (StartTLS is
    /// always negotiated before the bind).
    pub url: String,
    /// DNS domain (`corp.example.eng`); its `DC=` form is the base for account lookups and,
    /// without `container`, for groups.
    pub domain: String,
    /// Where role groups are looked up and created (`OU=PatientSecure,DC=corp,...`).
    pub container: Option<String>,
    /// The account to bind as (a DN, or `user@domain` for AD).
    pub bind_dn: String,
    pub password: Password,
    /// PEM files with extra trusted CA certificates, added to the system roots.
    pub trust: Vec<PathBuf>,
    /// Bound on TCP connect, and separately on the TLS/StartTLS handshake.
    pub connect_timeout: Duration,
    /// Bound on each LDAP operation (bind, one search, one modify).
    pub operation_timeout: Duration,
    /// A search returning more entries than this is cut off and reported.
    pub max_entries: usize,
    /// A group with more member values than this is reported rather than read on.
    pub max_members: usize,
    /// Connect here instead of resolving the URL's host (the lab's stand-in directory);
    /// the certificate is still checked against the URL's host.
    pub connect_to: Option<std::net::SocketAddr>,
}

impl DirectoryConfig {
    /// A configuration with the default bounds: 5 s to connect, 10 s per operation,
    /// 10,000 entries per search, 100,000 members per group.
    pub fn new(
        url: impl Into<String>,
        domain: impl Into<String>,
        bind_dn: impl Into<String>,
        password: Password,
    ) -> Self {
        Self {
            url: url.into(),
            domain: domain.into(),
            container: None,
            bind_dn: bind_dn.into(),
            password,
            trust: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
            max_entries: 10_000,
            max_members: 100_000,
            connect_to: None,
        }
    }

    /// The DN groups live under: the container, else the domain's naming context.
    pub fn group_base(&self) -> Result<String, DirectoryError> {
        match &self.container {
            Some(container) if !container.trim().is_empty() => Ok(container.trim().to_string()),
            _ => self.domain_base(),
        }
    }

    /// `corp.example.eng` -> `DC=corp,DC=example,DC=eng`.
    pub fn domain_base(&self) -> Result<String, DirectoryError> {
        let labels: Vec<&str> = self
            .domain
            .trim()
            .trim_end_matches('.')
            .split('.')
            .collect();
        let valid =
            |l: &&str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !labels.iter().all(valid) {
            return Err(DirectoryError::Config(format!(
                "domain `{}` is not a DNS name",
                self.domain
            )));
        }
        Ok(labels
            .iter()
            .map(|l| format!("DC={l}"))
            .collect::<Vec<_>>()
            .join(","))
    }
}

/// How the connection is secured before anything else is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldap://`: StartTLS, and the bind only after it succeeded.
    StartTls,
}

/// The parsed `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, DirectoryError> {
        // A URL with user info may carry a password: never echo it.
        let shown = if url.contains('@') { "<redacted>" } else { url };
        let bad = |why: &str| DirectoryError::Config(format!("server URL `{shown}`: {why}"));
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let transport = match parsed.scheme() {
            "ldaps" => Transport::Ldaps,
            "ldap" => Transport::StartTls,
            other => return Err(bad(&format!("scheme `{other}` is not ldap or ldaps"))),
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(bad("no host")),
        };
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            return Err(bad(
                "a base DN, attributes or filter in the URL are not supported",
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("credentials do not belong in the URL"));
        }
        let port = parsed.port().unwrap_or(match transport {
            Transport::Ldaps => 636,
            Transport::StartTls => 389,
        });
        Ok(Self {
            transport,
            host,
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_debug_is_redacted() {
        let config = DirectoryConfig::new(
            "ldaps://dc1:636",
            "example.eng",
            "CN=svc",
            Password::new("hunter2-secret"),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn urls_give_transport_and_default_ports() {
        let e = Endpoint::parse("ldaps://dc1.example.eng").unwrap();
        assert_eq!(
            (e.transport, e.host.as_str(), e.port),
            (Transport::Ldaps, "dc1.example.eng", 636)
        );
        let e = Endpoint::parse("ldap://127.0.0.1:3389").unwrap();
        assert_eq!(
            (e.transport, e.host.as_str(), e.port),
            (Transport::StartTls, "127.0.0.1", 3389)
        );
        let e = Endpoint::parse("ldap://dc1").unwrap();
        assert_eq!(e.port, 389);
    }

    #[test]
    fn urls_that_cannot_be_used_safely_are_refused() {
        for url in [
            "http://dc1",
            "ldapi://%2fvar%2frun%2fslapd",
            "ldaps://",
            "ldap://dc1/dc=example??sub",
            "ldaps://svc:pw@dc1",
        ] {
            let err = Endpoint::parse(url).unwrap_err();
            assert_eq!(err.label(), "Config", "{url}: {err}");
        }
        let err = Endpoint::parse("ldaps://svc:pw-secret@dc1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("credentials") && !err.contains("pw-secret"),
            "{err}"
        );
    }

    #[test]
    fn bases_come_from_container_or_domain() {
        let mut c =
            DirectoryConfig::new("ldaps://dc1", "corp.example.eng", "x", Password::new("p"));
        assert_eq!(c.group_base().unwrap(), "DC=corp,DC=example,DC=eng");
        c.container = Some("OU=PatientSecure,DC=corp,DC=example,DC=eng".into());
        assert_eq!(
            c.group_base().unwrap(),
            "OU=PatientSecure,DC=corp,DC=example,DC=eng"
        );
        assert_eq!(c.domain_base().unwrap(), "DC=corp,DC=example,DC=eng");
        c.domain = "corp..eng".into();
        assert_eq!(c.domain_base().unwrap_err().label(), "Config");
    }
}
