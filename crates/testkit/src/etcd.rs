//! A real etcd cluster for the tests: one or more `etcd` members on free loopback ports,
//! each with its own data directory, killed on drop. Members can be stopped (SIGKILL) and
//! started again on the same data directory, where they rejoin the cluster. With
//! [`EtcdCluster::start_tls`] the client port serves TLS (and may ask for a client
//! certificate), as a production etcd does.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// TLS on the members' client port.
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    /// The CA that signed the members' certificate and the clients'.
    pub ca: PathBuf,
    /// The members' certificate (for 127.0.0.1) and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// `Some((cert, key))`: members demand a client certificate (`--client-cert-auth`),
    /// and etcdctl uses this one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// A running etcd cluster.
pub struct EtcdCluster {
    etcd: PathBuf,
    etcdctl: PathBuf,
    dir: TempDir,
    members: Vec<Member>,
    initial_cluster: String,
    tls: Option<EtcdTlsFiles>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl EtcdCluster {
    /// `size` members, healthy (a quorum answers); `None` when etcd is not installed
    /// (after [`crate::skip`] said so; in CI that fails the test).
    pub fn start(size: usize) -> Option<Self> {
        Self::start_with(size, None)
    }

    /// Like [`EtcdCluster::start`], the client port serving TLS.
    pub fn start_tls(size: usize, tls: EtcdTlsFiles) -> Option<Self> {
        Self::start_with(size, Some(tls))
    }

    fn start_with(size: usize, tls: Option<EtcdTlsFiles>) -> Option<Self> {
        let etcd = crate::require_tool("etcd", "etcd-server")?;
        let etcdctl = crate::require_tool("etcdctl", "etcd-client")?;
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            etcd,
            etcdctl,
            dir: tempfile::Builder::new()
                .prefix("steward-etcd-")
                .tempdir()
                .expect("tempdir"),
            members,
            initial_cluster,
            tls,
        };
        for i in 0..size {
            cluster.start_member(i);
        }
        cluster.wait_healthy();
        Some(cluster)
    }

    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,...` (`etcds://` with TLS), as `steward run
    /// --ha` takes it.
    pub fn endpoints(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://{}", hosts.join(","))
    }

    fn client_url(&self, member: &Member) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", member.client_port)
    }

    /// The client URLs, for etcdctl.
    pub fn client_urls(&self) -> String {
        self.members
            .iter()
            .map(|m| self.client_url(m))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// etcdctl's TLS flags (none without TLS).
    fn etcdctl_tls(&self) -> Vec<String> {
        let Some(tls) = &self.tls else {
            return Vec::new();
        };
        let mut args = vec![format!("--cacert={}", tls.ca.display())];
        if let Some((cert, key)) = &tls.client {
            args.push(format!("--cert={}", cert.display()));
            args.push(format!("--key={}", key.display()));
        }
        args
    }

    /// Start member `i` (again, on its data directory).
    pub fn start_member(&mut self, i: usize) {
        let member = &self.members[i];
        assert!(member.child.is_none(), "member {i} runs already");
        let data = self.dir.path().join(&member.name);
        let log =
            File::create(self.dir.path().join(format!("{}.log", member.name))).expect("member log");
        let client = self.client_url(member);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let mut etcd = Command::new(&self.etcd);
        if let Some(tls) = &self.tls {
            etcd.arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key);
            if tls.client.is_some() {
                etcd.arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(&tls.ca);
            }
        }
        let child = etcd
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "steward-test"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
    }

    /// Kill member `i` (SIGKILL), as a crashed or unplugged host.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every running member answers and the cluster has a leader.
    pub fn wait_healthy(&self) {
        let running: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| self.client_url(m))
            .collect();
        crate::eventually(
            "etcd to be healthy",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                Command::new(&self.etcdctl)
                    .env("ETCDCTL_API", "3")
                    .args(self.etcdctl_tls())
                    .args(["--endpoints", &running.join(","), "endpoint", "health"])
                    .args(["--command-timeout", "2s"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
    }

    /// `etcdctl ARGS...` against the running members; its stdout (panics on failure).
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new(&self.etcdctl)
            .env("ETCDCTL_API", "3")
            .args(self.etcdctl_tls())
            .args(["--endpoints", &self.client_urls()])
            .args(args)
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
