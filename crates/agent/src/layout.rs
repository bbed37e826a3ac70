use std::path::{Path, PathBuf};

use steward_model::ServiceKind;

/// Where the agent keeps things below its state directory:
///
/// ```text
/// agent-state.json            installed services (spec + pid), connection strings
/// fencing.json                the highest steward leader epoch obeyed (controller HA)
/// tls/server.pem, server.key  the server's TLS certificate, served by every service
/// services/KIND/              one service's "installation": manifest, config, log
/// ```
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            root: state_dir.into(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join("agent-state.json")
    }

    pub fn fencing_file(&self) -> PathBuf {
        self.root.join("fencing.json")
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.tls_dir().join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.tls_dir().join("server.key")
    }

    pub fn services_dir(&self) -> PathBuf {
        self.root.join("services")
    }

    pub fn service_dir(&self, kind: ServiceKind) -> PathBuf {
        self.services_dir().join(kind.as_str())
    }

    pub fn log_file(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join("service.log")
    }

    pub fn connection_strings_file(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join("connection-strings.json")
    }

    pub fn manifest_file(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join("install.json")
    }
}
