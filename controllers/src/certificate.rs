//! The certificate controller (key: server name), minimal for now: make the server hold
//! the TLS certificate the desired state asks for, before any service is installed there.
//!
//! * `generate: true`: issued by the steward CA for the hostname (and the load balancer's
//!   name), renewed when a third of its lifetime is left. Which certificate steward put
//!   there is remembered in memory only, so after a daemon restart each server gets one
//!   fresh certificate (harmless: services reload it).
//! * `certFile` + `keyFile`: read from the desired-state directory, checked (the key must
//!   belong to the certificate), installed when the server has another one.
//! * `pfxFile`: not supported yet (no PKCS#12 reader in the workspace): a Stalled condition.
//!
//! Errors name files, never their content.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use steward_agent::api::CertificateStatus;
use steward_agent::ClientError;
use steward_model::plan::subject_alt_names;
use steward_model::resource::Mode;
use steward_model::snapshot::{CertificateSource, Server};
use steward_pki::{PkiError, PrivateKeyPem};
use steward_runtime::{Action, Reason, ReconcileError};
use time::OffsetDateTime;

use crate::agent::{failure_label, failure_reason};
use crate::config::Desired;
use crate::context::Context;
use crate::drift::DriftKind;
use crate::status::{EventType, Phase};
use crate::store::IssuedMemo;

pub(crate) const CONTROLLER: &str = "certificate";

/// How often a certificate that cannot be produced (missing file, no CA) is retried: the
/// fix is a commit, which triggers a run anyway.
const STALLED_RETRY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub(crate) enum CertificateError {
    #[error("agent of {server}: {source}")]
    Agent {
        server: String,
        #[source]
        source: ClientError,
    },
}

impl ReconcileError for CertificateError {
    fn metric_label(&self) -> &'static str {
        match self {
            Self::Agent { source, .. } => failure_label(source),
        }
    }
}

/// A certificate and key ready to install.
struct Material {
    cert_pem: String,
    key_pem: PrivateKeyPem,
    thumbprint: String,
    sans: Vec<String>,
}

/// Why the desired certificate cannot be produced; a Stalled condition, not an error:
/// retrying will not help until someone changes a file.
struct Unavailable {
    reason: &'static str,
    message: String,
}

pub(crate) async fn reconcile(
    name: String,
    _reason: Reason,
    ctx: Arc<Context>,
) -> Result<Action, CertificateError> {
    let _timer = ctx.metrics.reconcile_timer(CONTROLLER);
    let Some(desired) = ctx.desired() else {
        return Ok(Action::await_change());
    };
    let Some((server, true)) = ctx.server(&desired, &name) else {
        // Undeclared: its services go; its certificate is nobody's business any more.
        return Ok(Action::await_change());
    };
    let generation = desired.generation;
    let agent_error = |source: ClientError| {
        let reason = failure_reason(&source);
        let message = format!("cannot reach the agent: {source}");
        set(&ctx, &name, generation, Phase::Degraded, reason, message);
        CertificateError::Agent {
            server: name.clone(),
            source,
        }
    };
    let agent = ctx.agents.get(&server).map_err(agent_error)?;
    let current = agent.certificate().await.map_err(agent_error)?;
    if let Some(current) = &current {
        observe(&ctx, &name, current);
    }

    let monitor = desired.snapshot.installation.mode == Mode::Monitor;
    let (wanted, why) = match wanted(&ctx, &desired, &server, current.as_ref()) {
        Ok(Wanted::InPlace) => {
            let message = match &current {
                Some(c) => format!(
                    "{} (thumbprint {}, expires {})",
                    c.subject,
                    c.thumbprint,
                    c.not_after.date()
                ),
                None => "in place".to_owned(),
            };
            ctx.store.with_server(&name, |r| {
                r.cert.ready = true;
                r.cert.drift = false;
            });
            set(
                &ctx,
                &name,
                generation,
                Phase::Ready,
                "CertificateInstalled",
                message,
            );
            return Ok(Action::requeue(ctx.config.resync));
        }
        Ok(Wanted::Install { material, why }) => (material, why),
        Err(unavailable) => {
            ctx.store.with_server(&name, |r| r.cert.ready = false);
            set(
                &ctx,
                &name,
                generation,
                Phase::Stalled,
                unavailable.reason,
                unavailable.message,
            );
            return Ok(Action::requeue(STALLED_RETRY));
        }
    };

    let drift = why == Why::Replaced;
    if monitor {
        // Services stay gated only on what steward would do; in monitor mode it does nothing.
        let newly = ctx
            .store
            .with_server(&name, |r| {
                r.cert.ready = current.is_some();
                !std::mem::replace(&mut r.cert.drift, true)
            })
            .unwrap_or(false);
        if newly && drift {
            ctx.metrics.drift_detected(DriftKind::Certificate);
        }
        set(
            &ctx,
            &name,
            generation,
            Phase::Degraded,
            "CertificateDrift",
            format!("{} (monitor mode: not corrected)", why.describe()),
        );
        return Ok(Action::requeue(ctx.config.resync));
    }

    let installed = agent
        .install_certificate(&wanted.cert_pem, &wanted.key_pem)
        .await
        .map_err(agent_error)?;
    if drift {
        ctx.metrics.drift_detected(DriftKind::Certificate);
        ctx.metrics.drift_corrected(DriftKind::Certificate);
    }
    tracing::info!(
        "{name}: installed certificate {} for {} ({}; expires {})",
        installed.thumbprint,
        wanted.sans.join(", "),
        why.describe(),
        installed.not_after.date()
    );
    ctx.store.event(
        format!("certificate/{name}"),
        if drift {
            EventType::Warning
        } else {
            EventType::Normal
        },
        "CertificateInstalled",
        &format!(
            "thumbprint {} ({}); {} services reloaded",
            installed.thumbprint,
            why.describe(),
            installed.reloaded.len()
        ),
    );
    observe(&ctx, &name, &installed);
    let was_ready = ctx
        .store
        .with_server(&name, |r| {
            r.cert.issued = Some(IssuedMemo {
                thumbprint: wanted.thumbprint.clone(),
                sans: wanted.sans.clone(),
            });
            r.cert.drift = false;
            std::mem::replace(&mut r.cert.ready, true)
        })
        .unwrap_or(true);
    set(
        &ctx,
        &name,
        generation,
        Phase::Ready,
        "CertificateInstalled",
        format!(
            "{} (thumbprint {}, expires {})",
            installed.subject,
            installed.thumbprint,
            installed.not_after.date()
        ),
    );
    if !was_ready {
        for key in ctx.store.service_keys_on(&name) {
            ctx.trigger_service(key, Reason::ObservedChanged);
        }
    }
    // Read back next time rather than trusting the answer.
    Ok(Action::requeue(ctx.short()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The server has only its agent's bootstrap certificate or none.
    Initial,
    /// Someone put another certificate there after steward's.
    Replaced,
    /// The desired certificate changed (new files, new names).
    Changed,
    Renewal,
}

impl Why {
    fn describe(self) -> &'static str {
        match self {
            Self::Initial => "the server has no certificate from the desired state yet",
            Self::Replaced => "the server's certificate was replaced",
            Self::Changed => "the desired certificate changed",
            Self::Renewal => "renewal: less than a third of its lifetime left",
        }
    }
}

enum Wanted {
    InPlace,
    Install { material: Material, why: Why },
}

fn wanted(
    ctx: &Context,
    desired: &Desired,
    server: &Server,
    current: Option<&CertificateStatus>,
) -> Result<Wanted, Unavailable> {
    match &server.certificate {
        CertificateSource::Generate => generated(ctx, desired, server, current),
        CertificateSource::Pem {
            cert_file,
            key_file,
        } => {
            let material = from_files(&desired.dir, cert_file, key_file)?;
            if current.is_some_and(|c| c.thumbprint.eq_ignore_ascii_case(&material.thumbprint)) {
                return Ok(Wanted::InPlace);
            }
            let ours_before = ctx
                .store
                .with_server(&server.name, |r| r.cert.issued.clone())
                .flatten();
            let why = match ours_before {
                Some(memo) if memo.thumbprint == material.thumbprint => Why::Replaced,
                Some(_) => Why::Changed,
                None => Why::Initial,
            };
            Ok(Wanted::Install { material, why })
        }
        CertificateSource::Pfx { pfx_file, .. } => Err(Unavailable {
            reason: "PfxUnsupported",
            message: format!(
                "{}: PKCS#12 (pfxFile) certificates are not supported yet; convert it to certFile + keyFile (openssl pkcs12 -nodes)",
                pfx_file.display()
            ),
        }),
    }
}

fn generated(
    ctx: &Context,
    desired: &Desired,
    server: &Server,
    current: Option<&CertificateStatus>,
) -> Result<Wanted, Unavailable> {
    let Some(ca) = &ctx.config.ca else {
        return Err(Unavailable {
            reason: "NoCertificateAuthority",
            message:
                "certificate.generate needs the steward CA (certificateAuthority.mode: generated)"
                    .into(),
        });
    };
    let sans = subject_alt_names(
        server,
        desired.snapshot.installation.load_balancer.as_deref(),
    );
    let memo = ctx
        .store
        .with_server(&server.name, |r| r.cert.issued.clone())
        .flatten();
    let lifetime = ctx.config.certificate_lifetime;
    let renew_before = time::Duration::try_from(lifetime / 3).unwrap_or(time::Duration::ZERO);
    let why = match (&memo, current) {
        (Some(memo), Some(current))
            if memo.thumbprint.eq_ignore_ascii_case(&current.thumbprint) =>
        {
            if memo.sans != sans {
                Why::Changed
            } else if current.not_after - OffsetDateTime::now_utc() < renew_before {
                Why::Renewal
            } else {
                return Ok(Wanted::InPlace);
            }
        }
        (Some(_), Some(_)) => Why::Replaced,
        _ => Why::Initial,
    };
    // In monitor mode nothing is installed, so nothing need be issued either; a
    // placeholder keeps the decision without creating a key.
    if desired.snapshot.installation.mode == Mode::Monitor {
        if memo.is_none() {
            // Nothing to compare with (fresh daemon): what is there is taken as it is.
            return Ok(Wanted::InPlace);
        }
        return Ok(Wanted::Install {
            material: Material {
                cert_pem: String::new(),
                key_pem: PrivateKeyPem::new(String::new()),
                thumbprint: String::new(),
                sans,
            },
            why,
        });
    }
    let issued = ca
        .issue_server(&sans, &[], lifetime)
        .map_err(|e| Unavailable {
            reason: "IssueFailed",
            message: format!("the steward CA cannot issue for {}: {e}", sans.join(", ")),
        })?;
    Ok(Wanted::Install {
        material: Material {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            thumbprint: issued.sha1_thumbprint,
            sans,
        },
        why,
    })
}

fn from_files(dir: &Path, cert_file: &Path, key_file: &Path) -> Result<Material, Unavailable> {
    let read = |file: &Path| -> Result<String, Unavailable> {
        let path: PathBuf = if file.is_absolute() {
            file.to_path_buf()
        } else {
            dir.join(file)
        };
        std::fs::read_to_string(&path).map_err(|e| Unavailable {
            reason: "CertificateFileUnreadable",
            message: format!("{}: {}", file.display(), e.kind()),
        })
    };
    let cert_pem = read(cert_file)?;
    let key_pem = PrivateKeyPem::new(read(key_file)?);
    let info = steward_pki::verify_key_pair(&cert_pem, key_pem.expose()).map_err(|e| {
        let reason = match e {
            PkiError::KeyMismatch => "CertificateKeyMismatch",
            _ => "CertificateInvalid",
        };
        Unavailable {
            reason,
            message: format!("{} / {}: {e}", cert_file.display(), key_file.display()),
        }
    })?;
    if info.not_after <= OffsetDateTime::now_utc() {
        return Err(Unavailable {
            reason: "CertificateExpired",
            message: format!(
                "{} expired on {}",
                cert_file.display(),
                info.not_after.date()
            ),
        });
    }
    Ok(Material {
        cert_pem,
        key_pem,
        thumbprint: info.sha1_thumbprint,
        sans: info.dns_names,
    })
}

/// Record what the server holds (status and expiry metric).
fn observe(ctx: &Context, name: &str, current: &CertificateStatus) {
    ctx.store.with_server(name, |r| {
        r.cert.thumbprint = Some(current.thumbprint.to_ascii_uppercase());
        r.cert.not_after = Some(current.not_after);
        r.cert.subject = Some(current.subject.clone());
    });
    ctx.metrics
        .certificate_expiry(name, current.not_after.unix_timestamp());
}

fn set(ctx: &Context, name: &str, generation: u64, phase: Phase, reason: &str, message: String) {
    ctx.store.with_server(name, |r| {
        r.cert.observed_generation = Some(generation);
        r.cert.conditions.set(phase, reason, message);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{fixture, fixture_with, headline};

    fn cert_reason(fx: &crate::fakes::Fixture) -> String {
        headline(&fx.ctx.store.status().servers[0].certificate.conditions)
    }

    #[tokio::test]
    async fn generated_certificate_is_issued_once_and_renewed_when_old() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
        assert!(!fx.ctx.store.cert_ready("app1"));
        let action = reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(fx.ctx.short()));
        let agent = fx.agent("app1");
        assert_eq!(agent.calls("install_certificate"), 1);
        assert!(fx.ctx.store.cert_ready("app1"));
        let installed = agent.state().certificate.clone().unwrap();
        assert_eq!(installed.subject, "CN=app1.example.eng");
        let status = fx.ctx.store.status();
        assert_eq!(
            status.servers[0].certificate.thumbprint.as_deref(),
            Some(installed.thumbprint.as_str())
        );
        assert_eq!(
            fx.gauge(
                "steward_certificate_expiry_timestamp_seconds",
                &[("server", "app1")]
            ),
            installed.not_after.unix_timestamp() as f64
        );

        // Read back: in place, nothing installed.
        reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(agent.calls("install_certificate"), 1);
        assert_eq!(cert_reason(&fx), "CertificateInstalled");

        // Close to expiry: renewed.
        agent.state().certificate.as_mut().unwrap().not_after =
            OffsetDateTime::now_utc() + time::Duration::hours(1);
        reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(agent.calls("install_certificate"), 2);

        // Replaced behind steward's back: drift, corrected.
        agent.state().certificate.as_mut().unwrap().thumbprint = "0".repeat(40);
        reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(agent.calls("install_certificate"), 3);
        assert_eq!(
            fx.counter("steward_drift_corrected_total", &[("kind", "certificate")]),
            1.0
        );
    }

    #[tokio::test]
    async fn pem_files_are_checked_before_install_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = tempfile::tempdir().unwrap();
        let ca = steward_pki::CertificateAuthority::init(ca_dir.path()).unwrap();
        let a = ca
            .issue_server(
                &["app1.example.eng".into()],
                &[],
                Duration::from_secs(86400),
            )
            .unwrap();
        let b = ca
            .issue_server(
                &["app1.example.eng".into()],
                &[],
                Duration::from_secs(86400),
            )
            .unwrap();
        std::fs::write(dir.path().join("app1.pem"), &a.cert_pem).unwrap();
        std::fs::write(dir.path().join("app1.key"), b.key_pem.expose()).unwrap();
        let cert = "certificate: {certFile: app1.pem, keyFile: app1.key}";
        let fx = fixture_with(&[("app1", &["PSIS", "PSWS"])], cert, dir.path());

        reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(cert_reason(&fx), "CertificateKeyMismatch");
        assert!(!fx.ctx.store.cert_ready("app1"));
        let text = serde_json::to_string(&fx.ctx.store.status()).unwrap();
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("BEGIN"),
            "{text}"
        );

        std::fs::write(dir.path().join("app1.key"), a.key_pem.expose()).unwrap();
        reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
            .await
            .unwrap();
        let agent = fx.agent("app1");
        assert_eq!(
            agent.state().certificate.as_ref().unwrap().thumbprint,
            a.sha1_thumbprint
        );
        assert!(fx.ctx.store.cert_ready("app1"));
        reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(
            agent.calls("install_certificate"),
            1,
            "same thumbprint: left alone"
        );

        std::fs::remove_file(dir.path().join("app1.pem")).unwrap();
        reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(cert_reason(&fx), "CertificateFileUnreadable");
    }

    #[tokio::test]
    async fn agent_errors_are_conditions_and_errors() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
        fx.agent("app1")
            .fail_next("certificate", ClientError::ConnectRefused);
        let err = reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
            .await
            .unwrap_err();
        assert_eq!(err.metric_label(), "agent_connect_refused");
        assert_eq!(cert_reason(&fx), "AgentConnectionRefused");
    }

    #[tokio::test]
    async fn monitor_mode_installs_nothing() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
        reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
            .await
            .unwrap();
        fx.set_mode(Mode::Monitor);
        let agent = fx.agent("app1");
        agent.state().certificate.as_mut().unwrap().thumbprint = "0".repeat(40);
        reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
            .await
            .unwrap();
        reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(agent.calls("install_certificate"), 1);
        assert_eq!(cert_reason(&fx), "CertificateDrift");
        assert_eq!(
            fx.counter("steward_drift_detected_total", &[("kind", "certificate")]),
            1.0
        );
        assert_eq!(
            fx.counter("steward_drift_corrected_total", &[("kind", "certificate")]),
            0.0
        );
    }
}
