use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::files::{write_new_private_file, write_new_public_file};
use crate::PkiError;

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";

const CA_LIFETIME: Duration = Duration::days(10 * 365);
const CA_COMMON_NAME: &str = "Steward CA";

/// The key type for keys the CA generates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// Accepted by every Windows version PatientSecure supports, and fast.
    #[default]
    EcdsaP256,
    EcdsaP384,
}

impl KeyAlgorithm {
    pub(crate) fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    pub(crate) fn generate(self) -> Result<KeyPair, PkiError> {
        Ok(KeyPair::generate_for(self.rcgen())?)
    }
}

/// The steward CA: `ca.pem` and `ca.key` in one directory.
pub struct CertificateAuthority {
    dir: PathBuf,
    cert_pem: String,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) leaf_algorithm: KeyAlgorithm,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("dir", &self.dir)
            .field("leaf_algorithm", &self.leaf_algorithm)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Create a new CA in `dir` (created if missing). Refuses to touch an existing CA:
    /// replacing it would silently orphan every certificate it issued.
    pub fn init(dir: impl AsRef<Path>) -> Result<Self, PkiError> {
        Self::init_with(dir, KeyAlgorithm::default())
    }

    pub fn init_with(dir: impl AsRef<Path>, algorithm: KeyAlgorithm) -> Result<Self, PkiError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| PkiError::io(dir, e))?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        for path in [&cert_path, &key_path] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(PkiError::AlreadyExists(path.clone()));
            }
        }

        let key = algorithm.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        // A per-CA suffix: two steward CAs with one name would be confused by verifiers
        // (chain building picks the issuer by name) and by people looking at a cert store.
        let suffix = &crate::thumbprint_sha1(key.public_key_raw())[..8];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{CA_COMMON_NAME} {suffix}"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Steward");
        // Path length 0: the CA signs leaves only, never an intermediate.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc());
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_LIFETIME;
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();

        // The key goes first: if anything fails after it, `init` keeps refusing (no
        // half-CA is silently completed with a different key).
        let key_pem = Zeroizing::new(key.serialize_pem());
        write_new_private_file(&key_path, key_pem.as_bytes())?;
        write_new_public_file(&cert_path, cert_pem.as_bytes())?;

        Ok(Self {
            dir: dir.to_path_buf(),
            cert_pem,
            issuer: Issuer::new(params, key),
            leaf_algorithm: algorithm,
        })
    }

    /// Load the CA from `dir`. Refuses a key file that group or others can read.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, PkiError> {
        let dir = dir.as_ref();
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = fs::read_to_string(&cert_path).map_err(|e| PkiError::io(&cert_path, e))?;
        #[cfg(unix)]
        {
            let mode = crate::files::mode_of(&key_path)?;
            if mode & 0o077 != 0 {
                return Err(PkiError::InsecureKeyFile {
                    path: key_path,
                    mode,
                });
            }
        }
        let key_pem =
            Zeroizing::new(fs::read_to_string(&key_path).map_err(|e| PkiError::io(&key_path, e))?);
        let key = KeyPair::from_pem(&key_pem).map_err(|_| PkiError::InvalidPem {
            what: "the CA private key",
        })?;

        let cert_der = crate::tls::certificates_from_pem(&cert_pem, "the CA certificate")?
            .into_iter()
            .next()
            .ok_or(PkiError::MissingPem {
                what: "CA certificate",
            })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch);
        }
        let leaf_algorithm = if key.algorithm() == &rcgen::PKCS_ECDSA_P384_SHA384 {
            KeyAlgorithm::EcdsaP384
        } else {
            KeyAlgorithm::EcdsaP256
        };
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cert_pem,
            issuer,
            leaf_algorithm,
        })
    }

    /// The CA certificate, to hand to every party that verifies steward-issued certificates.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// Generate leaf keys with another algorithm from now on.
    pub fn with_leaf_algorithm(mut self, algorithm: KeyAlgorithm) -> Self {
        self.leaf_algorithm = algorithm;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_load_gives_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path()).unwrap();
        let loaded = CertificateAuthority::load(dir.path()).unwrap();
        assert_eq!(ca.cert_pem(), loaded.cert_pem());
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        // A certificate issued by the loaded CA names the original CA as issuer.
        let info = crate::inspect_pem(ca.cert_pem()).unwrap();
        assert!(
            info.subject.starts_with("CN=Steward CA "),
            "{}",
            info.subject
        );
        assert!(info.subject.ends_with(", O=Steward"), "{}", info.subject);
        assert!(info.is_ca);
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::init(dir.path()).unwrap();
        assert_eq!(
            crate::files::mode_of(&dir.path().join(CA_KEY_FILE)).unwrap(),
            0o600
        );
    }

    #[test]
    fn init_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path()).unwrap();
        let err = CertificateAuthority::init(dir.path()).unwrap_err();
        assert!(matches!(err, PkiError::AlreadyExists(_)), "{err}");
        assert_eq!(err.metric_label(), "already_exists");
        assert_eq!(
            fs::read_to_string(dir.path().join(CA_CERT_FILE)).unwrap(),
            ca.cert_pem()
        );

        // A lone key (e.g. a half-finished earlier init) also blocks a new CA.
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join(CA_KEY_FILE), "x").unwrap();
        assert!(matches!(
            CertificateAuthority::init(other.path()),
            Err(PkiError::AlreadyExists(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn load_refuses_a_readable_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::init(dir.path()).unwrap();
        let key = dir.path().join(CA_KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = CertificateAuthority::load(dir.path()).unwrap_err();
        assert_eq!(err.metric_label(), "insecure_key_file");
    }

    #[test]
    fn load_rejects_a_key_from_another_ca() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        CertificateAuthority::init(a.path()).unwrap();
        CertificateAuthority::init(b.path()).unwrap();
        fs::copy(b.path().join(CA_KEY_FILE), a.path().join(CA_KEY_FILE)).unwrap();
        let err = CertificateAuthority::load(a.path()).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch), "{err}");
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path()).unwrap();
        let debug = format!("{ca:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
    }
}
