//! The status document as JSON bytes, from the per-server parts kept in
//! [`super::fragments`]: what `/api/v1/status` sends. Byte for byte what serializing
//! [`Store::status`] gives (compacted as the daemon's `?compact=` asks), without building
//! or serializing the unchanged servers again, and with the serializing done after the
//! store's lock is released, so controllers never wait for a client's request.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::Serialize;

use super::fragments::{Form, Rendered, Stamp};
use super::render::server_status;
use super::Store;
use crate::status::{FleetStatus, ServerStatus};

/// Which servers' healthy services a document leaves out.
#[derive(Debug, Clone, Copy)]
pub enum Compaction<'a> {
    /// None: every service of every server.
    Whole,
    /// Every server's but those named.
    Compact(&'a BTreeSet<&'a str>),
    /// As `Compact` when more than this many servers are shown, else `Whole`.
    Above(usize, &'a BTreeSet<&'a str>),
}

/// The controllers' part of the status document, rendered.
#[derive(Debug)]
pub struct FleetJson {
    /// The members of the fleet object (no braces), in pieces to send one after another:
    /// the servers' parts are shared with the store's cache, not copied.
    pub members: Vec<Bytes>,
    /// For a compact document, the services left out per server (servers with none are
    /// not listed); `None` when whole.
    pub healthy_omitted: Option<BTreeMap<String, usize>>,
    /// How many servers' parts had to be rendered (their records changed since the last
    /// document); the others were reused.
    pub rendered: usize,
}

/// A server's part in the form the document shows: kept, or its status taken under the
/// lock, to render outside it.
enum Part {
    Kept(Rendered),
    Changed(Stamp, Form, Box<ServerStatus>),
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("the status document could not be written as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl DocumentError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Json(_) => "json",
        }
    }
}

impl Store {
    /// [`Self::status`] as JSON, compacted as asked.
    pub fn status_json(&self, compaction: Compaction<'_>) -> Result<FleetJson, DocumentError> {
        let (rest, parts, compact) = {
            let state = self.lock();
            let shown: Vec<_> = state.servers.iter().filter(|(_, r)| r.monitor).collect();
            let compact = match compaction {
                Compaction::Whole => None,
                Compaction::Compact(detail) => Some(detail),
                Compaction::Above(servers, detail) => (shown.len() > servers).then_some(detail),
            };
            let parts: Vec<(String, Part)> = shown
                .into_iter()
                .map(|(name, record)| {
                    let form = match compact {
                        Some(detail) if !detail.contains(name.as_str()) => Form::Compact,
                        _ => Form::Whole,
                    };
                    let part = match state.fragments.current(name, form) {
                        Some(kept) => Part::Kept(kept),
                        None => Part::Changed(
                            state.fragments.stamp(name),
                            form,
                            Box::new(server_status(&state, name, record)),
                        ),
                    };
                    (name.clone(), part)
                })
                .collect();
            (
                self.fleet_status(&state, Vec::new()),
                parts,
                compact.is_some(),
            )
        };
        let mut fresh = Vec::new();
        let mut shown = Vec::with_capacity(parts.len());
        for (name, part) in parts {
            let rendered = match part {
                Part::Kept(rendered) => rendered,
                Part::Changed(stamp, form, status) => {
                    let rendered = render(form, *status)?;
                    fresh.push((name.clone(), stamp, rendered.clone()));
                    rendered
                }
            };
            shown.push((name, rendered));
        }
        let count = fresh.len();
        if !fresh.is_empty() {
            let mut state = self.lock();
            for (name, stamp, rendered) in fresh {
                state.fragments.keep(&name, stamp, rendered);
            }
        }
        let healthy_omitted = compact.then(|| {
            shown
                .iter()
                .filter(|(_, r)| r.form == Form::Compact && r.omitted > 0)
                .map(|(name, r)| (name.clone(), r.omitted))
                .collect()
        });
        let mut members = Vec::with_capacity(shown.len() * 2 + 2);
        members.push(head(&rest)?);
        for (i, (_, rendered)) in shown.into_iter().enumerate() {
            if i > 0 {
                members.push(Bytes::from_static(b","));
            }
            members.push(rendered.json);
        }
        members.push(tail(&rest)?);
        Ok(FleetJson {
            members,
            healthy_omitted,
            rendered: count,
        })
    }
}

/// A server's part in `form`: whole, or without its services in place (installed,
/// declared, and healthy or an HL7 standby).
fn render(form: Form, mut status: ServerStatus) -> Result<Rendered, DocumentError> {
    let before = status.services.len();
    if form == Form::Compact {
        status.services.retain(|s| !in_place(s));
    }
    Ok(Rendered {
        form,
        omitted: before - status.services.len(),
        json: Bytes::from(serde_json::to_vec(&status)?),
    })
}

/// What the compact form leaves out: a service as it should be. A held HL7 standby is
/// (at 1,000 servers that is 1,000 services of 0.9 KB each the dashboard need not pull).
fn in_place(s: &crate::status::ServiceHealth) -> bool {
    s.installed && s.desired && (s.healthy == Some(true) || s.standby)
}

/// The fleet object's members up to the servers' list, opened: the field names and order
/// of [`FleetStatus`] (the document's tests compare the two byte for byte).
fn head(rest: &FleetStatus) -> Result<Bytes, DocumentError> {
    let mut out = Vec::with_capacity(4096);
    member(
        &mut out,
        "observedGeneration",
        &rest.observed_generation,
        false,
    )?;
    member(&mut out, "installation", &rest.installation, true)?;
    member(&mut out, "database", &rest.database, true)?;
    out.extend_from_slice(b",\"servers\":[");
    Ok(out.into())
}

/// The servers' list closed, and the members after it.
fn tail(rest: &FleetStatus) -> Result<Bytes, DocumentError> {
    let mut out = Vec::with_capacity(64 * 1024);
    out.push(b']');
    member(&mut out, "serviceKinds", &rest.service_kinds, true)?;
    member(&mut out, "activeDirectory", &rest.active_directory, true)?;
    member(&mut out, "hl7", &rest.hl7, true)?;
    member(&mut out, "loadBalancer", &rest.load_balancer, true)?;
    member(&mut out, "notifications", &rest.notifications, true)?;
    member(&mut out, "upgrade", &rest.upgrade, true)?;
    member(&mut out, "events", &rest.events, true)?;
    Ok(out.into())
}

fn member(
    out: &mut Vec<u8>,
    name: &str,
    value: &impl Serialize,
    comma: bool,
) -> Result<(), DocumentError> {
    if comma {
        out.push(b',');
    }
    serde_json::to_writer(&mut *out, name)?;
    out.push(b':');
    serde_json::to_writer(&mut *out, value)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use steward_model::ServiceKind;
    use time::OffsetDateTime;

    use super::*;
    use crate::service_key::ServiceKey;

    fn joined(json: &FleetJson) -> Vec<u8> {
        let mut out = vec![b'{'];
        for member in &json.members {
            out.extend_from_slice(member);
        }
        out.push(b'}');
        out
    }

    /// A converged fleet of `n` with something to show: a failing service on app0002,
    /// one not installed on app0003, an orphan on app0004.
    fn fleet(n: usize) -> Store {
        let store = crate::bench::store(&crate::bench::snapshot(n));
        store.with_service(&ServiceKey::new("app0002", ServiceKind::Client), |r| {
            r.verdict = Some(false);
        });
        store.with_service(&ServiceKey::new("app0003", ServiceKind::Job), |r| {
            r.observed = None;
        });
        store.with_service(&ServiceKey::new("app0004", ServiceKind::Psis), |r| {
            r.desired = None;
        });
        store
    }

    #[test]
    fn the_whole_document_is_the_status_serialized() {
        let store = fleet(5);
        let json = store.status_json(Compaction::Whole).unwrap();
        assert_eq!(
            String::from_utf8(joined(&json)).unwrap(),
            serde_json::to_string(&store.status()).unwrap()
        );
        assert!(json.healthy_omitted.is_none());
    }

    #[test]
    fn a_compact_document_leaves_out_healthy_services_except_on_detailed_servers() {
        let store = fleet(5);
        let detail = BTreeSet::from(["app0005"]);
        let json = store.status_json(Compaction::Compact(&detail)).unwrap();
        let mut expected = store.status();
        let mut omitted = BTreeMap::new();
        for server in &mut expected.servers {
            if server.name == "app0005" {
                continue;
            }
            let before = server.services.len();
            server.services.retain(|s| !in_place(s));
            omitted.insert(server.name.clone(), before - server.services.len());
        }
        assert_eq!(
            String::from_utf8(joined(&json)).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        assert_eq!(json.healthy_omitted, Some(omitted));
        assert_eq!(
            json.healthy_omitted.as_ref().unwrap()["app0002"],
            ServiceKind::ALL.len() - 1,
            "all but its failing service"
        );

        let above = store.status_json(Compaction::Above(5, &detail)).unwrap();
        assert!(above.healthy_omitted.is_none(), "5 servers are not above 5");
        let above = store.status_json(Compaction::Above(4, &detail)).unwrap();
        assert_eq!(joined(&above), joined(&json));
    }

    #[test]
    fn a_compact_document_leaves_out_a_held_hl7_standby_but_not_a_stopped_service() {
        let store = fleet(2);
        let hl7 = ServiceKey::new("app0001", ServiceKind::Hl7);
        store.with_service(&hl7, |r| {
            let observed = r.observed.as_mut().unwrap();
            observed.held = true;
            observed.status = steward_agent::api::ServiceStatus::Stopped;
        });
        // Stopped without being held: down, so shown.
        store.with_service(&ServiceKey::new("app0002", ServiceKind::Hl7), |r| {
            r.observed.as_mut().unwrap().status = steward_agent::api::ServiceStatus::Stopped;
        });
        let json = store
            .status_json(Compaction::Compact(&BTreeSet::new()))
            .unwrap();
        let all = ServiceKind::ALL.len();
        let omitted = json.healthy_omitted.clone().unwrap();
        assert_eq!(omitted["app0001"], all, "the standby is in place");
        assert_eq!(
            omitted["app0002"],
            all - 2,
            "a stopped service is not, nor app0002's failing CLIENT"
        );
        let doc: serde_json::Value = serde_json::from_slice(&joined(&json)).unwrap();
        let mut shown: Vec<_> = doc["servers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["services"].as_array().unwrap().iter())
            .map(|s| s["kind"].as_str().unwrap().to_owned())
            .collect();
        shown.sort();
        assert_eq!(shown, ["CLIENT", "HL7"]);
        // The whole form still lists the standby, without a `standby` member.
        let whole = store.status_json(Compaction::Whole).unwrap();
        let text = String::from_utf8(joined(&whole)).unwrap();
        assert!(!text.contains("\"standby\":true"), "{text}");
    }

    #[test]
    fn a_document_renders_only_the_servers_whose_records_changed() {
        let store = fleet(5);
        assert_eq!(store.status_json(Compaction::Whole).unwrap().rendered, 5);
        assert_eq!(store.status_json(Compaction::Whole).unwrap().rendered, 0);

        // A probe with the same outcome is no change to notify, but its time is shown.
        let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
        let key = ServiceKey::new("app0003", ServiceKind::Psis);
        store.with_service(&key, |r| {
            if let Some(probe) = r.last_probe.as_mut() {
                probe.time = later;
            }
        });
        let json = store.status_json(Compaction::Whole).unwrap();
        assert_eq!(json.rendered, 1);
        assert_eq!(joined(&json), serde_json::to_vec(&store.status()).unwrap());

        store.with_server("app0001", |r| r.agent_up = Some(false));
        let json = store.status_json(Compaction::Whole).unwrap();
        assert_eq!(json.rendered, 1, "its services' health is unknown now");
        assert_eq!(joined(&json), serde_json::to_vec(&store.status()).unwrap());

        store.forget_service(&ServiceKey::new("app0002", ServiceKind::Client));
        assert_eq!(store.status_json(Compaction::Whole).unwrap().rendered, 1);
        store.forget_server("app0005");
        let json = store.status_json(Compaction::Whole).unwrap();
        assert_eq!(json.rendered, 0, "the others are unchanged");
        assert_eq!(joined(&json), serde_json::to_vec(&store.status()).unwrap());

        // Each form is rendered once, the first time it is asked for.
        let none = BTreeSet::new();
        assert_eq!(
            store
                .status_json(Compaction::Compact(&none))
                .unwrap()
                .rendered,
            4
        );
        assert_eq!(
            store
                .status_json(Compaction::Compact(&none))
                .unwrap()
                .rendered,
            0
        );
        assert_eq!(store.status_json(Compaction::Whole).unwrap().rendered, 0);

        store.sync_desired(2, &crate::bench::snapshot(5));
        let json = store.status_json(Compaction::Whole).unwrap();
        assert_eq!(json.rendered, 5, "a new desired state changes every server");
        assert_eq!(joined(&json), serde_json::to_vec(&store.status()).unwrap());
    }
}
