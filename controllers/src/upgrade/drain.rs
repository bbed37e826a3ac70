//! Taking a server out of the load balancer and back, through a small trait the balancer
//! implements: HAProxy through its runtime API (`set server B/S state drain|ready` on
//! every farm the server is a member of, sessions from `show stat`'s `scur`). Rendered
//! vendors (ARR, Citrix, F5) are applied by an operator, so steward cannot drain them:
//! the upgrade goes on without a drain and says so in its log.

use std::path::Path;

use async_trait::async_trait;
use steward_balancer::farm::Farms;
use steward_balancer::haproxy::{AdminState, RuntimeApi};
use steward_balancer::BalancerError;
use steward_model::resource::LbVendor;
use steward_model::Snapshot;

#[async_trait]
pub(crate) trait Drainer: Send + Sync {
    /// Stop (`true`) or resume (`false`) sending new sessions to `server`.
    async fn set_drained(&self, server: &str, drained: bool) -> Result<(), BalancerError>;
    /// Sessions still open on `server`, over all its farms.
    async fn sessions(&self, server: &str) -> Result<u64, BalancerError>;
}

/// A live HAProxy's runtime API, and the backends of each server.
pub(crate) struct HaproxyDrainer {
    api: RuntimeApi,
    /// (backend, server) of every routed member.
    members: Vec<(String, String)>,
}

impl HaproxyDrainer {
    /// The drainer of the snapshot's load balancer; `None` when it is not a live HAProxy.
    pub(crate) fn of(snapshot: &Snapshot, state_dir: &Path) -> Option<Self> {
        let farms = Farms::from_snapshot(snapshot, None)?;
        if farms.vendor != LbVendor::Haproxy {
            return None;
        }
        let socket = snapshot
            .installation
            .load_balancer
            .as_ref()
            .map(|lb| lb.haproxy.admin_socket.clone())?;
        let socket = if socket.is_absolute() {
            socket
        } else {
            state_dir.join(socket)
        };
        let members = farms
            .farms
            .iter()
            .flat_map(|farm| {
                farm.listeners.iter().flat_map(move |l| {
                    let backend = farm.id(l);
                    farm.routed()
                        .map(move |m| (backend.clone(), m.server.clone()))
                })
            })
            .collect();
        Some(Self {
            api: RuntimeApi::new(socket),
            members,
        })
    }

    fn backends_of<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.members
            .iter()
            .filter(move |(_, s)| s == server)
            .map(|(b, _)| b.as_str())
    }
}

#[async_trait]
impl Drainer for HaproxyDrainer {
    async fn set_drained(&self, server: &str, drained: bool) -> Result<(), BalancerError> {
        let state = if drained {
            AdminState::Drain
        } else {
            AdminState::Ready
        };
        for backend in self.backends_of(server) {
            self.api.set_state(backend, server, state).await?;
        }
        Ok(())
    }

    async fn sessions(&self, server: &str) -> Result<u64, BalancerError> {
        let backends: Vec<&str> = self.backends_of(server).collect();
        Ok(self
            .api
            .servers()
            .await?
            .into_iter()
            .filter(|s| s.server == server && backends.contains(&s.backend.as_str()))
            .map(|s| s.sessions)
            .sum())
    }
}
