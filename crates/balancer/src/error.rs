//! The one error of the balancer: each variant is a condition reason with a bounded label.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    /// An AS3 declaration or NITRO document with no farm: applying an empty declaration
    /// deletes what the tenant holds.
    #[error("nothing to declare: no service is placed behind the load balancer, and an empty {0} would delete the existing configuration")]
    EmptyDeclaration(&'static str),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("haproxy cannot be run ({0})")]
    HaproxyMissing(String),
    #[error("haproxy {found} is too old: {needed} or later is needed")]
    HaproxyTooOld { found: String, needed: &'static str },
    /// `haproxy -c` refused the configuration; the running process keeps the old one.
    #[error("haproxy rejected the configuration: {0}")]
    ConfigRejected(String),
    /// A member's host name does not resolve (haproxy refuses the configuration for it).
    #[error("a member's address does not resolve: {0}")]
    Unresolvable(String),
    #[error("haproxy did not take the new configuration: {0}")]
    ReloadFailed(String),
    #[error("haproxy's socket {} does not answer: {detail}", path.display())]
    SocketUnresponsive { path: PathBuf, detail: String },
    /// The runtime API answered, but not what was asked.
    #[error("haproxy refused the command: {0}")]
    CommandRefused(String),
}

impl BalancerError {
    /// The bounded metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::EmptyDeclaration(_) => "lb_empty_declaration",
            Self::Write { .. } => "lb_write",
            Self::HaproxyMissing(_) | Self::HaproxyTooOld { .. } => "lb_haproxy_missing",
            Self::ConfigRejected(_) => "lb_config_rejected",
            Self::Unresolvable(_) => "lb_unresolvable",
            Self::ReloadFailed(_) => "lb_reload_failed",
            Self::SocketUnresponsive { .. } => "lb_socket_unresponsive",
            Self::CommandRefused(_) => "lb_command_refused",
        }
    }

    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::EmptyDeclaration(_) => "EmptyDeclaration",
            Self::Write { .. } => "WriteFailed",
            Self::HaproxyMissing(_) | Self::HaproxyTooOld { .. } => "HAProxyMissing",
            Self::ConfigRejected(_) => "ConfigRejected",
            Self::Unresolvable(_) => "Unresolvable",
            Self::ReloadFailed(_) => "ReloadFailed",
            Self::SocketUnresponsive { .. } => "SocketUnresponsive",
            Self::CommandRefused(_) => "CommandRefused",
        }
    }
}
