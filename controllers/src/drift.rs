//! The kinds of drift steward detects: the `kind` label of the drift counters.

/// A way the fleet can differ from the desired state after having matched it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum DriftKind {
    /// A declared service is not installed.
    ServiceMissing,
    /// A declared service is installed but not running.
    ServiceStopped,
    /// Installed with other ports, drive or release than declared.
    ServiceSpec,
    /// The server's certificate is not the one steward put there.
    Certificate,
    /// The agent holds other service URLs than the desired state implies.
    ConnectionStrings,
    /// A role group of an ActiveDirectory is gone.
    DirectoryGroup,
    /// A managed group's members differ from `members` (a listed account taken out, or
    /// with `exact`, one added).
    DirectoryMembers,
}

impl DriftKind {
    pub(crate) const ALL: [DriftKind; 7] = [
        DriftKind::ServiceMissing,
        DriftKind::ServiceStopped,
        DriftKind::ServiceSpec,
        DriftKind::Certificate,
        DriftKind::ConnectionStrings,
        DriftKind::DirectoryGroup,
        DriftKind::DirectoryMembers,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ServiceMissing => "service_missing",
            Self::ServiceStopped => "service_stopped",
            Self::ServiceSpec => "service_spec",
            Self::Certificate => "certificate",
            Self::ConnectionStrings => "connection_strings",
            Self::DirectoryGroup => "directory_group",
            Self::DirectoryMembers => "directory_members",
        }
    }
}
