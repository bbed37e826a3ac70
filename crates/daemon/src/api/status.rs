//! `GET /api/v1/status`: the dashboard model (DESIGN §9). The controllers' fleet status,
//! plus what the watcher knows about the desired state.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;

pub async fn status(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state))
}

pub fn document(state: &AppState) -> Value {
    let watch = state.watch.current_status();
    let mut doc = serde_json::to_value(state.store.status()).unwrap_or_else(|_| json!({}));
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("generation".into(), json!(watch.last_applied_generation));
        obj.insert("valid".into(), json!(watch.valid));
        obj.insert(
            "errors".into(),
            json!(watch
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()),
        );
        obj.insert(
            "desiredState".into(),
            serde_json::to_value(&watch).unwrap_or(Value::Null),
        );
    }
    doc
}
