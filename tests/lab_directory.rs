//! End-to-end: the lab's directory. `steward run --lab` starts a slapd standing in for the
//! example's Active Directory; the status and metrics show it up with every role group
//! present; a group deleted and a member removed behind steward's back come back within a
//! resync; the password shows nowhere. A dead directory (a slapd that accepts and never
//! answers, then one that is gone) is reported down with a bounded timeout while the rest
//! of the fleet keeps converging on new commits.

mod support;

use rustix::process::Signal;
use serde_json::Value;
use steward_directory::{DirectoryConfig, MemberChanges, Password, Session};
use support::*;

const PASSWORD: &str = "lab-Directory-Pw-42";
const GROUPS: &str = "OU=PatientSecure,DC=example,DC=eng";
const ACCOUNT: &str = "CN=svc-ps,CN=Users,DC=example,DC=eng";

fn directory(status: &Value) -> Value {
    status["activeDirectory"][0].clone()
}

/// A lab on 127.0.N.x whose directory's bind password is `PASSWORD`, spawned; `None`
/// when slapd is not installed (the test is skipped).
fn directory_lab(n: u8) -> Option<Lab> {
    steward_testkit::require_tool("slapd", "slapd")?;
    let mut lab = Lab::new(
        n,
        Options {
            env: vec![("PS_AD_PASSWORD", PASSWORD)],
            ..Options::default()
        },
    );
    lab.spawn();
    Some(lab)
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
    let Some(mut lab) = directory_lab(133) else {
        return;
    };
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

/// `(up, reason of the Ready condition, its message)` of the directory.
fn directory_state(status: &Value) -> (Value, String, String) {
    let d = directory(status);
    let ready = condition(&d, "Ready").cloned().unwrap_or_default();
    (
        d["up"].clone(),
        ready["reason"].as_str().unwrap_or_default().to_owned(),
        ready["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// CLIENT on app1 moved to `port` by a commit, and the fleet converged on it.
fn move_client_and_converge(lab: &Lab, from: &str, port: u16, generation: u64) {
    lab.commit_edit(
        "servers/app1.yaml",
        from,
        &format!("    - kind: CLIENT\n      port: {port}\n"),
        &format!("CLIENT on port {port}"),
    );
    let status = lab.wait_converged(generation);
    let client = service(&status, "app1", "CLIENT").expect("CLIENT");
    assert_eq!(client["port"], port, "{client}");
}

#[test]
fn a_dead_directory_holds_nothing_else_up() {
    let Some(mut lab) = directory_lab(134) else {
        return;
    };
    lab.wait_status("the directory up with every group present", green);
    lab.wait_converged(1);
    let slapd = lab
        .processes()
        .into_iter()
        .find(|p| p.args.first().is_some_and(|a| a.ends_with("slapd")))
        .expect("the lab's slapd");

    // 1. Blackholed: the stopped slapd's socket still accepts (the kernel completes the
    //    handshake) and nothing ever answers. The directory goes down with a bounded
    //    timeout, and a commit meanwhile converges as if nothing were wrong.
    signal(slapd.pid, Signal::STOP);
    let status = lab.wait_status("the blackholed directory down", |s| {
        directory_state(s).0 == false
    });
    let (_, reason, message) = directory_state(&status);
    assert_eq!(reason, "Timeout", "{message}");
    assert!(message.contains("no answer within"), "{message}");
    move_client_and_converge(&lab, "    - kind: CLIENT                 # 7003\n", 7103, 2);
    // Still down (it never answered), the fleet converged all the same.
    assert_eq!(directory_state(&lab.status()).0, false);

    // 2. Gone: the port is closed. Unreachable, and the next commit converges too.
    signal(slapd.pid, Signal::KILL);
    lab.wait_status("the closed directory unreachable", |s| {
        directory_state(s).1 == "Unreachable"
    });
    move_client_and_converge(&lab, "    - kind: CLIENT\n      port: 7103\n", 7203, 3);
    let (up, reason, message) = directory_state(&lab.status());
    assert_eq!(
        (up, reason.as_str()),
        (Value::Bool(false), "Unreachable"),
        "{message}"
    );
    assert!(!message.contains(PASSWORD));
    lab.stop();
}
