//! `GET /`: the System Health dashboard page (docs/http-api.md).
//!
//! One self-contained HTML document (inline CSS and JavaScript; no CDN, web font or any
//! other request beyond this daemon's own `/api/v1/status`), which polls the status
//! document every second and redraws: a banner listing every current problem (the first
//! few, then a count), desired state, database, servers with one indicator per declared
//! service (green/red/grey, always with its state in words) and the catalog's other kinds
//! folded into a closed list, certificates, the HL7 active listener, the load balancer
//! (each farm, its ports and every member's state as HAProxy reports it), Active Directory,
//! the rolling upgrade (phase, each server's step, why it waits or halted) and recent events.
//!
//! The service names and their order come from the model's catalog, injected into the page
//! once, so the page repeats no catalog table. A Content-Security-Policy forbids the page
//! from loading or sending anything anywhere but this daemon.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use steward_model::catalog::ServiceKind;

use crate::api::AppState;

const TEMPLATE: &str = include_str!("index.html");
/// Replaced by the catalog (kind, name) list, in install order.
const CATALOG_PLACEHOLDER: &str = "[/*CATALOG*/]";
/// Replaced by the Ready-condition reasons the page shows as Down.
const DOWN_REASONS_PLACEHOLDER: &str = "[/*DOWN_REASONS*/]";

/// The Ready-condition reasons of an installed service shown as Down: every reason of a
/// down service in notifications, so the page and the mails agree (a service steward keeps
/// restarting because its port is in use is Down in both, with that reason), and
/// `Restarted`, what a restart with no known cause awaits.
fn down_reasons() -> Vec<&'static str> {
    let mut reasons = steward_notify::notice::SERVICE_DOWN.to_vec();
    reasons.push("Restarted");
    reasons
}

/// Nothing but inline script and style, and requests to this origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

static PAGE: LazyLock<String> = LazyLock::new(render);

fn render() -> String {
    let catalog: Vec<serde_json::Value> = ServiceKind::ALL
        .iter()
        .map(|kind| serde_json::json!({"kind": kind.as_str(), "name": kind.spec().display_name}))
        .collect();
    // serde_json escapes nothing HTML-significant in these names, but `</` must never close
    // the script element early: escape `<` as JSON allows.
    let json = serde_json::Value::Array(catalog)
        .to_string()
        .replace('<', "\\u003c");
    // Fixed words of the controllers: nothing to escape.
    let down = serde_json::json!(down_reasons()).to_string();
    TEMPLATE
        .replacen(CATALOG_PLACEHOLDER, &json, 1)
        .replacen(DOWN_REASONS_PLACEHOLDER, &down, 1)
}

/// The dashboard's routes, merged into the API router.
pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(index))
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_injected_in_install_order() {
        let page = render();
        assert!(!page.contains(CATALOG_PLACEHOLDER));
        let start = page.find(r#"[{"kind":"PSIS""#).expect("catalog injected");
        let psws = page[start..].find(r#""kind":"PSWS""#).unwrap();
        let hl7 = page[start..].find(r#""kind":"HL7""#).unwrap();
        assert!(psws < hl7);
        assert!(page.contains("Identity Server"));
    }

    /// A service steward keeps restarting for a known cause (its port in use, an exit with
    /// an error, a failed start) is Down on the page, as it is in notifications, not
    /// Unknown; so is one being restarted for no known cause.
    #[test]
    fn the_failure_reasons_of_a_service_show_it_down() {
        let page = render();
        assert!(!page.contains(DOWN_REASONS_PLACEHOLDER));
        let start = page
            .find("const DOWN_REASONS = new Set([")
            .expect("DOWN_REASONS");
        let line = page[start..].lines().next().unwrap();
        for reason in [
            "PortInUse",
            "ExitedWithError",
            "StartFailed",
            "NotRunning",
            "HealthCheckFailing",
            "Restarted",
        ] {
            assert!(line.contains(&format!("\"{reason}\"")), "{reason}: {line}");
        }
    }

    /// The page works in a hospital network without internet access: it references no
    /// other origin at all (no CDN, web font, analytics).
    #[test]
    fn the_page_needs_nothing_from_elsewhere() {
        let page = render().to_ascii_lowercase();
        for needle in [
            "http://",
            "https://",
            "src=\"//",
            "href=\"//",
            "@import",
            "@font-face",
            "url(",
            "<link rel=\"stylesheet",
            "<script src",
            "<iframe",
        ] {
            assert!(!page.contains(needle), "the page contains {needle:?}");
        }
    }

    /// Data from the status document is only ever written as text, never parsed as HTML.
    #[test]
    fn the_page_never_writes_html_from_data() {
        let page = render();
        for needle in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!page.contains(needle), "the page uses {needle}");
        }
    }

    /// Every state is stated in words as well as in colour.
    #[test]
    fn every_state_has_words() {
        let page = render();
        for words in ["Healthy", "Down", "Not installed", "Unknown"] {
            assert!(page.contains(&format!("'{words}'")), "{words}");
        }
    }
}
