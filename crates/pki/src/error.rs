use std::path::PathBuf;

/// Everything that can go wrong in the CA or while building TLS configurations.
///
/// No variant carries key material: PEM contents are never copied into an error, only
/// the path or a description of what was being parsed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} already exists; refusing to overwrite an existing certificate authority", .0.display())]
    AlreadyExists(PathBuf),
    #[error("{} is readable by group or others (mode {mode:o}); run chmod 600 on it", path.display())]
    InsecureKeyFile { path: PathBuf, mode: u32 },
    #[error("invalid name `{name}` for a certificate: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("no {what} found in the PEM input")]
    MissingPem { what: &'static str },
    #[error("{what} is not valid PEM")]
    InvalidPem { what: &'static str },
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("invalid certificate lifetime: {0}")]
    InvalidLifetime(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

impl PkiError {
    /// A bounded label for metrics (never the error text).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::AlreadyExists(_) => "already_exists",
            Self::InsecureKeyFile { .. } => "insecure_key_file",
            Self::InvalidName { .. } => "invalid_name",
            Self::MissingPem { .. } | Self::InvalidPem { .. } => "invalid_pem",
            Self::InvalidCertificate(_) => "invalid_certificate",
            Self::KeyMismatch => "key_mismatch",
            Self::InvalidKey(_) => "invalid_key",
            Self::Generate(_) => "generate",
            Self::InvalidLifetime(_) => "invalid_lifetime",
            Self::Tls(_) => "tls_config",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        // rcgen's messages describe the failure kind, never the key bytes.
        Self::Generate(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_snake_case() {
        let errors = [
            PkiError::AlreadyExists("x".into()),
            PkiError::KeyMismatch,
            PkiError::MissingPem {
                what: "certificate",
            },
            PkiError::Tls("x".into()),
        ];
        for e in errors {
            let label = e.metric_label();
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
    }
}
