use std::time::Duration;

/// Everything the election and the cluster's shared keys can fail with. The messages
/// name etcd's endpoints and keys, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid --ha endpoints `{0}`: expected etcd://HOST:PORT[,HOST:PORT...] or etcds://... (TLS)")]
    Endpoints(String),
    #[error("invalid election settings: {0}")]
    Config(String),
    #[error("etcd ({endpoints}): {doing} failed: {source}")]
    Etcd {
        endpoints: String,
        doing: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd ({endpoints}): {doing} got no answer within {after:?}")]
    Timeout {
        endpoints: String,
        doing: &'static str,
        after: Duration,
    },
    #[error("etcd ({endpoints}): {what}")]
    Unexpected { endpoints: String, what: String },
    #[error(
        "this daemon's steward CA (sha256 {ours}) is not the one the other daemons use \
         (sha256 {theirs}, published in etcd): every daemon must run with the same CA. \
         Restore a backup of the leader's state into this daemon's --state-dir \
         (`steward backup` there, `steward restore FILE --state-dir DIR` here) and start again"
    )]
    CaMismatch { ours: String, theirs: String },
    #[error(
        "no steward CA in this daemon's state directory, and the other daemons use one \
         (sha256 {theirs}, published in etcd): a daemon never makes its own CA in HA. \
         Restore a backup of the leader's state into --state-dir and start again"
    )]
    CaMissing { theirs: String },
}

impl LeaderError {
    /// A bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Endpoints(_) => "endpoints",
            Self::Config(_) => "config",
            Self::Etcd { .. } => "etcd",
            Self::Timeout { .. } => "timeout",
            Self::Unexpected { .. } => "unexpected",
            Self::CaMismatch { .. } => "ca_mismatch",
            Self::CaMissing { .. } => "ca_missing",
        }
    }
}
