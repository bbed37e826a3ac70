//! The lab's HAProxy seen from outside, for the HA end-to-end test and benchmark: its
//! runtime API (the admin socket steward configured), its worker, and HTTPS requests
//! through its frontends as a client on the network would make them.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::Lab;

/// The name clients use for the farms (the example's `loadBalancer.fqdn`).
pub const FQDN: &str = "lb.example.eng";

/// Where the lab's HAProxy listens: just below the first server's address.
pub fn address(lab: &Lab) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, lab.n, 10)
}

pub fn admin_socket(lab: &Lab) -> PathBuf {
    lab.state.join("haproxy/admin.sock")
}

pub fn config_file(lab: &Lab) -> PathBuf {
    lab.state.join("haproxy/haproxy.cfg")
}

/// One runtime API command, its answer (`None` while HAProxy does not answer).
pub fn command(lab: &Lab, command: &str) -> Option<String> {
    let mut stream = UnixStream::connect(admin_socket(lab)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(format!("{command}\n").as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The worker's pid: a reload changes it.
pub fn worker_pid(lab: &Lab) -> Option<u32> {
    command(lab, "show info")?
        .lines()
        .find_map(|l| l.strip_prefix("Pid: "))
        .and_then(|p| p.trim().parse().ok())
}

/// `show stat` column `column` of `backend`/`server`.
pub fn stat(lab: &Lab, backend: &str, server: &str, column: &str) -> Option<String> {
    let csv = command(lab, "show stat")?;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let at = |name: &str| header.iter().position(|c| *c == name);
    let (px, sv, col) = (at("pxname")?, at("svname")?, at(column)?);
    lines.find_map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        (f.get(px) == Some(&backend) && f.get(sv) == Some(&server))
            .then(|| f.get(col).map(|s| (*s).to_owned()))
            .flatten()
    })
}

/// Every farm member steward reports, with its state (`None` until HAProxy answered).
pub fn members(status: &Value) -> Vec<(String, String, Option<String>)> {
    status["loadBalancer"]["farms"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| {
            let kind = f["kind"].as_str().unwrap_or_default().to_owned();
            f["members"].as_array().into_iter().flatten().map(move |m| {
                (
                    kind.clone(),
                    m["server"].as_str().unwrap_or_default().to_owned(),
                    m["state"].as_str().map(str::to_owned),
                )
            })
        })
        .collect()
}

/// Whether a service of `server` is where it should be: healthy, or the HL7 standby the
/// failover keeps installed and stopped (the status lists it under `hl7.standby`).
pub fn service_in_place(status: &Value, server: &Value, service: &Value) -> bool {
    service["healthy"] == true
        || (service["kind"] == "HL7"
            && status["hl7"]["standby"]
                .as_array()
                .is_some_and(|standby| standby.contains(&server["name"])))
}

/// Whether every member of every farm is up at the load balancer.
pub fn all_up(status: &Value) -> bool {
    let members = members(status);
    !members.is_empty()
        && members
            .iter()
            .all(|(_, _, state)| state.as_deref() == Some("up"))
}

/// `GET path` through the load balancer's `port` over TLS, verifying the member's
/// certificate for the load balancer's name with the steward CA; the status code.
pub fn get(lab: &Lab, port: u16, path: &str) -> std::io::Result<u16> {
    let addr = SocketAddr::new(IpAddr::V4(address(lab)), port);
    super::https_get(lab.client_tls(), addr, FQDN, path).map(|(status, _)| status)
}
