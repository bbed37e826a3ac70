//! The router's answers to what no handler serves, the reconcile endpoint's
//! authorization, and the shape of `/metrics` and `/api/v1/status`, through the real
//! router (no socket: the serving layer has its own tests).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use hyper::service::Service as _;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{router, AppState};

const TOKEN: &str = "s3cret-token";

struct Fixture {
    router: Router,
    state: AppState,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn fixture() -> Fixture {
    fixture_with_backup(None)
}

fn fixture_with_backup(passphrase: Option<&str>) -> Fixture {
    fixture_with(passphrase, None)
}

/// With `passphrase`, `GET /api/v1/backup` backs up the fixture's directory (it holds a
/// CA); with `ha`, the daemon takes part in that election.
fn fixture_with(passphrase: Option<&str>, ha: Option<steward_leader::Leadership>) -> Fixture {
    fixture_of(passphrase, ha, Arc::default())
}

/// [`fixture_with`], its controllers' store `store`.
fn fixture_of(
    passphrase: Option<&str>,
    ha: Option<steward_leader::Leadership>,
    store: Arc<steward_controllers::Store>,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (watch, _task) = steward_watch::watch(
        dir.path().to_path_buf(),
        steward_watch::WatchConfig::default(),
        stop.clone(),
    )
    .unwrap();
    let registry = steward_controllers::MetricsRegistry::default();
    let ca = steward_pki::CertificateAuthority::init(dir.path().join("ca")).unwrap();
    let controllers = steward_controllers::Controllers::new(
        steward_controllers::ControllersConfig {
            ca: None,
            agent_tls: steward_pki::client_config(&[ca.cert_pem()]).unwrap(),
            probe_roots: vec![ca.cert_pem().to_owned()],
            endpoints: Arc::new(steward_controllers::AgentEndpoint::from_server),
            resync: std::time::Duration::from_secs(2),
            agent_timeout: std::time::Duration::from_secs(5),
            max_concurrent: 1,
            per_server: 1,
            installed_by: "test".to_owned(),
            state_dir: None,
        },
        &registry,
    )
    .unwrap();
    let state = AppState {
        controllers: controllers.handle(),
        store,
        watch,
        registry,
        ca_pem: None,
        reconcile_token: Some(Arc::new(steward_model::SecretValue::new(TOKEN.to_owned()))),
        backup: Some(Arc::new(super::BackupSource {
            state_dir: dir.path().to_path_buf(),
            passphrase: passphrase.map(|p| steward_backup::Passphrase::new(p.to_owned()).unwrap()),
        })),
        ha,
    };
    Fixture {
        router: router(state.clone()),
        state,
        _dir: dir,
        stop,
    }
}

/// Status, headers and body of one request from `peer`.
async fn send(
    router: &Router,
    method: &str,
    uri: &str,
    authorization: Option<&str>,
    peer: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let (status, headers, body) = send_bytes(router, method, uri, authorization, peer).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn send_bytes(
    router: &Router,
    method: &str,
    uri: &str,
    authorization: Option<&str>,
    peer: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let mut request = request.body(Body::empty()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = TowerToHyperService::new(router.clone())
        .call(request)
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body.to_vec())
}

/// The address the tests' ordinary requests come from.
const LOCAL: &str = "127.0.0.1:1";

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

impl Fixture {
    async fn get(&self, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        send(&self.router, "GET", uri, None, LOCAL).await
    }

    /// `method uri` from the local address, with `authorization` when given.
    async fn call(
        &self,
        method: &str,
        uri: &str,
        authorization: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        send(&self.router, method, uri, authorization, LOCAL).await
    }
}

fn json_body(headers: &axum::http::HeaderMap, body: &str) -> Value {
    assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{body}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn metrics_are_the_text_format_with_every_controller_series_from_start() {
    let f = fixture();
    let (status, headers, body) = f.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    for line in [
        "# TYPE steward_reconcile_total counter",
        "steward_reconcile_total{controller=\"server\",result=\"success\"} 0",
        "# TYPE steward_reconcile_queue_depth gauge",
        "steward_drift_detected_total{kind=\"service_missing\"} 0",
    ] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in\n{body}");
    }
}

#[tokio::test]
async fn the_status_states_the_live_generation_once() {
    let f = fixture();
    let (status, headers, body) = f.get("/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    let doc = json_body(&headers, &body);
    assert_eq!(doc["generation"], 0);
    let desired = &doc["desiredState"];
    assert!(
        desired.get("lastAttemptedGeneration").is_some(),
        "{desired}"
    );
    assert!(
        desired.get("lastAppliedGeneration").is_none(),
        "a second name for `generation`: {desired}"
    );
}

#[tokio::test]
async fn the_status_is_compact_only_when_asked_and_refuses_unknown_modes() {
    let f = fixture();
    let get = |uri: &'static str| send(&f.router, "GET", uri, None, LOCAL);
    let (status, headers, body) = get("/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        json_body(&headers, &body).get("compact").is_none(),
        "{body}"
    );
    // A small fleet stays whole under `auto`.
    let (_, headers, body) = get("/api/v1/status?compact=auto").await;
    assert!(
        json_body(&headers, &body).get("compact").is_none(),
        "{body}"
    );
    let (_, headers, body) = get("/api/v1/status?compact=true&detail=app1,app2").await;
    assert_eq!(
        json_body(&headers, &body)["compact"],
        json!({"healthyOmitted": {}})
    );
    let (status, headers, body) = get("/api/v1/status?compact=sometimes").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json_body(&headers, &body)["error"].is_string(), "{body}");
}

/// The document as the handler writes it from the store's kept parts is the
/// [`super::status::StatusDocument`] (what the OpenAPI document describes) serialized.
#[tokio::test]
async fn the_status_is_its_document_serialized_whole_and_compact() {
    let snapshot = steward_controllers::bench::snapshot(120);
    let f = fixture_of(
        None,
        None,
        Arc::new(steward_controllers::bench::store(&snapshot)),
    );
    let get = |uri: &'static str| send(&f.router, "GET", uri, None, "127.0.0.1:1");
    let expected = super::status::document(&f.state);
    let (status, headers, body) = get("/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(body, serde_json::to_string(&expected).unwrap());
    // Asked twice: the second from the kept parts.
    let (_, _, again) = get("/api/v1/status").await;
    assert_eq!(again, body);

    let (_, _, body) = get("/api/v1/status?compact=auto&detail=app0002").await;
    let mut compact = expected.clone();
    let mut omitted = std::collections::BTreeMap::new();
    for server in compact
        .fleet
        .servers
        .iter_mut()
        .filter(|s| s.name != "app0002")
    {
        omitted.insert(server.name.clone(), server.services.len());
        server.services.clear();
    }
    compact.compact = Some(super::status::CompactStatus {
        healthy_omitted: omitted,
    });
    assert_eq!(body, serde_json::to_string(&compact).unwrap());
}

#[tokio::test]
async fn unknown_paths_get_a_json_404_naming_the_path() {
    let f = fixture();
    let (status, headers, body) = f.get("/api/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        json_body(&headers, &body),
        json!({"error": "not found", "path": "/api/v1/nope"})
    );

    let long = format!("/{}", "a".repeat(1000));
    let (status, headers, body) = f.get(&long).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let path = json_body(&headers, &body)["path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        path,
        format!("/{}...", "a".repeat(255)),
        "cut to 256 characters"
    );

    // What the client sent comes back JSON-escaped, never as markup or a broken document.
    let (_, headers, body) = f.get("/x%22%3Cscript%3E").await;
    assert_eq!(json_body(&headers, &body)["path"], "/x%22%3Cscript%3E");
}

#[tokio::test]
async fn wrong_methods_get_a_json_405_with_allow() {
    let f = fixture();
    for (method, path) in [
        ("PUT", "/healthz"),
        ("GET", "/api/v1/reconcile"),
        ("DELETE", "/metrics"),
    ] {
        let (status, headers, body) = f.call(method, path, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            headers.contains_key(header::ALLOW),
            "{method} {path}: {headers:?}"
        );
        assert_eq!(
            json_body(&headers, &body),
            json!({"error": "method not allowed", "method": method, "path": path})
        );
    }
}

#[tokio::test]
async fn reconcile_takes_the_bearer_scheme_in_any_case() {
    let f = fixture();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let value = format!("{scheme} {TOKEN}");
        let (status, _, body) = f.call("POST", "/api/v1/reconcile", Some(&value)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{value}: {body}");
    }
}

#[tokio::test]
async fn hl7_failback_needs_the_token() {
    let f = fixture();
    let uri = "/api/v1/hl7/failback";
    let (status, _, _) = f.call("POST", uri, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let value = bearer();
    let (status, _, body) = f.call("POST", uri, Some(&value)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, "HL7 failback requested\n");
}

#[tokio::test]
async fn failed_reconcile_attempts_are_refused_then_rate_limited_per_address() {
    let f = fixture();
    let attacker = "192.0.2.7:4000";
    for presented in [None, Some("Basic czNjcmV0"), Some("Bearer wrong")] {
        let (status, _, _) =
            send(&f.router, "POST", "/api/v1/reconcile", presented, attacker).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{presented:?}");
    }
    for _ in 0..2 {
        let (status, _, _) = send(
            &f.router,
            "POST",
            "/api/v1/reconcile",
            Some("Bearer nope"),
            attacker,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Five failures: even the right token is not compared for this address any more.
    let right = bearer();
    let (status, headers, _) = send(
        &f.router,
        "POST",
        "/api/v1/reconcile",
        Some(&right),
        attacker,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key(header::RETRY_AFTER));
    // Another address is not affected.
    let (status, _, _) = send(
        &f.router,
        "POST",
        "/api/v1/reconcile",
        Some(&right),
        "192.0.2.8:4000",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn backup_needs_the_token_and_a_passphrase_then_sends_an_archive_that_opens() {
    const PASSPHRASE: &str = "api-backup-passphrase";
    let f = fixture_with_backup(None);
    let (status, _, _) = f.get("/api/v1/backup").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bearer = bearer();
    let (status, headers, body) = f.call("GET", "/api/v1/backup", Some(&bearer)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(json_body(&headers, &body)["error"]
        .as_str()
        .unwrap()
        .contains("STEWARD_BACKUP_PASSPHRASE"));

    let f = fixture_with_backup(Some(PASSPHRASE));
    let (status, _, _) = f.call("GET", "/api/v1/backup", Some("Bearer wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, body) =
        send_bytes(&f.router, "GET", "/api/v1/backup", Some(&bearer), LOCAL).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    let passphrase = steward_backup::Passphrase::new(PASSPHRASE.to_owned()).unwrap();
    let archive = steward_backup::open(&body, &passphrase).unwrap();
    let paths: Vec<&str> = archive.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["ca/ca.pem", "ca/ca.key"]);
}

#[tokio::test]
async fn a_follower_refuses_changes_with_the_leaders_address_and_says_who_leads() {
    let follower = steward_leader::Leadership::fixed(
        "b",
        steward_leader::Role::Follower {
            leader: Some(steward_leader::LeaderInfo {
                id: "a".into(),
                api: "http://10.0.0.1:9464".into(),
                epoch: 42,
            }),
        },
    );
    let f = fixture_with(None, Some(follower));
    let auth = bearer();
    let (status, headers, body) = f.call("POST", "/api/v1/reconcile", Some(&auth)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let body = json_body(&headers, &body);
    assert_eq!(body["error"], "not_leader");
    assert_eq!(
        body["leader"],
        json!({"id": "a", "api": "http://10.0.0.1:9464", "epoch": 42})
    );
    assert!(
        body["message"].as_str().unwrap().contains("a leads"),
        "{body}"
    );
    // Reads are served, and the status says who leads.
    let (status, headers, body) = f.get("/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    let body = json_body(&headers, &body);
    assert_eq!(body["ha"]["role"], "follower");
    assert_eq!(body["ha"]["id"], "b");
    assert_eq!(body["ha"]["leader"]["id"], "a");

    // The leader itself serves the same POST (here: an accepted reconcile).
    let leader = steward_leader::Leadership::fixed(
        "a",
        steward_leader::Role::Leader {
            epoch: 42,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(600),
        },
    );
    let f = fixture_with(None, Some(leader));
    let (status, _, body) = f.call("POST", "/api/v1/reconcile", Some(&auth)).await;
    assert!(status.is_success(), "{status}: {body}");
}

#[tokio::test]
async fn a_single_daemons_status_has_no_ha_section() {
    let f = fixture();
    let (_, headers, body) = f.get("/api/v1/status").await;
    assert!(json_body(&headers, &body).get("ha").is_none(), "{body}");
}

#[tokio::test]
async fn upgrade_resume_needs_the_token_and_a_halted_upgrade() {
    let f = fixture();
    let (status, _, _) = send(
        &f.router,
        "POST",
        "/api/v1/upgrade/resume",
        None,
        "127.0.0.1:7",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(
        &f.router,
        "POST",
        "/api/v1/upgrade/resume",
        Some(&bearer()),
        "127.0.0.1:7",
    )
    .await;
    // Nothing is halted in a daemon without an UpgradePolicy: nothing is resumed.
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("no halted upgrade"), "{body}");
}
