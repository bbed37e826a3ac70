//! `steward lab-service --kind K ...`: one lab service process (started by a lab agent).

use steward_lab::LabServiceArgs;

pub async fn run(args: LabServiceArgs) -> u8 {
    let shutdown = crate::signals::shutdown_token();
    match steward_lab::run(args, shutdown.cancelled_owned()).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "lab service stopped");
            1
        }
    }
}
