//! End-to-end: the lab's directory. `steward run --lab` starts a slapd standing in for the
//! example's Active Directory; the status and metrics show it up with every role group
//! present; a group deleted and a member removed behind steward's back come back within a
//! resync; the password shows nowhere.

mod support;

use serde_json::Value;
use steward_directory::{DirectoryConfig, MemberChanges, Password, Session};
use support::*;

const PASSWORD: &str = "lab-Directory-Pw-42";
const GROUPS: &str = "OU=PatientSecure,DC=example,DC=eng";
const ACCOUNT: &str = "CN=svc-ps,CN=Users,DC=example,DC=eng";

fn directory(status: &Value) -> Value {
    status["activeDirectory"][0].clone()
}

/// Up, and every role group present.
fn green(status: &Value) -> bool {
    let d = directory(status);
    d["up"] == true
        && d["groups"]
            .as_array()
            .is_some_and(|g| g.len() == 3 && g.iter().all(|g| g["present"] == true))
}

fn events(status: &Value, reason: &str) -> usize {
    status["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["object"] == "activedirectory/corp" && e["reason"] == reason)
        .count()
}

/// Where the lab serves the example's directory: just below app1's address, on 636 + 10000.
fn directory_addr(lab: &Lab) -> std::net::SocketAddr {
    std::net::SocketAddr::new(lab.address_of(0).into(), 10636)
}

/// An administrator's session on the lab's directory, trusting the lab's CA.
async fn admin(lab: &Lab) -> Session {
    let mut config = DirectoryConfig::new(
        "ldaps://dc1.example.eng:636",
        "example.eng",
        ACCOUNT,
        Password::new(PASSWORD),
    );
    config.container = Some(GROUPS.into());
    config.connect_to = Some(directory_addr(lab));
    let ca = lab.root().join("ca.pem");
    std::fs::write(&ca, lab.ca_pem()).unwrap();
    config.trust = vec![ca];
    Session::connect(&config)
        .await
        .expect("bind to the lab's directory")
}

#[test]
fn the_lab_directory_is_green_and_drift_is_repaired() {
    if steward_testkit::require_tool("slapd", "slapd").is_none() {
        return;
    }
    let mut lab = Lab::new(
        133,
        Options {
            env: vec![("PS_AD_PASSWORD", PASSWORD)],
            ..Options::default()
        },
    );
    lab.spawn();
    let status = lab.wait_status("the directory up with every group present", green);
    let d = directory(&status);
    assert_eq!(d["name"], "corp");
    let users = &d["groups"][2];
    assert_eq!(
        (&users["group"], &users["members"]),
        (&"PS-Users".into(), &2.into())
    );
    let metrics = lab.metrics();
    for line in [
        "steward_active_directory_up{directory=\"corp\"} 1",
        "steward_active_directory_group_present{directory=\"corp\",role=\"administrators\",group=\"PS-Admins\"} 1",
        "steward_active_directory_group_present{directory=\"corp\",role=\"users\",group=\"PS-Users\"} 1",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
    let (code, resource) = lab.get("/api/v1/resources/activedirectory/corp");
    assert_eq!(code, 200, "{resource}");
    let resource: Value = serde_json::from_str(&resource).unwrap();
    assert_eq!(resource["conditions"][0]["reason"], "Reconciled");

    // Behind steward's back: PS-Admins deleted, bob taken out of PS-Users.
    let created_before = events(&status, "GroupCreated");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut session = admin(&lab).await;
        session
            .delete_entry(&format!("cn=PS-Admins,{GROUPS}"))
            .await
            .unwrap();
        let bob = MemberChanges {
            add: vec![],
            remove: vec!["uid=bob,ou=People,dc=example,dc=eng".into()],
        };
        session
            .apply_members(&format!("cn=PS-Users,{GROUPS}"), &bob)
            .await
            .unwrap();
    });
    // createMissingGroups: true, mode autoCorrect: both repaired on the next resync.
    let status = lab.wait_status("PS-Admins recreated", |s| {
        events(s, "GroupCreated") > created_before && green(s)
    });
    assert!(events(&status, "MembersChanged") >= 1, "{status}");
    let members = rt.block_on(async {
        let mut session = admin(&lab).await;
        session
            .read_members(&format!("cn=PS-Users,{GROUPS}"))
            .await
            .unwrap()
    });
    assert!(
        members.iter().any(|m| m.starts_with("uid=bob,")),
        "bob is back: {members:?}"
    );

    // The password is in no output of steward's.
    let (_, status) = lab.get("/api/v1/status");
    let everything = format!("{status}{}{}", lab.metrics(), lab.log_all());
    assert!(!everything.contains(PASSWORD), "the password leaked");
    lab.stop();
}
