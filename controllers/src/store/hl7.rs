//! The HL7 failover's record: the active listener, the standbys, the last failover and
//! the failover's condition. `steward_hl7_active_listener` is derived here, so it always
//! agrees with the status's `hl7.activeListener`.

use steward_model::ServiceKind;

use super::records::Hl7Record;
use super::Store;
use crate::status::{Conditions, Phase};

impl Store {
    /// Change the HL7 record (created empty if there is none); `None` from `change`
    /// removes it (HL7 is placed nowhere). A condition change is an event.
    pub(crate) fn with_hl7<R>(&self, change: impl FnOnce(&mut Option<Hl7Record>) -> R) -> R {
        let mut state = self.lock();
        let before = state.hl7.clone();
        let result = change(&mut state.hl7);
        let after = state.hl7.clone();
        if before == after {
            return result;
        }
        let empty = Conditions::default();
        state.events.note_transition(
            "hl7".to_owned(),
            before.as_ref().map_or(&empty, |r| &r.conditions),
            after.as_ref().map_or(&empty, |r| &r.conditions),
        );
        if let (Some(metrics), Some(before)) = (&self.gauges, &before) {
            // Servers HL7 left lose their series.
            for gone in before
                .servers
                .iter()
                .filter(|s| !after.as_ref().is_some_and(|a| a.servers.contains(s)))
            {
                metrics.forget_hl7_listener(gone);
            }
        }
        self.derive_kind(&state, ServiceKind::Hl7);
        drop(state);
        self.bump();
        result
    }

    /// The HL7 failover's condition.
    pub(crate) fn hl7_condition(&self, phase: Phase, reason: &str, message: &str) {
        self.with_hl7(|record| {
            if let Some(record) = record {
                record.conditions.set(phase, reason, message);
            }
        });
    }

    /// The listener the HL7 failover keeps active, whether or not it answers.
    pub(crate) fn hl7_active(&self) -> Option<String> {
        self.lock().hl7.as_ref().and_then(|r| r.active.clone())
    }
}
