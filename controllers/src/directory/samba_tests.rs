//! The directory controller against a real Active Directory: one Samba AD DC (its ports
//! are fixed, so this is the binary's only Samba test), over LDAPS and StartTLS, as the
//! service account: role groups created as global security groups with their
//! sAMAccountName, members added, a group deleted behind steward's back recreated, a
//! wrong password a condition that never shows it, and the DC stopped (Unreachable) then
//! restarted (reconciled again, steward not restarted).

use steward_directory::test_support::samba::{
    Samba, ADMIN_DN, BASE, CONTAINER, SERVICE_DN, SERVICE_PASSWORD,
};
use steward_directory::{Session, GLOBAL_SECURITY_GROUP};
use steward_model::Snapshot;

use super::*;
use crate::fakes::{compiled, fixture_in, headline};

const NAME: &str = "corp";

fn snapshot(url: &str) -> Snapshot {
    let directory = format!(
        "apiVersion: steward/v1\nkind: ActiveDirectory\nmetadata: {{name: {NAME}}}\nspec:\n  displayName: Samba AD\n  domain: example.eng\n  server: {url}\n  container: \"{CONTAINER}\"\n  account: \"{SERVICE_DN}\"\n  passwordRef: file:ad.password\n  trust: [samba-ca.pem]\n  roles: {{owners: [PS-Owners-C1], administrators: [PS-Admins-C1], users: [PS-Users-C1]}}\n  createMissingGroups: true\n  members:\n    PS-Users-C1: [c1-alice, c1-bob]\n"
    );
    compiled(
        &steward_testkit::Fixture::installation()
            .servers([("app1", &["PSIS", "PSWS"][..])])
            .document(&directory)
            .documents(),
    )
}

#[tokio::test]
async fn samba_groups_created_members_added_drift_repaired_and_failures_reported() {
    let Some(mut samba) = Samba::start(false).await else {
        return;
    };
    samba.ldif(
        &["c1-alice", "c1-bob"]
            .map(|n| {
                format!("dn: CN={n},CN=Users,{BASE}\nobjectClass: user\nsAMAccountName: {n}\n\n")
            })
            .concat(),
    );
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("ad.password"), SERVICE_PASSWORD).unwrap();
    std::fs::copy(&samba.ca, files.path().join("samba-ca.pem")).unwrap();
    let fx = fixture_in(&[("app1", &["PSIS", "PSWS"])], files.path());
    let directory = || {
        fx.ctx
            .store
            .status()
            .active_directory
            .into_iter()
            .next()
            .unwrap()
    };

    // LDAPS: the three groups created below the container, alice and bob in PS-Users-C1.
    fx.apply(snapshot("ldaps://127.0.0.1:636"));
    fx.run::<Directories>(NAME.into()).await.unwrap();
    let shown = directory();
    assert_eq!(headline(&shown.conditions), "Reconciled", "{shown:?}");
    assert!(shown.groups.iter().all(|g| g.present == Some(true)));
    assert_eq!(shown.groups[2].members, Some(2));
    let mut admin = Session::connect(&samba.admin_config("ldaps://127.0.0.1:636"))
        .await
        .unwrap();
    let group = format!("CN=PS-Users-C1,{CONTAINER}");
    let attrs = admin
        .read_attributes(&group, &["sAMAccountName", "groupType"])
        .await
        .unwrap();
    assert_eq!(attrs.text("sAMAccountName"), ["PS-Users-C1"]);
    assert_eq!(attrs.text("groupType"), [GLOBAL_SECURITY_GROUP]);

    // Deleted behind steward's back: recreated with its members at the next run.
    admin.delete_entry(&group).await.unwrap();
    fx.run::<Directories>(NAME.into()).await.unwrap();
    assert_eq!(headline(&directory().conditions), "Reconciled");
    assert_eq!(admin.read_members(&group).await.unwrap().len(), 2);
    assert_eq!(
        fx.counter(
            "steward_drift_corrected_total",
            &[("kind", "directory_group")]
        ),
        1.0
    );

    // StartTLS on 389 works alike.
    fx.apply(snapshot("ldap://127.0.0.1:389"));
    fx.run::<Directories>(NAME.into()).await.unwrap();
    assert_eq!(headline(&directory().conditions), "Reconciled");

    // A wrong password: BindFailed, down, and the password nowhere.
    std::fs::write(files.path().join("ad.password"), "Wrong-Samba-Pw-3!").unwrap();
    let error = fx.run::<Directories>(NAME.into()).await.unwrap_err();
    let shown = directory();
    assert_eq!(headline(&shown.conditions), "BindFailed", "{error}");
    assert_eq!(shown.up, Some(false));
    let text = format!("{error} {}", serde_json::to_string(&shown).unwrap());
    assert!(!text.contains("Wrong-Samba-Pw-3!") && !text.contains(SERVICE_PASSWORD));
    assert!(!text.contains(ADMIN_DN), "only the service account binds");

    // The DC goes away (stopped, as a crash or a reboot would): Unreachable, Degraded
    // (it may come back by itself), down in status and metrics; the groups last seen stay.
    std::fs::write(files.path().join("ad.password"), SERVICE_PASSWORD).unwrap();
    fx.run::<Directories>(NAME.into()).await.unwrap();
    drop(admin);
    samba.stop();
    let error = fx.run::<Directories>(NAME.into()).await.unwrap_err();
    let shown = directory();
    assert_eq!(headline(&shown.conditions), "Unreachable", "{error}");
    assert_eq!(shown.up, Some(false));
    let active = shown
        .conditions
        .iter()
        .find(|c| c.status == crate::status::ConditionStatus::True)
        .unwrap();
    assert_eq!(format!("{:?}", active.condition_type), "Degraded");
    assert_eq!(
        fx.gauge("steward_active_directory_up", &[("directory", NAME)]),
        0.0
    );

    // Back on the same database: the same controller, context and store (no restart of
    // steward) binds again at its next run and reports it reconciled and up.
    samba.restart().await;
    fx.run::<Directories>(NAME.into()).await.unwrap();
    let shown = directory();
    assert_eq!(headline(&shown.conditions), "Reconciled", "{shown:?}");
    assert_eq!(shown.up, Some(true));
    assert!(shown.groups.iter().all(|g| g.present == Some(true)));
    assert_eq!(
        fx.gauge("steward_active_directory_up", &[("directory", NAME)]),
        1.0
    );
}
