//! `POST /api/v1/reconcile`: re-read the desired state now, for holders of the token.
//!
//! The `Authorization` scheme is matched case-insensitively (RFC 7235 §2.1: `bearer` is as
//! good as `Bearer`); tokens are compared through their SHA-256 digests in constant time, so
//! neither a matching prefix nor the token's length shows in the response time. Every
//! attempt is logged with the client's address and its outcome, never with the token. A
//! client address with too many failed attempts in a row is answered `429` without a
//! comparison until its window ends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Extension;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::AppState;

/// Failed attempts a client address may make per window before it is refused outright.
const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; beyond, expired windows are forgotten first, then all
/// (a flood of addresses then meets the comparison again, which is safe, only not cheap).
const MAX_TRACKED: usize = 4096;

/// The route, with its own record of failed attempts.
pub(super) fn post() -> MethodRouter<AppState> {
    axum::routing::post(reconcile).layer(Extension(Arc::new(FailedAttempts::default())))
}

/// Failed attempts per client address.
#[derive(Default)]
pub(super) struct FailedAttempts {
    by_address: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedAttempts {
    /// Time left of the window, when `ip` has used up its failures.
    fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let (since, failures) = map.get(&ip)?;
        let left = (*since + WINDOW).saturating_duration_since(now);
        (*failures >= MAX_FAILURES && !left.is_zero()).then_some(left)
    }

    fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    fn succeeded(&self, ip: IpAddr) {
        self.by_address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

async fn reconcile(
    State(state): State<AppState>,
    Extension(failures): Extension<Arc<FailedAttempts>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refusal(&state, &failures, peer, &headers, "manual reconcile") {
        return refusal;
    }
    // A changed directory becomes a new generation; either way every object is looked at.
    state.watch.reload();
    state.controllers.resync_all();
    (StatusCode::ACCEPTED, "reload and reconcile requested\n").into_response()
}

/// The bearer-token check of every endpoint that acts (`what` names it in the log): the
/// response refusing the request (403 disabled, 429 rate-limited, 401), `None` to go on.
pub(super) fn refusal(
    state: &AppState,
    failures: &FailedAttempts,
    peer: SocketAddr,
    headers: &HeaderMap,
    what: &'static str,
) -> Option<Response> {
    let Some(token) = &state.reconcile_token else {
        tracing::info!(%peer, outcome = "disabled", "{what} refused: no token is configured");
        return Some((StatusCode::FORBIDDEN, format!("{what} is disabled\n")).into_response());
    };
    let now = Instant::now();
    if let Some(left) = failures.blocked(peer.ip(), now) {
        tracing::debug!(%peer, outcome = "rate_limited", "{what} refused");
        let retry_after = left.as_secs().max(1).to_string();
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after)],
                "too many failed attempts; try again later\n",
            )
                .into_response(),
        );
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().map(bearer_token));
    let refused = match presented {
        None => Some("missing"),
        Some(Err(_) | Ok(None)) => Some("malformed"),
        Some(Ok(Some(presented))) if !same_token(presented, token.expose()) => Some("wrong_token"),
        Some(Ok(Some(_))) => None,
    };
    if let Some(reason) = refused {
        failures.failed(peer.ip(), now);
        tracing::warn!(%peer, outcome = "refused", reason, "{what} refused");
        return Some((StatusCode::UNAUTHORIZED, "bearer token required\n").into_response());
    }
    failures.succeeded(peer.ip());
    tracing::info!(%peer, outcome = "accepted", "{what} requested");
    None
}

/// The token of an `Authorization: Bearer <token>` value: the scheme in any case, then one
/// or more spaces, then the token (token68: no spaces).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches(' ');
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Equal tokens, compared in time independent of where they differ and of their lengths.
fn same_token(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "bEaReR   s3cret",
            "Bearer s3cret ",
        ] {
            assert_eq!(bearer_token(value), Some("s3cret"), "{value:?}");
        }
        for value in [
            "Basic czNjcmV0",
            "Bearer",
            "Bearer ",
            "Bearers3cret",
            "Bearer s3 cret",
            "Token s3cret",
            "",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_token("s3cret", "s3cret"));
        assert!(!same_token("s3cre", "s3cret"));
        assert!(!same_token("s3cret!", "s3cret"));
        assert!(!same_token("S3CRET", "s3cret"));
        assert!(!same_token("", "s3cret"));
    }

    #[test]
    fn failures_block_an_address_for_the_rest_of_its_window() {
        let attempts = FailedAttempts::default();
        let (bad, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(attempts.blocked(bad, t0), None);
            attempts.failed(bad, t0);
        }
        assert_eq!(attempts.blocked(bad, t0), Some(WINDOW));
        assert_eq!(attempts.blocked(bad, t0 + WINDOW / 2), Some(WINDOW / 2));
        assert_eq!(attempts.blocked(other, t0), None, "per address");
        assert_eq!(
            attempts.blocked(bad, t0 + WINDOW),
            None,
            "the window is over"
        );
        attempts.failed(bad, t0 + WINDOW);
        assert_eq!(attempts.blocked(bad, t0 + WINDOW), None, "a new window");
        attempts.succeeded(bad);
        assert!(attempts.by_address.lock().unwrap().is_empty());
    }
}
