//! The HTTPS health surface: exactly the catalog's health path for the kind, plus
//! `/steward/lab`; everything else is 404.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use steward_model::catalog::HealthTest;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::lab_info::LabInfo;
use crate::serve::{accept_loop, serve_http, Drain, Timeouts};

pub(crate) const LAB_PATH: &str = "/steward/lab";

/// What one HTTPS listener answers.
#[derive(Debug)]
pub(crate) struct Site {
    info: Arc<LabInfo>,
    health_path: Option<&'static str>,
    health_body: Bytes,
    /// The release asks this service to fail its health test (`lab-fail-KIND`).
    failing: bool,
    /// Switched off by the simulated fleet's fault injection.
    healthy: Arc<AtomicBool>,
}

impl Site {
    pub fn new(info: Arc<LabInfo>, healthy: Arc<AtomicBool>) -> Self {
        let spec = info.kind.spec();
        let (health_path, marker) = match spec.health {
            HealthTest::Https {
                path,
                body_contains,
                ..
            } => (Some(path), body_contains.unwrap_or("OK")),
            HealthTest::Mllp => (None, "OK"),
        };
        let release = info.release.as_deref().unwrap_or("unreleased");
        let health_body = Bytes::from(format!(
            "{marker}\n{} ({}) - steward lab service, release {release}\n",
            spec.display_name, info.kind
        ));
        let failing = crate::fault::fails_health(info.release.as_deref(), info.kind, info.bind);
        if failing {
            tracing::warn!(
                "release {release} asks {} to fail its health test",
                info.kind
            );
        }
        Self {
            info,
            health_path,
            health_body,
            failing,
            healthy,
        }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let is_health = Some(path) == self.health_path;
        if !is_health && path != LAB_PATH {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        if is_health && self.failing && !crate::fault::repaired() {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "failing: the release's build metadata holds lab-fail for this service\n",
            );
        }
        if is_health && !self.healthy.load(Ordering::Relaxed) {
            return text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n");
        }
        if is_health {
            return response(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                self.health_body.clone(),
            );
        }
        let doc = self.info.document().await;
        response(
            StatusCode::OK,
            "application/json",
            Bytes::from(serde_json::to_vec_pretty(&doc).unwrap_or_default()),
        )
    }
}

/// Serves `site` over TLS on `listener` until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    site: Arc<Site>,
    timeouts: Timeouts,
    drain: Drain,
) {
    let stop = drain.stop.clone();
    accept_loop(listener, drain, move |stream, peer| {
        connection(
            stream,
            peer,
            acceptor.clone(),
            site.clone(),
            timeouts,
            stop.clone(),
        )
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    site: Arc<Site>,
    timeouts: Timeouts,
    stop: tokio_util::sync::CancellationToken,
) {
    let handshake = tokio::time::timeout(timeouts.handshake, acceptor.accept(stream));
    let tls = tokio::select! {
        () = stop.cancelled() => return,
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
    };
    serve_http(tls, timeouts, stop, move |req| {
        let site = site.clone();
        async move { site.handle(req).await }
    })
    .await;
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}
