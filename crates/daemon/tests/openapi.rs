//! The OpenAPI document against a running lab daemon: every route answers with a status
//! the document lists, in its media type, and every JSON body validates against the
//! document's schema, strictly (a field the document does not name is a failure). Also
//! the dashboard model once converged: a standby server (`monitor: false`) is left off
//! `servers[]` but has its resource, every service kind meets `minimumHealthy`, and the
//! probe metrics are there, and docs/metrics.md lists exactly the metrics served.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use steward_testkit::http::Request;
use steward_testkit::lab::{LabDaemon, Options};

use serde_json::{json, Value};

#[path = "openapi/metrics_doc.rs"]
mod metrics_doc;

/// The lab's number: its API is on 127.0.212.1:9464, its servers from 127.0.212.11.
const LAB_NUMBER: u8 = 212;
const API: &str = "127.0.212.1:9464";
const TOKEN: &str = "openapi-test-token";

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

const BACKUP_PASSPHRASE: &str = "openapi-test-backup-passphrase";

/// One request to the lab's API, with the reconcile token if given.
fn request(method: &str, path: &str, token: Option<&str>) -> std::io::Result<Reply> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let resp = Request {
        method,
        headers: &headers,
        ..Request::get(API, path)
    }
    .send()?;
    Ok(Reply {
        status: resp.status,
        content_type: resp.header("content-type").unwrap_or_default().to_owned(),
        body: resp.body,
    })
}

fn get(path: &str) -> Reply {
    request("GET", path, None).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Every object schema that names its properties admits no others: a field served but
/// not documented fails the validation.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

struct Checker {
    doc: Value,
    components: Value,
    checked: Vec<String>,
}

impl Checker {
    /// The documented response of `template` for `method` and `status`, checked against
    /// the real `reply`.
    fn check(&mut self, method: &str, template: &str, reply: &Reply) {
        let what = format!("{} {template} -> {}", method.to_uppercase(), reply.status);
        let response = &self.doc["paths"][template][method]["responses"][reply.status.to_string()];
        assert!(response.is_object(), "{what}: not in the OpenAPI document");
        let content = response["content"].as_object().expect("content");
        let (media, spec) = content.iter().next().unwrap();
        let base = |m: &str| m.split(';').next().unwrap().trim().to_owned();
        assert_eq!(
            base(&reply.content_type),
            base(media),
            "{what}: served as {}",
            reply.content_type
        );
        if base(media) == "application/json" {
            let validator = self.validator(&spec["schema"], &what);
            let body = reply.json();
            let errors: Vec<String> = validator
                .iter_errors(&body)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{what}: the response does not match the document:\n{}\n{}",
                errors.join("\n"),
                serde_json::to_string_pretty(&body).unwrap()
            );
        }
        self.checked.push(what);
    }

    fn validator(&self, schema: &Value, what: &str) -> jsonschema::Validator {
        let mut schema = schema.clone();
        schema
            .as_object_mut()
            .unwrap()
            .insert("components".into(), self.components.clone());
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"))
    }

    /// `steward plan --json` (the CLI) prints what `GET /api/v1/plan` serves: the same
    /// documented, camelCase schema, here with steps to take (a fresh fleet, or one only
    /// partly converged).
    fn check_cli_plan(&mut self, extra: &[&str], dir: &Path) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_steward"))
            .arg("plan")
            .args(extra)
            .arg("--json")
            .arg(dir)
            .output()
            .unwrap();
        let what = format!("steward plan {} --json", extra.join(" "));
        assert!(
            out.status.code().is_some_and(|c| c == 0 || c == 2),
            "{what}: {out:?}"
        );
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        let schema = &self.doc["paths"]["/api/v1/plan"]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"];
        let validator = self.validator(schema, &what);
        let errors: Vec<String> = validator
            .iter_errors(&plan)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{what}: {}\n{plan:#}", errors.join("\n"));
        self.checked.push(what);
        plan
    }

    /// The checks bite: a field the document does not name, or a wrong type, fails.
    fn rejects_drift(&self, status: &Value) {
        let schema = &self.doc["paths"]["/api/v1/status"]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"];
        let validator = self.validator(schema, "status");
        assert!(validator.is_valid(status));
        let mut extra = status.clone();
        extra["servers"][0]["undocumented"] = json!(1);
        assert!(!validator.is_valid(&extra), "an undocumented field passed");
        let mut wrong = status.clone();
        wrong["servers"][0]["services"][0]["lastProbe"]["time"] = json!("yesterday");
        assert!(!validator.is_valid(&wrong), "a malformed date-time passed");
    }
}

#[test]
fn the_openapi_document_describes_every_real_response() {
    let options = Options {
        env: vec![
            ("STEWARD_RECONCILE_TOKEN", TOKEN),
            ("STEWARD_BACKUP_PASSPHRASE", BACKUP_PASSPHRASE),
        ],
        ..Options::default()
    };
    let mut lab = LabDaemon::new(
        Path::new(env!("CARGO_BIN_EXE_steward")),
        LAB_NUMBER,
        options,
    );
    // app2 becomes a standby server: reconciled, left off the dashboard.
    lab.edit(
        "servers/app2.yaml",
        "  hostname: app2.example.eng\n",
        "  hostname: app2.example.eng\n  monitor: false\n",
    );
    // HAProxy in front (the lab starts it): the load balancer's status and member series.
    lab.edit(
        "installation.yaml",
        "  database:\n",
        "  loadBalancer: {fqdn: lb.example.eng, vendor: haproxy}\n  database:\n",
    );
    // Mail notifications to a server that is not there: shown with their delivery state.
    std::fs::write(
        lab.desired.join("notifications.yaml"),
        "apiVersion: steward/v1\nkind: Notifications\nmetadata: {name: admins}\nspec:\n  smtp: {server: 127.0.0.1, port: 1, tls: none}\n  from: steward@example.eng\n  to: [ps-admins@example.eng]\n  events: [ServiceDown, ServiceRecovered]\n",
    )
    .unwrap();
    // An upgrade policy: a resource of its own.
    std::fs::write(
        lab.desired.join("upgrade-policy.yaml"),
        "apiVersion: steward/v1\nkind: UpgradePolicy\nmetadata: {name: default}\nspec:\n  healthGate: 1s\n  from: [\"6.*\"]\n",
    )
    .unwrap();
    lab.spawn();
    let dir = lab.desired.clone();
    let openapi = get("/api/v1/openapi.json");
    let doc = openapi.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut components = json!({"schemas": doc["components"]["schemas"].clone()});
    strict(&mut components);
    let mut checker = Checker {
        doc: doc.clone(),
        components,
        checked: Vec::new(),
    };
    checker.check("get", "/api/v1/openapi.json", &openapi);
    // A fresh fleet: every kind of first step (CA, certificates, database, installs).
    let fresh = checker.check_cli_plan(&[], &dir);
    let issue = fresh["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "issueCertificate")
        .expect("a fresh fleet's plan issues certificates");
    assert!(issue["subjectAltNames"].is_array(), "{issue}");
    // Possibly before the first load (503), certainly a documented answer.
    checker.check("get", "/readyz", &get("/readyz"));
    checker.check("get", "/api/v1/status", &get("/api/v1/status"));

    // Converged: every service on every server (the standby one too) healthy.
    let converged = || {
        let Ok(r) = request("GET", "/api/v1/status", None) else {
            return false;
        };
        let status = r.json();
        let kinds = status["serviceKinds"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let members_known = status["loadBalancer"]["farms"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["members"][0]["state"] == "up"));
        kinds.len() == 11 && kinds.iter().all(|k| k["healthy"] == true) && members_known
    };
    lab.wait_until("convergence", Duration::from_secs(150), || {
        converged().then_some(())
    });

    let status = get("/api/v1/status");
    checker.check("get", "/api/v1/status", &status);
    let status = status.json();
    let names: Vec<&str> = status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app1"], "app2 is standby (monitor: false)");
    checker.rejects_drift(&status);
    assert_eq!(status["hl7"]["activeListener"], "app2");
    assert_eq!(status["valid"], true);
    // The lab's slapd stands in for the example's directory: bound, every group present.
    let directory = &status["activeDirectory"][0];
    assert_eq!(directory["name"], "corp", "{status}");
    assert_eq!(directory["up"], true, "{directory}");
    assert_eq!(status["notifications"][0]["name"], "admins");
    assert_eq!(status["notifications"][0]["server"], "127.0.0.1:1");
    let app1 = &status["servers"][0];
    assert!(app1["host"]["computerName"].is_string());
    assert!(app1["certificate"]["notAfter"].is_string());
    for service in app1["services"].as_array().unwrap() {
        assert_eq!(service["healthy"], true, "{service}");
        let probe = &service["lastProbe"];
        assert_eq!(probe["success"], true, "{service}");
        assert!(probe["certificateNotAfter"].is_string(), "{service}");
        assert_eq!(service["conditions"].as_array().unwrap().len(), 4);
    }
    let installation = status["installation"]["name"].as_str().unwrap().to_owned();

    let app2 = get("/api/v1/resources/server/app2");
    checker.check("get", "/api/v1/resources/{kind}/{name}", &app2);
    let app2 = app2.json();
    assert_eq!(app2["detail"]["monitor"], false);
    assert!(app2["observedGeneration"].is_u64());
    assert_eq!(app2["conditions"][0]["type"], "Ready");
    assert_eq!(app2["conditions"][0]["status"], "True");
    for path in [
        "/api/v1/resources/server/app1".to_owned(),
        "/api/v1/resources/service/app2.HL7".to_owned(),
        "/api/v1/resources/service/app1:psis".to_owned(),
        "/api/v1/resources/certificate/app1".to_owned(),
        format!("/api/v1/resources/installation/{installation}"),
        "/api/v1/resources/notifications/admins".to_owned(),
        "/api/v1/resources/activedirectory/corp".to_owned(),
        "/api/v1/resources/upgradepolicy/default".to_owned(),
        "/api/v1/resources/server/nope".to_owned(),
    ] {
        let reply = get(&path);
        assert_eq!(reply.status == 404, path.ends_with("nope"), "{path}");
        checker.check("get", "/api/v1/resources/{kind}/{name}", &reply);
    }
    let policy = get("/api/v1/resources/upgradepolicy/default").json();
    assert_eq!(policy["kind"], "UpgradePolicy");
    assert_eq!(policy["detail"]["healthGateSeconds"], 1.0);
    assert_eq!(policy["detail"]["upgrade"]["phase"], "Idle", "{policy}");
    let hl7 = get("/api/v1/resources/service/app2.HL7").json();
    assert_eq!(hl7["detail"]["lastProbe"]["success"], true);
    assert!(hl7["events"].as_array().is_some_and(|e| !e.is_empty()));

    for path in [
        "/healthz",
        "/readyz",
        "/api/v1/observed",
        "/api/v1/plan",
        "/ca.pem",
        "/",
    ] {
        checker.check("get", path, &get(path));
    }
    let live = checker.check_cli_plan(&["--live", "--url", &format!("http://{API}")], &dir);
    assert_eq!(live["summary"], json!({"add": 0, "change": 0, "remove": 0}));
    let metrics = get("/metrics");
    checker.check("get", "/metrics", &metrics);
    let metrics = String::from_utf8(metrics.body).unwrap();
    for line in [
        "steward_probe_success{server=\"app2\",service=\"HL7\"} 1",
        "steward_probe_success{server=\"app1\",service=\"PSIS\"} 1",
        "steward_probe_http_status_code{server=\"app1\",service=\"PSIS\"} 200",
        "steward_probe_http_status_code{server=\"app2\",service=\"HL7\"} 0",
        "steward_service_kind_healthy{service=\"PSWS\"} 1",
        "steward_probe_ssl_earliest_cert_expiry_seconds{server=\"app1\",service=\"PSIS\"} ",
        "steward_probe_duration_seconds{server=\"app2\",service=\"JOB\"} ",
    ] {
        assert!(metrics.contains(line), "no `{line}` in /metrics");
    }
    let metrics_md = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md"),
    )
    .unwrap();
    let problems = metrics_doc::differences(&metrics, &metrics_md);
    assert!(
        problems.is_empty(),
        "docs/metrics.md vs /metrics:\n{}",
        problems.join("\n")
    );

    let denied = request("POST", "/api/v1/reconcile", None).unwrap();
    assert_eq!(denied.status, 401);
    checker.check("post", "/api/v1/reconcile", &denied);
    let accepted = request("POST", "/api/v1/reconcile", Some(TOKEN)).unwrap();
    assert_eq!(accepted.status, 202);
    checker.check("post", "/api/v1/reconcile", &accepted);
    let denied = request("POST", "/api/v1/hl7/failback", None).unwrap();
    assert_eq!(denied.status, 401);
    checker.check("post", "/api/v1/hl7/failback", &denied);
    let accepted = request("POST", "/api/v1/hl7/failback", Some(TOKEN)).unwrap();
    assert_eq!(accepted.status, 202);
    checker.check("post", "/api/v1/hl7/failback", &accepted);

    let denied = request("POST", "/api/v1/upgrade/resume", None).unwrap();
    assert_eq!(denied.status, 401);
    checker.check("post", "/api/v1/upgrade/resume", &denied);
    // The bundled desired state has no UpgradePolicy: nothing is halted.
    let nothing = request("POST", "/api/v1/upgrade/resume", Some(TOKEN)).unwrap();
    assert_eq!(nothing.status, 409);
    checker.check("post", "/api/v1/upgrade/resume", &nothing);

    let denied = request("GET", "/api/v1/backup", None).unwrap();
    assert_eq!(denied.status, 401);
    checker.check("get", "/api/v1/backup", &denied);
    let backup = request("GET", "/api/v1/backup", Some(TOKEN)).unwrap();
    assert_eq!(backup.status, 200);
    checker.check("get", "/api/v1/backup", &backup);
    let passphrase = steward_backup::Passphrase::new(BACKUP_PASSPHRASE.to_owned()).unwrap();
    let archive = steward_backup::open(&backup.body, &passphrase).expect("the backup opens");
    assert!(archive.entries.iter().any(|e| e.path == "ca/ca.key"));
    let log = lab.log_all();
    assert!(
        !log.contains(BACKUP_PASSPHRASE),
        "the passphrase is in the log"
    );

    // Every documented path was exercised.
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(
            checker
                .checked
                .iter()
                .any(|c| c.contains(&format!(" {path} -> "))),
            "{path} is documented but was not checked: {:?}",
            checker.checked
        );
    }
}
