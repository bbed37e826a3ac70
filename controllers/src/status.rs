//! The status document the daemon serves (`/api/v1/status`, `/api/v1/resources/...`) and
//! the System Health dashboard renders. Everything is camelCase and secret-free: it is
//! built from the snapshot's names and what agents and probes report, never from resolved
//! secrets or key material.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use steward_agent::api::{HostInfo, ServiceStatus as AgentServiceStatus};
use steward_model::resource::Mode;
use steward_model::ServiceKind;
use time::OffsetDateTime;

/// The fleet as the controllers see it. The daemon adds `generation`, `valid` and
/// `errors` (the loader's view) around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// The generation the controllers work towards (the last one they accepted).
    pub observed_generation: Option<u64>,
    pub installation: Option<InstallationStatus>,
    pub database: Option<DatabaseStatus>,
    /// Servers shown on the dashboard: those with `monitor: false` (standby) are left
    /// out here but still reconciled, and still under `/api/v1/resources/server/NAME`.
    pub servers: Vec<ServerStatus>,
    /// Each kind the desired state places, judged as a whole against its `minimumHealthy`.
    pub service_kinds: Vec<ServiceKindStatus>,
    /// Every declared ActiveDirectory, by name.
    pub active_directory: Vec<DirectoryStatus>,
    pub hl7: Hl7Status,
    /// The load balancer's farms; `null` without a `loadBalancer.vendor`.
    pub load_balancer: Option<LoadBalancerStatus>,
    /// Mail notifications: one per Notifications object.
    #[serde(default)]
    pub notifications: Vec<NotificationsStatus>,
    /// The rolling upgrade; `null` without an UpgradePolicy.
    #[serde(default)]
    pub upgrade: Option<UpgradeStatus>,
    /// Newest first.
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstallationStatus {
    pub name: String,
    pub release: String,
    pub mode: Mode,
    pub prune: bool,
    pub observed_generation: Option<u64>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// As declared (`host` or `host\\INSTANCE`).
    pub server: String,
    pub port: u16,
    pub name: String,
    /// The installer login steward connects with.
    pub user: String,
    /// True while steward logs in with the installer login and the database exists (what
    /// installs wait for); false when either fails; `null` until the first check.
    pub up: Option<bool>,
    /// The first line of the server's `@@VERSION`, once it answered.
    pub version: Option<String>,
    /// The service login checked (and created with `create: true`).
    pub service_login: String,
    /// Every piece of the vendor's setup the last check found missing (labels such as
    /// `database`, `service_login`, `role_db_owner`); empty when complete.
    pub missing: Vec<String>,
    pub observed_generation: Option<u64>,
    pub conditions: Vec<Condition>,
    /// What `steward run --lab` could not do for the database (say, its TDS server is
    /// not installed); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    pub name: String,
    pub hostname: String,
    /// `null` until the agent was first asked.
    pub agent_up: Option<bool>,
    /// False: a standby server the dashboard leaves out.
    pub monitor: bool,
    /// False once the server left the desired state (its services are orphans or being
    /// pruned).
    pub desired: bool,
    pub observed_generation: Option<u64>,
    pub host: Option<HostInfo>,
    pub certificate: CertificateSummary,
    pub conditions: Vec<Condition>,
    /// In install order.
    pub services: Vec<ServiceHealth>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSummary {
    /// `generated`, `pem` or `pfx`.
    pub source: String,
    /// Uppercase hex SHA-1 of the certificate the server has, as Windows shows it.
    pub thumbprint: Option<String>,
    #[serde(with = "crate::rfc3339::option")]
    #[schemars(schema_with = "crate::schema::optional_date_time")]
    pub not_after: Option<OffsetDateTime>,
    pub subject: Option<String>,
    pub observed_generation: Option<u64>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealth {
    pub kind: ServiceKind,
    /// The health-tested port (desired, or installed for an orphan).
    pub port: Option<u16>,
    pub ports: Vec<u16>,
    /// Where it really listens (the lab maps ports below 1024).
    pub listen_ports: Vec<u16>,
    pub installed: bool,
    /// `null` while unknown: not installed, not running, not probed yet, or its agent
    /// does not answer (`healthUnknown` says which). `steward_service_healthy` agrees.
    pub healthy: Option<bool>,
    /// Why `healthy` is `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_unknown: Option<String>,
    pub status: Option<AgentServiceStatus>,
    /// The installed release.
    pub release: Option<String>,
    /// False for an orphan: installed but no longer declared.
    pub desired: bool,
    pub observed_generation: Option<u64>,
    pub conditions: Vec<Condition>,
    pub last_probe: Option<LastProbe>,
    /// Why the service last failed (exited with an error, port in use, could not start),
    /// as its agent reports it; kept after it runs again, until it is reinstalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Box<steward_agent::api::LastFailure>>,
    /// An HL7 standby as the failover holds it (installed, stopped, its agent answers):
    /// in place. Not a field of the document: the compact form leaves such a service out
    /// with the healthy ones (the dashboard counts a standby as in place).
    #[serde(skip)]
    #[schemars(skip)]
    pub standby: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastProbe {
    pub success: bool,
    pub duration_seconds: f64,
    /// The response's status, also when it failed the check.
    pub http_status: Option<u16>,
    /// Why it failed: `timed out after 5s during the TLS handshake`, `status 503
    /// (expected 200-399)`, `body did not contain "Success"` ...
    pub error: Option<String>,
    /// The same as a fixed word: `timeout`, `connection_refused`, `tls_expired`, `status`,
    /// `body_mismatch` ...
    pub failure: Option<String>,
    /// notAfter of the leaf certificate the service served (HTTPS).
    #[serde(with = "crate::rfc3339::option")]
    #[schemars(schema_with = "crate::schema::optional_date_time")]
    pub certificate_not_after: Option<OffsetDateTime>,
    #[serde(with = "crate::rfc3339")]
    #[schemars(schema_with = "crate::schema::date_time")]
    pub time: OffsetDateTime,
}

/// Two probes with the same outcome are the same for change notification: a dashboard
/// need not redraw because a probe took 3 ms instead of 4.
impl PartialEq for LastProbe {
    fn eq(&self, other: &Self) -> bool {
        self.success == other.success
            && self.http_status == other.http_status
            && self.error == other.error
            && self.certificate_not_after == other.certificate_not_after
    }
}

/// One service kind across the fleet: healthy when at least `minimumHealthy` of the
/// servers it is placed on pass its test (standby servers included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceKindStatus {
    pub kind: ServiceKind,
    /// Servers the desired state places it on.
    pub servers: u32,
    /// Of those, the ones where it is running and passing its test.
    pub healthy_servers: u32,
    pub minimum_healthy: u32,
    pub healthy: bool,
}

/// An ActiveDirectory as the directory controller last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryStatus {
    pub name: String,
    pub display_name: String,
    pub domain: String,
    /// `ldaps://host:port` or `ldap://host:port` (StartTLS).
    pub server: String,
    /// Whether steward could bind; `null` before the first attempt.
    pub up: Option<bool>,
    /// Every group of `roles`, in role order.
    pub groups: Vec<GroupStatus>,
    pub observed_generation: Option<u64>,
    pub conditions: Vec<Condition>,
}

/// One role group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// `owners`, `administrators` or `users`.
    pub role: String,
    pub group: String,
    /// `null` until the directory answered.
    pub present: Option<bool>,
    /// How many members the group has, when steward manages its membership (`members`
    /// lists it); `null` otherwise.
    pub members: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hl7Status {
    /// The server whose HL7 listener is active and answering (its MLLP test passes);
    /// `null` while none is.
    pub active_listener: Option<String>,
    /// The other servers with HL7 installed and stopped, ready to take over.
    #[serde(default)]
    pub standby: Vec<String>,
    /// The last time the listener was moved (kept across daemon restarts).
    #[serde(default)]
    pub last_failover: Option<LastFailover>,
    /// The HL7 failover's verdict: `FailoverNeeded` (`failover: manual` and the active
    /// listener fails), `NoStandby`, `CannotFence` ...; empty before its first run.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One move of the active HL7 listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastFailover {
    #[serde(with = "crate::rfc3339")]
    #[schemars(schema_with = "crate::schema::date_time")]
    pub at: OffsetDateTime,
    pub from: String,
    pub to: String,
    /// Why: `ListenerFailing`, `AgentUnreachable`, `ListenerStopped`, `Failback`.
    pub reason: String,
    /// From the first failed test of the old listener (or the failback's start) to the
    /// new one answering with the HL7 backend pointed at it.
    pub seconds: f64,
}

/// The load balancer steward configures (`loadBalancer.vendor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    /// `haproxy`, `arr`, `citrix-adc` or `f5`.
    pub vendor: String,
    pub farms: Vec<FarmStatus>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FarmStatus {
    pub kind: ServiceKind,
    /// The port the farm listens on at the load balancer.
    pub port: u16,
    /// Each member's state in the farm: its worst over the farm's listeners (down, then
    /// maintenance, then drain, then up).
    pub members: Vec<FarmMemberStatus>,
    /// Every port the farm listens on, the farm port first (ADMIN also 80, EMERGENCY
    /// also 7006), with each member's state behind it.
    #[serde(default)]
    pub listeners: Vec<FarmListenerStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FarmListenerStatus {
    /// The port as declared (the catalog's or the farm's).
    pub port: u16,
    /// Where HAProxy really listens: `port`, or 10000 + a port below 1024 when low ports
    /// are mapped (the lab); `null` for rendered vendors.
    pub listen_port: Option<u16>,
    pub members: Vec<FarmMemberStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FarmMemberStatus {
    pub server: String,
    /// As the load balancer sees it; `null` for rendered vendors (steward does not reach
    /// them) and before HAProxy answered.
    pub state: Option<LbMemberState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LbMemberState {
    Up,
    Down,
    Drain,
    Maint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EventType {
    Normal,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(with = "crate::rfc3339")]
    #[schemars(schema_with = "crate::schema::date_time")]
    pub time: OffsetDateTime,
    /// `server/app1`, `certificate/app1`, `service/app1/PSIS`, `installation/NAME`.
    pub object: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub reason: String,
    pub message: String,
}

/// One object's status, for `/api/v1/resources/{kind}/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// `Installation`, `Server`, `Certificate`, `Service`, `ActiveDirectory`,
    /// `Notifications` or `UpgradePolicy`.
    pub kind: String,
    pub name: String,
    pub observed_generation: Option<u64>,
    pub conditions: Vec<Condition>,
    /// This object's recent events, newest first.
    pub events: Vec<Event>,
    pub detail: ResourceDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ResourceDetail {
    Installation(InstallationStatus),
    Server(Box<ServerStatus>),
    Certificate(CertificateSummary),
    Service(ServiceHealth),
    ActiveDirectory(DirectoryStatus),
    Notifications(NotificationsStatus),
    UpgradePolicy(UpgradePolicyStatus),
}

/// The UpgradePolicy (`/api/v1/resources/upgradepolicy/NAME`): its settings and the
/// upgrade it drives (the same as `upgrade` in the status).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePolicyStatus {
    pub name: String,
    /// Servers upgraded at once, and the cap on servers out of service.
    pub max_unavailable: u32,
    pub health_gate_seconds: f64,
    /// Servers are drained from the load balancer before their upgrade.
    pub drain: bool,
    pub drain_timeout_seconds: f64,
    /// The releases an upgrade may start from, as written; empty: any.
    pub from: Vec<String>,
    pub upgrade: Option<UpgradeStatus>,
}

/// One Notifications object: where it mails, what, and how delivery goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsStatus {
    pub name: String,
    /// The SMTP server, `host:port`.
    pub server: String,
    /// `starttls`, `implicit` or `none`.
    pub tls: String,
    pub to: Vec<String>,
    /// The events it mails.
    pub events: Vec<String>,
    pub observed_generation: Option<u64>,
    pub conditions: Vec<Condition>,
    pub delivery: DeliveryStatus,
}

/// How mail delivery goes for one Notifications object since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatus {
    /// When the SMTP server last accepted a mail.
    #[serde(with = "crate::rfc3339::option")]
    #[schemars(schema_with = "crate::schema::optional_date_time")]
    pub last_sent: Option<OffsetDateTime>,
    /// The last delivery error (a retry that later succeeded included); never a secret.
    pub last_error: Option<String>,
    /// Its bounded label: `dns`, `tcp`, `timeout`, `tls_version`, `certificate`, `tls`,
    /// `starttls_unavailable`, `auth`, `sender_refused`, `recipient_refused`,
    /// `message_refused`, `server_busy`, `closed`, `protocol`, `config`, `template`.
    pub last_error_reason: Option<String>,
    #[serde(with = "crate::rfc3339::option")]
    #[schemars(schema_with = "crate::schema::optional_date_time")]
    pub last_error_time: Option<OffsetDateTime>,
    /// Mails waiting or being delivered.
    pub queued: u64,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionType {
    Ready,
    Progressing,
    Degraded,
    Stalled,
}

impl ConditionType {
    const ALL: [ConditionType; 4] = [
        ConditionType::Ready,
        ConditionType::Progressing,
        ConditionType::Degraded,
        ConditionType::Stalled,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A kstatus-style condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub condition_type: ConditionType,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    /// When `status` last changed (not the reason or message).
    #[serde(with = "crate::rfc3339")]
    #[schemars(schema_with = "crate::schema::date_time")]
    pub last_transition_time: OffsetDateTime,
}

/// Which one condition describes an object: `Ready` means Ready=True, the others mean
/// that condition is True and Ready is False for the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Ready,
    Progressing,
    Degraded,
    Stalled,
}

impl Phase {
    fn condition(self) -> ConditionType {
        match self {
            Self::Ready => ConditionType::Ready,
            Self::Progressing => ConditionType::Progressing,
            Self::Degraded => ConditionType::Degraded,
            Self::Stalled => ConditionType::Stalled,
        }
    }
}

/// The four conditions of one object, always all present so that clients need no
/// "missing means false" rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conditions(Vec<Condition>);

/// Reason of the conditions that do not apply.
const AS_EXPECTED: &str = "AsExpected";

impl Default for Conditions {
    fn default() -> Self {
        let now = OffsetDateTime::now_utc();
        Self(
            ConditionType::ALL
                .into_iter()
                .map(|t| Condition {
                    condition_type: t,
                    status: ConditionStatus::Unknown,
                    reason: "Pending".to_owned(),
                    message: "not reconciled yet".to_owned(),
                    last_transition_time: now,
                })
                .collect(),
        )
    }
}

impl Conditions {
    pub(crate) fn list(&self) -> Vec<Condition> {
        self.0.clone()
    }

    pub(crate) fn get(&self, t: ConditionType) -> &Condition {
        // Built with all four and never shrunk.
        self.0
            .iter()
            .find(|c| c.condition_type == t)
            .unwrap_or(&self.0[0])
    }

    /// The condition that describes the object now, and its reason.
    pub(crate) fn headline(&self) -> (ConditionType, &str, &str) {
        let active = self
            .0
            .iter()
            .find(|c| c.condition_type != ConditionType::Ready && c.status == ConditionStatus::True)
            .unwrap_or_else(|| self.get(ConditionType::Ready));
        (active.condition_type, &active.reason, &active.message)
    }

    /// Describe the object by `phase`; whether its headline (condition and reason)
    /// changed, which is what the store records as an event.
    pub(crate) fn set(&mut self, phase: Phase, reason: &str, message: impl Into<String>) -> bool {
        let message = message.into();
        let before = {
            let (t, r, _) = self.headline();
            (t, r.to_owned())
        };
        let now = OffsetDateTime::now_utc();
        let active = phase.condition();
        for c in &mut self.0 {
            let (status, reason, message) = if c.condition_type == ConditionType::Ready {
                let status = if phase == Phase::Ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                };
                (status, reason, message.as_str())
            } else if c.condition_type == active {
                (ConditionStatus::True, reason, message.as_str())
            } else {
                (ConditionStatus::False, AS_EXPECTED, "")
            };
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            reason.clone_into(&mut c.reason);
            message.clone_into(&mut c.message);
        }
        let (t, r, _) = self.headline();
        (t, r) != (before.0, before.1.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_set_all_four_conditions() {
        let mut c = Conditions::default();
        assert_eq!(c.get(ConditionType::Ready).status, ConditionStatus::Unknown);
        c.set(Phase::Progressing, "Installing", "installing PSIS");
        assert_eq!(c.get(ConditionType::Ready).status, ConditionStatus::False);
        assert_eq!(
            c.get(ConditionType::Progressing).status,
            ConditionStatus::True
        );
        assert_eq!(c.get(ConditionType::Degraded).reason, "AsExpected");
        assert_eq!(
            c.headline(),
            (ConditionType::Progressing, "Installing", "installing PSIS")
        );
        let ready_since = c.get(ConditionType::Ready).last_transition_time;
        c.set(Phase::Degraded, "HealthCheckFailing", "503");
        assert_eq!(
            c.get(ConditionType::Ready).last_transition_time,
            ready_since,
            "Ready stayed False: no transition"
        );
        c.set(Phase::Ready, "Healthy", "ok");
        assert_eq!(c.get(ConditionType::Ready).status, ConditionStatus::True);
        assert_eq!(c.headline().1, "Healthy");
    }

    #[test]
    fn condition_serializes_like_kubernetes() {
        let mut c = Conditions::default();
        c.set(Phase::Stalled, "Orphaned", "not declared");
        let json = serde_json::to_value(c.list()).unwrap();
        let stalled = &json[3];
        assert_eq!(stalled["type"], "Stalled");
        assert_eq!(stalled["status"], "True");
        assert_eq!(stalled["reason"], "Orphaned");
        assert!(stalled["lastTransitionTime"]
            .as_str()
            .unwrap()
            .contains('T'));
    }
}

/// A rolling upgrade (`upgrade` in the status): where the fleet is between two releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    pub phase: UpgradePhase,
    /// The release(s) the fleet runs before the upgrade, comma-separated when mixed.
    pub from: Option<String>,
    /// The release the desired state asks for.
    pub to: Option<String>,
    /// Every server, in upgrade order.
    pub servers: Vec<UpgradeServerStatus>,
    /// Why it waits or halted (`UpgradePathRefused: ...`, `inside the deny window ...`).
    pub reason: Option<String>,
    /// While `Waiting` for a window: when it opens (RFC 3339, UTC).
    pub next_window: Option<String>,
    /// Install logs of the failed server, kept under the state directory (relative paths).
    pub logs: Vec<String>,
    /// Releases installed now when more than one and no upgrade is running
    /// (condition `MixedReleases`: the vendor supports one build everywhere).
    pub mixed_releases: Vec<String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum UpgradePhase {
    Idle,
    Waiting,
    Progressing,
    Halted,
    Complete,
}

impl UpgradePhase {
    pub const ALL: [UpgradePhase; 5] = [
        Self::Idle,
        Self::Waiting,
        Self::Progressing,
        Self::Halted,
        Self::Complete,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Waiting => "Waiting",
            Self::Progressing => "Progressing",
            Self::Halted => "Halted",
            Self::Complete => "Complete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeServerStatus {
    pub name: String,
    pub phase: ServerUpgradePhase,
}

/// One server's step: `Pending` -> `Draining` -> `Upgrading` -> `Gating` -> `Done`, or
/// `Failed` (out of the load balancer, left as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ServerUpgradePhase {
    Pending,
    Draining,
    Upgrading,
    Gating,
    Done,
    Failed,
}

impl ServerUpgradePhase {
    /// Out of service: drained, being upgraded, or failed (the cap counts these).
    pub fn out_of_service(self) -> bool {
        matches!(
            self,
            Self::Draining | Self::Upgrading | Self::Gating | Self::Failed
        )
    }

    pub fn in_flight(self) -> bool {
        matches!(self, Self::Draining | Self::Upgrading | Self::Gating)
    }
}
