//! What the vendor's install guide gives the service login
//! (`ImprivataPatientSecureServices_<db>`): the one list both provisioning and verification
//! read, so they cannot drift apart.
//!
//! Server level: CONNECT SQL, VIEW SERVER STATE. Database level: VIEW DATABASE STATE,
//! membership of db_datareader, db_datawriter, db_ddladmin, db_owner and of an `executor`
//! role that holds EXECUTE on the database.

use std::fmt;

/// The database role the vendor's script creates for running stored procedures.
pub const EXECUTOR_ROLE: &str = "executor";

/// Database roles the service login's user must be a member of, in the order they are
/// granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    DbDatareader,
    DbDatawriter,
    DbDdladmin,
    DbOwner,
    Executor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::DbDatareader,
        Role::DbDatawriter,
        Role::DbDdladmin,
        Role::DbOwner,
        Role::Executor,
    ];

    /// The role's name in `sys.database_principals`.
    pub fn name(self) -> &'static str {
        match self {
            Self::DbDatareader => "db_datareader",
            Self::DbDatawriter => "db_datawriter",
            Self::DbDdladmin => "db_ddladmin",
            Self::DbOwner => "db_owner",
            Self::Executor => EXECUTOR_ROLE,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Server-level permissions the service login needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerPermission {
    ConnectSql,
    ViewServerState,
}

impl ServerPermission {
    pub const ALL: [ServerPermission; 2] = [
        ServerPermission::ConnectSql,
        ServerPermission::ViewServerState,
    ];

    /// The name in `sys.server_permissions.permission_name` and in `GRANT`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ConnectSql => "CONNECT SQL",
            Self::ViewServerState => "VIEW SERVER STATE",
        }
    }
}

impl fmt::Display for ServerPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
