//! What changed between two snapshots, expressed in the keys controllers reconcile.
//!
//! The watcher computes a [`SnapshotDiff`] for every new generation so that the runtime
//! can enqueue exactly the affected objects ([`SnapshotDiff::affected`]) with reason
//! "desired changed" instead of resyncing the whole fleet, and so that logs and events can
//! say what a commit changed. A diff is advice, not the source of truth: controllers still
//! compare the full snapshot with what they observe, so a key the diff misses is repaired by
//! the next periodic resync rather than left wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Serialize, Serializer};

use crate::catalog::ServiceKind;
use crate::snapshot::{Installation, PlacedService, Server, Snapshot};

/// One reconciled object, keyed the way its controller is keyed.
///
/// Ordered by variant, then key, so [`SnapshotDiff::affected`] lists the installation
/// first, then servers, services, directories and health checks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectRef {
    /// The deployment-wide settings: release, mode, prune, load balancer, database, CA.
    Installation,
    /// A server by `metadata.name`: agent, hostname, certificate, dashboard visibility.
    Server(String),
    /// One service kind on one server.
    Service { server: String, kind: ServiceKind },
    /// An ActiveDirectory by `metadata.name`.
    Directory(String),
    /// The health test of a service kind.
    HealthCheck(ServiceKind),
    /// A Notifications object by `metadata.name`.
    Notifications(String),
}

impl fmt::Display for ObjectRef {
    /// `installation`, `server/app1`, `service/app1/PSWS`, `directory/corp`,
    /// `healthCheck/PSWS`: short, stable, and usable in logs and event messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Installation => f.write_str("installation"),
            Self::Server(name) => write!(f, "server/{name}"),
            Self::Service { server, kind } => write!(f, "service/{server}/{kind}"),
            Self::Directory(name) => write!(f, "directory/{name}"),
            Self::HealthCheck(kind) => write!(f, "healthCheck/{kind}"),
            Self::Notifications(name) => write!(f, "notifications/{name}"),
        }
    }
}

impl Serialize for ObjectRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A service placement: the key of the service controller.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    pub server: String,
    pub kind: ServiceKind,
}

impl From<ServiceRef> for ObjectRef {
    fn from(s: ServiceRef) -> Self {
        Self::Service {
            server: s.server,
            kind: s.kind,
        }
    }
}

/// Keys added, removed and changed within one kind of object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changes<K: Ord> {
    pub added: BTreeSet<K>,
    pub removed: BTreeSet<K>,
    pub changed: BTreeSet<K>,
}

// Not derived: the derive would require `K: Default`, which `ServiceKind` is not.
impl<K: Ord> Default for Changes<K> {
    fn default() -> Self {
        Self {
            added: BTreeSet::new(),
            removed: BTreeSet::new(),
            changed: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> Changes<K> {
    /// Compare two maps by key; `same` decides whether a value present in both changed.
    fn between<V>(
        old: &BTreeMap<K, V>,
        new: &BTreeMap<K, V>,
        same: impl Fn(&V, &V) -> bool,
    ) -> Self {
        let mut changes = Self::default();
        for (key, old_value) in old {
            match new.get(key) {
                None => {
                    changes.removed.insert(key.clone());
                }
                Some(new_value) if !same(old_value, new_value) => {
                    changes.changed.insert(key.clone());
                }
                Some(_) => {}
            }
        }
        changes.added = new
            .keys()
            .filter(|k| !old.contains_key(k))
            .cloned()
            .collect();
        changes
    }
}

impl<K: Ord> Changes<K> {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Whether `key` was added, removed or changed.
    pub fn contains(&self, key: &K) -> bool {
        self.added.contains(key) || self.removed.contains(key) || self.changed.contains(key)
    }

    /// Every touched key, added, then removed, then changed.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.added
            .iter()
            .chain(self.removed.iter())
            .chain(self.changed.iter())
    }
}

/// A field of the Installation whose desired value changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InstallationField {
    Name,
    Environment,
    InstallType,
    Release,
    Mode,
    Prune,
    LoadBalancer,
    Database,
    CertificateAuthority,
    Hl7,
}

impl InstallationField {
    pub const ALL: [InstallationField; 10] = [
        Self::Name,
        Self::Environment,
        Self::InstallType,
        Self::Release,
        Self::Mode,
        Self::Prune,
        Self::LoadBalancer,
        Self::Database,
        Self::CertificateAuthority,
        Self::Hl7,
    ];

    /// The field's name in the Installation's `spec`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Environment => "environment",
            Self::InstallType => "installType",
            Self::Release => "release",
            Self::Mode => "mode",
            Self::Prune => "prune",
            Self::LoadBalancer => "loadBalancer",
            Self::Database => "database",
            Self::CertificateAuthority => "certificateAuthority",
            Self::Hl7 => "hl7",
        }
    }
}

/// What changed from one snapshot to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotDiff {
    /// There was no previous snapshot: everything in the new one counts as added.
    pub initial: bool,
    /// Installation fields whose value changed (all of them for an initial diff).
    pub installation: BTreeSet<InstallationField>,
    /// Servers by name. "Changed" covers the server's own settings (hostname, agent,
    /// monitor, certificate); its services are reported under `services`.
    pub servers: Changes<String>,
    /// Services by (server, kind). "Changed" when the ports, the drive or the installation's
    /// release changed. A removed server's services count as removed.
    pub services: Changes<ServiceRef>,
    /// Whether the service URLs handed to every service changed.
    pub connection_strings_changed: bool,
    /// When they changed: every service of the new snapshot, since each must be handed the
    /// new URLs (the console's "Update Service Connection Strings"). Empty otherwise.
    pub connection_string_targets: BTreeSet<ServiceRef>,
    pub directories: Changes<String>,
    /// HealthCheck overrides by service kind. Removing one reverts the kind to the
    /// catalog's default test, which is a change for the prober.
    pub health_checks: Changes<ServiceKind>,
    /// Notifications objects by name.
    pub notifications: Changes<String>,
    /// The UpgradePolicy was added, removed or changed.
    pub upgrade_policy_changed: bool,
}

impl SnapshotDiff {
    /// Whether the two snapshots asked for the same thing.
    pub fn is_empty(&self) -> bool {
        self.installation.is_empty()
            && self.servers.is_empty()
            && self.services.is_empty()
            && !self.connection_strings_changed
            && self.directories.is_empty()
            && self.health_checks.is_empty()
            && self.notifications.is_empty()
            && !self.upgrade_policy_changed
    }

    /// Every object to reconcile because of this change, each once, in [`ObjectRef`] order.
    pub fn affected(&self) -> impl Iterator<Item = ObjectRef> {
        let mut all = BTreeSet::new();
        if !self.installation.is_empty() {
            all.insert(ObjectRef::Installation);
        }
        all.extend(self.servers.keys().cloned().map(ObjectRef::Server));
        all.extend(
            self.services
                .keys()
                .chain(&self.connection_string_targets)
                .cloned()
                .map(ObjectRef::from),
        );
        all.extend(self.directories.keys().cloned().map(ObjectRef::Directory));
        all.extend(
            self.health_checks
                .keys()
                .copied()
                .map(ObjectRef::HealthCheck),
        );
        all.extend(
            self.notifications
                .keys()
                .cloned()
                .map(ObjectRef::Notifications),
        );
        all.into_iter()
    }
}

impl fmt::Display for SnapshotDiff {
    /// A one-line summary for logs, e.g.
    /// `installation ~release; servers +1; services +2 ~5; connection strings`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes");
        }
        let mut parts = Vec::new();
        if !self.installation.is_empty() {
            let fields: Vec<&str> = self.installation.iter().map(|f| f.as_str()).collect();
            parts.push(format!("installation ~{}", fields.join(",")));
        }
        parts.extend(counts("servers", &self.servers));
        parts.extend(counts("services", &self.services));
        if self.connection_strings_changed {
            parts.push("connection strings".to_owned());
        }
        parts.extend(counts("directories", &self.directories));
        parts.extend(counts("health checks", &self.health_checks));
        parts.extend(counts("notifications", &self.notifications));
        if self.upgrade_policy_changed {
            parts.push("upgrade policy".to_owned());
        }
        f.write_str(&parts.join("; "))
    }
}

/// `name +A -R ~C`, leaving out zero counts; `None` when nothing changed.
fn counts<K: Ord>(name: &str, changes: &Changes<K>) -> Option<String> {
    let mut s = name.to_owned();
    for (sign, set) in [
        ('+', &changes.added),
        ('-', &changes.removed),
        ('~', &changes.changed),
    ] {
        if !set.is_empty() {
            s.push_str(&format!(" {sign}{}", set.len()));
        }
    }
    (!changes.is_empty()).then_some(s)
}

/// Compare the last good snapshot (`None` before the first) with a new one.
pub fn diff(old: Option<&Snapshot>, new: &Snapshot) -> SnapshotDiff {
    let Some(old) = old else {
        return initial(new);
    };
    let release_changed = old.installation.release != new.installation.release;
    let connection_strings_changed = old.connection_strings() != new.connection_strings();
    let old_services = services(&old.servers);
    let new_services = services(&new.servers);
    SnapshotDiff {
        initial: false,
        installation: installation_changes(&old.installation, &new.installation),
        servers: Changes::between(&old.servers, &new.servers, same_server_settings),
        // A new release reinstalls (upgrades) every service, so it changes them all.
        services: Changes::between(&old_services, &new_services, |a, b| {
            !release_changed && a == b
        }),
        connection_strings_changed,
        connection_string_targets: if connection_strings_changed {
            new_services.into_keys().collect()
        } else {
            BTreeSet::new()
        },
        directories: Changes::between(&old.directories, &new.directories, PartialEq::eq),
        health_checks: Changes::between(&old.health_checks, &new.health_checks, PartialEq::eq),
        notifications: Changes::between(&old.notifications, &new.notifications, PartialEq::eq),
        upgrade_policy_changed: old.upgrade_policy != new.upgrade_policy,
    }
}

fn initial(new: &Snapshot) -> SnapshotDiff {
    let services = services(&new.servers);
    SnapshotDiff {
        initial: true,
        installation: InstallationField::ALL.into_iter().collect(),
        servers: added(new.servers.keys().cloned()),
        services: added(services.keys().cloned()),
        connection_strings_changed: true,
        connection_string_targets: services.into_keys().collect(),
        directories: added(new.directories.keys().cloned()),
        health_checks: added(new.health_checks.keys().copied()),
        notifications: added(new.notifications.keys().cloned()),
        upgrade_policy_changed: new.upgrade_policy.is_some(),
    }
}

fn added<K: Ord>(keys: impl Iterator<Item = K>) -> Changes<K> {
    Changes {
        added: keys.collect(),
        ..Changes::default()
    }
}

/// Every service placement of a fleet, by (server, kind).
fn services(servers: &BTreeMap<String, Server>) -> BTreeMap<ServiceRef, &PlacedService> {
    servers
        .values()
        .flat_map(|server| {
            server.services.iter().map(|placed| {
                let key = ServiceRef {
                    server: server.name.clone(),
                    kind: placed.kind,
                };
                (key, placed)
            })
        })
        .collect()
}

/// A server's own settings, without its services (those are keyed separately).
fn same_server_settings(a: &Server, b: &Server) -> bool {
    // Destructured without `..` so that a new field on `Server` fails to compile here
    // until someone decides whether it belongs to the server or to its services.
    let Server {
        name: _,
        hostname,
        agent_url,
        monitor,
        certificate,
        services: _,
    } = a;
    *hostname == b.hostname
        && *agent_url == b.agent_url
        && *monitor == b.monitor
        && *certificate == b.certificate
}

fn installation_changes(a: &Installation, b: &Installation) -> BTreeSet<InstallationField> {
    // Exhaustive for the same reason as `same_server_settings`.
    let Installation {
        name,
        environment,
        install_type,
        release,
        mode,
        prune,
        load_balancer,
        hl7,
        database,
        certificate_authority,
    } = a;
    [
        (InstallationField::Name, *name != b.name),
        (
            InstallationField::Environment,
            *environment != b.environment,
        ),
        (
            InstallationField::InstallType,
            *install_type != b.install_type,
        ),
        (InstallationField::Release, *release != b.release),
        (InstallationField::Mode, *mode != b.mode),
        (InstallationField::Prune, *prune != b.prune),
        (
            InstallationField::LoadBalancer,
            *load_balancer != b.load_balancer,
        ),
        (InstallationField::Hl7, *hl7 != b.hl7),
        (InstallationField::Database, *database != b.database),
        (
            InstallationField::CertificateAuthority,
            *certificate_authority != b.certificate_authority,
        ),
    ]
    .into_iter()
    .filter_map(|(field, changed)| changed.then_some(field))
    .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use steward_testkit::Fixture;

    use super::*;
    use crate::load::{load_text, Loaded};
    use crate::validate::compile;

    fn installation() -> String {
        Fixture::installation()
            .name("patientsecure")
            .mode("autoCorrect")
            .prune(false)
            .database("PatientSecure", "ps_installer", "env:PS_DB_PASSWORD")
            .yaml()
    }

    const APP1: &str = r#"
apiVersion: steward/v1
kind: Server
metadata: { name: app1 }
spec:
  hostname: app1.example.eng
  certificate: { generate: true }
  services:
    - kind: PSIS
    - kind: PSWS
"#;

    const APP2: &str = r#"
apiVersion: steward/v1
kind: Server
metadata: { name: app2 }
spec:
  hostname: app2.example.eng
  certificate: { generate: true }
  services:
    - kind: CLIENT
"#;

    const CORP: &str = r#"
apiVersion: steward/v1
kind: ActiveDirectory
metadata: { name: corp }
spec:
  displayName: Corp AD
  domain: corp.example.eng
  server: ldaps://dc1.corp.example.eng:636
  account: CN=svc-ps,OU=Service,DC=corp,DC=example,DC=eng
  passwordRef: env:PS_AD_PASSWORD
  roles:
    owners: [PS-Owners]
    administrators: [PS-Admins]
    users: [PS-Users]
"#;

    const PSWS_CHECK: &str = r#"
apiVersion: steward/v1
kind: HealthCheck
metadata: { name: psws }
spec:
  service: PSWS
  interval: 10s
  timeout: 5s
"#;

    /// Validate documents given as (file name, text); panics with the diagnostics if invalid.
    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        let mut loaded = Loaded::default();
        for (name, text) in files {
            load_text(Path::new(name), text, &mut loaded);
        }
        let compiled = compile(loaded);
        let diagnostics: Vec<String> = compiled.errors().map(ToString::to_string).collect();
        compiled
            .snapshot
            .unwrap_or_else(|| panic!("invalid test snapshot: {diagnostics:#?}"))
    }

    fn base() -> Snapshot {
        snapshot(&[("installation.yaml", &installation()), ("app1.yaml", APP1)])
    }

    fn svc(server: &str, kind: ServiceKind) -> ServiceRef {
        ServiceRef {
            server: server.to_owned(),
            kind,
        }
    }

    fn set<K: Ord + Clone>(keys: &[K]) -> BTreeSet<K> {
        keys.iter().cloned().collect()
    }

    #[test]
    fn same_desired_state_written_differently_is_empty() {
        let reformatted = APP1.replace("services:", "# the services\n  services:  # here");
        let new = snapshot(&[
            ("installation.yaml", &installation()),
            ("servers/app1.yaml", &reformatted),
        ]);
        let d = diff(Some(&base()), &new);
        assert!(d.is_empty(), "{d:#?}");
        assert_eq!(d.affected().count(), 0);
        assert_eq!(d.to_string(), "no changes");
    }

    #[test]
    fn initial_diff_adds_everything() {
        let new = snapshot(&[
            ("installation.yaml", &installation()),
            ("app1.yaml", APP1),
            ("corp.yaml", CORP),
            ("checks.yaml", PSWS_CHECK),
        ]);
        let d = diff(None, &new);
        assert!(d.initial);
        assert_eq!(d.installation.len(), InstallationField::ALL.len());
        assert_eq!(d.servers.added, set(&["app1".to_owned()]));
        assert_eq!(
            d.services.added,
            set(&[
                svc("app1", ServiceKind::Psis),
                svc("app1", ServiceKind::Psws)
            ])
        );
        assert_eq!(d.directories.added, set(&["corp".to_owned()]));
        assert_eq!(d.health_checks.added, set(&[ServiceKind::Psws]));
        let affected: Vec<String> = d.affected().map(|r| r.to_string()).collect();
        assert_eq!(
            affected,
            [
                "installation",
                "server/app1",
                "service/app1/PSIS",
                "service/app1/PSWS",
                "directory/corp",
                "healthCheck/PSWS"
            ]
        );
    }

    #[test]
    fn port_change_changes_that_service_and_the_connection_strings() {
        let moved = APP1.replace("- kind: PSWS", "- kind: PSWS\n      port: 7102");
        let new = snapshot(&[
            ("installation.yaml", &installation()),
            ("app1.yaml", &moved),
        ]);
        let d = diff(Some(&base()), &new);
        assert_eq!(d.services.changed, set(&[svc("app1", ServiceKind::Psws)]));
        assert!(d.services.added.is_empty() && d.services.removed.is_empty());
        assert!(d.servers.is_empty(), "only a service changed: {d:#?}");
        assert!(d.installation.is_empty());
        // The PSWS URL moved, so every service is handed the new connection strings.
        assert!(d.connection_strings_changed);
        assert_eq!(
            d.connection_string_targets,
            set(&[
                svc("app1", ServiceKind::Psis),
                svc("app1", ServiceKind::Psws)
            ])
        );
        assert!(d.affected().any(|r| r
            == ObjectRef::Service {
                server: "app1".to_owned(),
                kind: ServiceKind::Psws
            }));
        assert_eq!(d.to_string(), "services ~1; connection strings");
    }

    #[test]
    fn drive_change_changes_the_service_but_not_the_urls() {
        let moved = APP1.replace("- kind: PSIS", "- kind: PSIS\n      drive: \"D:\"");
        let new = snapshot(&[
            ("installation.yaml", &installation()),
            ("app1.yaml", &moved),
        ]);
        let d = diff(Some(&base()), &new);
        assert_eq!(d.services.changed, set(&[svc("app1", ServiceKind::Psis)]));
        assert!(!d.connection_strings_changed);
        assert!(d.connection_string_targets.is_empty());
    }

    #[test]
    fn release_change_changes_every_service() {
        let upgraded = installation().replace("6.12.1", "6.13.0");
        let new = snapshot(&[("installation.yaml", &upgraded), ("app1.yaml", APP1)]);
        let d = diff(Some(&base()), &new);
        assert_eq!(d.installation, set(&[InstallationField::Release]));
        assert_eq!(
            d.services.changed,
            set(&[
                svc("app1", ServiceKind::Psis),
                svc("app1", ServiceKind::Psws)
            ])
        );
        assert!(!d.connection_strings_changed);
        assert_eq!(d.affected().next(), Some(ObjectRef::Installation));
    }

    #[test]
    fn mode_prune_and_database_are_installation_changes_only() {
        let changed = installation()
            .replace("mode: autoCorrect", "mode: monitor")
            .replace("prune: false", "prune: true")
            .replace("server: db.example.eng", "server: db2.example.eng");
        let new = snapshot(&[("installation.yaml", &changed), ("app1.yaml", APP1)]);
        let d = diff(Some(&base()), &new);
        assert_eq!(
            d.installation,
            set(&[
                InstallationField::Mode,
                InstallationField::Prune,
                InstallationField::Database
            ])
        );
        assert!(d.services.is_empty() && d.servers.is_empty());
        assert_eq!(d.affected().collect::<Vec<_>>(), [ObjectRef::Installation]);
        assert_eq!(d.to_string(), "installation ~mode,prune,database");
    }

    #[test]
    fn load_balancer_moves_the_urls() {
        let with_lb = installation().replace(
            "  database:",
            "  loadBalancer:\n    fqdn: lb.example.eng\n  database:",
        );
        let new = snapshot(&[("installation.yaml", &with_lb), ("app1.yaml", APP1)]);
        let d = diff(Some(&base()), &new);
        assert_eq!(d.installation, set(&[InstallationField::LoadBalancer]));
        assert!(d.connection_strings_changed);
        assert!(d.services.is_empty());
    }

    #[test]
    fn added_server_adds_its_services() {
        let new = snapshot(&[
            ("installation.yaml", &installation()),
            ("app1.yaml", APP1),
            ("app2.yaml", APP2),
        ]);
        let d = diff(Some(&base()), &new);
        assert_eq!(d.servers.added, set(&["app2".to_owned()]));
        assert_eq!(d.services.added, set(&[svc("app2", ServiceKind::Client)]));
        // A CLIENT URL now exists where there was none.
        assert!(d.connection_strings_changed);
    }

    #[test]
    fn removed_server_removes_its_services() {
        let old = snapshot(&[
            ("installation.yaml", &installation()),
            ("app1.yaml", APP1),
            ("app2.yaml", APP2),
        ]);
        let d = diff(Some(&old), &base());
        assert_eq!(d.servers.removed, set(&["app2".to_owned()]));
        assert_eq!(d.services.removed, set(&[svc("app2", ServiceKind::Client)]));
        assert!(d.servers.added.is_empty() && d.servers.changed.is_empty());
        assert!(d
            .affected()
            .any(|r| r == ObjectRef::Server("app2".to_owned())));
    }

    #[test]
    fn hostname_change_changes_the_server_not_its_services() {
        let renamed = APP1.replace("app1.example.eng", "app1b.example.eng");
        let new = snapshot(&[
            ("installation.yaml", &installation()),
            ("app1.yaml", &renamed),
        ]);
        let d = diff(Some(&base()), &new);
        assert_eq!(d.servers.changed, set(&["app1".to_owned()]));
        assert!(d.services.is_empty());
        // The services are still affected: their URLs point at the new hostname.
        assert!(d.connection_strings_changed);
        assert_eq!(d.affected().count(), 3);
    }

    #[test]
    fn notifications_by_name() {
        const ADMINS: &str = "apiVersion: steward/v1\nkind: Notifications\nmetadata: {name: admins}\nspec:\n  smtp: {server: smtp.example.eng}\n  from: steward@example.eng\n  to: [ps-admins@example.eng]\n  events: [ServiceDown]\n";
        let old = base();
        let installation = installation();
        let new = snapshot(&[
            ("installation.yaml", &installation),
            ("app1.yaml", APP1),
            ("mail.yaml", ADMINS),
        ]);
        let d = diff(Some(&old), &new);
        assert_eq!(d.notifications.added, set(&["admins".to_owned()]));
        let affected: Vec<String> = d.affected().map(|r| r.to_string()).collect();
        assert_eq!(affected, ["notifications/admins"]);
        assert_eq!(d.to_string(), "notifications +1");
        let more = ADMINS.replace("[ServiceDown]", "[ServiceDown, AgentDown]");
        let changed = snapshot(&[
            ("installation.yaml", &installation),
            ("app1.yaml", APP1),
            ("mail.yaml", &more),
        ]);
        assert_eq!(
            diff(Some(&new), &changed).notifications.changed,
            set(&["admins".to_owned()])
        );
        assert_eq!(
            diff(Some(&new), &old).notifications.removed,
            set(&["admins".to_owned()])
        );
    }

    #[test]
    fn directories_and_health_checks_by_key() {
        let old = snapshot(&[
            ("installation.yaml", &installation()),
            ("app1.yaml", APP1),
            ("corp.yaml", CORP),
            ("checks.yaml", PSWS_CHECK),
        ]);
        let psis_check = PSWS_CHECK
            .replace("name: psws", "name: psis")
            .replace("service: PSWS", "service: PSIS");
        let corp = CORP.replace("Corp AD", "Corporate AD");
        let new = snapshot(&[
            ("installation.yaml", &installation()),
            ("app1.yaml", APP1),
            ("corp.yaml", &corp),
            ("checks.yaml", &psis_check),
        ]);
        let d = diff(Some(&old), &new);
        assert_eq!(d.directories.changed, set(&["corp".to_owned()]));
        assert_eq!(d.health_checks.added, set(&[ServiceKind::Psis]));
        assert_eq!(d.health_checks.removed, set(&[ServiceKind::Psws]));
        let affected: Vec<String> = d.affected().map(|r| r.to_string()).collect();
        assert_eq!(
            affected,
            ["directory/corp", "healthCheck/PSIS", "healthCheck/PSWS"]
        );

        let gone = diff(Some(&old), &base());
        assert_eq!(gone.directories.removed, set(&["corp".to_owned()]));
        assert_eq!(
            gone.to_string(),
            "directories -1; health checks -1",
            "{gone:#?}"
        );
    }

    #[test]
    fn object_refs_serialize_as_their_display_form() {
        let r = ObjectRef::Service {
            server: "app1".to_owned(),
            kind: ServiceKind::Hl7,
        };
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"service/app1/HL7\"");
    }
}
