//! The HL7 backend of the load balancer: with vendor `haproxy`, switched live over the
//! runtime API (`set server hl7/S state maint|ready`); the rendered vendors have no API,
//! their file routes to the active listener when it is rendered again.

use std::path::Path;

use steward_balancer::haproxy::{AdminState, RuntimeApi};
use steward_model::resource::LbVendor;
use steward_model::Snapshot;

/// HAProxy's name of the HL7 backend (`Farm::id` of HL7's farm).
const BACKEND: &str = "hl7";

pub(crate) enum Backend {
    Haproxy(RuntimeApi),
    /// `arr`, `citrix-adc`, `f5`: re-rendered by the load-balancer controller.
    Rendered,
}

impl Backend {
    /// The installation's HL7 backend; `None` without a load balancer vendor.
    pub(crate) fn of(snapshot: &Snapshot, state_dir: Option<&Path>) -> Option<Self> {
        let lb = snapshot.installation.load_balancer.as_ref()?;
        match lb.vendor? {
            LbVendor::Haproxy => {
                let socket = &lb.haproxy.admin_socket;
                let socket = if socket.is_absolute() {
                    socket.clone()
                } else {
                    state_dir.unwrap_or(Path::new(".")).join(socket)
                };
                Some(Self::Haproxy(RuntimeApi::new(socket)))
            }
            LbVendor::Arr | LbVendor::CitrixAdc | LbVendor::F5 => Some(Self::Rendered),
        }
    }

    /// Take `server` out of the backend. `false`: this vendor has no API to do it with.
    pub(crate) async fn fence(
        &self,
        server: &str,
    ) -> Result<bool, steward_balancer::BalancerError> {
        match self {
            Self::Haproxy(api) => api
                .set_state(BACKEND, server, AdminState::Maint)
                .await
                .map(|()| true),
            Self::Rendered => Ok(false),
        }
    }

    /// Send HL7 traffic to `to` alone.
    pub(crate) async fn route(
        &self,
        to: &str,
        members: &[String],
    ) -> Result<(), steward_balancer::BalancerError> {
        match self {
            Self::Haproxy(api) => api.route_only(BACKEND, to, members).await,
            Self::Rendered => Ok(()),
        }
    }
}
