//! Checks of an existing (third-party) server certificate before steward installs it:
//! the key belongs to the certificate, the certificate is valid now, it names the server
//! (and the load balancer) in its subjectAltName, and it chains to the CAs the
//! installation names. Every failed check is reported, each as its own
//! [`CertificateProblem`] with a stable reason, so that a person sees at once everything
//! that is wrong with a file.
//!
//! Nothing here ever copies key material into a problem or an error.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, RootCertStore};
use time::OffsetDateTime;

use crate::thumbprint::inspect_der;
use crate::tls::{certificates_from_pem, crypto_provider};
use crate::{CertificateInfo, PkiError};

/// The CAs an existing certificate must chain to (`certificateAuthority.certFile`, and
/// `trust`).
#[derive(Clone)]
pub struct TrustAnchors {
    verifier: Arc<WebPkiServerVerifier>,
    subjects: Vec<String>,
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustAnchors")
            .field("subjects", &self.subjects)
            .finish_non_exhaustive()
    }
}

impl TrustAnchors {
    /// Every certificate of every PEM bundle becomes a trust anchor.
    pub fn from_pem<S: AsRef<str>>(bundles: &[S]) -> Result<Self, PkiError> {
        let mut roots = RootCertStore::empty();
        let mut subjects = Vec::new();
        for bundle in bundles {
            for der in certificates_from_pem(bundle.as_ref(), "a CA certificate")? {
                subjects.push(inspect_der(&der)?.subject);
                roots
                    .add(der)
                    .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
            }
        }
        if roots.is_empty() {
            return Err(PkiError::MissingPem {
                what: "CA certificate",
            });
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
                .build()
                .map_err(|e| PkiError::Tls(e.to_string()))?;
        Ok(Self { verifier, subjects })
    }

    /// The anchors' subjects, to name them in messages.
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }
}

/// What the certificate of one server must satisfy.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// Names clients reach the server by: its hostname, and the load balancer's name when
    /// there is one. Each must be covered by the subjectAltName.
    pub names: &'a [String],
    /// When given, the certificate must chain to one of these.
    pub anchors: Option<&'a TrustAnchors>,
    pub now: OffsetDateTime,
}

/// One reason not to install a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateProblem {
    /// The certificate file holds no parsable certificate.
    CertificateInvalid(String),
    /// The key file holds no usable private key.
    KeyInvalid(String),
    /// The key is not the certificate's. `leaf_not_first`: it belongs to another
    /// certificate of the bundle, which must come first.
    KeyMismatch {
        leaf_not_first: bool,
    },
    Expired {
        not_after: OffsetDateTime,
    },
    NotYetValid {
        not_before: OffsetDateTime,
    },
    /// No DNS name or IP address in a subjectAltName (browsers ignore the common name).
    NoSubjectAltName {
        subject: String,
    },
    HostnameNotInSan {
        missing: Vec<String>,
        present: Vec<String>,
    },
    /// Not issued (directly or through the bundle's intermediates) by a trusted CA.
    UntrustedIssuer {
        issuer: String,
        anchors: Vec<String>,
        detail: String,
    },
    /// The certificate may not be used by a TLS server (extendedKeyUsage lacks serverAuth).
    NotForServerAuth,
}

impl CertificateProblem {
    /// The condition reason: stable, CamelCase, bounded.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CertificateInvalid(_) => "CertificateInvalid",
            Self::KeyInvalid(_) => "KeyInvalid",
            Self::KeyMismatch { .. } => "KeyMismatch",
            Self::Expired { .. } => "Expired",
            Self::NotYetValid { .. } => "NotYetValid",
            Self::NoSubjectAltName { .. } => "NoSubjectAltName",
            Self::HostnameNotInSan { .. } => "HostnameNotInSan",
            Self::UntrustedIssuer { .. } => "UntrustedIssuer",
            Self::NotForServerAuth => "NotForServerAuth",
        }
    }
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CertificateInvalid(why) => write!(f, "no usable certificate: {why}"),
            Self::KeyInvalid(why) => write!(f, "no usable private key: {why}"),
            Self::KeyMismatch {
                leaf_not_first: false,
            } => f.write_str("the private key does not belong to the certificate"),
            Self::KeyMismatch {
                leaf_not_first: true,
            } => f.write_str(
                "the private key belongs to a later certificate of the file: the server's own certificate must come first, then its issuers",
            ),
            Self::Expired { not_after } => write!(f, "expired at {}", rfc3339(*not_after)),
            Self::NotYetValid { not_before } => {
                write!(f, "not valid before {}", rfc3339(*not_before))
            }
            Self::NoSubjectAltName { subject } => write!(
                f,
                "{subject} has no subjectAltName with a DNS name; clients ignore the common name"
            ),
            Self::HostnameNotInSan { missing, present } => write!(
                f,
                "{} not among the subjectAltName DNS names [{}]",
                missing.join(", "),
                present.join(", ")
            ),
            Self::UntrustedIssuer {
                issuer,
                anchors,
                detail,
            } => write!(
                f,
                "issued by {issuer}, which does not chain to the trusted CA ({}): {detail}",
                anchors.join("; ")
            ),
            Self::NotForServerAuth => f.write_str(
                "its extendedKeyUsage does not allow TLS server authentication (serverAuth)",
            ),
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Check a PEM chain (leaf first) and its PEM private key against `expect`. On success,
/// the leaf's description; otherwise every problem found, most fundamental first.
pub fn check_server_certificate(
    cert_pem: &str,
    key_pem: &str,
    expect: &Expectations<'_>,
) -> Result<CertificateInfo, Vec<CertificateProblem>> {
    check(cert_pem, Some(key_pem), expect)
}

/// The checks of [`check_server_certificate`] but the key's: for a certificate a server
/// already holds (its agent checked the pair when it was installed), to tell whether it is
/// one that could have been installed.
pub fn check_installed_certificate(
    cert_pem: &str,
    expect: &Expectations<'_>,
) -> Result<CertificateInfo, Vec<CertificateProblem>> {
    check(cert_pem, None, expect)
}

fn check(
    cert_pem: &str,
    key_pem: Option<&str>,
    expect: &Expectations<'_>,
) -> Result<CertificateInfo, Vec<CertificateProblem>> {
    let chain = certificates_from_pem(cert_pem, "the certificate")
        .map_err(|e| vec![CertificateProblem::CertificateInvalid(e.to_string())])?;
    let info = inspect_der(&chain[0])
        .map_err(|e| vec![CertificateProblem::CertificateInvalid(e.to_string())])?;
    let mut problems = Vec::new();

    if let Some(problem) = key_pem.and_then(|key| key_problem(&chain, key)) {
        problems.push(problem);
    }

    if expect.now < info.not_before {
        problems.push(CertificateProblem::NotYetValid {
            not_before: info.not_before,
        });
    } else if expect.now >= info.not_after {
        problems.push(CertificateProblem::Expired {
            not_after: info.not_after,
        });
    }

    if info.dns_names.is_empty() && info.ip_addresses.is_empty() {
        problems.push(CertificateProblem::NoSubjectAltName {
            subject: info.subject.clone(),
        });
    } else {
        let missing: Vec<String> = expect
            .names
            .iter()
            .filter(|name| !covers(&info, name))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let mut present = info.dns_names.clone();
            present.extend(info.ip_addresses.iter().map(IpAddr::to_string));
            problems.push(CertificateProblem::HostnameNotInSan { missing, present });
        }
    }

    if let Some(anchors) = expect.anchors {
        if let Some(problem) = chain_problem(&chain, &info, anchors, expect) {
            problems.push(problem);
        }
    }

    if problems.is_empty() {
        Ok(info)
    } else {
        Err(problems)
    }
}

fn key_problem(chain: &[CertificateDer<'static>], key_pem: &str) -> Option<CertificateProblem> {
    // The parser's error is dropped on purpose: it could quote the input.
    let key = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Some(CertificateProblem::KeyInvalid(
                "no PEM private key found".into(),
            ))
        }
        Err(_) => {
            return Some(CertificateProblem::KeyInvalid(
                "the private key is not valid PEM".into(),
            ))
        }
    };
    let signing_key =
        match crypto_provider().key_provider.load_private_key(key) {
            Ok(k) => k,
            Err(_) => return Some(CertificateProblem::KeyInvalid(
                "unsupported or malformed private key (RSA, ECDSA P-256/P-384 or Ed25519 expected)"
                    .into(),
            )),
        };
    let matches = |cert: &CertificateDer<'static>| {
        let certified = CertifiedKey::new(vec![cert.clone()], signing_key.clone());
        match certified.keys_match() {
            // Unknown: the key cannot tell its public half; the handshake will.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                true
            }
            Err(_) => false,
        }
    };
    if matches(&chain[0]) {
        return None;
    }
    Some(CertificateProblem::KeyMismatch {
        leaf_not_first: chain[1..].iter().any(matches),
    })
}

/// Whether the subjectAltName covers `name`: exact (case-insensitive) or by a wildcard
/// in the left-most label, as RFC 6125 and browsers match.
fn covers(info: &CertificateInfo, name: &str) -> bool {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return info.ip_addresses.contains(&ip);
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    info.dns_names.iter().any(|san| {
        let san = san.trim_end_matches('.').to_ascii_lowercase();
        match san.strip_prefix("*.") {
            Some(parent) => name
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => san == name,
        }
    })
}

fn chain_problem(
    chain: &[CertificateDer<'static>],
    info: &CertificateInfo,
    anchors: &TrustAnchors,
    expect: &Expectations<'_>,
) -> Option<CertificateProblem> {
    // The leaf's own dates and names are checked above; verify the chain at a moment when
    // the leaf is valid so that what is left is about the issuers.
    let latest = info.not_after - time::Duration::seconds(1);
    let at = expect
        .now
        .clamp(info.not_before, latest.max(info.not_before));
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(at.unix_timestamp()).unwrap_or(0),
    ));
    // Any name will do (names are checked above); the leaf's own keeps webpki's name check
    // from failing first.
    let name = info
        .dns_names
        .iter()
        .find(|n| !n.starts_with("*."))
        .cloned()
        .or_else(|| info.ip_addresses.first().map(IpAddr::to_string))
        .or_else(|| expect.names.first().cloned())
        .unwrap_or_else(|| "invalid.invalid".into());
    let server_name = ServerName::try_from(name).ok()?;
    let result = anchors
        .verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], at);
    let detail = match result {
        Ok(_) => return None,
        Err(rustls::Error::InvalidCertificate(e)) => match e {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                return None
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                return Some(CertificateProblem::NotForServerAuth)
            }
            CertificateError::UnknownIssuer => {
                "no trusted CA issued it (and the file holds no intermediate that leads to one)"
                    .to_owned()
            }
            CertificateError::BadSignature => "the issuer's signature does not verify".to_owned(),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "an issuing certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "an issuing certificate is not valid yet".to_owned()
            }
            other => format!("{other:?}"),
        },
        Err(other) => other.to_string(),
    };
    Some(CertificateProblem::UntrustedIssuer {
        issuer: info.issuer.clone(),
        anchors: anchors.subjects.clone(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertificateAuthority;
    use std::time::Duration;

    fn info(names: &[&str]) -> CertificateInfo {
        CertificateInfo {
            subject: "CN=x".into(),
            issuer: "CN=y".into(),
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
            sha1_thumbprint: String::new(),
            dns_names: names.iter().map(|s| (*s).to_owned()).collect(),
            ip_addresses: vec!["127.0.0.2".parse().unwrap()],
            is_ca: false,
        }
    }

    #[test]
    fn names_match_exactly_or_by_one_wildcard_label() {
        let i = info(&["App1.Example.eng", "*.lb.example.eng"]);
        assert!(covers(&i, "app1.example.eng"));
        assert!(covers(&i, "app1.example.eng."));
        assert!(covers(&i, "ps.lb.example.eng"));
        assert!(!covers(&i, "a.b.lb.example.eng"), "one label only");
        assert!(!covers(&i, "lb.example.eng"));
        assert!(!covers(&i, "app2.example.eng"));
        assert!(covers(&i, "127.0.0.2"));
        assert!(!covers(&i, "127.0.0.3"));
    }

    #[test]
    fn a_steward_certificate_passes_and_problems_are_all_listed() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path().join("a")).unwrap();
        let other = CertificateAuthority::init(dir.path().join("b")).unwrap();
        let names = vec!["app1.example.eng".to_owned(), "lb.example.eng".to_owned()];
        let good = ca
            .issue_server(&names, &[], Duration::from_secs(3600))
            .unwrap();
        let anchors = TrustAnchors::from_pem(&[ca.cert_pem()]).unwrap();
        let now = OffsetDateTime::now_utc();
        let expect = Expectations {
            names: &names,
            anchors: Some(&anchors),
            now,
        };
        let ok = check_server_certificate(&good.cert_pem, good.key_pem.expose(), &expect).unwrap();
        assert_eq!(ok.sha1_thumbprint, good.sha1_thumbprint);

        // Wrong host, foreign issuer, other key and expired, all at once.
        let bad = other
            .issue_server(&["app2.example.eng".into()], &[], Duration::from_secs(3600))
            .unwrap();
        let later = Expectations {
            now: now + time::Duration::hours(2),
            ..expect.clone()
        };
        let problems =
            check_server_certificate(&bad.cert_pem, good.key_pem.expose(), &later).unwrap_err();
        let reasons: Vec<&str> = problems.iter().map(CertificateProblem::reason).collect();
        assert_eq!(
            reasons,
            [
                "KeyMismatch",
                "Expired",
                "HostnameNotInSan",
                "UntrustedIssuer"
            ]
        );
        let text: String = problems.iter().map(|p| format!("{p}\n")).collect();
        assert!(
            text.contains("app1.example.eng, lb.example.eng not among"),
            "{text}"
        );
        assert!(!text.contains("PRIVATE"), "{text}");

        // The chain check is about issuers only: an expired leaf from the right CA is
        // "Expired", not also "UntrustedIssuer".
        let problems =
            check_server_certificate(&good.cert_pem, good.key_pem.expose(), &later).unwrap_err();
        assert_eq!(
            problems,
            [CertificateProblem::Expired {
                not_after: good.not_after
            }]
        );

        // Bundle in the wrong order: CA first.
        let reversed = format!("{}{}", ca.cert_pem(), good.cert_pem);
        let problems =
            check_server_certificate(&reversed, good.key_pem.expose(), &expect).unwrap_err();
        assert!(problems.contains(&CertificateProblem::KeyMismatch {
            leaf_not_first: true
        }));

        // Garbage is a problem, not a panic, and never quoted.
        let problems =
            check_server_certificate(&good.cert_pem, "secret-ish junk", &expect).unwrap_err();
        assert_eq!(problems[0].reason(), "KeyInvalid");
        assert!(!problems[0].to_string().contains("junk"));
        let problems = check_server_certificate("junk", "junk", &expect).unwrap_err();
        assert_eq!(problems[0].reason(), "CertificateInvalid");
    }

    #[test]
    fn an_installed_certificate_is_checked_without_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path().join("a")).unwrap();
        let other = CertificateAuthority::init(dir.path().join("b")).unwrap();
        let names = vec!["app1.example.eng".to_owned()];
        let anchors = TrustAnchors::from_pem(&[ca.cert_pem()]).unwrap();
        let expect = Expectations {
            names: &names,
            anchors: Some(&anchors),
            now: OffsetDateTime::now_utc(),
        };
        let ours = ca
            .issue_server(&names, &[], Duration::from_secs(3600))
            .unwrap();
        let info = check_installed_certificate(&ours.cert_pem, &expect).unwrap();
        assert_eq!(info.sha1_thumbprint, ours.sha1_thumbprint);
        let theirs = other
            .issue_server(&names, &[], Duration::from_secs(3600))
            .unwrap();
        let problems = check_installed_certificate(&theirs.cert_pem, &expect).unwrap_err();
        let reasons: Vec<&str> = problems.iter().map(CertificateProblem::reason).collect();
        assert_eq!(reasons, ["UntrustedIssuer"]);
    }

    #[test]
    fn a_client_certificate_is_not_for_servers() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path()).unwrap();
        let client = ca.issue_client("app1.example.eng").unwrap();
        let anchors = TrustAnchors::from_pem(&[ca.cert_pem()]).unwrap();
        let names = Vec::new();
        let expect = Expectations {
            names: &names,
            anchors: Some(&anchors),
            now: OffsetDateTime::now_utc(),
        };
        let problems = check_server_certificate(&client.cert_pem, client.key_pem.expose(), &expect)
            .unwrap_err();
        let reasons: Vec<&str> = problems.iter().map(CertificateProblem::reason).collect();
        assert_eq!(reasons, ["NoSubjectAltName", "NotForServerAuth"]);
    }
}
