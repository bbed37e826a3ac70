//! `loadBalancer` and `hl7`: the settings on their own (`load_balancer`, `hl7`), then the
//! farms across servers (`farm_ports`, `hl7_preferred`) once ports are allocated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::server::ServerDraft;
use super::{max_len, normalize_host, Report};
use crate::catalog::{PortRule, ServiceKind};
use crate::diagnostic::{display_path, quote, Code};
use crate::resource::{Affinity, Hl7Failover, Hl7Spec, LbVendor, LoadBalancerSpec};
use crate::snapshot::{
    HaproxyFiles, Hl7, LoadBalancer, Server, DEFAULT_FAILOVER_AFTER, MIN_IDLE_TIMEOUT,
};
use crate::syntax::check_fqdn;
use crate::{Located, Pos};

/// The load balancer's own settings; `farm_ports` is filled in by [`farm_ports`].
pub(super) fn load_balancer(
    file: &Path,
    lb: &LoadBalancerSpec,
    report: &mut Report,
) -> LoadBalancer {
    for (field, name) in [("fqdn", Some(&lb.fqdn)), ("hl7Fqdn", lb.hl7_fqdn.as_ref())] {
        let Some(name) = name else { continue };
        let field = format!("loadBalancer.{field}");
        if report.within_length(file, &field, name, max_len::FQDN) {
            if let Err(e) = check_fqdn(name) {
                report.error(
                    file,
                    name.pos,
                    Code::InvalidFqdn,
                    format!("{field} {} {e}", quote(name)),
                );
            }
        }
    }
    let idle_timeout = lb
        .idle_timeout
        .as_ref()
        .and_then(|t| idle_timeout(file, t, report))
        .unwrap_or(MIN_IDLE_TIMEOUT);
    let vendor = lb.vendor.as_ref().map(|v| v.value);
    vendor_settings(file, lb, report);
    let path = |field: &str, value: &Option<Located<String>>, report: &mut Report| {
        value.as_ref().and_then(|v| {
            report
                .within_length(file, field, v, max_len::PATH)
                .then(|| PathBuf::from(&v.value))
        })
    };
    let defaults = HaproxyFiles::default();
    let haproxy = match &lb.haproxy {
        Some(h) => HaproxyFiles {
            config_file: path("loadBalancer.haproxy.configFile", &h.config_file, report)
                .unwrap_or(defaults.config_file),
            admin_socket: path("loadBalancer.haproxy.adminSocket", &h.admin_socket, report)
                .unwrap_or(defaults.admin_socket),
        },
        None => defaults,
    };
    let address = lb.address.as_ref().and_then(|a| {
        let parsed = a.trim().parse::<std::net::IpAddr>().ok();
        if parsed.is_none() && report.within_length(file, "loadBalancer.address", a, max_len::SHORT)
        {
            report.error(
                file,
                a.pos,
                Code::InvalidHost,
                format!("loadBalancer.address {} must be an IP address", quote(a)),
            );
        }
        parsed
    });
    let fqdn = normalize_host(&lb.fqdn);
    LoadBalancer {
        address,
        hl7_fqdn: lb
            .hl7_fqdn
            .as_ref()
            .map_or_else(|| fqdn.clone(), |h| normalize_host(h)),
        fqdn,
        vendor,
        affinity: lb.affinity.as_ref().map_or(Affinity::Client, |a| a.value),
        idle_timeout,
        haproxy,
        render: path("loadBalancer.render", &lb.render, report)
            .unwrap_or_else(|| PathBuf::from("lb")),
        farm_ports: BTreeMap::new(),
    }
}

fn idle_timeout(file: &Path, value: &Located<String>, report: &mut Report) -> Option<Duration> {
    let d = report.duration(file, "loadBalancer.idleTimeout", value, Duration::ZERO)?;
    if d < MIN_IDLE_TIMEOUT {
        report.error(
            file,
            value.pos,
            Code::IdleTimeout,
            format!(
                "loadBalancer.idleTimeout {} is below {}s: a console session lasts 30 minutes and the load balancer must not cut it",
                quote(value),
                MIN_IDLE_TIMEOUT.as_secs()
            ),
        );
        return None;
    }
    Some(d)
}

/// `haproxy` belongs to vendor haproxy, `render` to the rendered vendors: a setting the
/// chosen vendor ignores is a mistake the reader should hear about.
fn vendor_settings(file: &Path, lb: &LoadBalancerSpec, report: &mut Report) {
    let vendor = lb.vendor.as_ref().map(|v| v.value);
    let named = vendor.map_or_else(
        || "no vendor is set".to_owned(),
        |v| format!("vendor is `{}`", v.as_str()),
    );
    if let Some(h) = &lb.haproxy {
        if vendor != Some(LbVendor::Haproxy) {
            report.error(
                file,
                h.pos,
                Code::LoadBalancerSettings,
                format!("loadBalancer.haproxy applies to vendor `haproxy` only, and {named}"),
            );
        }
    }
    let needs_address = matches!(vendor, Some(LbVendor::CitrixAdc | LbVendor::F5));
    if let (Some(v), None, true) = (&lb.vendor, &lb.address, needs_address) {
        report.error(
            file,
            v.pos,
            Code::LoadBalancerSettings,
            format!(
                "vendor `{}` needs loadBalancer.address: its virtual servers are declared with the IP address `fqdn` resolves to",
                v.as_str()
            ),
        );
    }
    if let Some(r) = &lb.render {
        if matches!(vendor, None | Some(LbVendor::Haproxy)) {
            report.error(
                file,
                r.pos,
                Code::LoadBalancerSettings,
                format!(
                    "loadBalancer.render applies to vendors `arr`, `citrix-adc` and `f5` (steward writes their configuration there), and {named}"
                ),
            );
        }
    }
}

pub(super) fn hl7(
    file: &Path,
    spec: &Hl7Spec,
    lb: Option<&LoadBalancerSpec>,
    report: &mut Report,
) -> Hl7 {
    let failover_after = spec
        .failover_after
        .as_ref()
        .and_then(|v| report.duration(file, "hl7.failoverAfter", v, Report::LONGER_THAN_0));
    if let Some(f) = &spec.failover {
        if f.value == Hl7Failover::Automatic && lb.is_none_or(|lb| lb.vendor.is_none()) {
            report.error(
                file,
                f.pos,
                Code::Hl7Failover,
                "hl7.failover `automatic` needs a loadBalancer with a vendor: senders reach the active listener through its HL7 backend, which steward re-points",
            );
        }
    }
    if let Some(p) = &spec.preferred {
        report.within_length(file, "hl7.preferred", p, max_len::SHORT);
    }
    let defaults = Hl7::default();
    Hl7 {
        failover: spec
            .failover
            .as_ref()
            .map_or(defaults.failover, |f| f.value),
        preferred: spec.preferred.as_ref().map(|p| p.value.clone()),
        failover_after: failover_after.unwrap_or(DEFAULT_FAILOVER_AFTER),
        failback: spec
            .failback
            .as_ref()
            .map_or(defaults.failback, |f| f.value),
    }
}

/// Where one explicit port of a farm was written.
struct Written<'a> {
    file: &'a Path,
    pos: Pos,
    port: u16,
}

/// The port of every farm: all servers of a kind serve it on one port, so explicit ports
/// must agree; two farms cannot share a port on the load balancer.
pub(super) fn farm_ports(
    drafts: &[ServerDraft<'_>],
    servers: &BTreeMap<String, Server>,
    report: &mut Report,
) -> BTreeMap<ServiceKind, u16> {
    let mut explicit: BTreeMap<ServiceKind, Written<'_>> = BTreeMap::new();
    for d in drafts {
        for (kind, svc) in &d.services {
            let Some(port) = &svc.port else { continue };
            match explicit.get(kind) {
                Some(first) if first.port != port.value => report.error(
                    d.file,
                    port.pos,
                    Code::FarmPort,
                    format!(
                        "{kind} has port {} here but {} at {}:{}; every server of the {kind} farm must serve the load balancer's port",
                        port.value,
                        first.port,
                        display_path(first.file),
                        first.pos
                    ),
                ),
                Some(_) => {}
                None => {
                    explicit.insert(
                        *kind,
                        Written {
                            file: d.file,
                            pos: port.pos,
                            port: port.value,
                        },
                    );
                }
            }
        }
    }
    let mut ports = BTreeMap::new();
    for kind in ServiceKind::ALL {
        let Some(first) = servers.values().find_map(|s| s.service(kind)) else {
            continue;
        };
        let port = match (explicit.get(&kind), kind.spec().ports) {
            (Some(w), _) => w.port,
            (None, PortRule::Fixed(p) | PortRule::Default(p)) => p[0],
            (None, PortRule::NextFree) => first.ports[0],
        };
        ports.insert(kind, port);
    }
    let mut taken: BTreeMap<u16, ServiceKind> = BTreeMap::new();
    for (kind, port) in &ports {
        let Some(other) = taken.insert(*port, *kind) else {
            continue;
        };
        // Shown where the port was written, or at the kind's first placement.
        let (file, pos) = match explicit.get(kind).or_else(|| explicit.get(&other)) {
            Some(w) => (w.file, w.pos),
            None => drafts
                .iter()
                .find_map(|d| {
                    d.services
                        .iter()
                        .find(|(k, _)| k == kind)
                        .map(|(_, s)| (d.file, s.kind.pos))
                })
                .unwrap_or((Path::new("."), Pos::new(1, 1))),
        };
        report.error(
            file,
            pos,
            Code::FarmPort,
            format!(
                "the {other} and {kind} farms would both listen on port {port} of the load balancer; give one of them another port"
            ),
        );
    }
    ports
}

/// `hl7.preferred` names a server that runs HL7.
pub(super) fn hl7_preferred(
    file: &Path,
    spec: &Hl7Spec,
    servers_unparsed: bool,
    servers: &BTreeMap<String, Server>,
    report: &mut Report,
) {
    let Some(p) = &spec.preferred else { return };
    let runs_hl7 = servers
        .get(&p.value)
        .is_some_and(|s| s.service(ServiceKind::Hl7).is_some());
    // A Server that failed to parse may be the one named.
    if runs_hl7 || servers_unparsed {
        return;
    }
    let with: Vec<String> = servers
        .values()
        .filter(|s| s.service(ServiceKind::Hl7).is_some())
        .map(|s| quote(&s.name))
        .collect();
    let choices = if with.is_empty() {
        "no server runs HL7".to_owned()
    } else {
        format!("HL7 runs on {}", with.join(", "))
    };
    let what = if servers.contains_key(&p.value) {
        "does not run HL7"
    } else {
        "is not a Server"
    };
    report.error(
        file,
        p.pos,
        Code::Hl7Preferred,
        format!("hl7.preferred {} {what}; {choices}", quote(p)),
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::load::{load_text, Loaded};
    use crate::resource::{Affinity, LbVendor};
    use crate::{Code, ServiceKind};

    /// The installation with `lb` (spec lines, no final newline) and servers app1 and app2
    /// with the `services` flow lists `app1` and `app2`.
    fn compile(lb: &str, app1: &str, app2: &str) -> crate::Compiled {
        use steward_testkit::Fixture;
        let server = |name: &str, services: &str| {
            Fixture::server(name).spec_lines(&format!("  services: {services}\n"))
        };
        let text = Fixture::installation()
            .spec_lines(&format!("{lb}\n"))
            .server(server("app1", app1))
            .server(server("app2", app2))
            .documents();
        let mut loaded = Loaded::default();
        load_text(Path::new("i.yaml"), &text, &mut loaded);
        crate::validate::compile(loaded)
    }

    const LB: &str = "  loadBalancer: {fqdn: LB.example.eng., vendor: haproxy}";

    #[test]
    fn defaults_and_farm_ports() {
        // JOB has no catalog port: its farm takes its server's allocated one.
        let c = compile(
            LB,
            "[{kind: PSIS}, {kind: PSWS}, {kind: JOB}]",
            "[{kind: PSIS}, {kind: PSWS}, {kind: HL7}]",
        );
        let s = c.snapshot.expect("valid");
        let lb = s.installation.load_balancer.as_ref().unwrap();
        assert_eq!(lb.fqdn, "lb.example.eng");
        assert_eq!(lb.hl7_fqdn, "lb.example.eng");
        assert_eq!(lb.vendor, Some(LbVendor::Haproxy));
        assert_eq!(lb.affinity, Affinity::Client);
        assert_eq!(lb.idle_timeout, Duration::from_secs(1860));
        assert_eq!(
            lb.farm_ports
                .iter()
                .map(|(k, p)| (*k, *p))
                .collect::<Vec<_>>(),
            [
                (ServiceKind::Psis, 7001),
                (ServiceKind::Psws, 7002),
                (ServiceKind::Job, 7000),
                (ServiceKind::Hl7, 2244)
            ]
        );
    }

    #[test]
    fn urls_name_the_farm_port_not_the_first_servers() {
        let c = compile(
            LB,
            "[{kind: PSIS}, {kind: PSWS}]",
            "[{kind: PSIS}, {kind: PSWS, port: 7102}]",
        );
        // app1 serves PSWS on 7002, but the farm listens on the port app2 gives.
        let s = c.snapshot.expect("valid");
        assert_eq!(
            s.connection_strings().psws.as_deref(),
            Some("https://lb.example.eng:7102/psws/api")
        );
    }

    #[test]
    fn two_farms_cannot_share_a_load_balancer_port() {
        let c = compile(
            LB,
            "[{kind: PSIS}, {kind: PSWS}]",
            "[{kind: PSWS}, {kind: CLIENT, port: 7001}]",
        );
        let errors: Vec<_> = c.errors().collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].code, Code::FarmPort);
        assert!(
            errors[0].message.contains("PSIS and CLIENT"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn explicit_settings_are_kept() {
        let c = compile(
            "  loadBalancer:\n    fqdn: lb.example.eng\n    vendor: arr\n    affinity: none\n    idleTimeout: 1h\n    hl7Fqdn: hl7.example.eng\n    render: out/arr\n  hl7: {failover: automatic, preferred: app2, failoverAfter: 5s, failback: automatic}",
            "[{kind: PSIS}, {kind: PSWS}, {kind: HL7}]",
            "[{kind: PSIS}, {kind: PSWS}, {kind: HL7}]",
        );
        let s = c.snapshot.expect("valid");
        let lb = s.installation.load_balancer.as_ref().unwrap();
        assert_eq!(lb.affinity, Affinity::None);
        assert_eq!(lb.idle_timeout, Duration::from_secs(3600));
        assert_eq!(lb.hl7_fqdn, "hl7.example.eng");
        assert_eq!(lb.render, Path::new("out/arr"));
        let hl7 = &s.installation.hl7;
        assert_eq!(hl7.preferred.as_deref(), Some("app2"));
        assert_eq!(hl7.failover_after, Duration::from_secs(5));
    }

    #[test]
    fn unusable_values_are_located_errors() {
        let c = compile(
            "  loadBalancer: {fqdn: lb.example.eng, vendor: nginx, affinity: cookie, idleTimeout: soon, hl7Fqdn: \"10.0.0.1\"}\n  hl7: {failoverAfter: 0s, preferred: app9}",
            "[{kind: PSIS}, {kind: PSWS}, {kind: HL7}]",
            "[{kind: PSIS}, {kind: PSWS}]",
        );
        let codes: Vec<Code> = c.diagnostics.iter().map(|d| d.code).collect();
        assert!(codes.contains(&Code::InvalidValue), "{codes:?}");
        assert!(c.diagnostics.iter().all(|d| d.line > 0 && d.column > 0));
        let c = compile(
            "  loadBalancer: {fqdn: lb.example.eng, idleTimeout: soon, hl7Fqdn: \"10.0.0.1\"}\n  hl7: {failoverAfter: 0s, preferred: app9}",
            "[{kind: PSIS}, {kind: PSWS}, {kind: HL7}]",
            "[{kind: PSIS}, {kind: PSWS}]",
        );
        let mut codes: Vec<Code> = c.diagnostics.iter().map(|d| d.code).collect();
        codes.sort();
        assert_eq!(
            codes,
            [
                Code::InvalidFqdn,
                Code::InvalidDuration,
                Code::InvalidDuration,
                Code::Hl7Preferred
            ]
        );
        let preferred = c.diagnostics.iter().find(|d| d.code == Code::Hl7Preferred);
        assert!(preferred.unwrap().message.contains("is not a Server"));
    }

    #[test]
    fn devices_declared_by_address_need_one() {
        for vendor in ["f5", "citrix-adc"] {
            let c = compile(
                &format!("  loadBalancer: {{fqdn: lb.example.eng, vendor: {vendor}}}"),
                "[{kind: PSIS}, {kind: PSWS}]",
                "[{kind: PSIS}, {kind: PSWS}]",
            );
            let errors: Vec<_> = c.errors().collect();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].code, Code::LoadBalancerSettings);
            assert!(errors[0].message.contains("needs loadBalancer.address"));
        }
        let c = compile(
            "  loadBalancer: {fqdn: lb.example.eng, vendor: f5, address: lb.example.eng}",
            "[{kind: PSIS}, {kind: PSWS}]",
            "[{kind: PSIS}, {kind: PSWS}]",
        );
        assert_eq!(
            c.errors().map(|d| d.code).collect::<Vec<_>>(),
            [Code::InvalidHost]
        );
        let c = compile(
            "  loadBalancer: {fqdn: lb.example.eng, vendor: arr}",
            "[{kind: PSIS}, {kind: PSWS}]",
            "[{kind: PSIS}, {kind: PSWS}]",
        );
        assert!(c.snapshot.is_some(), "ARR needs no address");
    }
}
