//! Recognising a process by pid after the agent restarted. A pid alone is not enough
//! (pids are recycled), so the command line must match too.

use std::fs;

/// The process's argv, or `None` if it is gone, a zombie, or unreadable.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    if is_zombie(pid) {
        return None;
    }
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let mut args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    Some(args)
}

/// Whether `pid` is alive and still runs the command we started.
pub(crate) fn runs(pid: u32, argv: &[String]) -> bool {
    cmdline(pid).is_some_and(|actual| command_matches(&actual, argv))
}

/// A live process running exactly `argv` (found by scanning `/proc`), for an instance the
/// agent started but whose pid it no longer knows (restarted by the agent's supervisor
/// just before the agent itself was killed).
pub fn find_running(argv: &[String]) -> Option<u32> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .find(|pid| runs(*pid, argv))
}

/// A script started through its `#!` line shows up as `interpreter [arg] script args...`,
/// so a suffix match with at most two extra leading words counts too.
fn command_matches(actual: &[String], expected: &[String]) -> bool {
    !expected.is_empty()
        && actual.len() >= expected.len()
        && actual.len() - expected.len() <= 2
        && actual.ends_with(expected)
}

/// A zombie has exited but not been reaped; its pid still exists in /proc.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself contain ") ".
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .is_some_and(|state| state == 'Z' || state == 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn matches_exact_and_shebang_commands() {
        let expected = words("/opt/svc lab-service --kind PSIS");
        assert!(command_matches(&expected, &expected));
        assert!(command_matches(
            &words("/bin/sh /opt/svc lab-service --kind PSIS"),
            &expected
        ));
        assert!(command_matches(
            &words("/bin/sh -e /opt/svc lab-service --kind PSIS"),
            &expected
        ));
        assert!(!command_matches(
            &words("/opt/svc lab-service --kind PSWS"),
            &expected
        ));
        assert!(!command_matches(
            &words("a b c /opt/svc lab-service --kind PSIS"),
            &expected
        ));
        assert!(!command_matches(
            &words("lab-service --kind PSIS"),
            &expected
        ));
        assert!(!command_matches(&expected, &[]));
    }

    #[test]
    fn sees_this_process_and_not_a_dead_one() {
        let me = std::process::id();
        let argv = cmdline(me).unwrap();
        assert!(runs(me, &argv));
        assert!(!runs(me, &words("/not/this")));
        // Pid numbers are bounded by pid_max (at most 2^22).
        assert!(cmdline(u32::MAX - 1).is_none());
    }

    #[test]
    fn finds_a_child_by_its_command_line() {
        let mut child = std::process::Command::new("sleep")
            // Unlikely to be anyone else's command line.
            .arg(format!("30.{}", std::process::id()))
            .spawn()
            .unwrap();
        let expected = format!("30.{}", std::process::id());
        // Until exec, the child shows this test binary's command line.
        let argv = loop {
            match cmdline(child.id()) {
                Some(argv) if argv.last() == Some(&expected) => break argv,
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        assert_eq!(find_running(&argv), Some(child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(find_running(&argv), None);
    }
}
