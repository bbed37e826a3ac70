//! One request through the router, within the server's limits: the body is capped, the
//! handler has a deadline, and the handler can ask who the peer is (`ConnectInfo`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::service::TowerToHyperService;

use crate::admission::Slot;
use crate::limits::Limits;
use crate::watched::ExchangeBody;

/// Everything a connection's requests need.
#[derive(Clone)]
pub(crate) struct Dispatch {
    pub router: Router,
    pub peer: SocketAddr,
    pub limits: Limits,
}

impl Dispatch {
    /// Answer `request`; the response body ends the exchange on `slot` when it is sent.
    pub(crate) async fn respond(
        self,
        request: Request<Incoming>,
        slot: Arc<Slot>,
    ) -> Result<Response<ExchangeBody>, std::convert::Infallible> {
        let response = self.answer(request).await;
        Ok(response.map(|body| ExchangeBody::new(body, slot)))
    }

    async fn answer(self, mut request: Request<Incoming>) -> Response<Body> {
        let max = self.limits.max_body_bytes;
        if declared_length(&request).is_some_and(|n| n > max as u64) {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body larger than {max} bytes"),
            );
        }
        request.extensions_mut().insert(ConnectInfo(self.peer));
        // A body without a length (chunked) is cut at the same size while it is read.
        let request = request.map(|body| Body::new(Limited::new(body, max)));
        let routed = TowerToHyperService::new(self.router).call(request);
        match tokio::time::timeout(self.limits.request_timeout, routed).await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => json_error(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
        }
    }
}

fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `{"error": message}`, closing the connection (the request may not have been read).
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
