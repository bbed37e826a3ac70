//! A follower's API is read-only: every method but GET and HEAD is answered 503 with the
//! leader's address in the body (`error: not_leader`, `leader: {id, api, epoch}`), so a
//! client can send it there. 503 rather than 409: nothing is wrong with the request,
//! this daemon is just not the one to serve it now, and it may be a moment later.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use steward_leader::Leadership;

use super::status::{not_leading, HaStatus, LeaderView};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NotLeader {
    error: &'static str,
    message: String,
    leader: Option<LeaderView>,
}

pub async fn refuse_changes_on_followers(
    State(leadership): State<Leadership>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD)
        || leadership.acting_epoch().is_some()
    {
        return next.run(request).await;
    }
    let body = NotLeader {
        error: "not_leader",
        message: format!("{}: send changes to the leader", not_leading(&leadership)),
        leader: HaStatus::of(&leadership).leader,
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
