//! The certificate controller (key: server name): make the server hold the TLS certificate
//! the desired state asks for, before any service is installed there, and keep it valid.
//!
//! * `generate: true`: issued by the steward CA for the hostname (and the load balancer's
//!   name), with `certificateAuthority.duration` as lifetime, and renewed
//!   `renewBefore` ahead of expiry (by default at two thirds of the lifetime, like
//!   cert-manager). Never issued when `certificateAuthority.mode` is `existing`. Which
//!   certificate steward put there is remembered in memory only, so after a daemon restart
//!   each server gets one fresh certificate (harmless: services reload it).
//! * `certFile` + `keyFile`, or `pfxFile` + `passwordRef`: read from the desired-state
//!   directory and checked ([`existing`]) before anything is sent; each failure is a
//!   Stalled condition with its own reason (`KeyMismatch`, `Expired`, `HostnameNotInSan`,
//!   `UntrustedIssuer`, `PfxPasswordWrong`, `FileUnreadable`, `SecretUnresolved`, ...).
//!   The files are polled every reconcile (at most [`FILE_POLL`] apart), so a replaced
//!   file is installed without a commit. Past its renewal point (`renewBefore` ahead of
//!   expiry) an existing certificate is Degraded (`RenewalDue`): steward cannot renew it.
//!
//! Installing goes through the agent, which writes the pair and makes the services reload
//! it without dropping connections. Errors, status and events name files, never their
//! content; keys and passwords appear nowhere.

mod existing;

use std::sync::Arc;
use std::time::Duration;

use steward_agent::api::CertificateStatus;
use steward_agent::ClientError;
use steward_model::plan::subject_alt_names;
use steward_model::resource::{CaMode, Mode};
use steward_model::snapshot::{CertificateAuthority as CaSettings, CertificateSource, Server};
use steward_pki::PrivateKeyPem;
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
/// fix is a commit, which triggers a run anyway, or a file change, which the poll sees.
const STALLED_RETRY: Duration = Duration::from_secs(30);
/// How often existing certificate files are read again for changes.
pub(crate) const FILE_POLL: Duration = Duration::from_secs(10);

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

/// A certificate and key ready to install, checked.
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
    let settings = &desired.snapshot.installation.certificate_authority;
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
        observe(&ctx, &name, current, settings);
    }
    let generated = server.certificate == CertificateSource::Generate;
    // Existing files are polled; a generated certificate waits for its renewal point.
    let poll = if generated {
        ctx.config.resync
    } else {
        ctx.config.resync.min(FILE_POLL)
    };

    let monitor = desired.snapshot.installation.mode == Mode::Monitor;
    let (wanted, why) = match wanted(&ctx, &desired, &server, current.as_ref()) {
        Ok(Wanted::InPlace) => {
            let Some(current) = &current else {
                // Monitor mode with nothing to compare: taken as it is.
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
                    "in place".into(),
                );
                return Ok(Action::requeue(poll));
            };
            let renewal = renewal_time(current.not_after, settings);
            let now = OffsetDateTime::now_utc();
            ctx.store.with_server(&name, |r| {
                r.cert.ready = true;
                r.cert.drift = false;
            });
            let described = describe(current, renewal);
            if !generated && now >= renewal {
                set(
                    &ctx,
                    &name,
                    generation,
                    Phase::Degraded,
                    "RenewalDue",
                    format!(
                        "{described}: due for replacement (renewBefore {}); steward cannot renew a third-party certificate: replace the file",
                        human(settings.renew_before)
                    ),
                );
            } else {
                set(
                    &ctx,
                    &name,
                    generation,
                    Phase::Ready,
                    "CertificateInstalled",
                    described,
                );
            }
            let until_renewal = Duration::try_from(renewal - now).unwrap_or(Duration::ZERO);
            let next = if generated && !monitor {
                poll.min(until_renewal.max(Duration::from_millis(100)))
            } else {
                poll
            };
            return Ok(Action::requeue(next));
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
            return Ok(Action::requeue(if generated {
                STALLED_RETRY.min(ctx.config.resync)
            } else {
                poll
            }));
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
        return Ok(Action::requeue(poll));
    }

    let installed = match agent
        .install_certificate(&wanted.cert_pem, &wanted.key_pem)
        .await
    {
        Ok(installed) => installed,
        Err(source) => {
            ctx.store.event(
                format!("certificate/{name}"),
                EventType::Warning,
                "InstallFailed",
                &format!(
                    "thumbprint {} ({}): the agent refused or failed: {source}",
                    wanted.thumbprint,
                    why.describe()
                ),
            );
            return Err(agent_error(source));
        }
    };
    if drift {
        ctx.metrics.drift_detected(DriftKind::Certificate);
        ctx.metrics.drift_corrected(DriftKind::Certificate);
    }
    let renewal = renewal_time(installed.not_after, settings);
    tracing::info!(
        "{name}: installed certificate {} for {} ({}; expires {}, renewal at {})",
        installed.thumbprint,
        wanted.sans.join(", "),
        why.describe(),
        rfc3339(installed.not_after),
        rfc3339(renewal),
    );
    let reason = match (generated, why) {
        (true, Why::Renewal) => "CertificateRenewed",
        (true, _) => "CertificateIssued",
        (false, _) => "CertificateInstalled",
    };
    // A certificate installed where none was in place turns the condition Ready, and that
    // transition is an event of its own, with this reason; only say it once.
    let transition = ctx
        .store
        .with_server(&name, |r| {
            r.cert.conditions.headline().1 != "CertificateInstalled"
        })
        .unwrap_or(true);
    if generated || !transition {
        ctx.store.event(
            format!("certificate/{name}"),
            if drift {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason,
            &format!(
                "thumbprint {} for {} ({}); valid until {}, renewal at {}; {} services reloaded",
                installed.thumbprint,
                wanted.sans.join(", "),
                why.describe(),
                rfc3339(installed.not_after),
                rfc3339(renewal),
                installed.reloaded.len()
            ),
        );
    }
    observe(&ctx, &name, &installed, settings);
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
        describe(&installed, renewal),
    );
    if !was_ready {
        for key in ctx.store.service_keys_on(&name) {
            ctx.trigger_service(key, Reason::ObservedChanged);
        }
    }
    // Read back next time rather than trusting the answer.
    Ok(Action::requeue(ctx.short()))
}

/// When a certificate is due for renewal: `renewBefore` ahead of its expiry.
fn renewal_time(not_after: OffsetDateTime, settings: &CaSettings) -> OffsetDateTime {
    let before = time::Duration::try_from(settings.renew_before).unwrap_or(time::Duration::ZERO);
    not_after.checked_sub(before).unwrap_or(not_after)
}

fn describe(current: &CertificateStatus, renewal: OffsetDateTime) -> String {
    format!(
        "{} (thumbprint {}, expires {}, renewal at {})",
        current.subject,
        current.thumbprint.to_ascii_uppercase(),
        rfc3339(current.not_after),
        rfc3339(renewal)
    )
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `30d`, `1m40s`: a duration as the files write it.
fn human(d: Duration) -> String {
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if out.is_empty() {
        out = format!("{}ms", d.as_millis());
    }
    out
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
            Self::Renewal => "renewal: its renewal point (renewBefore ahead of expiry) has come",
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
    let installation = &desired.snapshot.installation;
    let names = subject_alt_names(server, installation.load_balancer.as_deref());
    let settings = &installation.certificate_authority;
    let source = match &server.certificate {
        CertificateSource::Generate => return generated(ctx, desired, server, current),
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
    let material = existing::load(&desired.dir, &source, &names, settings, steward_ca)?;
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

fn generated(
    ctx: &Context,
    desired: &Desired,
    server: &Server,
    current: Option<&CertificateStatus>,
) -> Result<Wanted, Unavailable> {
    let settings = &desired.snapshot.installation.certificate_authority;
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
    let sans = subject_alt_names(
        server,
        desired.snapshot.installation.load_balancer.as_deref(),
    );
    let memo = ctx
        .store
        .with_server(&server.name, |r| r.cert.issued.clone())
        .flatten();
    let why = match (&memo, current) {
        (Some(memo), Some(current))
            if memo.thumbprint.eq_ignore_ascii_case(&current.thumbprint) =>
        {
            if memo.sans != sans {
                Why::Changed
            } else if OffsetDateTime::now_utc() >= renewal_time(current.not_after, settings) {
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
        .issue_server(&sans, &[], settings.duration)
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

/// Record what the server holds (status, expiry and renewal metrics).
fn observe(ctx: &Context, name: &str, current: &CertificateStatus, settings: &CaSettings) {
    ctx.store.with_server(name, |r| {
        r.cert.thumbprint = Some(current.thumbprint.to_ascii_uppercase());
        r.cert.not_after = Some(current.not_after);
        r.cert.subject = Some(current.subject.clone());
    });
    ctx.metrics
        .certificate_expiry(name, current.not_after.unix_timestamp());
    ctx.metrics.certificate_renewal(
        name,
        renewal_time(current.not_after, settings).unix_timestamp(),
    );
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
        assert_eq!(cert_reason(&fx), "KeyMismatch");
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
        assert_eq!(cert_reason(&fx), "FileUnreadable");
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

    fn issue_pair(
        ca_dir: &std::path::Path,
        names: &[&str],
        lifetime: Duration,
    ) -> steward_pki::IssuedCertificate {
        let ca = steward_pki::CertificateAuthority::load(ca_dir)
            .or_else(|_| steward_pki::CertificateAuthority::init(ca_dir))
            .unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        ca.issue_server(&names, &[], lifetime).unwrap()
    }

    fn events(fx: &crate::fakes::Fixture, reason: &str) -> usize {
        fx.ctx
            .store
            .status()
            .events
            .iter()
            .filter(|e| e.object == "certificate/app1" && e.reason == reason)
            .count()
    }

    #[tokio::test]
    async fn generated_certificates_follow_duration_and_renew_before() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
        let mut s = fx.current();
        s.installation.certificate_authority.duration = Duration::from_secs(120);
        s.installation.certificate_authority.renew_before = Duration::from_secs(100);
        fx.apply(s);
        reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
            .await
            .unwrap();
        let agent = fx.agent("app1");
        let installed = agent.state().certificate.clone().unwrap();
        let left = installed.not_after - OffsetDateTime::now_utc();
        assert!(
            left <= time::Duration::seconds(120) && left > time::Duration::seconds(110),
            "{left}"
        );
        assert_eq!(events(&fx, "CertificateIssued"), 1);
        let renewal = installed.not_after.unix_timestamp() - 100;
        assert_eq!(
            fx.gauge(
                "steward_certificate_renewal_timestamp_seconds",
                &[("server", "app1")]
            ),
            renewal as f64
        );

        // In place: woken again at the renewal point, not after a whole resync.
        let action = reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
            .await
            .unwrap();
        let until = Duration::from_secs(
            (renewal - OffsetDateTime::now_utc().unix_timestamp()).max(0) as u64,
        );
        match action {
            Action::Requeue(after) => assert!(
                after <= fx.ctx.config.resync && after <= until + Duration::from_secs(1),
                "{after:?}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(agent.calls("install_certificate"), 1);

        // Past the renewal point: renewed, with its own event.
        agent.state().certificate.as_mut().unwrap().not_after =
            OffsetDateTime::now_utc() + time::Duration::seconds(90);
        reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(agent.calls("install_certificate"), 2);
        assert_eq!(events(&fx, "CertificateRenewed"), 1);
        assert_ne!(
            agent.state().certificate.as_ref().unwrap().thumbprint,
            installed.thumbprint
        );
    }

    #[tokio::test]
    async fn default_renewal_is_at_two_thirds_of_the_lifetime() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
        reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
            .await
            .unwrap();
        let agent = fx.agent("app1");
        let not_after = agent.state().certificate.as_ref().unwrap().not_after;
        let renewal = fx.gauge(
            "steward_certificate_renewal_timestamp_seconds",
            &[("server", "app1")],
        );
        assert_eq!(
            renewal,
            (not_after - time::Duration::days(30)).unix_timestamp() as f64
        );
        // 31 days left: in place; 29 days left: renewed.
        agent.state().certificate.as_mut().unwrap().not_after =
            OffsetDateTime::now_utc() + time::Duration::days(31);
        reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(agent.calls("install_certificate"), 1);
        agent.state().certificate.as_mut().unwrap().not_after =
            OffsetDateTime::now_utc() + time::Duration::days(29);
        reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(agent.calls("install_certificate"), 2);
    }

    #[tokio::test]
    async fn an_existing_ca_means_nothing_is_ever_issued() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
        // Validation refuses this combination; the controller refuses it on its own too.
        let mut s = fx.current();
        s.installation.certificate_authority.mode = CaMode::Existing;
        fx.apply(s);
        reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(fx.agent("app1").calls("install_certificate"), 0);
        assert_eq!(cert_reason(&fx), "NoCertificateAuthority");
        assert!(!fx.ctx.store.cert_ready("app1"));
    }

    #[tokio::test]
    async fn replaced_files_are_reinstalled_and_due_ones_reported() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86_400);
        let first = issue_pair(ca_dir.path(), &["app1.example.eng"], 100 * day);
        first.write_pair(dir.path(), "app1").unwrap();
        let cert = "certificate: {certFile: app1.pem, keyFile: app1.key}";
        let fx = fixture_with(&[("app1", &["PSIS", "PSWS"])], cert, dir.path());
        let action = reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(fx.ctx.short()));
        let action = reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
            .await
            .unwrap();
        // Files are polled.
        assert_eq!(action, Action::requeue(fx.ctx.config.resync.min(FILE_POLL)));
        assert_eq!(cert_reason(&fx), "CertificateInstalled");
        assert_eq!(events(&fx, "CertificateInstalled"), 1);

        // Someone drops a new pair in place (no commit): installed at the next poll.
        let second = issue_pair(ca_dir.path(), &["app1.example.eng"], 20 * day);
        second.write_pair(dir.path(), "app1").unwrap();
        reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
            .await
            .unwrap();
        let agent = fx.agent("app1");
        assert_eq!(
            agent.state().certificate.as_ref().unwrap().thumbprint,
            second.sha1_thumbprint
        );
        assert_eq!(events(&fx, "CertificateInstalled"), 2);
        // 20 days left, renewBefore 30d: steward cannot renew it, it says so.
        reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(cert_reason(&fx), "RenewalDue");
        assert!(
            fx.ctx.store.cert_ready("app1"),
            "still serving: services go on"
        );

        // A half-written replacement (new certificate, old key) is refused and the
        // installed one stays.
        let third = issue_pair(ca_dir.path(), &["app1.example.eng"], 100 * day);
        std::fs::write(dir.path().join("app1.pem"), &third.cert_pem).unwrap();
        reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(cert_reason(&fx), "KeyMismatch");
        assert_eq!(agent.calls("install_certificate"), 2);
        assert_eq!(
            agent.state().certificate.as_ref().unwrap().thumbprint,
            second.sha1_thumbprint
        );
    }

    #[tokio::test]
    async fn pfx_password_problems_are_conditions_without_the_password() {
        use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = tempfile::tempdir().unwrap();
        let issued = issue_pair(
            ca_dir.path(),
            &["app1.example.eng"],
            Duration::from_secs(86_400),
        );
        let der = |text: &str| {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::CertificateDer::pem_slice_iter(text.as_bytes())
                .next()
                .map(|c| c.unwrap().to_vec())
        };
        let key_der =
            rustls::pki_types::pem::PemObject::from_pem_slice(issued.key_pem.expose().as_bytes())
                .map(|k: rustls::pki_types::PrivatePkcs8KeyDer<'_>| k.secret_pkcs8_der().to_vec())
                .unwrap();
        let chain = PrivateKeyChain::new(
            b"1".as_slice(),
            PrivateKey::from_der(&key_der).unwrap(),
            [Certificate::from_der(&der(&issued.cert_pem).unwrap()).unwrap()],
        );
        let mut store = KeyStore::new();
        store.add_entry("app1", KeyStoreEntry::PrivateKeyChain(chain));
        let password = "Pfx-Pa55word-4-test";
        std::fs::write(
            dir.path().join("app1.pfx"),
            store.writer(password).write().unwrap(),
        )
        .unwrap();
        let secret = dir.path().join("pfx-password");
        std::fs::write(&secret, "not the password\n").unwrap();
        let cert = format!(
            "certificate: {{pfxFile: app1.pfx, passwordRef: \"file:{}\"}}",
            secret.display()
        );
        let fx = fixture_with(&[("app1", &["PSIS", "PSWS"])], &cert, dir.path());
        reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(cert_reason(&fx), "PfxPasswordWrong");

        std::fs::remove_file(&secret).unwrap();
        reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(cert_reason(&fx), "SecretUnresolved");
        assert_eq!(fx.agent("app1").calls("install_certificate"), 0);

        std::fs::write(&secret, format!("{password}\n")).unwrap();
        reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(
            fx.agent("app1")
                .state()
                .certificate
                .as_ref()
                .unwrap()
                .thumbprint,
            issued.sha1_thumbprint
        );
        let text = serde_json::to_string(&fx.ctx.store.status()).unwrap();
        assert!(
            !text.contains(password) && !text.contains("PRIVATE"),
            "{text}"
        );
        assert!(
            text.contains("PfxPasswordWrong"),
            "the failure is an event: {text}"
        );
        let metrics = {
            use prometheus::Encoder;
            let mut out = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&fx.registry.gather(), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(!metrics.contains(password));
    }
}
