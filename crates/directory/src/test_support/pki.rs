//! A throwaway CA and server certificates (rcgen), written as PEM files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: PathBuf,
}

/// A server certificate and key on disk (key mode 0600: Samba refuses others).
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-sign CA");
        let cert_pem = dir.join(format!("{name}-ca.pem"));
        super::write(&cert_pem, &cert.pem());
        Self {
            issuer: Issuer::new(params, key),
            cert_pem,
        }
    }

    /// A server certificate for `dns` names and `ips`, issued by this CA.
    pub fn server(&self, dir: &Path, name: &str, dns: &[&str], ips: &[&str]) -> ServerCert {
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, dns.first().copied().unwrap_or(name));
        params.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName((*d).try_into().expect("dns name")))
            .chain(
                ips.iter()
                    .map(|ip| SanType::IpAddress(ip.parse().expect("ip"))),
            )
            .collect();
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("issue server cert");
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        super::write(&cert_path, &cert.pem());
        super::write(&key_path, &key.serialize_pem());
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod key");
        ServerCert {
            cert: cert_path,
            key: key_path,
        }
    }
}
