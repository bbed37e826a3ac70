//! `steward notify test [DIR] [--name NAME]`: send a test message with each Notifications
//! object's settings (or the one named) and say exactly what failed: DNS, TCP, TLS version,
//! certificate, STARTTLS, AUTH, a refused sender or recipient. Exit 0 when every test
//! message was accepted, 1 when one was not or the desired state is invalid, 2 when there
//! is nothing to test or the directory cannot be read.

use std::path::PathBuf;

use steward_model::notifications::Notifications;
use steward_model::validate_dir;
use steward_notify::{render::render, Mailer, Notice, SmtpSettings};

use super::console::{err_line, out_line, OutputError};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: NotifyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum NotifyCommand {
    /// Send a test message with the directory's Notifications settings.
    Test {
        /// The desired-state directory.
        dir: Option<PathBuf>,
        /// Only this Notifications object (default: every one).
        #[arg(long)]
        name: Option<String>,
    },
}

pub async fn run(args: Args) -> Result<u8, OutputError> {
    match args.command {
        NotifyCommand::Test { dir, name } => {
            test(&super::desired_state_dir(&dir), name.as_deref()).await
        }
    }
}

async fn test(dir: &std::path::Path, only: Option<&str>) -> Result<u8, OutputError> {
    let compiled = match validate_dir(dir) {
        Ok(c) => c,
        Err(e) => {
            err_line(format_args!("steward notify test: {e}"))?;
            return Ok(2);
        }
    };
    let Some(snapshot) = compiled.snapshot else {
        for d in compiled.errors() {
            err_line(d)?;
        }
        err_line(format_args!(
            "steward notify test: {} is invalid; fix the errors above",
            dir.display()
        ))?;
        return Ok(1);
    };
    let chosen: Vec<&Notifications> = snapshot
        .notifications
        .values()
        .filter(|n| only.is_none_or(|o| o == n.name))
        .collect();
    if chosen.is_empty() {
        err_line(format_args!(
            "steward notify test: {} declares no Notifications{}",
            dir.display(),
            only.map(|o| format!(" named {o:?}")).unwrap_or_default()
        ))?;
        return Ok(2);
    }
    let mut failed = false;
    for n in chosen {
        let via = format!(
            "{}:{} ({}, TLS {} or later)",
            n.smtp.server,
            n.smtp.port,
            n.smtp.tls.as_str(),
            n.smtp.min_tls_version.as_str()
        );
        let result = async {
            let settings = SmtpSettings::read(n, dir)?;
            let mail = render(n, &Notice::test(), &snapshot.installation.name)?;
            let mut mailer = Mailer::new(settings);
            let sent = mailer.send(&mail).await;
            mailer.close().await;
            sent
        }
        .await;
        match result {
            Ok(()) => out_line(format_args!(
                "{}: test message accepted by {via} for {}",
                n.name,
                n.to.join(", ")
            ))?,
            Err(e) => {
                failed = true;
                err_line(format_args!("{}: FAILED through {via}: {e}", n.name))?;
            }
        }
    }
    Ok(u8::from(failed))
}

/// Each time the desired-state files turn invalid (valid before, or the first load), record
/// it as an event for mail notifications (`DesiredStateInvalid`); the watcher logs it.
pub async fn report_invalid(
    watch: steward_watch::WatchHandle,
    controllers: steward_controllers::ControllersHandle,
) {
    let mut status = watch.status();
    let mut was_valid = true;
    loop {
        let message = {
            let s = status.borrow_and_update();
            turned_invalid(&mut was_valid, s.attempts, s.valid)
                .then(|| invalid_message(s.error_count, s.errors.first()))
        };
        if let Some(message) = message {
            controllers.desired_state_invalid(&message);
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}

/// `3 errors; the first: servers/app2.yaml:12:11: error[duplicate-port]: ...` (the
/// diagnostic's values are already quoted and bounded; none is a secret).
fn invalid_message(count: usize, first: Option<&steward_model::Diagnostic>) -> String {
    let plural = if count == 1 { "" } else { "s" };
    match first {
        Some(d) => format!(
            "the desired state is invalid ({count} error{plural}; the last good state stays in force); the first: {d}"
        ),
        None => format!(
            "the desired state is invalid ({count} error{plural}; the last good state stays in force)"
        ),
    }
}

/// Whether a load (`attempts` so far, `valid` or not) turns the files invalid, given what
/// the last judged load said (`was_valid`, updated): once per turn, not once per reload.
fn turned_invalid(was_valid: &mut bool, attempts: u64, valid: bool) -> bool {
    if attempts == 0 {
        return false;
    }
    let turned = *was_valid && !valid;
    *was_valid = valid;
    turned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_is_reported_once_per_turn() {
        let mut was_valid = true;
        let loads = [
            (0, false),
            (1, true),
            (2, false),
            (3, false),
            (4, true),
            (5, false),
        ];
        let reported: Vec<bool> = loads
            .iter()
            .map(|&(attempts, valid)| turned_invalid(&mut was_valid, attempts, valid))
            .collect();
        assert_eq!(reported, [false, false, true, false, false, true]);
        // A first load that is already invalid counts too.
        let mut was_valid = true;
        assert!(turned_invalid(&mut was_valid, 1, false));
    }
}
