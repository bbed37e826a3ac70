//! Benchmark: a rolling upgrade's per-server overhead beyond install + health gate.
//!
//! Starts `steward run --lab` (the bundled two servers: 5 and 6 services), adds an
//! UpgradePolicy with `healthGate: 2s`, then commits three releases one after the other
//! and, for each server of each upgrade, takes from the daemon's own events (time stamps
//! taken by steward on this machine's clock, so polling granularity does not enter):
//! * `total`: from the server's start (its first service's `Upgrading` event; for the
//!   second server, the first server's `ServerUpgraded`) to its `ServerUpgraded` event;
//! * `install`: the sum over its services of `Upgrading` -> `Reinstalled` (the agent's
//!   install call, plus the few milliseconds until the service controller makes it);
//! * `overhead` = total - install - healthGate: what steward adds (health verdicts after
//!   each install, releasing the next service, starting the gate and the next server).
//!
//! Goal: overhead <= 1 s per server. Run inside a private network namespace:
//! `cargo bench -p steward-daemon --bench upgrade_overhead` (or `--profile dev` to skip
//! the release build; a debug daemon only adds to the overhead).

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;
use time::OffsetDateTime;

const GATE: f64 = 2.0;
const RELEASES: [&str; 4] = ["6.12.1", "6.13.0", "6.13.1", "6.13.2"];
const SERVERS: [&str; 2] = ["app1", "app2"];

fn phase(status: &Value) -> &str {
    status["upgrade"]["phase"].as_str().unwrap_or("")
}

/// Time of the oldest event of `object` with `reason` at or after `since`.
fn event_at(
    events: &[Value],
    object: &str,
    reason: &str,
    since: OffsetDateTime,
) -> Option<OffsetDateTime> {
    events
        .iter()
        .filter(|e| e["object"] == object && e["reason"] == reason)
        .filter_map(|e| e["time"].as_str().and_then(parse_time))
        .filter(|t| *t >= since)
        .min()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // run by `cargo test --all-targets`: only `cargo bench` measures
    }
    let mut lab = Lab::start(144);
    lab.wait_converged(1);
    lab.write(
        "upgrade-policy.yaml",
        &format!(
            "apiVersion: steward/v1\nkind: UpgradePolicy\nmetadata: {{name: default}}\nspec:\n  healthGate: {GATE}s\n  from: [\"6.*\"]\n"
        ),
    );
    lab.commit("an upgrade policy");
    lab.wait_status("the upgrade policy in force", |s| phase(s) == "Idle");
    let kinds: Vec<Vec<String>> = SERVERS
        .iter()
        .map(|s| {
            lab.agent_services(s)
                .iter()
                .map(|v| v["kind"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .collect();

    let mut overheads = Vec::new();
    for pair in RELEASES.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let committed = now();
        lab.commit_edit(
            "installation.yaml",
            &format!("release: \"{from}\""),
            &format!("release: \"{to}\""),
            &format!("release {to}"),
        );
        let status = lab.wait_until(
            &format!("the upgrade to {to}"),
            Duration::from_secs(300),
            || {
                let (code, body) = lab.try_get("/api/v1/status").ok()?;
                let doc: Value = serde_json::from_str(&body).ok()?;
                (code == 200 && phase(&doc) == "Complete" && doc["upgrade"]["to"] == to)
                    .then_some(doc)
            },
        );
        let events = status["events"].as_array().cloned().unwrap_or_default();
        let mut previous_done: Option<OffsetDateTime> = None;
        for (server, kinds) in SERVERS.iter().zip(&kinds) {
            let mut install = 0.0;
            let mut first = None::<OffsetDateTime>;
            for kind in kinds {
                let object = format!("service/{server}/{kind}");
                let released = event_at(&events, &object, "Upgrading", committed)
                    .unwrap_or_else(|| panic!("no Upgrading event of {object}"));
                let installed = event_at(&events, &object, "Reinstalled", released)
                    .unwrap_or_else(|| panic!("no Reinstalled event of {object}"));
                install += (installed - released).as_seconds_f64();
                first = Some(first.map_or(released, |f| f.min(released)));
            }
            let done = event_at(
                &events,
                &format!("server/{server}"),
                "ServerUpgraded",
                committed,
            )
            .unwrap_or_else(|| panic!("no ServerUpgraded event of {server}"));
            let start = previous_done.unwrap_or_else(|| first.expect("services"));
            let total = (done - start).as_seconds_f64();
            let overhead = total - install - GATE;
            println!(
                "{from} -> {to} {server} ({} services): total {total:.3} s, install {install:.3} s, gate {GATE:.1} s, overhead {overhead:.3} s",
                kinds.len()
            );
            overheads.push(overhead);
            previous_done = Some(done);
        }
    }
    let mut sorted = overheads.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "per-server overhead beyond install + health gate: min {:.3} s, median {:.3} s, max {:.3} s (n={}, goal <= 1 s)",
        sorted[0],
        percentile(&sorted, 50.0),
        sorted[sorted.len() - 1],
        sorted.len()
    );
    lab.stop();
}
