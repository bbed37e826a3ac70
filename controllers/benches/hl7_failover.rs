//! HL7 failover, kill to standby answering through HAProxy, with `failoverAfter: 3s`
//! (goal <= 5 s; keepalived/VRRP takes ~3.6 s, a Windows failover cluster ~5 s). Real
//! agents, lab HL7 listeners and HAProxy 2.6 on loopback, as `tests/hl7_failover.rs` (whose
//! support this reuses); run it inside a private network namespace:
//! `cargo bench -p steward-controllers --bench hl7_failover`. Prints the figures.
//!
//! Each round kills the active listener (SIGKILL) and times, from the kill, the first
//! message through HAProxy's HL7 frontend that comes back AA (a new connection every
//! 20 ms), then waits until the old listener is a held standby before the next round.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use steward_agent::api::ServiceStatus;

#[path = "../tests/support/mod.rs"]
mod support;
use support::agents::{controllers_config, RunningControllers};
use support::hl7_lab::{answers_through, Hl7Lab, Policy};

const ROUNDS: usize = 5;
const PATIENCE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("lab-service") {
        // The agents start this executable as their lab services.
        return support::harness::main("hl7_failover", || async {});
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
    ExitCode::SUCCESS
}

async fn bench() {
    let policy = Policy {
        failover: "automatic",
        failback: "manual",
        failover_after: "3s",
    };
    let Some(lab) = Hl7Lab::start(&policy).await else {
        eprintln!("SKIPPED: hl7_failover needs haproxy and iridium_server");
        return;
    };
    let mut config = controllers_config(
        lab.ca.clone(),
        lab.agent_tls.clone(),
        vec![lab.ca.cert_pem().to_owned()],
        "steward-hl7-bench",
    );
    config.state_dir = Some(lab.state_dir.clone());
    let controllers = RunningControllers::start(config, lab.desired(&policy), &lab.desired_dir);
    let store = controllers.store.clone();
    let active = || store.status().hl7.active_listener;
    let standby = || store.status().hl7.standby;
    wait(
        "the first listener active and answering through HAProxy",
        || async { active().is_some() && answers_through(lab.front, "BENCH-WARMUP").await },
    )
    .await;

    let mut figures = Vec::new();
    for round in 0..ROUNDS {
        let from = active().expect("an active listener");
        let i = usize::from(from == "app2");
        let pid = lab.clients[i]
            .service(steward_model::ServiceKind::Hl7)
            .await
            .unwrap()
            .pid
            .expect("the active listener runs");
        let killed = Instant::now();
        kill(pid);
        let mut n = 0;
        loop {
            n += 1;
            if answers_through(lab.front, &format!("BENCH{round}-{n}")).await {
                break;
            }
            assert!(killed.elapsed() < PATIENCE, "no answer through HAProxy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = killed.elapsed();
        let to = active().unwrap_or_default();
        let recorded = store
            .status()
            .hl7
            .last_failover
            .map(|l| l.seconds)
            .unwrap_or_default();
        println!(
            "round {}: {from} killed -> {to} answering through HAProxy in {:.2} s (lastFailover.seconds {:.2})",
            round + 1,
            took.as_secs_f64(),
            recorded
        );
        figures.push(took);
        // The killed one back as a held standby before the next round.
        wait("the old listener a standby", || async {
            standby() == [from.clone()]
                && lab.clients[i]
                    .service(steward_model::ServiceKind::Hl7)
                    .await
                    .is_ok_and(|s| s.status == ServiceStatus::Stopped && s.held)
        })
        .await;
    }
    figures.sort();
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "hl7 failover (failoverAfter 3s), kill -> standby answering through HAProxy, {ROUNDS} rounds: min {:.2} s, median {:.2} s, max {:.2} s (goal <= 5 s)",
        secs(figures[0]),
        secs(figures[ROUNDS / 2]),
        secs(figures[ROUNDS - 1])
    );
    controllers.stop().await;
    lab.shutdown().await;
}

async fn wait<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a real pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill");
}
