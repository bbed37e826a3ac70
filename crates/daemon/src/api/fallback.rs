//! What the API answers for a path it does not serve (404) or a method a path does not
//! take (405): a JSON error naming the path, like every other error of the API, instead of
//! an empty body.

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Longer paths are cut in the error body (the JSON encoder escapes what is left).
const MAX_ECHOED: usize = 256;

pub(super) async fn not_found(uri: Uri) -> Response {
    let body = serde_json::json!({"error": "not found", "path": echo(uri.path())});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// axum adds the `Allow` header listing the methods the path takes.
pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let body = serde_json::json!({
        "error": "method not allowed",
        "method": echo(method.as_str()),
        "path": echo(uri.path()),
    });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// Client-supplied text, cut to [`MAX_ECHOED`] characters (marked with `...`).
pub(super) fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHOED) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}
