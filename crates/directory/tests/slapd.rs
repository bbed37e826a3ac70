//! The generic-LDAP paths and the TLS/bind failure classes against real OpenLDAP slapd
//! instances (one per test, on loopback).

use steward_directory::test_support as support;

use steward_directory::{
    Created, DirectoryConfig, DirectoryKind, Lookup, MembersPolicy, Password, Session,
};
use support::scenario::{
    additive_membership, deleted_behind_our_back, exact_membership_then_absent_removal,
    wrong_password_is_bind_failed_and_never_shown,
};
use support::slapd::{groups_ldif, users_ldif, Slapd, ADMIN_DN, ADMIN_PASSWORD, SUFFIX};

fn config(slapd: &Slapd, url: &str) -> DirectoryConfig {
    let mut config =
        DirectoryConfig::new(url, "example.eng", ADMIN_DN, Password::new(ADMIN_PASSWORD));
    config.trust = vec![slapd.ca.clone()];
    config
}

fn ldaps(slapd: &Slapd) -> String {
    format!("ldaps://127.0.0.1:{}", slapd.ldaps_port)
}

fn starttls(slapd: &Slapd) -> String {
    format!("ldap://127.0.0.1:{}", slapd.ldap_port)
}

/// A session bound as the admin over LDAPS.
async fn ldaps_session(slapd: &Slapd) -> Session {
    Session::connect(&config(slapd, &ldaps(slapd)))
        .await
        .unwrap()
}

/// Asserts that `err` is of class `label` and its message says `says`.
fn assert_failure(err: &steward_directory::DirectoryError, label: &str, says: &str) {
    assert_eq!(err.label(), label, "{err}");
    assert!(err.to_string().contains(says), "{err}");
}

#[tokio::test]
async fn starttls_and_ldaps_binds_succeed_and_detect_generic_ldap() {
    let Some(slapd) = Slapd::start("") else {
        return;
    };
    for url in [
        ldaps(&slapd),
        starttls(&slapd),
        format!("ldap://localhost:{}", slapd.ldap_port),
    ] {
        let session = Session::connect(&config(&slapd, &url))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(session.kind(), DirectoryKind::Generic, "{url}");
        session.close().await;
    }
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_tls_untrusted_on_both_transports() {
    let Some(slapd) = Slapd::start("") else {
        return;
    };
    for url in [ldaps(&slapd), starttls(&slapd)] {
        let mut config = config(&slapd, &url);
        config.trust.clear();
        let err = Session::connect(&config).await.unwrap_err();
        assert_eq!(err.label(), "TlsUntrusted", "{url}: {err}");
        assert!(
            err.to_string()
                .contains("neither a system root nor in the trust files"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_certificate_for_another_host_is_tls_host_mismatch() {
    let cert = |dir: &std::path::Path, ca: &support::pki::TestCa| {
        ca.server(dir, "other", &["ldap.other.eng"], &[])
    };
    let Some(slapd) = Slapd::start_with("", cert, "") else {
        return;
    };
    for url in [ldaps(&slapd), starttls(&slapd)] {
        let err = Session::connect(&config(&slapd, &url)).await.unwrap_err();
        assert_eq!(err.label(), "TlsHostMismatch", "{url}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("127.0.0.1") && text.contains("ldap.other.eng"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_wrong_password_is_bind_failed_and_never_shown() {
    let Some(slapd) = Slapd::start("") else {
        return;
    };
    let secret = "Wrong-Secret-9f3a";
    wrong_password_is_bind_failed_and_never_shown(config(&slapd, &ldaps(&slapd)), secret).await;
}

#[tokio::test]
async fn an_empty_password_is_refused_before_an_anonymous_bind_could_succeed() {
    let Some(slapd) = Slapd::start("") else {
        return;
    };
    let mut config = config(&slapd, &ldaps(&slapd));
    config.password = Password::new("");
    let err = Session::connect(&config).await.unwrap_err();
    assert_failure(&err, "BindFailed", "refused before sending");
}

#[tokio::test]
async fn groups_are_reported_present_missing_and_created_as_group_of_names() {
    let seed = groups_ldif("PS-", 3);
    let Some(slapd) = Slapd::start(&seed) else {
        return;
    };
    let mut session = ldaps_session(&slapd).await;
    let report = session
        .find_groups(&["PS-0", "ps-1", "PS-Missing"])
        .await
        .unwrap();
    assert!(
        matches!(report.get("PS-0"), Some(Lookup::Present(g)) if g.dn == format!("cn=PS-0,{SUFFIX}"))
    );
    assert!(
        matches!(report.get("ps-1"), Some(Lookup::Present(_))),
        "case-insensitive like the server"
    );
    assert_eq!(report.missing(), ["PS-Missing"]);

    let created = session.create_group("PS-Missing").await.unwrap();
    assert_eq!(
        created,
        Created::Created {
            dn: "CN=PS-Missing,DC=example,DC=eng".into()
        }
    );
    assert!(matches!(
        session
            .find_groups(&["PS-Missing"])
            .await
            .unwrap()
            .get("PS-Missing"),
        Some(Lookup::Present(_))
    ));
    // Creating it again is reported, not an error: someone may have been quicker.
    assert!(matches!(
        session.create_group("PS-Missing").await.unwrap(),
        Created::AlreadyExists { .. }
    ));
    // The placeholder member the schema requires is not a member.
    assert!(session
        .read_members(&format!("CN=PS-Missing,{SUFFIX}"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn one_group_reached_under_two_names_is_reported_as_shared() {
    let seed = format!(
        "dn: cn=PS-Admins,{SUFFIX}\nobjectClass: groupOfNames\ncn: PS-Admins\ncn: Admins-Old\nmember:\n\n{}",
        groups_ldif("PS-Users", 1)
    );
    let Some(slapd) = Slapd::start(&seed) else {
        return;
    };
    let mut session = ldaps_session(&slapd).await;
    let report = session
        .find_groups(&["PS-Admins", "Admins-Old", "PS-Users0"])
        .await
        .unwrap();
    let shared = report.shared();
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert_eq!(shared[0].names, ["Admins-Old", "PS-Admins"]);
    assert_eq!(shared[0].dn, format!("cn=PS-Admins,{SUFFIX}"));
}

#[tokio::test]
async fn a_group_deleted_behind_our_back_is_reported_missing() {
    let Some(slapd) = Slapd::start(&groups_ldif("PS-", 2)) else {
        return;
    };
    let mut steward = ldaps_session(&slapd).await;
    let mut admin = Session::connect(&config(&slapd, &starttls(&slapd)))
        .await
        .unwrap();
    let dn = format!("cn=PS-1,{SUFFIX}");
    deleted_behind_our_back(&mut steward, &mut admin, "PS-1", &dn, &["PS-0", "PS-1"]).await;
}

#[tokio::test]
async fn additive_membership_adds_and_keeps_others_exact_removes_them() {
    let users = users_ldif(&["alice", "bob", "carol", "mallory"]);
    let group = format!(
        "dn: cn=PS-Users,{SUFFIX}\nobjectClass: groupOfNames\ncn: PS-Users\nmember:\nmember: uid=mallory,{SUFFIX}\n\n"
    );
    let Some(slapd) = Slapd::start(&format!("{users}{group}")) else {
        return;
    };
    let group_dn = format!("cn=PS-Users,{SUFFIX}");
    let mut session = ldaps_session(&slapd).await;

    // Applying the same adds again (a concurrent change) converges instead of failing.
    let plan = additive_membership(&mut session, &group_dn, ["alice", "bob", "nobody"]).await;
    assert_eq!(
        plan.changes.add,
        [format!("uid=alice,{SUFFIX}"), format!("uid=bob,{SUFFIX}")]
    );

    // Removing someone no longer there counts as converged.
    exact_membership_then_absent_removal(
        &mut session,
        &group_dn,
        ["alice", "bob", "carol"],
        &["mallory"],
        |n| format!("uid={n},{SUFFIX}"),
    )
    .await;
}

#[tokio::test]
async fn exact_never_removes_while_a_listed_account_is_unknown() {
    let users = users_ldif(&["alice", "mallory"]);
    let group = format!(
        "dn: cn=G,{SUFFIX}\nobjectClass: groupOfNames\ncn: G\nmember: uid=mallory,{SUFFIX}\n\n"
    );
    let Some(slapd) = Slapd::start(&format!("{users}{group}")) else {
        return;
    };
    let mut session = ldaps_session(&slapd).await;
    let plan = session
        .plan_members(
            &format!("cn=G,{SUFFIX}"),
            &["alice", "typo-mallory"],
            MembersPolicy::Exact,
        )
        .await
        .unwrap();
    assert_eq!(plan.unknown, ["typo-mallory"]);
    assert!(plan.changes.remove.is_empty(), "{plan:?}");
}

#[tokio::test]
async fn a_search_over_the_entry_bound_is_cut_off_and_reported() {
    let Some(slapd) = Slapd::start(&groups_ldif("G", 30)) else {
        return;
    };
    let mut config = config(&slapd, &ldaps(&slapd));
    config.max_entries = 10;
    let mut session = Session::connect(&config).await.unwrap();
    let names: Vec<String> = (0..30).map(|i| format!("G{i}")).collect();
    let err = session.find_groups(&names).await.unwrap_err();
    assert_failure(&err, "Protocol", "more than 10 entries");
    // The connection stays usable for bounded work.
    assert!(session
        .find_groups(&["G1"])
        .await
        .unwrap()
        .missing()
        .is_empty());
}

#[tokio::test]
async fn a_referral_for_a_container_the_server_does_not_hold_is_a_protocol_error() {
    let Some(slapd) = Slapd::start_with(
        "",
        |d, ca| ca.server(d, "s", &["localhost"], &["127.0.0.1"]),
        "referral ldap://elsewhere.example.eng/",
    ) else {
        return;
    };
    let mut config = config(&slapd, &ldaps(&slapd));
    config.container = Some("OU=Elsewhere,DC=other,DC=eng".into());
    let mut session = Session::connect(&config).await.unwrap();
    let err = session.find_groups(&["PS-Users"]).await.unwrap_err();
    assert_failure(&err, "Protocol", "referral to ldap://elsewhere.example.eng");
}

#[tokio::test]
async fn a_missing_container_is_rejected_with_no_such_object() {
    let Some(slapd) = Slapd::start("") else {
        return;
    };
    let mut config = config(&slapd, &ldaps(&slapd));
    config.container = Some(format!("ou=Nowhere,{SUFFIX}"));
    let mut session = Session::connect(&config).await.unwrap();
    let err = session.find_groups(&["PS-Users"]).await.unwrap_err();
    assert_failure(&err, "Rejected", "noSuchObject");
}

#[tokio::test]
async fn a_stopped_server_is_unreachable_for_the_session_and_new_connections() {
    let Some(slapd) = Slapd::start("") else {
        return;
    };
    let mut config = config(&slapd, &ldaps(&slapd));
    // The CA file goes with slapd's directory; keep a copy for the reconnect.
    let keep = tempfile::tempdir().unwrap();
    let ca = keep.path().join("ca.pem");
    std::fs::copy(&slapd.ca, &ca).unwrap();
    config.trust = vec![ca];
    let mut session = Session::connect(&config).await.unwrap();
    drop(slapd);
    let err = session.find_groups(&["x"]).await.unwrap_err();
    assert_eq!(err.label(), "Unreachable", "{err}");
    let err = Session::connect(&config).await.unwrap_err();
    assert_failure(&err, "Unreachable", "TCP connect");
}

#[tokio::test]
async fn connect_to_reaches_that_address_and_the_certificate_is_checked_for_the_urls_host() {
    let Some(slapd) = Slapd::start("") else {
        return;
    };
    let at = Some(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        slapd.ldaps_port,
    )));
    // dc1.example.eng does not resolve here: only connect_to gets there.
    let mut named = config(
        &slapd,
        &format!("ldaps://dc1.example.eng:{}", slapd.ldaps_port),
    );
    named.connect_to = at;
    Session::connect(&named)
        .await
        .expect("bound through connect_to");
    let mut other = config(
        &slapd,
        &format!("ldaps://dc9.example.eng:{}", slapd.ldaps_port),
    );
    other.connect_to = at;
    let err = Session::connect(&other).await.unwrap_err();
    assert_eq!(err.label(), "TlsHostMismatch", "{err}");
}

#[tokio::test]
async fn many_groups_are_created_in_one_pipelined_call_answered_in_order() {
    let Some(slapd) = Slapd::start(&groups_ldif("PS-Batch-", 1)) else {
        return;
    };
    let mut session = ldaps_session(&slapd).await;
    // More names than adds in flight, one of which exists already.
    let names: Vec<String> = (0..40).map(|i| format!("PS-Batch-{i}")).collect();
    let created = session.create_groups(&names).await.unwrap();
    assert_eq!(created.len(), names.len());
    for (name, created) in names.iter().zip(&created) {
        let dn = format!("CN={name},DC=example,DC=eng");
        let expected = if name == "PS-Batch-0" {
            Created::AlreadyExists { dn }
        } else {
            Created::Created { dn }
        };
        assert_eq!(created, &expected);
    }
    let report = session.find_groups(&names).await.unwrap();
    assert!(report.missing().is_empty(), "{:?}", report.missing());
}

#[tokio::test]
async fn a_bad_name_refuses_the_whole_batch_before_anything_is_sent() {
    let Some(slapd) = Slapd::start("") else {
        return;
    };
    let mut session = ldaps_session(&slapd).await;
    let err = session
        .create_groups(&["PS-First", "PS-Bad,Name", "PS-Last"])
        .await
        .unwrap_err();
    assert_failure(&err, "Config", "PS-Bad,Name");
    let report = session.find_groups(&["PS-First", "PS-Last"]).await.unwrap();
    assert_eq!(report.missing(), ["PS-First", "PS-Last"], "nothing created");
}

/// A server that stops answering after the bind: each call is one operation timeout and
/// a `Timeout` error, lookups and pipelined creations alike; never a hang.
#[tokio::test]
async fn a_server_that_hangs_mid_session_is_a_bounded_timeout_per_call() {
    let Some(slapd) = Slapd::start("") else {
        return;
    };
    let mut config = config(&slapd, &ldaps(&slapd));
    config.operation_timeout = std::time::Duration::from_millis(500);
    let mut session = Session::connect(&config).await.unwrap();
    slapd.pause();
    let err = session.find_groups(&["PS-Any"]).await.unwrap_err();
    assert_failure(
        &err,
        "Timeout",
        "no answer within 500ms while looking up role groups",
    );
    let names: Vec<String> = (0..20).map(|i| format!("PS-Hung-{i}")).collect();
    let err = session.create_groups(&names).await.unwrap_err();
    assert_failure(&err, "Timeout", "creating a group");
    slapd.resume();
}
