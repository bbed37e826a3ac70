//! `steward status [--url URL] [--json]`: the status of a running daemon.

use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's HTTP address.
    #[arg(long, default_value = super::daemon_client::DEFAULT_URL)]
    url: String,
    /// Print the raw status document.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> u8 {
    let doc: Value = match super::daemon_client::get_json(&args.url, "/api/v1/status").await {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("steward status: {e}");
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
        if doc["valid"].as_bool() == Some(true) {
            "valid"
        } else {
            "INVALID"
        }
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
