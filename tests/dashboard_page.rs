//! The System Health page (`GET /`) in a real headless Chromium, driven through
//! chromedriver's WebDriver HTTP API: against a lab daemon, every declared service shows
//! green "Healthy" with its port, and the catalog's other kinds are folded away per server
//! ("N other kinds not declared"); SIGKILL two lab services and their indicators turn red
//! "Down", with both problems listed in the banner, then green again once steward has
//! restarted them, without reloading the page. A broken commit whose error text carries
//! HTML is shown as text, never as markup. Screenshots go to `target/test-artifacts/`.
//!
//! Steward restarts a killed service within a fraction of a second, faster than the page
//! refreshes (every second), so the red state would only be seen by luck. The test
//! therefore holds each killed service's port for a moment: steward's restarts fail
//! ("port in use", a real failure mode) and the service stays down until the test lets go,
//! after which steward's next restart brings it back. Meanwhile the page must say Down,
//! whichever it saw last: the failing probes, a restart, or the agent's cause of the failed
//! restarts (the port in use); a service in that crash loop is never shown Unknown.
//!
//! The Notifications section (a second lab): one object mailing a real aiosmtpd shows
//! "Delivering" in green with when it last sent, one pointed at a closed port shows
//! "Failing" in red with its queued mail and last error, also in the banner.
//!
//! Missing chromium or chromedriver fails under CI=true; locally the test is skipped.

#[path = "dashboard_support/mod.rs"]
mod support;

#[path = "../crates/notify/tests/support/mod.rs"]
mod smtp;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    arg_value, artifacts_dir, base64_decode, free_port, get, http, processes_with, require_tool,
    wait_for, LabDaemon, Peer,
};

const API: &str = "127.0.225.1:9464";
const LAB: &str = "127.0.225.11";
/// The victims: ordinary HTTPS services with nothing else depending on them, one on each
/// server of the bundled desired state.
const VICTIMS: [&str; 2] = ["CLIENT", "HEALTH"];
/// Every catalog kind: each server shows some as tiles and folds the rest.
const KINDS: usize = 11;
/// Markup in user text (an unknown service kind is echoed in its error): it must appear
/// as text, and its handler must never run.
const PAYLOAD: &str = "<img src=x onerror=document.body.dataset.xss=1>";

/// A WebDriver session in headless Chromium.
struct Browser {
    session: String,
    addr: String,
    _driver: Peer,
}

impl Browser {
    fn start(chromedriver: &Path, chromium: &Path, dir: &Path) -> Self {
        let port = free_port("127.0.0.1");
        let addr = format!("127.0.0.1:{port}");
        let log = dir.join("chromedriver.log");
        let mut command = Command::new(chromedriver);
        command.arg(format!("--port={port}"));
        let mut driver = Peer::spawn("chromedriver", command, &log);
        wait_for("chromedriver ready", Duration::from_secs(30), |last| {
            driver.assert_running(&log);
            let resp = get(&addr, "/status").ok()?;
            *last = resp.text();
            (resp.json()["value"]["ready"] == true).then_some(())
        });
        let profile = dir.join("chromium-profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"script": 15000, "pageLoad": 30000},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-crash-reporter",
                    "--disable-breakpad", "--hide-scrollbars", "--window-size=1400,1900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let resp = http("POST", &addr, "/session", Some(&capabilities)).expect("new session");
        let body = resp.json();
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| {
                panic!(
                    "chromedriver refused the session ({}): {body}\n{}",
                    resp.status,
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        Self {
            session,
            addr,
            _driver: driver,
        }
    }

    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let resp = http(method, &self.addr, &path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let value = resp.json()["value"].clone();
        assert_eq!(resp.status, 200, "WebDriver {method} {path}: {value}");
        value
    }

    fn navigate(&self, url: &str) {
        self.command("POST", "/url", Some(&json!({ "url": url })));
    }

    fn execute(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": []})),
        )
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let png = base64_decode(
            self.command("GET", "/screenshot", None)
                .as_str()
                .expect("png"),
        );
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let path = artifacts_dir().join(name);
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Close Chromium cleanly; the driver's process group is killed after.
        let _ = http(
            "DELETE",
            &self.addr,
            &format!("/session/{}", self.session),
            None,
        );
    }
}

/// What the page shows, read in the browser.
const READ_PAGE: &str = r#"
const text = (sel) => { const e = document.querySelector(sel); return e ? e.innerText.trim() : null; };
return {
  updates: Number(document.body.dataset.updates || 0),
  stale: document.body.classList.contains('stale'),
  summary: text('#summary'),
  validity: text('#validity'),
  generation: text('#generation'),
  hl7: (document.querySelector('#hl7-active') || {dataset: {}}).dataset.server || null,
  hl7Text: text('#hl7-active'),
  database: text('#database-state'),
  certificates: Array.from(document.querySelectorAll('[data-role=certificate]')).map((e) => e.innerText.trim()),
  agents: Array.from(document.querySelectorAll('[data-role=agent]')).map((e) => e.innerText.trim()),
  events: document.querySelectorAll('#events tbody tr').length,
  banner: {
    shown: getComputedStyle(document.getElementById('banner')).display !== 'none',
    count: Number(document.getElementById('banner').dataset.count || 0),
    title: text('#banner .banner-title'),
    lines: Array.from(document.querySelectorAll('#banner li')).map((e) => e.textContent.trim()),
  },
  errors: Array.from(document.querySelectorAll('#desired-state-errors li')).map((e) => e.textContent.trim()),
  folded: Array.from(document.querySelectorAll('details.other-kinds')).map((d) => ({
    server: d.dataset.server, open: d.open, summary: d.querySelector('summary').textContent.trim(),
    kinds: Array.from(d.querySelectorAll('li')).map((e) => e.dataset.kind),
  })),
  directories: Array.from(document.querySelectorAll('[data-directory]')).map((d) => ({
    name: d.dataset.directory, state: d.querySelector('.server-head .badge').dataset.state,
    groups: Array.from(d.querySelectorAll('tr[data-group]')).map((r) => ({
      group: r.dataset.group, state: r.querySelector('.badge').dataset.state, text: r.innerText.trim(),
    })),
  })),
  images: document.querySelectorAll('img').length,
  xss: document.body.dataset.xss || null,
  tiles: Array.from(document.querySelectorAll('.svc')).map((e) => ({
    server: e.dataset.server, kind: e.dataset.kind, state: e.dataset.state,
    text: e.querySelector('.state-text').innerText.trim(),
    port: e.querySelector('.svc-port').innerText.trim(),
  })),
  resources: performance.getEntriesByType('resource').map((r) => r.name),
  origin: location.origin,
};
"#;

fn tile<'a>(page: &'a Value, server: &str, kind: &str) -> &'a Value {
    page["tiles"]
        .as_array()
        .and_then(|t| {
            t.iter()
                .find(|x| x["server"] == server && x["kind"] == kind)
        })
        .unwrap_or_else(|| panic!("no tile for {kind} on {server}: {page}"))
}

/// Whether the page shows what the status document says: a tile per declared service,
/// "Healthy" except those in `down` ("Down"), and each server's other catalog kinds folded
/// into a closed "N other kinds not declared"; `Err` says what differs.
fn page_matches(page: &Value, status: &Value, down: &[(String, &str)]) -> Result<(), String> {
    if page["updates"].as_u64().unwrap_or(0) == 0 || page["stale"] == true {
        return Err("no status rendered yet".into());
    }
    let servers = status["servers"].as_array().expect("servers");
    let tiles = page["tiles"].as_array().expect("tiles");
    let declared: usize = servers
        .iter()
        .map(|s| s["services"].as_array().map_or(0, Vec::len))
        .sum();
    if tiles.len() != declared {
        return Err(format!("{} tiles for {declared} services", tiles.len()));
    }
    for t in tiles {
        let server = t["server"].as_str().unwrap_or_default();
        let kind = t["kind"].as_str().unwrap_or_default();
        let (state, words) = if down.iter().any(|(s, k)| s == server && *k == kind) {
            ("down", "Down")
        } else {
            ("healthy", "Healthy")
        };
        if t["state"] != state || t["text"] != words {
            return Err(format!("{kind} on {server}: {t}, expected {words}"));
        }
    }
    let folded = page["folded"].as_array().expect("folded");
    if folded.len() != servers.len() {
        return Err(format!(
            "{} folded lists for {} servers",
            folded.len(),
            servers.len()
        ));
    }
    for (server, fold) in servers.iter().zip(folded) {
        let services = server["services"].as_array().expect("services");
        let others = KINDS - services.len();
        let expected = format!(
            "{others} other kind{} not declared",
            if others == 1 { "" } else { "s" }
        );
        let kinds = fold["kinds"].as_array().expect("kinds");
        let overlap = kinds
            .iter()
            .any(|k| services.iter().any(|s| s["kind"] == *k));
        if fold["server"] != server["name"]
            || fold["summary"] != expected.as_str()
            || fold["open"] != false
            || kinds.len() != others
            || overlap
        {
            return Err(format!(
                "folded kinds of {}: {fold}, expected {expected}",
                server["name"]
            ));
        }
    }
    Ok(())
}

/// Wait until the page matches the status with `down` services Down.
fn wait_page(browser: &Browser, status: &Value, down: &[(String, &str)], what: &str) -> Value {
    wait_for(what, Duration::from_secs(90), |last| {
        let page = browser.execute(READ_PAGE);
        match page_matches(&page, status, down) {
            Ok(()) => Some(page),
            Err(why) => {
                *last = why;
                None
            }
        }
    })
}

#[test]
fn dashboard_lists_every_problem_folds_undeclared_kinds_and_shows_markup_as_text() {
    let (Some(chromium), Some(chromedriver)) = (
        require_tool("chromium", "chromium"),
        require_tool("chromedriver", "chromium-driver"),
    ) else {
        return;
    };
    let daemon = LabDaemon::start(API, LAB);
    let status = daemon.wait_converged(Duration::from_secs(120));

    // The page as served: HTML, locked down by its Content-Security-Policy to this origin.
    let resp = get(API, "/").expect("GET /");
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = resp.header("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));

    let tmp = tempfile::tempdir().expect("tempdir");
    let browser = Browser::start(&chromedriver, &chromium, tmp.path());
    let url = format!("http://{API}/");
    browser.navigate(&url);

    // 1. All green, in words too, with the ports; the other sections filled in; no
    //    banner; each server's undeclared kinds folded away.
    let page = wait_page(&browser, &status, &[], "every service Healthy on the page");
    let installed: usize = status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["services"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        page["summary"],
        format!("All {installed} services Healthy"),
        "{page}"
    );
    assert_eq!(page["banner"]["shown"], false, "{page}");
    assert_eq!(page["banner"]["count"], 0, "{page}");
    assert_eq!(page["validity"], "Valid");
    assert_eq!(
        page["generation"],
        format!("Generation {}", status["generation"])
    );
    let active = status["hl7"]["activeListener"]
        .as_str()
        .expect("HL7 listener");
    assert_eq!(page["hl7"], active, "{page}");
    assert!(page["hl7Text"]
        .as_str()
        .unwrap()
        .contains("Active listener"));
    assert!(page["database"].as_str().is_some(), "{page}");
    // The lab's directory: up, and every role group present, in colour (state) and words.
    let directory = &page["directories"][0];
    assert_eq!(directory["name"], "corp", "{page}");
    assert_eq!(directory["state"], "healthy", "{page}");
    let groups = directory["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{page}");
    for group in groups {
        assert_eq!(group["state"], "healthy", "{group}");
        assert!(
            group["text"].as_str().unwrap().contains("Present"),
            "{group}"
        );
    }
    assert!(
        groups[2]["text"].as_str().unwrap().ends_with('2'),
        "PS-Users has 2 members: {page}"
    );
    assert!(page["events"].as_u64().unwrap() > 0, "no events shown");
    for (server, shown) in status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(page["certificates"].as_array().unwrap())
    {
        let thumbprint = server["certificate"]["thumbprint"].as_str().unwrap();
        let shown = shown.as_str().unwrap();
        assert!(shown.contains(thumbprint), "{shown} lacks {thumbprint}");
        assert!(shown.contains("days left"), "{shown}");
    }
    for agent in page["agents"].as_array().unwrap() {
        assert!(agent.as_str().unwrap().contains("Healthy"), "{agent}");
    }
    // Nothing but this daemon was asked for anything (no CDN, font, analytics).
    let origin = page["origin"].as_str().unwrap();
    for resource in page["resources"].as_array().unwrap() {
        let resource = resource.as_str().unwrap();
        assert!(resource.starts_with(origin), "the page loaded {resource}");
    }
    let victims: Vec<(String, &str)> = VICTIMS
        .iter()
        .map(|kind| {
            let (server, port) = status["servers"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|s| {
                    s["services"]
                        .as_array()?
                        .iter()
                        .find(|v| v["kind"] == *kind)
                        .map(|v| (s["name"].as_str().unwrap().to_owned(), v["port"].clone()))
                })
                .unwrap_or_else(|| panic!("no server runs {kind}"));
            let t = tile(&page, &server, kind);
            assert_eq!(t["port"], format!("Port {port}"));
            (server, *kind)
        })
        .collect();
    browser.screenshot("dashboard-healthy.png");

    // 2. SIGKILL each victim's lab-service process (found in /proc: this daemon's state
    //    directory and the service kind), and hold its port so steward's restarts fail.
    let state_dir = daemon.state_dir().display().to_string();
    let mut holders = Vec::new();
    let mut old_pids = Vec::new();
    for kind in VICTIMS {
        let kind_arg = format!("--kind {kind} ");
        let found = processes_with(&["lab-service", &kind_arg, &state_dir]);
        assert_eq!(found.len(), 1, "{kind} processes: {found:?}");
        let (old_pid, args) = found.into_iter().next().unwrap();
        let bind = arg_value(&args, "--bind").expect("--bind").to_owned();
        let port: u16 = arg_value(&args, "--port").expect("--port").parse().unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(old_pid).unwrap(),
            rustix::process::Signal::KILL,
        )
        .expect("SIGKILL the lab service");
        let killed_at = Instant::now();
        holders.push(loop {
            match TcpListener::bind((bind.as_str(), port)) {
                Ok(listener) => break listener,
                Err(e) => assert!(
                    killed_at.elapsed() < Duration::from_secs(3),
                    "could not take {bind}:{port} after the kill: {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(2));
        });
        old_pids.push((kind, kind_arg, old_pid));
    }

    // 3. Both red, "Down", on the open page; everything else still green; the banner lists
    //    both problems, not just the first.
    let page = wait_page(
        &browser,
        &status,
        &victims,
        "the killed services Down on the page",
    );
    assert_eq!(
        page["summary"],
        format!("{} of {installed} services Down", victims.len()),
        "{page}"
    );
    let banner = &page["banner"];
    assert_eq!(banner["shown"], true, "{page}");
    assert_eq!(banner["count"], 2, "{page}");
    assert_eq!(banner["title"], "2 problems", "{page}");
    let lines = banner["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{banner}");
    for (server, kind) in &victims {
        let prefix = format!("{kind} on {server} is Down");
        assert!(
            lines
                .iter()
                .any(|l| l.as_str().unwrap().starts_with(&prefix)),
            "{prefix} missing from the banner: {banner}"
        );
    }
    browser.screenshot("dashboard-services-down.png");
    drop(holders);

    // 4. Steward restarts them (new processes) and the page turns green again by itself.
    let page = wait_page(
        &browser,
        &status,
        &[],
        "the services Healthy again on the page",
    );
    assert_eq!(page["banner"]["shown"], false, "{page}");
    for (kind, kind_arg, old_pid) in old_pids {
        let restarted = processes_with(&["lab-service", &kind_arg, &state_dir]);
        assert!(
            restarted.len() == 1 && restarted[0].0 != old_pid,
            "{kind} was not restarted as a new process: {restarted:?}"
        );
    }
    let shot = browser.screenshot("dashboard-recovered.png");
    assert!(std::fs::metadata(shot).unwrap().len() > 10_000);

    // 4b. The compact status a large fleet gets (forced here with `?compact=true`): healthy
    //     services counted per server instead of tiles, the summary unchanged; opening a
    //     server asks for it whole and shows its tiles, live.
    browser.navigate(&format!("http://{API}/?compact=true"));
    const READ_COMPACT: &str = r#"
return {
  summary: (document.querySelector('#summary') || {}).innerText,
  tiles: Array.from(document.querySelectorAll('.svc')).map((e) => e.dataset.server + '/' + e.dataset.kind),
  omitted: Array.from(document.querySelectorAll('[data-role=omitted]')).map((e) => Number(e.dataset.count)),
  fetched: performance.getEntriesByType('resource').map((r) => r.name).filter((n) => n.includes('/api/v1/status')),
};
"#;
    let compact = wait_for("the compact page", Duration::from_secs(60), |last| {
        let page = browser.execute(READ_COMPACT);
        *last = page.to_string();
        let omitted: u64 = page["omitted"]
            .as_array()?
            .iter()
            .filter_map(Value::as_u64)
            .sum();
        (omitted == installed as u64 && page["tiles"].as_array()?.is_empty()).then_some(page)
    });
    assert_eq!(
        compact["summary"],
        format!("All {installed} services Healthy"),
        "{compact}"
    );
    assert!(
        compact["fetched"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u.as_str().unwrap().contains("compact=true")),
        "{compact}"
    );
    let first = status["servers"][0]["name"].as_str().unwrap().to_owned();
    let kinds = status["servers"][0]["services"].as_array().unwrap().len();
    browser.execute(&format!(
        "document.querySelector('button.show-all[data-server=\"{first}\"]').click(); return null;"
    ));
    wait_for(
        "the opened server's tiles",
        Duration::from_secs(60),
        |last| {
            let page = browser.execute(READ_COMPACT);
            *last = page.to_string();
            let tiles = page["tiles"].as_array()?;
            (tiles.len() == kinds
                && tiles
                    .iter()
                    .all(|t| t.as_str().unwrap().starts_with(&format!("{first}/"))))
            .then_some(())
        },
    );
    browser.screenshot("dashboard-compact.png");
    browser.navigate(&url);

    // 5. A broken commit whose error echoes markup: shown as text in the banner and the
    //    desired-state section; no element is created from it and its handler never runs.
    let app2 = daemon.desired_state().join("servers/app2.yaml");
    let original = std::fs::read_to_string(&app2).unwrap();
    let broken = original.replacen("- kind: JOB ", &format!("- kind: \"{PAYLOAD}\" "), 1);
    assert_ne!(broken, original, "no JOB service in {}", app2.display());
    std::fs::write(&app2, broken).unwrap();
    let page = wait_for(
        "the broken commit on the page",
        Duration::from_secs(60),
        |last| {
            let page = browser.execute(READ_PAGE);
            let shown = page["banner"]["lines"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|l| l.as_str().unwrap_or_default().contains(PAYLOAD))
            });
            if page["validity"] == "Invalid" && shown {
                Some(page)
            } else {
                *last = page["banner"].to_string();
                None
            }
        },
    );
    let line = page["banner"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|l| l.as_str().filter(|l| l.contains(PAYLOAD)))
        .unwrap();
    assert!(
        line.starts_with("Desired state invalid: servers/app2.yaml:"),
        "{line}"
    );
    assert!(
        page["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap_or_default().contains(PAYLOAD)),
        "{page}"
    );
    browser.screenshot("dashboard-invalid-commit.png");
    // No element made from the text, so no handler that could have run.
    assert_eq!(page["images"], 0, "markup became elements: {page}");
    assert_eq!(page["xss"], Value::Null, "an injected handler ran: {page}");
}

/// The Load balancer section, read in the browser: each farm's row, each member's badge.
const READ_LOAD_BALANCER: &str = r#"
const farms = Array.from(document.querySelectorAll('#lb-farms tr[data-farm]')).map((row) => ({
  kind: row.dataset.farm,
  ports: row.children[1].innerText.trim(),
  members: Array.from(row.querySelectorAll('td[data-server]')).map((td) => {
    const b = td.querySelector('.badge');
    return { server: td.dataset.server, state: b ? b.dataset.state : null, text: td.innerText.trim(),
             color: b ? getComputedStyle(b).color : null };
  }),
}));
return {
  updates: Number(document.body.dataset.updates || 0),
  vendor: (document.querySelector('#lb-vendor b') || {}).innerText || null,
  text: document.querySelector('#load-balancer').innerText,
  farms,
  banner: Array.from(document.querySelectorAll('#banner li')).map((e) => e.textContent.trim()),
};
"#;

/// The Notifications section as the page shows it.
const READ_NOTIFICATIONS: &str = r#"
const text = (root, sel) => { const e = root.querySelector(sel); return e ? e.innerText.trim() : null; };
return {
  updates: Number(document.body.dataset.updates || 0),
  objects: Array.from(document.querySelectorAll('[data-notifications]')).map((d) => {
    const badge = d.querySelector('.server-head .badge');
    const error = d.querySelector('[data-role=last-error]');
    return {
      name: d.dataset.notifications, state: badge.dataset.state, text: badge.innerText.trim(),
      color: getComputedStyle(badge).color,
      lastSent: text(d, '[data-role=last-sent] b'), queued: text(d, '[data-role=queued] b'),
      error: error ? error.innerText.trim() : null, reason: error ? error.dataset.reason : null,
    };
  }),
  banner: Array.from(document.querySelectorAll('#banner li')).map((e) => e.textContent.trim()),
};
"#;

/// `examples/ha` behind the lab's HAProxy: every farm with both members green "Up" and
/// ADMIN's ports as declared and as the lab serves them; a member HAProxy takes out (PSIS
/// killed on app1 while steward only monitors) turns red "Down" in its farm only, and the
/// banner says so.
#[test]
fn load_balancer_section_shows_every_member_in_words_and_colour() {
    let (Some(chromium), Some(chromedriver), Some(_)) = (
        require_tool("chromium", "chromium"),
        require_tool("chromedriver", "chromium-driver"),
        require_tool("haproxy", "haproxy"),
    ) else {
        return;
    };
    let mut lab = steward_testkit::lab::LabDaemon::new(
        Path::new(env!("CARGO_BIN_EXE_steward")),
        228,
        steward_testkit::lab::Options {
            resync: "1s",
            ..Default::default()
        },
    );
    lab.use_example("examples/ha");
    lab.write(
        "health-checks.yaml",
        "apiVersion: steward/v1\nkind: HealthCheck\nmetadata: {name: psis}\nspec: {service: PSIS, interval: 1s, timeout: 500ms, fall: 2, rise: 2}\n",
    );
    lab.commit("PSIS checked every second");
    lab.spawn();
    let every_member = |s: &Value, state: &str| {
        s["loadBalancer"]["farms"].as_array().is_some_and(|farms| {
            farms.len() == 11
                && farms.iter().all(|f| {
                    f["members"]
                        .as_array()
                        .is_some_and(|m| m.iter().all(|m| m["state"] == state))
                })
        })
    };
    lab.wait_status("every farm member up at HAProxy", |s| every_member(s, "up"));

    let tmp = tempfile::tempdir().expect("tempdir");
    let browser = Browser::start(&chromedriver, &chromium, tmp.path());
    browser.navigate(&format!("http://{}/", lab.api));
    let page = wait_for(
        "every member Up on the page",
        Duration::from_secs(60),
        |last| {
            let page = browser.execute(READ_LOAD_BALANCER);
            let farms = page["farms"].as_array().cloned().unwrap_or_default();
            // A server that is no member of a farm (HL7's standby) shows a dash.
            let members: Vec<&Value> = farms
                .iter()
                .flat_map(|f| f["members"].as_array().unwrap().iter())
                .filter(|m| m["text"] != "—")
                .collect();
            // HL7 routes to its active listener only: 10 farms x 2 members + 1.
            let all_up = members.len() == 21
                && members
                    .iter()
                    .all(|m| m["state"] == "healthy" && m["text"] == "Up");
            *last = page.to_string();
            (farms.len() == 11 && all_up).then_some(page)
        },
    );
    assert_eq!(page["vendor"], "haproxy", "{page}");
    assert!(
        !page["text"]
            .as_str()
            .unwrap()
            .lines()
            .any(|l| l.trim() == "null"),
        "{page}"
    );
    let admin = page["farms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "ADMIN")
        .unwrap();
    assert_eq!(admin["ports"], "443 (on 10443), 80 (on 10080)", "{page}");
    let green = page["farms"][0]["members"][0]["color"].clone();
    browser.screenshot("dashboard-load-balancer.png");

    // The HL7 standby (installed and stopped by the failover) is where it should be: its
    // tile says Standby in green, and the fleet summary stays healthy.
    // The failover names its active listener on its next pass, which can come just after
    // the listener's first passing probe has made the summary all healthy.
    let overview = wait_for(
        "every service Healthy or Standby in the summary, and an active HL7 listener",
        Duration::from_secs(60),
        |last| {
            let page = browser.execute(READ_PAGE);
            *last = page.to_string();
            (page["summary"] == "All 22 services Healthy" && page["hl7"].is_string())
                .then_some(page)
        },
    );
    let active = overview["hl7"]
        .as_str()
        .expect("an active HL7 listener")
        .to_owned();
    let standby = if active == "app1" { "app2" } else { "app1" };
    let hl7 = tile(&overview, standby, "HL7");
    assert_eq!(hl7["state"], "standby", "{overview}");
    assert_eq!(hl7["text"], "Standby", "{overview}");
    assert_eq!(
        tile(&overview, &active, "HL7")["state"],
        "healthy",
        "{overview}"
    );

    // PSIS on app1 dies and stays dead (steward only reports in monitor mode): HAProxy
    // marks it down after two failed checks, and the page follows.
    lab.monitor_only();
    let address = lab.server_address("app1").to_string();
    let psis = lab
        .service_processes("PSIS")
        .into_iter()
        .find(|p| p.address().as_deref() == Some(address.as_str()))
        .expect("PSIS on app1");
    steward_testkit::lab::signal(psis.pid, rustix::process::Signal::KILL);
    let page = wait_for(
        "PSIS on app1 Down on the page",
        Duration::from_secs(60),
        |last| {
            let page = browser.execute(READ_LOAD_BALANCER);
            *last = page.to_string();
            let farms = page["farms"].as_array()?;
            let psis = farms.iter().find(|f| f["kind"] == "PSIS")?;
            let app1 = psis["members"]
                .as_array()?
                .iter()
                .find(|m| m["server"] == "app1")?;
            (app1["state"] == "down" && app1["text"] == "Down").then_some(page)
        },
    );
    for farm in page["farms"].as_array().unwrap() {
        for member in farm["members"].as_array().unwrap() {
            if member["text"] == "—" {
                continue;
            }
            let down = farm["kind"] == "PSIS" && member["server"] == "app1";
            assert_eq!(member["text"], if down { "Down" } else { "Up" }, "{farm}");
            // Colour as well as words: red differs from the green of a member up.
            assert_eq!(member["color"] != green, down, "{farm}");
        }
    }
    assert!(
        page["banner"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "PSIS on app1 is Down at the load balancer"),
        "{page}"
    );
    browser.screenshot("dashboard-load-balancer-member-down.png");
    drop(browser);
    lab.stop();
}

#[test]
fn notifications_section_shows_last_sent_queue_and_last_error_in_words_and_colour() {
    let (Some(chromium), Some(chromedriver)) = (
        require_tool("chromium", "chromium"),
        require_tool("chromedriver", "chromium-driver"),
    ) else {
        return;
    };
    let Some(python) = smtp::python() else { return };
    let server = smtp::Smtpd::start(&python, smtp::ServerOptions::default());
    let daemon = LabDaemon::start("127.0.229.1:9464", "127.0.229.11");
    daemon.wait_converged(Duration::from_secs(120));

    // Two objects: `admins` mails the real server, `pager` a port nobody listens on.
    let closed = free_port("127.0.0.1");
    let object = |name: &str, port: u16| {
        format!(
            "apiVersion: steward/v1\nkind: Notifications\nmetadata: {{name: {name}}}\nspec:\n  smtp: {{server: 127.0.0.1, port: {port}, tls: none}}\n  from: steward@example.eng\n  to: [{name}@example.eng]\n  events: [DesiredStateInvalid]\n"
        )
    };
    let desired = daemon.desired_state();
    std::fs::write(
        desired.join("notifications.yaml"),
        format!(
            "{}---\n{}",
            object("admins", server.port),
            object("pager", closed)
        ),
    )
    .unwrap();
    wait_for(
        "both Notifications objects in the status",
        Duration::from_secs(60),
        |last| {
            let doc = daemon.status()?;
            *last = doc["notifications"].to_string();
            (doc["notifications"].as_array()?.len() == 2).then_some(())
        },
    );
    // A broken commit: one DesiredStateInvalid mail for each object.
    let app2 = desired.join("servers/app2.yaml");
    let original = std::fs::read_to_string(&app2).unwrap();
    std::fs::write(&app2, original.replacen("  hostname: ", "  hostname: [", 1)).unwrap();
    server.wait_for(1);

    let tmp = tempfile::tempdir().expect("tempdir");
    let browser = Browser::start(&chromedriver, &chromium, tmp.path());
    browser.navigate("http://127.0.229.1:9464/");
    let page = wait_for(
        "both objects on the page",
        Duration::from_secs(60),
        |last| {
            let page = browser.execute(READ_NOTIFICATIONS);
            *last = page.to_string();
            let objects = page["objects"].as_array()?;
            let by = |name: &str| objects.iter().find(|o| o["name"] == name);
            let (admins, pager) = (by("admins")?, by("pager")?);
            (admins["state"] == "healthy" && pager["state"] == "down" && pager["queued"] == "1")
                .then(|| page.clone())
        },
    );
    let objects = page["objects"].as_array().unwrap();
    let admins = &objects[0];
    assert_eq!(admins["name"], "admins", "{page}");
    assert_eq!(admins["text"], "Delivering", "{page}");
    assert_ne!(admins["lastSent"], "never", "{page}");
    assert_eq!(admins["queued"], "0", "{page}");
    assert_eq!(admins["error"], Value::Null, "{page}");
    let pager = &objects[1];
    assert_eq!(pager["text"], "Failing", "{page}");
    assert_eq!(pager["lastSent"], "never", "{page}");
    assert_eq!(pager["reason"], "tcp", "{page}");
    assert!(
        pager["error"]
            .as_str()
            .unwrap()
            .contains(&closed.to_string()),
        "the last error names where it failed: {page}"
    );
    // Colour as well as words: the badges differ, green against red.
    assert_ne!(admins["color"], pager["color"], "{page}");
    assert!(
        page["banner"].as_array().unwrap().iter().any(|l| l
            .as_str()
            .unwrap()
            .starts_with("Mail notifications pager failing: tcp")),
        "{page}"
    );
    browser.screenshot("dashboard-notifications.png");
}

/// The leader line, on each daemon's page.
const READ_LEADER: &str = r#"
const e = document.getElementById('leader');
return { updates: Number(document.body.dataset.updates || 0), shown: !e.hidden, text: e.innerText.trim() };
"#;

#[test]
fn with_ha_both_the_leader_and_a_follower_page_say_who_leads() {
    let (Some(chromium), Some(chromedriver)) = (
        require_tool("chromium", "chromium"),
        require_tool("chromedriver", "chromium-driver"),
    ) else {
        return;
    };
    let Some(etcd) = steward_testkit::etcd::EtcdCluster::start(1) else {
        return;
    };
    let steward = Path::new(env!("CARGO_BIN_EXE_steward"));
    let ha = |id: &str| {
        ["--ha", &etcd.endpoints(), "--ha-id", id]
            .map(str::to_owned)
            .to_vec()
    };
    let mut lab = steward_testkit::lab::LabDaemon::new(
        steward,
        230,
        steward_testkit::lab::Options {
            extra_args: ha("ctl1"),
            ..Default::default()
        },
    );
    // HA daemons never make their own CA: one made beforehand, which both use.
    let made = Command::new(steward)
        .args(["ca", "init", "--dir"])
        .arg(lab.state.join("ca"))
        .output()
        .expect("steward ca init");
    assert!(made.status.success(), "{made:?}");
    lab.spawn();
    lab.wait_status("ctl1 to lead", |s| s["ha"]["role"] == "leader");

    let follower_state = lab.root().join("state-ctl2");
    steward_testkit::copy_dir(&lab.state.join("ca"), &follower_state.join("ca"));
    let follower_api = "127.0.230.2:9464";
    let mut command = Command::new(steward);
    command
        .env("NO_COLOR", "1")
        .args(["run", "--lab-attach", "--desired-state"])
        .arg(&lab.desired)
        .arg("--state-dir")
        .arg(&follower_state)
        .args(["--listen", follower_api])
        .args(["--lab-first-address", &lab.address_of(1).to_string()])
        .args(ha("ctl2"));
    let follower_log = lab.root().join("daemon-ctl2.log");
    let mut follower = Peer::spawn("steward ctl2", command, &follower_log);
    wait_for("ctl2 to follow ctl1", Duration::from_secs(60), |last| {
        follower.assert_running(&follower_log);
        let status = get(follower_api, "/api/v1/status").ok()?;
        *last = status.text();
        let ha = &status.json()["ha"];
        (ha["role"] == "follower" && ha["leader"]["id"] == "ctl1").then_some(())
    });

    let tmp = tempfile::tempdir().expect("tempdir");
    let browser = Browser::start(&chromedriver, &chromium, tmp.path());
    for (api, expected) in [
        (lab.api.to_string(), "leader: ctl1 (this daemon)"),
        (
            follower_api.to_owned(),
            "leader: ctl1 · this daemon: ctl2, follower (read-only)",
        ),
    ] {
        browser.navigate(&format!("http://{api}/"));
        let line = wait_for("the page's leader line", Duration::from_secs(60), |last| {
            let line = browser.execute(READ_LEADER);
            *last = line.to_string();
            (line["updates"].as_u64() > Some(0)).then_some(line)
        });
        assert_eq!(line["shown"], true, "{api}: {line}");
        assert_eq!(line["text"], expected, "{api}: {line}");
    }
    browser.screenshot("dashboard-ha-follower.png");
    drop(browser);
    // The follower names the lab's directory: stopped before the lab checks that nothing
    // of it is left.
    drop(follower);
    lab.stop();
}
