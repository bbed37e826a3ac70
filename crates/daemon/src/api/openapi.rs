//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 description of every route.
//!
//! Every response schema is derived (schemars) from the very type the handler serializes:
//! the status document, a resource, the observed fleet and the plan. A test runs a lab
//! daemon and validates its real responses against this document strictly, so the two
//! cannot drift unnoticed.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};
use steward_controllers::ResourceStatus;
use steward_model::plan::{Observed, Plan};

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
    let observed = generator.subschema_for::<Observed>();
    let plan = generator.subschema_for::<Plan>();
    let mut schemas: Map<String, Value> = generator.take_definitions(true);
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
                "summary": "The dashboard model: desired state, installation, database, servers (standby servers left out) with services, health, last probe and conditions, service kinds against minimumHealthy, AD directories, HL7 listener, Notifications objects with their delivery, recent events.",
                "operationId": "status",
                "parameters": [
                    {"name": "compact", "in": "query", "required": false,
                     "description": "false (default): every service; true: services in place (installed, declared, and passing or a held HL7 standby, which the dashboard counts as healthy) are left out of servers[].services and counted in compact.healthyOmitted; auto: true above 100 servers (what the dashboard asks)",
                     "schema": {"type": "string", "enum": ["false", "true", "auto"]}},
                    {"name": "detail", "in": "query", "required": false,
                     "description": "comma-separated server names that keep every service in a compact document",
                     "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": json_body("the status document", status.to_value()),
                    "400": json_body("an unknown compact mode", schema_ref("Error"))
                }
            }},
            "/api/v1/resources/{kind}/{name}": {"get": {
                "summary": "One object: conditions (Ready, Progressing, Degraded, Stalled), observedGeneration, recent events and detail. Standby servers are here too.",
                "operationId": "resource",
                "parameters": [
                    {"name": "kind", "in": "path", "required": true,
                     "description": "installation, server, certificate, service, activedirectory, notifications or upgradepolicy (a plural and any case are accepted)",
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
                "responses": {"200": json_body("the observed fleet", observed.to_value())}
            }},
            "/api/v1/plan": {"get": {
                "summary": "What the daemon would still do for the live desired state (nothing once converged).",
                "operationId": "plan",
                "responses": {
                    "200": json_body("the plan", plan.to_value()),
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
                    "403": text("manual reconcile is disabled (no token configured)"),
                    "429": text("too many failed attempts from this address; see Retry-After")
                }
            }},
            "/api/v1/hl7/failback": {"post": {
                "summary": "Move the HL7 listener back to hl7.preferred (what failback: manual waits for).",
                "operationId": "hl7Failback",
                "security": [{"bearer": []}],
                "responses": {
                    "202": text("HL7 failback requested"),
                    "401": text("bearer token missing or wrong"),
                    "403": text("HL7 failback is disabled (no token configured)"),
                    "429": text("too many failed attempts from this address; see Retry-After")
                }
            }},
            "/api/v1/backup": {"get": {
                "summary": "An encrypted backup of the daemon's state (the archive `steward backup` writes), encrypted to the daemon's STEWARD_BACKUP_PASSPHRASE.",
                "operationId": "backup",
                "security": [{"bearer": []}],
                "responses": {
                    "200": text_body("age-encrypted archive", "application/octet-stream"),
                    "401": text("bearer token missing or wrong"),
                    "403": text("backup download is disabled (no token configured)"),
                    "429": text("too many failed attempts from this address; see Retry-After"),
                    "500": json_body("the backup failed (the daemon's log says why)", schema_ref("Error")),
                    "503": json_body("no STEWARD_BACKUP_PASSPHRASE in the daemon's environment", schema_ref("Error"))
                }
            }},
            "/api/v1/upgrade/resume": {"post": {
                "summary": "Resume a halted rolling upgrade: the failed server is upgraded again from its start.",
                "operationId": "upgradeResume",
                "security": [{"bearer": []}],
                "responses": {
                    "202": text("upgrade resumed"),
                    "401": text("bearer token missing or wrong"),
                    "403": text("upgrade resume is disabled (no token configured)"),
                    "409": text("no halted upgrade (or a refused one, which only a new commit changes)"),
                    "429": text("too many failed attempts from this address; see Retry-After")
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
                    "404": json_body("no steward CA: certificateAuthority.mode is existing", schema_ref("Error"))
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

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
            "HostInfo",
            "Plan",
            "PlanStep",
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

    /// `schema` (a response schema of the document) with the document's components, every
    /// object closed: a field the document does not name fails, as in the e2e test.
    fn strict_validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
        fn close(v: &mut Value) {
            match v {
                Value::Object(map) => {
                    if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                        map.insert("additionalProperties".into(), Value::Bool(false));
                    }
                    map.values_mut().for_each(close);
                }
                Value::Array(items) => items.iter_mut().for_each(close),
                _ => {}
            }
        }
        let mut schema = schema.clone();
        schema["components"] = doc["components"].clone();
        close(&mut schema);
        jsonschema::validator_for(&schema).expect("the schema compiles")
    }

    fn response_schema(doc: &Value, path: &str) -> Value {
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            .clone()
    }

    /// A plan with one step of every action, as the planner serializes it.
    fn plan_with_every_step() -> Value {
        use steward_model::plan::{every_step, Summary};
        use steward_model::resource::Mode;
        use steward_model::snapshot::ConnectionStrings;
        let steps = every_step();
        serde_json::to_value(Plan {
            installation: "hospital".into(),
            release: "6.12.1".into(),
            mode: Mode::AutoCorrect,
            steps,
            connection_strings: ConnectionStrings {
                identity_server: Some("https://app1.example.eng:7001/identityserver".into()),
                ..ConnectionStrings::default()
            },
            summary: Summary {
                add: 5,
                change: 2,
                remove: 1,
            },
        })
        .unwrap()
    }

    #[test]
    fn plan_schema_is_derived_and_admits_every_step_in_camel_case_only() {
        let doc = document();
        let validator = strict_validator(&doc, &response_schema(&doc, "/api/v1/plan"));
        let plan = plan_with_every_step();
        let errors: Vec<String> = validator
            .iter_errors(&plan)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        // The old snake_case field names are not part of the contract.
        let mut snake = plan.clone();
        let issue = snake["steps"][1].as_object_mut().unwrap();
        let sans = issue.remove("subjectAltNames").unwrap();
        issue.insert("subject_alt_names".into(), sans);
        assert!(!validator.is_valid(&snake), "a snake_case field passed");
        let mut unknown = plan;
        unknown["steps"][0]["action"] = json!("reboot");
        assert!(!validator.is_valid(&unknown), "an unknown action passed");
    }

    #[test]
    fn observed_schema_is_derived_from_the_planner_type() {
        let doc = document();
        let validator = strict_validator(&doc, &response_schema(&doc, "/api/v1/observed"));
        let observed = json!({
            "caExists": true,
            "servers": {"app1": {
                "certificateThumbprint": "AB12",
                "services": {"PSIS": {"ports": [7001], "drive": "C:", "release": "6.12.1", "running": true}}
            }}
        });
        // What the planner reads back is what the document admits.
        let parsed: Observed = serde_json::from_value(observed.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), observed);
        assert!(validator.is_valid(&observed));
        let mut bad = observed;
        bad["servers"]["app1"]["services"]["NOPE"] =
            bad["servers"]["app1"]["services"]["PSIS"].clone();
        assert!(!validator.is_valid(&bad), "an unknown service kind passed");
    }

    /// `(METHOD, path) -> (auth, statuses)` of the route table of docs/http-api.md.
    fn documented_routes(doc: &str) -> BTreeMap<(String, String), (String, BTreeSet<String>)> {
        let mut routes = BTreeMap::new();
        for line in doc
            .lines()
            .filter(|l| l.starts_with("| GET ") || l.starts_with("| POST "))
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let statuses = cells[4]
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| w.len() == 3)
                .map(str::to_owned)
                .collect();
            let key = (cells[1].to_owned(), cells[2].trim_matches('`').to_owned());
            routes.insert(key, (cells[3].to_owned(), statuses));
        }
        routes
    }

    /// The same from the OpenAPI document.
    fn openapi_routes(doc: &Value) -> BTreeMap<(String, String), (String, BTreeSet<String>)> {
        let mut routes = BTreeMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let auth = if op.get("security").is_some() {
                    "bearer"
                } else {
                    "none"
                };
                let statuses = op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                routes.insert(
                    (method.to_uppercase(), path.clone()),
                    (auth.to_owned(), statuses),
                );
            }
        }
        routes
    }

    #[test]
    fn docs_http_api_lists_exactly_the_documented_routes() {
        let docs = documented_routes(include_str!("../../../../docs/http-api.md"));
        let openapi = openapi_routes(&document());
        assert!(openapi.len() >= 11, "{openapi:?}");
        assert_eq!(
            docs, openapi,
            "docs/http-api.md differs from the OpenAPI document"
        );
    }
}
