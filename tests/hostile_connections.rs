//! End-to-end: the daemon's HTTP API and a lab agent's mTLS API under hostile clients, with
//! the daemon (and so its lab agents and services) limited to 512 open files.
//!
//! Silent, slowloris and never-finished-handshake clients are closed at their deadlines;
//! 20,000 idle connections (the figure that once exhausted the daemon's descriptors and
//! marked every service unhealthy) leave the fleet healthy, the desired state valid,
//! everything installed, and the next good commit applied.
//!
//! `harness = false`: one process may hold at most 20,000 files, so the test binary is also
//! the client that holds connections (`hold-connections ADDR COUNT`), started several times.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// The daemon starts with a soft limit of 256 and raises it to the hard limit, 512: its API
/// may then hold 128 connections.
const OPEN_FILES: (u64, u64) = (256, 512);
const FLOOD: usize = 20_000;
const HOLDERS: usize = 4;
const HOLD: &str = "hold-connections";
const APP1: &str = "servers/app1.yaml";
const CLIENT_LINE: &str = "    - kind: CLIENT                 # 7003\n";

type Test = (&'static str, fn());

const TESTS: &[Test] = &[
    (
        "daemon_api_survives_slow_clients_and_20000_idle_connections",
        daemon_api_survives_slow_clients_and_20000_idle_connections,
    ),
    (
        "agent_api_survives_slow_handshakes_and_20000_idle_connections",
        agent_api_survives_slow_handshakes_and_20000_idle_connections,
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(HOLD) {
        return hold(&args[2..]);
    }
    run(&args[1..])
}

fn daemon_api_survives_slow_clients_and_20000_idle_connections() {
    let mut lab = Lab::new(170, limited());
    lab.spawn();
    lab.wait_converged(1);
    let pids = lab.service_pids(&["app1", "app2"]);
    assert_eq!(pids.len(), 11);
    let raised = (OPEN_FILES.1, OPEN_FILES.1);
    assert_eq!(open_files_limit(lab.daemon_pid().unwrap()), Some(raised));
    let agent = lab.agent_process("app1").expect("app1's agent");
    assert_eq!(open_files_limit(agent.pid), Some(raised));

    // Clients that never finish a request head are closed at the header deadline.
    let mut slow: Vec<Hostile> = (0..16).map(|_| Hostile::silent(lab.api)).collect();
    let head = b"GET /healthz HTTP/1.1\r\nHost: steward\r\nX-Slowloris: ";
    slow.extend((0..16).map(|_| Hostile::plain(lab.api, head, b'a')));
    wait_all_closed("silent and slowloris API clients", &mut slow);
    assert_eq!(lab.get("/healthz").0, 200);

    let flood_started = now();
    let flood = Flood::start(lab.api, FLOOD);
    lab.wait_until("/healthz from a fresh connection", DEADLINE, || {
        lab.try_get("/healthz")
            .ok()
            .filter(|(code, _)| *code == 200)
    });
    expect_unharmed(&lab, &pids, flood_started);
    // The next good commit applies, with the flood's connections still open.
    move_client(&lab);
    lab.wait_converged(2);
    drop(flood);
    expect_no_exhaustion(&lab, &["app1", "app2"]);
    lab.stop();
}

fn agent_api_survives_slow_handshakes_and_20000_idle_connections() {
    let mut lab = Lab::new(171, limited());
    lab.spawn();
    lab.wait_converged(1);
    let pids = lab.service_pids(&["app1", "app2"]);
    assert_eq!(pids.len(), 11);
    let agent = SocketAddr::new(IpAddr::V4(lab.server_address("app1")), 7443);

    // No ClientHello at all; a ClientHello record that never ends; and a slowloris after a
    // complete mutual-TLS handshake.
    let mut slow: Vec<Hostile> = (0..8).map(|_| Hostile::silent(agent)).collect();
    let record_header = [0x16, 0x03, 0x01, 0x02, 0x00];
    slow.extend((0..8).map(|_| Hostile::plain(agent, &record_header, 0x01)));
    let head = b"GET /v1/host HTTP/1.1\r\nHost: app1\r\nX-Slowloris: ";
    slow.extend((0..8).map(|_| Hostile::tls(agent, lab.client_tls(), head)));
    wait_all_closed(
        "silent, half-handshake and slowloris agent clients",
        &mut slow,
    );
    assert_eq!(lab.agent_get("app1", "/v1/host").unwrap().0, 200);

    let flood_started = now();
    let flood = Flood::start(agent, FLOOD);
    lab.wait_until("app1's agent answering a fresh client", DEADLINE, || {
        lab.agent_get("app1", "/v1/host")
            .ok()
            .filter(|(code, _)| *code == 200)
    });
    expect_unharmed(&lab, &pids, flood_started);
    // The daemon still drives app1's agent: a change of one of its services applies.
    move_client(&lab);
    let status = lab.wait_converged(2);
    assert_eq!(service(&status, "app1", "CLIENT").unwrap()["port"], 7103);
    drop(flood);
    expect_no_exhaustion(&lab, &["app1", "app2"]);
    lab.stop();
}

fn limited() -> Options {
    Options {
        open_files: Some(OPEN_FILES),
        ..Options::default()
    }
}

fn move_client(lab: &Lab) {
    lab.commit_edit(
        APP1,
        CLIENT_LINE,
        "    - kind: CLIENT\n      port: 7103\n",
        "CLIENT on port 7103",
    );
}

/// The fleet as it was: every service healthy, the desired state valid, no service
/// uninstalled or restarted, and (in the daemon's log since `since`) no verdict flipped, no
/// invalid desired state, no agent unreachable.
fn expect_unharmed(
    lab: &Lab,
    pids: &std::collections::BTreeMap<(String, String), i64>,
    since: time::OffsetDateTime,
) {
    let status = lab.wait_status("the fleet healthy and the desired state valid", |s| {
        s["valid"] == true && all_declared_healthy(s)
    });
    assert_eq!(status["generation"], 1);
    assert_eq!(status["errors"], serde_json::json!([]), "{status}");
    assert!(
        status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["agentUp"] == true),
        "{}",
        summarize_status(&status.to_string())
    );
    assert_eq!(
        &lab.service_pids(&["app1", "app2"]),
        pids,
        "same services, same processes"
    );
    let log = lab.log();
    let recent: Vec<&str> = log
        .lines()
        .filter(|l| log_line_time(l).is_some_and(|t| t >= since))
        .collect();
    for sign in [
        ": unhealthy (",
        "desired state is invalid",
        "does not answer",
    ] {
        let found: Vec<&str> = recent
            .iter()
            .copied()
            .filter(|l| l.contains(sign))
            .collect();
        assert!(
            found.is_empty(),
            "the daemon logged `{sign}`:\n{}",
            found.join("\n")
        );
    }
}

fn expect_no_exhaustion(lab: &Lab, servers: &[&str]) {
    let mut logs = vec![("daemon".to_owned(), lab.log())];
    logs.extend(
        servers
            .iter()
            .map(|s| (format!("{s}'s agent"), lab.agent_log(s))),
    );
    for (who, log) in logs {
        let found: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Too many open files") || l.contains("os error 24"))
            .collect();
        assert!(
            found.is_empty(),
            "{who} ran out of files:\n{}",
            found.join("\n")
        );
    }
}

// ----- hostile clients -----

/// A client that holds a connection without ever finishing what it started: silent, or
/// sending `start` and then `filler` bytes one at a time.
struct Hostile {
    stream: Box<dyn Stream>,
    bytes: Vec<u8>,
    filler: Option<u8>,
    sent: usize,
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    tcp.set_nonblocking(true).unwrap();
    tcp
}

impl Hostile {
    fn silent(addr: SocketAddr) -> Self {
        Self {
            stream: Box::new(connect(addr)),
            bytes: Vec::new(),
            filler: None,
            sent: 0,
        }
    }

    fn plain(addr: SocketAddr, start: &[u8], filler: u8) -> Self {
        Self {
            stream: Box::new(connect(addr)),
            bytes: start.to_vec(),
            filler: Some(filler),
            sent: 0,
        }
    }

    /// Completes the mutual-TLS handshake, then trickles `start` and filler.
    fn tls(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, start: &[u8]) -> Self {
        let name = rustls::pki_types::ServerName::try_from(addr.ip().to_string()).unwrap();
        let conn = rustls::ClientConnection::new(tls, name).unwrap();
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("mutual-TLS handshake with a lab client certificate");
        }
        stream.sock.set_nonblocking(true).unwrap();
        Self {
            stream: Box::new(stream),
            bytes: start.to_vec(),
            filler: Some(b'a'),
            sent: 0,
        }
    }

    /// Send one more byte (if this client sends any) and see whether the server has closed
    /// the connection.
    fn closed(&mut self) -> bool {
        let next = self.bytes.get(self.sent).copied().or(self.filler);
        if let Some(byte) = next {
            match self.stream.write(&[byte]).and_then(|_| self.stream.flush()) {
                Ok(()) => self.sent += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return true,
            }
        }
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {} // whatever the server says, it is not a close yet
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }
}

/// Keep every client going until the server has closed all of them.
fn wait_all_closed(what: &str, clients: &mut Vec<Hostile>) {
    let total = clients.len();
    let deadline = Instant::now() + DEADLINE;
    loop {
        clients.retain_mut(|c| !c.closed());
        if clients.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {total} connections still open after {DEADLINE:?}",
            clients.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `count` idle connections to `addr`, held by [`HOLDERS`] processes until dropped.
struct Flood {
    holders: Vec<(Child, Option<ChildStdin>)>,
}

impl Flood {
    fn start(addr: SocketAddr, count: usize) -> Self {
        let exe = std::env::current_exe().expect("the test binary");
        let mut holders = Vec::new();
        for i in 0..HOLDERS {
            let share = count / HOLDERS + usize::from(i < count % HOLDERS);
            let mut child = Command::new(&exe)
                .args([HOLD, &addr.to_string(), &share.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a connection holder");
            let stdin = child.stdin.take();
            holders.push((child, stdin));
        }
        let mut flood = Self { holders };
        let mut opened = 0;
        for (child, _) in &mut flood.holders {
            let mut line = String::new();
            let stdout = child.stdout.as_mut().expect("holder stdout");
            BufReader::new(stdout)
                .read_line(&mut line)
                .expect("holder report");
            opened += line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("holder said {line:?}"));
        }
        assert_eq!(opened, count, "connections opened to {addr}");
        flood
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        for (child, stdin) in &mut self.holders {
            drop(stdin.take()); // the holder closes its connections and exits
            let _ = child.wait();
        }
    }
}

/// The `hold-connections ADDR COUNT` role: open COUNT connections over a few threads,
/// print `opened N`, hold them until stdin closes.
fn hold(args: &[String]) -> ExitCode {
    let addr: SocketAddr = args[0].parse().expect("ADDR");
    let count: usize = args[1].parse().expect("COUNT");
    const THREADS: usize = 8;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let share = count / THREADS + usize::from(t < count % THREADS);
            std::thread::spawn(move || {
                let mut held = Vec::with_capacity(share);
                let mut failures = 0;
                while held.len() < share && failures < 10 {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                        Ok(tcp) => {
                            held.push(tcp);
                            failures = 0;
                        }
                        Err(_) => failures += 1,
                    }
                }
                held
            })
        })
        .collect();
    let held: Vec<TcpStream> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    println!("opened {} of {count}", held.len());
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
    ExitCode::SUCCESS
}

// ----- a libtest-like runner (harness = false) -----

fn run(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let exact = args.iter().any(|a| a == "--exact");
    // None of these tests is ignored: `--ignored` runs none of them, like libtest.
    let only_ignored = args.iter().any(|a| a == "--ignored");
    let mut filters = Vec::new();
    let mut skip = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--skip" => skip.extend(args.next()),
            "--test-threads" | "--format" | "--color" | "--logfile" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            a => filters.push(a.to_owned()),
        }
    }
    let matches = |name: &str, f: &String| {
        if exact {
            name == f
        } else {
            name.contains(f.as_str())
        }
    };
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| matches(name, f)))
        .filter(|(name, _)| !skip.iter().any(|s| name.contains(s.as_str())))
        .filter(|_| !only_ignored)
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(*name);
        }
    }
    let passed = selected.len() - failed.len();
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        TESTS.len() - selected.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
