//! A bounded pool of connections to one database server.
//!
//! deadpool, with a manager that tests every idle connection with `SELECT 1` before handing
//! it out (deadpool's own recycling does not), so a server restart costs one failed ping per
//! stale connection and then a fresh login, never an error to the caller.

use std::sync::Arc;

use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult, Timeouts};
use deadpool::Runtime;

use crate::config::DatabaseConfig;
use crate::connection::Connection;
use crate::error::{Error, Stage};

pub struct Manager {
    config: Arc<DatabaseConfig>,
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = Error;

    async fn create(&self) -> Result<Connection, Error> {
        Connection::open(&self.config).await
    }

    async fn recycle(&self, conn: &mut Connection, _: &Metrics) -> RecycleResult<Error> {
        if conn.is_broken() {
            return Err(RecycleError::message("broken by an earlier command"));
        }
        conn.ping().await.map_err(RecycleError::Backend)
    }
}

/// A checked-out connection; it goes back to the pool when dropped.
pub type Pooled = managed::Object<Manager>;

#[derive(Clone)]
pub struct Pool {
    inner: managed::Pool<Manager>,
    config: Arc<DatabaseConfig>,
}

impl Pool {
    /// Builds the pool; connections are opened on first use, at most `pool_size` at once.
    pub fn new(config: DatabaseConfig) -> Self {
        let config = Arc::new(config);
        let inner = managed::Pool::builder(Manager {
            config: config.clone(),
        })
        .max_size(config.pool_size.max(1))
        .timeouts(Timeouts {
            wait: Some(config.timeouts.pool_wait),
            // Creation and recycling bound themselves (connect, login, command timeouts).
            create: None,
            recycle: None,
        })
        .runtime(Runtime::Tokio1)
        .build()
        .expect("a runtime and a non-zero size are given");
        Self { inner, config }
    }

    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    /// A tested connection: an idle one that answered `SELECT 1`, or a new login.
    pub async fn get(&self) -> Result<Pooled, Error> {
        self.inner.get().await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            PoolError::Timeout(_) => Error::Timeout {
                address: self.config.address(),
                stage: Stage::PoolWait,
                after: self.config.timeouts.pool_wait,
            },
            other => Error::Protocol {
                address: self.config.address(),
                reason: format!("connection pool: {other:?}"),
            },
        })
    }

    /// Connections currently open (idle or checked out).
    pub fn size(&self) -> usize {
        self.inner.status().size
    }
}

impl Pool {
    /// One verification pass of the configured database and service login.
    pub async fn verify(&self) -> Result<crate::Verification, Error> {
        let mut conn = self.get().await?;
        crate::verify(
            &mut conn,
            &self.config.database,
            &self.config.service_login.name,
        )
        .await
    }
}
