//! Taking over a certificate another steward daemon of the same installation issued.
//!
//! Each daemon's memo ([`super::memo`]) is its own: after an HA takeover, or on a daemon
//! restored from a backup older than the last issue, the memo does not name what the
//! server holds. Rather than issue that server a fresh certificate once, the certificate
//! controller keeps the one there when steward itself would have issued exactly it: the
//! agent reports the installed chain, and it is adopted only when
//! * it chains to this daemon's CA (the signature is verified: only a holder of the CA
//!   key, i.e. a steward daemon sharing it, can have made it);
//! * its subjectAltName holds exactly the names this server's certificate is to have (a
//!   certificate with a name too many or too few is changed as it would be anyway);
//! * its lifetime is `certificateAuthority.duration` (what steward issues with; the
//!   agents' own bootstrap certificates last a year, so with any other duration they are
//!   never mistaken for one);
//! * it is valid now and before its renewal point (one due for renewal is renewed, as
//!   it would be anyway).
//!
//! Adopting writes the memo, so the decision is made once per certificate.

use std::collections::BTreeSet;

use steward_agent::api::CertificateStatus;
use steward_model::snapshot::CertificateAuthority as CaSettings;
use steward_pki::{check_installed_certificate, CertificateAuthority, Expectations, TrustAnchors};
use time::OffsetDateTime;

use super::memo::IssuedMemo;
use super::renewal_time;

/// How much longer than `duration` an issued certificate's validity may be: the CA dates
/// `notBefore` a few minutes back against clock skew.
const BACKDATE_ALLOWANCE: time::Duration = time::Duration::hours(1);

/// The memo to keep for `current` when it is a certificate steward would have issued
/// this server now (see the module's rules), else `None`.
pub(super) fn adoptable(
    ca: &CertificateAuthority,
    settings: &CaSettings,
    current: &CertificateStatus,
    sans: &[String],
    now: OffsetDateTime,
) -> Option<IssuedMemo> {
    let pem = current.cert_pem.as_deref()?;
    let anchors = TrustAnchors::from_pem(&[ca.cert_pem()]).ok()?;
    let expect = Expectations {
        names: sans,
        anchors: Some(&anchors),
        now,
    };
    let info = check_installed_certificate(pem, &expect)
        .ok()
        .filter(|info| {
            info.sha1_thumbprint
                .eq_ignore_ascii_case(&current.thumbprint)
        })?;
    let held: BTreeSet<String> = info
        .dns_names
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .chain(info.ip_addresses.iter().map(ToString::to_string))
        .collect();
    let wanted: BTreeSet<String> = sans.iter().map(|n| n.to_ascii_lowercase()).collect();
    let duration = time::Duration::try_from(settings.duration).ok()?;
    let lifetime = info.not_after - info.not_before;
    let issued_like_steward = lifetime >= duration && lifetime <= duration + BACKDATE_ALLOWANCE;
    (held == wanted && issued_like_steward && now < renewal_time(info.not_after, settings)).then(
        || IssuedMemo {
            thumbprint: info.sha1_thumbprint,
            sans: sans.to_vec(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(duration: Duration) -> CaSettings {
        CaSettings {
            mode: steward_model::resource::CaMode::Generated,
            cert_file: None,
            trust: Vec::new(),
            duration,
            renew_before: CaSettings::default_renew_before(duration),
        }
    }

    fn status(pem: &str) -> CertificateStatus {
        let info = steward_pki::inspect_pem(pem).unwrap();
        CertificateStatus {
            thumbprint: info.sha1_thumbprint,
            not_after: info.not_after,
            subject: info.subject,
            cert_pem: Some(pem.to_owned()),
            reloaded: Vec::new(),
        }
    }

    #[test]
    fn only_a_certificate_steward_would_issue_now_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path().join("ca")).unwrap();
        let other = CertificateAuthority::init(dir.path().join("other")).unwrap();
        let day = Duration::from_secs(86_400);
        let s = settings(90 * day);
        let sans = vec!["app1.example.eng".to_owned(), "lb.example.eng".to_owned()];
        let now = OffsetDateTime::now_utc();
        let ours = ca.issue_server(&sans, &[], 90 * day).unwrap();
        let memo = adoptable(&ca, &s, &status(&ours.cert_pem), &sans, now).unwrap();
        assert_eq!(memo.thumbprint, ours.sha1_thumbprint);
        assert_eq!(memo.sans, sans);

        let refused = |pem: &str, sans: &[String], now: OffsetDateTime| {
            adoptable(&ca, &s, &status(pem), sans, now).is_none()
        };
        // Another CA's, however right otherwise.
        let foreign = other.issue_server(&sans, &[], 90 * day).unwrap();
        assert!(refused(&foreign.cert_pem, &sans, now));
        // A name missing, or one too many.
        let fewer = ca.issue_server(&sans[..1], &[], 90 * day).unwrap();
        assert!(refused(&fewer.cert_pem, &sans, now));
        assert!(refused(&ours.cert_pem, &sans[..1], now));
        // Another lifetime: an agent's one-year bootstrap certificate.
        let bootstrap = ca.issue_agent("app1.example.eng", &[]).unwrap();
        assert!(refused(&bootstrap.cert_pem, &sans[..1], now));
        // Past its renewal point (two thirds of 90 days).
        assert!(refused(&ours.cert_pem, &sans, now + 61 * day));
        // The agent did not say what it holds.
        let mut bare = status(&ours.cert_pem);
        bare.cert_pem = None;
        assert!(adoptable(&ca, &s, &bare, &sans, now).is_none());
    }
}
