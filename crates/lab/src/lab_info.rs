//! `GET /steward/lab`: what the agent handed this service, so end-to-end tests can check
//! the agent's work from the outside.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use steward_model::catalog::ServiceKind;

use crate::cert_reload::ReloadingCert;

/// Keys whose values are secrets inside `;`-separated connection strings.
const SECRET_KEYS: &[&str] = &["password", "pwd"];

#[derive(Debug)]
pub(crate) struct LabInfo {
    pub kind: ServiceKind,
    pub release: Option<String>,
    pub bind: IpAddr,
    /// The ports actually bound (differs from the arguments for port 0).
    pub ports: Vec<u16>,
    pub connection_strings: Option<PathBuf>,
    pub cert: Option<Arc<ReloadingCert>>,
}

impl LabInfo {
    /// The document, reading the connection strings afresh so a rewrite by the agent shows
    /// without a restart.
    pub async fn document(&self) -> Value {
        let (strings, error) = match &self.connection_strings {
            None => (Value::Null, None),
            Some(path) => match tokio::fs::read_to_string(path).await {
                Ok(text) => (parse_connection_strings(&text), None),
                Err(e) => (Value::Null, Some(format!("{}: {e}", path.display()))),
            },
        };
        let certificate = self.cert.as_ref().map(|c| {
            let s = c.status();
            json!({
                "thumbprint": s.thumbprint,
                "loaded": s.loaded,
                "rejected": s.rejected,
                "lastError": s.last_error,
            })
        });
        json!({
            "kind": self.kind,
            "displayName": self.kind.spec().display_name,
            "release": self.release,
            "bind": self.bind,
            "ports": self.ports,
            "pid": std::process::id(),
            "connectionStrings": strings,
            "connectionStringsError": error,
            "certificate": certificate,
        })
    }
}

/// JSON as written, else `NAME=VALUE` lines as an object, else the raw text; secrets
/// masked either way, since this endpoint is readable by anything on the host.
fn parse_connection_strings(text: &str) -> Value {
    let value = serde_json::from_str(text).unwrap_or_else(|_| {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let pairs: Option<Map<String, Value>> = lines
            .iter()
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), Value::String(v.trim().to_owned())))
            })
            .collect();
        pairs.map_or_else(|| Value::String(text.to_owned()), Value::Object)
    });
    mask(value)
}

fn mask(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(mask_connection_string(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(mask).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    if is_secret_key(&k) {
                        (k, Value::String("***".into()))
                    } else {
                        (k, mask(v))
                    }
                })
                .collect(),
        ),
        other => other,
    }
}

fn mask_connection_string(s: &str) -> String {
    s.split(';')
        .map(|part| match part.split_once('=') {
            Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn is_secret_key(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    SECRET_KEYS.contains(&key.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_kept_and_passwords_masked() {
        let v = parse_connection_strings(
            r#"{"identityServer":"https://lb:7001/identityserver",
                "database":"Server=sql;Database=PS;User Id=ps;Password=hunter2;",
                "nested":{"pwd":"x"}}"#,
        );
        assert_eq!(v["identityServer"], "https://lb:7001/identityserver");
        assert_eq!(
            v["database"],
            "Server=sql;Database=PS;User Id=ps;Password=***;"
        );
        assert_eq!(v["nested"]["pwd"], "***");
    }

    #[test]
    fn name_value_lines_become_an_object() {
        let v = parse_connection_strings(
            "# urls\nPSIS=https://a:7001/identityserver\nPSWS = https://a:7002/psws/api\n",
        );
        assert_eq!(v["PSIS"], "https://a:7001/identityserver");
        assert_eq!(v["PSWS"], "https://a:7002/psws/api");
    }

    #[test]
    fn anything_else_is_raw_text() {
        assert_eq!(
            parse_connection_strings("just text"),
            Value::String("just text".into())
        );
    }
}
