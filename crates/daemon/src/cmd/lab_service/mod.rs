//! `steward lab-service --kind K ...`: one lab service process (started by a lab agent).

mod cli;

pub use cli::LabServiceCli;

pub async fn run(args: LabServiceCli) -> u8 {
    let shutdown = crate::signals::shutdown_token();
    match steward_lab::run(args.into(), shutdown.cancelled_owned()).await {
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

#[cfg(test)]
mod cli_tests {
    use super::cli::*;
    use clap::Parser;
    use steward_model::catalog::ServiceKind;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: LabServiceCli,
    }

    #[test]
    fn parses_the_agent_command_line() {
        let cli = Cli::try_parse_from([
            "lab-service",
            "--kind",
            "EMERGENCY",
            "--bind",
            "127.0.0.2",
            "--port",
            "7005",
            "--port",
            "7006",
            "--cert",
            "/s/cert.pem",
            "--key",
            "/s/key.pem",
            "--connection-strings",
            "/s/conn.json",
            "--release",
            "7.1.0",
        ])
        .unwrap();
        assert_eq!(cli.args.kind, ServiceKind::Emergency);
        assert_eq!(cli.args.ports, vec![7005, 7006]);
        assert_eq!(cli.args.bind.to_string(), "127.0.0.2");
        assert_eq!(cli.args.release.as_deref(), Some("7.1.0"));
    }

    #[test]
    fn refuses_unknown_kind_and_missing_port() {
        let err =
            Cli::try_parse_from(["x", "--kind", "PSXX", "--bind", "127.0.0.1", "--port", "1"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("PSXX"), "{err}");
        assert!(Cli::try_parse_from(["x", "--kind", "HL7", "--bind", "127.0.0.1"]).is_err());
    }
}
