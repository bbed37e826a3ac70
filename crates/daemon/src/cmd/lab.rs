//! `steward lab kill SERVER KIND`: signal one service of *this* lab (to watch steward
//! repair it). The pid comes from the lab server's agent state under `--state-dir`, so
//! other labs on the same machine (whose services run the same command) are never hit.

use std::path::PathBuf;

use rustix::process::{kill_process, Pid, Signal};
use steward_model::ServiceKind;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// Send a signal (default KILL) to one service of one lab server, e.g.
    /// `steward lab kill app2 HEALTH`.
    Kill {
        /// The Server's metadata.name (app1, app2, ...).
        server: String,
        /// The service kind (PSIS, PSWS, ..., HL7).
        kind: ServiceKind,
        #[arg(long, value_enum, default_value_t = SignalName::Kill)]
        signal: SignalName,
        /// The daemon's --state-dir.
        #[arg(long, default_value = ".steward")]
        state_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SignalName {
    Kill,
    Term,
}

impl SignalName {
    fn signal(self) -> Signal {
        match self {
            Self::Kill => Signal::KILL,
            Self::Term => Signal::TERM,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Kill => "SIGKILL",
            Self::Term => "SIGTERM",
        }
    }
}

/// 0: signalled; 1: not installed / not running / no such lab server; 2: bad arguments.
pub fn run(args: &Args) -> u8 {
    let LabCommand::Kill {
        server,
        kind,
        signal,
        state_dir,
    } = &args.command;
    // A Server name, never a path: it picks a directory below the lab's.
    let plain = !server.is_empty()
        && server
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !plain {
        eprintln!("steward lab kill: {server:?} is not a Server name");
        return 2;
    }
    let agent_state = crate::lab::lab_dir(state_dir).join(server).join("state");
    if !agent_state.is_dir() {
        eprintln!(
            "steward lab kill: no lab server {server} under {} (is --state-dir the daemon's?)",
            state_dir.display()
        );
        return 1;
    }
    let pid = match steward_agent::running_service(&agent_state, *kind) {
        Ok(Some(pid)) => pid,
        Ok(None) => {
            eprintln!("steward lab kill: {server}/{kind} is not running");
            return 1;
        }
        Err(e) => {
            eprintln!("steward lab kill: {server}: {e}");
            return 1;
        }
    };
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        eprintln!("steward lab kill: {server}/{kind}: invalid pid {pid}");
        return 1;
    };
    match kill_process(raw, signal.signal()) {
        Ok(()) => {
            println!("{server}/{kind}: sent {} to pid {pid}", signal.name());
            0
        }
        Err(e) => {
            eprintln!("steward lab kill: {server}/{kind} (pid {pid}): {e}");
            1
        }
    }
}
