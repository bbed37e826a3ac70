//! Reconciling control-loop runtime for Steward.
//!
//! A controller converges each object (a service, a server, a certificate)
//! towards its desired state by calling a user `reconcile` function. This
//! crate owns everything around that call, so every controller gets the same
//! guarantees:
//!
//! * [`scheduler`]: one pending run per key (earliest request wins), never two
//!   concurrent runs of one key, global and per-group concurrency limits.
//! * [`backoff`]: per-key exponential backoff with jitter after failures,
//!   reset by a success.
//! * [`controller`]: the loop that feeds triggers into the scheduler, runs
//!   reconciles in tracing spans, turns their [`Action`] or error into the
//!   next scheduled run, and shuts down gracefully.
//! * [`observer`]: metric hooks that do not tie the runtime to a metrics crate.
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use steward_runtime::{run, Action, CancellationToken, ControllerConfig, ReconcileError, Reason};
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("agent unreachable")]
//! struct Unreachable;
//! impl ReconcileError for Unreachable {
//!     fn metric_label(&self) -> &'static str { "agent_unreachable" }
//! }
//!
//! # async fn demo() {
//! let (tx, rx) = futures::channel::mpsc::unbounded::<(String, Reason)>();
//! tx.unbounded_send(("web-1".into(), Reason::DesiredChanged)).unwrap();
//! let summary = run(
//!     |_key: String, _reason: Reason, _ctx: Arc<()>| async {
//!         Ok::<_, Unreachable>(Action::requeue(Duration::from_secs(600)))
//!     },
//!     Arc::new(()),
//!     rx,
//!     CancellationToken::new(),
//!     ControllerConfig::new("service"),
//! )
//! .await;
//! println!("{} reconciles finished", summary.finished());
//! # }
//! ```

pub mod action;
pub mod backoff;
pub mod config;
pub mod controller;
pub mod key;
pub mod observer;
pub mod scheduler;

pub use action::{Action, ReconcileError};
pub use backoff::{Backoff, BackoffConfig, ConfigError, Jitter};
pub use config::ControllerConfig;
pub use controller::{run, RunSummary, StopCause};
pub use key::{GroupKey, ObjectKey, Reason};
pub use observer::{ControllerObserver, NoopObserver};
pub use scheduler::Scheduler;
pub use tokio_util::sync::CancellationToken;
