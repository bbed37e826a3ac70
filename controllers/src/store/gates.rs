//! The questions controllers gate on (is PSIS ready somewhere? is app1's certificate in
//! place?) and the one the daemon asks (has this generation converged?).

use std::collections::BTreeSet;

use steward_model::resource::Mode;
use steward_model::ServiceKind;

use super::records::{matches_spec, State};
use super::Store;
use crate::directory::RECONCILED;
use crate::service_key::ServiceKey;

impl Store {
    /// Whether the directory's last run found it as declared, under `generation`: then
    /// anything that differs now happened behind steward's back (drift).
    pub(crate) fn directory_settled(&self, name: &str, generation: u64) -> bool {
        self.lock().directories.get(name).is_some_and(|r| {
            r.observed_generation == Some(generation) && r.conditions.headline().1 == RECONCILED
        })
    }

    /// Whether the controllers accepted `generation` and the fleet is what it declares:
    /// every declared service installed as declared, running and passing its health test
    /// on a server whose agent answers; and, with `prune: true` (autoCorrect), nothing
    /// undeclared left to uninstall and no undeclared server left to forget.
    pub fn converged(&self, generation: u64) -> bool {
        let state = self.lock();
        if state.generation != Some(generation) {
            return false;
        }
        let Some(installation) = state.installation.as_ref() else {
            return false;
        };
        let release = installation.release.as_str();
        let pruning = installation.prune && installation.mode == Mode::AutoCorrect;
        // What an unreachable agent last said is no proof of anything now.
        let reachable = |server: &str| {
            state
                .servers
                .get(server)
                .is_some_and(|s| s.agent_up != Some(false))
        };
        let services = state
            .services
            .iter()
            .all(|(key, record)| match &record.desired {
                None => !pruning || record.observed.is_none(),
                Some(desired) => {
                    reachable(&key.server)
                        && (record.ready() || record.standby())
                        && record
                            .observed
                            .as_ref()
                            .is_some_and(|o| matches_spec(o, desired, release))
                }
            });
        // HL7 placed somewhere: its active listener answers (standbys count as in place
        // above, so without this two held listeners would pass). Before the HL7 failover's
        // first run, the services' own verdicts stand.
        let hl7_placed = state
            .services
            .iter()
            .any(|(k, r)| k.kind == ServiceKind::Hl7 && r.desired.is_some());
        let hl7 = !hl7_placed || state.hl7.as_ref().is_none_or(|r| r.answering().is_some());
        services && hl7 && (!pruning || state.servers.values().all(|s| s.desired))
    }

    pub(crate) fn cert_ready(&self, server: &str) -> bool {
        self.lock()
            .servers
            .get(server)
            .is_some_and(|s| s.cert.ready)
    }

    /// Whether `kind` is installed, running and passing its test on some server.
    pub(crate) fn ready_somewhere(&self, kind: ServiceKind) -> bool {
        self.lock().ready_count.get(&kind).is_some_and(|n| *n > 0)
    }

    /// Whether `kind` is ready on a declared placement other than `except` (a
    /// replacement exists, so `except` may go without stranding its dependents).
    pub(crate) fn ready_elsewhere(&self, kind: ServiceKind, except: &ServiceKey) -> bool {
        self.lock()
            .services
            .iter()
            .any(|(k, r)| k.kind == kind && k != except && r.desired.is_some() && r.ready())
    }

    /// Where `kind` is installed, ready or not, as far as the agents last said (service
    /// records and server inventories).
    pub(crate) fn installed_anywhere(&self, kind: ServiceKind) -> Vec<String> {
        let state = self.lock();
        let mut servers: BTreeSet<String> = state
            .services
            .iter()
            .filter(|(k, r)| k.kind == kind && r.observed.is_some())
            .map(|(k, _)| k.server.clone())
            .collect();
        for (name, record) in &state.servers {
            if record.inventory.as_ref().is_some_and(|i| i.contains(&kind)) {
                servers.insert(name.clone());
            }
        }
        servers.into_iter().collect()
    }

    /// Keys of every service record on `server`.
    pub(crate) fn service_keys_on(&self, server: &str) -> Vec<ServiceKey> {
        self.lock()
            .services_on(server)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every service key, declared or not.
    pub(crate) fn service_keys(&self) -> Vec<ServiceKey> {
        self.lock().services.keys().cloned().collect()
    }
}

impl State {
    /// Keeps `ready_count` in step with one record going from `was` to `is` ready.
    pub(super) fn note_ready(&mut self, kind: ServiceKind, was: bool, is: bool) {
        match (was, is) {
            (false, true) => *self.ready_count.entry(kind).or_default() += 1,
            (true, false) => {
                if let Some(n) = self.ready_count.get_mut(&kind) {
                    *n = n.saturating_sub(1);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::listed;

    fn key(server: &str, kind: ServiceKind) -> ServiceKey {
        ServiceKey::new(server, kind)
    }

    fn set_ready(store: &Store, key: &ServiceKey, ready: bool) {
        store.with_service(key, |r| {
            r.observed = Some(listed(key.kind, 7001, "D:", "6.12.1", false));
            r.verdict = Some(ready);
        });
    }

    /// The gates' count follows every way a record becomes or stops being ready: a
    /// verdict, a stopped service, a forgotten service or server.
    #[test]
    fn ready_somewhere_follows_every_change_of_a_record() {
        let store = Store::default();
        let psis = |n: &str| key(n, ServiceKind::Psis);
        assert!(!store.ready_somewhere(ServiceKind::Psis));

        set_ready(&store, &psis("app1"), false);
        assert!(!store.ready_somewhere(ServiceKind::Psis));
        set_ready(&store, &psis("app1"), true);
        set_ready(&store, &psis("app1"), true);
        set_ready(&store, &psis("app2"), true);
        assert!(store.ready_somewhere(ServiceKind::Psis));
        assert!(!store.ready_somewhere(ServiceKind::Psws));

        // Stopped behind steward's back: no longer ready, one instance left.
        store.with_service(&psis("app1"), |r| r.observed = None);
        assert!(store.ready_somewhere(ServiceKind::Psis));
        store.forget_service(&psis("app2"));
        assert!(!store.ready_somewhere(ServiceKind::Psis));

        set_ready(&store, &psis("app3"), true);
        set_ready(&store, &key("app3", ServiceKind::Psws), true);
        store.forget_server("app3");
        assert!(!store.ready_somewhere(ServiceKind::Psis));
        assert!(!store.ready_somewhere(ServiceKind::Psws));
    }
}
