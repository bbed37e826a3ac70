//! The agent's bookkeeping: which services are installed with what spec, driving the
//! [`Driver`] for each API operation and persisting the result.
//!
//! Mutating operations are serialised by one async lock (they are short and rare, and one
//! at a time keeps install/uninstall/restart/cert pushes from interleaving). Reads take
//! only the snapshot lock, so `GET /v1/services` answers while an install is under way
//! and shows it as `installing`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use steward_model::{HealthTest, PortRule, ServiceKind};
use steward_pki::{inspect_pem, verify_key_pair};
use time::OffsetDateTime;

use crate::api::{
    CertificateRequest, CertificateStatus, ConnectionStrings, ConnectionStringsUpdate,
    InstallOutcome, InstallRequest, InstallResponse, RemnantCleanup, ServiceInfo, ServiceLogs,
    ServiceStatus, UninstallOutcome, UninstallResponse,
};
use crate::driver::{Driver, RunStatus, ServiceDefinition};
use crate::error::{AgentError, DriverError};
use crate::layout::Layout;
use crate::state::{PersistedState, ServiceRecord};

pub struct ServiceManager {
    layout: Layout,
    driver: Arc<dyn Driver>,
    link_host: String,
    ops: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
}

struct Inner {
    services: BTreeMap<ServiceKind, ServiceRecord>,
    connection_strings: Option<ConnectionStrings>,
    installing: BTreeSet<ServiceKind>,
    certificate: Option<CertificateStatus>,
}

/// Clears the `installing` mark however the install ends.
struct Installing<'a> {
    manager: &'a ServiceManager,
    kind: ServiceKind,
}

impl Drop for Installing<'_> {
    fn drop(&mut self) {
        self.manager.inner().installing.remove(&self.kind);
    }
}

impl ServiceManager {
    /// Load the persisted state and bring every installed service back: re-adopt the
    /// instances still running from before the agent restarted, start the others.
    ///
    /// `seed_cert` (the agent's own certificate and key) becomes the server certificate
    /// until the daemon installs one, so services can serve TLS from the start.
    pub async fn open(
        layout: Layout,
        driver: Arc<dyn Driver>,
        link_host: String,
        seed_cert: (&Path, &Path),
    ) -> Result<Self, AgentError> {
        for dir in [
            layout.root().to_path_buf(),
            layout.services_dir(),
            layout.tls_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
        }
        seed_certificate(&layout, seed_cert)?;
        let certificate = read_certificate(&layout);
        let state = PersistedState::load(&layout.state_file())?;
        let manager = Self {
            layout,
            driver,
            link_host,
            ops: tokio::sync::Mutex::new(()),
            inner: Mutex::new(Inner {
                services: state.services,
                connection_strings: state.connection_strings,
                installing: BTreeSet::new(),
                certificate,
            }),
        };
        manager.recover().await?;
        Ok(manager)
    }

    async fn recover(&self) -> Result<(), AgentError> {
        let _op = self.ops.lock().await;
        let strings = self.connection_strings().unwrap_or_default();
        let records: Vec<(ServiceKind, ServiceRecord)> = self.snapshot();
        for (kind, record) in records {
            let def = record.definition(kind);
            if let Some(handle) = &record.handle {
                if self.driver.adopt(&def, handle).await {
                    continue;
                }
            }
            if record.held {
                // Stopped on request (an HL7 standby): it stays stopped.
                continue;
            }
            tracing::info!(service = %kind, "service not running after agent restart; starting it");
            if let Err(e) = self.driver.configure(kind, &strings).await {
                tracing::warn!(service = %kind, error = %e, "cannot write connection strings");
            }
            if let Err(e) = self.start(&def).await {
                tracing::warn!(service = %kind, error = %e, "cannot start service");
            }
        }
        self.persist()
    }

    pub async fn shutdown(&self, stop_services: bool) {
        let _op = self.ops.lock().await;
        self.driver.detach(stop_services).await;
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent, so poisoning is harmless.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> Vec<(ServiceKind, ServiceRecord)> {
        self.inner()
            .services
            .iter()
            .map(|(k, r)| (*k, r.clone()))
            .collect()
    }

    fn record(&self, kind: ServiceKind) -> Option<ServiceRecord> {
        self.inner().services.get(&kind).cloned()
    }

    fn update(&self, kind: ServiceKind, change: impl FnOnce(&mut ServiceRecord)) {
        if let Some(record) = self.inner().services.get_mut(&kind) {
            change(record);
        }
    }

    fn persist(&self) -> Result<(), AgentError> {
        let state = {
            let inner = self.inner();
            PersistedState {
                version: 1,
                services: inner.services.clone(),
                connection_strings: inner.connection_strings.clone(),
            }
        };
        state.save(&self.layout.state_file())
    }

    fn connection_strings(&self) -> Option<ConnectionStrings> {
        self.inner().connection_strings.clone()
    }

    /// Start and record the outcome (the pid to re-adopt, or why it failed).
    async fn start(&self, def: &ServiceDefinition) -> Result<(), AgentError> {
        match self.driver.start(def).await {
            Ok(handle) => {
                self.update(def.kind, |r| {
                    r.handle = Some(handle);
                    r.last_error = None;
                });
                Ok(())
            }
            Err(e) => {
                self.fail(def.kind, &e);
                Err(e.into())
            }
        }
    }

    fn fail(&self, kind: ServiceKind, error: &DriverError) {
        let message = error.to_string();
        self.update(kind, |r| r.last_error = Some(message));
    }

    async fn describe(&self, kind: ServiceKind, record: &ServiceRecord) -> ServiceInfo {
        let run = self.driver.status(kind).await;
        let (installing, certificate) = {
            let inner = self.inner();
            (
                inner.installing.contains(&kind),
                inner.certificate.as_ref().map(|c| c.thumbprint.clone()),
            )
        };
        let (status, pid, exit_code) = match run {
            _ if installing => (ServiceStatus::Installing, None, None),
            RunStatus::Running { pid } => (ServiceStatus::Running, Some(pid), None),
            RunStatus::Exited {
                code: Some(code), ..
            } if code != 0 => (ServiceStatus::Failed, None, Some(code)),
            RunStatus::Exited { code, .. } => (ServiceStatus::Stopped, None, code),
            RunStatus::NotStarted if record.last_error.is_some() => {
                (ServiceStatus::Failed, None, None)
            }
            RunStatus::NotStarted => (ServiceStatus::Stopped, None, None),
        };
        let last_failure = self.driver.last_failure(kind);
        let listen_ports = self.driver.listen_ports(&record.ports);
        let is_https = matches!(kind.spec().health, HealthTest::Https { .. });
        ServiceInfo {
            kind,
            ports: record.ports.clone(),
            link: self.link(kind, &listen_ports),
            listen_ports,
            drive: record.drive.clone(),
            release: record.release.clone(),
            installed_by: record.installed_by.clone(),
            installed_at: record.installed_at,
            status,
            tls_thumbprint: certificate.filter(|_| is_https),
            held: record.held,
            pid,
            exit_code,
            message: match status {
                ServiceStatus::Failed => record
                    .last_error
                    .clone()
                    .or_else(|| last_failure.as_ref().map(|f| f.message.clone())),
                _ => None,
            },
            last_failure,
        }
    }

    fn link(&self, kind: ServiceKind, listen_ports: &[u16]) -> String {
        let port = listen_ports.first().copied().unwrap_or_default();
        match kind.spec().health {
            HealthTest::Https { path, .. } => format!("https://{}:{port}{path}", self.link_host),
            HealthTest::Mllp => format!("mllp://{}:{port}", self.link_host),
        }
    }

    pub async fn list(&self) -> Vec<ServiceInfo> {
        let mut out = Vec::new();
        for (kind, record) in self.snapshot() {
            out.push(self.describe(kind, &record).await);
        }
        out
    }

    pub async fn get(&self, kind: ServiceKind) -> Result<ServiceInfo, AgentError> {
        let record = self.record(kind).ok_or(AgentError::NotInstalled(kind))?;
        Ok(self.describe(kind, &record).await)
    }

    /// Install, reinstall, (re)start or leave alone, whichever makes the service match
    /// `request` and run.
    ///
    /// `held`: a new installation is laid down and not started, as if stopped through
    /// [`Self::stop`] (an HL7 standby). An installation already held stays held.
    pub async fn install(
        &self,
        kind: ServiceKind,
        request: InstallRequest,
        held: bool,
    ) -> Result<InstallResponse, AgentError> {
        let request = validate_install(kind, request)?;
        let _op = self.ops.lock().await;
        self.check_port_conflicts(kind, &request.ports)?;
        let existing = self.record(kind);
        let outcome = match &existing {
            // A record whose last install failed gets the full install again.
            Some(record) if record.same_spec(&request) && record.last_error.is_none() => {
                if record.held
                    || matches!(self.driver.status(kind).await, RunStatus::Running { .. })
                {
                    InstallOutcome::Unchanged
                } else {
                    let result = self.start(&record.definition(kind)).await;
                    self.persist()?;
                    result?;
                    InstallOutcome::Started
                }
            }
            _ => {
                let outcome = if existing.is_some() {
                    InstallOutcome::Reinstalled
                } else {
                    InstallOutcome::Created
                };
                let mut record = ServiceRecord::new(&request);
                record.held = held || existing.as_ref().is_some_and(|r| r.held);
                let start = !record.held;
                let def = record.definition(kind);
                let _installing = self.mark_installing(kind, record);
                let result = self
                    .lay_down_and_start(&def, existing.is_some(), start)
                    .await;
                self.persist()?;
                result?;
                tracing::info!(service = %kind, release = %def.release, ?outcome, "service installed");
                outcome
            }
        };
        let service = self.get(kind).await?;
        Ok(InstallResponse { outcome, service })
    }

    fn mark_installing(&self, kind: ServiceKind, record: ServiceRecord) -> Installing<'_> {
        let mut inner = self.inner();
        inner.services.insert(kind, record);
        inner.installing.insert(kind);
        Installing {
            manager: self,
            kind,
        }
    }

    async fn lay_down_and_start(
        &self,
        def: &ServiceDefinition,
        replacing: bool,
        start: bool,
    ) -> Result<(), AgentError> {
        let strings = self.connection_strings().unwrap_or_default();
        let prepared = async {
            if replacing {
                self.driver.stop(def.kind).await?;
            }
            self.driver.install(def).await?;
            self.driver.configure(def.kind, &strings).await
        }
        .await;
        if let Err(e) = prepared {
            self.fail(def.kind, &e);
            return Err(e.into());
        }
        if !start {
            return Ok(());
        }
        self.start(def).await
    }

    fn check_port_conflicts(&self, kind: ServiceKind, ports: &[u16]) -> Result<(), AgentError> {
        let wanted = self.driver.listen_ports(ports);
        for (other, record) in &self.inner().services {
            if *other == kind {
                continue;
            }
            let taken = self.driver.listen_ports(&record.ports);
            if let Some(port) = wanted.iter().find(|p| taken.contains(p)) {
                return Err(AgentError::Conflict(format!(
                    "port {port} is already used by {other} on this server"
                )));
            }
        }
        Ok(())
    }

    pub async fn uninstall(
        &self,
        kind: ServiceKind,
        force: bool,
    ) -> Result<UninstallResponse, AgentError> {
        let _op = self.ops.lock().await;
        if self.record(kind).is_none() {
            return Err(AgentError::NotInstalled(kind));
        }
        let outcome = match self.driver.uninstall(kind).await {
            Ok(()) => UninstallResponse {
                kind,
                outcome: UninstallOutcome::Removed,
                remnants: Vec::new(),
            },
            Err(e) if force => {
                tracing::warn!(service = %kind, error = %e, "forgetting service whose files remain");
                UninstallResponse {
                    kind,
                    outcome: UninstallOutcome::Forgotten,
                    remnants: vec![self
                        .driver
                        .install_path(kind)
                        .to_string_lossy()
                        .into_owned()],
                }
            }
            Err(e @ DriverError::Remove { .. }) => {
                self.fail(kind, &e);
                self.persist()?;
                return Err(AgentError::FilesRemain {
                    kind,
                    detail: e.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        self.inner().services.remove(&kind);
        self.persist()?;
        tracing::info!(service = %kind, outcome = ?outcome.outcome, "service uninstalled");
        Ok(outcome)
    }

    pub async fn restart(&self, kind: ServiceKind) -> Result<ServiceInfo, AgentError> {
        let _op = self.ops.lock().await;
        let record = self.record(kind).ok_or(AgentError::NotInstalled(kind))?;
        if record.held {
            return Err(AgentError::Held(kind));
        }
        self.driver.stop(kind).await?;
        let result = self.start(&record.definition(kind)).await;
        self.persist()?;
        result?;
        tracing::info!(service = %kind, "service restarted");
        self.get(kind).await
    }

    /// Stop the service and keep it stopped (held, persisted) until [`Self::start`]: an
    /// agent restart, a reinstall or `restart` does not run it again. Idempotent.
    pub async fn stop(&self, kind: ServiceKind) -> Result<ServiceInfo, AgentError> {
        let _op = self.ops.lock().await;
        if self.record(kind).is_none() {
            return Err(AgentError::NotInstalled(kind));
        }
        // Held first (and persisted): an agent that dies during the stop must not start
        // the service again when it comes back.
        self.update(kind, |r| r.held = true);
        self.persist()?;
        self.driver.stop(kind).await?;
        tracing::info!(service = %kind, "service stopped on request (held)");
        self.get(kind).await
    }

    /// Run a service stopped through [`Self::stop`] (or any stopped one) again, and clear
    /// its hold. Idempotent: a running service is left as it is.
    pub async fn start_held(&self, kind: ServiceKind) -> Result<ServiceInfo, AgentError> {
        let _op = self.ops.lock().await;
        let record = self.record(kind).ok_or(AgentError::NotInstalled(kind))?;
        self.update(kind, |r| r.held = false);
        let result = if matches!(self.driver.status(kind).await, RunStatus::Running { .. }) {
            Ok(())
        } else {
            let strings = self.connection_strings().unwrap_or_default();
            if let Err(e) = self.driver.configure(kind, &strings).await {
                tracing::warn!(service = %kind, error = %e, "cannot write connection strings");
            }
            self.start(&record.definition(kind)).await
        };
        self.persist()?;
        result?;
        tracing::info!(service = %kind, "service started on request");
        self.get(kind).await
    }

    pub async fn logs(
        &self,
        kind: ServiceKind,
        tail_bytes: u64,
    ) -> Result<ServiceLogs, AgentError> {
        if self.record(kind).is_none() {
            return Err(AgentError::NotInstalled(kind));
        }
        let (log, truncated) = self.driver.logs(kind, tail_bytes).await?;
        Ok(ServiceLogs {
            kind,
            log,
            truncated,
        })
    }

    /// The installed certificate, as long as its files are still there: services read the
    /// pair at every start, so a pair deleted from disk (a wiped state directory) is not
    /// installed, whatever was installed before. Reported missing, the daemon installs
    /// it again.
    pub fn certificate(&self) -> Result<CertificateStatus, AgentError> {
        let mut inner = self.inner();
        let status = inner
            .certificate
            .clone()
            .ok_or(AgentError::NotSet("server certificate"))?;
        let (cert, key) = (self.layout.server_cert(), self.layout.server_key());
        if !cert.is_file() || !key.is_file() {
            // Forgotten, so this is said once, not at every poll.
            inner.certificate = None;
            tracing::warn!(
                cert = %cert.display(),
                key = %key.display(),
                "the server certificate's files are gone; reported as not installed"
            );
            return Err(AgentError::NotSet("server certificate"));
        }
        Ok(status)
    }

    /// Install the server's TLS certificate and tell running services to reload it.
    pub async fn install_certificate(
        &self,
        request: CertificateRequest,
    ) -> Result<CertificateStatus, AgentError> {
        let info = verify_key_pair(&request.cert_pem, request.key_pem.expose())
            .map_err(AgentError::InvalidCertificate)?;
        if info.not_after <= OffsetDateTime::now_utc() {
            return Err(AgentError::InvalidRequest(format!(
                "the certificate expired at {}",
                info.not_after
            )));
        }
        let _op = self.ops.lock().await;
        // Made at startup, but a wiped state directory takes it along: recreated, so
        // the daemon can put the pair back.
        let dir = self.layout.tls_dir();
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
        // Key first: a reader that sees the new certificate must find its key.
        steward_pki::replace_private_file(
            &self.layout.server_key(),
            request.key_pem.expose().as_bytes(),
        )?;
        steward_pki::replace_private_file(&self.layout.server_cert(), request.cert_pem.as_bytes())?;
        let mut status = CertificateStatus {
            thumbprint: info.sha1_thumbprint,
            not_after: info.not_after,
            subject: info.subject,
            cert_pem: Some(request.cert_pem),
            reloaded: Vec::new(),
        };
        self.inner().certificate = Some(status.clone());
        tracing::info!(thumbprint = %status.thumbprint, "server certificate installed");
        for (kind, _) in self.snapshot() {
            match self.driver.reload(kind).await {
                Ok(true) => status.reloaded.push(kind),
                Ok(false) => {}
                Err(e) => tracing::warn!(service = %kind, error = %e, "cannot signal reload"),
            }
        }
        Ok(status)
    }

    pub fn get_connection_strings(&self) -> Result<ConnectionStrings, AgentError> {
        self.connection_strings()
            .ok_or(AgentError::NotSet("connection strings"))
    }

    /// Store the connection strings and push them to every installed service.
    pub async fn set_connection_strings(
        &self,
        strings: ConnectionStrings,
    ) -> Result<ConnectionStringsUpdate, AgentError> {
        validate_connection_strings(&strings)?;
        let _op = self.ops.lock().await;
        self.inner().connection_strings = Some(strings.clone());
        self.persist()?;
        let mut pushed = Vec::new();
        for (kind, _) in self.snapshot() {
            self.driver.configure(kind, &strings).await?;
            match self.driver.reload(kind).await {
                Ok(true) => pushed.push(kind),
                Ok(false) => {}
                Err(e) => tracing::warn!(service = %kind, error = %e, "cannot signal reload"),
            }
        }
        Ok(ConnectionStringsUpdate {
            connection_strings: strings,
            pushed,
        })
    }

    pub async fn cleanup_remnants(&self) -> RemnantCleanup {
        let _op = self.ops.lock().await;
        let installed: Vec<ServiceKind> = self.inner().services.keys().copied().collect();
        let report = self.driver.cleanup_remnants(&installed).await;
        if !report.removed.is_empty() {
            tracing::info!(removed = report.removed.len(), "remnants removed");
        }
        report
    }
}

fn seed_certificate(layout: &Layout, (cert, key): (&Path, &Path)) -> Result<(), AgentError> {
    if layout.server_cert().exists() && layout.server_key().exists() {
        return Ok(());
    }
    let read = |p: &Path| std::fs::read(p).map_err(|e| AgentError::io(p, e));
    steward_pki::replace_private_file(&layout.server_key(), &read(key)?)?;
    steward_pki::replace_private_file(&layout.server_cert(), &read(cert)?)?;
    Ok(())
}

fn read_certificate(layout: &Layout) -> Option<CertificateStatus> {
    let pem = std::fs::read_to_string(layout.server_cert()).ok()?;
    match inspect_pem(&pem) {
        Ok(info) => Some(CertificateStatus {
            thumbprint: info.sha1_thumbprint,
            not_after: info.not_after,
            subject: info.subject,
            cert_pem: Some(pem),
            reloaded: Vec::new(),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "installed server certificate is unreadable");
            None
        }
    }
}

/// The checks `PUT /v1/services/{KIND}` applies to a request body before anything is done
/// (public for the fuzz target, which runs them on arbitrary bodies).
pub fn validate_install(
    kind: ServiceKind,
    mut request: InstallRequest,
) -> Result<InstallRequest, AgentError> {
    let invalid = |m: String| Err(AgentError::InvalidRequest(m));
    let expected = kind.port_count();
    if request.ports.len() != expected {
        return invalid(format!(
            "{kind} listens on {expected} port(s), got {}",
            request.ports.len()
        ));
    }
    if let PortRule::Fixed(fixed) = kind.spec().ports {
        if request.ports != fixed {
            return invalid(format!("{kind}'s ports are fixed to {fixed:?}"));
        }
    }
    if request.ports.contains(&0) {
        return invalid("port 0 is not a port".into());
    }
    let unique: BTreeSet<u16> = request.ports.iter().copied().collect();
    if unique.len() != request.ports.len() {
        return invalid(format!("duplicate ports in {:?}", request.ports));
    }
    let drive = request.drive.to_ascii_uppercase();
    let bytes = drive.as_bytes();
    if !(bytes.len() == 2 && bytes[0].is_ascii_uppercase() && bytes[1] == b':') {
        return invalid(format!(
            "drive must look like \"C:\", got {:?}",
            request.drive
        ));
    }
    request.drive = drive;
    let release_ok = (1..=64).contains(&request.release.len())
        && request
            .release
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !release_ok {
        return invalid("release must be 1-64 characters of A-Z a-z 0-9 . _ + -".into());
    }
    // Control characters are looked for in the whole value, not the trimmed one: a
    // trailing line break would otherwise be kept and shown in the status and logs.
    let by = request.installed_by.trim();
    if by.is_empty()
        || by.chars().count() > 128
        || request.installed_by.chars().any(char::is_control)
    {
        return invalid("installedBy must be 1-128 printable characters".into());
    }
    Ok(request)
}

/// The checks `PUT /v1/connection-strings` applies to a request body (public, like
/// [`validate_install`]).
pub fn validate_connection_strings(strings: &ConnectionStrings) -> Result<(), AgentError> {
    for (name, value) in [
        ("identityServer", Some(&strings.identity_server)),
        ("psws", Some(&strings.psws)),
        ("client", strings.client.as_ref()),
        ("api", strings.api.as_ref()),
    ] {
        let Some(value) = value else { continue };
        let ok = (value.starts_with("https://") || value.starts_with("http://"))
            && value.len() <= 2048
            && !value.chars().any(|c| c.is_control() || c.is_whitespace());
        if !ok {
            return Err(AgentError::InvalidRequest(format!(
                "{name} must be an http(s) URL without spaces"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
