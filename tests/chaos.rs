//! Chaos: rounds of a lab fleet (real daemon, real agents, real lab services) applying a
//! commit or converging after a restart, while one random victim — the daemon, an agent or
//! a service — is SIGKILLed at a random moment and then brought back as an operator would
//! (the daemon is started again; a dead agent or service is the lab's and the daemon's to
//! restart). After every round, from the agents' own records and the process table:
//! - never two instances of a service on a server (also sampled while the round runs),
//! - never a service installed that the files do not declare, unless orphaned by a commit
//!   with `prune: false`,
//! - converged within [`CONVERGE_BOUND`], one agent per server,
//! - and at every clean shutdown (restart rounds, the end) no process left behind.
//!
//! `STEWARD_CHAOS_ROUNDS` (default 5) sets the number of rounds; every round prints its
//! seed, and `STEWARD_CHAOS_SEED=S STEWARD_CHAOS_FROM=V` replays that one round (from
//! the files of variant V, printed with it). Run it in a private network namespace.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustix::process::Signal;
use serde_json::Value;
use support::*;

/// How long a round may take to converge after its kill. A bound on correctness (the
/// fleet gets there at all), not a speed goal: a killed service is restarted at most 10 s
/// apart, an agent restart backs off up to 10 s, and a SIGKILLed daemon's leftover agents
/// are stopped and replaced.
const CONVERGE_BOUND: Duration = Duration::from_secs(120);
/// The kill comes this long (at most) after the commit or the start.
const MAX_KILL_DELAY_MS: u64 = 3000;
const SAMPLE: Duration = Duration::from_millis(100);

/// What the files say, as four independent edits of the example deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant(u8);

impl Variant {
    const COUNT: u8 = 16;
    const EXAMPLE: Variant = Variant(0);

    fn client_moved(self) -> bool {
        self.0 & 1 != 0
    }
    fn fhir_removed(self) -> bool {
        self.0 & 2 != 0
    }
    fn empi_moved(self) -> bool {
        self.0 & 4 != 0
    }
    fn prune(self) -> bool {
        self.0 & 8 != 0
    }

    /// Declared (server, kind) -> ports, as the agent records them.
    fn declared(self) -> BTreeMap<(&'static str, &'static str), Vec<u16>> {
        let mut out = BTreeMap::new();
        let client = if self.client_moved() { 7103 } else { 7003 };
        let empi = if self.empi_moved() { 7029 } else { 7019 };
        for (kind, ports) in [
            ("PSIS", vec![7001]),
            ("PSWS", vec![7002]),
            ("CLIENT", vec![client]),
            ("REPORT", vec![7004]),
            ("ADMIN", vec![443, 80]),
        ] {
            out.insert(("app1", kind), ports);
        }
        let mut app2 = vec![
            ("EMERGENCY", vec![7005, 7006]),
            ("HEALTH", vec![7007]),
            ("JOB", vec![]), // the next free port: not pinned here
            ("HL7", vec![2244]),
            ("EMPI", vec![empi]),
        ];
        if !self.fhir_removed() {
            app2.push(("FHIR", vec![7008]));
        }
        for (kind, ports) in app2 {
            out.insert(("app2", kind), ports);
        }
        out
    }

    /// Write this variant's files (edits of the example) and commit them.
    fn commit(self, lab: &Lab, example: &Example) {
        let mut installation = example.installation.clone();
        let mut app1 = example.app1.clone();
        let mut app2 = example.app2.clone();
        if self.prune() {
            installation = replace_once(&installation, "prune: false", "prune: true");
        }
        if self.client_moved() {
            app1 = replace_once(
                &app1,
                "    - kind: CLIENT                 # 7003\n",
                "    - kind: CLIENT\n      port: 7103\n",
            );
        }
        if self.fhir_removed() {
            let line = app2
                .lines()
                .find(|l| l.contains("- kind: FHIR"))
                .expect("FHIR in app2.yaml")
                .to_owned();
            app2 = replace_once(&app2, &format!("{line}\n"), "");
        }
        if self.empi_moved() {
            app2 = replace_once(&app2, "port: 7019", "port: 7029");
        }
        lab.write("installation.yaml", &installation);
        lab.write("servers/app1.yaml", &app1);
        lab.write("servers/app2.yaml", &app2);
        lab.commit(&format!("chaos: variant {}", self.0));
    }
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} once in:\n{text}");
    text.replacen(from, to, 1)
}

/// The lab's files as it started (its database address already its own).
struct Example {
    installation: String,
    app1: String,
    app2: String,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    /// Commit other files and let the running daemon apply them.
    Commit(Variant),
    /// Stop the daemon cleanly (asserting nothing is left running), start it again and
    /// let it converge the fleet it finds.
    Restart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Daemon,
    Agent,
    Service,
}

/// One round, all of it decided by its seed.
#[derive(Debug)]
struct Round {
    seed: u64,
    action: Action,
    victim: Victim,
    delay: Duration,
    /// Picks among the candidates found at the moment of the kill.
    pick: usize,
}

impl Round {
    fn new(seed: u64, from: Variant) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let action = if rng.random_ratio(1, 4) {
            Action::Restart
        } else {
            // Another variant than the current one, so the commit changes something.
            let step = rng.random_range(1..Variant::COUNT);
            Action::Commit(Variant((from.0 + step) % Variant::COUNT))
        };
        let victim = match rng.random_range(0..3) {
            0 => Victim::Daemon,
            1 => Victim::Agent,
            _ => Victim::Service,
        };
        Self {
            seed,
            action,
            victim,
            delay: Duration::from_millis(rng.random_range(0..=MAX_KILL_DELAY_MS)),
            pick: rng.random_range(0..64),
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    let raw = raw.trim();
    let parsed = match raw.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => raw.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={raw:?} is not a number")))
}

/// Two live lab-service processes of one kind on one address, seen in two samples at
/// least a sample apart with the same pids (so not a process caught between its SIGKILL
/// and its reaping).
#[derive(Default)]
struct Duplicates {
    seen: BTreeMap<(String, String), (BTreeSet<i32>, Instant)>,
}

impl Duplicates {
    /// Sample the process table; a description of a duplicate that persisted.
    fn sample(&mut self, lab: &Lab) -> Option<String> {
        let mut now: BTreeMap<(String, String), BTreeSet<i32>> = BTreeMap::new();
        for p in lab.processes() {
            if let (Some(kind), Some(addr)) = (p.service_kind(), p.address()) {
                now.entry((addr, kind.to_owned()))
                    .or_default()
                    .insert(p.pid);
            }
        }
        let at = Instant::now();
        let mut found = None;
        let mut seen = BTreeMap::new();
        for (key, pids) in now.into_iter().filter(|(_, pids)| pids.len() > 1) {
            let first = match self.seen.get(&key) {
                Some((before, since)) if *before == pids => *since,
                _ => at,
            };
            if at.duration_since(first) >= SAMPLE * 2 && pids.iter().all(|p| alive(*p)) {
                found = Some(format!("two instances of {} on {}: {pids:?}", key.1, key.0));
            }
            seen.insert(key, (pids, first));
        }
        self.seen = seen;
        found
    }
}

/// One service as its agent records it.
struct Record {
    ports: Vec<u16>,
    pid: Option<i32>,
    running: bool,
}

/// What each agent lists, by (server, kind) (`None` while an agent does not answer).
fn agent_records(lab: &Lab) -> Option<BTreeMap<(String, String), Record>> {
    let mut out = BTreeMap::new();
    for server in ["app1", "app2"] {
        for s in lab.try_agent_services(server)? {
            let kind = s["kind"].as_str()?.to_owned();
            let record = Record {
                ports: s["ports"]
                    .as_array()?
                    .iter()
                    .filter_map(|p| p.as_u64().map(|p| p as u16))
                    .collect(),
                pid: s["pid"].as_i64().map(|p| p as i32),
                running: s["status"] == "running",
            };
            out.insert((server.to_owned(), kind), record);
        }
    }
    Some(out)
}

/// Whether the fleet is where `variant` says, seen from the daemon (applied, valid, every
/// declared service installed, running and healthy on its declared ports) and from the
/// agents (the same ports in their records, each service running).
fn converged(lab: &Lab, variant: Variant) -> bool {
    let Ok((200, body)) = lab.try_get("/api/v1/status") else {
        return false;
    };
    let Ok(status) = serde_json::from_str::<Value>(&body) else {
        return false;
    };
    if status["valid"] != true || !all_declared_healthy(&status) {
        return false;
    }
    // The daemon has read the files: FHIR is declared exactly when the variant keeps it
    // (the ports below tell the other edits apart).
    let fhir_declared = service(&status, "app2", "FHIR").is_some_and(|s| s["desired"] != false);
    if fhir_declared == variant.fhir_removed() {
        return false;
    }
    let Some(records) = agent_records(lab) else {
        return false;
    };
    let declared = variant.declared();
    // With prune, converged includes the uninstall of what the files dropped.
    let pruned = !variant.prune()
        || records
            .keys()
            .all(|(s, k)| declared.contains_key(&(s.as_str(), k.as_str())));
    pruned
        && declared.iter().all(|((server, kind), ports)| {
            let in_status = service(&status, server, kind)
                .is_some_and(|s| s["desired"] != false && service_up(s));
            let recorded = records
                .get(&((*server).to_owned(), (*kind).to_owned()))
                .is_some_and(|r| {
                    (ports.is_empty() || r.ports == *ports) && r.pid.is_some() && r.running
                });
            in_status && recorded
        })
}

/// The invariants of a converged fleet, from the agents' records and `/proc`.
fn check_invariants(lab: &Lab, variant: Variant, orphans_allowed: &BTreeSet<String>) {
    let records = agent_records(lab).expect("both agents answer once converged");
    let declared = variant.declared();
    for (server, kind) in records.keys() {
        let is_declared = declared.contains_key(&(server.as_str(), kind.as_str()));
        assert!(
            is_declared || (!variant.prune() && orphans_allowed.contains(kind)),
            "{server}/{kind} is installed but the files (variant {}) do not declare it",
            variant.0
        );
    }
    let procs = lab.processes();
    for (index, server) in [(1u8, "app1"), (2, "app2")] {
        let addr = lab.address_of(index).to_string();
        let agents: Vec<_> = procs
            .iter()
            .filter(|p| p.is_agent() && p.address().as_deref() == Some(addr.as_str()))
            .collect();
        assert_eq!(agents.len(), 1, "one agent for {server}: {agents:?}");
        let mut by_kind: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for p in procs
            .iter()
            .filter(|p| p.address().as_deref() == Some(addr.as_str()))
        {
            if let Some(kind) = p.service_kind() {
                by_kind.entry(kind).or_default().push(p.pid);
            }
        }
        for (kind, pids) in &by_kind {
            assert_eq!(pids.len(), 1, "one {kind} process on {server}: {pids:?}");
            let recorded = records
                .get(&(server.to_owned(), (*kind).to_owned()))
                .and_then(|r| r.pid);
            assert_eq!(
                recorded,
                Some(pids[0]),
                "{server}/{kind} runs as pid {} but its agent records {recorded:?}",
                pids[0]
            );
        }
        for ((s, kind), _) in declared.iter().filter(|((s, _), _)| *s == server) {
            assert!(
                by_kind.contains_key(kind),
                "{s}/{kind} declared but not running"
            );
        }
    }
}

/// SIGKILL the round's victim; what was killed.
fn kill_victim(lab: &mut Lab, round: &Round) -> String {
    let procs = lab.processes();
    let candidates: Vec<_> = match round.victim {
        Victim::Daemon => Vec::new(),
        Victim::Agent => procs.into_iter().filter(|p| p.is_agent()).collect(),
        Victim::Service => procs
            .into_iter()
            .filter(|p| p.service_kind().is_some())
            .collect(),
    };
    // The daemon when it is the victim, or when there is nothing of the chosen kind yet
    // (a kill early in a restart).
    if candidates.is_empty() {
        let pid = lab.daemon_pid().expect("daemon running");
        lab.kill_daemon();
        // The operator starts it again at once.
        lab.respawn_after_crash();
        return format!("daemon (pid {pid}), started again");
    }
    // By server and kind, not pid, so a replay picks the same one when the same ones run.
    let mut candidates = candidates;
    candidates.sort_by_key(|p| (p.address(), p.service_kind().map(str::to_owned)));
    let victim = &candidates[round.pick % candidates.len()];
    signal(victim.pid, Signal::KILL);
    let what = match victim.service_kind() {
        Some(kind) => format!("service {kind}"),
        None => "agent".to_owned(),
    };
    format!(
        "{what} on {} (pid {})",
        victim.address().unwrap_or_default(),
        victim.pid
    )
}

/// Run one round from a fleet converged on `from`; the variant it leaves the files at.
fn run_round(
    lab: &mut Lab,
    example: &Example,
    label: &str,
    round: &Round,
    from: Variant,
    orphans_allowed: &mut BTreeSet<String>,
) -> Variant {
    let to = match round.action {
        Action::Commit(v) => v,
        Action::Restart => from,
    };
    eprintln!(
        "chaos {label}: seed={:#x} from=variant {} action={:?} victim={:?} after {:?} \
         (replay: STEWARD_CHAOS_SEED={:#x} STEWARD_CHAOS_FROM={})",
        round.seed, from.0, round.action, round.victim, round.delay, round.seed, from.0
    );
    let mut duplicates = Duplicates::default();
    match round.action {
        Action::Commit(v) => {
            // FHIR stays installed when a commit removes it without pruning.
            if !v.prune() && v.fhir_removed() && !from.fhir_removed() {
                orphans_allowed.insert("FHIR".to_owned());
            }
            v.commit(lab, example);
        }
        Action::Restart => {
            lab.stop(); // asserts a clean exit and no process left behind
            lab.spawn();
        }
    }
    let started = Instant::now();
    while started.elapsed() < round.delay {
        if let Some(dup) = duplicates.sample(lab) {
            panic!("chaos {label} (seed {:#x}): {dup}", round.seed);
        }
        std::thread::sleep(SAMPLE.min(round.delay.saturating_sub(started.elapsed())));
    }
    let killed = kill_victim(lab, round);
    let kill_at = Instant::now();
    lab.wait_until(
        &format!(
            "chaos {label} (seed {:#x}, killed {killed}): converged on variant {}",
            round.seed, to.0
        ),
        CONVERGE_BOUND,
        || {
            if let Some(dup) = duplicates.sample(lab) {
                panic!("chaos {label} (seed {:#x}): {dup}", round.seed);
            }
            converged(lab, to).then_some(())
        },
    );
    check_invariants(lab, to, orphans_allowed);
    if to.prune() || !to.fhir_removed() {
        // Pruned away, or declared again: no longer an orphan.
        orphans_allowed.clear();
    }
    eprintln!(
        "chaos {label}: killed {killed}; converged {:.1} s after the kill",
        kill_at.elapsed().as_secs_f64()
    );
    to
}

#[test]
fn fleet_survives_random_kills() {
    let mut lab = Lab::start(200);
    lab.wait_converged(1);
    let example = Example {
        installation: lab.read("installation.yaml"),
        app1: lab.read("servers/app1.yaml"),
        app2: lab.read("servers/app2.yaml"),
    };
    let mut orphans_allowed = BTreeSet::new();
    let mut current = Variant::EXAMPLE;

    if let Some(seed) = env_u64("STEWARD_CHAOS_SEED") {
        let from = Variant(env_u64("STEWARD_CHAOS_FROM").unwrap_or(0) as u8 % Variant::COUNT);
        if from != current {
            if !from.prune() && from.fhir_removed() {
                orphans_allowed.insert("FHIR".to_owned()); // as in run_round
            }
            from.commit(&lab, &example);
            lab.wait_until(
                "the replayed round's starting files applied",
                CONVERGE_BOUND,
                || converged(&lab, from).then_some(()),
            );
            current = from;
        }
        let round = Round::new(seed, current);
        run_round(
            &mut lab,
            &example,
            "replay",
            &round,
            current,
            &mut orphans_allowed,
        );
        lab.stop();
        return;
    }

    let rounds = env_u64("STEWARD_CHAOS_ROUNDS").unwrap_or(5);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
        ^ u64::from(std::process::id());
    let mut seeds = StdRng::seed_from_u64(base);
    eprintln!("chaos: {rounds} rounds");
    for r in 1..=rounds {
        let round = Round::new(seeds.random(), current);
        current = run_round(
            &mut lab,
            &example,
            &format!("round {r}/{rounds}"),
            &round,
            current,
            &mut orphans_allowed,
        );
    }
    lab.stop(); // no process left behind
}
