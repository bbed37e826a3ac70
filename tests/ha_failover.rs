//! End-to-end controller HA on one lab fleet: a 3-member etcd cluster (real `etcd`),
//! daemon `a` running the lab (`steward run --lab --ha`), daemons `b` and `c` set up
//! from a backup of `a`'s state (`steward backup` / `restore`) and attached to the same
//! lab (`--lab-attach --ha`). What changed is read from the agents' own records.
//!
//! 1. `b` leads (it started first); it is killed (-9) mid-converge; another daemon takes
//!    over and finishes, installing nothing `b` had installed, and keeping the server
//!    certificates `b` issued (none is in its own memo: it was restored from a backup
//!    taken before any was issued). (`a` runs the lab: its database stand-in dies with
//!    it, so it is not the one killed.)
//! 2. The leader is paused (SIGSTOP) until another wins, then resumed: nothing changes
//!    on the agents, which hold the new leader's epoch.
//! 3. One etcd member stops: the leader stays. Two stop: nobody leads or acts; they come
//!    back: a leader again.
//! 4. A daemon without the CA, and one with another CA, refuse to start.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;
use serde_json::Value;
use steward_testkit::etcd::EtcdCluster;
use support::*;

const N: u8 = 171;
const PASSPHRASE: &str = "ha lab passphrase, protects nothing real";
const LEASE: [&str; 4] = ["--ha-lease-ttl", "3s", "--ha-renew-every", "1s"];

/// A `--lab-attach` daemon of the HA lab.
struct Attached {
    id: &'static str,
    api: SocketAddr,
    state: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Attached {
    fn start(lab: &Lab, etcd: &EtcdCluster, id: &'static str, port_host: u8) -> Self {
        let state = lab.root().join(format!("state-{id}"));
        let log = lab.root().join(format!("daemon-{id}.log"));
        let api = SocketAddr::from(([127, 0, N, port_host], 9464));
        let mut me = Self {
            id,
            api,
            state,
            child: None,
            log,
        };
        me.spawn(lab, etcd);
        me
    }

    fn spawn(&mut self, lab: &Lab, etcd: &EtcdCluster) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(binary())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .args(["run", "--lab-attach", "--desired-state"])
            .arg(&lab.desired)
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--listen", &self.api.to_string()])
            .args(["--lab-first-address", &lab.address_of(1).to_string()])
            .args(["--ha", &etcd.endpoints(), "--ha-id", self.id])
            .args(LEASE)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn status(&self) -> Option<Value> {
        steward_testkit::http::get(&self.api.to_string(), "/api/v1/status")
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.json())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id() as i32, Signal::CONT);
        signal(child.id() as i32, Signal::TERM);
        let status = steward_testkit::within(DEADLINE, Duration::from_millis(50), || {
            child.try_wait().unwrap()
        });
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("daemon {} did not stop\n{}", self.id, self.log());
        };
        assert_eq!(status.code(), Some(0), "daemon {}\n{}", self.id, self.log());
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn role(status: &Value) -> &str {
    status["ha"]["role"].as_str().unwrap_or("")
}

fn leader_of(status: &Value) -> Option<(String, u64)> {
    let l = &status["ha"]["leader"];
    Some((l["id"].as_str()?.to_owned(), l["epoch"].as_u64()?))
}

fn steward(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .env("STEWARD_BACKUP_PASSPHRASE", PASSPHRASE)
        .output()
        .expect("run steward")
}

fn restore(archive: &Path, state: &Path) {
    let out = steward(&[
        "restore".as_ref(),
        archive.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every agent's services: (server, kind) -> (installedAt, pid).
fn records(lab: &Lab) -> BTreeMap<(String, String), (String, i64)> {
    let mut out = BTreeMap::new();
    for server in ["app1", "app2"] {
        for s in lab.try_agent_services(server).unwrap_or_default() {
            out.insert(
                (server.to_owned(), s["kind"].as_str().unwrap().to_owned()),
                (
                    s["installedAt"].as_str().unwrap().to_owned(),
                    s["pid"].as_i64().unwrap_or(0),
                ),
            );
        }
    }
    out
}

/// How many server certificates each agent has installed (its log says so once per
/// `PUT /v1/certificate`).
fn certificate_installs(lab: &Lab) -> BTreeMap<&'static str, usize> {
    ["app1", "app2"]
        .into_iter()
        .map(|server| {
            let log = lab.agent_log(server);
            (server, log.matches("server certificate installed").count())
        })
        .collect()
}

/// Whether `status` shows every server's certificate checked by this daemon and Ready.
fn certificates_ready(status: &Value) -> bool {
    status["servers"].as_array().is_some_and(|servers| {
        servers.iter().all(|s| {
            s["certificate"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    })
}

fn highest_epochs(lab: &Lab) -> Vec<Option<u64>> {
    ["app1", "app2"]
        .iter()
        .map(|server| {
            lab.agent_get(server, "/v1/fencing")
                .ok()
                .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
                .and_then(|v| v["highestEpoch"].as_u64())
        })
        .collect()
}

/// A daemon of the test, by its API.
#[derive(Clone, Copy)]
struct Peer {
    id: &'static str,
    api: SocketAddr,
}

impl Peer {
    fn status(&self) -> Option<Value> {
        steward_testkit::http::get(&self.api.to_string(), "/api/v1/status")
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.json())
    }
}

impl Attached {
    fn peer(&self) -> Peer {
        Peer {
            id: self.id,
            api: self.api,
        }
    }
}

/// The daemon of `peers` that leads now (by its own status), once exactly one does.
fn sole_leader(peers: &[Peer]) -> (Peer, u64) {
    eventually("exactly one daemon to lead", || {
        let leading: Vec<(Peer, u64)> = peers
            .iter()
            .filter_map(|p| {
                let s = p.status()?;
                (role(&s) == "leader").then(|| (*p, leader_of(&s).map_or(0, |l| l.1)))
            })
            .collect();
        (leading.len() == 1).then(|| leading[0])
    })
}

fn eventually<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    steward_testkit::eventually(what, DEADLINE, Duration::from_millis(100), probe)
}

fn refused_start(lab: &Lab, etcd: &EtcdCluster, state: &Path, id: &str, host: u8) -> String {
    let out = Command::new(binary())
        .args(["run", "--lab-attach", "--desired-state"])
        .arg(&lab.desired)
        .arg("--state-dir")
        .arg(state)
        .args(["--listen", &format!("127.0.{N}.{host}:9464")])
        .args(["--ha", &etcd.endpoints(), "--ha-id", id])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    text
}

#[test]
fn controller_ha_on_one_lab_fleet() {
    let Some(mut etcd) = EtcdCluster::start(3) else {
        return;
    };
    let mut extra = vec![
        "--ha".to_owned(),
        etcd.endpoints(),
        "--ha-id".to_owned(),
        "a".to_owned(),
    ];
    extra.extend(LEASE.map(str::to_owned));
    let mut a = Lab::new(
        N,
        Options {
            extra_args: extra,
            ..Options::default()
        },
    );
    // One CA, made once; b and c are set up from a backup of it.
    let made = steward(&[
        "ca".as_ref(),
        "init".as_ref(),
        "--dir".as_ref(),
        a.state.join("ca").as_os_str(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let archive = a.root().join("a.age");
    let out = steward(&[
        "backup".as_ref(),
        "--out".as_ref(),
        archive.as_os_str(),
        "--state-dir".as_ref(),
        a.state.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    restore(&archive, &a.root().join("state-b"));
    restore(&archive, &a.root().join("state-c"));

    let mut b = Attached::start(&a, &etcd, "b", 2);
    let (first, _) = sole_leader(&[b.peer()]);
    assert_eq!(first.id, "b");
    let mut c = Attached::start(&a, &etcd, "c", 3);
    a.spawn();
    let pa = Peer {
        id: "a",
        api: a.api,
    };
    for p in [pa, c.peer()] {
        eventually("a and c to follow b", || {
            p.status()
                .filter(|s| role(s) == "follower")
                .and_then(|s| leader_of(&s))
                .filter(|l| l.0 == "b")
        });
    }

    // 1. b is killed mid-converge: once it installed something, before it is done.
    eventually("b to have installed a first service", || {
        b.status()
            .filter(|s| events(s).iter().any(|e| e.1 == "Installed"))
            .map(|_| ())
    });
    let mut killed = b.child.take().unwrap();
    let _ = killed.kill();
    let _ = killed.wait();
    let before = records(&a);
    assert!(!before.is_empty());
    let issued_before = certificate_installs(&a);
    let (leader, epoch) = sole_leader(&[pa, c.peer()]);
    let converged = eventually("the new leader to finish converging", || {
        leader
            .status()
            .filter(|s| all_declared_healthy(s) && certificates_ready(s))
    });
    // A certificate b installed is kept: the new leader's memo does not name it, but b
    // issued it from the same CA for the same names.
    let issued_after = certificate_installs(&a);
    for (server, count) in &issued_before {
        if *count > 0 {
            assert_eq!(
                issued_after[server],
                *count,
                "{server}: the new leader installed another certificate\n{}",
                a.agent_log(server)
            );
        }
    }
    // b may have been killed before it installed the second server's certificate (the
    // kill waits for one installed service, hence one certificate): that one the new
    // leader issues, as it should. None of those b installed is issued again.
    let reissued: Vec<_> = events(&converged)
        .into_iter()
        .filter(|e| e.1 == "CertificateIssued" || e.1 == "CertificateRenewed")
        .filter(|e| {
            issued_before
                .iter()
                .any(|(server, count)| *count > 0 && e.0 == format!("certificate/{server}"))
        })
        .collect();
    assert!(
        reissued.is_empty(),
        "the new leader issued again a certificate b installed: {reissued:?}"
    );
    let after = records(&a);
    for (service, (installed_at, _)) in &before {
        assert_eq!(
            after.get(service).map(|r| &r.0),
            Some(installed_at),
            "{service:?} was installed again by the new leader"
        );
    }
    let redone: Vec<_> = events(&converged)
        .into_iter()
        .filter(|e| {
            (e.1 == "Installed" || e.1 == "Reinstalled")
                && before
                    .keys()
                    .any(|(server, kind)| e.0 == format!("service/{server}/{kind}"))
        })
        .collect();
    assert!(redone.is_empty(), "installed twice: {redone:?}");
    assert!(
        highest_epochs(&a).iter().all(|e| *e == Some(epoch)),
        "the agents hold the new leader's epoch {epoch}: {:?}",
        highest_epochs(&a)
    );
    // The crashed daemon comes back as a follower.
    b.spawn(&a, &etcd);
    let all = [pa, b.peer(), c.peer()];
    eventually("b to follow again", || {
        b.status()
            .filter(|s| role(s) == "follower")
            .and_then(|s| leader_of(&s))
            .filter(|l| l.1 == epoch)
    });

    // 2. Fencing: the leader paused until another wins, then resumed, changes nothing.
    let pid = |p: Peer| match p.id {
        "a" => a.daemon_pid().unwrap(),
        "b" => b.pid(),
        _ => c.pid(),
    };
    let paused = leader;
    let others: Vec<Peer> = all.iter().copied().filter(|p| p.id != paused.id).collect();
    let settled = records(&a);
    signal(pid(paused), Signal::STOP);
    let (_, next_epoch) = sole_leader(&others);
    assert!(next_epoch > epoch);
    eventually("the agents to hold the newest epoch", || {
        highest_epochs(&a)
            .iter()
            .all(|e| *e == Some(next_epoch))
            .then_some(())
    });
    signal(pid(paused), Signal::CONT);
    eventually("the resumed ex-leader to see it follows", || {
        paused
            .status()
            .filter(|s| role(s) == "follower")
            .and_then(|s| leader_of(&s))
            .filter(|l| l.1 == next_epoch)
    });
    assert_eq!(
        records(&a),
        settled,
        "the paused ex-leader changed something"
    );

    // 3. etcd: one member down, the quorum holds and the leader stays.
    let (leader, _) = sole_leader(&all);
    etcd.stop_member(0);
    let status = leader.status().unwrap();
    assert_eq!(role(&status), "leader", "{}", status["ha"]);
    assert_eq!(leader_of(&status).map(|l| l.1), Some(next_epoch));
    // Two down: no quorum, nobody leads (the lease cannot be renewed), nothing acts.
    etcd.stop_member(1);
    for p in all {
        eventually("no daemon to lead without a quorum", || {
            p.status().filter(|s| role(s) != "leader").map(|_| ())
        });
    }
    let quiet = records(&a);
    etcd.start_member(0);
    etcd.start_member(1);
    etcd.wait_healthy();
    let (_, resumed) = sole_leader(&all);
    assert!(resumed > next_epoch);
    assert_eq!(records(&a), quiet, "something changed while nobody led");

    // 4. A daemon without the CA, and one with a CA of its own, refuse to start.
    let fresh = a.root().join("state-d");
    let text = refused_start(&a, &etcd, &fresh, "d", 4);
    assert!(text.contains("never makes its own CA"), "{text}");
    assert!(!fresh.join("ca/ca.pem").exists());
    let own = a.root().join("state-e");
    let made = steward(&[
        "ca".as_ref(),
        "init".as_ref(),
        "--dir".as_ref(),
        own.join("ca").as_os_str(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let text = refused_start(&a, &etcd, &own, "e", 5);
    assert!(
        text.contains("is not the one the other daemons use"),
        "{text}"
    );

    // The metrics say who leads.
    let (leader, _) = sole_leader(&all);
    let metrics = steward_testkit::http::get(&leader.api.to_string(), "/metrics")
        .unwrap()
        .text();
    assert!(
        metrics.contains(&format!("steward_leader{{id=\"{}\"}} 1", leader.id)),
        "{metrics}"
    );
    assert!(metrics.contains("steward_leader_changes_total"));

    // SIGTERM: the leader resigns (deletes its key, revokes its lease) on its way out.
    match leader.id {
        "a" => {
            // b and c name the lab's directory on their command lines: a's check that
            // nothing of the lab is left runs when it is dropped, after them.
            let status = a.terminate();
            assert_eq!(status.code(), Some(0), "{}", a.log_tail(40));
            assert!(a.log().contains("resigned the leadership"), "{}", a.log());
            b.stop();
            c.stop();
        }
        id => {
            let (gone, other) = if id == "b" {
                (&mut b, &mut c)
            } else {
                (&mut c, &mut b)
            };
            gone.stop();
            assert!(
                gone.log().contains("resigned the leadership"),
                "{}",
                gone.log()
            );
            other.stop();
            a.stop();
        }
    }
}
