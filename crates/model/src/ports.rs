//! Deterministic port allocation on one server.
//!
//! An explicit port wins; otherwise the catalog default when free on that server;
//! otherwise the next free port from 7000 up. Explicit and fixed ports are placed first,
//! then defaults in install order, so the same files always give the same ports.

use std::collections::BTreeSet;

use crate::catalog::{PortRule, ServiceKind, FIRST_DYNAMIC_PORT};

/// A service to place: its kind and the port the user wrote, if any.
#[derive(Debug, Clone, Copy)]
pub struct PortRequest {
    pub kind: ServiceKind,
    pub explicit: Option<u16>,
}

/// Ports for each request, in the order given. `reserved` are ports already taken on the
/// server (the agent's). Conflicts between explicit ports are the validator's business; here
/// a conflicting explicit port is still granted so the result stays total.
pub fn allocate(requests: &[PortRequest], reserved: &[u16]) -> Vec<Vec<u16>> {
    let mut taken: BTreeSet<u16> = reserved.iter().copied().collect();
    let mut result: Vec<Vec<u16>> = vec![Vec::new(); requests.len()];
    for (i, r) in requests.iter().enumerate() {
        match (r.kind.spec().ports, r.explicit) {
            (PortRule::Fixed(ports), _) => {
                taken.extend(ports.iter().copied());
                result[i] = ports.to_vec();
            }
            (_, Some(p)) => {
                taken.insert(p);
                result[i].push(p);
            }
            _ => {}
        }
    }
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| requests[i].kind.install_rank());
    for i in order {
        let kind = requests[i].kind;
        let wanted: &[u16] = match kind.spec().ports {
            PortRule::Fixed(_) => continue,
            PortRule::Default(ports) => ports,
            PortRule::NextFree => &[],
        };
        let count = kind.port_count();
        // Ports the user already fixed for this service (only ever the first).
        let mut ports = std::mem::take(&mut result[i]);
        for (slot, &default) in wanted.iter().enumerate().take(count) {
            if slot < ports.len() {
                continue;
            }
            let port = if taken.contains(&default) {
                next_free(&taken)
            } else {
                default
            };
            taken.insert(port);
            ports.push(port);
        }
        while ports.len() < count {
            let port = next_free(&taken);
            taken.insert(port);
            ports.push(port);
        }
        result[i] = ports;
    }
    result
}

fn next_free(taken: &BTreeSet<u16>) -> u16 {
    (FIRST_DYNAMIC_PORT..=u16::MAX)
        .find(|p| !taken.contains(p))
        .unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceKind::*;

    fn req(kind: ServiceKind, explicit: Option<u16>) -> PortRequest {
        PortRequest { kind, explicit }
    }

    #[test]
    fn defaults_when_free() {
        let got = allocate(
            &[
                req(Psis, None),
                req(Psws, None),
                req(Admin, None),
                req(Emergency, None),
                req(Hl7, None),
            ],
            &[7443],
        );
        assert_eq!(
            got,
            vec![
                vec![7001],
                vec![7002],
                vec![443, 80],
                vec![7005, 7006],
                vec![2244]
            ]
        );
    }

    #[test]
    fn job_takes_next_free_from_7000() {
        let got = allocate(&[req(Job, None), req(Psis, None)], &[]);
        assert_eq!(got, vec![vec![7000], vec![7001]]);
    }

    #[test]
    fn explicit_port_displaces_a_default() {
        // PSWS asks for 7001, so PSIS's default is taken and PSIS gets the next free port.
        let got = allocate(
            &[req(Psis, None), req(Psws, Some(7001)), req(Job, None)],
            &[],
        );
        assert_eq!(got, vec![vec![7000], vec![7001], vec![7002]]);
    }

    #[test]
    fn emergency_explicit_first_port_keeps_default_second() {
        let got = allocate(&[req(Emergency, Some(8005))], &[]);
        assert_eq!(got, vec![vec![8005, 7006]]);
    }

    #[test]
    fn allocation_is_independent_of_declaration_order() {
        let a = allocate(
            &[req(Job, None), req(Client, Some(7000)), req(Fhir, None)],
            &[],
        );
        let b = allocate(
            &[req(Fhir, None), req(Client, Some(7000)), req(Job, None)],
            &[],
        );
        assert_eq!(a[0], b[2]);
        assert_eq!(a[2], b[0]);
    }
}
