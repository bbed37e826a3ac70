//! Benchmark (b): a killed lab service -> restarted and healthy again.
//!
//! Starts `steward run --lab` (release build), waits for convergence, then 10 times
//! SIGKILLs one service (a different kind each time, HTTPS and MLLP, core and not) and
//! measures, against the kill time:
//! * `restarted`: the agent's log line `service restarted service=KIND` (the daemon
//!   noticed the death and the agent started a new process);
//! * `healthy`: the `lastTransitionTime` of the service's `Ready=True` condition in the
//!   daemon's status (the daemon's health test passed again) — the figure the goal
//!   (<= 5 s) is about.
//!
//! Both are time stamps taken by steward itself on this machine's clock, so polling
//! granularity does not enter the figures. Run: cargo bench -p steward-daemon --bench
//! lab_restart_latency

#[path = "../support/mod.rs"]
mod support;

use rustix::process::Signal;
use support::*;

const VICTIMS: [(&str, &str); 10] = [
    ("app1", "CLIENT"),
    ("app2", "HL7"),
    ("app1", "PSIS"),
    ("app1", "PSWS"),
    ("app1", "REPORT"),
    ("app1", "ADMIN"),
    ("app2", "EMERGENCY"),
    ("app2", "HEALTH"),
    ("app2", "JOB"),
    ("app2", "FHIR"),
];

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // run by `cargo test --all-targets`: only `cargo bench` measures
    }
    let mut lab = Lab::start(140);
    lab.wait_converged(1);
    let mut restarted = Vec::new();
    let mut healthy = Vec::new();
    for (srv, kind) in VICTIMS {
        lab.wait_status("everything healthy before the kill", all_declared_healthy);
        let pid = lab.agent_service(srv, kind).expect("installed")["pid"]
            .as_i64()
            .expect("pid") as i32;
        let killed_at = now();
        signal(pid, Signal::KILL);
        let status = lab.wait_status(&format!("{srv}/{kind} healthy again"), |s| {
            ready_since(s, srv, kind, killed_at)
        });
        let ready_at = service(&status, srv, kind)
            .and_then(|s| condition(s, "Ready"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .and_then(parse_time)
            .unwrap();
        let needle = format!("service={kind}");
        let restart_at = lab
            .agent_log(srv)
            .lines()
            .filter(|l| {
                l.contains("service restarted") && l.split_whitespace().any(|w| w == needle)
            })
            .filter_map(log_line_time)
            .find(|t| *t > killed_at);
        let h = (ready_at - killed_at).as_seconds_f64();
        let r = restart_at.map(|t| (t - killed_at).as_seconds_f64());
        println!(
            "kill {srv}/{kind:<9} restarted after {} s, healthy after {h:.3} s",
            r.map_or("?".to_owned(), |r| format!("{r:.3}"))
        );
        healthy.push(h);
        restarted.extend(r);
    }
    println!(
        "killed service -> restarted (agent): p50 {:.3} s, p99 {:.3} s (n={})",
        percentile(&restarted, 50.0),
        percentile(&restarted, 99.0),
        restarted.len()
    );
    println!(
        "killed service -> healthy again (daemon Ready): p50 {:.3} s, p99 {:.3} s (n={}); goal <= 5 s",
        percentile(&healthy, 50.0),
        percentile(&healthy, 99.0),
        healthy.len()
    );
    lab.stop();
}
