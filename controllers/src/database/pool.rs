//! The one connection pool of the database in force, kept across reconciles (its tested
//! idle connections are what makes a verification pass cheap) and replaced when the
//! desired state points at another server, database, login or password.

use std::sync::Mutex;

use steward_database::{DatabaseConfig, Pool};

#[derive(Default)]
pub(crate) struct DatabasePool(Mutex<Option<Pool>>);

impl DatabasePool {
    /// The pool for `config`: the current one when it reaches the same database the same
    /// way, else a new one (the old one's connections close as its last user drops it).
    pub(crate) fn for_config(&self, config: DatabaseConfig) -> Pool {
        let mut current = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = current.as_ref().filter(|p| same(p.config(), &config)) {
            return pool.clone();
        }
        let pool = Pool::new(config);
        *current = Some(pool.clone());
        pool
    }
}

fn same(a: &DatabaseConfig, b: &DatabaseConfig) -> bool {
    a.server == b.server
        && a.port == b.port
        && a.database == b.database
        && a.user == b.user
        && a.password == b.password
        && a.encrypt == b.encrypt
        && a.trust == b.trust
        && a.service_login.name == b.service_login.name
}

#[cfg(test)]
mod tests {
    use steward_database::Password;

    use super::*;

    #[tokio::test]
    async fn a_changed_password_or_server_gets_a_new_pool() {
        let pools = DatabasePool::default();
        let config = |server: &str, pw: &str| {
            DatabaseConfig::new(server, "PS", "installer", Password::new(pw))
        };
        let first = pools.for_config(config("db1", "a"));
        let again = pools.for_config(config("db1", "a"));
        assert!(std::ptr::eq(first.config(), again.config()), "reused");
        let other = pools.for_config(config("db1", "b"));
        assert!(!std::ptr::eq(first.config(), other.config()));
        let moved = pools.for_config(config("db2", "b"));
        assert_eq!(moved.config().server.host, "db2");
    }
}
