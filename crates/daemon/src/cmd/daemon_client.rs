//! Reading a running daemon's HTTP API (plain HTTP on loopback).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

/// Where `steward run` listens unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9464";

/// GET `base` + `path` and decode the JSON body.
pub async fn get_json<T: DeserializeOwned>(base: &str, path: &str) -> Result<T, String> {
    let (url, status, body) = exchange(hyper::Method::GET, base, path, None).await?;
    if !status.is_success() {
        return Err(format!("{url}: HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: unexpected response: {e}"))
}

/// POST to `base` + `path` with `Authorization: Bearer TOKEN` and no body: the status code
/// and the (text) body.
pub async fn post_bearer(base: &str, path: &str, token: &str) -> Result<(u16, String), String> {
    let (_, status, body) = exchange(hyper::Method::POST, base, path, Some(token)).await?;
    Ok((
        status.as_u16(),
        String::from_utf8_lossy(&body).trim().to_owned(),
    ))
}

/// One bodiless request within 10 s: the URL it went to (for messages), the status and
/// the whole body. Errors name the URL, never the token.
async fn exchange(
    method: hyper::Method,
    base: &str,
    path: &str,
    bearer: Option<&str>,
) -> Result<(String, hyper::StatusCode, Bytes), String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url}: invalid URL: {e}"))?;
    let mut request = hyper::Request::builder().method(method).uri(uri);
    if let Some(token) = bearer {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| format!("{url}: timed out"))?
        .map_err(|e| format!("{url}: cannot connect: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    Ok((url, status, body))
}
