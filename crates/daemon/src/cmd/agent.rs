//! `steward agent`: the agent that runs on every application server.

use steward_agent::AgentArgs;

pub async fn run(args: AgentArgs) -> u8 {
    let shutdown = crate::signals::shutdown_token();
    match steward_agent::run(args, shutdown.cancelled_owned()).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "agent stopped");
            1
        }
    }
}
