//! The processes of a lab, seen through `/proc`, and signals to them.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use rustix::process::{kill_process, Pid, Signal};

/// One process whose command line mentions the lab's state directory.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub args: Vec<String>,
}

impl Proc {
    pub fn is_agent(&self) -> bool {
        self.args.get(1).is_some_and(|a| a == "agent")
    }

    pub fn is_daemon(&self) -> bool {
        self.args.get(1).is_some_and(|a| a == "run")
    }

    /// `lab-service --kind KIND` -> KIND.
    pub fn service_kind(&self) -> Option<&str> {
        if self.args.get(1).map(String::as_str) != Some("lab-service") {
            return None;
        }
        self.args
            .windows(2)
            .find(|w| w[0] == "--kind")
            .map(|w| w[1].as_str())
    }

    /// The value of `--bind` (lab services) or the host of `--listen` (agents).
    pub fn address(&self) -> Option<String> {
        self.args.windows(2).find_map(|w| match w[0].as_str() {
            "--bind" => Some(w[1].clone()),
            "--listen" => w[1].rsplit_once(':').map(|(h, _)| h.to_owned()),
            _ => None,
        })
    }
}

pub fn signal(pid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, sig);
    }
}

/// (soft, hard) open-file limit of a process, from `/proc/PID/limits`.
pub fn open_files_limit(pid: i32) -> Option<(u64, u64)> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers = line["Max open files".len()..].split_whitespace();
    Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
}

pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            // State is the field after the parenthesised command name.
            let state = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

pub(super) fn kill_all(procs: &[Proc]) {
    for p in procs {
        signal(p.pid, Signal::KILL);
    }
}

pub(super) fn describe(procs: &[Proc]) -> String {
    procs
        .iter()
        .map(|p| format!("  {} {}", p.pid, p.args.join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn append_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open")
}
