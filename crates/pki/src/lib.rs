//! The steward certificate authority.
//!
//! Steward generates its own CA for test environments (`certificateAuthority.mode:
//! generated`): it signs the agents' server certificates, the daemon's client certificate
//! for mutual TLS to the agents, and the PatientSecure servers' TLS certificates. This
//! crate also builds the rustls configurations both ends of that mutual TLS use, always
//! with the ring provider so nothing depends on a process-wide default.

mod authority;
mod error;
mod files;
mod issue;
mod pkcs12;
mod thumbprint;
mod tls;
mod verify;

pub use authority::{CertificateAuthority, KeyAlgorithm, CA_CERT_FILE, CA_KEY_FILE};
pub use error::PkiError;
pub use files::{replace_private_file, temporary_beside, write_new_private_file};
pub use issue::{IssuedCertificate, PrivateKeyPem};
pub use pkcs12::{read_pfx, PfxContents, PfxError};
pub use thumbprint::{inspect_pem, not_after_pem, thumbprint_sha1, CertificateInfo};
pub use tls::{
    client_config, crypto_provider, mtls_client_config, mtls_server_config, server_config,
    verify_key_pair,
};
pub use verify::{
    check_installed_certificate, check_server_certificate, CertificateProblem, Expectations,
    TrustAnchors,
};
