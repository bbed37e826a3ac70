//! The fleet-sized series (one per server, or per service on a server) in plain tables.
//!
//! The prometheus crate gathers through protobuf-shaped models: at 1,000 servers x 11
//! services (about 78,000 series) `gather()` + `TextEncoder` cost ~150 ms a scrape. These
//! tables render the text format directly, with each series' label set pre-rendered, in
//! a few milliseconds ([`encode`]). They are still an ordinary [`Collector`], so anything
//! that gathers the registry (tests, other encoders) sees exactly the same series.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};
use steward_model::ServiceKind;

/// One gauge family of a table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
}

/// Per-server families, in this order in each row.
pub(crate) const SERVER_FAMILIES: [Family; 3] = [
    Family {
        name: "steward_agent_up",
        help: "Whether the server's agent answers (1) or not (0).",
    },
    Family {
        name: "steward_certificate_expiry_timestamp_seconds",
        help: "When the server's TLS certificate expires (Unix time).",
    },
    Family {
        name: "steward_hl7_active_listener",
        help: "1 on the server whose HL7 listener is active, 0 on the other HL7 servers.",
    },
];
pub(crate) const AGENT_UP: usize = 0;
pub(crate) const CERTIFICATE_EXPIRY: usize = 1;
pub(crate) const HL7_ACTIVE: usize = 2;

/// Per-service families, in this order in each row.
pub(crate) const SERVICE_FAMILIES: [Family; 6] = [
    Family {
        name: "steward_service_installed",
        help: "Whether the service is installed on the server.",
    },
    Family {
        name: "steward_service_healthy",
        help: "Whether the service passes its health test.",
    },
    Family {
        name: "steward_probe_duration_seconds",
        help: "Duration of the last health probe of the service.",
    },
    Family {
        name: "steward_probe_success",
        help: "Whether the last health probe of the service passed (1) or not (0).",
    },
    Family {
        name: "steward_probe_http_status_code",
        help: "HTTP status of the last health probe's response (0: none, e.g. HL7 or no answer).",
    },
    Family {
        name: "steward_probe_ssl_earliest_cert_expiry_seconds",
        help: "notAfter of the leaf certificate the service served to the last probe (Unix time).",
    },
];
pub(crate) const INSTALLED: usize = 0;
pub(crate) const HEALTHY: usize = 1;
pub(crate) const PROBE_DURATION: usize = 2;
pub(crate) const PROBE_SUCCESS: usize = 3;
pub(crate) const PROBE_HTTP_STATUS: usize = 4;
pub(crate) const PROBE_CERT_EXPIRY: usize = 5;

/// Gauge values, printed exactly as the prometheus crate prints the same `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    Int(i64),
    /// Millionths (durations in seconds, to the microsecond): exact in decimal, so
    /// printed without float formatting.
    Micros(u64),
}

impl Value {
    fn as_f64(self) -> f64 {
        match self {
            Self::Int(v) => v as f64,
            Self::Micros(v) => v as f64 / 1e6,
        }
    }

    fn push(self, out: &mut Vec<u8>) {
        match self {
            Self::Int(v) => {
                if v < 0 {
                    out.push(b'-');
                }
                push_digits(out, v.unsigned_abs(), 1);
            }
            Self::Micros(v) => {
                push_digits(out, v / 1_000_000, 1);
                let mut fraction = v % 1_000_000;
                if fraction > 0 {
                    let mut width = 6;
                    while fraction % 10 == 0 {
                        fraction /= 10;
                        width -= 1;
                    }
                    out.push(b'.');
                    push_digits(out, fraction, width);
                }
            }
        }
    }
}

/// `value` in decimal, zero-padded to `width` digits.
fn push_digits(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut at = buf.len();
    while value > 0 || buf.len() - at < width {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(&buf[at..]);
}

struct Row {
    /// (label name, value) pairs, names sorted.
    labels: Vec<(&'static str, String)>,
    /// `{server="app1",service="PSIS"}`.
    rendered: String,
    values: [Option<Value>; MAX_FAMILIES],
}

/// Families per table, at most.
const MAX_FAMILIES: usize = 6;

impl Row {
    fn new(labels: Vec<(&'static str, String)>) -> Self {
        let mut rendered = String::from("{");
        for (i, (name, value)) in labels.iter().enumerate() {
            if i > 0 {
                rendered.push(',');
            }
            rendered.push_str(name);
            rendered.push_str("=\"");
            rendered.push_str(&escape(value));
            rendered.push('"');
        }
        rendered.push('}');
        Self {
            labels,
            rendered,
            values: [None; MAX_FAMILIES],
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Default)]
struct Tables {
    servers: BTreeMap<String, Row>,
    services: BTreeMap<(String, ServiceKind), Row>,
}

/// The tables, shared by the controllers' [`super::Metrics`] handles.
#[derive(Clone)]
pub(crate) struct FleetSeries {
    tables: Arc<Mutex<Tables>>,
    descs: Arc<Vec<Desc>>,
}

impl FleetSeries {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let mut descs = Vec::new();
        for (families, labels) in [
            (&SERVER_FAMILIES[..], vec!["server".to_owned()]),
            (
                &SERVICE_FAMILIES[..],
                vec!["server".to_owned(), "service".to_owned()],
            ),
        ] {
            for family in families {
                descs.push(Desc::new(
                    family.name.to_owned(),
                    family.help.to_owned(),
                    labels.clone(),
                    Default::default(),
                )?);
            }
        }
        Ok(Self {
            tables: Arc::default(),
            descs: Arc::new(descs),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_server(&self, server: &str, family: usize, value: Option<Value>) {
        let mut tables = self.lock();
        if let Some(row) = tables.servers.get_mut(server) {
            row.values[family] = value;
            return;
        }
        if value.is_some() {
            let mut row = Row::new(vec![("server", server.to_owned())]);
            row.values[family] = value;
            tables.servers.insert(server.to_owned(), row);
        }
    }

    /// Set several families of one service at once (one lock, one lookup).
    pub(crate) fn set_service(
        &self,
        server: &str,
        kind: ServiceKind,
        values: &[(usize, Option<Value>)],
    ) {
        let mut tables = self.lock();
        let key = (server.to_owned(), kind);
        let row = tables.services.entry(key).or_insert_with(|| {
            Row::new(vec![
                ("server", server.to_owned()),
                ("service", kind.as_str().to_owned()),
            ])
        });
        for (family, value) in values {
            row.values[*family] = *value;
        }
    }

    pub(crate) fn forget_service(&self, server: &str, kind: ServiceKind) {
        self.lock().services.remove(&(server.to_owned(), kind));
    }

    pub(crate) fn forget_server(&self, server: &str) {
        self.lock().servers.remove(server);
    }

    /// Both tables in the text exposition format, one chunk per family (families
    /// without a value left out).
    fn render(&self, chunks: &mut Vec<Vec<u8>>) {
        let tables = self.lock();
        render_table(chunks, &SERVER_FAMILIES, tables.servers.values());
        render_table(chunks, &SERVICE_FAMILIES, tables.services.values());
    }

    fn families(&self) -> Vec<MetricFamily> {
        let tables = self.lock();
        let mut out = Vec::new();
        family_models(&mut out, &SERVER_FAMILIES, tables.servers.values());
        family_models(&mut out, &SERVICE_FAMILIES, tables.services.values());
        out
    }
}

/// One pass over the rows, each family's lines into a chunk of its own (the format
/// groups a family's series under its header). Chunks, not one buffer: at this size
/// every copy of the text costs as much as writing it.
fn render_table<'a>(
    chunks: &mut Vec<Vec<u8>>,
    families: &[Family],
    rows: impl ExactSizeIterator<Item = &'a Row>,
) {
    let per_line = families.iter().map(|f| f.name.len()).max().unwrap_or(0) + 64;
    let capacity = rows.len() * per_line;
    let mut lines: Vec<Vec<u8>> = families
        .iter()
        .map(|family| {
            let mut chunk = Vec::with_capacity(capacity);
            let header = format!(
                "# HELP {0} {1}\n# TYPE {0} gauge\n",
                family.name, family.help
            );
            chunk.extend_from_slice(header.as_bytes());
            chunk
        })
        .collect();
    let headers: Vec<usize> = lines.iter().map(Vec::len).collect();
    for row in rows {
        for (i, chunk) in lines.iter_mut().enumerate() {
            let Some(value) = row.values[i] else {
                continue;
            };
            chunk.extend_from_slice(families[i].name.as_bytes());
            chunk.extend_from_slice(row.rendered.as_bytes());
            chunk.push(b' ');
            value.push(chunk);
            chunk.push(b'\n');
        }
    }
    chunks.extend(
        lines
            .into_iter()
            .zip(headers)
            .filter(|(chunk, header)| chunk.len() > *header)
            .map(|(chunk, _)| chunk),
    );
}

fn family_models<'a>(
    out: &mut Vec<MetricFamily>,
    families: &[Family],
    rows: impl Iterator<Item = &'a Row> + Clone,
) {
    for (i, family) in families.iter().enumerate() {
        let mut metrics = Vec::new();
        for row in rows.clone() {
            let Some(value) = row.values[i] else {
                continue;
            };
            let mut metric = Metric::default();
            metric.set_label(
                row.labels
                    .iter()
                    .map(|(name, value)| {
                        let mut pair = LabelPair::default();
                        pair.set_name((*name).to_owned());
                        pair.set_value(value.clone());
                        pair
                    })
                    .collect(),
            );
            let mut gauge = Gauge::default();
            gauge.set_value(value.as_f64());
            metric.set_gauge(gauge);
            metrics.push(metric);
        }
        let mut model = MetricFamily::default();
        model.set_name(family.name.to_owned());
        model.set_help(family.help.to_owned());
        model.set_field_type(MetricType::GAUGE);
        model.set_metric(metrics);
        out.push(model);
    }
}

thread_local! {
    /// Set while [`encode`] gathers on this thread: the tables render into it as text
    /// instead of answering with models.
    static CAPTURE: RefCell<Option<Vec<Vec<u8>>>> = const { RefCell::new(None) };
}

impl Collector for FleetSeries {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let captured = CAPTURE.with(|capture| match capture.borrow_mut().as_mut() {
            Some(chunks) => {
                self.render(chunks);
                true
            }
            None => false,
        });
        if captured {
            Vec::new()
        } else {
            self.families()
        }
    }
}

/// Clears the capture however `encode` ends.
struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}

/// `registry` in the Prometheus text format (what `/metrics` serves), in chunks to be
/// sent one after the other: everything the prometheus crate encodes, then the fleet
/// tables rendered directly.
pub fn encode(registry: &Registry) -> Result<Vec<Vec<u8>>, prometheus::Error> {
    let guard = CaptureGuard;
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(Vec::new()));
    // Collectors run on the calling thread, so the tables see the capture.
    let families = registry.gather();
    let fleet = CAPTURE
        .with(|capture| capture.borrow_mut().take())
        .unwrap_or_default();
    drop(guard);
    let mut first = Vec::with_capacity(64 * 1024);
    TextEncoder::new().encode(&families, &mut first)?;
    let mut chunks = Vec::with_capacity(fleet.len() + 1);
    chunks.push(first);
    chunks.extend(fleet);
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::Value;

    fn text(value: Value) -> String {
        let mut out = Vec::new();
        value.push(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_print_as_the_prometheus_crate_prints_their_f64() {
        // Integers up to 2^53 (status codes, timestamps, 0 and 1) are exact in an f64.
        for v in [0, 1, -1, 9, 10, 200, 503, 1_900_000_000, 1 << 53, -40] {
            assert_eq!(text(Value::Int(v)), (v as f64).to_string());
        }
        for v in [
            0, 1, 10, 1234, 2300, 500_000, 1_000_000, 12_345_678, 999_999,
        ] {
            assert_eq!(text(Value::Micros(v)), (v as f64 / 1e6).to_string(), "{v}");
        }
    }
}
