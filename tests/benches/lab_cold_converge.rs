//! Benchmark (d): cold `steward run --lab` (fresh state directory: new CA, new agents,
//! nothing installed) -> `converged in` logged. Three runs; prints the daemon's own
//! figure (`converged in N s`, measured inside the process from its start) and the wall
//! time from spawning the process to seeing that log line, and their medians.
//! Run: cargo bench -p steward-daemon --bench lab_cold_converge

#[path = "../support/mod.rs"]
mod support;

use std::time::Instant;

use support::*;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // run by `cargo test --all-targets`: only `cargo bench` measures
    }
    let mut reported = Vec::new();
    let mut wall = Vec::new();
    for run in 1..=3u8 {
        let mut lab = Lab::new(140 + run, Options::default());
        let t0 = Instant::now();
        lab.spawn();
        let line = lab.wait_log("converged in", |l| l.contains("converged in"));
        let w = t0.elapsed().as_secs_f64();
        let figure: f64 = line
            .split("converged in ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("converged in N s");
        assert!(all_declared_healthy(&lab.status()));
        println!(
            "run {run}: converged in {figure:.1} s (daemon's figure), {w:.2} s wall from spawn"
        );
        reported.push(figure);
        wall.push(w);
        lab.stop();
    }
    println!(
        "cold start -> converged: median {:.1} s (daemon), {:.2} s (wall); goal <= 10 s",
        percentile(&reported, 50.0),
        percentile(&wall, 50.0)
    );
}
