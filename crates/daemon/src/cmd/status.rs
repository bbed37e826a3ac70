//! `steward status [--url URL] [--json]`: the status of a running daemon.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    url: String,
    /// Print the raw status document.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> u8 {
    let url = format!("{}/api/v1/status", args.url.trim_end_matches('/'));
    let doc = match fetch(&url).await {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("steward status: {url}: {e}");
            return 1;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", render(&doc));
    }
    0
}

async fn fetch(url: &str) -> Result<Value, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("not a status document: {e}"))
}

fn yes_no(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "unknown",
    }
}

/// A terminal summary: desired state, then one line per server and service.
fn render(doc: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "desired state: generation {} ({})\n",
        doc["generation"],
        if doc["valid"].as_bool() == Some(true) { "valid" } else { "INVALID" }
    ));
    for e in doc["errors"].as_array().into_iter().flatten() {
        out.push_str(&format!("  {}\n", e.as_str().unwrap_or_default()));
    }
    for server in doc["servers"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "server {} ({}): agent up {}\n",
            server["name"].as_str().unwrap_or("?"),
            server["hostname"].as_str().unwrap_or("?"),
            yes_no(&server["agentUp"])
        ));
        for svc in server["services"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {:<10} port {:<6} installed {:<7} healthy {}\n",
                svc["kind"].as_str().unwrap_or("?"),
                svc["port"],
                yes_no(&svc["installed"]),
                yes_no(&svc["healthy"])
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_servers_and_services() {
        let doc = serde_json::json!({
            "generation": 3, "valid": true, "errors": [],
            "servers": [{"name": "app1", "hostname": "app1.example.eng", "agentUp": true,
                "services": [{"kind": "PSIS", "port": 7001, "installed": true, "healthy": false}]}]
        });
        let text = render(&doc);
        assert!(text.contains("generation 3 (valid)"));
        assert!(text.contains("server app1 (app1.example.eng): agent up yes"));
        assert!(text.contains("PSIS") && text.contains("healthy NO"));
    }
}
