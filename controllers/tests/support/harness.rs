//! The `main` of the `harness = false` tests: libtest's command line and output through
//! `libtest-mimic`, and the lab service the real agents start. The test binary is its own
//! service program (`PROGRAM lab-service --kind ...`), so no other binary has to be built
//! first.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use libtest_mimic::{Arguments, Trial};

/// Run `scenario` as the single test `name` (on a two-worker tokio runtime); or serve as a
/// lab service when started as one.
pub fn main<F: Future<Output = ()>>(
    name: &'static str,
    scenario: impl FnOnce() -> F + Send + 'static,
) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("lab-service") {
        return lab_service(&args[1..]);
    }
    let trial = Trial::test(name, move || {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "steward_controllers=info,warn".into()),
            )
            .with_test_writer()
            .try_init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(scenario());
        Ok(())
    });
    libtest_mimic::run(&Arguments::from_args(), vec![trial]).exit_code()
}

/// The daemon's own parser of the lab-service command line.
#[path = "../../../crates/daemon/src/cmd/lab_service/cli.rs"]
mod lab_service_cli;

#[derive(Parser)]
struct LabCli {
    #[command(flatten)]
    args: lab_service_cli::LabServiceCli,
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
        steward_lab::run(cli.args.into(), stop).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab service: {e}");
            ExitCode::FAILURE
        }
    }
}
