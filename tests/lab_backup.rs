//! End-to-end: a converged lab is backed up while its daemon runs; a second daemon on a
//! fresh state directory restored from that backup manages the same fleet without issuing
//! a certificate or installing a service again.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use support::*;

const PASSPHRASE: &str = "lab backup passphrase, not a secret of anything real";

fn thumbprints(status: &Value) -> BTreeMap<String, String> {
    status["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| {
            let name = s["name"].as_str().expect("name").to_owned();
            let thumbprint = s["certificate"]["thumbprint"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no certificate thumbprint"))
                .to_owned();
            (name, thumbprint)
        })
        .collect()
}

fn steward(args: &[&std::ffi::OsStr]) {
    let out = Command::new(binary())
        .args(args)
        .env("STEWARD_BACKUP_PASSPHRASE", PASSPHRASE)
        .output()
        .expect("run steward");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "steward {args:?}: {stderr}");
    assert!(!stderr.contains(PASSPHRASE), "{stderr}");
}

#[test]
fn a_daemon_restored_from_a_backup_takes_over_the_fleet_without_reissuing() {
    let mut first = Lab::start(160);
    let converged = first.wait_converged(1);
    let before = thumbprints(&converged);
    assert_eq!(before.len(), 2, "{before:?}");
    // The events the second daemon must not repeat are the ones this one recorded.
    let first_events: Vec<String> = events(&converged).into_iter().map(|e| e.1).collect();
    for reason in ["CertificateIssued", "Installed"] {
        assert!(
            first_events.iter().any(|r| r == reason),
            "{reason}: {first_events:?}"
        );
    }

    // While the daemon runs.
    let archive = first.root().join("state.age");
    steward(&[
        "backup".as_ref(),
        "--out".as_ref(),
        archive.as_os_str(),
        "--state-dir".as_ref(),
        first.state.as_os_str(),
    ]);
    first.stop();

    // The same fleet (same lab addresses), a new daemon on a new state directory.
    let mut second = Lab::new(160, Options::default());
    assert!(!second.state.exists());
    steward(&[
        "restore".as_ref(),
        archive.as_os_str(),
        "--state-dir".as_ref(),
        second.state.as_os_str(),
    ]);
    let restored_ca = std::fs::read_to_string(second.state.join("ca/ca.pem")).unwrap();
    assert_eq!(
        restored_ca,
        std::fs::read_to_string(first.state.join("ca/ca.pem")).unwrap()
    );
    second.spawn();
    let converged = second.wait_converged(1);
    assert_eq!(
        thumbprints(&converged),
        before,
        "a certificate was reissued"
    );
    let changes: Vec<_> = events(&converged)
        .into_iter()
        .filter(|e| {
            matches!(
                e.1.as_str(),
                "CertificateIssued" | "Installed" | "Reinstalled"
            )
        })
        .collect();
    assert!(
        changes.is_empty(),
        "the restored daemon redid work: {changes:?}"
    );
    assert!(
        !second.log().contains("created the steward CA"),
        "the restored daemon made a CA of its own"
    );
    second.stop();
}
