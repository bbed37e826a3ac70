//! What steward would do: the ordered actions that take the observed fleet to a snapshot.
//!
//! `steward plan` shows this (like `terraform plan`); the controllers carry out the same
//! decisions one object at a time. With no observed state (a fresh fleet) everything is to
//! be created: the CA, certificates, database and directory checks, then installs in
//! dependency order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalog::ServiceKind;
use crate::resource::{CaMode, Mode};
use crate::snapshot::{CertificateSource, ConnectionStrings, PlacedService, Server, Snapshot};

/// What is running now, as far as steward knows (empty for a fresh fleet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// By server name.
    pub servers: BTreeMap<String, ObservedServer>,
    /// Whether the steward CA exists already.
    pub ca_exists: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedServer {
    pub services: BTreeMap<ServiceKind, ObservedService>,
    /// SHA-1 thumbprint of the installed certificate, if any.
    pub certificate_thumbprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedService {
    pub ports: Vec<u16>,
    pub drive: String,
    pub release: String,
    pub running: bool,
}

/// One action, tagged by `action`; the fields are camelCase like every other JSON steward
/// emits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "action"
)]
#[schemars(rename = "PlanStep")]
pub enum Step {
    InitCertificateAuthority,
    IssueCertificate {
        server: String,
        subject_alt_names: Vec<String>,
    },
    InstallCertificate {
        server: String,
        from: String,
    },
    /// Connect with the installer login, check that the database exists (installs wait
    /// for both) and that the service login has every grant; with `create`, provision
    /// what is missing (idempotent, nothing dropped).
    CheckDatabase {
        server: String,
        database: String,
        service_login: String,
        encrypt: bool,
        create: bool,
    },
    CheckDirectory {
        directory: String,
        server: String,
        groups: Vec<String>,
        manage_members: bool,
    },
    Install {
        server: String,
        service: ServiceKind,
        ports: Vec<u16>,
        drive: String,
        release: String,
    },
    Reinstall {
        server: String,
        service: ServiceKind,
        ports: Vec<u16>,
        drive: String,
        release: String,
        because: String,
    },
    Start {
        server: String,
        service: ServiceKind,
    },
    Uninstall {
        server: String,
        service: ServiceKind,
    },
    /// Installed but no longer declared, and `prune` is off: reported, left running.
    Orphaned {
        server: String,
        service: ServiceKind,
    },
    /// A release change under an UpgradePolicy: one server's step of the rolling upgrade,
    /// its services in install order, after the servers before it.
    Upgrade {
        server: String,
        services: Vec<ServiceKind>,
        from: String,
        to: String,
        /// Taken out of the load balancer first.
        drain: bool,
        /// Every service healthy this long before the next server (seconds).
        health_gate_seconds: u64,
        /// The windows the upgrade waits for (none: any time).
        windows: Vec<String>,
        /// When the windows next admit it (RFC 3339, UTC), judged when the plan was made;
        /// `None` without windows, or when they never open.
        opens: Option<String>,
    },
}

impl Step {
    /// `+` create, `~` change, `-` destroy, `?` check, `!` report only.
    fn symbol(&self) -> char {
        match self {
            Self::InitCertificateAuthority
            | Self::IssueCertificate { .. }
            | Self::InstallCertificate { .. }
            | Self::Install { .. } => '+',
            Self::Reinstall { .. } | Self::Start { .. } | Self::Upgrade { .. } => '~',
            Self::Uninstall { .. } => '-',
            Self::CheckDatabase { .. } | Self::CheckDirectory { .. } => '?',
            Self::Orphaned { .. } => '!',
        }
    }

    /// Whether carrying out the step changes the fleet.
    pub fn is_change(&self) -> bool {
        matches!(self.symbol(), '+' | '~' | '-')
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
}

/// The ordered actions from the observed fleet to the desired state, as `steward plan`
/// prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub installation: String,
    pub release: String,
    /// In `monitor` mode the plan is what drift *would* be corrected; nothing is applied.
    pub mode: Mode,
    pub steps: Vec<Step>,
    pub connection_strings: ConnectionStrings,
    pub summary: Summary,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.steps.iter().any(Step::is_change)
    }
}

/// The steps from `observed` to `snapshot`, in the order they must run, with upgrade
/// windows judged now.
pub fn plan(snapshot: &Snapshot, observed: &Observed) -> Plan {
    plan_at(snapshot, observed, chrono::Utc::now())
}

/// [`plan`] with upgrade windows judged at `now`.
pub fn plan_at(
    snapshot: &Snapshot,
    observed: &Observed,
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
    let inst = &snapshot.installation;
    let mut steps = Vec::new();
    let generated = inst.certificate_authority.mode == CaMode::Generated;
    if generated && !observed.ca_exists {
        steps.push(Step::InitCertificateAuthority);
    }
    for server in snapshot.servers.values() {
        let seen = observed.servers.get(&server.name);
        if seen.is_some_and(|s| s.certificate_thumbprint.is_some()) {
            continue;
        }
        steps.push(match &server.certificate {
            CertificateSource::Generate => Step::IssueCertificate {
                server: server.name.clone(),
                subject_alt_names: subject_alt_names(
                    server,
                    inst.load_balancer.as_ref().map(|lb| lb.fqdn.as_str()),
                ),
            },
            CertificateSource::Pem { cert_file, .. } => Step::InstallCertificate {
                server: server.name.clone(),
                from: cert_file.display().to_string(),
            },
            CertificateSource::Pfx { pfx_file, .. } => Step::InstallCertificate {
                server: server.name.clone(),
                from: pfx_file.display().to_string(),
            },
        });
    }
    steps.push(Step::CheckDatabase {
        server: format!("{}:{}", inst.database.server, inst.database.port),
        database: inst.database.name.clone(),
        service_login: inst.database.service_login.name.clone(),
        encrypt: inst.database.encrypt,
        create: inst.database.create,
    });
    for ad in snapshot.directories.values() {
        steps.push(Step::CheckDirectory {
            directory: ad.name.clone(),
            server: ad.server.clone(),
            groups: ad.roles.values().flatten().cloned().collect(),
            manage_members: ad.members.is_some(),
        });
    }
    // Per server, the release(s) it runs and its services to upgrade, in install order.
    let mut upgrades: BTreeMap<String, (Vec<String>, Vec<ServiceKind>)> = BTreeMap::new();
    for (server, placed) in snapshot.install_order() {
        let seen = observed
            .servers
            .get(&server.name)
            .and_then(|s| s.services.get(&placed.kind));
        match service_step(server, placed, &inst.release, seen) {
            // Only the release differs and a policy rolls it out: the server's upgrade.
            Some(Step::Reinstall { because, .. })
                if snapshot.upgrade_policy.is_some() && because.starts_with("release ") =>
            {
                let seen = seen.map(|s| s.release.clone()).unwrap_or_default();
                let (from, kinds) = upgrades.entry(server.name.clone()).or_default();
                if !from.contains(&seen) {
                    from.push(seen);
                }
                kinds.push(placed.kind);
            }
            Some(step) => steps.push(step),
            None => {}
        }
    }
    if let Some(policy) = &snapshot.upgrade_policy {
        let opens = (!policy.windows.0.is_empty())
            .then(|| policy.windows.next_open(now))
            .flatten()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        for (server, (from, services)) in upgrades {
            steps.push(Step::Upgrade {
                server,
                services,
                from: from.join(", "),
                to: inst.release.clone(),
                drain: policy.drain,
                health_gate_seconds: policy.health_gate.as_secs(),
                windows: policy.windows.0.iter().map(|w| w.describe()).collect(),
                opens: opens.clone(),
            });
        }
    }
    // Uninstall (or report) what is installed but no longer declared, dependents first.
    let mut leftovers: Vec<(&String, ServiceKind)> = observed
        .servers
        .iter()
        .flat_map(|(name, s)| s.services.keys().map(move |k| (name, *k)))
        .filter(|(name, kind)| {
            snapshot
                .servers
                .get(*name)
                .and_then(|s| s.service(*kind))
                .is_none()
        })
        .collect();
    leftovers.sort_by_key(|(name, kind)| (std::cmp::Reverse(kind.install_rank()), (*name).clone()));
    for (name, kind) in leftovers {
        steps.push(if inst.prune {
            Step::Uninstall {
                server: name.clone(),
                service: kind,
            }
        } else {
            Step::Orphaned {
                server: name.clone(),
                service: kind,
            }
        });
    }
    let summary = Summary {
        add: steps.iter().filter(|s| s.symbol() == '+').count(),
        change: steps.iter().filter(|s| s.symbol() == '~').count(),
        remove: steps.iter().filter(|s| s.symbol() == '-').count(),
    };
    Plan {
        installation: inst.name.clone(),
        release: inst.release.clone(),
        mode: inst.mode,
        steps,
        connection_strings: snapshot.connection_strings(),
        summary,
    }
}

/// The names a generated certificate must carry: the server, and the load balancer's FQDN
/// when there is one (SSL pass-through: clients reach servers under that name).
pub fn subject_alt_names(server: &Server, load_balancer: Option<&str>) -> Vec<String> {
    let mut names = vec![server.hostname.clone()];
    if let Some(lb) = load_balancer {
        names.push(lb.to_owned());
    }
    names
}

fn service_step(
    server: &Server,
    placed: &PlacedService,
    release: &str,
    seen: Option<&ObservedService>,
) -> Option<Step> {
    let install = || Step::Install {
        server: server.name.clone(),
        service: placed.kind,
        ports: placed.ports.clone(),
        drive: placed.drive.clone(),
        release: release.to_owned(),
    };
    let Some(seen) = seen else {
        return Some(install());
    };
    let mut why = Vec::new();
    if seen.ports != placed.ports {
        why.push(format!("ports {:?} -> {:?}", seen.ports, placed.ports));
    }
    if !seen.drive.eq_ignore_ascii_case(&placed.drive) {
        why.push(format!("drive {} -> {}", seen.drive, placed.drive));
    }
    if seen.release != release {
        why.push(format!("release {} -> {release}", seen.release));
    }
    if !why.is_empty() {
        return Some(Step::Reinstall {
            server: server.name.clone(),
            service: placed.kind,
            ports: placed.ports.clone(),
            drive: placed.drive.clone(),
            release: release.to_owned(),
            because: why.join(", "),
        });
    }
    (!seen.running).then(|| Step::Start {
        server: server.name.clone(),
        service: placed.kind,
    })
}

fn ports_text(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Plan {
    /// The human-readable plan, as `steward plan` prints it.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Steward plan for installation `{}` (release {}):\n",
            self.installation, self.release
        );
        for step in &self.steps {
            let _ = writeln!(out, "  {} {}", step.symbol(), describe(step));
        }
        let cs = &self.connection_strings;
        let _ = writeln!(out, "\nService URLs handed to every service:");
        for (name, url) in [
            ("identityServer", &cs.identity_server),
            ("psws", &cs.psws),
            ("client", &cs.client),
            ("api", &cs.api),
        ] {
            let _ = writeln!(out, "  {name:<15} {}", url.as_deref().unwrap_or("(none)"));
        }
        let _ = write!(
            out,
            "\nPlan: {} to add, {} to change, {} to remove.",
            self.summary.add, self.summary.change, self.summary.remove
        );
        if self.mode == Mode::Monitor {
            out.push_str(" Mode is monitor: steward reports these and changes nothing.");
        }
        out.push('\n');
        out
    }
}

fn describe(step: &Step) -> String {
    match step {
        Step::InitCertificateAuthority => "create the steward certificate authority".into(),
        Step::IssueCertificate {
            server,
            subject_alt_names,
        } => format!(
            "{server}: issue a certificate from the steward CA (SAN {})",
            subject_alt_names.join(", ")
        ),
        Step::InstallCertificate { server, from } => {
            format!("{server}: install the third-party certificate from {from}")
        }
        Step::CheckDatabase {
            server,
            database,
            service_login,
            encrypt,
            create,
        } => format!(
            "database {database} on {server} ({}): connect as the installer, check the database \
             exists (services install only then) and {service_login} with its grants{}",
            if *encrypt { "TLS" } else { "plain TDS" },
            if *create {
                "; create what is missing (idempotent, nothing dropped)"
            } else {
                "; report what is missing"
            }
        ),
        Step::CheckDirectory {
            directory,
            server,
            groups,
            manage_members,
        } => format!(
            "active directory {directory} ({server}): check groups {}{}",
            groups.join(", "),
            if *manage_members {
                " and manage their members"
            } else {
                ""
            }
        ),
        Step::Install {
            server,
            service,
            ports,
            drive,
            release,
        } => format!(
            "{server}: install {service} ({}) on port {} drive {drive} release {release}",
            service.spec().display_name,
            ports_text(ports)
        ),
        Step::Reinstall {
            server,
            service,
            because,
            ..
        } => format!("{server}: reinstall {service} ({because})"),
        Step::Start { server, service } => format!("{server}: start {service} (stopped)"),
        Step::Uninstall { server, service } => format!("{server}: uninstall {service} (prune)"),
        Step::Orphaned { server, service } => format!(
            "{server}: {service} is installed but no longer declared; left running (prune is false)"
        ),
        Step::Upgrade {
            server,
            services,
            from,
            to,
            drain,
            health_gate_seconds,
            windows,
            opens,
        } => {
            let kinds: Vec<&str> = services.iter().map(|k| k.as_str()).collect();
            let mut text = format!(
                "{server}: upgrade {} from {from} to {to}, one at a time{}, then {health_gate_seconds}s healthy",
                kinds.join(", "),
                if *drain { ", drained from the load balancer" } else { "" },
            );
            if !windows.is_empty() {
                text += &format!("; waits for: {}", windows.join("; "));
                match opens {
                    Some(t) => text += &format!(" (next opening {t})"),
                    None => text += " (never opens)",
                }
            }
            text
        }
    }
}

/// One step of every kind, so tests cover the wire names and schema of all variants
/// (for other crates' tests with the `test-util` feature).
#[cfg(any(test, feature = "test-util"))]
pub fn every_step() -> Vec<Step> {
    let (server, service) = (String::from("app1"), ServiceKind::Psis);
    vec![
        Step::InitCertificateAuthority,
        Step::IssueCertificate {
            server: server.clone(),
            subject_alt_names: vec!["app1.example.eng".into()],
        },
        Step::InstallCertificate {
            server: server.clone(),
            from: "certs/app1.pem".into(),
        },
        Step::CheckDatabase {
            server: "sql1:1433".into(),
            database: "PatientSecure".into(),
            service_login: "ImprivataPatientSecureServices_PatientSecure".into(),
            encrypt: true,
            create: true,
        },
        Step::CheckDirectory {
            directory: "corp".into(),
            server: "dc1".into(),
            groups: vec!["PS-Admins".into()],
            manage_members: true,
        },
        Step::Install {
            server: server.clone(),
            service,
            ports: vec![7001],
            drive: "C:".into(),
            release: "6.12.1".into(),
        },
        Step::Reinstall {
            server: server.clone(),
            service,
            ports: vec![7001],
            drive: "C:".into(),
            release: "6.12.1".into(),
            because: "release 6.12.0 -> 6.12.1".into(),
        },
        Step::Start {
            server: server.clone(),
            service,
        },
        Step::Uninstall {
            server: server.clone(),
            service,
        },
        Step::Orphaned {
            server: server.clone(),
            service,
        },
        Step::Upgrade {
            server,
            services: vec![ServiceKind::Psis, ServiceKind::Psws],
            from: "6.12.1".into(),
            to: "6.13.0".into(),
            drain: true,
            health_gate_seconds: 60,
            windows: vec!["allow window 0 22 * * 1-5 for 4h (America/New_York)".into()],
            opens: Some("2026-11-24T03:00:00Z".into()),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.push(k.clone());
                    keys(v, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }

    #[test]
    fn plan_json_is_camel_case_throughout() {
        let plan = Plan {
            installation: "hospital".into(),
            release: "6.12.1".into(),
            mode: Mode::AutoCorrect,
            steps: every_step(),
            connection_strings: ConnectionStrings::default(),
            summary: Summary::default(),
        };
        let mut names = Vec::new();
        keys(&serde_json::to_value(&plan).unwrap(), &mut names);
        let snake: Vec<&String> = names.iter().filter(|k| k.contains('_')).collect();
        assert!(
            snake.is_empty(),
            "snake_case keys in the plan JSON: {snake:?}"
        );
        assert!(names.iter().any(|k| k == "subjectAltNames"));
        assert!(names.iter().any(|k| k == "manageMembers"));
    }

    fn compiled(database: &str) -> Snapshot {
        let text = steward_testkit::Fixture::installation()
            .database_flow(database)
            .servers([("app1", &["PSIS", "PSWS"][..])])
            .documents();
        snapshot_of(&text)
    }

    fn snapshot_of(text: &str) -> Snapshot {
        let mut loaded = crate::load::Loaded::default();
        crate::load::load_text(std::path::Path::new("f.yaml"), text, &mut loaded);
        let compiled = crate::validate::compile(loaded);
        compiled.snapshot.expect("valid")
    }

    #[test]
    fn the_database_step_comes_before_installs_and_says_what_is_checked() {
        let verify = plan(
            &compiled("{server: sql1, name: PS, user: u, passwordRef: env:PW, encrypt: false}"),
            &Observed::default(),
        );
        let db = verify
            .steps
            .iter()
            .position(|s| matches!(s, Step::CheckDatabase { .. }))
            .expect("a database step");
        let first_install = verify
            .steps
            .iter()
            .position(|s| matches!(s, Step::Install { .. }))
            .unwrap();
        assert!(db < first_install);
        let text = describe(&verify.steps[db]);
        assert_eq!(
            text,
            "database PS on sql1:1433 (plain TDS): connect as the installer, check the database \
             exists (services install only then) and ImprivataPatientSecureServices_PS with its \
             grants; report what is missing"
        );
        let create = plan(
            &compiled("{server: sql1, name: PS, user: u, passwordRef: env:PW, create: true, serviceLogin: {name: svc, passwordRef: env:SVC}}"),
            &Observed::default(),
        );
        let text: Vec<String> = create.steps.iter().map(describe).collect();
        let line = text.iter().find(|l| l.starts_with("database")).unwrap();
        assert!(
            line.contains("(TLS)") && line.contains("and svc with its grants"),
            "{line}"
        );
        assert!(line.ends_with("create what is missing (idempotent, nothing dropped)"));
        assert!(!line.contains("env:SVC"), "{line}");
    }

    #[test]
    fn a_release_change_under_a_policy_is_one_upgrade_step_per_server_with_its_window() {
        let both: &[&str] = &["PSWS", "PSIS"];
        let text = steward_testkit::Fixture::installation()
            .release("6.13.0")
            .load_balancer("lb.example.eng")
            .database_flow("{server: sql1, name: PS, user: u, passwordRef: env:PW}")
            .servers([("app1", both), ("app2", both)])
            .document("apiVersion: steward/v1\nkind: UpgradePolicy\nmetadata: {name: default}\nspec:\n  windows: [{kind: allow, schedule: \"0 22 * * *\", duration: 4h, timeZone: America/New_York}]\n")
            .documents();
        let snapshot = snapshot_of(&text);
        let mut observed = Observed {
            ca_exists: true,
            ..Observed::default()
        };
        for (name, server) in &snapshot.servers {
            let seen = observed.servers.entry(name.clone()).or_default();
            seen.certificate_thumbprint = Some("AB".into());
            for p in &server.services {
                seen.services.insert(
                    p.kind,
                    ObservedService {
                        ports: p.ports.clone(),
                        drive: p.drive.clone(),
                        release: "6.12.1".into(),
                        running: true,
                    },
                );
            }
        }
        let now = "2026-11-23T12:00:00Z".parse().unwrap();
        let plan = plan_at(&snapshot, &observed, now);
        let upgrades: Vec<String> = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Upgrade { .. }))
            .map(describe)
            .collect();
        assert_eq!(
            upgrades,
            [
                "app1: upgrade PSIS, PSWS from 6.12.1 to 6.13.0, one at a time, drained from the load balancer, then 60s healthy; waits for: allow window 0 22 * * * for 4h (America/New_York) (next opening 2026-11-24T03:00:00Z)",
                "app2: upgrade PSIS, PSWS from 6.12.1 to 6.13.0, one at a time, drained from the load balancer, then 60s healthy; waits for: allow window 0 22 * * * for 4h (America/New_York) (next opening 2026-11-24T03:00:00Z)",
            ]
        );
        assert!(!plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::Reinstall { .. })));
        assert_eq!(plan.summary.change, 2);
    }
}
