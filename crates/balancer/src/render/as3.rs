//! F5 BIG-IP: an AS3 declaration with one tenant and application, one `Service_TCP` per
//! listener (TLS passed through, as ARR with SSL offloading off), its pool of members by
//! FQDN, HTTPS monitors with the kind's test, source-address persistence when
//! `affinity: client`, and a TCP profile with the idle timeout (>= 1860 s, as the guide
//! asks). `updateMode: selective` leaves other tenants alone, and a declaration with no
//! farm is refused: applying an empty tenant deletes what it held.

use serde_json::{json, Map, Value};
use steward_model::resource::Affinity;

use crate::farm::{CheckKind, Farm, Farms};
use crate::render::haproxy::status_regex;
use crate::BalancerError;

/// The AS3 schema version the declaration is written for (and validated against in tests).
pub const SCHEMA_VERSION: &str = "3.56.0";
const TENANT: &str = "PatientSecure";
const APPLICATION: &str = "Farms";

pub fn render(farms: &Farms) -> Result<String, BalancerError> {
    if farms.farms.iter().all(|f| f.routed().next().is_none()) {
        return Err(BalancerError::EmptyDeclaration("AS3 tenant"));
    }
    let address = farms.address.map(|a| a.to_string()).unwrap_or_default();
    let mut app = Map::new();
    app.insert("class".into(), json!("Application"));
    app.insert(
        "tcp_idle".into(),
        json!({"class": "TCP_Profile", "idleTimeout": farms.idle_timeout.as_secs()}),
    );
    for farm in &farms.farms {
        let pool_monitors = monitors(farms, farm, None, &mut app);
        for listener in &farm.listeners {
            let id = farm.id(listener);
            let mut members = Vec::new();
            for m in farm.routed() {
                let Some(port) = m.ports.get(listener.slot) else {
                    continue;
                };
                let mut member = json!({
                    "servicePort": port,
                    "addressDiscovery": "fqdn",
                    "hostname": m.hostname,
                    "remark": m.server,
                });
                // The health surface is on the member's first port: a second listener's
                // members are tested there (`targetPort`), one monitor set per port.
                if listener.slot != 0 {
                    member["monitors"] = json!(monitors(farms, farm, Some(m.ports[0]), &mut app));
                }
                members.push(member);
            }
            let mut pool = json!({
                "class": "Pool",
                "remark": format!("{} port {}", farm.title, listener.port),
                "loadBalancingMode": "round-robin",
                "members": members,
            });
            if listener.slot == 0 {
                pool["monitors"] = json!(pool_monitors);
            }
            app.insert(format!("{id}_pool"), pool);
            let persistence: Vec<&str> = match farms.affinity {
                Affinity::Client => vec!["source-address"],
                Affinity::None => vec![],
            };
            app.insert(
                id.clone(),
                json!({
                    "class": "Service_TCP",
                    "remark": farm.title,
                    "virtualAddresses": [address],
                    "virtualPort": listener.port,
                    "pool": format!("{id}_pool"),
                    "persistenceMethods": persistence,
                    "profileTCP": {"use": "tcp_idle"},
                }),
            );
        }
    }
    let doc = json!({
        "class": "AS3",
        "action": "deploy",
        "persist": true,
        "declaration": {
            "class": "ADC",
            "schemaVersion": SCHEMA_VERSION,
            "id": "steward-load-balancer",
            "label": "Written by steward from the desired state",
            "updateMode": "selective",
            TENANT: {
                "class": "Tenant",
                APPLICATION: Value::Object(app),
            },
        },
    });
    Ok(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n")
}

/// The monitors of a farm, added to the application; returns the pool's references.
fn monitors(
    farms: &Farms,
    farm: &Farm,
    target_port: Option<u16>,
    app: &mut Map<String, Value>,
) -> Vec<Value> {
    let c = &farm.check;
    let interval = c.interval.as_secs().max(1);
    // BIG-IP marks a member down when it has not answered for `timeout` seconds: the
    // kind's `fall` intervals, plus one as F5 recommends.
    let timeout = interval * u64::from(c.fall.max(1)) + 1;
    let time_until_up = interval * u64::from(c.rise.saturating_sub(1));
    let kind = farm.kind.as_str().to_ascii_lowercase();
    let id = match target_port {
        Some(port) => format!("{kind}_{port}"),
        None => kind,
    };
    match &c.kind {
        CheckKind::Tcp => vec![json!("tcp")],
        CheckKind::Https {
            path,
            accept,
            response_match,
        } => {
            let send = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                farms.fqdn
            );
            let status = status_regex(accept);
            let mut all = vec![(
                format!("{id}_status"),
                // The status line: `HTTP/1.1 200 OK`.
                format!("^HTTP/1\\.[01] {}", &status[1..status.len() - 1]),
            )];
            if let Some(m) = response_match {
                all.push((format!("{id}_match"), m.clone()));
            }
            all.into_iter()
                .map(|(name, receive)| {
                    let mut monitor = json!({
                        "class": "Monitor",
                        "monitorType": "https",
                        "send": send,
                        "receive": receive,
                        "interval": interval,
                        "timeout": timeout,
                        "timeUntilUp": time_until_up,
                    });
                    if let Some(port) = target_port {
                        monitor["targetPort"] = json!(port);
                    }
                    app.insert(name.clone(), monitor);
                    json!({"use": name})
                })
                .collect()
        }
    }
}
