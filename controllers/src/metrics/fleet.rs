//! The fleet-sized series (one per server, or per service on a server) in plain tables:
//! one row per server or service holding all its families' values, with the row's label
//! set rendered once. At 1,000 servers x 11 services (about 70,000 series) this writes
//! `/metrics` in a few milliseconds (`benches/metrics_encoding.rs` has the figures).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use steward_model::ServiceKind;

use super::exposition::{braced, label_pairs, push_header, Value};
use super::registry::Family as Encode;

/// One gauge family of a table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
}

/// Per-server families, in this order in each row.
pub(crate) const SERVER_FAMILIES: [Family; 4] = [
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
    Family {
        name: "steward_certificate_renewal_timestamp_seconds",
        help: "When the server's TLS certificate is due for renewal (Unix time): renewBefore ahead of its expiry. Steward renews generated certificates then; existing ones must be replaced by then.",
    },
];
pub(crate) const AGENT_UP: usize = 0;
pub(crate) const CERTIFICATE_EXPIRY: usize = 1;
pub(crate) const HL7_ACTIVE: usize = 2;
pub(crate) const CERTIFICATE_RENEWAL: usize = 3;

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

#[derive(Clone)]
struct Row {
    /// `{server="app1",service="PSIS"}`, shared with the copies a scrape takes.
    rendered: Arc<str>,
    values: [Option<Value>; MAX_FAMILIES],
}

/// Families per table, at most.
const MAX_FAMILIES: usize = 6;

impl Row {
    fn new(names: &[&str], values: &[&str]) -> Self {
        Self {
            rendered: braced(&label_pairs(names, values)).into(),
            values: [None; MAX_FAMILIES],
        }
    }
}

#[derive(Default)]
struct Tables {
    servers: BTreeMap<String, Row>,
    services: BTreeMap<(String, ServiceKind), Row>,
}

/// The tables, shared by the controllers' [`super::Metrics`] handles.
#[derive(Clone, Default)]
pub(crate) struct FleetSeries {
    tables: Arc<Mutex<Tables>>,
}

impl FleetSeries {
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
            let mut row = Row::new(&["server"], &[server]);
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
        let row = tables
            .services
            .entry(key)
            .or_insert_with(|| Row::new(&["server", "service"], &[server, kind.as_str()]));
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
    ///
    /// The rows are copied under the lock (label text shared, values copied: a fraction
    /// of a millisecond at 11,000 services) and written after it is released: the store
    /// sets these rows while holding its own lock, so a scrape that held this one while
    /// writing megabytes of text would stall every reconcile and status request with it.
    fn render(&self, chunks: &mut Vec<Vec<u8>>) {
        let (servers, services): (Vec<Row>, Vec<Row>) = {
            let tables = self.lock();
            (
                tables.servers.values().cloned().collect(),
                tables.services.values().cloned().collect(),
            )
        };
        render_table(chunks, &SERVER_FAMILIES, servers.iter());
        render_table(chunks, &SERVICE_FAMILIES, services.iter());
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
            push_header(&mut chunk, family.name, family.help, "gauge");
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

impl Encode for FleetSeries {
    fn names(&self) -> Vec<&'static str> {
        SERVER_FAMILIES
            .iter()
            .chain(&SERVICE_FAMILIES)
            .map(|f| f.name)
            .collect()
    }

    fn encode(&self, chunks: &mut Vec<Vec<u8>>) {
        self.render(chunks);
    }
}
