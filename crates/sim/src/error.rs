use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the simulated fleet could not start, or a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate for {host}: {source}")]
    Pki {
        host: String,
        #[source]
        source: steward_pki::PkiError,
    },
    #[error("agent {host}: {source}")]
    Agent {
        host: String,
        #[source]
        source: steward_agent::AgentError,
    },
    #[error("control API cannot listen on {addr}: {source}")]
    Control {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{count} servers from {first} run past the end of 127.0.0.0/8")]
    NoRoom {
        count: usize,
        first: std::net::Ipv4Addr,
    },
}

impl SimError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Pki { .. } => "pki",
            Self::Agent { .. } => "agent",
            Self::Control { .. } => "control",
            Self::NoRoom { .. } => "no_room",
        }
    }
}
