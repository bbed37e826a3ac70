//! Desired-state YAML for tests, built from a few calls instead of pasted copies:
//!
//! ```
//! use steward_testkit::Fixture;
//! let yaml = Fixture::installation()
//!     .prune(true)
//!     .server(Fixture::server("app1").services(["PSIS", "PSWS"]))
//!     .documents();
//! assert!(yaml.contains("kind: Server"));
//! ```
//!
//! The layout is fixed and compact (one line per field, flow maps), so tests may assert
//! line numbers of what they append: an Installation is 9 lines plus one per optional
//! field set, a Server 6 lines (hostname and certificate) plus `agent` and `services`.

use std::path::Path;

/// Where fixtures start.
pub struct Fixture;

impl Fixture {
    /// `kind: Installation` named `ps`: non-production, advanced, release 6.12.1, database
    /// `PS` on db.example.eng as `u` with `passwordRef: env:PW`, generated certificates.
    pub fn installation() -> Installation {
        Installation {
            name: "ps".into(),
            environment: "non-production".into(),
            install_type: "advanced".into(),
            release: "6.12.1".into(),
            mode: None,
            prune: None,
            load_balancer: None,
            spec_lines: String::new(),
            database: Database::Named {
                name: "PS".into(),
                user: "u".into(),
                password_ref: "env:PW".into(),
            },
            certificate_authority: "{mode: generated}".into(),
            servers: Vec::new(),
            documents: Vec::new(),
        }
    }

    /// `kind: Server` named `name` at `NAME.example.eng`, with a generated certificate and
    /// no `services` line.
    pub fn server(name: &str) -> Server {
        Server {
            name: name.into(),
            hostname: format!("{name}.example.eng"),
            agent: None,
            certificate: "{generate: true}".into(),
            services: None,
            tail: String::new(),
        }
    }
}

enum Database {
    /// On db.example.eng: name, login, `passwordRef`.
    Named {
        name: String,
        user: String,
        password_ref: String,
    },
    /// The whole `database` value as a flow map.
    Flow(String),
}

/// An Installation and the documents that go with it.
pub struct Installation {
    name: String,
    environment: String,
    install_type: String,
    release: String,
    mode: Option<String>,
    prune: Option<bool>,
    load_balancer: Option<String>,
    spec_lines: String,
    database: Database,
    certificate_authority: String,
    servers: Vec<Server>,
    documents: Vec<String>,
}

impl Installation {
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    pub fn environment(mut self, environment: &str) -> Self {
        self.environment = environment.into();
        self
    }

    pub fn install_type(mut self, install_type: &str) -> Self {
        self.install_type = install_type.into();
        self
    }

    pub fn release(mut self, release: &str) -> Self {
        self.release = release.into();
        self
    }

    /// `mode: autoCorrect` or `mode: monitor`.
    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = Some(mode.into());
        self
    }

    pub fn prune(mut self, prune: bool) -> Self {
        self.prune = Some(prune);
        self
    }

    /// `loadBalancer: {fqdn: FQDN}`.
    pub fn load_balancer(self, fqdn: &str) -> Self {
        self.load_balancer_flow(&format!("{{fqdn: {fqdn}}}"))
    }

    /// The whole `loadBalancer` value as a flow map, e.g. `{fqdn: lb.example.eng, vendor:
    /// haproxy}`.
    pub fn load_balancer_flow(mut self, flow: &str) -> Self {
        self.load_balancer = Some(flow.into());
        self
    }

    /// Lines of the spec written as given after `loadBalancer` and before `database`
    /// (two-space indented, each ending in a newline), for what the builder does not know.
    pub fn spec_lines(mut self, lines: &str) -> Self {
        self.spec_lines.push_str(lines);
        self
    }

    /// The database's name, login and `passwordRef` (the server stays db.example.eng).
    pub fn database(mut self, name: &str, user: &str, password_ref: &str) -> Self {
        self.database = Database::Named {
            name: name.into(),
            user: user.into(),
            password_ref: password_ref.into(),
        };
        self
    }

    /// The whole `database` value as a flow map, e.g. a test database's
    /// `{server: 127.0.0.1, port: 1433, ...}`.
    pub fn database_flow(mut self, flow: &str) -> Self {
        self.database = Database::Flow(flow.into());
        self
    }

    /// The `certificateAuthority` value as a flow map, e.g. `{mode: generated, duration: 2m}`.
    pub fn certificate_authority(mut self, flow: &str) -> Self {
        self.certificate_authority = flow.into();
        self
    }

    /// A Server document after the Installation.
    pub fn server(mut self, server: Server) -> Self {
        self.servers.push(server);
        self
    }

    /// Servers `name` with `kinds`, the rest as [`Fixture::server`] makes it.
    pub fn servers<'a>(
        mut self,
        servers: impl IntoIterator<Item = (&'a str, &'a [&'a str])>,
    ) -> Self {
        for (name, kinds) in servers {
            self.servers
                .push(Fixture::server(name).services(kinds.iter().copied()));
        }
        self
    }

    /// Any other document (a HealthCheck, an ActiveDirectory...), as written, after the
    /// servers.
    pub fn document(mut self, yaml: &str) -> Self {
        self.documents.push(yaml.into());
        self
    }

    /// The Installation document alone.
    pub fn yaml(&self) -> String {
        let mut out = format!(
            "apiVersion: steward/v1\nkind: Installation\nmetadata: {{name: {}}}\nspec:\n  environment: {}\n  installType: {}\n  release: \"{}\"\n",
            self.name, self.environment, self.install_type, self.release
        );
        if let Some(mode) = &self.mode {
            out += &format!("  mode: {mode}\n");
        }
        if let Some(prune) = self.prune {
            out += &format!("  prune: {prune}\n");
        }
        if let Some(flow) = &self.load_balancer {
            out += &format!("  loadBalancer: {flow}\n");
        }
        out += &self.spec_lines;
        let database = match &self.database {
            Database::Named {
                name,
                user,
                password_ref,
            } => format!(
                "{{server: db.example.eng, name: {name}, user: {user}, passwordRef: {password_ref}}}"
            ),
            Database::Flow(flow) => flow.clone(),
        };
        out += &format!(
            "  database: {database}\n  certificateAuthority: {}\n",
            self.certificate_authority
        );
        out
    }

    /// Every document in one multi-document file: the Installation, its servers, the rest.
    pub fn documents(&self) -> String {
        let mut parts = vec![self.yaml()];
        parts.extend(self.servers.iter().map(Server::yaml));
        parts.extend(self.documents.iter().cloned());
        parts.join("---\n")
    }

    /// A desired-state directory: `installation.yaml`, `SERVER.yaml` for each server and
    /// `other-N.yaml` for each other document, in `dir` (created).
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("create the desired-state directory");
        let write = |name: String, text: &str| {
            std::fs::write(dir.join(&name), text)
                .unwrap_or_else(|e| panic!("write {name} of the fixture: {e}"))
        };
        write("installation.yaml".into(), &self.yaml());
        for server in &self.servers {
            write(format!("{}.yaml", server.name), &server.yaml());
        }
        for (i, document) in self.documents.iter().enumerate() {
            write(format!("other-{i}.yaml"), document);
        }
    }
}

/// A Server document.
pub struct Server {
    name: String,
    hostname: String,
    agent: Option<String>,
    certificate: String,
    services: Option<Vec<String>>,
    tail: String,
}

impl Server {
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// `agent: URL`.
    pub fn agent(mut self, url: &str) -> Self {
        self.agent = Some(url.into());
        self
    }

    /// The `certificate` value as a flow map, e.g. `{certFile: a.pem, keyFile: a.key}`.
    pub fn certificate(mut self, flow: &str) -> Self {
        self.certificate = flow.into();
        self
    }

    /// `services: [{kind: A}, {kind: B}]` (`services: []` for none).
    pub fn services<'a>(mut self, kinds: impl IntoIterator<Item = &'a str>) -> Self {
        self.services = Some(kinds.into_iter().map(str::to_owned).collect());
        self
    }

    /// Lines of the spec written as given after the others (two-space indented, each
    /// ending in a newline), for what the builder does not know.
    pub fn spec_lines(mut self, lines: &str) -> Self {
        self.tail.push_str(lines);
        self
    }

    pub fn yaml(&self) -> String {
        let mut out = format!(
            "apiVersion: steward/v1\nkind: Server\nmetadata: {{name: {}}}\nspec:\n  hostname: {}\n",
            self.name, self.hostname
        );
        if let Some(agent) = &self.agent {
            out += &format!("  agent: {agent}\n");
        }
        out += &format!("  certificate: {}\n", self.certificate);
        if let Some(kinds) = &self.services {
            let kinds: Vec<String> = kinds.iter().map(|k| format!("{{kind: {k}}}")).collect();
            out += &format!("  services: [{}]\n", kinds.join(", "));
        }
        out + &self.tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_compact_layout_tests_count_lines_of() {
        let yaml = Fixture::installation()
            .server(Fixture::server("app1").services(["PSIS", "PSWS"]))
            .documents();
        assert_eq!(
            yaml,
            "apiVersion: steward/v1\nkind: Installation\nmetadata: {name: ps}\nspec:\n  environment: non-production\n  installType: advanced\n  release: \"6.12.1\"\n  database: {server: db.example.eng, name: PS, user: u, passwordRef: env:PW}\n  certificateAuthority: {mode: generated}\n---\napiVersion: steward/v1\nkind: Server\nmetadata: {name: app1}\nspec:\n  hostname: app1.example.eng\n  certificate: {generate: true}\n  services: [{kind: PSIS}, {kind: PSWS}]\n"
        );
    }

    #[test]
    fn optional_fields_come_in_the_file_format_s_order() {
        let yaml = Fixture::installation()
            .mode("monitor")
            .prune(true)
            .load_balancer("lb.example.eng")
            .yaml();
        let order: Vec<&str> = yaml
            .lines()
            .filter_map(|l| l.trim().split(':').next())
            .collect();
        assert_eq!(
            order[4..],
            [
                "environment",
                "installType",
                "release",
                "mode",
                "prune",
                "loadBalancer",
                "database",
                "certificateAuthority"
            ]
        );
    }

    #[test]
    fn spec_lines_go_between_the_load_balancer_and_the_database() {
        let yaml = Fixture::installation()
            .load_balancer_flow("{fqdn: lb.example.eng, vendor: haproxy}")
            .spec_lines("  hl7: {preferred: app2}\n")
            .yaml();
        assert!(
            yaml.contains(
                "  loadBalancer: {fqdn: lb.example.eng, vendor: haproxy}\n  hl7: {preferred: app2}\n  database: "
            ),
            "{yaml}"
        );
    }

    #[test]
    fn a_directory_gets_one_file_per_document() {
        let dir = tempfile::tempdir().unwrap();
        Fixture::installation()
            .server(Fixture::server("app1").agent("https://127.0.0.1:7443"))
            .document("apiVersion: steward/v1\nkind: HealthCheck\n")
            .write(dir.path());
        let app1 = std::fs::read_to_string(dir.path().join("app1.yaml")).unwrap();
        assert!(app1.contains("  agent: https://127.0.0.1:7443\n  certificate:"));
        assert!(dir.path().join("installation.yaml").is_file());
        assert!(dir.path().join("other-0.yaml").is_file());
    }
}
