//! One TDS connection with the installer login: connect (TLS verified unless the desired
//! state says `encrypt: false`) and run bounded queries.

use std::time::Duration;

use futures::TryStreamExt;
use tiberius::{AuthMethod, Client, EncryptionLevel, Row, SqlBrowser, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::config::{DatabaseConfig, DEFAULT_PORT};
use crate::error::{Error, Stage};

/// A logged-in connection. After a failed or cut-off command it is marked broken, and the
/// pool never hands it out again (the rest of its answer may still be on the wire).
pub struct Connection {
    client: Client<Compat<TcpStream>>,
    address: String,
    user: String,
    command_timeout: Duration,
    broken: bool,
}

impl Connection {
    /// Connects and logs in to the server's default database (not the configured one: a
    /// login naming a missing database is refused by SQL Server and accepted by some
    /// emulators, so "missing" is decided by our own check of `sys.databases`).
    pub async fn open(config: &DatabaseConfig) -> Result<Self, Error> {
        let address = config.address();
        let tds = tds_config(config)?;
        let t = config.timeouts;
        let tcp = tokio::time::timeout(t.connect, tcp_connect(&tds, config))
            .await
            .map_err(|_| Error::Timeout {
                address: address.clone(),
                stage: Stage::Connect,
                after: t.connect,
            })?
            .map_err(|e| Error::from_tds(&address, &config.user, Stage::Connect, e))?;
        // Nagle would hold back the small login packets.
        let _ = tcp.set_nodelay(true);
        // tiberius bounds the handshake itself; the outer deadline is a backstop for any
        // stage it does not cover.
        let client = tokio::time::timeout(t.login, Client::connect(tds, tcp.compat_write()))
            .await
            .map_err(|_| Error::Timeout {
                address: address.clone(),
                stage: Stage::Login,
                after: t.login,
            })?
            .map_err(|e| {
                Error::from_tds(&address, &config.user, Stage::Login, e).with_deadline(t.login)
            })?;
        Ok(Self {
            client,
            address,
            user: config.user.clone(),
            command_timeout: t.command,
            broken: false,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Runs a query and returns at most `max_rows` rows of its first result. A server that
    /// sends more is cut off (and the connection dropped), so a huge answer costs one
    /// bounded read.
    pub async fn rows(
        &mut self,
        sql: &str,
        params: &[&dyn ToSql],
        max_rows: usize,
    ) -> Result<Vec<Row>, Error> {
        let address = self.address.clone();
        let limit = self.command_timeout;
        let result = tokio::time::timeout(limit, async {
            let stream = self.client.query(sql, params).await?;
            let mut rows = stream.into_row_stream();
            let mut out = Vec::new();
            while let Some(row) = rows.try_next().await? {
                if out.len() == max_rows {
                    return Ok(Err(max_rows));
                }
                out.push(row);
            }
            Ok(Ok(out))
        })
        .await;
        self.settle(result, &address, limit)?.map_err(|max| {
            self.broken = true;
            Error::Protocol {
                address,
                reason: format!("a query returned more than the {max} rows it can return"),
            }
        })
    }

    /// Sends one batch and reads its whole answer.
    pub async fn batch(&mut self, sql: &str) -> Result<(), Error> {
        let address = self.address.clone();
        let limit = self.command_timeout;
        let result = tokio::time::timeout(limit, async {
            self.client.simple_query(sql).await?.into_results().await?;
            Ok(())
        })
        .await;
        self.settle(result, &address, limit)
    }

    /// `SELECT 1`: the cheapest proof the session still answers.
    pub async fn ping(&mut self) -> Result<(), Error> {
        self.rows("SELECT 1", &[], 1).await.map(drop)
    }

    fn settle<T>(
        &mut self,
        result: Result<Result<T, tiberius::error::Error>, tokio::time::error::Elapsed>,
        address: &str,
        limit: Duration,
    ) -> Result<T, Error> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let e =
                    Error::from_tds(address, &self.user, Stage::Command, e).with_deadline(limit);
                // A refused statement leaves the session usable; anything else may not.
                self.broken |= !matches!(e, Error::Rejected { .. });
                Err(e)
            }
            Err(_) => {
                self.broken = true;
                Err(Error::Timeout {
                    address: address.to_owned(),
                    stage: Stage::Command,
                    after: limit,
                })
            }
        }
    }
}

fn tds_config(config: &DatabaseConfig) -> Result<tiberius::Config, Error> {
    let mut tds = tiberius::Config::new();
    tds.host(&config.server.host);
    if let Some(instance) = &config.server.instance {
        tds.instance_name(instance);
    }
    if config.port.is_some() || config.server.instance.is_none() {
        tds.port(config.port.unwrap_or(DEFAULT_PORT));
    }
    tds.application_name("steward");
    tds.authentication(AuthMethod::sql_server(
        &config.user,
        config.password.expose(),
    ));
    if config.encrypt {
        tds.encryption(EncryptionLevel::Required);
        for path in &config.trust {
            // Read here so a missing or empty file is reported as such, not as an
            // untrusted certificate later.
            let pem = std::fs::read(path).map_err(|e| Error::TrustFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            if !pem.windows(10).any(|w| w == b"-----BEGIN") {
                return Err(Error::TrustFile {
                    path: path.display().to_string(),
                    reason: "no PEM certificate in it".into(),
                });
            }
            tds.trust_cert_ca_bundle(pem);
        }
    } else {
        // Plain TDS. A server that insists on TLS anyway still has its certificate
        // verified: steward never accepts an unverified certificate.
        tds.encryption(EncryptionLevel::NotSupported);
    }
    let t = config.timeouts;
    tds.handshake_timeout(Some(t.login));
    tds.command_timeout(Some(t.command));
    Ok(tds)
}

async fn tcp_connect(
    tds: &tiberius::Config,
    config: &DatabaseConfig,
) -> Result<TcpStream, tiberius::error::Error> {
    if config.port.is_none() && config.server.instance.is_some() {
        // Asks the SQL Browser (UDP 1434) for the instance's port.
        TcpStream::connect_named(tds).await
    } else {
        Ok(TcpStream::connect(tds.get_addr()).await?)
    }
}
