//! IIS Application Request Routing: the `webFarms` section of `applicationHost.config` and
//! the URL-rewrite rules, as the vendor's High Availability guide has an operator create
//! them by hand (one farm per service, since ARR takes one health URL per farm).
//!
//! The guide's steps, per farm: add both servers with the HTTPS port of the service; let
//! ARR create its rewrite rules; clear "Enable SSL offloading" (the rule forwards over
//! https); remove the rules without SSL and give the SSL rule the condition
//! `{SERVER_PORT}` = the service's port (ADMIN keeps its plain rule, conditioned on port 80);
//! tick Client Affinity; set the Health Test URL, status codes, response match, interval
//! and time-out, and Minimum servers 1. HL7 is TCP and has no ARR farm.

use std::fmt::Write;
use std::time::Duration;

use steward_model::resource::Affinity;
use steward_model::ServiceKind;

use crate::farm::{CheckKind, Farm, Farms, Listener};

/// The fragment to merge into `applicationHost.config` (its `<configuration>` root holds
/// both `webFarms` and `system.webServer/rewrite/globalRules`).
pub fn render(farms: &Farms) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- Written by steward from the desired state: merge into applicationHost.config. -->\n<configuration>\n  <webFarms>\n",
    );
    let http: Vec<(&Farm, &Listener)> = farms
        .farms
        .iter()
        .filter(|f| f.kind != ServiceKind::Hl7)
        .flat_map(|f| f.listeners.iter().filter(|l| l.tls).map(move |l| (f, l)))
        .collect();
    for (farm, listener) in &http {
        web_farm(&mut out, farms, farm, listener);
    }
    out.push_str("  </webFarms>\n  <system.webServer>\n    <rewrite>\n      <globalRules>\n");
    for (farm, listener) in &http {
        rules(&mut out, farm, listener);
    }
    out.push_str("      </globalRules>\n    </rewrite>\n  </system.webServer>\n</configuration>\n");
    out
}

/// The farm's name in IIS: the guide's, with the port when a kind has two HTTPS listeners
/// (EMERGENCY's palm vein port).
fn farm_name(farm: &Farm, listener: &Listener) -> String {
    if listener.slot == 0 {
        farm.title.to_owned()
    } else {
        format!("{} {}", farm.title, listener.port)
    }
}

fn web_farm(out: &mut String, farms: &Farms, farm: &Farm, listener: &Listener) {
    let name = farm_name(farm, listener);
    let _ = writeln!(
        out,
        "    <webFarm name=\"{}\" enabled=\"true\">",
        escape(&name)
    );
    let plain = farm.listeners.iter().find(|l| !l.tls);
    for m in farm.routed() {
        let Some(https) = m.ports.get(listener.slot) else {
            continue;
        };
        let http = plain
            .and_then(|l| m.ports.get(l.slot))
            .copied()
            .unwrap_or(80);
        let _ = writeln!(
            out,
            "      <server address=\"{}\" enabled=\"true\">\n        <applicationRequestRouting httpPort=\"{http}\" httpsPort=\"{https}\" weight=\"100\" />\n      </server>",
            escape(&m.hostname)
        );
    }
    let _ = writeln!(out, "      <applicationRequestRouting>");
    if let CheckKind::Https {
        path,
        accept,
        response_match,
    } = &farm.check.kind
    {
        let port = farm.listeners[0].port;
        let authority = if port == 443 {
            farms.fqdn.clone()
        } else {
            format!("{}:{port}", farms.fqdn)
        };
        let _ = write!(
            out,
            "        <healthCheck url=\"https://{}{}\" interval=\"{}\" timeout=\"{}\" statusCodeRange=\"{}\" minServers=\"1\"",
            escape(&authority),
            escape(path),
            timespan(farm.check.interval),
            timespan(farm.check.timeout),
            escape(&accept.to_string()),
        );
        if let Some(m) = response_match {
            let _ = write!(out, " responseMatch=\"{}\"", escape(m));
        }
        out.push_str(" />\n");
    }
    let cookie = farms.affinity == Affinity::Client;
    let _ = writeln!(
        out,
        "        <affinity useCookie=\"{cookie}\" />\n        <protocol timeout=\"{}\" />\n      </applicationRequestRouting>\n    </webFarm>",
        timespan(farms.idle_timeout)
    );
}

fn rules(out: &mut String, farm: &Farm, listener: &Listener) {
    let name = farm_name(farm, listener);
    let mut rule = |suffix: &str, https: bool, port: u16| {
        let scheme = if https { "https" } else { "http" };
        let on = if https { "on" } else { "off" };
        let _ = writeln!(
            out,
            "        <rule name=\"ARR_{}_loadbalance{suffix}\" enabled=\"true\" patternSyntax=\"Wildcard\" stopProcessing=\"true\">\n          <match url=\"*\" />\n          <conditions>\n            <add input=\"{{HTTPS}}\" pattern=\"{on}\" />\n            <add input=\"{{SERVER_PORT}}\" pattern=\"{port}\" />\n          </conditions>\n          <action type=\"Rewrite\" url=\"{scheme}://{}/{{R:0}}\" />\n        </rule>",
            escape(&name),
            escape(&name)
        );
    };
    rule("_SSL", true, listener.port);
    if listener.slot == 0 {
        if let Some(plain) = farm.listeners.iter().find(|l| !l.tls) {
            rule("", false, plain.port);
        }
    }
}

/// A .NET TimeSpan as IIS writes it: `hh:mm:ss`.
fn timespan(d: Duration) -> String {
    let s = d.as_secs().max(1);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => {
                let _ = write!(out, "&#x{:x};", c as u32);
            }
            // XML 1.0 has no way to carry other control characters, even as references.
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
