//! The load-balancer controller (one key): keeps the load balancer's configuration equal
//! to what the desired state renders.
//!
//! Vendor `haproxy`: the configuration is rendered, checked with `haproxy -c`, installed
//! and reloaded through the master socket when the file differs (a new desired state, or
//! someone edited it: drift repaired on every periodic run); a rejected configuration is
//! never installed, so HAProxy keeps serving the last good one, and the failure is the
//! load balancer's condition. Member states come from `show stat`. Reloads are coalesced
//! by the runtime: one key, never two runs at once, requests arriving meanwhile merged
//! into one following run. Rendered vendors: the file is written into the render
//! directory, atomically and only when it changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use steward_balancer::farm::Farms;
use steward_balancer::haproxy::{Applied, Haproxy, MemberState, ServerStat};
use steward_balancer::render::haproxy::{render, HaproxyOptions};
use steward_balancer::render::{rendered, write_if_changed, Written};
use steward_model::resource::LbVendor;
use steward_runtime::Action;

use crate::context::Context;
use crate::error::ControllerError;
use crate::in_force::Accepted;
use crate::reconciler::{Reconciled, Singleton};
use crate::status::{
    EventType, FarmListenerStatus, FarmMemberStatus, FarmStatus, LbMemberState, Phase,
};

mod settings;
use settings::trusted_pem;
pub use settings::BalancerSettings;
pub(crate) use settings::BalancerState;

/// Member states are read again this often while nothing changes.
const REFRESH: Duration = Duration::from_secs(2);

pub(crate) struct LoadBalancers;

/// The condition reason of a daemon that does not lead (controller HA): it writes nothing.
const FOLLOWING: &str = "Following";

impl Singleton for LoadBalancers {
    const NAME: &'static str = "balancer";

    async fn reconcile(accepted: Arc<Accepted>, ctx: &Context) -> Reconciled {
        let snapshot = &accepted.desired.snapshot;
        // Rendered vendors route HL7 to the listener the HL7 failover keeps active.
        let hl7_active = ctx.store.hl7_active();
        let Some(farms) = Farms::from_snapshot(snapshot, hl7_active.as_deref()) else {
            ctx.store.set_load_balancer(None);
            return Ok(Action::await_change());
        };
        let state_dir = ctx.config.state_dir.as_deref().unwrap_or(Path::new("."));
        let vendor = farms.vendor.as_str();
        match farms.vendor {
            LbVendor::Haproxy => {
                // Known before HAProxy answers, so that a failure below has a record to
                // carry its condition.
                ctx.store
                    .set_load_balancer(Some((vendor, farm_status(&farms, &[], None))));
                let (stats, opts) = haproxy(ctx, &accepted, &farms, state_dir).await?;
                ctx.store
                    .set_load_balancer(Some((vendor, farm_status(&farms, &stats, Some(&opts)))));
                if ctx.acting() {
                    ctx.store.load_balancer_condition(
                        Phase::Ready,
                        "Serving",
                        "haproxy serves the rendered configuration",
                    );
                } else {
                    ctx.store.load_balancer_condition(
                        Phase::Ready,
                        FOLLOWING,
                        "this daemon does not lead: the leader configures haproxy",
                    );
                }
                Ok(Action::requeue(ctx.pace.steady(REFRESH)))
            }
            LbVendor::Arr | LbVendor::CitrixAdc | LbVendor::F5 => {
                ctx.store
                    .set_load_balancer(Some((vendor, farm_status(&farms, &[], None))));
                let lb = snapshot.installation.load_balancer.as_ref();
                let dir = resolve(state_dir, lb.map_or(Path::new("lb"), |lb| &lb.render));
                if let Some((name, content)) = rendered(&farms)? {
                    let path = dir.join(name);
                    if !ctx.acting() {
                        ctx.store.load_balancer_condition(
                            Phase::Ready,
                            FOLLOWING,
                            &format!(
                                "this daemon does not lead: the leader writes {}",
                                path.display()
                            ),
                        );
                        return Ok(Action::requeue(ctx.pace.steady(REFRESH)));
                    }
                    if write_if_changed(&path, &content)? == Written::Replaced {
                        ctx.store.event(
                            "load-balancer".into(),
                            EventType::Normal,
                            "Rendered",
                            &format!("wrote {}", path.display()),
                        );
                    }
                    ctx.store.load_balancer_condition(
                        Phase::Ready,
                        "Rendered",
                        &format!(
                            "{} is current; apply it to the {vendor} load balancer",
                            path.display()
                        ),
                    );
                }
                // The file is re-checked periodically: an edit or a deletion is repaired.
                Ok(Action::requeue(ctx.pace.steady(REFRESH)))
            }
        }
    }

    fn error_policy(error: &ControllerError, ctx: &Context) {
        ctx.store
            .load_balancer_condition(Phase::Degraded, error.reason(), &error.to_string());
    }
}

/// Apply the rendered configuration and read the member states.
async fn haproxy(
    ctx: &Context,
    accepted: &crate::in_force::Accepted,
    farms: &Farms,
    state_dir: &Path,
) -> Result<(Vec<ServerStat>, HaproxyOptions), ControllerError> {
    let snapshot = &accepted.desired.snapshot;
    let files = snapshot
        .installation
        .load_balancer
        .as_ref()
        .map(|lb| lb.haproxy.clone())
        .unwrap_or_default();
    let settings = ctx.balancer.settings();
    let h = Haproxy::new(
        settings.binary()?,
        resolve(state_dir, &files.config_file),
        resolve(state_dir, &files.admin_socket),
    );
    let acting = ctx.acting();
    if acting {
        ctx.balancer.check_version(&h).await?;
    }
    // The members' certificates are verified (with SNI and the host name) against the CAs
    // steward trusts for probing, kept beside the configuration.
    let ca_file = h.config_file.with_file_name("trusted-ca.pem");
    if acting {
        let authority = &snapshot.installation.certificate_authority;
        let pem = trusted_pem(&ctx.config.probe_roots, authority, &accepted.desired.dir);
        write_if_changed(&ca_file, &pem)?;
    }
    // Members at the address the daemon reaches their server at (the lab's loopback
    // addresses), else by host name.
    let addresses = farms
        .farms
        .iter()
        .flat_map(|f| &f.members)
        .filter_map(|m| {
            let server = snapshot.servers.get(&m.server)?;
            let ip = (ctx.config.endpoints)(server).connect_ip?;
            Some((m.server.clone(), ip))
        })
        .collect();
    let opts = HaproxyOptions {
        bind: settings.bind_text(),
        map_low_ports: settings.map_low_ports,
        admin_socket: h.admin_socket.clone(),
        state_file: h.state_file.clone(),
        ca_file: Some(ca_file),
        addresses,
    };
    if !acting {
        // A follower (controller HA) changes nothing: it reads member states when an
        // HAProxy answers on this host, and otherwise shows the farms without them.
        let stats = h.runtime().servers().await.unwrap_or_default();
        return Ok((stats, opts));
    }
    let content = render(farms, &opts);
    if h.apply(&content).await? == Applied::Reloaded {
        ctx.store.event(
            "load-balancer".into(),
            EventType::Normal,
            "Reloaded",
            &format!("haproxy reloaded with {}", h.config_file.display()),
        );
    }
    Ok((h.runtime().servers().await?, opts))
}

/// Each farm with every listener's member states; a member's state in the farm is its
/// worst over the listeners (ADMIN's port 80 backend drained is ADMIN drained).
fn farm_status(
    farms: &Farms,
    stats: &[ServerStat],
    opts: Option<&HaproxyOptions>,
) -> Vec<FarmStatus> {
    farms
        .farms
        .iter()
        .map(|farm| {
            let listeners: Vec<FarmListenerStatus> = farm
                .listeners
                .iter()
                .map(|listener| {
                    let backend = farm.id(listener);
                    FarmListenerStatus {
                        port: listener.port,
                        listen_port: opts
                            .map(|o| o.bind_port(listener.port))
                            .and_then(|p| u16::try_from(p).ok()),
                        members: farm
                            .routed()
                            .filter(|m| m.ports.get(listener.slot).is_some())
                            .map(|m| FarmMemberStatus {
                                server: m.server.clone(),
                                state: stats
                                    .iter()
                                    .find(|s| s.backend == backend && s.server == m.server)
                                    .map(|s| lb_state(s.state)),
                            })
                            .collect(),
                    }
                })
                .collect();
            FarmStatus {
                kind: farm.kind,
                port: farm.listeners[0].port,
                members: farm
                    .routed()
                    .map(|m| FarmMemberStatus {
                        server: m.server.clone(),
                        state: worst(listeners.iter().flat_map(|l| {
                            l.members
                                .iter()
                                .filter(|x| x.server == m.server)
                                .map(|x| x.state)
                        })),
                    })
                    .collect(),
                listeners,
            }
        })
        .collect()
}

fn lb_state(state: MemberState) -> LbMemberState {
    match state {
        MemberState::Up => LbMemberState::Up,
        MemberState::Down => LbMemberState::Down,
        MemberState::Drain => LbMemberState::Drain,
        MemberState::Maint => LbMemberState::Maint,
    }
}

/// Down over maintenance over drain over up; unknown when any listener's is.
fn worst(states: impl Iterator<Item = Option<LbMemberState>>) -> Option<LbMemberState> {
    let rank = |s: LbMemberState| match s {
        LbMemberState::Up => 0,
        LbMemberState::Drain => 1,
        LbMemberState::Maint => 2,
        LbMemberState::Down => 3,
    };
    let mut worst = None;
    for state in states {
        let state = state?;
        if worst.is_none_or(|w| rank(state) > rank(w)) {
            worst = Some(state);
        }
    }
    worst
}

fn resolve(state_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        state_dir.join(path)
    }
}

#[cfg(test)]
mod tests;
