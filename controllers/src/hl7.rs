//! Which server's HL7 listener is active. For now a rule, not a controller: the first
//! server, by name, whose HL7 is running and passing its MLLP test (with a load balancer
//! several servers may run HL7, and exactly one listener is active). An HL7 failover
//! controller with fencing will replace this module; the status field
//! (`hl7.activeListener`) and the `steward_hl7_active_listener` series stay.

use std::collections::BTreeMap;

use steward_model::ServiceKind;

use crate::service_key::ServiceKey;
use crate::store::ServiceRecord;

/// The active listener among `services`, and every server with an HL7 record.
pub(crate) fn listeners<'a>(
    services: impl Iterator<Item = (&'a ServiceKey, &'a ServiceRecord)>,
) -> (Option<String>, Vec<String>) {
    let mut active = None;
    let mut all = Vec::new();
    for (key, record) in services.filter(|(k, _)| k.kind == ServiceKind::Hl7) {
        if active.is_none() && record.ready() {
            active = Some(key.server.clone());
        }
        all.push(key.server.clone());
    }
    (active, all)
}

/// The active listener of a whole service table.
pub(crate) fn active(services: &BTreeMap<ServiceKey, ServiceRecord>) -> Option<String> {
    listeners(services.iter()).0
}
