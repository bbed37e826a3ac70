//! `steward lab-service --kind K ...`: one lab service process (started by a lab agent).

use steward_lab::LabServiceArgs;

pub async fn run(args: LabServiceArgs) -> u8 {
    let shutdown = crate::signals::shutdown_token();
    match steward_lab::run(args, shutdown.cancelled_owned()).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "lab service stopped");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    /// The agent recognises a port in use by this exit code.
    #[test]
    fn port_in_use_exit_code_is_the_one_the_agent_knows() {
        assert_eq!(
            i32::from(steward_lab::EXIT_PORT_IN_USE),
            steward_agent::EXIT_PORT_IN_USE
        );
    }
}
