//! The read side: what server this is, and which of the vendor's pieces are missing.
//!
//! Every query is parameterized (names are never spliced into text except the database
//! name as a quoted three-part prefix), selects `TOP (n)` and is read with the same bound,
//! so a misbehaving server cannot make a verification pass read without end.

use std::collections::BTreeSet;
use std::fmt;

use tiberius::Row;

use crate::connection::Connection;
use crate::grants::{Role, ServerPermission, EXECUTOR_ROLE};
use crate::tsql;
use crate::Error;

/// What the server says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// The first line of `@@VERSION`, e.g. `Microsoft SQL Server 2022 (RTM) - 16.0.1000.6`.
    pub version: String,
    /// `SERVERPROPERTY('ProductVersion')`, e.g. `16.0.1000.6`, when the server has it.
    pub product_version: Option<String>,
    /// `SERVERPROPERTY('Edition')`, when the server has it.
    pub edition: Option<String>,
}

/// One piece of the vendor's setup that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Missing {
    /// The database itself (steward's own check of `sys.databases`).
    Database,
    /// The service login (`sys.server_principals`).
    ServiceLogin,
    ServerPermission(ServerPermission),
    /// No user in the database maps to the service login.
    DatabaseUser,
    /// Neither VIEW DATABASE STATE on the database nor VIEW SERVER STATE.
    ViewDatabaseState,
    /// No `executor` role in the database.
    ExecutorRole,
    /// The `executor` role does not hold EXECUTE on the database.
    ExecutorExecute,
    /// The service login's user is not a member of this role.
    RoleMember(Role),
}

impl Missing {
    /// A bounded label, for status and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::ServiceLogin => "service_login",
            Self::ServerPermission(ServerPermission::ConnectSql) => "connect_sql",
            Self::ServerPermission(ServerPermission::ViewServerState) => "view_server_state",
            Self::DatabaseUser => "database_user",
            Self::ViewDatabaseState => "view_database_state",
            Self::ExecutorRole => "executor_role",
            Self::ExecutorExecute => "executor_execute",
            Self::RoleMember(Role::DbDatareader) => "role_db_datareader",
            Self::RoleMember(Role::DbDatawriter) => "role_db_datawriter",
            Self::RoleMember(Role::DbDdladmin) => "role_db_ddladmin",
            Self::RoleMember(Role::DbOwner) => "role_db_owner",
            Self::RoleMember(Role::Executor) => "role_executor",
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Database => f.write_str("database"),
            Self::ServiceLogin => f.write_str("service login"),
            Self::ServerPermission(p) => write!(f, "{p} for the service login"),
            Self::DatabaseUser => f.write_str("database user for the service login"),
            Self::ViewDatabaseState => {
                f.write_str("VIEW DATABASE STATE (or VIEW SERVER STATE) for the service login")
            }
            Self::ExecutorRole => f.write_str("executor role"),
            Self::ExecutorExecute => f.write_str("EXECUTE for the executor role"),
            Self::RoleMember(r) => write!(f, "membership of {r}"),
        }
    }
}

/// The result of one verification pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub version: ServerVersion,
    /// Every missing piece, in a stable order; empty when all is in place.
    pub missing: Vec<Missing>,
}

impl Verification {
    pub fn database_exists(&self) -> bool {
        !self.missing.contains(&Missing::Database)
    }
}

/// Most rows any verification query may return.
const MAX_ROWS: usize = 64;

/// Reads the server's version and checks the database and the service login `login`.
/// When a piece is absent, the pieces that depend on it are absent too and are listed.
pub async fn verify(
    conn: &mut Connection,
    database: &str,
    login: &str,
) -> Result<Verification, Error> {
    let version = server_version(conn).await?;
    let mut missing = BTreeSet::new();

    let db_exists = !conn
        .rows(
            "SELECT TOP (1) name FROM sys.databases WHERE name = @P1",
            &[&database],
            1,
        )
        .await?
        .is_empty();
    let login_id = conn
        .rows(
            "SELECT TOP (1) principal_id FROM sys.server_principals WHERE name = @P1",
            &[&login],
            1,
        )
        .await?
        .first()
        .map(|r| int(conn, r, 0))
        .transpose()?;

    let mut server_grants = BTreeSet::new();
    match login_id {
        None => {
            missing.insert(Missing::ServiceLogin);
        }
        Some(principal_id) => {
            let rows = conn
                .rows(
                    "SELECT TOP (64) permission_name FROM sys.server_permissions \
                     WHERE grantee_principal_id = @P1 AND state IN ('G', 'W')",
                    &[&principal_id],
                    MAX_ROWS,
                )
                .await?;
            server_grants = strings(&rows, 0);
        }
    }
    for permission in ServerPermission::ALL {
        if !server_grants.contains(permission.name()) {
            missing.insert(Missing::ServerPermission(permission));
        }
    }

    if db_exists {
        check_database(
            conn,
            database,
            login,
            login_id,
            &server_grants,
            &mut missing,
        )
        .await?;
    } else {
        missing.insert(Missing::Database);
        missing.extend(database_pieces());
    }
    Ok(Verification {
        version,
        missing: missing.into_iter().collect(),
    })
}

/// Everything that lives inside the database.
fn database_pieces() -> impl Iterator<Item = Missing> {
    [
        Missing::DatabaseUser,
        Missing::ViewDatabaseState,
        Missing::ExecutorRole,
        Missing::ExecutorExecute,
    ]
    .into_iter()
    .chain(Role::ALL.into_iter().map(Missing::RoleMember))
}

async fn check_database(
    conn: &mut Connection,
    database: &str,
    login: &str,
    login_id: Option<i32>,
    server_grants: &BTreeSet<String>,
    missing: &mut BTreeSet<Missing>,
) -> Result<(), Error> {
    // Three-part names read the database's catalog without switching the connection's
    // current database (which would leak into the pool).
    let db = tsql::identifier(database);
    // The user that maps to the login is the one with the login's SID (a same-named user
    // may belong to another login); without a login there is no SID, so by name.
    let user = match login_id {
        Some(id) => {
            conn.rows(
                &format!(
                    "SELECT TOP (1) u.principal_id FROM {db}.sys.database_principals AS u \
                     JOIN sys.server_principals AS l ON l.sid = u.sid WHERE l.principal_id = @P1"
                ),
                &[&id],
                1,
            )
            .await?
        }
        None => {
            conn.rows(
                &format!(
                    "SELECT TOP (1) principal_id FROM {db}.sys.database_principals \
                     WHERE name = @P1 AND type IN ('S', 'U')"
                ),
                &[&login],
                1,
            )
            .await?
        }
    };
    let user_id = user.first().map(|r| int(conn, r, 0)).transpose()?;
    let executor = conn
        .rows(
            &format!("SELECT TOP (1) principal_id FROM {db}.sys.database_principals WHERE name = @P1 AND type = 'R'"),
            &[&EXECUTOR_ROLE],
            1,
        )
        .await?;
    let executor_id = executor.first().map(|r| int(conn, r, 0)).transpose()?;

    match executor_id {
        None => {
            missing.insert(Missing::ExecutorRole);
            missing.insert(Missing::ExecutorExecute);
        }
        Some(id) => {
            if !database_grants(conn, &db, id).await?.contains("EXECUTE") {
                missing.insert(Missing::ExecutorExecute);
            }
        }
    }

    let Some(user_id) = user_id else {
        missing.insert(Missing::DatabaseUser);
        if !server_grants.contains(ServerPermission::ViewServerState.name()) {
            missing.insert(Missing::ViewDatabaseState);
        }
        missing.extend(Role::ALL.into_iter().map(Missing::RoleMember));
        return Ok(());
    };
    if !server_grants.contains(ServerPermission::ViewServerState.name())
        && !database_grants(conn, &db, user_id)
            .await?
            .contains("VIEW DATABASE STATE")
    {
        missing.insert(Missing::ViewDatabaseState);
    }
    let roles = conn
        .rows(
            &format!(
                "SELECT TOP (64) r.name FROM {db}.sys.database_role_members AS m \
                 JOIN {db}.sys.database_principals AS r ON r.principal_id = m.role_principal_id \
                 WHERE m.member_principal_id = @P1"
            ),
            &[&user_id],
            MAX_ROWS,
        )
        .await?;
    let member_of: BTreeSet<Role> = strings(&roles, 0)
        .iter()
        .filter_map(|n| Role::from_name(n))
        .collect();
    for role in Role::ALL {
        if !member_of.contains(&role) {
            missing.insert(Missing::RoleMember(role));
        }
    }
    Ok(())
}

/// Database-wide permissions (class 0) granted to a principal.
async fn database_grants(
    conn: &mut Connection,
    db: &str,
    principal_id: i32,
) -> Result<BTreeSet<String>, Error> {
    let rows = conn
        .rows(
            &format!(
                "SELECT TOP (64) permission_name FROM {db}.sys.database_permissions \
                 WHERE class = 0 AND grantee_principal_id = @P1 AND state IN ('G', 'W')"
            ),
            &[&principal_id],
            MAX_ROWS,
        )
        .await?;
    Ok(strings(&rows, 0))
}

/// `@@VERSION` (first line) and `SERVERPROPERTY('ProductVersion'/'Edition')`.
pub async fn server_version(conn: &mut Connection) -> Result<ServerVersion, Error> {
    let rows = conn
        .rows(
            "SELECT @@VERSION, CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), \
             CAST(SERVERPROPERTY('Edition') AS nvarchar(128))",
            &[],
            1,
        )
        .await?;
    let row = rows.first().ok_or_else(|| Error::Protocol {
        address: conn.address().to_owned(),
        reason: "SELECT @@VERSION returned no row".into(),
    })?;
    let text = |i| string(row, i);
    let version = text(0)
        .and_then(|v| v.lines().next().map(|l| l.trim().to_owned()))
        .ok_or_else(|| Error::Protocol {
            address: conn.address().to_owned(),
            reason: "@@VERSION is empty".into(),
        })?;
    Ok(ServerVersion {
        version,
        product_version: text(1),
        edition: text(2),
    })
}

/// A principal id; anything but an int is the server not behaving like SQL Server.
fn int(conn: &Connection, row: &Row, index: usize) -> Result<i32, Error> {
    row.try_get::<i32, _>(index)
        .ok()
        .flatten()
        .ok_or_else(|| Error::Protocol {
            address: conn.address().to_owned(),
            reason: format!("column {index} of a principal query is not an int"),
        })
}

fn string(row: &Row, index: usize) -> Option<String> {
    row.try_get::<&str, _>(index)
        .ok()
        .flatten()
        .map(str::to_owned)
}

fn strings(rows: &[Row], index: usize) -> BTreeSet<String> {
    rows.iter().filter_map(|r| string(r, index)).collect()
}
