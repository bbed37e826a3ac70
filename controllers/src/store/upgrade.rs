//! The rolling upgrade's record (its status section), the installation's `MixedReleases`
//! condition, and the series derived from them: `steward_upgrade_phase` and
//! `steward_service_release_info`, so they always agree with the status.

use std::collections::BTreeMap;

use steward_agent::api::ServiceInfo;
use steward_model::ServiceKind;

use super::Store;
use crate::service_key::ServiceKey;
use steward_model::upgrade::UpgradePolicy;

use crate::status::{Phase, UpgradePolicyStatus, UpgradeStatus};

/// What one declared service looks like to the upgrade controller.
#[derive(Debug, Clone)]
pub(crate) struct ServiceView {
    pub observed: Option<ServiceInfo>,
    pub verdict: Option<bool>,
    /// An HL7 standby: installed, held stopped, and not the listener the HL7 failover
    /// keeps active (that one, held after its own reinstall, is started and must pass).
    pub standby: bool,
    /// The headline condition's type is Degraded, with this reason and message.
    pub degraded: Option<(String, String)>,
}

impl Store {
    /// The UpgradePolicy in force, for its resource; `None` without one.
    pub(crate) fn set_upgrade_policy(&self, policy: Option<&UpgradePolicy>) {
        let policy = policy.map(|p| UpgradePolicyStatus {
            name: p.name.clone(),
            max_unavailable: p.max_unavailable,
            health_gate_seconds: p.health_gate.as_secs_f64(),
            drain: p.drain,
            drain_timeout_seconds: p.drain_timeout.as_secs_f64(),
            from: p.from.iter().map(|r| r.as_str().to_owned()).collect(),
            upgrade: None,
        });
        self.lock().upgrade_policy = policy;
    }

    /// The upgrade section; `None` (no UpgradePolicy) removes it and its series.
    pub(crate) fn set_upgrade(&self, upgrade: Option<UpgradeStatus>) {
        let mut state = self.lock();
        let before = state.upgrade.clone();
        let mixed = upgrade
            .as_ref()
            .map(|u| u.mixed_releases.clone())
            .unwrap_or_default();
        state.upgrade = upgrade;
        let phase = state.upgrade.as_ref().map(|u| u.phase);
        let changed = before != state.upgrade;
        if let Some(inst) = state.installation.as_mut() {
            let object = format!("installation/{}", inst.name);
            let old = inst.conditions.clone();
            let (mixed_now, _, _) = inst.conditions.headline();
            let was_mixed = inst.conditions.get(crate::ConditionType::Degraded).reason
                == "MixedReleases"
                && mixed_now == crate::ConditionType::Degraded;
            if !mixed.is_empty() {
                inst.conditions.set(
                    Phase::Degraded,
                    "MixedReleases",
                    format!(
                        "servers run different releases outside an upgrade: {}",
                        mixed.join("; ")
                    ),
                );
            } else if was_mixed {
                inst.conditions.set(
                    Phase::Ready,
                    "SameRelease",
                    "every server runs the same release",
                );
            }
            let new = inst.conditions.clone();
            state.events.note_transition(object, &old, &new);
        }
        drop(state);
        if let Some(metrics) = &self.gauges {
            metrics.upgrade_phase(phase);
        }
        if changed {
            self.bump();
        }
    }

    /// The releases installed now, by declared service.
    pub(crate) fn installed_releases(&self) -> BTreeMap<ServiceKey, String> {
        let state = self.lock();
        state
            .services
            .iter()
            .filter(|(_, r)| r.desired.is_some())
            .filter_map(|(k, r)| r.observed.as_ref().map(|o| (k.clone(), o.release.clone())))
            .collect()
    }

    /// One declared service as the upgrade controller judges it.
    pub(crate) fn service_view(&self, server: &str, kind: ServiceKind) -> ServiceView {
        let state = self.lock();
        let key = ServiceKey::new(server, kind);
        match state.services.get(&key) {
            Some(r) => {
                let (t, reason, message) = r.conditions.headline();
                let active = state.hl7.as_ref().and_then(|h| h.active.as_deref());
                ServiceView {
                    observed: r.observed.clone(),
                    verdict: r.verdict(),
                    standby: r.standby() && active != Some(server),
                    degraded: (t == crate::ConditionType::Degraded)
                        .then(|| (reason.to_owned(), message.to_owned())),
                }
            }
            None => ServiceView {
                observed: None,
                verdict: None,
                standby: false,
                degraded: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::store::Hl7Record;

    /// HL7 installed at 6.13.0, held and stopped.
    fn held() -> ServiceInfo {
        crate::fakes::listed(ServiceKind::Hl7, 2244, "C:", "6.13.0", true)
    }

    /// An upgrade reinstalls the active listener held too, until the HL7 failover starts
    /// it again: it is no standby, or its server would pass the health gate with HL7 down.
    #[test]
    fn the_active_listener_held_after_its_reinstall_is_no_standby() {
        let store = Store::default();
        for server in ["app1", "app2"] {
            store.with_service(&ServiceKey::new(server, ServiceKind::Hl7), |r| {
                r.observed = Some(held())
            });
        }
        assert!(
            store.service_view("app1", ServiceKind::Hl7).standby,
            "before the failover's first run, held and stopped is all there is to go by"
        );
        store.with_hl7(|r| {
            *r = Some(Hl7Record {
                active: Some("app1".into()),
                answering: false,
                standby: vec!["app2".into()],
                servers: vec!["app1".into(), "app2".into()],
                last_failover: None,
                conditions: Default::default(),
            })
        });
        assert!(!store.service_view("app1", ServiceKind::Hl7).standby);
        assert!(store.service_view("app2", ServiceKind::Hl7).standby);
        store.with_service(&ServiceKey::new("app2", ServiceKind::Hl7), |r| {
            r.observed.as_mut().unwrap().held = false
        });
        assert!(
            !store.service_view("app2", ServiceKind::Hl7).standby,
            "stopped without a hold is down, not a standby"
        );
    }
}
