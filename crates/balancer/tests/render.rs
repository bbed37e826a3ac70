//! Golden files for every vendor, and each output checked by a real parser: HAProxy's own
//! `haproxy -c`, an XML parser for ARR, F5's published AS3 JSON Schema for the declaration.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_balancer::render::{arr, as3, haproxy, nitro};
use steward_balancer::BalancerError;
use support::{farms, golden};

const HAPROXY: &str = "  loadBalancer: {fqdn: lb.example.eng, vendor: haproxy}";
const ARR: &str = "  loadBalancer: {fqdn: lb.example.eng, vendor: arr}";
const CITRIX: &str =
    "  loadBalancer: {fqdn: lb.example.eng, vendor: citrix-adc, address: 192.0.2.10}";
const F5: &str = "  loadBalancer: {fqdn: lb.example.eng, vendor: f5, address: 192.0.2.10, hl7Fqdn: patientsecurehl7.example.eng, idleTimeout: 1h}";

fn haproxy_options(dir: &Path) -> haproxy::HaproxyOptions {
    haproxy::HaproxyOptions {
        bind: "127.0.0.10".into(),
        map_low_ports: true,
        admin_socket: dir.join("admin.sock"),
        state_file: dir.join("server-state"),
        ca_file: None,
        ..Default::default()
    }
}

#[test]
fn haproxy_cfg_golden() {
    let cfg = haproxy::render(&farms(HAPROXY), &haproxy_options(Path::new("/run/steward")));
    golden("haproxy.cfg", &cfg);
    // HL7's backend lists the standby too: the failover moves traffic over the runtime
    // API (`set server hl7/app1 state ready`), which needs the server there.
    let hl7 = cfg.split("\nbackend hl7\n").nth(1).unwrap();
    assert!(
        hl7.contains("server app2 ") && hl7.contains("server app1 "),
        "{hl7}"
    );
    // ADMIN's 443 is served on 10443 in the lab, by the load balancer and by its members
    // (the lab's agents map it the same way), and its 80 is tested on 443 over TLS.
    assert!(cfg.contains("bind 127.0.0.10:10443\n"));
    assert!(
        cfg.contains("server app1 app1.example.eng:10080 check port 10443 check-ssl verify none")
    );
    // The HealthCheck override reaches the farm.
    let psws = cfg.split("\nbackend psws\n").nth(1).unwrap();
    assert!(
        psws.contains("default-server inter 5000ms fall 2 rise 2"),
        "{psws}"
    );
}

#[test]
fn haproxy_accepts_the_configuration() {
    let Some(bin) = steward_testkit::require_tool("haproxy", "haproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut f = farms(HAPROXY);
    // The fixture's names do not resolve here; HAProxy resolves members when it parses.
    for farm in &mut f.farms {
        for m in &mut farm.members {
            m.hostname = "localhost".into();
        }
    }
    let mut opts = haproxy_options(dir.path());
    for ca in [
        None,
        Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt")),
    ] {
        opts.ca_file = ca;
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, haproxy::render(&f, &opts)).unwrap();
        let out = std::process::Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "haproxy -c refused it:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn timeouts_are_at_least_the_idle_timeout() {
    let cfg = haproxy::render(&farms(HAPROXY), &haproxy_options(Path::new("/run")));
    assert!(cfg.contains("timeout client 1860s\n") && cfg.contains("timeout server 1860s\n"));
}

#[test]
fn arr_golden_and_well_formed() {
    let xml = arr::render(&farms(ARR));
    golden("applicationHost.webFarms.config", &xml);
    roxmltree::Document::parse(&xml).expect("well-formed XML");
}

/// The guide's settings for ARR, point by point, read back from the parsed XML.
#[test]
fn arr_matches_the_guides_settings() {
    let xml = arr::render(&farms(ARR));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let farms: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("webFarm"))
        .collect();
    let named = |name: &str| {
        *farms
            .iter()
            .find(|f| f.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no farm {name}"))
    };
    let rules: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rule"))
        .collect();
    let rule = |name: &str| {
        *rules
            .iter()
            .find(|r| r.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no rule {name}"))
    };
    let conditions = |r: roxmltree::Node<'_, '_>| -> Vec<(String, String)> {
        r.descendants()
            .filter(|c| c.has_tag_name("add"))
            .map(|c| {
                (
                    c.attribute("input").unwrap().into(),
                    c.attribute("pattern").unwrap().into(),
                )
            })
            .collect()
    };

    // 1. One farm per service, named as in the guide (HL7 is TCP: no ARR farm); the
    //    palm vein port of EMERGENCY is a farm of its own.
    let names: Vec<&str> = farms.iter().map(|f| f.attribute("name").unwrap()).collect();
    assert_eq!(
        names,
        [
            "PatientSecure Identity Server",
            "PatientSecure Web Services",
            "PatientSecure User Interface Server",
            "PatientSecure Reporting Service",
            "PatientSecure Admin Console",
            "PatientSecure Emergency Search Service",
            "PatientSecure Emergency Search Service 7006",
            "PatientSecure System Health Service",
            "PatientSecure FHIR Service",
            "PatientSecure EMPI Service",
            "PatientSecure Job Scheduler",
        ]
    );
    // 2. "Online" is selected and both application servers are added.
    let psis = named("PatientSecure Identity Server");
    assert_eq!(psis.attribute("enabled"), Some("true"));
    let servers: Vec<&str> = psis
        .children()
        .filter(|c| c.has_tag_name("server"))
        .map(|s| s.attribute("address").unwrap())
        .collect();
    assert_eq!(servers, ["app1.example.eng", "app2.example.eng"]);
    // 3. Advanced settings: the HTTPS port of the service, httpPort 80, weight 100.
    let arr = child(
        psis.children().find(|c| c.has_tag_name("server")).unwrap(),
        "applicationRequestRouting",
    )
    .unwrap();
    assert_eq!(
        (
            arr.attribute("httpsPort"),
            arr.attribute("httpPort"),
            arr.attribute("weight")
        ),
        (Some("7001"), Some("80"), Some("100"))
    );
    // 4. SSL offloading cleared: the rule forwards over https, not http.
    let ssl = rule("ARR_PatientSecure Identity Server_loadbalance_SSL");
    assert_eq!(
        child(ssl, "action").unwrap().attribute("url"),
        Some("https://PatientSecure Identity Server/{R:0}")
    );
    // 5. The rules without SSL are removed (ADMIN keeps its own for port 80, below).
    assert!(!rules
        .iter()
        .any(|r| r.attribute("name") == Some("ARR_PatientSecure Identity Server_loadbalance")));
    // 6. The SSL rule matches every URL path (*) with the condition {SERVER_PORT} = port.
    assert_eq!(child(ssl, "match").unwrap().attribute("url"), Some("*"));
    assert_eq!(ssl.attribute("patternSyntax"), Some("Wildcard"));
    assert!(conditions(ssl).contains(&("{SERVER_PORT}".into(), "7001".into())));
    // 7. ADMIN: the plain rule with {SERVER_PORT} 80, the SSL rule with 443.
    let admin_plain = rule("ARR_PatientSecure Admin Console_loadbalance");
    assert!(conditions(admin_plain).contains(&("{SERVER_PORT}".into(), "80".into())));
    let admin_ssl = rule("ARR_PatientSecure Admin Console_loadbalance_SSL");
    assert!(conditions(admin_ssl).contains(&("{SERVER_PORT}".into(), "443".into())));
    // 8. Client Affinity ticked.
    assert_eq!(
        child(psis, "affinity").unwrap().attribute("useCookie"),
        Some("true")
    );
    // 9. Health test: URL at the load balancer, response match, status codes, interval,
    //    time-out, minimum servers 1.
    let hc = child(psis, "healthCheck").unwrap();
    assert_eq!(
        hc.attribute("url"),
        Some("https://lb.example.eng:7001/identityserver")
    );
    assert_eq!(hc.attribute("responseMatch"), Some("IdentityServer4"));
    assert_eq!(hc.attribute("statusCodeRange"), Some("200-399"));
    assert_eq!(hc.attribute("interval"), Some("00:00:10"));
    assert_eq!(hc.attribute("timeout"), Some("00:00:05"));
    assert_eq!(hc.attribute("minServers"), Some("1"));
    let psws = child(named("PatientSecure Web Services"), "healthCheck").unwrap();
    assert_eq!(
        psws.attribute("url"),
        Some("https://lb.example.eng:7002/psws/api/public/status")
    );
    assert_eq!(psws.attribute("statusCodeRange"), Some("200-302"));
    let admin = child(named("PatientSecure Admin Console"), "healthCheck").unwrap();
    assert_eq!(
        admin.attribute("url"),
        Some("https://lb.example.eng/AdminConsole")
    );
    // 10. Time-outs at least 1860 s (a console session lasts 30 minutes).
    for farm in &farms {
        assert_eq!(
            child(*farm, "protocol").unwrap().attribute("timeout"),
            Some("00:31:00")
        );
    }
}

#[test]
fn arr_escapes_what_xml_reserves() {
    let mut f = farms(ARR);
    if let steward_balancer::farm::CheckKind::Https { response_match, .. } =
        &mut f.farms[0].check.kind
    {
        *response_match = Some("<a href=\"x\">&'\u{1}".into());
    }
    let xml = arr::render(&f);
    let doc = roxmltree::Document::parse(&xml).expect("well-formed despite markup in the match");
    let hc = doc
        .descendants()
        .find(|n| n.has_tag_name("healthCheck"))
        .unwrap();
    assert_eq!(
        hc.attribute("responseMatch"),
        Some("<a href=\"x\">&'\u{fffd}")
    );
}

#[test]
fn nitro_golden() {
    let json = nitro::render(&farms(CITRIX)).unwrap();
    golden("nitro.json", &json);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let vserver = &doc["lbvserver"][0];
    assert_eq!(vserver["persistencetype"], "SOURCEIP");
    assert_eq!(vserver["timeout"], 10);
    assert_eq!(vserver["servicetype"], "SSL_BRIDGE");
    assert_eq!(vserver["ipv46"], "192.0.2.10");
    assert_eq!(doc["servicegroup"][0]["cltimeout"], 1860);
}

fn as3_schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/test-data/as3")
        .join(format!("as3-schema-{}-10.json", as3::SCHEMA_VERSION));
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::draft7::new(&schema).expect("F5's schema compiles")
}

#[test]
fn as3_golden_and_valid_against_f5s_schema() {
    let json = as3::render(&farms(F5)).unwrap();
    golden("as3.json", &json);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["declaration"]["updateMode"], "selective");
    let errors: Vec<String> = as3_schema()
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let app = &doc["declaration"]["PatientSecure"]["Farms"];
    assert_eq!(app["tcp_idle"]["idleTimeout"], 3600);
    assert_eq!(app["psis"]["persistenceMethods"][0], "source-address");
}

#[test]
fn the_schema_catches_a_broken_declaration() {
    // The validation above can fail: a wrong updateMode is refused by the same schema.
    let json = as3::render(&farms(F5)).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["declaration"]["updateMode"] = "partial".into();
    assert!(!as3_schema().is_valid(&doc));
}

#[test]
fn an_empty_declaration_is_refused() {
    let mut f = farms(F5);
    for farm in &mut f.farms {
        farm.members.clear();
    }
    assert!(matches!(
        as3::render(&f),
        Err(BalancerError::EmptyDeclaration(_))
    ));
    assert!(matches!(
        nitro::render(&f),
        Err(BalancerError::EmptyDeclaration(_))
    ));
}

#[test]
fn renderers_are_deterministic() {
    let a = farms(F5);
    let b = farms(F5);
    assert_eq!(as3::render(&a).unwrap(), as3::render(&b).unwrap());
    assert_eq!(a.idle_timeout, Duration::from_secs(3600));
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.descendants().find(|c| c.has_tag_name(tag))
}

/// Members at the addresses the daemon reaches their servers at (the lab's loopback
/// addresses), verified for their host names; IPv6 in brackets. HAProxy accepts it.
#[test]
fn haproxy_members_at_given_addresses_are_verified_by_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = haproxy_options(dir.path());
    opts.ca_file = Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    opts.addresses = [
        ("app1".to_owned(), "127.0.0.11".parse().unwrap()),
        ("app2".to_owned(), "::1".parse().unwrap()),
    ]
    .into();
    let cfg = haproxy::render(&farms(HAPROXY), &opts);
    assert!(
        cfg.contains("server app1 127.0.0.11:7001 check check-ssl verify required ca-file '/etc/ssl/certs/ca-certificates.crt' check-sni app1.example.eng verifyhost app1.example.eng\n"),
        "{cfg}"
    );
    assert!(cfg.contains("server app2 [::1]:7001 check "), "{cfg}");
    assert!(!cfg.contains("example.eng:"), "{cfg}");
    let Some(bin) = steward_testkit::require_tool("haproxy", "haproxy") else {
        return;
    };
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, &cfg).unwrap();
    let out = std::process::Command::new(&bin)
        .args(["-c", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
