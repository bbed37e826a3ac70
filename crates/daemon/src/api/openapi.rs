//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 description of every route.
//!
//! The status and resource schemas are derived (schemars) from the very types the
//! handlers serialize; the plan and observed-fleet schemas, whose types live in the model
//! crate, are written here. A test runs a lab daemon and validates its real responses
//! against this document, so neither kind can drift unnoticed.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};
use steward_controllers::ResourceStatus;

use super::status::StatusDocument;

pub async fn serve() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| document().to_string());
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn text_body(description: &str, media: &str) -> Value {
    json!({"description": description, "content": {media: {"schema": {"type": "string"}}}})
}

/// The whole document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let status = generator.subschema_for::<StatusDocument>();
    let resource = generator.subschema_for::<ResourceStatus>();
    let mut schemas: Map<String, Value> = generator.take_definitions(true);
    schemas.extend(model_schemas());
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}}
        }),
    );
    let text = |d: &str| text_body(d, "text/plain");
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Steward daemon API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Status, resources, plan and metrics of a Steward daemon (GitOps control plane for PatientSecure fleets). No response ever carries a secret."
        },
        "paths": {
            "/healthz": {"get": {
                "summary": "Liveness: the daemon answers.",
                "operationId": "healthz",
                "responses": {"200": text("ok")}
            }},
            "/readyz": {"get": {
                "summary": "Readiness: a valid desired state has been loaded.",
                "operationId": "readyz",
                "responses": {
                    "200": text("ready"),
                    "503": text("no valid desired state loaded yet")
                }
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics (text exposition format 0.0.4).",
                "operationId": "metrics",
                "responses": {"200": text_body("metrics", "text/plain; version=0.0.4; charset=utf-8")}
            }},
            "/api/v1/status": {"get": {
                "summary": "The dashboard model: desired state, installation, database, servers (standby servers left out) with services, health, last probe and conditions, service kinds against minimumHealthy, AD directories, HL7 listener, recent events.",
                "operationId": "status",
                "responses": {"200": json_body("the status document", status.to_value())}
            }},
            "/api/v1/resources/{kind}/{name}": {"get": {
                "summary": "One object: conditions (Ready, Progressing, Degraded, Stalled), observedGeneration, recent events and detail. Standby servers are here too.",
                "operationId": "resource",
                "parameters": [
                    {"name": "kind", "in": "path", "required": true,
                     "description": "installation, server, certificate or service (a plural and any case are accepted)",
                     "schema": {"type": "string"}},
                    {"name": "name", "in": "path", "required": true,
                     "description": "the object's name; a service is SERVER.KIND (also SERVER:KIND), e.g. app1.PSIS",
                     "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": json_body("the object's status", resource.to_value()),
                    "404": json_body("no such object", schema_ref("Error"))
                }
            }},
            "/api/v1/observed": {"get": {
                "summary": "What the agents reported, in the planner's terms (the input of `steward plan --live`).",
                "operationId": "observed",
                "responses": {"200": json_body("the observed fleet", schema_ref("Observed"))}
            }},
            "/api/v1/plan": {"get": {
                "summary": "What the daemon would still do for the live desired state (nothing once converged).",
                "operationId": "plan",
                "responses": {
                    "200": json_body("the plan", schema_ref("Plan")),
                    "503": json_body("no valid desired state loaded yet", schema_ref("Error"))
                }
            }},
            "/api/v1/reconcile": {"post": {
                "summary": "Reload the desired state and reconcile now.",
                "operationId": "reconcile",
                "security": [{"bearer": []}],
                "responses": {
                    "202": text("reload and reconcile requested"),
                    "401": text("bearer token missing or wrong"),
                    "403": text("manual reconcile is disabled (no token configured)")
                }
            }},
            "/api/v1/openapi.json": {"get": {
                "summary": "This document.",
                "operationId": "openapi",
                "responses": {"200": json_body("OpenAPI 3.1", json!({"type": "object"}))}
            }},
            "/ca.pem": {"get": {
                "summary": "The steward CA certificate (generated mode), to trust the services' certificates.",
                "operationId": "caPem",
                "responses": {
                    "200": text_body("PEM certificate", "application/x-pem-file"),
                    "404": text("no steward CA: certificateAuthority.mode is existing")
                }
            }},
            "/": {"get": {
                "summary": "The System Health dashboard page.",
                "operationId": "dashboard",
                "responses": {"200": text_body("HTML page", "text/html")}
            }}
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}

/// Schemas of the model crate's plan and observed types (serde without schemars).
fn model_schemas() -> Map<String, Value> {
    let string = json!({"type": "string"});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let ports =
        json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 65535}});
    let kind = schema_ref("ServiceKind");
    let step = |action: &str, fields: Value| {
        let mut properties = Map::new();
        properties.insert("action".into(), json!({"const": action}));
        let mut required = vec![Value::from("action")];
        for (name, schema) in fields.as_object().into_iter().flatten() {
            properties.insert(name.clone(), schema.clone());
            required.push(Value::from(name.as_str()));
        }
        json!({"type": "object", "required": required, "properties": properties})
    };
    let steps = vec![
        step("initCertificateAuthority", json!({})),
        step(
            "issueCertificate",
            json!({"server": string, "subject_alt_names": strings}),
        ),
        step(
            "installCertificate",
            json!({"server": string, "from": string}),
        ),
        step(
            "checkDatabase",
            json!({"server": string, "database": string, "create": {"type": "boolean"}}),
        ),
        step(
            "checkDirectory",
            json!({"directory": string, "server": string, "groups": strings, "manage_members": {"type": "boolean"}}),
        ),
        step(
            "install",
            json!({"server": string, "service": kind, "ports": ports, "drive": string, "release": string}),
        ),
        step(
            "reinstall",
            json!({"server": string, "service": kind, "ports": ports, "drive": string, "release": string, "because": string}),
        ),
        step("start", json!({"server": string, "service": kind})),
        step("uninstall", json!({"server": string, "service": kind})),
        step("orphaned", json!({"server": string, "service": kind})),
    ];
    let nullable = json!({"type": ["string", "null"]});
    let count = json!({"type": "integer", "minimum": 0});
    let mut schemas = Map::new();
    schemas.insert(
        "Observed".into(),
        json!({
            "description": "The fleet as the agents reported it.",
            "type": "object",
            "required": ["servers", "caExists"],
            "properties": {
                "servers": {"type": "object", "additionalProperties": schema_ref("ObservedServer")},
                "caExists": {"type": "boolean"}
            }
        }),
    );
    schemas.insert(
        "ObservedServer".into(),
        json!({
            "type": "object",
            "required": ["services", "certificateThumbprint"],
            "properties": {
                "services": {"type": "object", "propertyNames": kind, "additionalProperties": schema_ref("ObservedService")},
                "certificateThumbprint": nullable
            }
        }),
    );
    schemas.insert(
        "ObservedService".into(),
        json!({
            "type": "object",
            "required": ["ports", "drive", "release", "running"],
            "properties": {"ports": ports, "drive": string, "release": string, "running": {"type": "boolean"}}
        }),
    );
    schemas.insert(
        "PlanStep".into(),
        json!({"description": "One action, tagged by `action`.", "oneOf": steps}),
    );
    schemas.insert(
        "Plan".into(),
        json!({
            "description": "The ordered actions from the observed fleet to the desired state, as `steward plan` prints them.",
            "type": "object",
            "required": ["installation", "release", "mode", "steps", "connectionStrings", "summary"],
            "properties": {
                "installation": string,
                "release": string,
                "mode": schema_ref("Mode"),
                "steps": {"type": "array", "items": schema_ref("PlanStep")},
                "connectionStrings": {
                    "type": "object",
                    "required": ["identityServer", "psws", "client", "api"],
                    "properties": {"identityServer": nullable, "psws": nullable, "client": nullable, "api": nullable}
                },
                "summary": {
                    "type": "object",
                    "required": ["add", "change", "remove"],
                    "properties": {"add": count, "change": count, "remove": count}
                }
            }
        }),
    );
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_router_is_documented() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let source = include_str!("mod.rs");
        let mut routes = 0;
        for piece in source.split(".route(\"").skip(1) {
            let path = piece.split('"').next().unwrap();
            assert!(
                paths.contains_key(path),
                "{path} is not in the OpenAPI document"
            );
            routes += 1;
        }
        assert!(routes >= 10, "found only {routes} routes");
    }

    #[test]
    fn schemas_resolve_and_are_openapi_3_1() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        for name in [
            "StatusDocument",
            "ResourceStatus",
            "ServerStatus",
            "Plan",
            "Observed",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
        let status = &schemas["StatusDocument"]["properties"];
        for field in [
            "generation",
            "valid",
            "errors",
            "servers",
            "serviceKinds",
            "hl7",
            "events",
        ] {
            assert!(
                status.get(field).is_some(),
                "status has no {field}: {status}"
            );
        }
    }
}
