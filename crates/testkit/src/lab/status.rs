//! Reading the daemon's status document, events and log lines.

use std::time::SystemTime;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn server<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["servers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

pub fn service<'a>(status: &'a Value, server_name: &str, kind: &str) -> Option<&'a Value> {
    server(status, server_name)?["services"]
        .as_array()?
        .iter()
        .find(|s| s["kind"] == kind)
}

/// The condition of `type_` on an object with `conditions[]`.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

pub fn condition_true(object: &Value, type_: &str) -> bool {
    condition(object, type_).is_some_and(|c| c["status"] == "True")
}

/// Whether a service entry is installed, running and healthy.
pub fn service_up(s: &Value) -> bool {
    s["installed"] == true && s["healthy"] == true && s["status"] == "running"
}

/// Whether `server`/`kind` is up and its `Ready` condition turned true after `since`
/// (a verdict judged after that moment, not a stale one from before it).
pub fn ready_since(status: &Value, server: &str, kind: &str, since: OffsetDateTime) -> bool {
    service(status, server, kind).is_some_and(|svc| {
        service_up(svc)
            && condition(svc, "Ready").is_some_and(|c| {
                c["status"] == "True"
                    && c["lastTransitionTime"]
                        .as_str()
                        .and_then(parse_time)
                        .is_some_and(|t| t > since)
            })
    })
}

/// Every service declared in the files is installed, running and healthy, and there is
/// at least one.
pub fn all_declared_healthy(status: &Value) -> bool {
    let declared: Vec<&Value> = status["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["services"].as_array().into_iter().flatten())
        .filter(|s| s["desired"] != false)
        .collect();
    !declared.is_empty() && declared.iter().all(|s| service_up(s))
}

/// (object, reason, time) of every event, oldest first.
pub fn events(status: &Value) -> Vec<(String, String, OffsetDateTime, String)> {
    let mut out: Vec<_> = status["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["object"].as_str()?.to_owned(),
                e["reason"].as_str()?.to_owned(),
                parse_time(e["time"].as_str()?)?,
                e["message"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect();
    out.sort_by_key(|e| e.2);
    out
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The time stamp that starts a tracing log line (`2026-01-01T10:00:00.123456Z  INFO ...`).
pub fn log_line_time(line: &str) -> Option<OffsetDateTime> {
    parse_time(line.split_whitespace().next()?)
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::from(SystemTime::now())
}

/// A compact view of a status document for failure messages.
pub fn summarize_status(body: &str) -> String {
    let Ok(doc) = serde_json::from_str::<Value>(body) else {
        return body.chars().take(2000).collect();
    };
    let mut out = format!(
        "generation={} valid={} errors={}\n",
        doc["generation"], doc["valid"], doc["errors"]
    );
    for s in doc["servers"].as_array().into_iter().flatten() {
        let conds: Vec<String> = s["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "True")
            .map(|c| format!("{}:{}", c["type"], c["reason"]))
            .collect();
        out += &format!(
            "{} agentUp={} {}\n",
            s["name"],
            s["agentUp"],
            conds.join(" ")
        );
        for v in s["services"].as_array().into_iter().flatten() {
            let conds: Vec<String> = v["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["status"] == "True")
                .map(|c| format!("{}:{} {}", c["type"], c["reason"], c["message"]))
                .collect();
            out += &format!(
                "  {} port={} desired={} installed={} healthy={} status={} {}\n",
                v["kind"],
                v["port"],
                v["desired"],
                v["installed"],
                v["healthy"],
                v["status"],
                conds.join(" ")
            );
        }
    }
    out
}
