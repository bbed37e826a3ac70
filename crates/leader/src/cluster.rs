//! The connection to etcd, and the keys all daemons share besides the leader's.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, Identity, TlsOptions, Txn, TxnOp,
    TxnOpResponse,
};

use crate::config::ElectionConfig;
use crate::error::LeaderError;

/// A client of the etcd cluster of one election.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) client: Client,
    pub(crate) config: ElectionConfig,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("endpoints", &self.config.endpoints.to_string())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connect (lazily: members are dialled when a call needs them). Every call asks for
    /// an answer backed by a quorum (`require_leader`), so a member cut off from the
    /// others fails fast instead of answering from stale data.
    pub async fn connect(config: ElectionConfig) -> Result<Self, LeaderError> {
        config.validate()?;
        let mut options = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(config.call_timeout())
            // HTTP/2 pings find a silently dead connection (a paused or unplugged member).
            .with_keep_alive(Duration::from_secs(1), config.call_timeout())
            .with_keep_alive_while_idle(true);
        if let Some(tls) = &config.tls {
            let mut settings =
                TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.trust_pem));
            if let Some(client) = &tls.client {
                settings =
                    settings.identity(Identity::from_pem(&client.cert_pem, client.key_pem()));
            }
            options = options.with_tls(settings);
        }
        let client = Client::connect(config.endpoints.urls(), Some(options))
            .await
            .map_err(|source| LeaderError::Etcd {
                endpoints: config.endpoints.to_string(),
                doing: "connecting",
                source,
            })?;
        Ok(Self { client, config })
    }

    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Run one etcd call within the call timeout, naming what it was for on failure.
    pub(crate) async fn call<T>(
        &self,
        doing: &'static str,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, LeaderError> {
        let after = self.config.call_timeout();
        match tokio::time::timeout(after, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(LeaderError::Etcd {
                endpoints: self.config.endpoints.to_string(),
                doing,
                source,
            }),
            Err(_) => Err(LeaderError::Timeout {
                endpoints: self.config.endpoints.to_string(),
                doing,
                after,
            }),
        }
    }

    pub(crate) fn unexpected(&self, what: impl Into<String>) -> LeaderError {
        LeaderError::Unexpected {
            endpoints: self.config.endpoints.to_string(),
            what: what.into(),
        }
    }

    /// The CA fingerprint the daemons agreed on, if one was published.
    pub async fn published_ca(&self) -> Result<Option<String>, LeaderError> {
        let mut kv = self.client.kv_client();
        let key = self.config.ca_key();
        let response = self
            .call("reading the CA fingerprint", kv.get(key, None))
            .await?;
        Ok(response
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Publish `fingerprint` as the CA every daemon must use, unless one is published
    /// already, in which case it must be the same.
    pub async fn agree_on_ca(&self, fingerprint: &str) -> Result<(), LeaderError> {
        let key = self.config.ca_key();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), fingerprint, None)])
            .or_else([TxnOp::get(key, None)]);
        let mut kv = self.client.kv_client();
        let response = self
            .call("publishing the CA fingerprint", kv.txn(txn))
            .await?;
        if response.succeeded() {
            tracing::info!(sha256 = fingerprint, "published this daemon's CA in etcd");
            return Ok(());
        }
        let theirs = response
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            })
            .ok_or_else(|| self.unexpected("the CA fingerprint key vanished while read"))?;
        if theirs != fingerprint {
            return Err(LeaderError::CaMismatch {
                ours: fingerprint.to_owned(),
                theirs,
            });
        }
        Ok(())
    }
}
