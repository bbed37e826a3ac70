//! The `reconcile` span carries controller, key and reason.
//!
//! This lives in its own test binary because it installs a tracing
//! subscriber: tracing caches per-callsite interest process-wide, and a
//! callsite first hit by a parallel test without a subscriber could be cached
//! as disabled, making this check flaky inside the unit-test binary.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use steward_runtime::{run, Action, CancellationToken, ControllerConfig, Reason};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = Vec<(String, String)>;

/// Records the fields of every span named `reconcile`.
struct Capture {
    spans: Arc<Mutex<Vec<Fields>>>,
    next: AtomicU64,
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        if attrs.metadata().name() == "reconcile" {
            let mut fields = Vec::new();
            attrs.record(&mut Collect(&mut fields));
            self.spans.lock().unwrap().push(fields);
        }
        Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst))
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[path = "support/never.rs"]
mod never;
use never::Never;

#[tokio::test(start_paused = true)]
async fn reconcile_span_records_controller_key_and_reason() {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(Capture {
        spans: Arc::clone(&spans),
        next: AtomicU64::new(1),
    });
    let triggers = futures::stream::iter([(42u32, Reason::ObservedChanged)]);
    let summary = run(
        |_key: u32, _reason: Reason, _ctx: Arc<()>| async {
            Ok::<_, Never>(Action::await_change())
        },
        Arc::new(()),
        triggers,
        CancellationToken::new(),
        ControllerConfig::new("service"),
    )
    .await;
    assert_eq!(summary.succeeded, 1);
    let expected: Fields = [
        ("controller", "service"),
        ("key", "42"),
        ("reason", "observed_changed"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(*spans.lock().unwrap(), [expected]);
}
