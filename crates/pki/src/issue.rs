use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::files::{replace_private_file, replace_public_file};
use crate::{thumbprint_sha1, CertificateAuthority, PkiError};

/// Agent and client certificates are re-issued by `steward ca issue-agent`; a year keeps a
/// forgotten one from living forever without making the lab churn.
const AGENT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
const CLIENT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Tolerate clocks that run a little behind the CA's.
const BACKDATE: time::Duration = time::Duration::minutes(5);

/// A PEM-encoded private key. `Debug` never shows it; read it with
/// [`PrivateKeyPem::expose`] only where it is written or sent (it serializes as itself:
/// the agent API carries it to the server that installs it). Wiped when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PrivateKeyPem(Zeroizing<String>);

impl PrivateKeyPem {
    pub fn new(pem: String) -> Self {
        Self(Zeroizing::new(pem))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A certificate and its freshly generated key.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub cert_pem: String,
    pub key_pem: PrivateKeyPem,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Uppercase hex SHA-1 of the DER certificate, as Windows shows it.
    pub sha1_thumbprint: String,
}

impl IssuedCertificate {
    /// Write `{stem}.pem` and `{stem}.key` (mode 0600) into `dir`, replacing older ones.
    pub fn write_pair(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        std::fs::create_dir_all(dir).map_err(|e| PkiError::io(dir, e))?;
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        replace_private_file(&key, self.key_pem.expose().as_bytes())?;
        replace_public_file(&cert, self.cert_pem.as_bytes())?;
        Ok((cert, key))
    }
}

enum Usage {
    Server,
    Client,
}

impl CertificateAuthority {
    /// The agent's TLS server certificate: its hostname and any addresses it is reached on.
    pub fn issue_agent(
        &self,
        hostname: &str,
        ip_sans: &[IpAddr],
    ) -> Result<IssuedCertificate, PkiError> {
        // An agent addressed by IP only (the lab) passes the IP as its "hostname".
        let (dns, mut ips) = match hostname.parse::<IpAddr>() {
            Ok(ip) => (Vec::new(), vec![ip]),
            Err(_) => (vec![hostname.to_owned()], Vec::new()),
        };
        for ip in ip_sans {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        self.issue(hostname, &dns, &ips, AGENT_LIFETIME, Usage::Server)
    }

    /// The daemon's client certificate for mutual TLS to the agents.
    pub fn issue_client(&self, common_name: &str) -> Result<IssuedCertificate, PkiError> {
        self.issue(common_name, &[], &[], CLIENT_LIFETIME, Usage::Client)
    }

    /// A PatientSecure server's TLS certificate (`certificate.generate: true`).
    pub fn issue_server(
        &self,
        dns_sans: &[String],
        ip_sans: &[IpAddr],
        lifetime: Duration,
    ) -> Result<IssuedCertificate, PkiError> {
        let common_name = match (dns_sans.first(), ip_sans.first()) {
            (Some(dns), _) => dns.clone(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => {
                return Err(PkiError::InvalidName {
                    name: String::new(),
                    reason: "a server certificate needs at least one DNS name or IP address".into(),
                })
            }
        };
        self.issue(&common_name, dns_sans, ip_sans, lifetime, Usage::Server)
    }

    fn issue(
        &self,
        common_name: &str,
        dns_sans: &[String],
        ip_sans: &[IpAddr],
        lifetime: Duration,
        usage: Usage,
    ) -> Result<IssuedCertificate, PkiError> {
        check_common_name(common_name)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for name in dns_sans {
            check_dns_name(name)?;
            let ia5 = name.clone().try_into().map_err(|_| PkiError::InvalidName {
                name: name.clone(),
                reason: "not ASCII".into(),
            })?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        params
            .subject_alt_names
            .extend(ip_sans.iter().copied().map(SanType::IpAddress));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;

        let lifetime = time::Duration::try_from(lifetime)
            .map_err(|e| PkiError::InvalidLifetime(e.to_string()))?;
        if lifetime <= time::Duration::ZERO {
            return Err(PkiError::InvalidLifetime("must be positive".into()));
        }
        // X.509 times have whole seconds; truncating here makes the returned dates equal
        // the certificate's.
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        params.not_before = now - BACKDATE;
        params.not_after = now
            .checked_add(lifetime)
            .filter(|t| t.year() <= 9999)
            .ok_or_else(|| PkiError::InvalidLifetime("ends after the year 9999".into()))?;

        let key = self.leaf_algorithm.generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCertificate {
            sha1_thumbprint: thumbprint_sha1(cert.der()),
            cert_pem: cert.pem(),
            key_pem: PrivateKeyPem::new(key.serialize_pem()),
            not_before: params.not_before,
            not_after: params.not_after,
        })
    }
}

fn check_common_name(name: &str) -> Result<(), PkiError> {
    let invalid = |reason: &str| PkiError::InvalidName {
        name: name.chars().take(80).collect(),
        reason: reason.into(),
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    // The X.520 upper bound for a common name.
    if name.chars().count() > 64 {
        return Err(invalid("longer than 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    Ok(())
}

fn check_dns_name(name: &str) -> Result<(), PkiError> {
    let valid = name.len() <= 253
        && rustls::pki_types::DnsName::try_from(name).is_ok()
        && name.parse::<IpAddr>().is_err();
    if valid {
        Ok(())
    } else {
        Err(PkiError::InvalidName {
            name: name.chars().take(80).collect(),
            reason: "not a valid DNS name".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (tempfile::TempDir, CertificateAuthority) {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path()).unwrap();
        (dir, ca)
    }

    #[test]
    fn key_pem_is_redacted_in_debug() {
        let (_dir, ca) = ca();
        let issued = ca.issue_client("steward").unwrap();
        let debug = format!("{issued:?}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        assert!(issued.key_pem.expose().contains("PRIVATE KEY"));
    }

    #[test]
    fn key_pem_is_wiped_on_drop_and_serializes_as_itself() {
        // Compiles only while the key sits in a type that zeroes it when dropped.
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let key = PrivateKeyPem::new("-----BEGIN PRIVATE KEY-----".into());
        wiped_on_drop(&key.0);
        // The agent API carries the key to the server that installs it.
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"-----BEGIN PRIVATE KEY-----\"");
        assert_eq!(serde_json::from_str::<PrivateKeyPem>(&json).unwrap(), key);
    }

    #[test]
    fn agent_certificate_names_host_and_addresses() {
        let (_dir, ca) = ca();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let issued = ca.issue_agent("app1.example.eng", &[ip]).unwrap();
        let info = crate::inspect_pem(&issued.cert_pem).unwrap();
        assert_eq!(info.dns_names, ["app1.example.eng"]);
        assert_eq!(info.ip_addresses, [ip]);
        assert_eq!(
            info.issuer,
            crate::inspect_pem(ca.cert_pem()).unwrap().subject
        );
        assert_eq!(info.sha1_thumbprint, issued.sha1_thumbprint);
        assert_eq!(info.not_after, issued.not_after);
        assert_eq!(info.not_before, issued.not_before);
        assert!(!info.is_ca);

        let by_ip = ca.issue_agent("127.0.0.3", &[]).unwrap();
        let info = crate::inspect_pem(&by_ip.cert_pem).unwrap();
        assert!(info.dns_names.is_empty());
        assert_eq!(info.ip_addresses, ["127.0.0.3".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn server_certificate_lifetime_is_honoured() {
        let (_dir, ca) = ca();
        let issued = ca
            .issue_server(&["ps.example.eng".into()], &[], Duration::from_secs(86_400))
            .unwrap();
        let span = issued.not_after - issued.not_before;
        assert_eq!(span, time::Duration::days(1) + BACKDATE);
    }

    #[test]
    fn bad_names_and_lifetimes_are_refused() {
        let (_dir, ca) = ca();
        let day = Duration::from_secs(86_400);
        for bad in ["", "bad name", "-x.example", "a..b"] {
            let err = ca.issue_server(&[bad.into()], &[], day).unwrap_err();
            assert_eq!(err.metric_label(), "invalid_name", "{bad}: {err}");
        }
        assert_eq!(
            ca.issue_server(&[], &[], day).unwrap_err().metric_label(),
            "invalid_name"
        );
        assert_eq!(
            ca.issue_server(&["a.example".into()], &[], Duration::ZERO)
                .unwrap_err()
                .metric_label(),
            "invalid_lifetime"
        );
        assert_eq!(
            ca.issue_server(&["a.example".into()], &[], Duration::from_secs(u64::MAX))
                .unwrap_err()
                .metric_label(),
            "invalid_lifetime"
        );
    }

    #[cfg(unix)]
    #[test]
    fn write_pair_writes_a_private_key() {
        let (dir, ca) = ca();
        let issued = ca.issue_agent("app1.example.eng", &[]).unwrap();
        let out = dir.path().join("agent");
        let (cert, key) = issued.write_pair(&out, "app1").unwrap();
        assert_eq!(cert, out.join("app1.pem"));
        assert_eq!(crate::files::mode_of(&key).unwrap(), 0o600);
        assert_eq!(
            std::fs::read_to_string(key).unwrap(),
            issued.key_pem.expose()
        );
        // Writing again (re-issue) replaces the pair.
        let again = ca.issue_agent("app1.example.eng", &[]).unwrap();
        again.write_pair(&out, "app1").unwrap();
        assert_eq!(std::fs::read_to_string(cert).unwrap(), again.cert_pem);
    }
}
