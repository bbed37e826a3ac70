//! `steward notify test [DIR]` against a real aiosmtpd on loopback (the notify crate's
//! tests/smtpd.py): it sends, or says which step failed, with the exit codes documented.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use steward_testkit::copy_dir;

fn steward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(args)
        .output()
        .expect("run steward")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The bundled desired state plus one Notifications object mailing 127.0.0.1:`port`.
fn desired_state(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../desired-state"),
        dir.path(),
    );
    std::fs::write(
        dir.path().join("notifications.yaml"),
        format!("apiVersion: steward/v1\nkind: Notifications\nmetadata: {{name: admins}}\nspec:\n  smtp: {{server: 127.0.0.1, port: {port}, tls: none}}\n  from: steward@example.eng\n  to: [ps-admins@example.eng]\n  events: [ServiceDown]\n  subject: \"{{{{ reason }}}} from {{{{ installation }}}}\"\n"),
    )
    .unwrap();
    dir
}

struct Smtpd(Child);

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn smtpd(port: u16, out: &Path) -> Option<Smtpd> {
    let python = Command::new("python3")
        .args(["-c", "import sys, aiosmtpd; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(text(&o.stdout).trim()));
    let Some(python) = python else {
        steward_testkit::skip("python3 with aiosmtpd is not installed (pip install aiosmtpd==1.4.6; scripts/test-all.sh installs it)");
        return None;
    };
    let mut child = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../notify/tests/smtpd.py"))
        .args(["--port", &port.to_string()])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY");
    Some(Smtpd(child))
}

#[test]
fn a_test_message_is_sent_and_received() {
    let port = free_port();
    let inbox = tempfile::tempdir().unwrap();
    let Some(_server) = smtpd(port, inbox.path()) else {
        return;
    };
    let dir = desired_state(port);
    let out = steward(&["notify", "test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("admins: test message accepted by 127.0.0.1:"),
        "{stdout}"
    );
    let files: Vec<_> = std::fs::read_dir(inbox.path()).unwrap().collect();
    assert_eq!(files.len(), 1);
    let received: serde_json::Value =
        serde_json::from_slice(&std::fs::read(files[0].as_ref().unwrap().path()).unwrap()).unwrap();
    assert_eq!(
        received["rcpt_tos"],
        serde_json::json!(["ps-admins@example.eng"])
    );
    let data = received["data"].as_str().unwrap();
    assert!(data.contains("Subject: NotificationTest from"), "{data}");
}

#[test]
fn a_failure_names_the_step_and_exits_1() {
    let dir = desired_state(free_port());
    let out = steward(&["notify", "test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("admins: FAILED through 127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("TCP: cannot connect"), "{stderr}");
}

#[test]
fn nothing_to_test_exits_2() {
    let dir = desired_state(25);
    let out = steward(&[
        "notify",
        "test",
        dir.path().to_str().unwrap(),
        "--name",
        "nobody",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("declares no Notifications named \"nobody\""));
}
