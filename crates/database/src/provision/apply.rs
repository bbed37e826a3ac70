//! Running the provisioning statements, in order, stopping at the first failure.

use std::future::Future;

use super::{plan, ProvisionError, Statement};
use crate::config::{DatabaseConfig, Password};
use crate::connection::Connection;
use crate::tsql;
use crate::Error;

/// Something that runs one provisioning statement. [`TdsExecutor`] sends it to the server;
/// tests use a recording implementation to assert the exact sequence.
pub trait Execute {
    fn execute(&mut self, statement: &Statement) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Runs `statements` in order; returns how many ran. The first failure stops the run and
/// names its step (re-running the whole list later finishes it).
pub async fn apply<E: Execute>(
    executor: &mut E,
    statements: &[Statement],
) -> Result<usize, ProvisionError> {
    for (index, statement) in statements.iter().enumerate() {
        executor
            .execute(statement)
            .await
            .map_err(|source| ProvisionError::Failed {
                index: index + 1,
                step: statement.step(),
                source,
            })?;
    }
    Ok(statements.len())
}

/// Sends statements over a TDS connection, with the service password as an escaped
/// literal. The rendered text lives only for the call: it is never logged or returned, and
/// a server message that echoes it is scrubbed.
pub struct TdsExecutor<'a> {
    connection: &'a mut Connection,
    password: &'a Password,
}

impl<'a> TdsExecutor<'a> {
    pub fn new(connection: &'a mut Connection, password: &'a Password) -> Self {
        Self {
            connection,
            password,
        }
    }
}

impl Execute for TdsExecutor<'_> {
    async fn execute(&mut self, statement: &Statement) -> Result<(), Error> {
        let sql = wire_text(statement, self.password);
        self.connection
            .batch(&sql)
            .await
            .map_err(|e| scrub(e, self.password))
    }
}

/// The statement as sent: the password slot becomes an `N'...'` literal with `'` doubled.
fn wire_text(statement: &Statement, password: &Password) -> String {
    statement.render(|| tsql::literal(password.expose()))
}

/// Replaces the password wherever a server message repeated it (a server may quote the
/// statement it refused).
fn scrub(e: Error, password: &Password) -> Error {
    let secret = password.expose();
    if secret.is_empty() {
        return e;
    }
    // Also the escaped form, in case the server quotes the statement as sent.
    let escaped = secret.replace('\'', "''");
    let clean = |s: String| {
        s.replace(secret, "<redacted>")
            .replace(&escaped, "<redacted>")
    };
    match e {
        Error::Rejected {
            address,
            code,
            message,
        } => Error::Rejected {
            address,
            code,
            message: clean(message),
        },
        Error::Protocol { address, reason } => Error::Protocol {
            address,
            reason: clean(reason),
        },
        Error::Unreachable { address, reason } => Error::Unreachable {
            address,
            reason: clean(reason),
        },
        other => other,
    }
}

/// `create: true`: opens a connection of its own (the statements switch its current
/// database, which must not leak into pooled connections), runs the whole plan and closes.
pub async fn provision(config: &DatabaseConfig) -> Result<usize, ProvisionError> {
    let password = config
        .service_login
        .password
        .as_ref()
        .ok_or(ProvisionError::NoServicePassword)?;
    let statements = plan(&config.database, &config.service_login.name)?;
    let mut connection = Connection::open(config)
        .await
        .map_err(ProvisionError::Connect)?;
    apply(
        &mut TdsExecutor::new(&mut connection, password),
        &statements,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::Step;

    const PW: &str = "p'w; DROP LOGIN sa; --";

    fn create_login() -> Statement {
        plan("PS", "svc")
            .unwrap()
            .into_iter()
            .find(|s| s.step() == Step::CreateLogin)
            .unwrap()
    }

    #[test]
    fn the_password_is_sent_only_as_an_escaped_literal() {
        let statement = create_login();
        let sent = wire_text(&statement, &Password::new(PW));
        assert!(
            sent.ends_with("WITH PASSWORD = N'p''w; DROP LOGIN sa; --';"),
            "{sent}"
        );
        for shown in [
            statement.to_string(),
            format!("{statement:?}"),
            statement.sqlcmd(),
        ] {
            assert!(!shown.contains("p'w"), "{shown}");
            assert!(shown.contains("N'$(ServicePassword)'"), "{shown}");
        }
    }

    #[test]
    fn server_messages_quoting_the_password_are_scrubbed() {
        let e = Error::Rejected {
            address: "db:1433".into(),
            code: 102,
            message: format!("Incorrect syntax near 'p''w; DROP LOGIN sa; --' ({PW})"),
        };
        let clean = scrub(e, &Password::new(PW)).to_string();
        assert!(!clean.contains("p'w") && !clean.contains("p''w"), "{clean}");
        assert!(clean.contains("<redacted>"), "{clean}");
    }
}
