//! End-to-end: mail notifications from a running `steward run --lab` to a real aiosmtpd
//! (the steward-notify tests' harness). A broken commit to the desired state produces
//! exactly one `DesiredStateInvalid` mail, whose body locates the error and holds no
//! secret; the fix that follows mails nothing, and a second broken commit within the
//! rate limit mails nothing either. A service installed by hand with another release
//! (outside any upgrade) mails `MixedReleases`, naming the releases and their servers.
//!
//! "Nothing more" is checked without waiting for a duration: the daemon's status counts
//! what each Notifications object has queued and sent, so once the fix has converged, its
//! events recorded, and the queue is empty, any mail the fix caused is either counted as
//! sent or already in the server's mailbox.

mod support;

#[path = "../crates/notify/tests/support/mod.rs"]
mod smtp;

use serde_json::Value;
use support::*;

const APP2: &str = "servers/app2.yaml";
/// The lab's directory bind password, set so that the test knows what must not show.
const AD_PASSWORD: &str = "Lab-Ad-Secret-Pw-5!";

fn notifications_yaml(port: u16) -> String {
    format!(
        "apiVersion: steward/v1\nkind: Notifications\nmetadata: {{name: admins}}\nspec:\n  smtp: {{server: 127.0.0.1, port: {port}, tls: none}}\n  from: steward@example.eng\n  to: [ps-admins@example.eng]\n  events: [DesiredStateInvalid, ServiceDown, ServiceRecovered, AgentDown, DriftCorrected, CertificateFailed]\n"
    )
}

/// `(queued, sent)` of the `admins` Notifications object.
fn delivery(status: &Value) -> Option<(u64, u64)> {
    let admins = status["notifications"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == "admins")?;
    let d = &admins["delivery"];
    Some((d["queued"].as_u64()?, d["sent"].as_u64()?))
}

/// Mails whose subject names `event`.
fn mails_of(server: &smtp::Smtpd, event: &str) -> Vec<smtp::Received> {
    server
        .received()
        .into_iter()
        .filter(|m| {
            m.header("Subject")
                .is_some_and(|s| s.contains(&format!("] {event}:")))
        })
        .collect()
}

/// Waits until the queue is empty and everything sent is in the mailbox; the mail count.
fn settled(lab: &Lab, server: &smtp::Smtpd, what: &str) -> usize {
    let status = lab.wait_status(what, |s| {
        delivery(s)
            .is_some_and(|(queued, sent)| queued == 0 && server.received().len() as u64 == sent)
    });
    delivery(&status).unwrap().1 as usize
}

#[test]
fn a_broken_commit_mails_once_and_its_fix_mails_nothing() {
    let Some(python) = smtp::python() else { return };
    let server = smtp::Smtpd::start(&python, smtp::ServerOptions::default());
    let mut lab = Lab::new(
        181,
        Options {
            env: vec![("PS_AD_PASSWORD", AD_PASSWORD)],
            ..Options::default()
        },
    );
    lab.write("notifications.yaml", &notifications_yaml(server.port));
    lab.commit("mail the administrators");
    lab.spawn();
    lab.wait_converged(1);
    // Whatever the first converge mailed (it may mail nothing), it is out now.
    let before = settled(&lab, &server, "the first converge's mail delivered");
    assert!(mails_of(&server, "DesiredStateInvalid").is_empty());

    // 1. A broken commit: exactly one DesiredStateInvalid mail, the error located in it.
    lab.commit_edit(
        APP2,
        "  hostname: app2.example.eng\n",
        "  hostname: app2.example.eng: oops\n",
        "broken: YAML syntax",
    );
    lab.wait_status("the broken commit reported", |s| s["valid"] == false);
    let got = steward_testkit::within(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(100),
        || Some(mails_of(&server, "DesiredStateInvalid")).filter(|m| !m.is_empty()),
    )
    .expect("a DesiredStateInvalid mail within 60 s");
    let after_break = settled(&lab, &server, "the DesiredStateInvalid mail delivered");
    assert_eq!(after_break, before + 1, "one mail for one broken commit");
    assert_eq!(got.len(), 1);
    let mail = &got[0];
    assert_eq!(mail.to, ["ps-admins@example.eng"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[PatientSecure] DesiredStateInvalid: installation/patientsecure")
    );
    let body = mail.body();
    assert!(
        body.contains("servers/app2.yaml:8:") && body.contains("yaml-syntax"),
        "the located error in the body: {body}"
    );
    assert!(
        body.contains("the last good state stays in force"),
        "{body}"
    );
    let database_password =
        std::fs::read_to_string(lab.state.join("lab/database-password")).unwrap_or_default();
    for secret in [AD_PASSWORD, database_password.trim()] {
        assert!(
            secret.is_empty() || !mail.data.contains(secret),
            "a secret in the mail"
        );
    }

    // 2. The fix: valid again (the same content as generation 1, so still generation 1),
    //    every service healthy, and no mail.
    let fixed = lab.read(APP2).replace(
        "  hostname: app2.example.eng: oops\n",
        "  hostname: app2.example.eng\n",
    );
    lab.write(APP2, &fixed);
    lab.commit("fixed");
    lab.wait_status("the fix applied, every service healthy", |s| {
        s["valid"] == true && all_declared_healthy(s)
    });
    let after_fix = settled(&lab, &server, "the queue empty after the fix");
    assert_eq!(after_fix, after_break, "the fix mailed something");

    // 3. Broken again within the rate limit: reported, but not mailed again.
    lab.commit_edit(
        APP2,
        "  hostname: app2.example.eng\n",
        "  hostname: [app2\n",
        "broken again",
    );
    lab.wait_status("the second broken commit recorded", |s| {
        s["valid"] == false
            && events(s)
                .iter()
                .filter(|e| e.1 == "DesiredStateInvalid")
                .count()
                == 2
    });
    let after_second = settled(&lab, &server, "nothing queued after the second break");
    assert_eq!(
        after_second, after_break,
        "mailed twice within the rate limit"
    );
    assert_eq!(mails_of(&server, "DesiredStateInvalid").len(), 1);
    lab.stop();
}

#[test]
fn a_release_installed_by_hand_mails_mixed_releases() {
    let Some(python) = smtp::python() else { return };
    let server = smtp::Smtpd::start(&python, smtp::ServerOptions::default());
    let mut lab = Lab::new(182, Options::default());
    lab.write(
        "notifications.yaml",
        &notifications_yaml(server.port).replace(
            "events: [DesiredStateInvalid,",
            "events: [MixedReleases, DesiredStateInvalid,",
        ),
    );
    lab.write(
        "upgrade-policy.yaml",
        "apiVersion: steward/v1\nkind: UpgradePolicy\nmetadata: {name: default}\nspec:\n  from: [\"6.12.*\"]\n",
    );
    lab.commit("mail the administrators, an upgrade policy");
    lab.spawn();
    lab.wait_converged(1);
    lab.wait_status("one release everywhere", |s| {
        s["upgrade"]["phase"] == "Idle"
    });
    assert!(mails_of(&server, "MixedReleases").is_empty());

    // An operator installs 6.11.0 of EMPI on app2 by hand, through its agent.
    let empi = lab.agent_service("app2", "EMPI").expect("EMPI on app2");
    let body = serde_json::json!({
        "ports": empi["ports"],
        "drive": empi["drive"],
        "release": "6.11.0",
        "installedBy": empi["installedBy"],
    });
    let addr = std::net::SocketAddr::new(lab.server_address("app2").into(), 7443);
    let (addr, name) = (addr.to_string(), addr.ip().to_string());
    let resp = steward_testkit::http::Request {
        method: "PUT",
        json: Some(&body),
        tls: Some((lab.client_tls(), name.as_str())),
        ..steward_testkit::http::Request::get(&addr, "/v1/services/EMPI")
    }
    .send()
    .expect("PUT /v1/services/EMPI");
    assert!(resp.status < 300, "{} {}", resp.status, resp.text());

    let got = steward_testkit::within(
        std::time::Duration::from_secs(120),
        std::time::Duration::from_millis(100),
        || Some(mails_of(&server, "MixedReleases")).filter(|m| !m.is_empty()),
    )
    .expect("a MixedReleases mail within 120 s");
    let mail = &got[0];
    assert_eq!(mail.to, ["ps-admins@example.eng"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[PatientSecure] MixedReleases: installation/patientsecure")
    );
    // Quoted-printable: long lines are cut with soft breaks.
    let body = mail.body().replace("=\r\n", "").replace("=\n", "");
    assert!(
        body.contains("6.11.0 on app2") && body.contains("6.12.1 on app1, app2"),
        "{body}"
    );
    let status = lab.status();
    assert_eq!(
        status["upgrade"]["mixedReleases"],
        serde_json::json!(["6.11.0 on app2", "6.12.1 on app1, app2"]),
        "{}",
        status["upgrade"]
    );
    lab.stop();
}
