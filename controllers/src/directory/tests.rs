//! The directory controller against real OpenLDAP slapd instances (one per test, on
//! loopback): role groups found, missing, created and recreated; membership added,
//! re-added and (exact) removed; monitor mode changing nothing; every failure a condition;
//! the password nowhere in what steward shows.

use std::path::Path;

use steward_directory::test_support::slapd::{users_ldif, Slapd, ADMIN_DN, ADMIN_PASSWORD, SUFFIX};
use steward_directory::{DirectoryConfig, MemberChanges, Password, Session};
use steward_model::resource::Mode;
use steward_model::Snapshot;

use super::*;
use crate::fakes::{compiled, fixture_in, headline, yaml_mode, Fixture};
use crate::status::DirectoryStatus;

const NAME: &str = "corp";

/// A group `cn=NAME` under the suffix with `members` (uids), or the empty placeholder.
fn group_ldif(name: &str, members: &[&str]) -> String {
    let mut ldif = format!("dn: cn={name},{SUFFIX}\nobjectClass: groupOfNames\ncn: {name}\n");
    if members.is_empty() {
        ldif.push_str("member:\n");
    }
    for m in members {
        ldif.push_str(&format!("member: uid={m},{SUFFIX}\n"));
    }
    ldif.push('\n');
    ldif
}

/// A desired-state directory holding the bind password and the slapd CA as files.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(slapd: &Slapd) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ad.password"),
            format!("{ADMIN_PASSWORD}\n"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        std::fs::copy(&slapd.ca, dir.path().join("certs/ldap-ca.pem")).unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The installation, one server, and an ActiveDirectory with `spec` lines appended to
/// the common ones (server, account, password file, trust, three roles).
fn snapshot(url: &str, mode: Mode, spec: &str) -> Snapshot {
    let directory = format!(
        "apiVersion: steward/v1\nkind: ActiveDirectory\nmetadata: {{name: {NAME}}}\nspec:\n  displayName: Corp AD\n  domain: example.eng\n  server: {url}\n  account: \"{ADMIN_DN}\"\n  passwordRef: file:ad.password\n  trust: [certs/ldap-ca.pem]\n  roles: {{owners: [PS-Owners], administrators: [PS-Admins], users: [PS-Users]}}\n{spec}"
    );
    compiled(
        &steward_testkit::Fixture::installation()
            .mode(yaml_mode(mode))
            .servers([("app1", &["PSIS", "PSWS"][..])])
            .document(&directory)
            .documents(),
    )
}

fn ldaps(slapd: &Slapd) -> String {
    format!("ldaps://127.0.0.1:{}", slapd.ldaps_port)
}

fn starttls(slapd: &Slapd) -> String {
    format!("ldap://127.0.0.1:{}", slapd.ldap_port)
}

fn fleet(files: &Files) -> Fixture {
    fixture_in(&[("app1", &["PSIS", "PSWS"])], files.path())
}

/// Applies the directory at `url` with `spec` under `mode: autoCorrect`, and runs its
/// controller once.
async fn apply_and_run(fx: &Fixture, url: &str, spec: &str) {
    fx.apply(snapshot(url, Mode::AutoCorrect, spec));
    fx.run::<Directories>(NAME.into()).await.unwrap();
}

/// A spec managing PS-Users' members exactly: `members`, a YAML flow list's items.
fn exact_users(members: &str) -> String {
    format!("  membersPolicy: exact\n  members:\n    PS-Users: [{members}]\n")
}

fn status(fx: &Fixture) -> DirectoryStatus {
    fx.ctx
        .store
        .status()
        .active_directory
        .into_iter()
        .find(|d| d.name == NAME)
        .expect("the directory's status")
}

/// `(role, group, present, members)` of every role group.
fn groups(fx: &Fixture) -> Vec<(String, String, Option<bool>, Option<u32>)> {
    status(fx)
        .groups
        .into_iter()
        .map(|g| (g.role, g.group, g.present, g.members))
        .collect()
}

fn row(
    role: &str,
    group: &str,
    present: bool,
    members: Option<u32>,
) -> (String, String, Option<bool>, Option<u32>) {
    (role.into(), group.into(), Some(present), members)
}

fn present_gauge(fx: &Fixture, role: &str, group: &str) -> Option<f64> {
    fx.gauge(
        "steward_active_directory_group_present",
        &[("directory", NAME), ("role", role), ("group", group)],
    )
    .0
}

fn has_event(fx: &Fixture, reason: &str) -> bool {
    fx.ctx
        .store
        .status()
        .events
        .iter()
        .any(|e| e.object == "activedirectory/corp" && e.reason == reason)
}

/// A session of our own, as an administrator changing the directory behind steward.
async fn admin(slapd: &Slapd) -> Session {
    let mut config = DirectoryConfig::new(
        ldaps(slapd),
        "example.eng",
        ADMIN_DN,
        Password::new(ADMIN_PASSWORD),
    );
    config.trust = vec![slapd.ca.clone()];
    Session::connect(&config).await.expect("admin bind")
}

async fn members_of(slapd: &Slapd, group: &str) -> Vec<String> {
    let mut session = admin(slapd).await;
    let mut members = session
        .read_members(&format!("cn={group},{SUFFIX}"))
        .await
        .unwrap();
    members.sort();
    members
}

/// Delete PS-Users and take alice out of PS-Admins, as an administrator would.
async fn behind_stewards_back(slapd: &Slapd) {
    let mut session = admin(slapd).await;
    session
        .delete_entry(&format!("cn=PS-Users,{SUFFIX}"))
        .await
        .unwrap();
    let out = MemberChanges {
        add: vec![],
        remove: vec![user("alice")],
    };
    session
        .apply_members(&format!("cn=PS-Admins,{SUFFIX}"), &out)
        .await
        .unwrap();
}

/// Asserts that what `behind_stewards_back` did is undone: PS-Users is back with alice
/// and bob, alice is back in PS-Admins, and the directory is reconciled.
async fn assert_undone(fx: &Fixture, slapd: &Slapd) {
    assert_eq!(headline(&status(fx).conditions), "Reconciled");
    assert_eq!(
        members_of(slapd, "PS-Users").await,
        [user("alice"), user("bob")]
    );
    assert_eq!(members_of(slapd, "PS-Admins").await, [user("alice")]);
}

fn user(uid: &str) -> String {
    format!("uid={uid},{SUFFIX}")
}

#[tokio::test]
async fn missing_groups_are_reported_then_created_and_members_added() {
    let seed = users_ldif(&["alice", "bob", "carol"]) + &group_ldif("PS-Owners", &["carol"]);
    let Some(slapd) = Slapd::start(&seed) else {
        return;
    };
    let files = Files::new(&slapd);
    let fx = fleet(&files);
    apply_and_run(&fx, &starttls(&slapd), "").await;
    assert_eq!(
        groups(&fx),
        [
            row("owners", "PS-Owners", true, None),
            row("administrators", "PS-Admins", false, None),
            row("users", "PS-Users", false, None),
        ]
    );
    let shown = status(&fx);
    assert_eq!(shown.up, Some(true));
    assert_eq!(headline(&shown.conditions), "GroupMissing");
    let message = &shown.conditions[0].message;
    assert!(message.contains("PS-Admins, PS-Users"), "{message}");
    assert_eq!(
        fx.gauge("steward_active_directory_up", &[("directory", NAME)]),
        1.0
    );
    assert_eq!(present_gauge(&fx, "owners", "PS-Owners"), Some(1.0));
    assert_eq!(present_gauge(&fx, "users", "PS-Users"), Some(0.0));

    apply_and_run(
        &fx,
        &starttls(&slapd),
        "  createMissingGroups: true\n  members:\n    PS-Users: [alice, bob]\n",
    )
    .await;
    assert_eq!(
        groups(&fx),
        [
            row("owners", "PS-Owners", true, None),
            row("administrators", "PS-Admins", true, None),
            row("users", "PS-Users", true, Some(2)),
        ]
    );
    assert_eq!(headline(&status(&fx).conditions), "Reconciled");
    assert!(has_event(&fx, "GroupCreated") && has_event(&fx, "MembersChanged"));
    assert_eq!(
        members_of(&slapd, "PS-Users").await,
        [user("alice"), user("bob")]
    );
    assert_eq!(present_gauge(&fx, "users", "PS-Users"), Some(1.0));
    let resource = fx.ctx.store.resource("activedirectory", NAME).unwrap();
    assert_eq!(resource.kind, "ActiveDirectory");
    assert_eq!(headline(&resource.conditions), "Reconciled");
    assert!(resource.events.iter().any(|e| e.reason == "GroupCreated"));
}

#[tokio::test]
async fn drift_behind_stewards_back_is_repaired_or_in_monitor_mode_reported() {
    let seed = users_ldif(&["alice", "bob"])
        + &group_ldif("PS-Owners", &[])
        + &group_ldif("PS-Admins", &[])
        + &group_ldif("PS-Users", &["alice", "bob"]);
    let Some(slapd) = Slapd::start(&seed) else {
        return;
    };
    let files = Files::new(&slapd);
    let fx = fleet(&files);
    let spec = "  createMissingGroups: true\n  members:\n    PS-Users: [alice, bob]\n    PS-Admins: [alice]\n";
    apply_and_run(&fx, &ldaps(&slapd), spec).await;
    assert_eq!(headline(&status(&fx).conditions), "Reconciled");

    // An administrator deletes PS-Users and takes alice out of PS-Admins: the next run
    // (same generation) repairs both and counts them as drift.
    behind_stewards_back(&slapd).await;
    fx.run::<Directories>(NAME.into()).await.unwrap();
    assert_undone(&fx, &slapd).await;
    // One group gone; two groups' members (the recreated one's, and PS-Admins').
    for (kind, times) in [("directory_group", 1.0), ("directory_members", 2.0)] {
        let detected = fx.counter("steward_drift_detected_total", &[("kind", kind)]);
        let corrected = fx.counter("steward_drift_corrected_total", &[("kind", kind)]);
        assert_eq!(
            (detected.0, corrected.0),
            (Some(times), Some(times)),
            "{kind}"
        );
    }

    // The same again, in monitor mode: both reported, nothing touched.
    fx.set_mode(Mode::Monitor);
    fx.run::<Directories>(NAME.into()).await.unwrap();
    assert_eq!(headline(&status(&fx).conditions), "Reconciled");
    behind_stewards_back(&slapd).await;
    fx.run::<Directories>(NAME.into()).await.unwrap();
    let shown = status(&fx);
    assert_eq!(headline(&shown.conditions), "GroupMissing");
    let message = shown.conditions[0].message.clone();
    assert!(
        message.contains("PS-Users") && message.contains("mode is monitor"),
        "{message}"
    );
    assert!(message.contains("PS-Admins: would add"), "{message}");
    assert_eq!(present_gauge(&fx, "users", "PS-Users"), Some(0.0));
    assert!(members_of(&slapd, "PS-Admins").await.is_empty());
    let detected = fx.counter(
        "steward_drift_detected_total",
        &[("kind", "directory_group")],
    );
    assert_eq!(detected, 2.0, "reported once more, not repaired");

    // autoCorrect: the group is back with its members, alice is back in PS-Admins.
    fx.set_mode(Mode::AutoCorrect);
    fx.run::<Directories>(NAME.into()).await.unwrap();
    assert_undone(&fx, &slapd).await;
    assert_eq!(present_gauge(&fx, "users", "PS-Users"), Some(1.0));
}

#[tokio::test]
async fn exact_removes_the_unlisted_additive_never_and_unknown_members_are_named() {
    let seed = users_ldif(&["alice", "carol"])
        + &group_ldif("PS-Owners", &[])
        + &group_ldif("PS-Admins", &[])
        + &group_ldif("PS-Users", &["carol"]);
    let Some(slapd) = Slapd::start(&seed) else {
        return;
    };
    let files = Files::new(&slapd);
    let fx = fleet(&files);
    let url = starttls(&slapd);
    apply_and_run(&fx, &url, "  members:\n    PS-Users: [alice]\n").await;
    assert_eq!(
        members_of(&slapd, "PS-Users").await,
        [user("alice"), user("carol")]
    );

    // An unknown account: named, the others still added, nobody removed (even exact).
    apply_and_run(&fx, &url, &exact_users("alice, zed")).await;
    let shown = status(&fx);
    assert_eq!(headline(&shown.conditions), "UnknownMember");
    assert!(
        shown.conditions[0].message.contains("zed"),
        "{:?}",
        shown.conditions
    );
    assert_eq!(
        members_of(&slapd, "PS-Users").await,
        [user("alice"), user("carol")]
    );

    apply_and_run(&fx, &url, &exact_users("alice")).await;
    assert_eq!(headline(&status(&fx).conditions), "Reconciled");
    assert_eq!(members_of(&slapd, "PS-Users").await, [user("alice")]);
    assert_eq!(groups(&fx)[2], row("users", "PS-Users", true, Some(1)));
}

#[tokio::test]
async fn failures_are_conditions_and_the_password_never_shows() {
    let Some(slapd) = Slapd::start(&group_ldif("PS-Owners", &[])) else {
        return;
    };
    let files = Files::new(&slapd);
    let fx = fleet(&files);
    let spec = "  members:\n    PS-Users: [alice]\n";

    let cases: [(&str, String, &str); 3] = [
        // Wrong password: Stalled, the directory counts as down.
        ("BindFailed", ldaps(&slapd), "wrong-Secret-Pw-9"),
        // No trust file: the certificate chains to nothing trusted.
        ("TlsUntrusted", ldaps(&slapd), ADMIN_PASSWORD),
        // Nobody listens there.
        (
            "Unreachable",
            format!("ldaps://127.0.0.1:{}", closed_port()),
            ADMIN_PASSWORD,
        ),
    ];
    for (reason, url, password) in cases {
        std::fs::write(files.path().join("ad.password"), password).unwrap();
        let mut snapshot = snapshot(&url, Mode::AutoCorrect, spec);
        if reason == "TlsUntrusted" {
            snapshot.directories.get_mut(NAME).unwrap().trust.clear();
        }
        fx.apply(snapshot);
        let error = fx.run::<Directories>(NAME.into()).await.unwrap_err();
        let shown = status(&fx);
        assert_eq!(headline(&shown.conditions), reason, "{error}");
        assert_eq!(shown.up, Some(false), "{reason}");
        assert_eq!(
            fx.gauge("steward_active_directory_up", &[("directory", NAME)]),
            0.0
        );
        let expected = if reason == "Unreachable" {
            "Degraded"
        } else {
            "Stalled"
        };
        let active = shown
            .conditions
            .iter()
            .find(|c| c.status == crate::status::ConditionStatus::True)
            .unwrap();
        assert_eq!(format!("{:?}", active.condition_type), expected, "{reason}");
        for secret in [ADMIN_PASSWORD, "wrong-Secret-Pw-9"] {
            assert!(!error.to_string().contains(secret), "{reason}: {error}");
        }
    }

    // A certificate for another host (a slapd of its own, trusted, named for dc9 only).
    let other = Slapd::start_with(
        "",
        |dir, ca| ca.server(dir, "slapd", &["dc9.example.eng"], &[]),
        "",
    )
    .expect("slapd started above");
    std::fs::copy(&other.ca, files.path().join("certs/ldap-ca.pem")).unwrap();
    fx.apply(snapshot_ok(&other, spec));
    let error = fx.run::<Directories>(NAME.into()).await.unwrap_err();
    assert_eq!(
        headline(&status(&fx).conditions),
        "TlsHostMismatch",
        "{error}"
    );
    std::fs::copy(&slapd.ca, files.path().join("certs/ldap-ca.pem")).unwrap();

    // An unset env: reference: its own reason, naming the variable.
    let mut snapshot = snapshot(&ldaps(&slapd), Mode::AutoCorrect, spec);
    snapshot.directories.get_mut(NAME).unwrap().password_ref =
        steward_model::SecretRef::Env("STEWARD_TEST_UNSET_AD_PASSWORD".into());
    fx.apply(snapshot);
    fx.run::<Directories>(NAME.into()).await.unwrap_err();
    let shown = status(&fx);
    assert_eq!(headline(&shown.conditions), "PasswordUnavailable");
    assert!(shown.conditions[0]
        .message
        .contains("STEWARD_TEST_UNSET_AD_PASSWORD"));

    // Back to a good password: up again, and nothing steward shows holds either secret.
    std::fs::write(files.path().join("ad.password"), ADMIN_PASSWORD).unwrap();
    fx.apply(snapshot_ok(&slapd, spec));
    fx.run::<Directories>(NAME.into()).await.unwrap();
    assert_eq!(status(&fx).up, Some(true));
    let mut shown = serde_json::to_string(&fx.ctx.store.status()).unwrap();
    shown
        .push_str(&serde_json::to_string(&fx.ctx.store.resource("activedirectory", NAME)).unwrap());
    shown.push_str(&fx.registry.text());
    for secret in [ADMIN_PASSWORD, "wrong-Secret-Pw-9"] {
        assert!(!shown.contains(secret), "{secret} shown");
    }
    assert!(shown.contains("BindFailed") && shown.contains("TlsUntrusted"));
}

fn snapshot_ok(slapd: &Slapd, spec: &str) -> Snapshot {
    snapshot(&ldaps(slapd), Mode::AutoCorrect, spec)
}

/// A loopback port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    steward_directory::test_support::free_port()
}

#[test]
fn one_group_under_two_names_stalls_and_every_problem_is_in_the_message() {
    let directory = snapshot("ldaps://127.0.0.1:636", Mode::AutoCorrect, "")
        .directories
        .remove(NAME)
        .unwrap();
    let outcome = Outcome {
        shared: vec![vec!["PS-Admins".into(), "PS-Users".into()]],
        missing: vec!["PS-Owners".into()],
        ..Outcome::default()
    };
    let (phase, reason, message) = verdict(&directory, &outcome, false);
    assert_eq!((phase, reason), (Phase::Stalled, "GroupInTwoRoles"));
    assert!(
        message.contains("PS-Admins and PS-Users are one group")
            && message.contains("missing role group(s): PS-Owners (createMissingGroups is false)"),
        "{message}"
    );
}
