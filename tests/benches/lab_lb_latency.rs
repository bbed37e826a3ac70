//! Benchmark: the lab's load balancer end to end (`examples/ha`, a real HAProxy 2.6 the lab
//! starts, PSIS checked every second, down after 2 failures).
//!
//! * `desired-state change to the LB -> reloaded and new worker answering`: from just before
//!   `loadBalancer.idleTimeout` is saved with another value (a change only the load
//!   balancer's configuration sees) until a worker with another pid answers on HAProxy's
//!   runtime socket. Includes the watcher's debounce, `haproxy -c`, saving the servers'
//!   state and the reload through the master socket. Goal: <= 1 s.
//! * `member marked down`: from SIGKILL of one server's PSIS (in `mode: monitor`, so
//!   steward does not restart it first) until HAProxy's `show stat` says DOWN for it.
//!   Goal: <= 3 s at `inter 1s`, `fall 2`.
//!
//! Run: cargo bench -p steward-daemon --bench lab_lb_latency (the figures in the docs were
//! taken with `--profile dev`: the latency is HAProxy's and the watcher's, not steward's CPU).

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::haproxy;
use support::*;

const ROUNDS: usize = 5;
const FAST_CHECK: &str = "apiVersion: steward/v1\nkind: HealthCheck\nmetadata: {name: psis}\nspec: {service: PSIS, interval: 1s, timeout: 500ms, fall: 2, rise: 2}\n";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // run by `cargo test --all-targets`: only `cargo bench` measures
    }
    if steward_testkit::require_tool("haproxy", "haproxy").is_none() {
        return;
    }
    let mut lab = Lab::new(
        192,
        Options {
            resync: "1s",
            ..Options::default()
        },
    );
    lab.use_example("examples/ha");
    lab.write("health-checks.yaml", FAST_CHECK);
    lab.commit("PSIS checked every second");
    lab.spawn();
    lab.wait_status("converged behind HAProxy", |s| {
        haproxy::all_up(s)
            && s["serviceKinds"]
                .as_array()
                .is_some_and(|k| k.len() == 11 && k.iter().all(|k| k["healthy"] == true))
    });

    let mut reloads = Vec::new();
    for round in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(500));
        let before = haproxy::worker_pid(&lab).expect("a worker");
        let (from, to) = if round % 2 == 0 {
            ("idleTimeout: 1860s", "idleTimeout: 1861s")
        } else {
            ("idleTimeout: 1861s", "idleTimeout: 1860s")
        };
        let text = lab.read("installation.yaml").replace(from, to);
        let saved = Instant::now();
        lab.write("installation.yaml", &text);
        lab.wait_until("a new worker", Duration::from_secs(30), || {
            haproxy::worker_pid(&lab).filter(|pid| *pid != before)
        });
        reloads.push(saved.elapsed().as_secs_f64());
    }
    report(
        "desired-state change to the LB -> reloaded and new worker answering",
        &reloads,
        "goal <= 1 s",
    );

    let mut downs = Vec::new();
    lab.monitor_only();
    for round in 0..ROUNDS {
        let victim = if round % 2 == 0 { "app1" } else { "app2" };
        lab.wait_until("the victim up at HAProxy", Duration::from_secs(60), || {
            (haproxy::stat(&lab, "psis", victim, "status")? == "UP").then_some(())
        });
        let address = lab.server_address(victim).to_string();
        let process = lab
            .service_processes("PSIS")
            .into_iter()
            .find(|p| p.address().as_deref() == Some(address.as_str()))
            .expect("the victim's PSIS");
        let killed = Instant::now();
        signal(process.pid, rustix::process::Signal::KILL);
        lab.wait_until("marked down", Duration::from_secs(30), || {
            let state = haproxy::stat(&lab, "psis", victim, "status")?;
            state.starts_with("DOWN").then_some(())
        });
        downs.push(killed.elapsed().as_secs_f64());
        // Repairs on for a moment: steward restarts it, HAProxy sees it up again.
        lab.repairs_on();
        lab.wait_until("back up at HAProxy", Duration::from_secs(60), || {
            (haproxy::stat(&lab, "psis", victim, "status")? == "UP").then_some(())
        });
        lab.monitor_only();
    }
    report(
        "member marked down (inter 1s, fall 2)",
        &downs,
        "goal <= 3 s",
    );
    println!(
        "load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    lab.stop();
}

fn report(what: &str, samples: &[f64], goal: &str) {
    let max = samples.iter().cloned().fold(0.0, f64::max);
    println!(
        "{what}: p50 {:.3} s, max {max:.3} s over {} runs ({goal}); all: {:?}",
        percentile(samples, 50.0),
        samples.len(),
        samples
            .iter()
            .map(|s| format!("{s:.3}"))
            .collect::<Vec<_>>()
    );
}
