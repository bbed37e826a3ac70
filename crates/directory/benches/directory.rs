//! Figures for the directory goals, against real peers started here (run inside a private
//! network namespace when others share the machine):
//!
//! - checking 1,000 role groups over one connection (goal <= 1 s),
//! - reading a 5,000-member group (goal <= 1 s),
//! - creating 1,000 groups against Samba (goal <= 10 s).
//!
//! `cargo bench -p steward-directory --bench directory`. Prints one line per figure; a peer
//! that is missing is reported as skipped. Timings are printed, never asserted.

use steward_directory::test_support as support;

use std::time::{Duration, Instant};

use steward_directory::{DirectoryConfig, Password, Session};
use support::samba::Samba;
use support::slapd::{self, Slapd};

const GROUPS: usize = 1_000;
const MEMBERS: usize = 5_000;
const RUNS: usize = 5;
/// Connections for the concurrent-creation figure.
const CONNECTIONS: usize = 4;

fn main() {
    // `cargo bench` passes `--bench`; `samba` as an argument skips the slapd figures.
    let samba_only = std::env::args().any(|a| a == "samba");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        if !samba_only {
            slapd_figures().await;
        }
        samba_figures().await;
    });
}

fn report(peer: &str, what: &str, goal: Duration, runs: &mut [Duration]) {
    runs.sort();
    let median = runs[runs.len() / 2];
    let verdict = if median <= goal { "within" } else { "OVER" };
    println!(
        "{peer}: {what}: median {:.1} ms over {} runs (min {:.1} ms, max {:.1} ms), {verdict} the {} s goal",
        ms(median),
        runs.len(),
        ms(runs[0]),
        ms(runs[runs.len() - 1]),
        goal.as_secs()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn timed<F: std::future::Future<Output = T>, T>(f: F) -> (Duration, T) {
    let started = Instant::now();
    let out = f.await;
    (started.elapsed(), out)
}

/// Times `RUNS` lookups of the groups `wanted`, all present, against the 1 s goal.
async fn time_group_checks(session: &mut Session, wanted: &[String], peer: &str) {
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let (took, report) = timed(session.find_groups(wanted)).await;
        assert!(report.expect("lookup").missing().is_empty());
        runs.push(took);
    }
    report(
        peer,
        "check 1,000 role groups",
        Duration::from_secs(1),
        &mut runs,
    );
}

/// Times `RUNS` reads of the `MEMBERS` members of group `big`, against the 1 s goal.
async fn time_member_reads(session: &mut Session, big: &str, peer: &str, what: &str) {
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let (took, members) = timed(session.read_members(big)).await;
        assert_eq!(members.expect("members").len(), MEMBERS);
        runs.push(took);
    }
    report(peer, what, Duration::from_secs(1), &mut runs);
}

fn names(prefix: &str) -> Vec<String> {
    (0..GROUPS).map(|i| format!("{prefix}{i}")).collect()
}

async fn slapd_figures() {
    let users: Vec<String> = (0..MEMBERS).map(|i| format!("m{i:05}")).collect();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut seed = slapd::groups_ldif("PS-", GROUPS);
    seed.push_str(&slapd::users_ldif(&user_refs));
    seed.push_str(&format!(
        "dn: cn=Big,{}\nobjectClass: groupOfNames\ncn: Big\n",
        slapd::SUFFIX
    ));
    for u in &users {
        seed.push_str(&format!("member: uid={u},{}\n", slapd::SUFFIX));
    }
    let Some(server) = Slapd::start(&seed) else {
        return;
    };
    let mut config = DirectoryConfig::new(
        format!("ldaps://127.0.0.1:{}", server.ldaps_port),
        "example.eng",
        slapd::ADMIN_DN,
        Password::new(slapd::ADMIN_PASSWORD),
    );
    config.trust = vec![server.ca.clone()];
    let mut session = Session::connect(&config).await.expect("bind slapd");
    let wanted = names("PS-");
    time_group_checks(&mut session, &wanted, "slapd").await;
    let big = format!("cn=Big,{}", slapd::SUFFIX);
    time_member_reads(&mut session, &big, "slapd", "read a 5,000-member group").await;
}

/// Creates 1,000 groups three ways on `samba`: one add at a time, pipelined over one
/// connection (what the controller does), and pipelined over `CONNECTIONS` connections.
async fn samba_creations(samba: &Samba, peer: &str, run: usize) {
    let url = "ldaps://127.0.0.1:636";
    let config = samba.service_config(url);
    let mut session = Session::connect(&config).await.expect("bind samba");
    let wanted = names(&format!("PS-Serial{run}-"));
    let (took, ()) = timed(async {
        for name in &wanted {
            session.create_group(name).await.expect("create group");
        }
    })
    .await;
    report(
        peer,
        "create 1,000 groups one add at a time",
        Duration::from_secs(10),
        &mut [took],
    );
    let wanted = names(&format!("PS-Piped{run}-"));
    let (took, created) = timed(session.create_groups(&wanted)).await;
    assert_eq!(created.expect("create groups").len(), GROUPS);
    report(
        peer,
        "create 1,000 groups pipelined over one connection",
        Duration::from_secs(10),
        &mut [took],
    );
    let wanted = names(&format!("PS-Conns{run}-"));
    let mut sessions = Vec::new();
    for _ in 0..CONNECTIONS {
        sessions.push(Session::connect(&config).await.expect("bind samba"));
    }
    let (took, ()) = timed(async {
        let chunks = wanted.chunks(GROUPS.div_ceil(CONNECTIONS));
        let adds = sessions
            .iter_mut()
            .zip(chunks)
            .map(|(s, names)| s.create_groups(names));
        for created in futures::future::join_all(adds).await {
            created.expect("create groups");
        }
    })
    .await;
    report(
        peer,
        &format!("create 1,000 groups pipelined over {CONNECTIONS} connections"),
        Duration::from_secs(10),
        &mut [took],
    );
}

async fn samba_figures() {
    // Writes are timed against a DC that syncs its database like a production one.
    let Some(samba) = Samba::start(true).await else {
        return;
    };
    let url = "ldaps://127.0.0.1:636";
    samba_creations(&samba, "samba", 0).await;
    let mut session = Session::connect(&samba.service_config(url))
        .await
        .expect("bind samba");
    let wanted = names("PS-Piped0-");
    time_group_checks(&mut session, &wanted, "samba").await;
    drop(session);
    drop(samba);
    // Reading needs no durability; a scratch DC builds the 5,000 members in a minute
    // rather than ten.
    let Some(samba) = Samba::start(false).await else {
        return;
    };
    // The same creations without fsync: what the client and protocol cost by themselves.
    samba_creations(&samba, "samba (ldb:nosync)", 1).await;
    let mut session = Session::connect(&samba.service_config(url))
        .await
        .expect("bind samba");
    let big = support::samba::big_group(&samba, "PS-Bench-Big", MEMBERS);
    time_member_reads(
        &mut session,
        &big,
        "samba",
        "read a 5,000-member group (4 ranges)",
    )
    .await;
}
