//! SIGINT/SIGTERM as a cancellation token, so every long-running command stops the same way.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM. Later signals are noted and
/// otherwise ignored: every shutdown step has its own deadline, and exiting early would
/// strand what the daemon started (lab agents and their services run in process groups of
/// their own, which an abrupt exit does not reach). `timeout(1)` and service managers
/// often send SIGTERM twice.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        for n in 0u32.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                tracing::info!("shutting down (signal received)");
                trigger.cancel();
            } else {
                tracing::info!("already shutting down; every step has a deadline");
            }
        }
    });
    token
}
