//! The loader treats a hostile directory as normal input: whatever it holds, a load ends
//! (no FIFO or link loop can stall it), reads what it may, and reports everything else as
//! a located error, so nothing silently disappears from the desired state.
#![cfg(unix)]

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use steward_model::load::{load_dir, load_dir_with, load_text, Limits, LoadError, Loaded};
use steward_model::validate::compile;
use steward_model::{validate_dir, Code, Compiled, Diagnostic};
use steward_testkit::Fixture;
use tempfile::TempDir;

fn installation() -> String {
    Fixture::installation()
        .prune(true)
        .database("PS", "ps_installer", "env:PS_DB_PASSWORD")
        .yaml()
}

fn server(name: &str) -> String {
    Fixture::server(name).services(["HEALTH"]).yaml()
}

fn app1() -> String {
    Fixture::server("app1").services(["PSIS", "PSWS"]).yaml()
}

/// A valid desired state (an installation and app1) to put hostile entries next to.
fn valid_dir() -> TempDir {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("installation.yaml"), installation()).unwrap();
    fs::create_dir(tmp.path().join("servers")).unwrap();
    fs::write(tmp.path().join("servers/app1.yaml"), app1()).unwrap();
    tmp
}

/// Validate on another thread: a loader that blocks fails the test instead of hanging it.
/// The bound is a hang guard, not a speed goal.
fn validate(dir: &Path) -> Compiled {
    let dir = dir.to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(validate_dir(&dir));
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the load did not finish: it blocked")
        .expect("the directory itself is readable")
}

fn render(c: &Compiled) -> String {
    c.diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

fn errors_with(c: &Compiled, code: Code) -> Vec<&Diagnostic> {
    c.diagnostics.iter().filter(|d| d.code == code).collect()
}

/// The entry is one located error of `code` naming `file`, the snapshot is refused, and
/// no misleading count rule ("no servers", "no Installation") piles on.
fn assert_refused(c: &Compiled, code: Code, file: &str) {
    let out = render(c);
    assert!(c.snapshot.is_none(), "a snapshot despite: {out}");
    let errors: Vec<&Diagnostic> = c.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert_eq!(errors[0].code, code, "{out}");
    assert_eq!(errors[0].file, Path::new(file), "{out}");
    assert!((errors[0].line, errors[0].column) >= (1, 1), "{out}");
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// The files refused as links (Code::Symlink), in the order reported.
fn refused_links(c: &Compiled) -> Vec<String> {
    errors_with(c, Code::Symlink)
        .iter()
        .map(|d| d.file.display().to_string())
        .collect()
}

/// Asserts that validating `tmp` refuses `file` as unreadable, saying `why` (if any).
fn assert_unreadable(tmp: &TempDir, file: &str, why: &str) {
    let c = validate(tmp.path());
    assert_refused(&c, Code::Unreadable, file);
    assert!(render(&c).contains(why), "{}", render(&c));
}

#[test]
fn a_fifo_named_yaml_is_an_error_and_never_opened() {
    let tmp = valid_dir();
    mkfifo(&tmp.path().join("servers/app2.yaml"));
    assert_unreadable(&tmp, "servers/app2.yaml", "FIFO");
}

#[test]
fn a_fifo_behind_a_link_is_an_error_too() {
    let tmp = valid_dir();
    mkfifo(&tmp.path().join("pipe"));
    symlink("../pipe", tmp.path().join("servers/app2.yaml")).unwrap();
    assert_unreadable(&tmp, "servers/app2.yaml", "");
}

#[test]
fn a_socket_named_yaml_is_an_error() {
    let tmp = valid_dir();
    let _listener =
        std::os::unix::net::UnixListener::bind(tmp.path().join("servers/app2.yaml")).unwrap();
    assert_unreadable(&tmp, "servers/app2.yaml", "socket");
}

#[test]
fn a_dangling_link_is_an_error_not_a_missing_server() {
    let tmp = valid_dir();
    symlink("app2-moved.yaml", tmp.path().join("servers/app2.yaml")).unwrap();
    assert_unreadable(&tmp, "servers/app2.yaml", "dangling");
}

#[test]
fn a_dangling_link_to_the_only_installation_claims_nothing_else() {
    // Without the Installation, "exactly one Installation is required" would be a
    // misleading second error: the file may well hold it.
    let tmp = valid_dir();
    fs::remove_file(tmp.path().join("installation.yaml")).unwrap();
    symlink("gone.yaml", tmp.path().join("installation.yaml")).unwrap();
    assert_unreadable(&tmp, "installation.yaml", "");
}

#[test]
fn dot_names_and_non_yaml_links_are_left_alone() {
    let tmp = valid_dir();
    // An editor's lock file (a dangling link), a dangling link to notes, a FIFO that is
    // not a YAML file, and a valid file behind a link inside the directory.
    symlink("alice@host.1:2", tmp.path().join("servers/.#app1.yaml")).unwrap();
    symlink("gone.md", tmp.path().join("NOTES.md")).unwrap();
    mkfifo(&tmp.path().join("events"));
    fs::write(tmp.path().join("app2.server"), server("app2")).unwrap();
    symlink("../app2.server", tmp.path().join("servers/app2.yaml")).unwrap();
    let c = validate(tmp.path());
    let snapshot = c
        .snapshot
        .as_ref()
        .unwrap_or_else(|| panic!("{}", render(&c)));
    assert_eq!(snapshot.servers.len(), 2, "the linked file is read");
}

#[test]
fn a_link_loop_is_reported_once_per_link() {
    let tmp = valid_dir();
    let d = tmp.path().join("servers");
    symlink(".", d.join("a")).unwrap();
    symlink(".", d.join("b")).unwrap();
    symlink("self.yaml", d.join("self.yaml")).unwrap();
    symlink("pong.yaml", d.join("ping.yaml")).unwrap();
    symlink("ping.yaml", d.join("pong.yaml")).unwrap();
    let c = validate(tmp.path());
    let out = render(&c);
    let links = refused_links(&c);
    assert_eq!(
        links,
        [
            "servers/a",
            "servers/b",
            "servers/ping.yaml",
            "servers/pong.yaml",
            "servers/self.yaml"
        ],
        "{out}"
    );
    assert_eq!(c.diagnostics.len(), 5, "{out}");
}

#[test]
fn a_link_out_of_the_directory_is_not_followed() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("app2.yaml"), server("app2")).unwrap();
    let tmp = valid_dir();
    symlink(
        outside.path().join("app2.yaml"),
        tmp.path().join("servers/app2.yaml"),
    )
    .unwrap();
    symlink("/etc/passwd", tmp.path().join("passwd.yaml")).unwrap();
    symlink("/proc/self/environ", tmp.path().join("environ.yaml")).unwrap();
    let c = validate(tmp.path());
    let out = render(&c);
    let files = refused_links(&c);
    assert_eq!(
        files,
        ["environ.yaml", "passwd.yaml", "servers/app2.yaml"],
        "{out}"
    );
    assert!(c.snapshot.is_none());
    assert!(!out.contains("root:"), "a file outside was read: {out}");
}

#[test]
fn a_symlinked_directory_is_one_error_and_not_entered() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("app2.yaml"), server("app2")).unwrap();
    let tmp = valid_dir();
    symlink(outside.path(), tmp.path().join("more-servers")).unwrap();
    symlink("servers", tmp.path().join("servers-again")).unwrap();
    let c = validate(tmp.path());
    let out = render(&c);
    let files = refused_links(&c);
    assert_eq!(files, ["more-servers", "servers-again"], "{out}");
    assert_eq!(
        c.diagnostics.len(),
        2,
        "no duplicate-name from a second read: {out}"
    );
}

#[test]
fn an_unreadable_file_or_directory_is_an_error() {
    use std::os::unix::fs::PermissionsExt;
    if steward_testkit::rerun_unprivileged("an_unreadable_file_or_directory_is_an_error") {
        return;
    }
    let tmp = valid_dir();
    let file = tmp.path().join("servers/app2.yaml");
    fs::write(&file, server("app2")).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
    let c = validate(tmp.path());
    assert_refused(&c, Code::Unreadable, "servers/app2.yaml");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();

    let sub = tmp.path().join("more");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("app3.yaml"), server("app3")).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o000)).unwrap();
    let c = validate(tmp.path());
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
    assert_refused(&c, Code::Unreadable, "more");
}

#[test]
fn a_file_over_the_size_bound_is_an_error_without_being_read_whole() {
    let tmp = valid_dir();
    // A 50 MB name: the file is refused before any of it is parsed or echoed.
    let huge = format!(
        "apiVersion: steward/v1\nkind: Server\nmetadata: {{name: {}}}\n",
        "n".repeat(50 << 20)
    );
    fs::write(tmp.path().join("servers/app2.yaml"), huge).unwrap();
    let c = validate(tmp.path());
    assert_refused(&c, Code::TooLong, "servers/app2.yaml");
    assert!(render(&c).len() < 1024, "{}", render(&c));
}

#[test]
fn the_total_size_and_the_depth_are_bounded() {
    let tmp = valid_dir();
    for i in 2..6 {
        fs::write(
            tmp.path().join(format!("servers/app{i}.yaml")),
            server(&format!("app{i}")),
        )
        .unwrap();
    }
    let limits = Limits {
        max_total_bytes: 1024,
        ..Limits::default()
    };
    let loaded = load_dir_with(tmp.path(), &limits).unwrap();
    let c = compile(loaded);
    let too_long = errors_with(&c, Code::TooLong);
    assert_eq!(too_long.len(), 1, "{}", render(&c));
    assert!(too_long[0].message.contains("more are not read"));
    assert!(c.snapshot.is_none());

    let tmp = valid_dir();
    let mut deep = tmp.path().to_owned();
    for i in 0..40 {
        deep.push(format!("d{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("app2.yaml"), server("app2")).unwrap();
    let c = validate(tmp.path());
    let out = render(&c);
    assert_refused(&c, Code::TooLong, &nested(32));
    assert!(out.contains("levels deep"), "{out}");
}

/// `d0/d1/.../dN`: the first directory nested deeper than the bound.
fn nested(n: usize) -> String {
    (0..=n)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn a_50_mb_value_is_quoted_short_in_every_message() {
    let big = "N".repeat(50 << 20);
    // One 50 MB value per file, in each kind of place a value is echoed.
    let files = [
        format!("apiVersion: steward/v1\nkind: Server\nmetadata: {{name: {big}}}\nspec:\n  hostname: app2.example.eng\n  certificate: {{generate: true}}\n"),
        format!("apiVersion: steward/v1\nkind: Server\nmetadata: {{name: app3}}\nspec:\n  hostname: {big}\n  certificate: {{generate: true}}\n"),
        format!("apiVersion: steward/v1\nkind: Server\nmetadata: {{name: app4}}\nspec:\n  hostname: app4.example.eng\n  certificate: {{generate: true}}\n  services: [{{kind: {big}}}]\n"),
        format!("apiVersion: steward/v1\nkind: HealthCheck\nmetadata: {{name: psis}}\nspec:\n  service: PSIS\n  responseMatch: {big}\n"),
        format!("apiVersion: steward/v1\nkind: HealthCheck\nmetadata: {{name: psws}}\nspec:\n  service: PSWS\n  interval: {big}\n"),
        format!("apiVersion: steward/v1\nkind: {big}\n"),
        // An explicit key: an implicit one is limited to 1,024 characters by YAML.
        format!("apiVersion: steward/v1\nkind: Server\nmetadata: {{name: app5}}\nspec:\n  ? {big}\n  : 1\n"),
    ];
    let mut loaded = Loaded::default();
    load_text(Path::new("installation.yaml"), &installation(), &mut loaded);
    load_text(Path::new("app1.yaml"), &app1(), &mut loaded);
    for (i, text) in files.iter().enumerate() {
        load_text(Path::new(&format!("big{i}.yaml")), text, &mut loaded);
    }
    let c = compile(loaded);
    let out = render(&c);
    let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "invalid-name",
            "too-long",
            "unknown-service-kind",
            "too-long",
            "too-long",
            "unknown-kind",
            "unknown-field"
        ],
        "{out}"
    );
    assert!(out.len() < 4 * 1024, "{} bytes of output", out.len());
    let cut = format!("`{}…`", "N".repeat(64));
    assert_eq!(out.matches(&cut).count(), 4, "{out}");
}

#[test]
fn control_characters_cannot_forge_a_diagnostic_or_colour_the_terminal() {
    let evil = r#""x\nx.yaml:1:1: error[fake]: forged\e[2J\e[31m\u202e""#;
    let text = format!("{}---\napiVersion: steward/v1\nkind: Server\nmetadata: {{name: {evil}}}\nspec:\n  hostname: {evil}\n  certificate: {{generate: true}}\n  services: [{{kind: {evil}}}]\n---\napiVersion: steward/v1\nkind: Server\nmetadata: {{name: app2}}\nspec:\n  {evil}: 1\n---\napiVersion: steward/v1\nkind: {evil}\n---\napiVersion: steward/v1\nkind: Installation\nmetadata: {{name: ps2}}\nspec:\n  environment: {evil}\n", installation());
    let mut loaded = Loaded::default();
    load_text(Path::new("evil.yaml"), &text, &mut loaded);
    let c = compile(loaded);
    let out = render(&c);
    let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
    for code in [
        "invalid-name",
        "invalid-fqdn",
        "unknown-service-kind",
        "unknown-field",
        "unknown-kind",
        "invalid-value",
    ] {
        assert!(codes.contains(&code), "{code} missing: {out}");
    }
    assert_eq!(out.lines().count(), c.diagnostics.len(), "{out}");
    assert!(!out.contains("\n x.yaml") && !out.lines().any(|l| l.starts_with("x.yaml")));
    assert!(
        !out.chars()
            .any(|ch| ch != '\n' && (ch.is_control() || ch == '\u{202e}')),
        "{out:?}"
    );
}

#[test]
fn a_hostile_file_name_stays_on_its_line() {
    let tmp = valid_dir();
    let name = std::ffi::OsStr::from_bytes(b"x\napp1.yaml:1:1: error[fake]: \x1b[31m\xff.yaml");
    fs::write(tmp.path().join(name), "kind: [").unwrap();
    let c = validate(tmp.path());
    let out = render(&c);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        !out.chars().any(|ch| ch != '\n' && ch.is_control()),
        "{out:?}"
    );
    let json = serde_json::to_string(&c.diagnostics).unwrap();
    assert!(json.contains("\\\\n"), "escaped in JSON too: {json}");
}

#[test]
fn the_directory_itself_missing_or_a_file_is_a_load_error() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        load_dir(&tmp.path().join("nope")),
        Err(LoadError::Io { .. })
    ));
    let file = tmp.path().join("file.yaml");
    fs::write(&file, installation()).unwrap();
    assert!(matches!(load_dir(&file), Err(LoadError::NotADirectory(_))));
    // A link to the directory is fine: only links below it are refused.
    let dir = valid_dir();
    let link: PathBuf = tmp.path().join("desired-state");
    symlink(dir.path(), &link).unwrap();
    assert!(validate(&link).snapshot.is_some());
}
