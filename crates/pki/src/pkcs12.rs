//! Reading PKCS#12 (`.pfx`/`.p12`) bundles, as Windows and `openssl pkcs12 -export`
//! write them, with the pure-Rust `p12-keystore` crate: OpenSSL 3's default
//! (PBES2/AES-256-CBC, HMAC-SHA256 MAC) and the legacy 3DES/RC2 encryption both read.
//!
//! The result is the same PEM pair a `certFile` + `keyFile` server has, so one set of checks
//! and one install path serve both. The password and the key never appear in an error.

use p12_keystore::error::Error as P12Error;
use p12_keystore::Pkcs12Archive;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::FromDer;

use crate::issue::PrivateKeyPem;
use crate::tls::crypto_provider;

/// The certificate chain (leaf first) and the key of a PFX, as PEM.
#[derive(Debug, Clone)]
pub struct PfxContents {
    pub cert_pem: String,
    pub key_pem: PrivateKeyPem,
}

/// Why a PFX cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PfxError {
    /// The integrity check (MAC) failed, or decryption produced garbage: in practice, the
    /// password is not the one the file was exported with.
    #[error("the password does not open the PFX (integrity check failed)")]
    WrongPassword,
    #[error("the PFX holds no private key (export it with the private key)")]
    NoPrivateKey,
    #[error("the PFX holds no certificate")]
    NoCertificate,
    #[error("the PFX holds {0} private keys; steward needs exactly one")]
    SeveralKeys(usize),
    #[error("the PFX uses an algorithm steward cannot read: {0}")]
    Unsupported(String),
    #[error("not a readable PFX: {0}")]
    Invalid(String),
}

impl PfxError {
    /// The condition reason: stable, CamelCase, bounded.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::WrongPassword => "PfxPasswordWrong",
            Self::NoPrivateKey => "PfxNoPrivateKey",
            Self::NoCertificate => "PfxNoCertificate",
            Self::SeveralKeys(_) => "PfxSeveralKeys",
            Self::Unsupported(_) | Self::Invalid(_) => "PfxInvalid",
        }
    }
}

fn map_error(e: P12Error) -> PfxError {
    match e {
        P12Error::MacError(_) | P12Error::UnpadError => PfxError::WrongPassword,
        P12Error::UnsupportedEncryptionScheme
        | P12Error::UnsupportedMacAlgorithm
        | P12Error::UnsupportedContentType
        | P12Error::UnsupportedCertificateType => PfxError::Unsupported(e.to_string()),
        // DER/X.509 errors describe structure, never contents.
        other => PfxError::Invalid(other.to_string()),
    }
}

/// Open a PFX with its password and return its key and certificate chain: the
/// certificate of the key first, then its issuers found in the file (self-signed roots
/// left out: clients have them, and servers do not send them).
pub fn read_pfx(der: &[u8], password: &str) -> Result<PfxContents, PfxError> {
    let archive = Pkcs12Archive::from_pkcs12(der, password).map_err(map_error)?;
    let key = match archive.keys.as_slice() {
        [] => return Err(PfxError::NoPrivateKey),
        [key] => key,
        keys => {
            // Several keys: only one with a certificate of its own is acceptable.
            let linked: Vec<_> = keys
                .iter()
                .filter(|k| {
                    k.local_key_id.as_ref().is_some_and(|id| {
                        archive
                            .certs
                            .iter()
                            .any(|c| c.local_key_id.as_deref() == Some(id.as_ref()))
                    })
                })
                .collect();
            match linked.as_slice() {
                [one] => *one,
                _ => return Err(PfxError::SeveralKeys(keys.len())),
            }
        }
    };
    if archive.certs.is_empty() {
        return Err(PfxError::NoCertificate);
    }
    let certs: Vec<&[u8]> = archive.certs.iter().map(|c| c.cert.as_der()).collect();
    let key_der = key.key.as_der();

    // The leaf: the certificate bag tied to the key by localKeyId, else the certificate
    // whose public key is the key's, else the first one (the checks then report the
    // mismatch).
    let by_id = key.local_key_id.as_ref().and_then(|id| {
        archive
            .certs
            .iter()
            .position(|c| c.local_key_id.as_deref() == Some(id.as_ref()))
    });
    let by_key = || {
        let signing = crypto_provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                key_der.to_vec(),
            )))
            .ok()?;
        let public = signing.public_key()?;
        certs.iter().position(|der| {
            x509_parser::certificate::X509Certificate::from_der(der)
                .is_ok_and(|(_, c)| c.public_key().raw == public.as_ref())
        })
    };
    let leaf = by_id.or_else(by_key).unwrap_or(0);

    let mut chain = vec![leaf];
    let parsed: Vec<Option<(Vec<u8>, Vec<u8>)>> = certs
        .iter()
        .map(|der| {
            x509_parser::certificate::X509Certificate::from_der(der)
                .ok()
                .map(|(_, c)| (c.subject().as_raw().to_vec(), c.issuer().as_raw().to_vec()))
        })
        .collect();
    while let Some(Some((subject, issuer))) = chain.last().map(|i| parsed[*i].clone()) {
        if subject == issuer {
            break;
        }
        let next = parsed.iter().enumerate().position(|(i, p)| {
            !chain.contains(&i) && p.as_ref().is_some_and(|(s, _)| *s == issuer)
        });
        match next {
            Some(i) if parsed[i].as_ref().is_some_and(|(s, iss)| s != iss) => chain.push(i),
            _ => break,
        }
    }

    let cert_pem = chain
        .iter()
        .map(|i| encode_pem("CERTIFICATE", certs[*i]))
        .collect::<String>();
    let key_pem = PrivateKeyPem::new(encode_pem("PRIVATE KEY", key_der));
    Ok(PfxContents { cert_pem, key_pem })
}

/// PEM with Unix line endings, like every other file steward writes.
fn encode_pem(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        let err = read_pfx(b"not a pfx", "pw").unwrap_err();
        assert_eq!(err.reason(), "PfxInvalid");
        let err = read_pfx(&[], "").unwrap_err();
        assert_eq!(err.reason(), "PfxInvalid");
    }

    #[test]
    fn a_pfx_written_by_p12_keystore_reads_back() {
        use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::CertificateAuthority::init(dir.path()).unwrap();
        let issued = ca
            .issue_server(
                &["app1.example.eng".into()],
                &[],
                std::time::Duration::from_secs(3600),
            )
            .unwrap();
        let der = |pem_text: &str| pem::parse(pem_text).unwrap().into_contents();
        let key = PrivateKey::from_der(&der(issued.key_pem.expose())).unwrap();
        let chain = PrivateKeyChain::new(
            b"1".as_slice(),
            key,
            [
                Certificate::from_der(&der(&issued.cert_pem)).unwrap(),
                Certificate::from_der(&der(ca.cert_pem())).unwrap(),
            ],
        );
        let mut store = KeyStore::new();
        store.add_entry("app1", KeyStoreEntry::PrivateKeyChain(chain));
        let pfx = store.writer("correct horse").write().unwrap();

        let read = read_pfx(&pfx, "correct horse").unwrap();
        // The self-signed CA is left out of the served chain.
        assert_eq!(read.cert_pem.trim(), issued.cert_pem.trim());
        crate::verify_key_pair(&read.cert_pem, read.key_pem.expose()).unwrap();
        assert!(!format!("{read:?}").contains("PRIVATE KEY"));

        let err = read_pfx(&pfx, "battery staple").unwrap_err();
        assert_eq!(err, PfxError::WrongPassword);
        assert_eq!(err.reason(), "PfxPasswordWrong");
        assert!(!err.to_string().contains("staple"));
    }
}
