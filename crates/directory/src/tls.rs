//! The rustls client configuration: system roots plus the directory's trust files, and the
//! mapping of rustls certificate errors to `TlsUntrusted` / `TlsHostMismatch`.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::error::DirectoryError;

/// Builds the client configuration. A trust file that cannot be read or holds no
/// certificate is a configuration error (silently trusting less would hide a typo).
pub(crate) fn client_config(trust: &[PathBuf]) -> Result<Arc<ClientConfig>, DirectoryError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system stores only shrink what is trusted; they never widen it.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for path in trust {
        for cert in read_pem_certificates(path)? {
            roots.add(cert).map_err(|e| {
                DirectoryError::Config(format!("trust file {}: {e}", path.display()))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DirectoryError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_pem_certificates(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, DirectoryError> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| DirectoryError::Config(format!("trust file {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(DirectoryError::Config(format!(
            "trust file {shown}: no PEM certificate in it"
        )));
    }
    Ok(certs)
}

/// What a failed handshake means for the operator.
pub(crate) enum TlsFailure {
    Untrusted(String),
    HostMismatch(String),
    /// Not a certificate problem (garbage, alert, protocol version).
    Other(String),
}

/// Finds a rustls error inside an I/O error (tokio-rustls wraps them) and classifies it.
pub(crate) fn classify(err: &io::Error) -> Option<TlsFailure> {
    let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::HostMismatch(describe_certificate_error(cert))
            }
            other => TlsFailure::Untrusted(describe_certificate_error(other)),
        },
        other => TlsFailure::Other(other.to_string()),
    })
}

fn describe_certificate_error(err: &CertificateError) -> String {
    match err {
        CertificateError::UnknownIssuer => {
            "issued by a CA that is neither a system root nor in the trust files".to_string()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("expired ({err})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("not valid yet ({err})")
        }
        CertificateError::NotValidForNameContext { presented, .. } => {
            format!("the certificate names {}", presented.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trust_file_that_cannot_add_trust_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for (path, says) in [(&empty, "no PEM certificate"), (&missing, "missing.pem")] {
            let err = client_config(std::slice::from_ref(path)).unwrap_err();
            assert_eq!(err.label(), "Config", "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        client_config(&[]).expect("system roots alone are a valid configuration");
    }
}
