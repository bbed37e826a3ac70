//! The load balancer's record: its farms with member states, and its conditions. The
//! `steward_lb_member_up` series are derived here, so they always agree with the status.

use steward_model::ServiceKind;

use super::records::LoadBalancerRecord;
use super::Store;
use crate::status::{FarmStatus, LbMemberState, Phase};

impl Store {
    /// The farms as last observed; `None` when no vendor is configured (the record, its
    /// conditions and series go).
    pub(crate) fn set_load_balancer(&self, farms: Option<(&'static str, Vec<FarmStatus>)>) {
        let mut state = self.lock();
        let before = state.load_balancer.clone();
        state.load_balancer = farms.map(|(vendor, farms)| {
            let conditions = before
                .as_ref()
                .map(|r| r.conditions.clone())
                .unwrap_or_default();
            LoadBalancerRecord {
                vendor,
                farms,
                conditions,
            }
        });
        if let Some(metrics) = &self.gauges {
            // A member whose state is unknown (a rendered vendor steward does not reach,
            // an HAProxy that has not answered) has no series: 0 would page someone.
            let members = |r: &Option<LoadBalancerRecord>| -> Vec<(ServiceKind, String, bool)> {
                r.iter()
                    .flat_map(|r| &r.farms)
                    .flat_map(|f| {
                        f.members.iter().filter_map(move |m| {
                            let up = m.state? == LbMemberState::Up;
                            Some((f.kind, m.server.clone(), up))
                        })
                    })
                    .collect()
            };
            let now = members(&state.load_balancer);
            // Members that left a farm (or a load balancer that went) leave no series.
            for (kind, server, _) in members(&before) {
                if !now.iter().any(|(k, s, _)| *k == kind && *s == server) {
                    metrics.lb_member(kind, &server, None);
                }
            }
            for (kind, server, up) in &now {
                metrics.lb_member(*kind, server, Some(*up));
            }
        }
        let changed = state.load_balancer != before;
        drop(state);
        if changed {
            self.bump();
        }
    }

    /// The load balancer's condition (ignored while no vendor is configured).
    pub(crate) fn load_balancer_condition(&self, phase: Phase, reason: &str, message: &str) {
        let changed = self
            .lock()
            .load_balancer
            .as_mut()
            .is_some_and(|r| r.conditions.set(phase, reason, message));
        if changed {
            self.bump();
        }
    }
}
