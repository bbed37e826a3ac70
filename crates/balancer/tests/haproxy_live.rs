//! The HAProxy driver against a real HAProxy on loopback, in front of real TLS listeners
//! that answer PSIS's health test. Run inside a private network namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_balancer::farm::Farms;
use steward_balancer::haproxy::{AdminState, Applied, Haproxy, MemberState};
use steward_balancer::render::haproxy::{render, HaproxyOptions};
use steward_balancer::BalancerError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod live;
use live::{farms, free_port, member, pki, Pki};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

struct Lab {
    _dir: tempfile::TempDir,
    haproxy: Haproxy,
    opts: HaproxyOptions,
    _process: tokio::process::Child,
    front: u16,
    /// The members' names and ports, as the farm lists them.
    members: Vec<(&'static str, u16)>,
}

/// A real HAProxy in front of one TLS member per name, checking them every second; the
/// members' tasks (abort one to kill it). Members start first: HAProxy marks a server
/// DOWN when its very first check fails.
async fn start(pki: &Pki, names: &[&'static str]) -> Option<(Lab, Vec<JoinHandle<()>>)> {
    let mut members = Vec::new();
    let mut tasks = Vec::new();
    for name in names {
        let (port, task) = member(pki, name).await;
        members.push((*name, port));
        tasks.push(task);
    }
    let front = free_port();
    let f = farms(front, &members, Duration::from_secs(1));
    let bin = steward_testkit::require_tool("haproxy", "haproxy")?;
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("haproxy.cfg");
    let haproxy = Haproxy::new(bin, config_file.clone(), dir.path().join("admin.sock"));
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let opts = HaproxyOptions {
        bind: "127.0.0.1".into(),
        map_low_ports: true,
        admin_socket: haproxy.admin_socket.clone(),
        state_file: haproxy.state_file.clone(),
        ca_file: Some(ca),
        ..Default::default()
    };
    std::fs::write(&config_file, render(&f, &opts)).unwrap();
    let process = haproxy.master().spawn().await.unwrap();
    let lab = Lab {
        _dir: dir,
        haproxy,
        opts,
        _process: process,
        front,
        members,
    };
    Some((lab, tasks))
}

impl Lab {
    /// The lab's farm with another check interval (a desired-state change).
    fn farms(&self, interval: Duration) -> Farms {
        farms(self.front, &self.members, interval)
    }

    /// Once its one member, app1, is up: the installed file and the worker serving it.
    async fn serving(&self) -> (String, u32) {
        self.wait_for(&[("app1", MemberState::Up)]).await;
        let installed = std::fs::read_to_string(&self.haproxy.config_file).unwrap();
        (
            installed,
            self.haproxy.runtime().worker_pid().await.unwrap(),
        )
    }

    /// Asserts that what `serving` saw is still installed and serving app1.
    async fn still_serving(&self, (installed, pid): &(String, u32), pki: &Pki, when: &str) {
        assert_eq!(
            &std::fs::read_to_string(&self.haproxy.config_file).unwrap(),
            installed,
            "{when}"
        );
        assert_eq!(
            self.haproxy.runtime().worker_pid().await.unwrap(),
            *pid,
            "{when}"
        );
        assert_eq!(self.request(&pki.client).await.unwrap(), "app1", "{when}");
    }

    /// What steward would install for the lab's farm as started.
    fn wanted(&self) -> String {
        render(&self.farms(Duration::from_secs(1)), &self.opts)
    }

    async fn states(&self) -> Vec<(String, MemberState)> {
        let mut s: Vec<(String, MemberState)> = self
            .haproxy
            .runtime()
            .servers()
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.server, s.state))
            .collect();
        s.sort_by(|a, b| a.0.cmp(&b.0));
        s
    }

    /// Waits (bounded) until the members are in `want`.
    async fn wait_for(&self, want: &[(&str, MemberState)]) {
        let want: Vec<(String, MemberState)> =
            want.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.states().await;
            if got == want {
                return;
            }
            if Instant::now() > deadline {
                let stat = self.haproxy.runtime().command("show stat").await;
                panic!("members {got:?}, waited for {want:?}\n{stat:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One HTTPS request through the farm; the member's name on success.
    async fn request(&self, client: &Arc<rustls::ClientConfig>) -> Result<String, String> {
        let tcp = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, self.front)))
            .await
            .map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(client));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"GET /identityserver HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        let _ = tls.read_to_string(&mut answer).await;
        answer
            .rsplit_once("IdentityServer4 ")
            .map(|(_, name)| name.to_owned())
            .ok_or_else(|| format!("unexpected answer {answer:?}"))
    }
}

#[tokio::test]
async fn requests_keep_succeeding_while_a_member_is_killed() {
    let pki = pki();
    let Some((lab, members)) = start(&pki, &["app1", "app2"]).await else {
        return;
    };
    let [app1, app2] = <[JoinHandle<()>; 2]>::try_from(members).unwrap();
    lab.wait_for(&[("app1", MemberState::Up), ("app2", MemberState::Up)])
        .await;
    // Client affinity: every request from this address reaches one member; kill that one.
    let first = lab.request(&pki.client).await.unwrap();
    let (victim, survivor) = if first == "app1" {
        (app1, "app2")
    } else {
        (app2, "app1")
    };
    victim.abort();
    let killed = Instant::now();
    // TLS passes through in TCP mode, so a connection the victim had already accepted when
    // it died fails mid-handshake and HAProxy cannot redispatch it: the client retries once,
    // as an HTTP client does for an idempotent GET. Goal: none fails after its retry.
    let (mut ok, mut retried, mut failed) = (0, 0, Vec::new());
    let mut marked_down = None;
    while Instant::now() < killed + Duration::from_secs(20) {
        let answer = match lab.request(&pki.client).await {
            Err(_) => {
                retried += 1;
                lab.request(&pki.client).await
            }
            first => first,
        };
        match answer {
            Ok(name) => {
                assert_eq!(name, survivor);
                ok += 1;
            }
            Err(e) => failed.push(e),
        }
        if marked_down.is_none()
            && lab
                .states()
                .await
                .iter()
                .any(|(_, s)| *s == MemberState::Down)
        {
            marked_down = Some(killed.elapsed());
        }
        if marked_down.is_some() && ok >= 50 {
            break;
        }
    }
    println!(
        "member killed: {ok} requests succeeded ({retried} after one retry), {} failed; marked down after {:?} (inter 1s, fall 2)",
        failed.len(),
        marked_down
    );
    assert!(
        marked_down.is_some(),
        "the killed member was never marked down"
    );
    // Connections refused by the killed member are redispatched to the other by HAProxy.
    failed.dedup();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
}

#[tokio::test]
async fn drain_set_over_the_runtime_api_survives_a_reload() {
    let pki = pki();
    let Some((lab, _members)) = start(&pki, &["app1", "app2"]).await else {
        return;
    };
    lab.wait_for(&[("app1", MemberState::Up), ("app2", MemberState::Up)])
        .await;
    let api = lab.haproxy.runtime();
    api.set_state("psis", "app1", AdminState::Drain)
        .await
        .unwrap();
    lab.wait_for(&[("app1", MemberState::Drain), ("app2", MemberState::Up)])
        .await;
    let pid = api.worker_pid().await.unwrap();
    // A desired-state change: another check interval, so the configuration differs.
    let changed = render(&lab.farms(Duration::from_millis(1500)), &lab.opts);
    assert_eq!(
        lab.haproxy.apply(&changed).await.unwrap(),
        Applied::Reloaded
    );
    assert_ne!(api.worker_pid().await.unwrap(), pid, "no new worker");
    // Still draining in the new worker, without steward setting it again.
    lab.wait_for(&[("app1", MemberState::Drain), ("app2", MemberState::Up)])
        .await;
    assert_eq!(lab.request(&pki.client).await.unwrap(), "app2");
    // The same content again changes nothing.
    let pid = api.worker_pid().await.unwrap();
    assert_eq!(
        lab.haproxy.apply(&changed).await.unwrap(),
        Applied::Unchanged
    );
    assert_eq!(api.worker_pid().await.unwrap(), pid);
}

#[tokio::test]
async fn an_edited_config_is_repaired() {
    let pki = pki();
    let Some((lab, _members)) = start(&pki, &["app1"]).await else {
        return;
    };
    let wanted = lab.wanted();
    let edited = wanted.replace("balance source", "balance leastconn");
    std::fs::write(&lab.haproxy.config_file, &edited).unwrap();
    let pid = lab.haproxy.runtime().worker_pid().await.unwrap();
    assert_eq!(lab.haproxy.apply(&wanted).await.unwrap(), Applied::Reloaded);
    assert_eq!(
        std::fs::read_to_string(&lab.haproxy.config_file).unwrap(),
        wanted
    );
    assert_ne!(lab.haproxy.runtime().worker_pid().await.unwrap(), pid);
    lab.wait_for(&[("app1", MemberState::Up)]).await;
    assert_eq!(lab.request(&pki.client).await.unwrap(), "app1");
}

#[tokio::test]
async fn a_rejected_config_keeps_the_old_process_serving() {
    let pki = pki();
    let Some((lab, _members)) = start(&pki, &["app1"]).await else {
        return;
    };
    let serving = lab.serving().await;

    let mut unresolvable = lab.farms(Duration::from_secs(1));
    unresolvable.farms[0].members[0].hostname = "app9.nonexistent.invalid".into();
    let err = lab
        .haproxy
        .apply(&render(&unresolvable, &lab.opts))
        .await
        .unwrap_err();
    assert!(matches!(err, BalancerError::Unresolvable(_)), "{err}");
    assert_eq!(err.reason(), "Unresolvable");

    let broken = lab.wanted().replace("balance source", "balance nowhere");
    let err = lab.haproxy.apply(&broken).await.unwrap_err();
    assert!(matches!(err, BalancerError::ConfigRejected(_)), "{err}");
    assert!(err.to_string().contains("balance only supports"), "{err}");

    // Nothing was installed or reloaded, and the old worker still serves.
    lab.still_serving(&serving, &pki, "").await;
}

#[tokio::test]
async fn missing_binary_and_silent_socket_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let h = Haproxy::new(
        "/nonexistent/haproxy".into(),
        dir.path().join("haproxy.cfg"),
        dir.path().join("admin.sock"),
    );
    let err = h.version().await.unwrap_err();
    assert_eq!(err.reason(), "HAProxyMissing", "{err}");
    let err = h.runtime().worker_pid().await.unwrap_err();
    assert_eq!(err.reason(), "SocketUnresponsive", "{err}");
    assert!(!Path::new(&h.state_file).exists());
}

#[tokio::test]
async fn the_installed_haproxy_is_recent_enough() {
    let Some(bin) = steward_testkit::require_tool("haproxy", "haproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let h = Haproxy::new(bin, dir.path().join("h.cfg"), dir.path().join("a.sock"));
    let version = h.version().await.unwrap();
    assert!(
        version.starts_with("2.") || version.starts_with("3."),
        "{version}"
    );
}

/// A socket that accepts and never answers (a hung HAProxy) is named, after the command
/// deadline, not waited on for ever.
#[tokio::test]
async fn a_socket_that_accepts_and_never_answers_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let h = Haproxy::new("haproxy".into(), dir.path().join("haproxy.cfg"), socket);
    let err = h.runtime().servers().await.unwrap_err();
    assert_eq!(err.reason(), "SocketUnresponsive", "{err}");
    assert!(err.to_string().contains("no answer within 10 s"), "{err}");
    hold.abort();
}

/// A configuration `haproxy -c` accepts but the reload cannot take (its new port is held
/// by another process): the old worker keeps serving, the installed file is put back to
/// what it serves, and the next apply tries again instead of finding the file current.
#[tokio::test]
async fn a_reload_that_fails_keeps_the_old_worker_and_is_tried_again() {
    let pki = pki();
    let Some((lab, _members)) = start(&pki, &["app1"]).await else {
        return;
    };
    let serving = lab.serving().await;
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let moved = render(
        &farms(taken_port, &lab.members, Duration::from_secs(1)),
        &lab.opts,
    );
    for attempt in 0..2 {
        let err = lab.haproxy.apply(&moved).await.unwrap_err();
        assert_eq!(err.reason(), "ReloadFailed", "attempt {attempt}: {err}");
        lab.still_serving(&serving, &pki, &format!("attempt {attempt}"))
            .await;
    }
    // Once the port is free, the same configuration goes through.
    drop(taken);
    assert_eq!(lab.haproxy.apply(&moved).await.unwrap(), Applied::Reloaded);
}
