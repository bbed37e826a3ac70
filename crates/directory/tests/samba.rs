//! Against a real Active Directory: one Samba AD DC for the whole binary (its ports are
//! fixed), started by `main` before the tests and stopped after them. `harness = false`
//! so the DC outlives every test and is stopped even when one fails; output follows
//! libtest's format (`test NAME ... ok`, a closing `test result:` line) and a name filter
//! argument works like libtest's.

mod support;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Instant;

use futures::FutureExt;
use steward_directory::{
    Created, DirectoryKind, Lookup, MemberChanges, MembersPolicy, Password, Session,
    GLOBAL_SECURITY_GROUP,
};
use support::samba::{Samba, BASE, CONTAINER};

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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let selected: Vec<_> = tests()
        .into_iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    println!("\nrunning {} tests", selected.len());
    if selected.is_empty() {
        println!("\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n");
        return;
    }
    let Some(samba) = runtime.block_on(Samba::start(false)) else {
        println!("\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n");
        return;
    };
    let started = Instant::now();
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let outcome = runtime.block_on(AssertUnwindSafe(test(&samba)).catch_unwind());
        match outcome {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    drop(samba);
    let passed = selected.len() - failed.len();
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s\n",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
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
    let mut config = samba.service_config(LDAPS);
    config.password = Password::new(secret);
    let err = Session::connect(&config).await.unwrap_err();
    assert_eq!(err.label(), "BindFailed", "{err}");
    assert!(err.to_string().contains("invalidCredentials (49)"), "{err}");
    for shown in [err.to_string(), format!("{err:?}"), format!("{config:?}")] {
        assert!(!shown.contains(secret), "password leaked: {shown}");
    }
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
    assert!(session
        .find_groups(&["PS-Users-T3"])
        .await
        .unwrap()
        .missing()
        .is_empty());
    let mut admin = Session::connect(&samba.admin_config(STARTTLS))
        .await
        .unwrap();
    admin
        .delete_entry(&format!("CN=PS-Users-T3,{CONTAINER}"))
        .await
        .unwrap();
    assert_eq!(
        session
            .find_groups(&["PS-Users-T3"])
            .await
            .unwrap()
            .missing(),
        ["PS-Users-T3"]
    );
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

    let plan = session
        .plan_members(
            &group,
            &["t4-alice", "T4-BOB", "t4-nobody"],
            MembersPolicy::Additive,
        )
        .await
        .unwrap();
    assert_eq!(plan.unknown, ["t4-nobody"]);
    assert!(plan.changes.remove.is_empty());
    let applied = session.apply_members(&group, &plan.changes).await.unwrap();
    assert_eq!((applied.added, applied.removed), (2, 0));
    assert_eq!(
        session.read_members(&group).await.unwrap().len(),
        3,
        "mallory kept under additive"
    );
    // AD answers 68 for a value already present: converged, not an error.
    assert_eq!(
        session
            .apply_members(&group, &plan.changes)
            .await
            .unwrap()
            .already_member,
        2
    );

    let exact = session
        .plan_members(&group, &["t4-alice", "t4-carol"], MembersPolicy::Exact)
        .await
        .unwrap();
    assert_eq!(exact.changes.add, [dn_of("t4-carol")]);
    assert_eq!(
        steward_directory::sorted(&exact.changes.remove),
        steward_directory::sorted(&[dn_of("t4-bob"), dn_of("t4-mallory")])
    );
    session.apply_members(&group, &exact.changes).await.unwrap();
    assert_eq!(
        steward_directory::sorted(&session.read_members(&group).await.unwrap()),
        steward_directory::sorted(&[dn_of("t4-alice"), dn_of("t4-carol")])
    );
    // AD answers 53 for removing a value that is absent: converged, not an error.
    let gone = MemberChanges {
        add: vec![],
        remove: vec![dn_of("t4-bob")],
    };
    assert_eq!(
        session
            .apply_members(&group, &gone)
            .await
            .unwrap()
            .not_member,
        1
    );
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
