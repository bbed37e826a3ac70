//! High availability end to end: `steward run --lab` on `examples/ha` (two servers with
//! every kind, a real HAProxy started by the lab on 127.0.N.10) converges; HTTPS requests
//! through the load balancer keep succeeding while the member serving them is killed;
//! drain set over HAProxy's runtime API survives a reload steward makes for a
//! desired-state change; an edited `haproxy.cfg` is put back. Stopping the lab leaves no
//! HAProxy behind (the lab's drop check). Run inside a private network namespace.

mod support;

use std::time::{Duration, Instant};

use support::haproxy::{self, all_up, members, service_in_place};
use support::{signal, Lab, Options};

/// PSIS's farm: its health surface answers `GET /identityserver`.
const PSIS_PORT: u16 = 7001;
const PSIS_PATH: &str = "/identityserver";

/// PSIS checked every second, down after two failures (HAProxy and steward alike).
const PSIS_FAST_CHECK: &str = "apiVersion: steward/v1\nkind: HealthCheck\nmetadata: {name: psis}\nspec: {service: PSIS, interval: 1s, timeout: 500ms, fall: 2, rise: 2}\n";

fn ha_lab(n: u8, health_checks: Option<&str>) -> Option<Lab> {
    steward_testkit::require_tool("haproxy", "haproxy")?;
    let mut lab = Lab::new(
        n,
        Options {
            resync: "1s",
            ..Options::default()
        },
    );
    lab.use_example("examples/ha");
    if let Some(text) = health_checks {
        lab.write("health-checks.yaml", text);
        lab.commit("health checks");
    }
    lab.spawn();
    Some(lab)
}

/// Converged: every service healthy and every farm member up at the load balancer.
fn wait_ha_converged(lab: &Lab) -> serde_json::Value {
    lab.wait_status("examples/ha converged behind HAProxy", |s| {
        let services_ok = s["servers"].as_array().is_some_and(|servers| {
            servers.len() == 2
                && servers.iter().all(|server| {
                    server["services"].as_array().is_some_and(|v| {
                        v.len() == 11 && v.iter().all(|svc| service_in_place(s, server, svc))
                    })
                })
        });
        services_ok && all_up(s)
    })
}

#[test]
fn requests_through_haproxy_survive_a_killed_member() {
    let Some(lab) = ha_lab(190, Some(PSIS_FAST_CHECK)) else {
        return;
    };
    let status = wait_ha_converged(&lab);
    // Every listener of a farm is in the status; ADMIN's 443 and 80 are mapped to 10443
    // and 10080 on the lab's load balancer.
    let admin = status["loadBalancer"]["farms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "ADMIN")
        .expect("an ADMIN farm")
        .clone();
    let ports: Vec<(u64, u64)> = admin["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["port"].as_u64().unwrap(),
                l["listenPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [(443, 10443), (80, 10080)], "{admin}");
    let metrics = lab.metrics();
    for server in ["app1", "app2"] {
        let line = format!("steward_lb_member_up{{kind=\"PSIS\",server=\"{server}\"}} 1");
        assert!(metrics.contains(&line), "no `{line}` in /metrics");
    }

    // Affinity by source address: this client's requests all reach one member.
    assert_eq!(haproxy::get(&lab, PSIS_PORT, PSIS_PATH).unwrap(), 200);
    let sessions = |server: &str| {
        haproxy::stat(&lab, "psis", server, "stot")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let victim = if sessions("app1") >= sessions("app2") {
        "app1"
    } else {
        "app2"
    };
    // Steward would restart the killed service within a second, before HAProxy's checks
    // notice: in `monitor` mode it only reports, so the member stays dead until the test
    // switches repairs back on.
    lab.monitor_only();
    let address = lab.server_address(victim).to_string();
    let process = lab
        .service_processes("PSIS")
        .into_iter()
        .find(|p| p.address().as_deref() == Some(address.as_str()))
        .unwrap_or_else(|| panic!("no PSIS process on {victim}"));
    signal(process.pid, rustix::process::Signal::KILL);
    let killed = Instant::now();

    // Requests keep going through the farm while the member is dead, marked down,
    // restarted by steward (repairs on again once it is down) and back up. TLS passes through, so a connection the victim
    // had accepted when it died fails mid-handshake and HAProxy cannot redispatch it: the
    // client retries once, as an HTTP client does for an idempotent GET.
    let (mut ok, mut retried, mut failed) = (0u32, 0u32, Vec::new());
    let (mut seen_down, mut back_up) = (None, None);
    while killed.elapsed() < Duration::from_secs(60) {
        let answer = match haproxy::get(&lab, PSIS_PORT, PSIS_PATH) {
            Ok(200) => Ok(200),
            _ => {
                retried += 1;
                haproxy::get(&lab, PSIS_PORT, PSIS_PATH)
            }
        };
        match answer {
            Ok(200) => ok += 1,
            other => failed.push(format!("{other:?}")),
        }
        let state = haproxy::stat(&lab, "psis", victim, "status").unwrap_or_default();
        if seen_down.is_none() && state.starts_with("DOWN") {
            seen_down = Some(killed.elapsed());
            lab.repairs_on();
        }
        if seen_down.is_some() && state == "UP" {
            back_up = Some(killed.elapsed());
            break;
        }
    }
    println!(
        "PSIS on {victim} killed (HAProxy: inter 1s, fall 2, rise 2): {ok} requests through HAProxy succeeded ({retried} needed one retry), {} failed, over a window of {:?}; marked down after {:?}, up again after {:?}",
        failed.len(),
        killed.elapsed(),
        seen_down,
        back_up,
    );
    assert!(seen_down.is_some(), "HAProxy never marked {victim} down");
    assert!(back_up.is_some(), "{victim} never came back up at HAProxy");
    assert!(
        failed.is_empty(),
        "requests failed after a retry: {failed:?}"
    );
    // The status followed HAProxy.
    lab.wait_status("every member up again in the status", all_up);
}

#[test]
fn drain_survives_a_reload_and_an_edited_config_is_put_back() {
    let Some(lab) = ha_lab(191, None) else {
        return;
    };
    wait_ha_converged(&lab);
    // Drain app1 out of PSIS's farm by hand, over the runtime API (what an operator or an
    // upgrade does).
    let answer = haproxy::command(&lab, "set server psis/app1 state drain").unwrap();
    assert_eq!(answer.trim(), "", "{answer}");
    let drained = |s: &serde_json::Value| {
        members(s)
            .iter()
            .any(|(k, m, st)| k == "PSIS" && m == "app1" && st.as_deref() == Some("drain"))
    };
    lab.wait_status("app1 draining in PSIS's farm", drained);

    // A desired-state change that changes the configuration: PSIS's health test interval.
    let before = haproxy::worker_pid(&lab).expect("a worker");
    let config_before = std::fs::read_to_string(haproxy::config_file(&lab)).unwrap();
    lab.write(
        "psis-health.yaml",
        "apiVersion: steward/v1\nkind: HealthCheck\nmetadata: {name: psis}\nspec: {service: PSIS, interval: 8s}\n",
    );
    lab.commit("PSIS checked every 8 s");
    lab.wait_until("HAProxy reloaded", Duration::from_secs(60), || {
        haproxy::worker_pid(&lab).filter(|pid| *pid != before)
    });
    let config = std::fs::read_to_string(haproxy::config_file(&lab)).unwrap();
    assert_ne!(config, config_before);
    assert!(config.contains("inter 8000ms"), "{config}");
    // The new worker still drains app1, without anyone setting it again.
    let state = haproxy::stat(&lab, "psis", "app1", "status").unwrap();
    assert_eq!(state, "DRAIN", "after the reload");
    lab.wait_status("app1 still draining in the status", drained);
    assert_eq!(haproxy::get(&lab, PSIS_PORT, PSIS_PATH).unwrap(), 200);

    // Someone edits haproxy.cfg: steward puts it back (and reloads).
    let reloaded = haproxy::worker_pid(&lab).unwrap();
    let path = haproxy::config_file(&lab);
    std::fs::write(&path, config.replace("balance source", "balance leastconn")).unwrap();
    lab.wait_until("the edit repaired", Duration::from_secs(60), || {
        (std::fs::read_to_string(&path).ok()? == config).then_some(())
    });
    lab.wait_until("HAProxy reloaded again", Duration::from_secs(60), || {
        haproxy::worker_pid(&lab).filter(|pid| *pid != reloaded)
    });
    assert_eq!(haproxy::get(&lab, PSIS_PORT, PSIS_PATH).unwrap(), 200);
    lab.wait_status("the reloads reported as events", |s| {
        s["events"]
            .as_array()
            .is_some_and(|events| events.iter().filter(|e| e["reason"] == "Reloaded").count() >= 2)
    });
}

/// The daemon is SIGKILLed: its HAProxy keeps serving meanwhile (nobody stops it), and the
/// next daemon stops that one and runs its own, which serves again; no second HAProxy is
/// left running.
#[test]
fn a_crashed_daemons_haproxy_is_replaced() {
    let Some(mut lab) = ha_lab(193, None) else {
        return;
    };
    wait_ha_converged(&lab);
    let haproxies = |lab: &Lab| -> Vec<i32> {
        let config = haproxy::config_file(lab).display().to_string();
        lab.processes()
            .into_iter()
            .filter(|p| p.args.first().is_some_and(|a| a.ends_with("haproxy")))
            .filter(|p| p.args.contains(&config))
            .map(|p| p.pid)
            .collect()
    };
    let before = haproxies(&lab);
    assert!(!before.is_empty(), "no HAProxy of the lab runs");
    lab.kill_daemon();
    // Still serving without its daemon.
    assert_eq!(haproxy::get(&lab, PSIS_PORT, PSIS_PATH).unwrap(), 200);
    lab.respawn_after_crash();
    lab.wait_until(
        "the leftover HAProxy replaced",
        Duration::from_secs(60),
        || {
            let now = haproxies(&lab);
            (!now.is_empty() && now.iter().all(|p| !before.contains(p))).then_some(())
        },
    );
    wait_ha_converged(&lab);
    assert_eq!(haproxy::get(&lab, PSIS_PORT, PSIS_PATH).unwrap(), 200);
    lab.wait_log("the leftover reported", |log| {
        log.contains("stopping a lab haproxy left by a previous daemon")
    });
}
