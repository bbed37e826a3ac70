//! What steward needs to reach and check one PatientSecure database.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

/// SQL Server's default TCP port.
pub const DEFAULT_PORT: u16 = 1433;

/// The vendor's naming convention for the service login: `ImprivataPatientSecureServices_<db>`.
pub fn default_service_login(database: &str) -> String {
    format!("ImprivataPatientSecureServices_{database}")
}

/// A password. It has no `Display`, redacts itself in `Debug`, is read only through
/// [`Password::expose`] (so it cannot reach a log, an error or a status by accident), and
/// its bytes are overwritten when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// `host` or `host\INSTANCE`, as the vendor console takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName {
    pub host: String,
    pub instance: Option<String>,
}

impl ServerName {
    pub fn parse(s: &str) -> Self {
        match s.split_once('\\') {
            Some((host, instance)) if !instance.is_empty() => Self {
                host: host.to_owned(),
                instance: Some(instance.to_owned()),
            },
            Some((host, _)) => Self {
                host: host.to_owned(),
                instance: None,
            },
            None => Self {
                host: s.to_owned(),
                instance: None,
            },
        }
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.instance {
            Some(instance) => write!(f, "{}\\{instance}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// The login PatientSecure's services use (created by `create: true` or by the DBA script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLogin {
    pub name: String,
    /// Needed only to create the login; verification never reads it.
    pub password: Option<Password>,
}

/// Every wait is bounded, so a server that accepts TCP and then says nothing costs one
/// bounded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (and the SQL Browser lookup of an `\INSTANCE`).
    pub connect: Duration,
    /// Prelogin, TLS handshake and login together.
    pub login: Duration,
    /// One statement or query, from sending it to its last row.
    pub command: Duration,
    /// Waiting for a free connection of the pool.
    pub pool_wait: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            login: Duration::from_secs(10),
            command: Duration::from_secs(10),
            pool_wait: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub server: ServerName,
    /// `None`: 1433, or the SQL Browser's answer when an instance is named.
    pub port: Option<u16>,
    pub database: String,
    /// The installer login steward connects with.
    pub user: String,
    pub password: Password,
    /// TLS required (verified against the system roots and `trust`); `false` only when the
    /// desired state says `encrypt: false`.
    pub encrypt: bool,
    /// Extra CA certificates (PEM files) trusted for the server's certificate.
    pub trust: Vec<PathBuf>,
    pub service_login: ServiceLogin,
    pub timeouts: Timeouts,
    /// The most connections the pool opens to this server.
    pub pool_size: usize,
}

impl DatabaseConfig {
    /// A configuration with the documented defaults: port 1433, encryption required, the
    /// vendor's service login name, default timeouts, a pool of 4.
    pub fn new(
        server: &str,
        database: impl Into<String>,
        user: impl Into<String>,
        password: Password,
    ) -> Self {
        let database = database.into();
        Self {
            server: ServerName::parse(server),
            port: None,
            service_login: ServiceLogin {
                name: default_service_login(&database),
                password: None,
            },
            database,
            user: user.into(),
            password,
            encrypt: true,
            trust: Vec::new(),
            timeouts: Timeouts::default(),
            pool_size: 4,
        }
    }

    /// `host:port` or `host\INSTANCE`, for messages (never credentials).
    pub fn address(&self) -> String {
        match (self.port, &self.server.instance) {
            (None, Some(_)) => self.server.to_string(),
            (port, _) => format!("{}:{}", self.server, port.unwrap_or(DEFAULT_PORT)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_split_at_the_instance() {
        assert_eq!(
            ServerName::parse("db.example.eng\\PS"),
            ServerName {
                host: "db.example.eng".into(),
                instance: Some("PS".into())
            }
        );
        assert_eq!(ServerName::parse("10.0.0.5").instance, None);
        assert_eq!(ServerName::parse("db\\").instance, None);
        assert_eq!(ServerName::parse("db\\PS").to_string(), "db\\PS");
    }

    #[test]
    fn defaults_follow_the_vendor_and_the_design() {
        let c = DatabaseConfig::new("db", "PatientSecure", "ps_installer", Password::new("pw"));
        assert_eq!(
            c.service_login.name,
            "ImprivataPatientSecureServices_PatientSecure"
        );
        assert!(c.encrypt);
        assert_eq!(c.address(), "db:1433");
        let named = DatabaseConfig::new("db\\PS", "x", "u", Password::new("pw"));
        assert_eq!(named.address(), "db\\PS");
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let mut c = DatabaseConfig::new("db", "PS", "u", Password::new("s3cr3t-Value"));
        c.service_login.password = Some(Password::new("svc-s3cr3t"));
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn passwords_are_wiped_on_drop() {
        // Compiles only while the value sits in a type that zeroes it when dropped.
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        wiped_on_drop(&Password::new("pw").0);
    }
}
