//! The provisioning T-SQL: database, service login, user, roles and grants, in order.
//!
//! Every statement is safe to re-run, so an interrupted run is finished by running all of it
//! again: creations are guarded by `IF NOT EXISTS` on the catalog views, `GRANT` of a
//! permission already held changes nothing, and nothing is ever dropped, revoked or denied.
//! Names go through [`tsql::identifier`] and [`tsql::literal`]; the service password is a
//! slot that renders as the SQLCMD variable `$(ServicePassword)` in every printable form
//! and becomes an escaped literal only inside [`apply::TdsExecutor`], on its way to the
//! server.

pub mod apply;

use std::fmt;

use crate::grants::{Role, ServerPermission, EXECUTOR_ROLE};
use crate::tsql::{self, NameError};

pub use apply::{apply, provision, Execute, TdsExecutor};

/// The SQLCMD variable the DBA script uses for the service login's password.
pub const PASSWORD_VARIABLE: &str = "ServicePassword";

/// What a statement does; a failure names the step, never the statement's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    UseMaster,
    CreateDatabase,
    CreateLogin,
    GrantServer(ServerPermission),
    UseDatabase,
    CreateUser,
    GrantViewDatabaseState,
    CreateExecutorRole,
    GrantExecuteToExecutor,
    AddRoleMember(Role),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UseMaster => f.write_str("switch to master"),
            Self::CreateDatabase => f.write_str("create the database"),
            Self::CreateLogin => f.write_str("create the service login"),
            Self::GrantServer(p) => write!(f, "grant {p} to the service login"),
            Self::UseDatabase => f.write_str("switch to the database"),
            Self::CreateUser => f.write_str("create the service login's user"),
            Self::GrantViewDatabaseState => f.write_str("grant VIEW DATABASE STATE to the user"),
            Self::CreateExecutorRole => f.write_str("create the executor role"),
            Self::GrantExecuteToExecutor => f.write_str("grant EXECUTE to the executor role"),
            Self::AddRoleMember(r) => write!(f, "add the user to {r}"),
        }
    }
}

/// A piece of a statement: text, or the place the service password goes.
#[derive(Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    ServicePassword,
}

/// One statement of the provisioning. `Display` and `Debug` show the SQLCMD form, with
/// `$(ServicePassword)` where the password goes.
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    step: Step,
    parts: Vec<Part>,
}

impl Statement {
    fn text(step: Step, sql: String) -> Self {
        Self {
            step,
            parts: vec![Part::Text(sql)],
        }
    }

    pub fn step(&self) -> Step {
        self.step
    }

    /// The statement with each password slot rendered by `password`.
    pub(crate) fn render(&self, password: impl Fn() -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::ServicePassword => password(),
            })
            .collect()
    }

    /// The SQLCMD form: `N'$(ServicePassword)'` where the password goes.
    pub fn sqlcmd(&self) -> String {
        self.render(|| format!("N'$({PASSWORD_VARIABLE})'"))
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sqlcmd())
    }
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Statement")
            .field("step", &self.step)
            .field("sql", &self.sqlcmd())
            .finish()
    }
}

/// Which name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Database,
    ServiceLogin,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Database => "database name",
            Self::ServiceLogin => "service login name",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    #[error("the {which} {reason}")]
    InvalidName { which: NameKind, reason: NameError },
    /// sqlcmd replaces `$(NAME)` anywhere in a script, even inside brackets and quotes, so
    /// such a name cannot be printed into a script safely.
    #[error("the {which} contains `$(`, which sqlcmd would treat as a variable; rename it or provision with `create: true`")]
    SqlcmdVariableInName { which: NameKind },
    #[error("creating the service login needs its password, and none was given")]
    NoServicePassword,
    #[error("cannot provision: {0}")]
    Connect(crate::Error),
    #[error("step {index} ({step}) failed: {source}")]
    Failed {
        index: usize,
        step: Step,
        source: crate::Error,
    },
}

impl ProvisionError {
    /// A bounded label for metrics and conditions.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "invalid_name",
            Self::SqlcmdVariableInName { .. } => "sqlcmd_variable",
            Self::NoServicePassword => "no_service_password",
            Self::Connect(source) | Self::Failed { source, .. } => source.label(),
        }
    }
}

/// The statements that give `database` and its service login `login` everything the vendor
/// lists, in the order they must run.
pub fn plan(database: &str, login: &str) -> Result<Vec<Statement>, ProvisionError> {
    tsql::check_name(database).map_err(|reason| ProvisionError::InvalidName {
        which: NameKind::Database,
        reason,
    })?;
    tsql::check_name(login).map_err(|reason| ProvisionError::InvalidName {
        which: NameKind::ServiceLogin,
        reason,
    })?;
    let (db_id, db_lit) = (tsql::identifier(database), tsql::literal(database));
    let (login_id, login_lit) = (tsql::identifier(login), tsql::literal(login));
    let exec_lit = tsql::literal(EXECUTOR_ROLE);
    let exec_id = tsql::identifier(EXECUTOR_ROLE);

    let mut plan = vec![
        // Server permissions can only be granted with master as the current database.
        Statement::text(Step::UseMaster, "USE [master];".into()),
        Statement::text(
            Step::CreateDatabase,
            format!(
                "IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = {db_lit}) CREATE DATABASE {db_id};"
            ),
        ),
        Statement {
            step: Step::CreateLogin,
            parts: vec![
                Part::Text(format!(
                    "IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = {login_lit}) CREATE LOGIN {login_id} WITH PASSWORD = "
                )),
                Part::ServicePassword,
                Part::Text(";".into()),
            ],
        },
    ];
    for permission in ServerPermission::ALL {
        plan.push(Statement::text(
            Step::GrantServer(permission),
            format!("GRANT {} TO {login_id};", permission.name()),
        ));
    }
    plan.push(Statement::text(Step::UseDatabase, format!("USE {db_id};")));
    plan.push(Statement::text(
        Step::CreateUser,
        format!(
            "IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = {login_lit}) CREATE USER {login_id} FOR LOGIN {login_id};"
        ),
    ));
    plan.push(Statement::text(
        Step::GrantViewDatabaseState,
        format!("GRANT VIEW DATABASE STATE TO {login_id};"),
    ));
    plan.push(Statement::text(
        Step::CreateExecutorRole,
        format!(
            "IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = {exec_lit} AND type = 'R') CREATE ROLE {exec_id};"
        ),
    ));
    plan.push(Statement::text(
        Step::GrantExecuteToExecutor,
        format!("GRANT EXECUTE TO {exec_id};"),
    ));
    for role in Role::ALL {
        let (role_lit, role_id) = (tsql::literal(role.name()), tsql::identifier(role.name()));
        plan.push(Statement::text(
            Step::AddRoleMember(role),
            format!(
                "IF NOT EXISTS (SELECT 1 FROM sys.database_role_members AS m \
                 JOIN sys.database_principals AS r ON r.principal_id = m.role_principal_id \
                 JOIN sys.database_principals AS u ON u.principal_id = m.member_principal_id \
                 WHERE r.name = {role_lit} AND u.name = {login_lit}) \
                 ALTER ROLE {role_id} ADD MEMBER {login_id};"
            ),
        ));
    }
    Ok(plan)
}

/// The DBA script (the vendor's "create an empty database by SQL script" path): the same
/// statements, one batch each, for `sqlcmd -v ServicePassword=...` or SSMS in SQLCMD mode.
pub fn script(database: &str, login: &str) -> Result<String, ProvisionError> {
    for (which, name) in [
        (NameKind::Database, database),
        (NameKind::ServiceLogin, login),
    ] {
        if name.contains("$(") {
            return Err(ProvisionError::SqlcmdVariableInName { which });
        }
    }
    let statements = plan(database, login)?;
    // The header names nothing from the desired state: comments must not carry
    // user-written text into the script.
    let mut out = String::from(
        "-- PatientSecure database provisioning, generated by `steward db script`.\n\
         -- Idempotent: safe to run again; nothing is dropped.\n\
         -- Run as a sysadmin with SQLCMD variables, for example:\n\
         --   sqlcmd -S SERVER -i this.sql -v ServicePassword=\"...\"\n\
         -- sqlcmd inserts ServicePassword as is: double any ' in the password.\n",
    );
    for statement in &statements {
        out.push_str(&statement.sqlcmd());
        out.push_str("\nGO\n");
    }
    Ok(out)
}
