use std::net::IpAddr;

use sha1::{Digest, Sha1};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use crate::tls::certificates_from_pem;
use crate::PkiError;

/// The SHA-1 thumbprint of a DER certificate as Windows shows it (certificate store,
/// IIS bindings): uppercase hex without separators, e.g.
/// `411CBDB5756F85E683EF8732C826B1840C81075A`.
pub fn thumbprint_sha1(cert_der: &[u8]) -> String {
    hex::encode_upper(Sha1::digest(cert_der))
}

/// What steward reports about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub sha1_thumbprint: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub is_ca: bool,
}

/// Inspect the first (end-entity) certificate of a PEM bundle.
pub fn inspect_pem(pem: &str) -> Result<CertificateInfo, PkiError> {
    let der = certificates_from_pem(pem, "the certificate")?
        .into_iter()
        .next()
        .ok_or(PkiError::MissingPem {
            what: "certificate",
        })?;
    inspect_der(&der)
}

/// The end of the validity period of the first certificate in a PEM bundle.
pub fn not_after_pem(pem: &str) -> Result<OffsetDateTime, PkiError> {
    inspect_pem(pem).map(|info| info.not_after)
}

pub(crate) fn inspect_der(der: &[u8]) -> Result<CertificateInfo, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        ip_addresses.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        sha1_thumbprint: thumbprint_sha1(der),
        dns_names,
        ip_addresses,
        is_ca: cert.is_ca(),
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_is_uppercase_hex_sha1() {
        // SHA-1("abc"), a published test vector.
        assert_eq!(
            thumbprint_sha1(b"abc"),
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
        let t = thumbprint_sha1(b"");
        assert_eq!(t.len(), 40);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(inspect_pem("").unwrap_err().metric_label(), "invalid_pem");
        assert_eq!(
            inspect_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err()
                .metric_label(),
            "invalid_certificate"
        );
        assert!(not_after_pem("hello").is_err());
    }
}
