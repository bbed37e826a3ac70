//! What a lab finds left over from a previous daemon (one that was SIGKILLed, or crashed):
//! agents still serving on our addresses, and services whose agent died. Ours are told
//! apart from foreign processes by the lab's state directory on their command line.

use std::path::Path;
use std::time::Duration;

use rustix::process::{kill_process, kill_process_group, Pid, Signal};

/// How a process found on a lab agent's address relates to this lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Occupant {
    /// Nothing listens there.
    Free,
    /// A lab agent of this lab's state directory (left by a previous daemon).
    OurAgent { pid: i32 },
    /// Anything else: never touched, reported.
    Foreign { who: String },
}

/// Who holds `addr:port`, judged by whether its command line runs an agent on
/// `agent_state` (the lab server's agent state directory).
pub(super) fn occupant(addr: std::net::IpAddr, port: u16, agent_state: &Path) -> Occupant {
    let Some(holder) = steward_agent::port_holder(addr, port) else {
        return Occupant::Free;
    };
    match holder.pid {
        Some(pid) if runs_agent_on(pid as i32, agent_state) => {
            Occupant::OurAgent { pid: pid as i32 }
        }
        Some(pid) => Occupant::Foreign {
            who: format!(
                "process {pid} ({})",
                holder.command.as_deref().unwrap_or("command unknown")
            ),
        },
        None => Occupant::Foreign {
            who: "a process of another user".to_owned(),
        },
    }
}

/// Whether `pid` is a live `steward agent` whose `--state-dir` is `agent_state`.
pub(super) fn runs_agent_on(pid: i32, agent_state: &Path) -> bool {
    let Some(args) = u32::try_from(pid)
        .ok()
        .and_then(steward_agent::process_command_line)
    else {
        return false;
    };
    let state = agent_state.to_string_lossy();
    args.get(1).is_some_and(|a| a == "agent")
        && args
            .windows(2)
            .any(|w| w[0] == "--state-dir" && w[1] == state.as_ref())
}

/// The pid a previous daemon recorded for a lab agent, if the file holds one.
pub(super) fn recorded_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// SIGTERM the agent's process group (it stops its services on the way out), SIGKILL it
/// after `grace`. Whether it is gone.
pub(super) async fn stop_agent(pid: i32, grace: Duration) -> bool {
    signal_group(pid, Signal::TERM);
    if gone_within(pid, grace).await {
        return true;
    }
    signal_group(pid, Signal::KILL);
    gone_within(pid, Duration::from_secs(5)).await
}

async fn gone_within(pid: i32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !alive(pid)
}

/// Processes a previous daemon left running on `config` (their command line names it;
/// they hold the lab's ports): SIGTERM, `grace` to go, then SIGKILL. `what` names them
/// in the warning.
pub(super) async fn stop_leftovers(config: &Path, what: &str, grace: Duration) {
    let leftovers = processes_mentioning(&config.to_string_lossy());
    for pid in &leftovers {
        tracing::warn!(pid, "stopping a lab {what} left by a previous daemon");
        signal_pid(*pid, Signal::TERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    for pid in leftovers {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !gone_within(pid, left).await {
            signal_pid(pid, Signal::KILL);
        }
    }
}

/// Processes (other than this one) whose command line contains `marker`.
pub(super) fn processes_mentioning(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(marker))
        })
        .collect()
}

pub(super) fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; its state letter says it is gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !matches!(stat.rsplit(')').next().map(str::trim_start), Some(s) if s.starts_with('Z')))
}

pub(super) fn signal_pid(pid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, sig);
    }
}

/// Agents lead their own process group; fall back to the process alone if it left it.
pub(super) fn signal_group(pid: i32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid) {
        if kill_process_group(p, sig).is_err() {
            let _ = kill_process(p, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child holds every descriptor of this process between fork and exec, sockets
    /// too: the test that asks who holds a socket must not see one of those.
    static FORKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_foreign_listener_is_named_and_a_free_address_is_free() {
        let _no_fork = FORKING.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        match occupant(addr.ip(), addr.port(), dir.path()) {
            Occupant::Foreign { who } => {
                assert!(
                    who.starts_with(&format!("process {} (", std::process::id())),
                    "{who}"
                )
            }
            other => panic!("expected a foreign occupant, got {other:?}"),
        }
        drop(held);
        assert_eq!(occupant(addr.ip(), addr.port(), dir.path()), Occupant::Free);
    }

    #[tokio::test]
    async fn leftovers_on_a_configuration_are_stopped_and_killed_if_they_ignore_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("lab.cfg");
        let leftover = |script: &str| {
            std::process::Command::new("sh")
                .args(["-c", script, "sh"])
                .arg(&config)
                .spawn()
                .unwrap()
        };
        let forking = FORKING.lock().unwrap_or_else(|p| p.into_inner());
        // Each says when its trap is set: a signal before that would end it either way.
        let mut polite =
            leftover("trap 'exit 0' TERM; : > \"$1.polite\"; while :; do sleep 0.05; done");
        let mut stubborn =
            leftover("trap '' TERM; : > \"$1.stubborn\"; while :; do sleep 0.05; done");
        let mut bystander = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        drop(forking);
        for ready in ["lab.cfg.polite", "lab.cfg.stubborn"] {
            while !dir.path().join(ready).exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        stop_leftovers(&config, "test process", Duration::from_millis(300)).await;
        assert!(polite.wait().unwrap().success(), "went on SIGTERM");
        let status = stubborn.wait().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(9), "SIGKILLed after the grace");
        let pid = bystander.id() as i32;
        assert!(
            alive(pid),
            "a process not naming the configuration is left alone"
        );
        signal_pid(pid, Signal::KILL);
        bystander.wait().unwrap();
    }

    #[test]
    fn only_an_agent_on_our_state_directory_is_ours() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        assert!(!runs_agent_on(me, dir.path()));
        std::fs::write(dir.path().join("agent.pid"), format!("{me}\n")).unwrap();
        assert_eq!(recorded_pid(&dir.path().join("agent.pid")), Some(me));
        assert_eq!(recorded_pid(&dir.path().join("missing.pid")), None);
    }
}
