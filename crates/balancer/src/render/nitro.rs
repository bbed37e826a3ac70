//! Citrix ADC (NetScaler): a NITRO document, one array per resource type in the order they
//! are applied (servers, service groups, monitors, their bindings, virtual servers).
//!
//! As in the vendor guide: servers by FQDN, one service group per service on its port,
//! persistence SOURCEIP with a 10-minute time-out when `affinity: client`. TLS is passed
//! through (`SSL_BRIDGE`), like ARR with SSL offloading off, so the ADC holds no server key.
//! A health test is two monitors when it has a response match: `HTTP` for the status
//! codes and `HTTP-ECV` for the body, both over TLS (`secure: YES`).

use serde_json::{json, Value};
use steward_model::resource::Affinity;

use crate::farm::{CheckKind, Farm, Farms, Listener};
use crate::BalancerError;

pub fn render(farms: &Farms) -> Result<String, BalancerError> {
    if farms.farms.iter().all(|f| f.routed().next().is_none()) {
        return Err(BalancerError::EmptyDeclaration("NITRO document"));
    }
    let address = farms.address.map(|a| a.to_string()).unwrap_or_default();
    let idle = farms.idle_timeout.as_secs();
    let mut servers = Vec::new();
    let mut groups = Vec::new();
    let mut members = Vec::new();
    let mut monitors = Vec::new();
    let mut monitor_bindings = Vec::new();
    let mut vservers = Vec::new();
    let mut vserver_bindings = Vec::new();
    for farm in &farms.farms {
        for m in farm.routed() {
            let server = json!({"name": m.server, "domain": m.hostname});
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
        let check_monitors = monitors_of(farm);
        for listener in &farm.listeners {
            let id = format!("ps_{}", farm.id(listener));
            let service_type = service_type(farm, listener);
            groups.push(json!({
                "servicegroupname": id,
                "servicetype": service_type,
                "cltimeout": idle,
                "svrtimeout": idle,
                "comment": format!("{} port {}", farm.title, listener.port),
            }));
            for m in farm.routed() {
                if let Some(port) = m.ports.get(listener.slot) {
                    members.push(
                        json!({"servicegroupname": id, "servername": m.server, "port": port}),
                    );
                }
            }
            for monitor in &check_monitors {
                let mut monitor = monitor.clone();
                let name = format!("{id}_{}", monitor["monitorname"].as_str().unwrap_or(""));
                monitor["monitorname"] = json!(name);
                // The health surface is on the first port, whichever port this group serves.
                if listener.slot != 0 {
                    if let Some(m) = farm.routed().next() {
                        monitor["destport"] = json!(m.ports[0]);
                    }
                }
                monitor_bindings.push(json!({"servicegroupname": id, "monitor_name": name}));
                monitors.push(monitor);
            }
            let mut vserver = json!({
                "name": id,
                "servicetype": service_type,
                "ipv46": address,
                "port": listener.port,
                "cltimeout": idle,
                "comment": farm.title,
            });
            if farms.affinity == Affinity::Client {
                vserver["persistencetype"] = json!("SOURCEIP");
                vserver["timeout"] = json!(10);
            }
            vservers.push(vserver);
            vserver_bindings.push(json!({"name": id, "servicegroupname": id}));
        }
    }
    let doc = json!({
        "server": servers,
        "servicegroup": groups,
        "servicegroup_servicegroupmember_binding": members,
        "lbmonitor": monitors,
        "servicegroup_lbmonitor_binding": monitor_bindings,
        "lbvserver": vservers,
        "lbvserver_servicegroup_binding": vserver_bindings,
    });
    Ok(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n")
}

fn service_type(farm: &Farm, listener: &Listener) -> &'static str {
    match (&farm.check.kind, listener.tls) {
        (CheckKind::Tcp, _) => "TCP",
        (_, true) => "SSL_BRIDGE",
        (_, false) => "HTTP",
    }
}

/// The farm's monitors, named by their role (prefixed with the group when bound).
fn monitors_of(farm: &Farm) -> Vec<Value> {
    let c = &farm.check;
    let common = |name: &str, kind: &str| {
        json!({
            "monitorname": name,
            "type": kind,
            "interval": c.interval.as_secs().max(1),
            "units3": "SEC",
            "resptimeout": c.timeout.as_secs().max(1),
            "units4": "SEC",
            "retries": c.fall,
            "successretries": c.rise,
        })
    };
    match &c.kind {
        CheckKind::Tcp => vec![common("tcp", "TCP")],
        CheckKind::Https {
            path,
            accept,
            response_match,
        } => {
            let mut status = common("status", "HTTP");
            status["secure"] = json!("YES");
            status["httprequest"] = json!(format!("GET {path}"));
            status["respcode"] = json!(accept.to_string().split(',').collect::<Vec<_>>());
            let mut all = vec![status];
            if let Some(m) = response_match {
                let mut ecv = common("match", "HTTP-ECV");
                ecv["secure"] = json!("YES");
                ecv["send"] = json!(format!("GET {path}"));
                ecv["recv"] = json!(m);
                all.push(ecv);
            }
            all
        }
    }
}
