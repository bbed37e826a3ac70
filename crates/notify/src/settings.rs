//! A Notifications object made ready to send: secrets read, trust files loaded, templates
//! compiled once. Reading happens when mail is about to go, so a secret that exists only
//! on the daemon host (or was rotated) is picked up, and an unreadable one is the
//! object's error, named by its reference.

use std::path::Path;
use std::time::Duration;

use steward_model::notifications::{Notifications, SmtpTls, TlsVersion};
use steward_model::SecretValue;

use crate::error::DeliveryError;

/// Longest a trust file may be.
const MAX_TRUST_BYTES: u64 = 1 << 20;

/// SMTP settings with everything read. `Debug` never shows the password.
pub struct SmtpSettings {
    pub server: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub min_tls_version: TlsVersion,
    pub credentials: Option<(SecretValue, SecretValue)>,
    /// PEM bundles of the `trust` files.
    pub trust_pem: Vec<Vec<u8>>,
    /// For each network step (connect, a command, the message).
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("server", &self.server)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("min_tls_version", &self.min_tls_version)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .field("trust_files", &self.trust_pem.len())
            .finish()
    }
}

/// How long one network step may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl SmtpSettings {
    /// Read what `n` refers to; relative paths resolve against `base` (the desired-state
    /// directory).
    pub fn read(n: &Notifications, base: &Path) -> Result<Self, DeliveryError> {
        let credentials = match &n.smtp.credentials {
            None => None,
            Some(c) => {
                let user = c
                    .username_ref
                    .resolve(base)
                    .map_err(|e| DeliveryError::Config {
                        detail: format!("usernameRef: {e}"),
                    })?;
                let password = c
                    .password_ref
                    .resolve(base)
                    .map_err(|e| DeliveryError::Config {
                        detail: format!("passwordRef: {e}"),
                    })?;
                Some((user, password))
            }
        };
        let mut trust_pem = Vec::new();
        for path in &n.smtp.trust {
            let full = if path.is_absolute() {
                path.clone()
            } else {
                base.join(path)
            };
            let bytes =
                steward_model::load::read_regular_file(&full, MAX_TRUST_BYTES).map_err(|e| {
                    DeliveryError::Config {
                        detail: format!("trust file {}: {e}", path.display()),
                    }
                })?;
            trust_pem.push(bytes);
        }
        Ok(Self {
            server: n.smtp.server.clone(),
            port: n.smtp.port,
            tls: n.smtp.tls,
            min_tls_version: n.smtp.min_tls_version,
            credentials,
            trust_pem,
            timeout: DEFAULT_TIMEOUT,
        })
    }
}
