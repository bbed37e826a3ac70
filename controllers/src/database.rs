//! The database controller (one key: the Installation's database). Every pass logs in
//! with the installer login through the pool, reads the server's version and verifies the
//! database and the service login piece by piece; with `create: true` (never in `mode:
//! monitor`) it runs the idempotent provisioning for whatever is missing, then verifies
//! again. Installs wait for it (the service controller's gate): the installer login must
//! work and the database must exist. Missing service-login pieces are Degraded and listed
//! but block nothing, and a database that goes down later uninstalls nothing.
//!
//! Passwords are read from their references at each pass and go only into the crate's
//! `Password` (which redacts itself); no status, event, error or metric carries one.

mod pool;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use steward_database::provision::ProvisionError;
use steward_database::{DatabaseConfig, Missing, Password, ServerName, Verification};
use steward_model::resource::Mode;
use steward_model::secret::SecretResolveError;
use steward_model::snapshot::Database;
use steward_runtime::{Action, Reason};

use crate::context::Context;
use crate::error::ControllerError;
use crate::in_force::Accepted;
use crate::reconciler::{Reconciled, Singleton};
use crate::service::Services;
use crate::status::{EventType, Phase};
use crate::store::DatabaseSeen;

pub(crate) use pool::DatabasePool;

/// Why a pass could not check or provision the database. Never a password: the crate's
/// errors carry none, and a secret reference is named, not read out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DatabaseError {
    #[error("database.passwordRef: {0}")]
    Password(#[source] SecretResolveError),
    #[error("database.serviceLogin.passwordRef: {0}")]
    ServicePassword(#[source] SecretResolveError),
    #[error(transparent)]
    Server(#[from] steward_database::Error),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
}

impl DatabaseError {
    /// The condition reason.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Password(_) | Self::ServicePassword(_) => "SecretUnresolved",
            Self::Server(e) => server_reason(e),
            Self::Provision(ProvisionError::Connect(e)) => server_reason(e),
            Self::Provision(_) => "ProvisioningFailed",
        }
    }

    /// Bounded: `database_` and the crate's own label.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::Password(_) | Self::ServicePassword(_) => "database_secret",
            Self::Server(e) | Self::Provision(ProvisionError::Connect(e)) => match e.label() {
                "unreachable" => "database_unreachable",
                "login_failed" => "database_login_failed",
                "tls_untrusted" => "database_tls_untrusted",
                "timeout" => "database_timeout",
                "protocol" => "database_protocol",
                "rejected" => "database_rejected",
                _ => "database_trust_file",
            },
            Self::Provision(_) => "database_provisioning",
        }
    }

    /// Stalled when only a person can fix it (credentials, trust); Degraded when the
    /// server may come back on its own.
    fn phase(&self) -> Phase {
        match self.reason() {
            "Unreachable" | "ProtocolError" | "ProvisioningFailed" => Phase::Degraded,
            _ => Phase::Stalled,
        }
    }

    /// A provisioning failure comes after a verification that said what is there: it
    /// does not make the database any less reachable.
    fn says_down(&self) -> bool {
        !matches!(self, Self::Provision(e) if !matches!(e, ProvisionError::Connect(_)))
    }
}

fn server_reason(e: &steward_database::Error) -> &'static str {
    match e.label() {
        "unreachable" | "timeout" => "Unreachable",
        "login_failed" => "LoginFailed",
        "tls_untrusted" => "TlsUntrusted",
        "trust_file" => "TrustFileUnusable",
        "rejected" => "QueryRejected",
        _ => "ProtocolError",
    }
}

// A pass's own failures are the database's, whichever crate reported them.
impl From<steward_database::Error> for ControllerError {
    fn from(e: steward_database::Error) -> Self {
        Self::Database(e.into())
    }
}

impl From<ProvisionError> for ControllerError {
    fn from(e: ProvisionError) -> Self {
        Self::Database(e.into())
    }
}

pub(crate) struct Databases;

impl Singleton for Databases {
    const NAME: &'static str = "database";

    async fn reconcile(accepted: Arc<Accepted>, ctx: &Context) -> Reconciled {
        let desired = &accepted.desired;
        let installation = &desired.snapshot.installation;
        let spec = &installation.database;
        // A follower (controller HA) only looks, as in monitor mode.
        let monitor = installation.mode == Mode::Monitor || !ctx.acting();
        let pool = ctx.database.for_config(config(spec, &desired.dir, None)?);
        // Boxed: tiberius' futures are large, and this one's state would otherwise sit in
        // every caller's stack frame.
        let mut verification = Box::pin(pool.verify()).await?;
        if spec.create && !monitor && !verification.missing.is_empty() {
            // What the pass found is shown even if the provisioning then fails.
            ctx.store
                .record_database(desired.generation, judge(spec, &verification, monitor));
            let password = service_password(spec, &desired.dir)?;
            let config = config(spec, &desired.dir, Some(password))?;
            let ran = Box::pin(steward_database::provision::provision(&config)).await?;
            ctx.store.event(
                object(spec),
                EventType::Normal,
                "Provisioned",
                &format!(
                    "ran the {ran} idempotent provisioning statements for: {}",
                    pieces(&verification.missing)
                ),
            );
            verification = Box::pin(pool.verify()).await?;
        }
        let seen = judge(spec, &verification, monitor);
        if ctx.store.record_database(desired.generation, seen) {
            // The gate opened: whoever waits to install goes now.
            for key in ctx.store.service_keys() {
                ctx.triggers.wake::<Services>(key, Reason::ObservedChanged);
            }
        }
        Ok(Action::requeue(ctx.pace.resync))
    }

    /// The failure is the database's condition; unless it was only the provisioning,
    /// the database counts as down (installs wait, nothing is uninstalled).
    fn error_policy(error: &ControllerError, ctx: &Context) {
        let ControllerError::Database(error) = error else {
            return;
        };
        let Some(generation) = ctx.desired.current().map(|a| a.generation()) else {
            return;
        };
        let message = error.to_string();
        if error.says_down() {
            ctx.store.record_database(
                generation,
                DatabaseSeen {
                    up: false,
                    version: None,
                    missing: None,
                    phase: error.phase(),
                    reason: error.reason(),
                    message,
                },
            );
        } else {
            ctx.store
                .database_condition(error.phase(), error.reason(), message);
        }
    }
}

/// What steward connects with: the declared server, the installer password from its
/// reference (read now, every pass), `trust` files against the desired-state directory.
fn config(
    spec: &Database,
    dir: &Path,
    service_password: Option<Password>,
) -> Result<DatabaseConfig, DatabaseError> {
    let password = spec
        .password_ref
        .resolve(dir)
        .map_err(DatabaseError::Password)?;
    let mut config = DatabaseConfig::new(
        &spec.server,
        spec.name.clone(),
        spec.user.clone(),
        Password::new(password.expose()),
    );
    config.server = ServerName::parse(&spec.server);
    config.port = Some(spec.port);
    config.encrypt = spec.encrypt;
    config.trust = spec.trust.iter().map(|t| dir.join(t)).collect();
    config
        .service_login
        .name
        .clone_from(&spec.service_login.name);
    config.service_login.password = service_password;
    config.pool_size = 2;
    Ok(config)
}

fn service_password(spec: &Database, dir: &Path) -> Result<Password, DatabaseError> {
    // Validation requires the reference with `create: true`; a snapshot without it
    // still cannot provision, and says which reference is missing.
    let reference = spec
        .service_login
        .password_ref
        .as_ref()
        .ok_or(DatabaseError::Provision(ProvisionError::NoServicePassword))?;
    let value = reference
        .resolve(dir)
        .map_err(DatabaseError::ServicePassword)?;
    Ok(Password::new(value.expose()))
}

/// The verdict on one verification.
fn judge(spec: &Database, verification: &Verification, monitor: bool) -> DatabaseSeen {
    let missing: Vec<String> = verification
        .missing
        .iter()
        .map(|m| m.label().to_owned())
        .collect();
    let version = Some(verification.version.version.clone());
    let (up, phase, reason, message) = if !verification.database_exists() {
        let why = if monitor {
            "mode: monitor creates nothing"
        } else if spec.create {
            "provisioning did not create it"
        } else {
            "create: false: a DBA creates it (`steward db script`), or set create: true"
        };
        (
            false,
            Phase::Stalled,
            "DatabaseMissing",
            format!(
                "database {} does not exist on {} ({why}); services are not installed until it does",
                spec.name, spec.server
            ),
        )
    } else if !verification.missing.is_empty() {
        (
            true,
            Phase::Degraded,
            "ServiceLoginIncomplete",
            format!(
                "service login {} is missing: {}",
                spec.service_login.name,
                pieces(&verification.missing)
            ),
        )
    } else {
        (
            true,
            Phase::Ready,
            "Verified",
            format!(
                "{} on {}: database and service login {} complete",
                verification.version.version, spec.server, spec.service_login.name
            ),
        )
    };
    DatabaseSeen {
        up,
        version,
        missing: Some(missing),
        phase,
        reason,
        message,
    }
}

fn pieces(missing: &[Missing]) -> String {
    missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn object(spec: &Database) -> String {
    format!("database/{}", spec.name)
}
