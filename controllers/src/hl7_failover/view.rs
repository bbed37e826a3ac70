//! What the HL7 failover knows of the listeners it does not test: kept between passes, so
//! that a steady pass asks only the active listener's agent (every second, on a fleet
//! where 1,000 servers place HL7, listing each was 1,000 listings a second).
//!
//! A standby changes through this daemon's own calls, and also outside it (an agent
//! restart re-adopts a listener that kept running). So the view is taken again:
//! - in full on the first pass, on a new desired state, on a full resync, after a failed
//!   pass, and when a move needs a standby (the chosen one is then read once more right before
//!   anything is fenced or started);
//! - in full, from listings sent since the last full look (mostly the server controller's
//!   own), once it is older than the server controller's period;
//! - for one server, at the next pass, when steward stopped or started its listener,
//!   when its agent did not answer (a fenced listener may still run), and when the server
//!   controller's periodic listing shows its listener otherwise than the view ([`listed`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use steward_agent::api::{ServiceInfo, ServiceStatus};
use steward_model::snapshot::Server;
use steward_model::ServiceKind;
use steward_runtime::Reason;
use tokio::time::Instant;

use super::Hl7Failovers;
use crate::agent::AgentApi;
use crate::context::Context;
use crate::listing::Need;

/// One server's HL7 listener as its agent reported it (shared: every pass copies the view
/// of every HL7 server).
#[derive(Debug, Clone)]
pub(super) enum Seen {
    Unreachable,
    NotInstalled,
    Installing,
    Running(Arc<ServiceInfo>),
    /// Stopped, failed or held.
    Stopped(Arc<ServiceInfo>),
}

impl Seen {
    fn of(services: &[ServiceInfo]) -> Self {
        match services
            .iter()
            .find(|s| s.kind == ServiceKind::Hl7)
            .cloned()
        {
            None => Seen::NotInstalled,
            Some(info) => match info.status {
                ServiceStatus::Running => Seen::Running(Arc::new(info)),
                ServiceStatus::Installing => Seen::Installing,
                ServiceStatus::Stopped | ServiceStatus::Failed => Seen::Stopped(Arc::new(info)),
            },
        }
    }

    /// What a failover decision depends on: whether it runs (which process), or is held.
    fn gist(&self) -> (u8, Option<u32>, bool) {
        match self {
            Seen::Unreachable => (0, None, false),
            Seen::NotInstalled => (1, None, false),
            Seen::Installing => (2, None, false),
            Seen::Running(info) => (3, info.pid, info.held),
            Seen::Stopped(info) => (4, None, info.held),
        }
    }
}

/// One server's HL7 listener in a pass: read now or taken from the view.
pub(super) struct Listener<'a> {
    pub server: &'a Server,
    /// `None`: the agent did not answer.
    pub agent: Option<Arc<dyn AgentApi>>,
    pub seen: Seen,
}

impl Listener<'_> {
    pub fn name(&self) -> &str {
        &self.server.name
    }

    /// Installed, stopped, and its agent answers: it can take over.
    pub fn standby(&self) -> bool {
        self.agent.is_some() && matches!(self.seen, Seen::Stopped(_))
    }

    pub fn held(&self) -> bool {
        matches!(&self.seen, Seen::Stopped(info) if info.held)
    }

    /// From the view, without asking the agent.
    fn kept<'a>(ctx: &Context, server: &'a Server, seen: Seen) -> Listener<'a> {
        let agent = match seen {
            Seen::Unreachable => None,
            _ => ctx.agents.get(server).ok(),
        };
        Listener {
            server,
            agent,
            seen,
        }
    }
}

/// `server`'s listener as its agent lists it, in a listing as fresh as `need`.
pub(super) async fn observe<'a>(ctx: &Context, server: &'a Server, need: Need) -> Listener<'a> {
    let unreachable = |server| Listener {
        server,
        agent: None,
        seen: Seen::Unreachable,
    };
    let Ok(agent) = ctx.agents.get(server) else {
        return unreachable(server);
    };
    let Ok(services) = agent.services_fresh(need).await else {
        return unreachable(server);
    };
    Listener {
        server,
        agent: Some(agent),
        seen: Seen::of(&services),
    }
}

/// The listeners as the last passes left them.
#[derive(Debug)]
struct View {
    /// The desired state's generation they were placed under.
    generation: u64,
    /// When the last full look began.
    taken: Instant,
    /// Listings sent after the last full look (to look again from the server
    /// controller's, not the same ones).
    after: Need,
    seen: BTreeMap<String, Seen>,
}

/// The view, the servers to read again at the next pass, and whether to read them all.
#[derive(Debug, Default)]
pub(crate) struct Views {
    view: Mutex<Option<View>>,
    stale: Mutex<BTreeSet<String>>,
    /// The next pass looks at every listener, in listings as fresh as this.
    again: Mutex<Option<Need>>,
}

impl Views {
    fn view(&self) -> MutexGuard<'_, Option<View>> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stale(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.stale.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn again(&self) -> MutexGuard<'_, Option<Need>> {
        self.again.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next pass looks at every listener afresh (a full resync, a failed pass).
    pub(crate) fn look_again_in_full(&self) {
        *self.again() = Some(Need::now());
    }

    /// Read `server` again at the next pass.
    pub(super) fn mark_stale(&self, server: &str) {
        self.stale().insert(server.to_owned());
    }
}

/// How a pass looks at the listeners besides the active one.
pub(super) enum Look {
    /// Every one, in listings as fresh as this (sent after the pass began, or after the
    /// change that woke it).
    Full(Need),
    /// Every one, in listings sent after the last full look: a backstop, not a fresh look.
    Sweep(Need),
    /// Those of the view, except the stale ones (and those whose agent did not answer),
    /// which are read afresh.
    Kept,
}

/// How this pass looks at the listeners (see the module comment).
pub(super) fn look(ctx: &Context, generation: u64, servers: usize) -> Look {
    if let Some(need) = ctx.hl7.views.again().take() {
        return Look::Full(need);
    }
    let view = ctx.hl7.views.view();
    match view.as_ref() {
        Some(v) if v.generation == generation => {
            if v.taken.elapsed() >= ctx.pace.period(servers) {
                Look::Sweep(v.after)
            } else {
                Look::Kept
            }
        }
        // Its listings may be shared with the other reconciles of the new desired state.
        Some(_) => Look::Full(
            ctx.agents
                .freshness
                .need(Reason::DesiredChanged, Duration::ZERO),
        ),
        None => Look::Full(Need::now()),
    }
}

/// Read the listeners of `servers`: `active` afresh (unless `None`), the others as `look`
/// says.
pub(super) async fn listeners<'a>(
    ctx: &Context,
    servers: &[&'a Server],
    active: Option<&str>,
    look: &Look,
) -> Vec<Listener<'a>> {
    let stale = std::mem::take(&mut *ctx.hl7.views.stale());
    let kept: BTreeMap<String, Seen> = match look {
        Look::Full(_) | Look::Sweep(_) => BTreeMap::new(),
        Look::Kept => ctx
            .hl7
            .views
            .view()
            .as_ref()
            .map(|v| v.seen.clone())
            .unwrap_or_default(),
    };
    let reads = servers.iter().map(|server| {
        let name = server.name.as_str();
        let from_view = match look {
            _ if Some(name) == active => None,
            Look::Full(_) | Look::Sweep(_) => None,
            Look::Kept if stale.contains(name) => None,
            Look::Kept => kept
                .get(name)
                .filter(|seen| !matches!(seen, Seen::Unreachable))
                .cloned(),
        };
        let need = match look {
            Look::Full(need) | Look::Sweep(need) if Some(name) != active => *need,
            _ => Need::now(),
        };
        async move {
            match from_view {
                Some(seen) => Listener::kept(ctx, server, seen),
                None => observe(ctx, server, need).await,
            }
        }
    });
    futures::future::join_all(reads).await
}

/// Keep what this pass saw; `full`: it looked at every listener (from `began`).
pub(super) fn keep(
    ctx: &Context,
    generation: u64,
    listeners: &[Listener<'_>],
    full: Option<Instant>,
) {
    let mut view = ctx.hl7.views.view();
    let (taken, after) = match (full, view.as_ref()) {
        (Some(began), _) => (began, Need::now()),
        (None, Some(v)) if v.generation == generation => (v.taken, v.after),
        // Not looked at in full under this generation (no pass does that): due now.
        (None, _) => (
            Instant::now()
                .checked_sub(Duration::from_secs(3600))
                .unwrap_or_else(Instant::now),
            Need::now(),
        ),
    };
    *view = Some(View {
        generation,
        taken,
        after,
        seen: listeners
            .iter()
            .map(|l| (l.name().to_owned(), l.seen.clone()))
            .collect(),
    });
}

/// The server controller listed `server`: when its HL7 listener is not what the failover
/// last saw (re-adopted after an agent restart, stopped or started by someone else), the
/// failover reads it again at once. The active listener is read at every pass anyway.
pub(crate) fn listed(ctx: &Context, server: &Server, services: &[ServiceInfo]) {
    if server.service(ServiceKind::Hl7).is_none() {
        return;
    }
    if ctx.hl7.get().active.as_deref() == Some(server.name.as_str()) {
        return;
    }
    let now = Seen::of(services);
    let differs = ctx
        .hl7
        .views
        .view()
        .as_ref()
        .and_then(|v| v.seen.get(&server.name))
        .is_some_and(|seen| seen.gist() != now.gist());
    if differs {
        ctx.hl7.views.mark_stale(&server.name);
        ctx.triggers
            .wake::<Hl7Failovers>((), Reason::ObservedChanged);
    }
}
