//! `GET /api/v1/backup`: the same encrypted archive `steward backup` writes, taken by the
//! daemon from its own state directory, for holders of the reconcile token. The
//! passphrase is the daemon's `STEWARD_BACKUP_PASSPHRASE`, read once at start; without
//! it the endpoint answers 503 rather than send an archive nobody chose a passphrase for.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Extension, Json};
use steward_backup::{Kdf, Passphrase};

use super::reconcile::{refusal, FailedAttempts};
use super::AppState;

/// Where the daemon's state is and what to encrypt it to.
#[derive(Debug)]
pub struct BackupSource {
    pub state_dir: PathBuf,
    /// `None`: no (or an empty) `STEWARD_BACKUP_PASSPHRASE`; the endpoint answers 503.
    pub passphrase: Option<Passphrase>,
}

impl BackupSource {
    /// The passphrase from the daemon's environment; its absence is not an error of the
    /// daemon, only of this endpoint (an empty one is reported once, here).
    pub fn from_env(state_dir: PathBuf) -> Self {
        let passphrase = match Passphrase::from_env() {
            Ok(p) => Some(p),
            Err(steward_backup::BackupError::NoPassphrase) => None,
            Err(e) => {
                tracing::warn!("GET /api/v1/backup is disabled: {e}");
                None
            }
        };
        Self {
            state_dir,
            passphrase,
        }
    }
}

/// The route, with its own record of failed attempts.
pub(super) fn get() -> MethodRouter<AppState> {
    axum::routing::get(backup).layer(Extension(Arc::new(FailedAttempts::default())))
}

async fn backup(
    State(state): State<AppState>,
    Extension(failures): Extension<Arc<FailedAttempts>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&state, &failures, peer, &headers, "backup download") {
        return refused;
    }
    let Some(source) = state.backup.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this daemon has no state directory",
        );
    };
    if source.passphrase.is_none() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "backups are disabled: start the daemon with STEWARD_BACKUP_PASSPHRASE set",
        );
    }
    // scrypt takes about a second by design: off the async workers.
    let sealed = tokio::task::spawn_blocking(move || {
        let passphrase = source.passphrase.as_ref().expect("checked above");
        steward_backup::backup(&source.state_dir, passphrase, Kdf::Calibrated)
    })
    .await;
    match sealed {
        Ok(Ok(archive)) => {
            tracing::info!(%peer, bytes = archive.len(), "backup sent");
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"steward-backup.age\"",
                    ),
                ],
                archive,
            )
                .into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(%peer, reason = e.metric_label(), "backup failed: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the backup failed; see the daemon's log",
            )
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the backup task failed"),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
