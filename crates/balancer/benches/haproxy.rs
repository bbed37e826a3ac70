//! HAProxy timings on loopback, printed (run inside a private network namespace):
//! - a load-balancer change applied: `Haproxy::apply` of a changed configuration, from the
//!   call to the new worker answering (check, state saved, installed, reloaded);
//! - a killed member marked DOWN at `inter 1s`, `fall 2`.
//!
//! `cargo bench -p steward-balancer --bench haproxy`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use steward_balancer::haproxy::{Haproxy, MemberState};
use steward_balancer::render::haproxy::{render, HaproxyOptions};

// Shared with the live tests, which use all of it.
#[allow(dead_code)]
#[path = "../tests/live/mod.rs"]
mod live;

const RUNS: usize = 10;

fn find(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn summary(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: n={} min {:.0} ms, median {:.0} ms, max {:.0} ms",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(bin) = find("haproxy") else {
        println!("SKIPPED: haproxy is not installed");
        return;
    };
    let pki = live::pki();
    let dir = tempfile::tempdir().unwrap();
    let h = Haproxy::new(
        bin,
        dir.path().join("haproxy.cfg"),
        dir.path().join("admin.sock"),
    );
    let opts = HaproxyOptions {
        bind: "127.0.0.1".into(),
        map_low_ports: true,
        admin_socket: h.admin_socket.clone(),
        state_file: h.state_file.clone(),
        ca_file: None,
        ..Default::default()
    };
    let (p1, app1) = live::member(&pki, "app1").await;
    let (p2, _app2) = live::member(&pki, "app2").await;
    let front = live::free_port();
    let members = [("app1", p1), ("app2", p2)];
    let second = Duration::from_secs(1);
    std::fs::write(
        &h.config_file,
        render(&live::farms(front, &members, second), &opts),
    )
    .unwrap();
    let _process = h.master().spawn().await.unwrap();

    let mut applied = Vec::new();
    for run in 0..RUNS {
        // Another interval each run: a real change, so every apply reloads.
        let interval = second + Duration::from_millis(100 * (run as u64 + 1));
        let content = render(&live::farms(front, &members, interval), &opts);
        let started = Instant::now();
        h.apply(&content).await.unwrap();
        applied.push(started.elapsed());
    }
    summary("load-balancer change applied (check + save state + install + reload, new worker answering)", applied);

    // Back to inter 1s, fall 2; wait for both UP, then kill app1.
    h.apply(&render(&live::farms(front, &members, second), &opts))
        .await
        .unwrap();
    let state = |name: &'static str| {
        let api = h.runtime();
        async move {
            api.servers()
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.server == name)
                .map(|s| s.state)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while state("app1").await != Some(MemberState::Up)
        || state("app2").await != Some(MemberState::Up)
    {
        assert!(Instant::now() < deadline, "members never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app1.abort();
    let killed = Instant::now();
    while state("app1").await != Some(MemberState::Down) {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "never marked down"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    summary(
        "member marked DOWN after kill (inter 1s, fall 2)",
        vec![killed.elapsed()],
    );
}
