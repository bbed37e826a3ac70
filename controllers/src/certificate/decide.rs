//! What the server should hold, compared with what it holds: the certificate controller's
//! decision, made before anything is issued or sent.

use steward_agent::api::CertificateStatus;
use steward_model::plan::subject_alt_names;
use steward_model::resource::{CaMode, Mode};
use steward_model::snapshot::{CertificateSource, Server};
use steward_pki::PrivateKeyPem;
use time::OffsetDateTime;

use super::adopt::adoptable;
use super::existing;
use super::renewal_time;
use crate::config::Desired;
use crate::context::Context;

/// A certificate and key ready to install, checked.
pub(super) struct Material {
    pub cert_pem: String,
    pub key_pem: PrivateKeyPem,
    pub thumbprint: String,
    pub sans: Vec<String>,
}

/// Why the desired certificate cannot be produced; a Stalled condition, not an error:
/// retrying will not help until someone changes a file.
pub(super) struct Unavailable {
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// The server has only its agent's bootstrap certificate or none.
    Initial,
    /// Someone put another certificate there after steward's.
    Replaced,
    /// The agent no longer holds the one steward installed (its files were deleted).
    Missing,
    /// The desired certificate changed (new files, new names).
    Changed,
    Renewal,
}

impl Why {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Self::Initial => "the server has no certificate from the desired state yet",
            Self::Replaced => "the server's certificate was replaced",
            Self::Missing => "the certificate steward installed is gone from the server",
            Self::Changed => "the desired certificate changed",
            Self::Renewal => "renewal: its renewal point (renewBefore ahead of expiry) has come",
        }
    }
}

pub(super) enum Decision {
    /// The server holds what is asked for.
    InPlace,
    /// Something would be installed, but this is monitor mode: report it only. Nothing
    /// is issued for it.
    Drift(Why),
    Install {
        material: Material,
        why: Why,
    },
}

pub(super) fn decide(
    ctx: &Context,
    desired: &Desired,
    server: &Server,
    current: Option<&CertificateStatus>,
) -> Result<Decision, Unavailable> {
    let installation = &desired.snapshot.installation;
    let monitor = installation.mode == Mode::Monitor;
    let names = subject_alt_names(
        server,
        installation
            .load_balancer
            .as_ref()
            .map(|lb| lb.fqdn.as_str()),
    );
    let source = match &server.certificate {
        CertificateSource::Generate => return generated(ctx, desired, server, current, names),
        CertificateSource::Pem {
            cert_file,
            key_file,
        } => existing::Source::Pem {
            cert: cert_file,
            key: key_file,
        },
        CertificateSource::Pfx {
            pfx_file,
            password_ref,
        } => existing::Source::Pfx {
            pfx: pfx_file,
            password: password_ref,
        },
    };
    let steward_ca = ctx.config.ca.as_ref().map(|ca| ca.cert_pem());
    let material = existing::load(
        &desired.dir,
        &source,
        &names,
        &installation.certificate_authority,
        steward_ca,
    )?;
    if current.is_some_and(|c| c.thumbprint.eq_ignore_ascii_case(&material.thumbprint)) {
        return Ok(Decision::InPlace);
    }
    let why = match (ctx.issued.get(&server.name), current) {
        (Some(_), None) => Why::Missing,
        (Some(memo), Some(_)) if memo.thumbprint == material.thumbprint => Why::Replaced,
        (Some(_), Some(_)) => Why::Changed,
        (None, _) => Why::Initial,
    };
    Ok(if monitor {
        Decision::Drift(why)
    } else {
        Decision::Install { material, why }
    })
}

fn generated(
    ctx: &Context,
    desired: &Desired,
    server: &Server,
    current: Option<&CertificateStatus>,
    sans: Vec<String>,
) -> Result<Decision, Unavailable> {
    let installation = &desired.snapshot.installation;
    let settings = &installation.certificate_authority;
    // Validation refuses `generate` with an existing CA; this is the controller's own
    // guarantee that it never issues in that mode.
    let ca = match (&ctx.config.ca, settings.mode) {
        (Some(ca), CaMode::Generated) => ca,
        (_, CaMode::Existing) => {
            return Err(Unavailable {
                reason: "NoCertificateAuthority",
                message: "certificateAuthority.mode is existing: steward issues no certificates; give this server certFile + keyFile or pfxFile".into(),
            })
        }
        (None, CaMode::Generated) => {
            return Err(Unavailable {
                reason: "NoCertificateAuthority",
                message: "certificate.generate needs the steward CA, and this daemon has none"
                    .into(),
            })
        }
    };
    let mut memo = ctx.issued.get(&server.name);
    if let Some(current) = current {
        let remembered = memo
            .as_ref()
            .is_some_and(|m| m.thumbprint.eq_ignore_ascii_case(&current.thumbprint));
        let adopted = (!remembered)
            .then(|| adoptable(ca, settings, current, &sans, OffsetDateTime::now_utc()))
            .flatten();
        if let Some(adopted) = adopted {
            tracing::info!(
                "{}: keeping certificate {} already installed there (issued by this CA for {}; another daemon issued it)",
                server.name,
                adopted.thumbprint,
                sans.join(", ")
            );
            ctx.issued.set(&server.name, adopted.clone());
            memo = Some(adopted);
        }
    }
    let why = match (&memo, current) {
        (Some(memo), Some(current))
            if memo.thumbprint.eq_ignore_ascii_case(&current.thumbprint) =>
        {
            if memo.sans != sans {
                Why::Changed
            } else if OffsetDateTime::now_utc() >= renewal_time(current.not_after, settings) {
                Why::Renewal
            } else {
                return Ok(Decision::InPlace);
            }
        }
        (Some(_), Some(_)) => Why::Replaced,
        (Some(_), None) => Why::Missing,
        (None, _) => Why::Initial,
    };
    if installation.mode == Mode::Monitor {
        // Nothing to compare with (no record of what steward issued): what is there is
        // taken as it is.
        return Ok(match memo {
            None => Decision::InPlace,
            Some(_) => Decision::Drift(why),
        });
    }
    let issued = ca
        .issue_server(&sans, &[], settings.duration)
        .map_err(|e| Unavailable {
            reason: "IssueFailed",
            message: format!("the steward CA cannot issue for {}: {e}", sans.join(", ")),
        })?;
    Ok(Decision::Install {
        material: Material {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            thumbprint: issued.sha1_thumbprint,
            sans,
        },
        why,
    })
}
