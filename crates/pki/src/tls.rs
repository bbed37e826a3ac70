//! rustls configurations for both ends of steward's TLS connections. Each builder installs
//! the ring provider itself, so no process-wide default provider has to be set up first
//! (and no aws-lc-rs is ever linked).

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::thumbprint::inspect_der;
use crate::{CertificateInfo, PkiError};

/// The ring provider every steward TLS configuration uses.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A server that requires a client certificate issued by the CA in `ca_pem`; a client
/// without one fails the handshake.
pub fn mtls_server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<ServerConfig, PkiError> {
    let roots = Arc::new(root_store([ca_pem])?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, crypto_provider())
        .build()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    let (chain, key) = load_pair(cert_pem, key_pem)?;
    ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(key_error)
}

/// A client that presents `cert_pem` and trusts only servers issued by the CA in `ca_pem`.
pub fn mtls_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<ClientConfig, PkiError> {
    let roots = root_store([ca_pem])?;
    let (chain, key) = load_pair(cert_pem, key_pem)?;
    ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(key_error)
}

/// A plain TLS server (no client certificates), e.g. a PatientSecure service.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<ServerConfig, PkiError> {
    let (chain, key) = load_pair(cert_pem, key_pem)?;
    ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(key_error)
}

/// A client that verifies servers against the given CA bundles (e.g. the steward CA plus
/// `certificateAuthority.trust`), such as the health prober.
pub fn client_config<S: AsRef<str>>(roots: &[S]) -> Result<ClientConfig, PkiError> {
    let roots = root_store(roots.iter().map(AsRef::as_ref))?;
    Ok(ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Check that `key_pem` is the private key of the first certificate in `cert_pem`, and
/// describe that certificate. Used before installing a certificate on a server.
pub fn verify_key_pair(cert_pem: &str, key_pem: &str) -> Result<CertificateInfo, PkiError> {
    let (chain, key) = load_pair(cert_pem, key_pem)?;
    let info = inspect_der(&chain[0])?;
    CertifiedKey::from_der(chain, key, &crypto_provider()).map_err(key_error)?;
    Ok(info)
}

pub(crate) fn certificates_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PkiError::InvalidPem { what })?;
    if certs.is_empty() {
        return Err(PkiError::MissingPem {
            what: "certificate",
        });
    }
    Ok(certs)
}

fn private_key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    // The parser's error is dropped on purpose: it could quote the input.
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => PkiError::MissingPem {
            what: "private key",
        },
        _ => PkiError::InvalidPem {
            what: "the private key",
        },
    })
}

fn load_pair(
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
    let chain = certificates_from_pem(cert_pem, "the certificate")?;
    let key = private_key_from_pem(key_pem)?;
    Ok((chain, key))
}

fn root_store<'a>(pems: impl IntoIterator<Item = &'a str>) -> Result<RootCertStore, PkiError> {
    let mut store = RootCertStore::empty();
    for pem in pems {
        for cert in certificates_from_pem(pem, "a CA certificate")? {
            store
                .add(cert)
                .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
        }
    }
    if store.is_empty() {
        return Err(PkiError::MissingPem {
            what: "CA certificate",
        });
    }
    Ok(store)
}

fn tls_error(e: rustls::Error) -> PkiError {
    PkiError::Tls(e.to_string())
}

fn key_error(e: rustls::Error) -> PkiError {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            PkiError::KeyMismatch
        }
        rustls::Error::InconsistentKeys(_) | rustls::Error::General(_) => {
            PkiError::InvalidKey(e.to_string())
        }
        other => PkiError::Tls(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertificateAuthority;

    #[test]
    fn verify_key_pair_detects_a_foreign_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path()).unwrap();
        let a = ca.issue_agent("a.example.eng", &[]).unwrap();
        let b = ca.issue_agent("b.example.eng", &[]).unwrap();
        let info = verify_key_pair(&a.cert_pem, a.key_pem.expose()).unwrap();
        assert_eq!(info.sha1_thumbprint, a.sha1_thumbprint);
        let err = verify_key_pair(&a.cert_pem, b.key_pem.expose()).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch), "{err}");
        let err = verify_key_pair(&a.cert_pem, "not a key").unwrap_err();
        assert_eq!(err.metric_label(), "invalid_pem");
        assert!(!err.to_string().contains("not a key"));
    }

    #[test]
    fn builders_reject_missing_material() {
        assert!(client_config::<&str>(&[]).is_err());
        assert!(client_config(&["junk"]).is_err());
        assert!(server_config("", "").is_err());
    }
}
