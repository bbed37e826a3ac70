//! Scripted stand-ins for agents and the prober, and a fixture that builds a context
//! around them from a few lines of desired state.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use steward_agent::api::{
    CertificateStatus, ConnectionStrings, ConnectionStringsUpdate, HostInfo, InstallOutcome,
    InstallRequest, InstallResponse, RemnantCleanup, ServiceInfo, ServiceStatus, UninstallOutcome,
    UninstallResponse,
};
use steward_agent::ClientError;
use steward_model::load::{load_text, Loaded};
use steward_model::resource::Mode;
use steward_model::{ServiceKind, Snapshot};
use steward_pki::{CertificateAuthority, PrivateKeyPem};

use crate::agent::{AgentApi, Connector};
use crate::config::{AgentEndpoint, ControllersConfig, Desired};
use crate::context::Context;
use crate::prober::{ProbeError, ProbeResult, ProbeTarget, Prober};
use crate::reconciler::{reconcile_and_record, Reconciler};
use crate::{triggers, Controllers};

/// What an agent lists for `kind` installed by steward on `port` at `release`: running, or
/// stopped on request when `held` (an HL7 standby).
pub(crate) fn listed(
    kind: ServiceKind,
    port: u16,
    drive: &str,
    release: &str,
    held: bool,
) -> ServiceInfo {
    ServiceInfo {
        kind,
        ports: vec![port],
        listen_ports: vec![port],
        drive: drive.into(),
        release: release.into(),
        installed_by: "steward".into(),
        installed_at: time::OffsetDateTime::UNIX_EPOCH,
        status: if held {
            ServiceStatus::Stopped
        } else {
            ServiceStatus::Running
        },
        held,
        tls_thumbprint: None,
        link: String::new(),
        pid: None,
        exit_code: None,
        message: None,
        last_failure: None,
    }
}

#[derive(Debug, Default)]
pub(crate) struct AgentState {
    pub services: BTreeMap<ServiceKind, ServiceInfo>,
    pub certificate: Option<CertificateStatus>,
    pub connection_strings: Option<ConnectionStrings>,
}

/// The calls of the agent API, so a test names them and a typo does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Host,
    Services,
    Install,
    Uninstall,
    Restart,
    Stop,
    Start,
    Certificate,
    InstallCertificate,
    ConnectionStrings,
    SetConnectionStrings,
    CleanupRemnants,
    Logs,
}

/// An agent that answers from memory, fails calls on request, or is down altogether.
/// A call the test forbade, or a failure it scripted that no call consumed, fails the
/// test when its [`Fixture`] is dropped.
pub(crate) struct FakeAgent {
    hostname: String,
    state: Mutex<AgentState>,
    calls: Mutex<Vec<Call>>,
    /// Every install asked for: kind, release, and whether it was to be held.
    installs: Mutex<Vec<(ServiceKind, String, bool)>>,
    failures: Mutex<VecDeque<(Call, ClientError)>>,
    forbidden: Mutex<Vec<Call>>,
    unexpected: Mutex<Vec<Call>>,
    down: AtomicBool,
    next_pid: AtomicU64,
    /// How long a listing takes (tokio's clock), so that callers overlap.
    listing_delay: Mutex<Duration>,
}

impl FakeAgent {
    pub(crate) fn new(hostname: &str) -> Self {
        Self {
            hostname: hostname.to_owned(),
            state: Mutex::new(AgentState::default()),
            calls: Mutex::new(Vec::new()),
            installs: Mutex::new(Vec::new()),
            failures: Mutex::new(VecDeque::new()),
            forbidden: Mutex::new(Vec::new()),
            unexpected: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            next_pid: AtomicU64::new(1000),
            listing_delay: Mutex::new(Duration::ZERO),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, AgentState> {
        self.state.lock().unwrap()
    }

    pub(crate) fn calls(&self, call: Call) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == call)
            .count()
    }

    /// The installs of `kind` asked for, oldest first: (release, held asked).
    pub(crate) fn installs_of(&self, kind: ServiceKind) -> Vec<(String, bool)> {
        self.installs
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, release, held)| (release.clone(), *held))
            .collect()
    }

    /// The next call of `call` fails with `error`.
    pub(crate) fn fail_next(&self, call: Call, error: ClientError) {
        self.failures.lock().unwrap().push_back((call, error));
    }

    /// From now on `call` is not expected: making it fails the test.
    pub(crate) fn forbid(&self, call: Call) {
        self.forbidden.lock().unwrap().push(call);
    }

    /// What went against the script: forbidden calls made, scripted failures never used.
    fn violations(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .unexpected
            .lock()
            .unwrap()
            .iter()
            .map(|c| format!("{}: unexpected call {c:?}", self.hostname))
            .collect();
        out.extend(self.failures.lock().unwrap().iter().map(|(c, e)| {
            format!(
                "{}: scripted failure of {c:?} never used ({e})",
                self.hostname
            )
        }));
        out
    }

    /// Each listing of the services takes `delay` from now on.
    pub(crate) fn set_listing_delay(&self, delay: Duration) {
        *self.listing_delay.lock().unwrap() = delay;
    }

    /// Every call fails with "connection refused" while down.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub(crate) fn set_status(&self, kind: ServiceKind, status: ServiceStatus) {
        if let Some(s) = self.state().services.get_mut(&kind) {
            s.status = status;
            s.pid = None;
        }
    }

    fn enter(&self, call: Call) -> Result<(), ClientError> {
        self.calls.lock().unwrap().push(call);
        // Recorded, not panicked: a panic would end only the reconcile task that made it.
        if self.forbidden.lock().unwrap().contains(&call) {
            self.unexpected.lock().unwrap().push(call);
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(ClientError::ConnectRefused);
        }
        let mut failures = self.failures.lock().unwrap();
        match failures.iter().position(|(c, _)| *c == call) {
            Some(i) => Err(failures.remove(i).map(|(_, e)| e).unwrap()),
            None => Ok(()),
        }
    }

    fn pid(&self) -> Option<u32> {
        Some(self.next_pid.fetch_add(1, Ordering::SeqCst) as u32)
    }

    fn not_installed(kind: ServiceKind) -> ClientError {
        ClientError::Status {
            status: 404,
            code: Some("not_installed".into()),
            message: format!("{kind} is not installed"),
        }
    }
}

impl AgentState {
    /// The installed service `kind`, or the agent's 404 for it.
    fn installed(&mut self, kind: ServiceKind) -> Result<&mut ServiceInfo, ClientError> {
        self.services
            .get_mut(&kind)
            .ok_or_else(|| FakeAgent::not_installed(kind))
    }
}

#[async_trait]
impl AgentApi for FakeAgent {
    async fn host(&self) -> Result<HostInfo, ClientError> {
        self.enter(Call::Host)?;
        Ok(HostInfo {
            hostname: self.hostname.clone(),
            computer_name: self.hostname.split('.').next().unwrap().to_uppercase(),
            os: "FakeOS".into(),
            agent_version: "0.0.0".into(),
        })
    }

    async fn services(&self) -> Result<Vec<ServiceInfo>, ClientError> {
        self.enter(Call::Services)?;
        let delay = *self.listing_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(self.state().services.values().cloned().collect())
    }

    async fn install(
        &self,
        kind: ServiceKind,
        request: &InstallRequest,
        held: bool,
    ) -> Result<InstallResponse, ClientError> {
        self.enter(Call::Install)?;
        self.installs
            .lock()
            .unwrap()
            .push((kind, request.release.clone(), held));
        let pid = self.pid();
        let mut state = self.state();
        // As the agent does: a hold outlives a reinstall.
        let held = held || state.services.get(&kind).is_some_and(|s| s.held);
        let same = state.services.get(&kind).map(|s| {
            (
                s.ports == request.ports
                    && s.drive == request.drive
                    && s.release == request.release,
                s.status == ServiceStatus::Running || s.held,
            )
        });
        let outcome = match same {
            None => InstallOutcome::Created,
            Some((false, _)) => InstallOutcome::Reinstalled,
            Some((true, false)) => InstallOutcome::Started,
            Some((true, true)) => InstallOutcome::Unchanged,
        };
        let service = ServiceInfo {
            kind,
            ports: request.ports.clone(),
            listen_ports: request.ports.clone(),
            drive: request.drive.clone(),
            release: request.release.clone(),
            installed_by: request.installed_by.clone(),
            installed_at: time::OffsetDateTime::now_utc(),
            status: if held {
                ServiceStatus::Stopped
            } else {
                ServiceStatus::Running
            },
            held,
            tls_thumbprint: None,
            link: format!("https://{}:{}/", self.hostname, request.ports[0]),
            pid: pid.filter(|_| !held),
            exit_code: None,
            message: None,
            last_failure: None,
        };
        state.services.insert(kind, service.clone());
        Ok(InstallResponse { outcome, service })
    }

    async fn uninstall(&self, kind: ServiceKind) -> Result<UninstallResponse, ClientError> {
        self.enter(Call::Uninstall)?;
        match self.state().services.remove(&kind) {
            Some(_) => Ok(UninstallResponse {
                kind,
                outcome: UninstallOutcome::Removed,
                remnants: Vec::new(),
            }),
            None => Err(Self::not_installed(kind)),
        }
    }

    async fn restart(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        self.enter(Call::Restart)?;
        let pid = self.pid();
        let mut state = self.state();
        let service = state.installed(kind)?;
        if service.held {
            return Err(ClientError::Status {
                status: 409,
                code: Some("held".into()),
                message: format!("{kind} was stopped on request (held)"),
            });
        }
        service.status = ServiceStatus::Running;
        service.pid = pid;
        Ok(service.clone())
    }

    async fn stop(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        self.enter(Call::Stop)?;
        let mut state = self.state();
        let service = state.installed(kind)?;
        service.status = ServiceStatus::Stopped;
        service.held = true;
        service.pid = None;
        Ok(service.clone())
    }

    async fn start(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        self.enter(Call::Start)?;
        let pid = self.pid();
        let mut state = self.state();
        let service = state.installed(kind)?;
        if service.status != ServiceStatus::Running {
            service.status = ServiceStatus::Running;
            service.pid = pid;
        }
        service.held = false;
        Ok(service.clone())
    }

    async fn certificate(&self) -> Result<Option<CertificateStatus>, ClientError> {
        self.enter(Call::Certificate)?;
        Ok(self.state().certificate.clone())
    }

    async fn install_certificate(
        &self,
        cert_pem: &str,
        key_pem: &PrivateKeyPem,
    ) -> Result<CertificateStatus, ClientError> {
        self.enter(Call::InstallCertificate)?;
        let info = steward_pki::verify_key_pair(cert_pem, key_pem.expose()).map_err(|e| {
            ClientError::Status {
                status: 400,
                code: Some("invalid_certificate".into()),
                message: e.to_string(),
            }
        })?;
        let mut state = self.state();
        let status = CertificateStatus {
            thumbprint: info.sha1_thumbprint,
            not_after: info.not_after,
            subject: info.subject,
            cert_pem: Some(cert_pem.to_owned()),
            reloaded: state.services.keys().copied().collect(),
        };
        state.certificate = Some(status.clone());
        Ok(status)
    }

    async fn connection_strings(&self) -> Result<Option<ConnectionStrings>, ClientError> {
        self.enter(Call::ConnectionStrings)?;
        Ok(self.state().connection_strings.clone())
    }

    async fn set_connection_strings(
        &self,
        strings: &ConnectionStrings,
    ) -> Result<ConnectionStringsUpdate, ClientError> {
        self.enter(Call::SetConnectionStrings)?;
        let mut state = self.state();
        state.connection_strings = Some(strings.clone());
        Ok(ConnectionStringsUpdate {
            connection_strings: strings.clone(),
            pushed: state.services.keys().copied().collect(),
        })
    }

    async fn cleanup_remnants(&self) -> Result<RemnantCleanup, ClientError> {
        self.enter(Call::CleanupRemnants)?;
        Ok(RemnantCleanup::default())
    }

    async fn logs(
        &self,
        kind: ServiceKind,
        _tail_bytes: u64,
    ) -> Result<steward_agent::api::ServiceLogs, ClientError> {
        self.enter(Call::Logs)?;
        Ok(steward_agent::api::ServiceLogs {
            kind,
            log: format!("{kind}: installed by the fake agent\n"),
            truncated: false,
        })
    }
}

/// Hands out the fake agent of an endpoint; an unknown endpoint refuses connections.
pub(crate) struct FakeConnector {
    agents: BTreeMap<String, Arc<FakeAgent>>,
}

impl Connector for FakeConnector {
    fn connect(&self, endpoint: &AgentEndpoint) -> Result<Arc<dyn AgentApi>, ClientError> {
        self.agents
            .get(&endpoint.base_url)
            .map(|a| a.clone() as Arc<dyn AgentApi>)
            .ok_or(ClientError::ConnectRefused)
    }
}

/// Every service passes unless told otherwise.
#[derive(Default)]
pub(crate) struct FakeProber {
    failing: Mutex<BTreeMap<(String, ServiceKind), bool>>,
    probes: Mutex<Vec<(String, ServiceKind, u16)>>,
    /// Every set of CAs it was told to trust, oldest first.
    pub trusted: Mutex<Vec<Vec<String>>>,
}

impl FakeProber {
    pub(crate) fn set_healthy(&self, hostname: &str, kind: ServiceKind, healthy: bool) {
        self.failing
            .lock()
            .unwrap()
            .insert((hostname.to_owned(), kind), !healthy);
    }

    pub(crate) fn probes(&self, kind: ServiceKind) -> usize {
        self.probes
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.1 == kind)
            .count()
    }
}

#[async_trait]
impl Prober for FakeProber {
    fn trust(&self, roots: &[String]) -> Result<(), steward_pki::PkiError> {
        self.trusted.lock().unwrap().push(roots.to_vec());
        Ok(())
    }

    async fn probe(&self, target: &ProbeTarget) -> ProbeResult {
        self.probes
            .lock()
            .unwrap()
            .push((target.hostname.clone(), target.kind, target.port));
        let failing = self
            .failing
            .lock()
            .unwrap()
            .get(&(target.hostname.clone(), target.kind))
            .copied()
            .unwrap_or(false);
        ProbeResult {
            duration: Duration::from_millis(3),
            http_status: Some(if failing { 503 } else { 200 }),
            cert_not_after: None,
            reused_connection: false,
            outcome: if failing {
                Err(ProbeError::Status {
                    status: 503,
                    accepted: "200-399".into(),
                })
            } else {
                Ok(())
            },
        }
    }
}

pub(crate) struct Fixture {
    pub ctx: Arc<Context>,
    pub registry: crate::MetricsRegistry,
    pub prober: Arc<FakeProber>,
    pub controllers: Option<Controllers>,
    agents: BTreeMap<String, Arc<FakeAgent>>,
    dir: PathBuf,
    generation: AtomicU64,
    _ca_dir: Arc<tempfile::TempDir>,
}

/// The certificate line of a server whose certificate steward generates.
const GENERATED: &str = "certificate: {generate: true}";

/// A fleet of servers `(name, [KIND, ...])` with generated certificates.
pub(crate) fn fixture(servers: &[(&str, &[&str])]) -> Fixture {
    fixture_in(servers, &std::env::temp_dir())
}

/// The same, reading relative paths of the desired state from `dir`.
pub(crate) fn fixture_in(servers: &[(&str, &[&str])], dir: &Path) -> Fixture {
    fixture_with(servers, GENERATED, dir)
}

/// The same with another certificate line and desired-state directory.
pub(crate) fn fixture_with(servers: &[(&str, &[&str])], certificate: &str, dir: &Path) -> Fixture {
    build(servers, certificate, dir, None)
}

/// A fleet whose controllers keep their state under `state_dir` (see [`Fixture::restart`]).
pub(crate) fn fixture_in_state_dir(servers: &[(&str, &[&str])], state_dir: &Path) -> Fixture {
    let dir = std::env::temp_dir();
    build(servers, GENERATED, &dir, Some(state_dir.to_owned()))
}

fn build(
    servers: &[(&str, &[&str])],
    certificate: &str,
    dir: &Path,
    state_dir: Option<PathBuf>,
) -> Fixture {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::init(ca_dir.path()).unwrap();
    let ca_pem = ca.cert_pem().to_owned();
    let agents: BTreeMap<String, Arc<FakeAgent>> = servers
        .iter()
        .map(|(name, _)| {
            let host = format!("{name}.example.eng");
            (
                format!("https://{host}:7443"),
                Arc::new(FakeAgent::new(&host)),
            )
        })
        .collect();
    let config = ControllersConfig {
        ca: Some(Arc::new(ca)),
        agent_tls: steward_pki::client_config(std::slice::from_ref(&ca_pem)).unwrap(),
        probe_roots: vec![ca_pem],
        endpoints: Arc::new(AgentEndpoint::from_server),
        resync: Duration::from_secs(2),
        agent_timeout: Duration::from_secs(5),
        max_concurrent: 8,
        per_server: 2,
        installed_by: "steward-test".into(),
        state_dir,
    };
    let fx = start(config, agents, dir, Arc::new(ca_dir));
    fx.apply(snapshot(servers, certificate, Mode::AutoCorrect, false));
    fx.database_verified();
    fx
}

fn start(
    config: ControllersConfig,
    agents: BTreeMap<String, Arc<FakeAgent>>,
    dir: &Path,
    ca_dir: Arc<tempfile::TempDir>,
) -> Fixture {
    let registry = crate::MetricsRegistry::default();
    let prober = Arc::new(FakeProber::default());
    let connector = Arc::new(FakeConnector {
        agents: agents.clone(),
    });
    let mut controllers =
        Controllers::with_parts(config, &registry, connector, prober.clone()).unwrap();
    // The fixture's database (`db.example.eng`) is not a server: its controller's loop is
    // taken out and the fixture records it verified ([`Fixture::database_verified`]). The
    // database controller's own tests run it against a real TDS server.
    drop(controllers.triggers::<crate::database::Databases>());
    Fixture {
        ctx: controllers.ctx.clone(),
        registry,
        prober,
        controllers: Some(controllers),
        agents,
        dir: dir.to_path_buf(),
        generation: AtomicU64::new(0),
        _ca_dir: ca_dir,
    }
}

/// A valid snapshot, compiled from YAML like the daemon's.
pub(crate) fn snapshot(
    servers: &[(&str, &[&str])],
    certificate: &str,
    mode: Mode,
    prune: bool,
) -> Snapshot {
    let certificate = certificate
        .strip_prefix("certificate: ")
        .unwrap_or_else(|| panic!("a `certificate: ...` line: {certificate}"));
    let mut fleet = steward_testkit::Fixture::installation()
        .mode(yaml_mode(mode))
        .prune(prune);
    for (name, kinds) in servers {
        fleet = fleet.server(
            steward_testkit::Fixture::server(name)
                .certificate(certificate)
                .services(kinds.iter().copied()),
        );
    }
    compiled(&fleet.documents())
}

/// The snapshot of desired-state YAML `text` (a fixture, so it must be valid).
pub(crate) fn compiled(text: &str) -> Snapshot {
    let mut loaded = Loaded::default();
    load_text(Path::new("fixture.yaml"), text, &mut loaded);
    let compiled = steward_model::validate::compile(loaded);
    match compiled.snapshot {
        Some(s) => s,
        None => panic!("invalid fixture: {:?}", compiled.diagnostics),
    }
}

/// `mode` as the files spell it.
pub(crate) fn yaml_mode(mode: Mode) -> &'static str {
    match mode {
        Mode::AutoCorrect => "autoCorrect",
        Mode::Monitor => "monitor",
    }
}

/// Controller HA in a test: this daemon leads only once the test says it won.
#[derive(Debug, Default)]
pub(crate) struct Leadership(AtomicBool);

impl Leadership {
    pub(crate) fn win(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl steward_agent::EpochSource for Leadership {
    fn acting_epoch(&self) -> Result<u64, String> {
        if self.0.load(Ordering::SeqCst) {
            Ok(7)
        } else {
            Err("another daemon leads".into())
        }
    }
}

impl Fixture {
    /// Makes this fixture's daemon one of several (controller HA) that does not lead yet.
    pub(crate) fn follow(&self) -> Arc<Leadership> {
        let leadership = Arc::new(Leadership::default());
        assert!(
            self.ctx.fence.set(leadership.clone()).is_ok(),
            "fence already set"
        );
        leadership
    }

    pub(crate) fn agent(&self, server: &str) -> Arc<FakeAgent> {
        self.agents[&format!("https://{server}.example.eng:7443")].clone()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Put a snapshot in force as the next generation.
    pub(crate) fn apply(&self, snapshot: Snapshot) -> triggers::Applied {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        triggers::apply(&self.ctx, self.desired(generation, snapshot))
    }

    pub(crate) fn desired(&self, generation: u64, snapshot: Snapshot) -> Desired {
        Desired {
            generation,
            snapshot: Arc::new(snapshot),
            dir: self.dir.clone(),
            diff: None,
        }
    }

    pub(crate) fn current(&self) -> Snapshot {
        self.ctx
            .desired
            .current()
            .unwrap()
            .desired
            .snapshot
            .as_ref()
            .clone()
    }

    /// The same fleet (agents, CA, state directory) under a new set of controllers, as
    /// after a daemon restart, with the current desired state as its generation 1.
    pub(crate) fn restart(&self) -> Fixture {
        let snapshot = self.current();
        let fx = start(
            self.ctx.config.clone(),
            self.agents.clone(),
            &self.dir,
            Arc::clone(&self._ca_dir),
        );
        fx.apply(snapshot);
        fx.database_verified();
        fx
    }

    /// What a database controller run records when it finds the database complete.
    pub(crate) fn database_verified(&self) {
        self.ctx.store.record_database(
            self.generation(),
            crate::store::DatabaseSeen {
                up: true,
                version: Some("fixture".into()),
                missing: Some(Vec::new()),
                phase: crate::status::Phase::Ready,
                reason: "Verified",
                message: "the fixture's database".into(),
            },
        );
    }

    /// One run of controller `R` as the runtime makes it: reconcile, then error policy.
    pub(crate) async fn run<R: Reconciler>(
        &self,
        key: R::Key,
    ) -> Result<steward_runtime::Action, crate::error::ControllerError> {
        reconcile_and_record::<R>(key, steward_runtime::Reason::Resync, self.ctx.clone()).await
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        let mut s = self.current();
        s.installation.mode = mode;
        self.apply(s);
    }

    /// One probe of `server/kind` now, as the monitor would run it; `None` if the
    /// service is not being probed (not running, or not seen running yet).
    pub(crate) async fn probe(&self, server: &str, kind: ServiceKind) -> Option<bool> {
        let key = crate::service_key::ServiceKey::new(server, kind);
        let result = self
            .ctx
            .probes
            .monitor
            .probe_now(&key, self.ctx.as_ref())
            .await?;
        Some(result.success())
    }

    /// Three service runs, each followed by a probe: what a service whose server has its
    /// certificate takes to be installed, started and pass its health test.
    pub(crate) async fn until_healthy(&self, server: &str, kind: ServiceKind) {
        let key = crate::service_key::ServiceKey::new(server, kind);
        for _ in 0..3 {
            self.run::<crate::service::Services>(key.clone())
                .await
                .unwrap();
            self.probe(server, kind).await;
        }
    }

    /// The value of one series; `None` when there is no such series (removed is not 0).
    pub(crate) fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Sample {
        Sample(self.series(name, labels))
    }

    /// The value of the series of `name` with (at least) `labels`, read from `/metrics`'
    /// text; `None` when there is no such series.
    pub(crate) fn series(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        self.registry
            .text()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (series_name, pairs) = series.split_once('{').unwrap_or((series, ""));
                let pairs: Vec<&str> = pairs.trim_end_matches('}').split(',').collect();
                let matches =
                    series_name == name && wanted.iter().all(|w| pairs.contains(&w.as_str()));
                matches.then(|| value.parse().ok()).flatten()
            })
    }

    pub(crate) fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Sample {
        self.sample(name, labels)
    }

    pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Sample {
        self.sample(name, labels)
    }
}

/// A metric sample as a test reads it: `None` when the series does not exist, so "series
/// removed" is never mistaken for 0. Compares with `Option<f64>` (`Some(1.0)`, `None`) and,
/// for tests written before it, with a plain `f64`: equal only when the series exists
/// with that value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample(pub Option<f64>);

impl PartialEq<Option<f64>> for Sample {
    fn eq(&self, other: &Option<f64>) -> bool {
        self.0 == *other
    }
}

impl PartialEq<f64> for Sample {
    fn eq(&self, other: &f64) -> bool {
        self.0 == Some(*other)
    }
}

impl PartialOrd<f64> for Sample {
    /// A missing series is not ordered against any value: `>`, `<` are false.
    fn partial_cmp(&self, other: &f64) -> Option<std::cmp::Ordering> {
        self.0?.partial_cmp(other)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // A restarted fixture shares its agents: each checks them, which is harmless.
        let violations: Vec<String> = self.agents.values().flat_map(|a| a.violations()).collect();
        assert!(
            violations.is_empty(),
            "the agents' script was not followed:\n{}",
            violations.join("\n")
        );
    }
}

/// The reason of the condition that describes an object now.
pub(crate) fn headline(conditions: &[crate::status::Condition]) -> String {
    use crate::status::{ConditionStatus, ConditionType};
    conditions
        .iter()
        .find(|c| c.condition_type != ConditionType::Ready && c.status == ConditionStatus::True)
        .or_else(|| {
            conditions
                .iter()
                .find(|c| c.condition_type == ConditionType::Ready)
        })
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod script {
    use super::*;

    #[tokio::test]
    #[should_panic(expected = "unexpected call Uninstall")]
    async fn a_forbidden_call_fails_the_test() {
        let fx = fixture(&[("app1", &["PSIS"])]);
        let agent = fx.agent("app1");
        agent.forbid(Call::Uninstall);
        let _ = agent.uninstall(ServiceKind::Psis).await;
    }

    #[tokio::test]
    #[should_panic(expected = "scripted failure of Restart never used")]
    async fn a_scripted_failure_no_call_used_fails_the_test() {
        let fx = fixture(&[("app1", &["PSIS"])]);
        fx.agent("app1")
            .fail_next(Call::Restart, ClientError::ConnectRefused);
    }

    #[tokio::test]
    async fn a_series_never_written_is_none_not_zero() {
        let fx = fixture(&[("app1", &["PSIS"])]);
        assert_eq!(fx.gauge("steward_no_such_series", &[]), None);
        assert_eq!(fx.gauge("steward_agent_up", &[("server", "nope")]), None);
        // Compared with a plain number, a missing series is no number at all.
        assert_ne!(fx.gauge("steward_agent_up", &[("server", "nope")]), 0.0);
        assert!(!(fx.gauge("steward_agent_up", &[("server", "nope")]) >= 0.0));
    }

    #[tokio::test]
    async fn calls_are_counted_by_the_enum() {
        let fx = fixture(&[("app1", &["PSIS"])]);
        let agent = fx.agent("app1");
        agent.host().await.unwrap();
        agent.host().await.unwrap();
        assert_eq!(agent.calls(Call::Host), 2);
        assert_eq!(agent.calls(Call::Services), 0);
    }
}
