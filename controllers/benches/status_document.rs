//! `/api/v1/status` at 1,000 servers x 11 services, what the handler costs: the document
//! rendered whole on every request (serializing `Store::status()`, as the daemon did) and
//! from the per-server parts the store keeps (`Store::status_json`), with nothing changed
//! since the last request and with a tenth of the servers probed again in between (a
//! second of health checks at a 10 s interval). Whole and compact (`?compact=auto`, what
//! the dashboard asks for). Goal: p99 <= 20 ms.
//!
//! `cargo bench -p steward-controllers --bench status_document` (`-- quick`: fewer rounds)
//! prints p50/p99 wall time and the CPU time per request of each, and the sizes; then the
//! same through HTTP on loopback with curl (run it in a network namespace of its own).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use steward_controllers::{Compaction, FleetStatus, Store};

mod measure;
use measure::{ms, percentile, thread_cpu};

const FLEET: usize = 1000;

/// What the daemon's handler did before: the whole fleet built and serialized, healthy
/// services dropped for a compact document.
fn rendered_whole(store: &Store, compact: bool) -> usize {
    let mut fleet: FleetStatus = store.status();
    if compact {
        for server in &mut fleet.servers {
            server
                .services
                .retain(|s| !(s.installed && s.desired && s.healthy == Some(true)));
        }
    }
    serde_json::to_vec(&fleet).unwrap().len()
}

fn from_parts(store: &Store, compact: bool) -> usize {
    let detail = BTreeSet::new();
    let compaction = if compact {
        Compaction::Compact(&detail)
    } else {
        Compaction::Whole
    };
    let json = store.status_json(compaction).unwrap();
    json.members.iter().map(|m| m.len()).sum::<usize>() + 2
}

fn measure(
    what: &str,
    rounds: usize,
    store: &Store,
    between: impl Fn(usize),
    request: impl Fn() -> usize,
) {
    let mut wall = Vec::with_capacity(rounds);
    let mut cpu = Duration::ZERO;
    let mut size = 0;
    for round in 0..rounds {
        between(round);
        let (started, cpu_before) = (Instant::now(), thread_cpu());
        size = request();
        wall.push(started.elapsed());
        cpu += thread_cpu() - cpu_before;
    }
    let _ = store;
    println!(
        "{what:<58} {:>6} KiB  p50 {:>9}  p99 {:>9}  cpu/request {:>9}",
        size / 1024,
        ms(percentile(&mut wall, 0.5)),
        ms(percentile(&mut wall, 0.99)),
        ms(cpu / rounds as u32),
    );
}

/// The same documents through HTTP on loopback: a hyper server sending the kept parts
/// as the daemon's handler does (chunks, no copy), curl as the client, one request at a
/// time. curl's own `time_total` per request. Needs a loopback of its own when others
/// share the machine (run it in a network namespace).
fn over_http(store: Arc<Store>, rounds: usize, probe_tenth: &dyn Fn(usize)) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = Arc::clone(&store);
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = Arc::clone(&serving);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                    let store = Arc::clone(&store);
                    async move {
                        let compact = request.uri().query() == Some("compact=true");
                        let detail = BTreeSet::new();
                        let compaction = if compact {
                            Compaction::Compact(&detail)
                        } else {
                            Compaction::Whole
                        };
                        let json = store.status_json(compaction).unwrap();
                        let frames = std::iter::once(Bytes::from_static(b"{"))
                            .chain(json.members)
                            .chain(std::iter::once(Bytes::from_static(b"}")))
                            .map(|b| Ok::<_, Infallible>(Frame::data(b)));
                        let body = StreamBody::new(futures::stream::iter(frames));
                        Ok::<_, Infallible>(hyper::Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    for (path, doc) in [("", "whole"), ("?compact=true", "compact")] {
        let url = format!("http://{addr}/api/v1/status{path}");
        let mut wall = Vec::with_capacity(rounds);
        let mut size = 0.0;
        for round in 0..rounds {
            probe_tenth(round);
            let out = std::process::Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{time_total} %{size_download}",
                ])
                .arg(&url)
                .output()
                .expect("curl");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut fields = text.split_whitespace();
            let seconds: f64 = fields
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            size = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            wall.push(Duration::from_secs_f64(seconds));
        }
        println!(
            "{:<58} {:>6} KiB  p50 {:>9}  p99 {:>9}",
            format!("{doc}, over HTTP (curl), 100 servers probed between"),
            size as usize / 1024,
            ms(percentile(&mut wall, 0.5)),
            ms(percentile(&mut wall, 0.99)),
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rounds = if quick { 20 } else { 100 };
    let snapshot = steward_controllers::bench::snapshot(FLEET);
    let store = Arc::new(steward_controllers::bench::store(&snapshot));
    let names: Vec<String> = snapshot.servers.keys().cloned().collect();
    // A tenth of the fleet, a different tenth each round.
    let probe_tenth = |round: usize| {
        let tenth = names.len() / 10;
        let start = (round * tenth) % names.len();
        steward_controllers::bench::probed_again(
            &store,
            names[start..start + tenth].iter().map(String::as_str),
        );
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "/api/v1/status at {FLEET} servers x 11 services, {rounds} requests each (load {}) [goal p99 <= 20 ms]",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    for compact in [false, true] {
        let doc = if compact { "compact" } else { "whole" };
        measure(
            &format!("{doc}, rendered whole (before)"),
            rounds,
            &store,
            |_| {},
            || rendered_whole(&store, compact),
        );
        measure(
            &format!("{doc}, from kept parts, nothing changed"),
            rounds,
            &store,
            |_| {},
            || from_parts(&store, compact),
        );
        measure(
            &format!("{doc}, from kept parts, 100 servers probed between"),
            rounds,
            &store,
            probe_tenth,
            || from_parts(&store, compact),
        );
    }
    over_http(Arc::clone(&store), rounds, &probe_tenth);
}
