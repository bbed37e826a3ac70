//! Metric families with typed label sets: a gauge, a counter or a histogram, each series
//! keyed by a [`LabelSet`] value and kept with its label text rendered once, so a scrape
//! writes bytes and formats nothing but numbers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::exposition::{braced, label_pairs, push_float, push_header, Value};
use super::registry::Family;

/// The labels of one family: their names, and each series' values in the same order.
/// Implemented by small structs and enums whose values come from fixed sets or the
/// desired state's names, so that a label can never carry free text.
pub trait LabelSet: Ord + Clone + Send + Sync + 'static {
    const NAMES: &'static [&'static str];
    fn values(&self) -> Vec<&str>;
}

/// The one series of a family without labels.
impl LabelSet for () {
    const NAMES: &'static [&'static str] = &[];
    fn values(&self) -> Vec<&str> {
        Vec::new()
    }
}

struct Series<T> {
    /// `a="x",b="y"`, empty without labels.
    pairs: String,
    value: T,
}

struct Table<L, T> {
    name: &'static str,
    help: &'static str,
    series: Mutex<BTreeMap<L, Series<T>>>,
}

impl<L: LabelSet, T> Table<L, T> {
    fn new(name: &'static str, help: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            help,
            series: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<L, Series<T>>> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `change` on the series of `labels`, created with `initial` when it is new.
    fn with(&self, labels: &L, initial: impl FnOnce() -> T, change: impl FnOnce(&mut T)) {
        let mut series = self.lock();
        if let Some(s) = series.get_mut(labels) {
            change(&mut s.value);
            return;
        }
        let mut value = initial();
        change(&mut value);
        let pairs = label_pairs(L::NAMES, &labels.values());
        series.insert(labels.clone(), Series { pairs, value });
    }

    fn remove(&self, labels: &L) {
        self.lock().remove(labels);
    }

    /// Header and one line per series; nothing at all for a family without series.
    fn encode(
        &self,
        kind: &str,
        chunks: &mut Vec<Vec<u8>>,
        line: impl Fn(&mut Vec<u8>, &Series<T>),
    ) {
        let series = self.lock();
        if series.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(256 + series.len() * (self.name.len() + 48));
        push_header(&mut out, self.name, self.help, kind);
        for s in series.values() {
            line(&mut out, s);
        }
        chunks.push(out);
    }
}

fn push_sample(out: &mut Vec<u8>, name: &str, suffix: &str, pairs: &str, value: Value) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(braced(pairs).as_bytes());
    out.push(b' ');
    value.push(out);
    out.push(b'\n');
}

/// A count as a sample value (beyond i64, which no counter here reaches, it stays at the top).
fn whole(count: u64) -> Value {
    Value::Int(i64::try_from(count).unwrap_or(i64::MAX))
}

/// A value that goes up and down; a series exists from its first `set` to its `remove`.
pub struct Gauge<L: LabelSet>(Arc<Table<L, Value>>);

impl<L: LabelSet> Clone for Gauge<L> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<L: LabelSet> Gauge<L> {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Self(Table::new(name, help))
    }

    pub fn set(&self, labels: &L, value: impl Into<Value>) {
        let value = value.into();
        self.0.with(labels, || value, |v| *v = value);
    }

    pub fn remove(&self, labels: &L) {
        self.0.remove(labels);
    }
}

impl<L: LabelSet> Family for Gauge<L> {
    fn names(&self) -> Vec<&'static str> {
        vec![self.0.name]
    }

    fn encode(&self, chunks: &mut Vec<Vec<u8>>) {
        let name = self.0.name;
        self.0.encode("gauge", chunks, |out, s| {
            push_sample(out, name, "", &s.pairs, s.value);
        });
    }
}

/// A count that only goes up. Its name ends in `_total`, as the contract spells it.
pub struct Counter<L: LabelSet>(Arc<Table<L, u64>>);

impl<L: LabelSet> Clone for Counter<L> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<L: LabelSet> Counter<L> {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Self(Table::new(name, help))
    }

    pub fn inc(&self, labels: &L) {
        self.inc_by(labels, 1);
    }

    pub fn inc_by(&self, labels: &L, by: u64) {
        self.0.with(labels, || 0, |v| *v = v.saturating_add(by));
    }

    /// Export the series at 0 before its first event, so that `rate()` and alerts see
    /// that first event.
    pub fn start_at_zero(&self, labels: &L) {
        self.inc_by(labels, 0);
    }
}

impl<L: LabelSet> Family for Counter<L> {
    fn names(&self) -> Vec<&'static str> {
        vec![self.0.name]
    }

    fn encode(&self, chunks: &mut Vec<Vec<u8>>) {
        let name = self.0.name;
        self.0.encode("counter", chunks, |out, s| {
            push_sample(out, name, "", &s.pairs, whole(s.value));
        });
    }
}

struct Buckets {
    /// Observations at or below each bound (not cumulative; summed when encoded).
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

/// How long things took, in buckets with upper bounds `bounds` (and `+Inf`).
pub struct Histogram<L: LabelSet> {
    table: Arc<Table<L, Buckets>>,
    bounds: &'static [f64],
    /// `le` of each bound as printed, then `+Inf`.
    le: Arc<[String]>,
}

impl<L: LabelSet> Clone for Histogram<L> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
            bounds: self.bounds,
            le: Arc::clone(&self.le),
        }
    }
}

impl<L: LabelSet> Histogram<L> {
    /// `bounds` ascending.
    pub fn new(name: &'static str, help: &'static str, bounds: &'static [f64]) -> Self {
        let le = bounds
            .iter()
            .map(|b| {
                let mut out = Vec::new();
                push_float(&mut out, *b);
                String::from_utf8(out).unwrap_or_default()
            })
            .chain(["+Inf".to_owned()])
            .collect();
        Self {
            table: Table::new(name, help),
            bounds,
            le,
        }
    }

    pub fn observe(&self, labels: &L, value: f64) {
        let slots = self.bounds.len();
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(slots);
        self.table.with(
            labels,
            || Buckets {
                counts: vec![0; slots + 1],
                count: 0,
                sum: 0.0,
            },
            |b| {
                b.counts[slot] += 1;
                b.count += 1;
                b.sum += value;
            },
        );
    }

    /// Export the series (all zero) before its first observation.
    pub fn start_at_zero(&self, labels: &L) {
        let slots = self.bounds.len();
        self.table.with(
            labels,
            || Buckets {
                counts: vec![0; slots + 1],
                count: 0,
                sum: 0.0,
            },
            |_| {},
        );
    }
}

impl<L: LabelSet> Family for Histogram<L> {
    fn names(&self) -> Vec<&'static str> {
        vec![self.table.name]
    }

    fn encode(&self, chunks: &mut Vec<Vec<u8>>) {
        let name = self.table.name;
        self.table.encode("histogram", chunks, |out, s| {
            let mut cumulative = 0;
            for (le, count) in self.le.iter().zip(&s.value.counts) {
                cumulative += count;
                let le = label_pairs(&["le"], &[le]);
                let pairs = if s.pairs.is_empty() {
                    le
                } else {
                    format!("{},{le}", s.pairs)
                };
                push_sample(out, name, "_bucket", &pairs, whole(cumulative));
            }
            push_sample(out, name, "_sum", &s.pairs, Value::Float(s.value.sum));
            push_sample(out, name, "_count", &s.pairs, whole(s.value.count));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Door {
        room: &'static str,
        side: &'static str,
    }

    impl LabelSet for Door {
        const NAMES: &'static [&'static str] = &["room", "side"];
        fn values(&self) -> Vec<&str> {
            vec![self.room, self.side]
        }
    }

    fn text(family: &dyn Family) -> String {
        let mut chunks = Vec::new();
        family.encode(&mut chunks);
        String::from_utf8(chunks.concat()).unwrap()
    }

    #[test]
    fn gauges_set_and_remove_series() {
        let gauge = Gauge::<Door>::new("steward_test_open", "Whether the door is open.");
        assert_eq!(text(&gauge), "", "a family without series writes nothing");
        let hall = Door {
            room: "hall",
            side: "east",
        };
        gauge.set(&hall, true);
        gauge.set(
            &Door {
                room: "attic",
                side: "up",
            },
            Value::Micros(2300),
        );
        gauge.set(&hall, false);
        assert_eq!(
            text(&gauge),
            "# HELP steward_test_open Whether the door is open.\n# TYPE steward_test_open gauge\n\
             steward_test_open{room=\"attic\",side=\"up\"} 0.0023\n\
             steward_test_open{room=\"hall\",side=\"east\"} 0\n"
        );
        gauge.remove(&hall);
        assert!(!text(&gauge).contains("hall"));
    }

    #[test]
    fn counters_start_at_zero_and_add_up() {
        let counter = Counter::<()>::new("steward_test_total", "Things.");
        counter.start_at_zero(&());
        assert!(
            text(&counter).ends_with("# TYPE steward_test_total counter\nsteward_test_total 0\n")
        );
        counter.inc(&());
        counter.inc_by(&(), 4);
        assert!(text(&counter).ends_with("\nsteward_test_total 5\n"));
    }

    #[test]
    fn histograms_count_cumulatively_with_sum_and_count() {
        let h = Histogram::<Door>::new("steward_test_seconds", "Time.", &[0.25, 1.0]);
        let d = Door {
            room: "hall",
            side: "east",
        };
        for v in [0.125, 0.25, 0.5, 8.0] {
            h.observe(&d, v);
        }
        let labels = "room=\"hall\",side=\"east\"";
        assert_eq!(
            text(&h),
            format!(
                "# HELP steward_test_seconds Time.\n# TYPE steward_test_seconds histogram\n\
                 steward_test_seconds_bucket{{{labels},le=\"0.25\"}} 2\n\
                 steward_test_seconds_bucket{{{labels},le=\"1\"}} 3\n\
                 steward_test_seconds_bucket{{{labels},le=\"+Inf\"}} 4\n\
                 steward_test_seconds_sum{{{labels}}} 8.875\n\
                 steward_test_seconds_count{{{labels}}} 4\n"
            )
        );
        let empty = Histogram::<()>::new("steward_test_idle_seconds", "Idle.", &[1.0]);
        empty.start_at_zero(&());
        assert!(text(&empty).contains(
            "steward_test_idle_seconds_bucket{le=\"+Inf\"} 0\nsteward_test_idle_seconds_sum 0\nsteward_test_idle_seconds_count 0\n"
        ));
    }
}
