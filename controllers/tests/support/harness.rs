//! What the `harness = false` integration tests share: a libtest-like `main` that runs one
//! scenario, and the lab service the real agents start. The test binary is its own service
//! program (`PROGRAM lab-service --kind ...`), so no other binary has to be built first.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Run `scenario` as the single test `name`, printing libtest's lines so `cargo test` output
/// and name filters work as usual; or serve as a lab service when started as one.
pub fn main<F: Future<Output = ()>>(name: &str, scenario: impl FnOnce() -> F) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("lab-service") {
        return lab_service(&args[1..]);
    }
    if args.iter().any(|a| a == "--list") {
        println!("{name}: test");
        return ExitCode::SUCCESS;
    }
    // Like libtest: a name filter that does not match skips the test.
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        println!("\ntest result: ok. 0 passed; 0 failed; 1 filtered out\n");
        return ExitCode::SUCCESS;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "steward_controllers=info,warn".into()),
        )
        .with_test_writer()
        .try_init();
    println!("\nrunning 1 test");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(scenario());
    }));
    drop(runtime);
    match outcome {
        Ok(()) => {
            println!("test {name} ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored\n");
            ExitCode::SUCCESS
        }
        Err(_) => {
            println!(
                "test {name} ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed; 0 ignored\n"
            );
            ExitCode::FAILURE
        }
    }
}

#[derive(Parser)]
struct LabCli {
    #[command(flatten)]
    args: steward_lab::LabServiceArgs,
}

/// The lab service the agents start (`PROGRAM lab-service --kind K ...`).
fn lab_service(args: &[String]) -> ExitCode {
    let cli = LabCli::parse_from(args);
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        // Orphaned (the test process died): nobody will stop us, so stop.
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let served = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        steward_lab::run(cli.args, stop).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab service: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Poll `done` until it holds; a test fails only when the fleet never gets there within
/// `patience` (generous: two cores shared with builds), never because it was slow.
pub async fn eventually(patience: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < patience, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
