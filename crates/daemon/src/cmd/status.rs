//! `steward status [--url URL] [--json]`: the status of a running daemon.
//!
//! The exit code answers "is everything as declared?" for scripts and monitoring, as
//! `systemctl is-active` and Nagios plugins do: 0 when every declared service is installed
//! and healthy on a reachable agent, every Active Directory bound and as declared, and the
//! load balancer steward drives configured, under a valid, applied desired state; 3 otherwise (the problems are listed); 1 when the daemon cannot be asked; 2 for usage errors.

mod table;

use serde_json::Value;

use super::console::{err_line, out, out_line, OutputError};
use table::Table;

/// Everything declared is installed, healthy and applied.
pub const HEALTHY: u8 = 0;
/// The daemon could not be reached or gave no status document.
pub const UNREACHABLE: u8 = 1;
/// The daemon answered, and something is down, missing, invalid or not applied yet.
pub const DEGRADED: u8 = 3;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 everything declared is installed and healthy; \
3 degraded (a service down or not installed, an agent unreachable, an Active Directory \
that cannot be bound or lacks a role group, a load balancer steward cannot configure, the desired state invalid or not applied yet); 1 the daemon cannot be reached; 2 usage error."
)]
pub struct Args {
    /// The daemon's HTTP address.
    #[arg(long, default_value = super::daemon_client::DEFAULT_URL)]
    url: String,
    /// Print the raw status document (the exit status is the same).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> Result<u8, OutputError> {
    let doc: Value = match super::daemon_client::get_json(&args.url, "/api/v1/status").await {
        Ok(doc) => doc,
        Err(e) => {
            err_line(format_args!("steward status: {e}"))?;
            return Ok(UNREACHABLE);
        }
    };
    let problems = problems(&doc);
    if args.json {
        out_line(serde_json::to_string_pretty(&doc).unwrap_or_default())?;
    } else {
        out(render(&doc, &problems))?;
    }
    Ok(if problems.is_empty() {
        HEALTHY
    } else {
        DEGRADED
    })
}

fn yes_no(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "unknown",
    }
}

fn name(v: &Value) -> String {
    printable(v.as_str().unwrap_or("?"))
}

/// Text from the daemon as it may be shown on a terminal: control characters (an escape
/// sequence in an error message) become `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `443, 80`, or `-` for none.
fn port_list(v: &Value) -> String {
    let ports: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    if ports.is_empty() {
        "-".to_owned()
    } else {
        ports.join(", ")
    }
}

/// A service's declared ports; older daemons sent only `port`.
fn declared_ports(svc: &Value) -> String {
    if svc["ports"].as_array().is_some_and(|p| !p.is_empty()) {
        port_list(&svc["ports"])
    } else if svc["port"].is_u64() {
        svc["port"].to_string()
    } else {
        "-".to_owned()
    }
}

/// The Ready condition's reason and message, for saying why a service is not healthy.
fn ready_reason(svc: &Value) -> Option<String> {
    let ready = svc["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?;
    let reason = ready["reason"].as_str().unwrap_or_default();
    let message = ready["message"].as_str().unwrap_or_default();
    Some(printable(&match (reason.is_empty(), message.is_empty()) {
        (true, _) => return None,
        (false, true) => reason.to_owned(),
        (false, false) => format!("{reason}: {message}"),
    }))
}

/// Everything that keeps the fleet from being as declared, one line each. Services the
/// files no longer declare (left installed because `prune` is off) are not problems.
fn problems(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if doc["valid"] != Value::Bool(true) {
        let errors = doc["errors"].as_array().map_or(0, Vec::len);
        out.push(format!(
            "desired state invalid ({errors} error{}); generation {} stays live",
            if errors == 1 { "" } else { "s" },
            doc["generation"]
        ));
    }
    // No observedGeneration yet: the controllers have accepted nothing so far.
    let observed = doc["observedGeneration"].as_u64().unwrap_or(0);
    if let Some(generation) = doc["generation"].as_u64() {
        if observed < generation {
            out.push(format!(
                "generation {generation} not applied yet (controllers at {observed})"
            ));
        }
    }
    // Down: the installer login fails or the database is missing (installs wait for it).
    let db = &doc["database"];
    if db["up"] == Value::Bool(false) {
        let why = ready_reason(db)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        out.push(format!(
            "database {} on {}: down{why}",
            name(&db["name"]),
            name(&db["server"])
        ));
    }
    for server in doc["servers"].as_array().into_iter().flatten() {
        let server_name = name(&server["name"]);
        if server["agentUp"] != Value::Bool(true) {
            out.push(format!("{server_name}: agent not reachable"));
        }
        for svc in server["services"].as_array().into_iter().flatten() {
            if svc["desired"] == Value::Bool(false) {
                continue;
            }
            let what = format!("{server_name} {}", name(&svc["kind"]));
            let why = ready_reason(svc)
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            if svc["installed"] != Value::Bool(true) {
                out.push(format!("{what}: not installed{why}"));
            } else if svc["healthy"] != Value::Bool(true) {
                out.push(format!("{what}: not healthy{why}"));
            }
        }
    }
    // A directory not checked yet (`up: null`) is no problem yet; one that cannot be bound,
    // or lacks a group, or has members that differ, is.
    for directory in doc["activeDirectory"].as_array().into_iter().flatten() {
        let what = format!("Active Directory {}", name(&directory["name"]));
        let not_ready = directory["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "False");
        let why = ready_reason(directory)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        if directory["up"] == Value::Bool(false) {
            out.push(format!("{what}: cannot bind{why}"));
        } else if directory["up"] == Value::Bool(true) && not_ready {
            out.push(format!("{what}: not as declared{why}"));
        }
    }
    // The load balancer steward drives cannot be brought to the declared configuration
    // (haproxy missing, a configuration it rejects, a socket that does not answer ...); a
    // member it does not route to is its service's problem, or a drain on purpose.
    let lb = &doc["loadBalancer"];
    if lb.is_object() {
        if let Some(reason) = lb["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "False")
            .map(|c| name(&c["reason"]))
        {
            out.push(format!("load balancer ({}): {reason}", name(&lb["vendor"])));
        }
    }
    out
}

/// Each farm's ports and every member's state at the load balancer (`-`: no member).
fn load_balancer(lb: &Value) -> String {
    let farms: Vec<&Value> = lb["farms"].as_array().into_iter().flatten().collect();
    let mut servers: Vec<String> = farms
        .iter()
        .flat_map(|f| f["members"].as_array().into_iter().flatten())
        .map(|m| name(&m["server"]))
        .collect();
    servers.sort();
    servers.dedup();
    let mut header = vec!["FARM".to_owned(), "PORTS".to_owned()];
    header.extend(servers.iter().map(|s| s.to_uppercase()));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut table = Table::new(&header);
    for farm in farms {
        let ports: Vec<String> = farm["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| match (l["port"].as_u64(), l["listenPort"].as_u64()) {
                (Some(p), Some(on)) if p != on => format!("{p} (on {on})"),
                (p, _) => p.map_or_else(|| "?".to_owned(), |p| p.to_string()),
            })
            .collect();
        let mut row = vec![name(&farm["kind"]), ports.join(", ")];
        for server in &servers {
            let member = farm["members"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| name(&m["server"]) == *server);
            row.push(match member {
                None => "-".to_owned(),
                Some(m) => m["state"].as_str().unwrap_or("unknown").to_owned(),
            });
        }
        table.row(row);
    }
    format!(
        "\nload balancer: {}\n{}",
        name(&lb["vendor"]),
        table.render()
    )
}

/// A terminal summary: desired state, servers, services (all their ports, declared and
/// listened on), then the problems or the all-clear.
fn render(doc: &Value, problems: &[String]) -> String {
    let mut out = format!(
        "desired state: generation {} ({})\n",
        doc["generation"],
        if doc["valid"] == Value::Bool(true) {
            "valid"
        } else {
            "INVALID"
        }
    );
    for e in doc["errors"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}\n",
            printable(e.as_str().unwrap_or_default())
        ));
    }
    let db = &doc["database"];
    if db.is_object() {
        let state = match db["up"].as_bool() {
            Some(true) => "up",
            Some(false) => "DOWN",
            None => "not checked yet",
        };
        let version = db["version"]
            .as_str()
            .map(|v| format!(" ({})", printable(v)))
            .unwrap_or_default();
        out.push_str(&format!(
            "database: {} on {}: {state}{version}\n",
            name(&db["name"]),
            name(&db["server"])
        ));
    }
    let servers: Vec<&Value> = doc["servers"].as_array().into_iter().flatten().collect();
    let mut agents = Table::new(&["SERVER", "HOSTNAME", "AGENT UP"]);
    let mut services = Table::new(&[
        "SERVER",
        "SERVICE",
        "PORTS",
        "LISTENS ON",
        "INSTALLED",
        "HEALTHY",
    ]);
    let mut count = 0;
    for server in &servers {
        agents.row(vec![
            name(&server["name"]),
            name(&server["hostname"]),
            yes_no(&server["agentUp"]).to_owned(),
        ]);
        for svc in server["services"].as_array().into_iter().flatten() {
            count += 1;
            let kind = if svc["desired"] == Value::Bool(false) {
                format!("{} (not declared)", name(&svc["kind"]))
            } else {
                name(&svc["kind"])
            };
            services.row(vec![
                name(&server["name"]),
                kind,
                declared_ports(svc),
                port_list(&svc["listenPorts"]),
                yes_no(&svc["installed"]).to_owned(),
                yes_no(&svc["healthy"]).to_owned(),
            ]);
        }
    }
    if !servers.is_empty() {
        out.push('\n');
        out.push_str(&agents.render());
    }
    if count > 0 {
        out.push('\n');
        out.push_str(&services.render());
    }
    if doc["loadBalancer"].is_object() {
        out.push_str(&load_balancer(&doc["loadBalancer"]));
    }
    out.push('\n');
    if problems.is_empty() {
        out.push_str(&format!(
            "all {count} service{} installed and healthy\n",
            if count == 1 { "" } else { "s" }
        ));
    } else {
        out.push_str(&format!(
            "{} problem{}:\n",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        ));
        for p in problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "generation": 3, "observedGeneration": 3, "valid": true, "errors": [],
            "servers": [
                {"name": "app1", "hostname": "app1.example.eng", "agentUp": true, "services": [
                    {"kind": "PSIS", "port": 7001, "ports": [7001], "listenPorts": [7001],
                     "installed": true, "healthy": true, "desired": true},
                    {"kind": "ADMIN", "port": 443, "ports": [443, 80], "listenPorts": [10443, 10080],
                     "installed": true, "healthy": true, "desired": true}]},
                {"name": "a-server-with-a-rather-long-name", "hostname": "long.example.eng",
                 "agentUp": true, "services": [
                    {"kind": "EMERGENCY", "port": 7005, "ports": [7005, 7006],
                     "listenPorts": [7005, 7006], "installed": true, "healthy": true,
                     "desired": true}]}]
        })
    }

    #[test]
    fn every_port_is_shown_declared_and_listened_on() {
        let doc = doc();
        let text = render(&doc, &problems(&doc));
        let admin = text.lines().find(|l| l.contains("ADMIN")).unwrap();
        assert!(
            admin.contains("443, 80") && admin.contains("10443, 10080"),
            "{admin}"
        );
        let emergency = text.lines().find(|l| l.contains("EMERGENCY")).unwrap();
        assert!(emergency.contains("7005, 7006"), "{emergency}");
        assert!(
            text.ends_with("all 3 services installed and healthy\n"),
            "{text}"
        );
    }

    #[test]
    fn columns_stay_aligned_with_long_names() {
        let doc = doc();
        let text = render(&doc, &[]);
        let lines: Vec<&str> = text.lines().collect();
        let header = lines
            .iter()
            .find(|l| l.starts_with("SERVER") && l.contains("SERVICE"))
            .unwrap();
        let healthy_col = header.find("HEALTHY").unwrap();
        let ports_col = header.find("PORTS").unwrap();
        for kind in ["PSIS", "ADMIN", "EMERGENCY"] {
            let line = lines.iter().find(|l| l.contains(kind)).unwrap();
            assert_eq!(line.rfind("yes"), Some(healthy_col), "{text}");
            assert_eq!(line.as_bytes()[ports_col - 1], b' ', "{text}");
            assert!(
                line[ports_col..].starts_with(|c: char| c.is_ascii_digit()),
                "{text}"
            );
        }
    }

    #[test]
    fn directories_that_cannot_be_bound_or_differ_are_problems() {
        let mut doc = doc();
        let conditions = |reason: &str, message: &str| json!([{"type": "Ready", "status": "False", "reason": reason, "message": message}]);
        doc["activeDirectory"] = json!([
            {"name": "corp", "up": false, "conditions": conditions("BindFailed", "invalidCredentials (49)")},
            {"name": "lab", "up": true, "conditions": conditions("GroupMissing", "missing role group(s): PS-Users")},
            {"name": "new", "up": null, "conditions": conditions("Pending", "not reconciled yet")},
            {"name": "fine", "up": true, "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": ""}]},
        ]);
        assert_eq!(
            problems(&doc),
            [
                "Active Directory corp: cannot bind (BindFailed: invalidCredentials (49))",
                "Active Directory lab: not as declared (GroupMissing: missing role group(s): PS-Users)",
            ]
        );
    }

    #[test]
    fn down_missing_and_unapplied_things_are_problems() {
        let mut doc = doc();
        doc["servers"][0]["services"][0]["healthy"] = json!(false);
        doc["servers"][0]["services"][0]["conditions"] = json!([{"type": "Ready",
            "status": "False", "reason": "HealthCheckFailing", "message": "refused\u{1b}[31m"}]);
        doc["servers"][1]["services"][0]["installed"] = json!(false);
        doc["servers"][1]["agentUp"] = json!(null);
        doc["valid"] = json!(false);
        doc["errors"] = json!(["a.yaml:1:1: error[x]: y"]);
        doc["generation"] = json!(4);
        doc["database"] = json!({"server": "sql1", "name": "PS", "up": false, "conditions": [
            {"type": "Ready", "status": "False", "reason": "Unreachable", "message": "refused"}]});
        let found = problems(&doc);
        assert_eq!(
            found,
            [
                "desired state invalid (1 error); generation 4 stays live",
                "generation 4 not applied yet (controllers at 3)",
                "database PS on sql1: down (Unreachable: refused)",
                "app1 PSIS: not healthy (HealthCheckFailing: refused?[31m)",
                "a-server-with-a-rather-long-name: agent not reachable",
                "a-server-with-a-rather-long-name EMERGENCY: not installed",
            ]
        );
        let shown = render(&doc, &found);
        assert!(
            shown.contains("6 problems:\n  desired state invalid"),
            "{shown}"
        );
        assert!(shown.contains("\ndatabase: PS on sql1: DOWN\n"), "{shown}");
    }

    #[test]
    fn the_load_balancer_shows_every_listener_and_member_and_a_failure_is_a_problem() {
        let mut doc = doc();
        let member = |server: &str, state: Value| json!({"server": server, "state": state});
        doc["loadBalancer"] = json!({"vendor": "haproxy", "conditions": [], "farms": [
            {"kind": "PSIS", "port": 7001, "members": [member("app1", json!("up")), member("app2", json!("drain"))],
             "listeners": [{"port": 7001, "listenPort": 7001, "members": []}]},
            {"kind": "ADMIN", "port": 443, "members": [member("app1", json!("down"))],
             "listeners": [{"port": 443, "listenPort": 10443, "members": []},
                           {"port": 80, "listenPort": 10080, "members": []}]},
            {"kind": "HL7", "port": 2244, "members": [member("app2", Value::Null)],
             "listeners": [{"port": 2244, "listenPort": null, "members": []}]}]});
        let text = render(&doc, &problems(&doc));
        assert!(text.contains("load balancer: haproxy\n"), "{text}");
        let row = |kind: &str| {
            text.lines()
                .find(|l| l.starts_with(kind))
                .unwrap()
                .to_owned()
        };
        let psis = row("PSIS");
        assert!(
            psis.contains("7001") && psis.contains("up") && psis.contains("drain"),
            "{psis}"
        );
        let admin = row("ADMIN");
        assert!(admin.contains("443 (on 10443), 80 (on 10080)"), "{admin}");
        assert!(
            admin.contains("down") && admin.trim_end().ends_with('-'),
            "{admin}"
        );
        assert!(row("HL7").contains("unknown"), "{text}");
        // Members' states are their services' business; the load balancer itself is fine.
        assert!(problems(&doc).is_empty(), "{:?}", problems(&doc));
        doc["loadBalancer"]["conditions"] = json!([{"type": "Ready", "status": "False",
            "reason": "ConfigRejected", "message": "haproxy rejected the configuration: ..."}]);
        assert_eq!(problems(&doc), ["load balancer (haproxy): ConfigRejected"]);
    }

    #[test]
    fn services_no_longer_declared_are_shown_but_not_problems() {
        let mut doc = doc();
        doc["servers"][0]["services"][0]["desired"] = json!(false);
        doc["servers"][0]["services"][0]["healthy"] = json!(false);
        assert!(problems(&doc).is_empty());
        assert!(render(&doc, &[]).contains("PSIS (not declared)"));
    }
}
