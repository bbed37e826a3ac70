//! What every reconcile gets, kube-runtime style: a container of the parts, each with one
//! job. The desired state in force ([`InForce`]), the agents, the store, the metrics, the
//! probes ([`Probes`]), the trigger bus through which one controller wakes another, the
//! pace of requeues ([`Pace`]), what was issued ([`IssuedMemos`]) and the CAs probes
//! trust ([`TrustRoots`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::agent::Agents;
use crate::certificate::IssuedMemos;
use crate::config::ControllersConfig;
use crate::database::DatabasePool;
use crate::in_force::InForce;
use crate::metrics::Metrics;
use crate::probes::Probes;
use crate::reconciler::TriggerBus;
use crate::store::Store;
use crate::trust::TrustRoots;

/// Follow-up after an action (install, restart): soon, but give the service a moment.
const SHORT: Duration = Duration::from_millis(500);
/// Re-check of a gate (dependency, certificate) in case no trigger arrives.
const WAIT: Duration = Duration::from_secs(1);

pub(crate) struct Context {
    pub config: ControllersConfig,
    pub desired: InForce,
    pub agents: Agents,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    pub probes: Probes,
    pub triggers: TriggerBus,
    pub pace: Pace,
    pub issued: IssuedMemos,
    /// Which HL7 listener is active and the last failover (persisted).
    pub hl7: crate::hl7_failover::Memory,
    pub trust: TrustRoots,
    /// The connection pool of the database in force.
    pub database: DatabasePool,
    /// Mail notifications: every Notifications object's outbox and the dedup state.
    pub notifier: Arc<steward_notify::Notifier>,
    /// Mails the notifier could not deliver, for the feed to record (taken by `run`).
    pub undelivered: std::sync::Mutex<
        Option<futures::channel::mpsc::UnboundedReceiver<steward_notify::Undelivered>>,
    >,
    /// Stops the notifier's outboxes.
    pub notify_shutdown: tokio_util::sync::CancellationToken,
    /// Where the lab's stand-in directories are, and the CA they are trusted by; unset
    /// outside the lab.
    pub directory_lab: std::sync::OnceLock<crate::config::DirectoryLab>,
    /// How the load balancer runs here (bind address, low ports, binary) and which
    /// HAProxy binary passed the version check.
    pub balancer: crate::balancer::BalancerState,
    /// Controller HA: the leader's epoch; unset for a single daemon, which always acts.
    pub fence: crate::agent::Fence,
    /// The rolling upgrade (persisted rollout, clock, what the service controller may
    /// install).
    pub upgrade: crate::upgrade::Upgrades,
}

impl Context {
    /// Whether this daemon may change anything now (it leads, or runs alone). Agent
    /// changes are fenced by the client itself; this gates what agents cannot fence:
    /// provisioning the database, writing to directories, sending mail.
    pub(crate) fn acting(&self) -> bool {
        self.fence
            .get()
            .is_none_or(|leader| leader.acting_epoch().is_ok())
    }

    /// Stop managing a server that left the desired state and runs nothing any more.
    pub(crate) fn forget_server(&self, name: &str) {
        self.desired.forget_server(name);
        self.agents.forget(name);
        self.probes.stop_server(name);
        self.store.forget_server(name);
        self.issued.forget(name);
    }

    /// Re-read the trusted CA files of the generation in force.
    pub(crate) fn refresh_trust(&self) {
        if let Some(accepted) = self.desired.current() {
            self.trust
                .refresh(&accepted, self.probes.monitor.prober().as_ref());
        }
    }
}

/// How soon objects are looked at again; never later than the resync.
///
/// A settled object is looked at every `resync`, unless the fleet is so large that
/// this would take more than [`RESYNC_RATE`] reconciles a second of a controller: then
/// the period grows with the fleet (11,000 services at the 2 s default asked for 5,500
/// a second, more than the daemon could do). Drift does not wait for it: a failing
/// probe, a verdict change and the server controller's listing wake a service at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub resync: Duration,
    /// What settled services' looks are aligned to (see [`Pace::settled`]).
    pub origin: Instant,
}

/// Periodic looks one controller makes a second, at most, on a large fleet.
pub(crate) const RESYNC_RATE: u32 = 100;

impl Pace {
    pub(crate) fn new(resync: Duration) -> Self {
        Self {
            resync,
            origin: Instant::now(),
        }
    }

    /// After an action, to read back what it did.
    pub(crate) fn short(&self) -> Duration {
        self.resync.min(SHORT)
    }

    /// While a gate is closed, in case nobody wakes the object.
    pub(crate) fn wait(&self) -> Duration {
        self.resync.min(WAIT)
    }

    /// While a gate is closed on a fleet of `services`: [`Pace::wait`], or as long as
    /// keeps the backstop within [`RESYNC_RATE`] looks a second.
    pub(crate) fn gate(&self, services: usize) -> Duration {
        let services = u32::try_from(services).unwrap_or(u32::MAX);
        self.wait()
            .max(Duration::from_secs(1).saturating_mul(services) / RESYNC_RATE)
    }

    /// How long a settled object rests before it is checked again.
    pub(crate) fn steady(&self, interval: Duration) -> Duration {
        self.resync.min(interval)
    }

    /// The period of periodic looks at `objects` objects of one controller: `resync`,
    /// or longer, so that they stay within [`RESYNC_RATE`] a second.
    pub(crate) fn period(&self, objects: usize) -> Duration {
        let objects = u32::try_from(objects).unwrap_or(u32::MAX);
        self.resync
            .max(Duration::from_secs(1).saturating_mul(objects) / RESYNC_RATE)
    }

    /// How long a settled service of `server` rests, in a fleet of `services`: until
    /// the next slot of its server, slots one period apart at a phase drawn from the
    /// server's name. All services of a server then come due together and share one
    /// listing of the agent, while the servers' slots spread over the period. A slot
    /// closer than a quarter period is skipped, so a service looked at just before its
    /// slot is not looked at twice.
    pub(crate) fn settled(&self, server: &str, services: usize) -> Duration {
        let period = self.period(services);
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
        let elapsed = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let into = elapsed.wrapping_add(phase(server)) % period_ms;
        let mut wait = period_ms - into;
        if wait < period_ms / 4 {
            wait += period_ms;
        }
        Duration::from_millis(wait)
    }

    /// How old a listing a periodic look of a fleet of `services` may start from: a
    /// quarter period, within which the services of a server come due together.
    pub(crate) fn listing_age(&self, services: usize) -> Duration {
        self.period(services) / 4
    }
}

/// A stable spread of servers over the period (FNV-1a of the name).
fn phase(server: &str) -> u64 {
    server.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_the_resync_until_the_fleet_would_exceed_the_rate() {
        let pace = Pace::new(Duration::from_secs(2));
        assert_eq!(pace.period(22), Duration::from_secs(2));
        assert_eq!(pace.period(200), Duration::from_secs(2));
        // 11,000 services at 2 s was 5,500 looks a second; now 100.
        assert_eq!(pace.period(11_000), Duration::from_secs(110));
        assert_eq!(pace.listing_age(11_000), Duration::from_millis(27_500));
    }

    #[test]
    fn a_closed_gates_backstop_is_paced_to_the_fleet() {
        let pace = Pace::new(Duration::from_secs(2));
        assert_eq!(pace.gate(22), pace.wait());
        assert_eq!(pace.gate(100), pace.wait());
        assert_eq!(pace.gate(11_000), Duration::from_secs(110));
    }

    #[tokio::test(start_paused = true)]
    async fn a_servers_services_come_due_together_and_servers_spread() {
        let pace = Pace::new(Duration::from_secs(2));
        let fleet = 11_000;
        let period = pace.period(fleet);
        let due = |server: &str| Instant::now() + pace.settled(server, fleet);

        let first = due("sim0001");
        // Looked at again a few seconds later (a probe's verdict, a gate): the same slot.
        tokio::time::advance(Duration::from_secs(3)).await;
        let again = due("sim0001");
        let diff = if again > first {
            again - first
        } else {
            first - again
        };
        assert!(diff.is_zero() || diff == period, "{diff:?}");
        let wait = pace.settled("sim0001", fleet);
        assert!(wait > period / 4 && wait <= period + period / 4, "{wait:?}");

        // A hundred servers do not share one slot.
        let slots: std::collections::BTreeSet<u128> = (1..=100)
            .map(|n| pace.settled(&format!("sim{n:04}"), fleet).as_millis())
            .collect();
        assert!(slots.len() > 90, "{} distinct slots", slots.len());
    }
}
