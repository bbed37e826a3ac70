//! The certificate controller (key: server name): make the server hold the TLS certificate
//! the desired state asks for, before any service is installed there, and keep it valid.
//!
//! * `generate: true`: issued by the steward CA for the hostname (and the load balancer's
//!   name), with `certificateAuthority.duration` as lifetime, and renewed
//!   `renewBefore` ahead of expiry (by default at two thirds of the lifetime, like
//!   cert-manager). Never issued when `certificateAuthority.mode` is `existing`. Which
//!   certificate steward put there is remembered under the state directory ([`memo`]),
//!   so a restarted daemon issues nothing while its certificates are valid.
//! * `certFile` + `keyFile`, or `pfxFile` + `passwordRef`: read from the desired-state
//!   directory and checked ([`existing`]) before anything is sent; each failure is a
//!   Stalled condition with its own reason (`KeyMismatch`, `Expired`, `HostnameNotInSan`,
//!   `UntrustedIssuer`, `PfxPasswordWrong`, `FileUnreadable`, `SecretUnresolved`, ...).
//!   The files are polled every reconcile (at most [`FILE_POLL`] apart), so a replaced
//!   file is installed without a commit. Past its renewal point (`renewBefore` ahead of
//!   expiry) an existing certificate is Degraded (`RenewalDue`): steward cannot renew it.
//!
//! One run: read what the server holds, decide ([`decide`]: in place, drift to report,
//! something to install, or nothing that can be produced), then act on that decision.
//! Installing goes through the agent, which writes the pair and makes the services reload
//! it without dropping connections. Errors, status and events name files, never their
//! content; keys and passwords appear nowhere.

mod adopt;
mod decide;
mod existing;
mod memo;

use std::sync::Arc;
use std::time::Duration;

use steward_agent::api::CertificateStatus;
use steward_model::resource::Mode;
use steward_model::snapshot::{CertificateAuthority as CaSettings, CertificateSource, Server};
use steward_runtime::{Action, Reason};
use time::OffsetDateTime;

use crate::context::Context;
use crate::drift::DriftKind;
use crate::error::ControllerError;
use crate::in_force::Accepted;
use crate::reconciler::{Reconciled, Reconciler, Request};
use crate::service::Services;
use crate::status::{EventType, Phase};
use decide::{decide, Decision, Material, Unavailable, Why};
pub(crate) use memo::{IssuedMemo, IssuedMemos};

/// How often a certificate that cannot be produced (missing file, no CA) is retried: the
/// fix is a commit, which triggers a run anyway, or a file change, which the poll sees.
const STALLED_RETRY: Duration = Duration::from_secs(30);
/// How often existing certificate files are read again for changes.
pub(crate) const FILE_POLL: Duration = Duration::from_secs(10);

/// The certificate controller (key: server name).
pub(crate) struct Certificates;

impl Reconciler for Certificates {
    type Key = String;
    const NAME: &'static str = "certificate";

    async fn reconcile(request: Request<String>, ctx: Arc<Context>) -> Reconciled {
        let (name, accepted) = (request.key, request.accepted);
        let Some((server, true)) = ctx.desired.server(&accepted, &name) else {
            // Undeclared: its services go; its certificate is nobody's business any more.
            return Ok(Action::await_change());
        };
        Run::new(&ctx, &accepted, &server).reconcile().await
    }

    fn error_policy(name: &String, error: &ControllerError, ctx: &Context) {
        let generation = ctx.desired.current().map(|a| a.generation());
        ctx.store.with_server(name, |r| {
            if generation.is_some() {
                r.cert.observed_generation = generation;
            }
            r.cert
                .conditions
                .set(Phase::Degraded, error.reason(), error.to_string());
        });
    }

    fn keys(ctx: &Context) -> Vec<String> {
        ctx.desired.known_servers()
    }
}

/// One run for one server.
struct Run<'a> {
    ctx: &'a Context,
    accepted: &'a Accepted,
    server: &'a Server,
    settings: &'a CaSettings,
    generated: bool,
    /// Existing files are polled; a generated certificate waits for its renewal point.
    poll: Duration,
}

impl<'a> Run<'a> {
    fn new(ctx: &'a Context, accepted: &'a Accepted, server: &'a Server) -> Self {
        let generated = server.certificate == CertificateSource::Generate;
        Self {
            ctx,
            accepted,
            server,
            settings: &accepted.desired.snapshot.installation.certificate_authority,
            generated,
            // A generated certificate is woken at its renewal point; the poll is a
            // backstop, paced to the fleet like the other controllers' looks.
            poll: if generated {
                ctx.pace.period(accepted.desired.snapshot.servers.len())
            } else {
                ctx.pace.resync.min(FILE_POLL)
            },
        }
    }

    fn name(&self) -> &str {
        &self.server.name
    }

    fn monitor(&self) -> bool {
        self.accepted.desired.snapshot.installation.mode == Mode::Monitor
    }

    async fn reconcile(&self) -> Result<Action, ControllerError> {
        let call = |e| ControllerError::call("reading the server's certificate", e);
        let agent = self.ctx.agents.get(self.server).map_err(call)?;
        let current = agent.certificate().await.map_err(call)?;
        match &current {
            Some(current) => self.observe(current),
            // Nothing there (its files were deleted, say): not Ready, whatever was
            // installed before, until it is installed again; services stay gated on it.
            None => {
                self.ctx
                    .store
                    .with_server(self.name(), |r| r.cert.ready = false);
            }
        }
        match decide(
            self.ctx,
            &self.accepted.desired,
            self.server,
            current.as_ref(),
        ) {
            Ok(Decision::InPlace) => Ok(self.in_place(current.as_ref())),
            Ok(Decision::Drift(why)) => Ok(self.report_drift(why, current.is_some())),
            Ok(Decision::Install { material, why }) => {
                self.install(agent.as_ref(), &material, why).await
            }
            Err(unavailable) => Ok(self.stalled(unavailable)),
        }
    }

    /// The server holds what is asked for (or, in monitor mode on a fresh start, what it
    /// holds is taken as it is).
    fn in_place(&self, current: Option<&CertificateStatus>) -> Action {
        self.ctx.store.with_server(self.name(), |r| {
            r.cert.ready = true;
            r.cert.drift = false;
        });
        let Some(current) = current else {
            self.set(Phase::Ready, "CertificateInstalled", "in place".into());
            return Action::requeue(self.poll);
        };
        let renewal = renewal_time(current.not_after, self.settings);
        let now = OffsetDateTime::now_utc();
        let described = describe(current, renewal);
        if !self.generated && now >= renewal {
            self.set(
                Phase::Degraded,
                "RenewalDue",
                format!(
                    "{described}: due for replacement (renewBefore {}); steward cannot renew a third-party certificate: replace the file",
                    steward_model::syntax::format_duration(self.settings.renew_before)
                ),
            );
        } else {
            self.set(Phase::Ready, "CertificateInstalled", described);
        }
        if self.generated && !self.monitor() {
            // Woken at the renewal point rather than after a whole resync.
            let until_renewal = Duration::try_from(renewal - now).unwrap_or(Duration::ZERO);
            Action::requeue(self.poll.min(until_renewal.max(Duration::from_millis(100))))
        } else {
            Action::requeue(self.poll)
        }
    }

    /// Monitor mode: what would be installed is reported, nothing is done. Services stay
    /// gated only on what steward would do, and in monitor mode it does nothing.
    fn report_drift(&self, why: Why, holds_one: bool) -> Action {
        let newly = self
            .ctx
            .store
            .with_server(self.name(), |r| {
                r.cert.ready = holds_one;
                !std::mem::replace(&mut r.cert.drift, true)
            })
            .unwrap_or(false);
        if newly && matches!(why, Why::Replaced | Why::Missing) {
            self.ctx.metrics.drift_detected(DriftKind::Certificate);
        }
        self.set(
            Phase::Degraded,
            "CertificateDrift",
            format!("{} (monitor mode: not corrected)", why.describe()),
        );
        Action::requeue(self.poll)
    }

    /// Nothing installable can be produced: retrying will not help until a file or the
    /// desired state changes.
    fn stalled(&self, unavailable: Unavailable) -> Action {
        self.ctx
            .store
            .with_server(self.name(), |r| r.cert.ready = false);
        self.set(Phase::Stalled, unavailable.reason, unavailable.message);
        Action::requeue(if self.generated {
            STALLED_RETRY.min(self.ctx.pace.resync)
        } else {
            self.poll
        })
    }

    async fn install(
        &self,
        agent: &dyn crate::agent::AgentApi,
        wanted: &Material,
        why: Why,
    ) -> Result<Action, ControllerError> {
        let (ctx, name) = (self.ctx, self.name());
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
                return Err(ControllerError::call("installing the certificate", source));
            }
        };
        let drift = matches!(why, Why::Replaced | Why::Missing);
        if drift {
            ctx.metrics.drift_detected(DriftKind::Certificate);
            ctx.metrics.drift_corrected(DriftKind::Certificate);
        }
        let renewal = renewal_time(installed.not_after, self.settings);
        tracing::info!(
            "{name}: installed certificate {} for {} ({}; expires {}, renewal at {})",
            installed.thumbprint,
            wanted.sans.join(", "),
            why.describe(),
            rfc3339(installed.not_after),
            rfc3339(renewal),
        );
        self.observe(&installed);
        ctx.issued.set(
            name,
            IssuedMemo {
                thumbprint: wanted.thumbprint.clone(),
                sans: wanted.sans.clone(),
            },
        );
        let was_ready = ctx
            .store
            .with_server(name, |r| {
                r.cert.drift = false;
                std::mem::replace(&mut r.cert.ready, true)
            })
            .unwrap_or(true);
        // Turning Ready is an event of its own (reason CertificateInstalled); a generated
        // certificate also says what was issued, and an existing one that replaced another
        // while Ready says so (no transition would).
        let transitioned = self.set(
            Phase::Ready,
            "CertificateInstalled",
            describe(&installed, renewal),
        );
        if self.generated || !transitioned {
            let reason = match (self.generated, why) {
                (true, Why::Renewal) => "CertificateRenewed",
                (true, _) => "CertificateIssued",
                (false, _) => "CertificateInstalled",
            };
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
        if !was_ready {
            for key in ctx.store.service_keys_on(name) {
                ctx.triggers.wake::<Services>(key, Reason::ObservedChanged);
            }
        }
        // Read back next time rather than trusting the answer.
        Ok(Action::requeue(ctx.pace.short()))
    }

    /// Record what the server holds (status, expiry and renewal metrics).
    fn observe(&self, current: &CertificateStatus) {
        let name = self.name();
        self.ctx.store.with_server(name, |r| {
            r.cert.thumbprint = Some(current.thumbprint.to_ascii_uppercase());
            r.cert.not_after = Some(current.not_after);
            r.cert.subject = Some(current.subject.clone());
        });
        self.ctx
            .metrics
            .certificate_expiry(name, current.not_after.unix_timestamp());
        self.ctx.metrics.certificate_renewal(
            name,
            renewal_time(current.not_after, self.settings).unix_timestamp(),
        );
    }

    /// Set the certificate's conditions; whether its headline changed.
    fn set(&self, phase: Phase, reason: &str, message: String) -> bool {
        let generation = self.accepted.generation();
        self.ctx
            .store
            .with_server(self.name(), |r| {
                r.cert.observed_generation = Some(generation);
                r.cert.conditions.set(phase, reason, message)
            })
            .unwrap_or(false)
    }
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

#[cfg(test)]
mod tests;
