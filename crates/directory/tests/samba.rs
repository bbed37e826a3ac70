//! Against a real Active Directory: one Samba AD DC for the whole binary (its ports are
//! fixed), started before the first test and stopped after the last. `harness = false`
//! (with `libtest-mimic` for libtest's command line and output) so the DC outlives every
//! test and is stopped even when one fails.

use steward_directory::test_support as support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use libtest_mimic::{Arguments, Trial};
use steward_directory::{Created, DirectoryKind, Lookup, Session, GLOBAL_SECURITY_GROUP};
use support::samba::{Samba, BASE, CONTAINER};
use support::scenario::{
    additive_membership, deleted_behind_our_back, exact_membership_then_absent_removal,
    wrong_password_is_bind_failed_and_never_shown,
};

type TestFn = for<'a> fn(&'a Samba) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

const LDAPS: &str = "ldaps://127.0.0.1:636";
const STARTTLS: &str = "ldap://127.0.0.1:389";

fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "samba_starttls_and_ldaps_binds_detect_active_directory",
            |s| Box::pin(binds(s)),
        ),
        ("samba_untrusted_certificate_is_tls_untrusted", |s| {
            Box::pin(untrusted(s))
        }),
        (
            "samba_wrong_password_is_bind_failed_without_the_password",
            |s| Box::pin(wrong_password(s)),
        ),
        (
            "samba_groups_present_missing_and_created_with_sam_account_name",
            |s| Box::pin(groups(s)),
        ),
        ("samba_one_group_under_two_names_is_shared", |s| {
            Box::pin(shared(s))
        }),
        ("samba_deleted_group_is_detected_and_recreated", |s| {
            Box::pin(deleted(s))
        }),
        ("samba_additive_and_exact_membership", |s| {
            Box::pin(membership(s))
        }),
        (
            "samba_5000_member_group_is_read_completely_via_ranges",
            |s| Box::pin(big_group(s)),
        ),
    ]
}

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    // One DC, shared: the tests run one after the other, like the groups they create.
    args.test_threads = Some(1);
    let runtime = Arc::new(tokio::runtime::Runtime::new().expect("tokio runtime"));
    // Started by the first test that runs (none: a filter left nothing to run), stopped
    // after the last.
    let samba: Arc<OnceLock<Option<Samba>>> = Arc::default();
    let trials = tests()
        .into_iter()
        .map(|(name, test)| {
            let (runtime, samba) = (runtime.clone(), samba.clone());
            Trial::test(name, move || {
                let samba = samba.get_or_init(|| runtime.block_on(Samba::start(false)));
                // No DC here (outside CI): `Samba::start` printed the skip.
                if let Some(samba) = samba {
                    runtime.block_on(test(samba));
                }
                Ok(())
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(samba);
    conclusion.exit_code()
}

async fn service(samba: &Samba) -> Session {
    Session::connect(&samba.service_config(LDAPS))
        .await
        .expect("service account binds")
}

async fn binds(samba: &Samba) {
    for url in [LDAPS, STARTTLS, "ldap://localhost:389", "ldaps://localhost"] {
        let session = Session::connect(&samba.service_config(url))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(session.kind(), DirectoryKind::ActiveDirectory, "{url}");
        session.close().await;
    }
}

async fn untrusted(samba: &Samba) {
    for url in [LDAPS, STARTTLS] {
        let mut config = samba.service_config(url);
        config.trust.clear();
        let err = Session::connect(&config).await.unwrap_err();
        assert_eq!(err.label(), "TlsUntrusted", "{url}: {err}");
    }
}

async fn wrong_password(samba: &Samba) {
    let secret = "Not-The-Pw-4417!";
    wrong_password_is_bind_failed_and_never_shown(samba.service_config(LDAPS), secret).await;
}

async fn groups(samba: &Samba) {
    let mut session = service(samba).await;
    let report = session
        .find_groups(&["PS-Owners-T1", "PS-Admins-T1"])
        .await
        .unwrap();
    assert_eq!(report.missing(), ["PS-Admins-T1", "PS-Owners-T1"]);
    let created = session.create_group("PS-Owners-T1").await.unwrap();
    let dn = format!("CN=PS-Owners-T1,{CONTAINER}");
    assert_eq!(created, Created::Created { dn: dn.clone() });
    let report = session
        .find_groups(&["ps-owners-t1", "PS-Admins-T1"])
        .await
        .unwrap();
    assert!(
        matches!(report.get("ps-owners-t1"), Some(Lookup::Present(g)) if g.dn == dn && g.id.len() == 32)
    );
    assert_eq!(report.missing(), ["PS-Admins-T1"]);
    // AD would otherwise invent `$XXXX-...` names and could pick a distribution type.
    let mut admin = Session::connect(&samba.admin_config(LDAPS)).await.unwrap();
    let attrs = admin
        .read_attributes(&dn, &["sAMAccountName", "groupType"])
        .await
        .unwrap();
    assert_eq!(attrs.text("sAMAccountName"), ["PS-Owners-T1"]);
    assert_eq!(attrs.text("groupType"), [GLOBAL_SECURITY_GROUP]);
    assert!(matches!(
        session.create_group("PS-Owners-T1").await.unwrap(),
        Created::AlreadyExists { .. }
    ));
}

async fn shared(samba: &Samba) {
    samba.ldif(&format!(
        "dn: CN=PS Administrators T2,{CONTAINER}\nobjectClass: group\nsAMAccountName: ps-admins-t2\ngroupType: {GLOBAL_SECURITY_GROUP}\n"
    ));
    let mut session = service(samba).await;
    let report = session
        .find_groups(&["ps-admins-t2", "PS Administrators T2"])
        .await
        .unwrap();
    let shared = report.shared();
    assert_eq!(shared.len(), 1, "{report:?}");
    assert_eq!(shared[0].names, ["PS Administrators T2", "ps-admins-t2"]);
}

async fn deleted(samba: &Samba) {
    let mut session = service(samba).await;
    session.create_group("PS-Users-T3").await.unwrap();
    let mut admin = Session::connect(&samba.admin_config(STARTTLS))
        .await
        .unwrap();
    let dn = format!("CN=PS-Users-T3,{CONTAINER}");
    let names = ["PS-Users-T3"];
    deleted_behind_our_back(&mut session, &mut admin, names[0], &dn, &names).await;
    assert!(matches!(
        session.create_group("PS-Users-T3").await.unwrap(),
        Created::Created { .. }
    ));
    assert!(session
        .find_groups(&["PS-Users-T3"])
        .await
        .unwrap()
        .missing()
        .is_empty());
}

fn user_ldif(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("dn: CN={n},CN=Users,{BASE}\nobjectClass: user\nsAMAccountName: {n}\n\n"))
        .collect()
}

async fn membership(samba: &Samba) {
    let names: Vec<String> = ["t4-alice", "t4-bob", "t4-carol", "t4-mallory"]
        .map(String::from)
        .to_vec();
    samba.ldif(&user_ldif(&names));
    let dn_of = |n: &str| format!("CN={n},CN=Users,{BASE}");
    let mut session = service(samba).await;
    session.create_group("PS-Users-T4").await.unwrap();
    let group = format!("CN=PS-Users-T4,{CONTAINER}");
    samba.ldif(&format!(
        "dn: {group}\nchangetype: modify\nadd: member\nmember: {}\n",
        dn_of("t4-mallory")
    ));

    // Names match whatever their case; AD answers 68 for a value already present:
    // converged, not an error.
    additive_membership(&mut session, &group, ["t4-alice", "T4-BOB", "t4-nobody"]).await;

    // AD answers 53 for removing a value that is absent: converged, not an error.
    exact_membership_then_absent_removal(
        &mut session,
        &group,
        ["t4-alice", "t4-bob", "t4-carol"],
        &["t4-mallory"],
        dn_of,
    )
    .await;
}

async fn big_group(samba: &Samba) {
    let group = support::samba::big_group(samba, "PS-Big-T5", 5000);
    let mut session = service(samba).await;
    // The DC answers the ranged request form read_members uses with one range at a time
    // (so its loop is exercised, not a single read).
    let first = session
        .read_attributes(&group, &["member;range=0-1499"])
        .await
        .unwrap();
    let names: Vec<&str> = first.attribute_names().collect();
    assert_eq!(names, ["member;range=0-1499"]);
    assert_eq!(first.text("member;range=0-1499").len(), 1500);
    let members = session.read_members(&group).await.unwrap();
    assert_eq!(members.len(), 5000);
    assert_eq!(
        steward_directory::sorted(&members).len(),
        5000,
        "no value read twice"
    );
}
