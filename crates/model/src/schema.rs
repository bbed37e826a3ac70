//! The JSON Schema of desired-state documents, for `steward schema` and editors.

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Value};

use crate::resource::{
    ActiveDirectorySpec, Document, HealthCheckSpec, InstallationSpec, NotificationsSpec,
    ServerSpec, UpgradePolicySpec, API_VERSION,
};

/// One schema accepting any document, picking the spec by `kind`.
pub fn desired_state_schema() -> Value {
    let mut generator = SchemaGenerator::default();
    let branches = vec![
        branch::<InstallationSpec>(&mut generator, "Installation"),
        branch::<ServerSpec>(&mut generator, "Server"),
        branch::<ActiveDirectorySpec>(&mut generator, "ActiveDirectory"),
        branch::<HealthCheckSpec>(&mut generator, "HealthCheck"),
        branch::<NotificationsSpec>(&mut generator, "Notifications"),
        branch::<UpgradePolicySpec>(&mut generator, "UpgradePolicy"),
    ];
    let defs: serde_json::Map<String, Value> =
        generator.take_definitions(true).into_iter().collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://steward.invalid/schema/steward-v1.json",
        "title": "Steward desired-state document",
        "description": "One resource of a Steward desired-state directory (apiVersion steward/v1).",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "oneOf": branches,
        "$defs": defs,
    })
}

fn branch<S: JsonSchema>(generator: &mut SchemaGenerator, kind: &str) -> Value {
    let mut schema = generator.subschema_for::<Document<S>>().to_value();
    // Resolve the document wrapper so `kind` can be pinned for this branch.
    if let Some(reference) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .map(str::to_owned)
    {
        let name = reference.trim_start_matches("#/$defs/").to_owned();
        if let Some(def) = generator.definitions().get(&name) {
            schema = def.clone();
        }
    }
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("kind".into(), json!({ "const": kind }));
        props.insert("apiVersion".into(), json!({ "const": API_VERSION }));
    }
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), json!(kind));
    }
    schema
}
