//! Verification pass and reconnect, against a real TDS server (iridium_server) on loopback.
//!
//! `cargo bench -p steward-database --bench verify_reconnect` (optionally `PASSES=500`,
//! `RESTARTS=10`). Goals: a verification pass <= 50 ms on loopback; the pool serving again
//! <= 2 s after a restarted server accepts connections. Run it inside a private network
//! namespace when other builds share the machine.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use steward_database::Pool;

fn main() {
    let passes: usize = env_or("PASSES", 200);
    let restarts: usize = env_or("RESTARTS", 10);
    let Some(mut server) = support::Iridium::start() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let pool = Pool::new(server.config("master"));

    runtime.block_on(async {
        // The first pass logs in; it is reported on its own.
        let started = Instant::now();
        pool.verify().await.expect("first verification");
        println!(
            "first pass (login + verify): {:.2} ms",
            ms(started.elapsed())
        );

        let mut times = Vec::with_capacity(passes);
        for _ in 0..passes {
            let started = Instant::now();
            pool.verify().await.expect("verification");
            times.push(started.elapsed());
        }
        report(
            &format!("verification pass, pooled connection ({passes} passes)"),
            &mut times,
            Duration::from_millis(50),
        );
    });

    let mut times = Vec::with_capacity(restarts);
    for _ in 0..restarts {
        server.stop();
        // The pool notices the server is gone...
        runtime.block_on(async {
            assert!(pool.verify().await.is_err());
        });
        server.restart();
        // ...and from the moment the new server accepts TCP, serves again.
        let accepting = Instant::now();
        runtime.block_on(async {
            loop {
                if pool.verify().await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        times.push(accepting.elapsed());
    }
    report(
        &format!("server accepting again -> verification served ({restarts} restarts)"),
        &mut times,
        Duration::from_secs(2),
    );
}

fn report(what: &str, times: &mut [Duration], goal: Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let verdict = if at(0.99) <= goal { "within" } else { "OVER" };
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({verdict} the {:.0} ms goal)",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0)),
        ms(goal)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
