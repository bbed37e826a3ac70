//! One bound, TLS-protected connection and the bounded operations on it.

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapError, LdapResult, Scope};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::config::{DirectoryConfig, Endpoint};
use crate::connect::{guarded, guarded_any, io_failure, secure, tcp_connect, Failure};
use crate::entry::Entry;
use crate::error::{result_name, DirectoryError};
use crate::kind::DirectoryKind;
use crate::tls;

/// Entries per page of a paged search (AD's MaxPageSize is 1,000).
const PAGE_SIZE: i32 = 500;

/// A connection that is TLS-protected and bound. Dropping it closes the connection.
pub struct Session {
    pub(crate) ldap: Ldap,
    driver: Option<JoinHandle<ldap3::result::Result<()>>>,
    pub(crate) config: DirectoryConfig,
    kind: DirectoryKind,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.config.url)
            .field("bind_dn", &self.config.bind_dn)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(driver) = &self.driver {
            driver.abort();
        }
    }
}

impl Session {
    /// Connects, secures the connection (LDAPS, or StartTLS on `ldap://`), checks that TLS
    /// is really in place, binds, and reads the root DSE to tell AD from generic LDAP.
    pub async fn connect(config: &DirectoryConfig) -> Result<Self, DirectoryError> {
        let endpoint = Endpoint::parse(&config.url)?;
        let tls = tls::client_config(&config.trust)?;
        let url = config.url.clone();
        if config.password.expose().is_empty() {
            // RFC 4513 5.1.2: a simple bind with a DN and no password is an unauthenticated
            // bind that many servers accept; it would look like success.
            return Err(DirectoryError::BindFailed {
                url,
                bind_dn: config.bind_dn.clone(),
                reason: "the password is empty (an unauthenticated bind); refused before sending"
                    .into(),
            });
        }
        let tcp = tcp_connect(config, &endpoint).await?;
        let (mut ldap, driver) = secure(config, &endpoint, tcp, tls).await?;
        // ldap3 keeps whether TLS is up private; a peer certificate proves it. Without one
        // the password would travel in clear, so the bind is never sent.
        let peer = timeout(config.operation_timeout, ldap.get_peer_certificate()).await;
        if !matches!(peer, Ok(Ok(Some(_)))) {
            driver.abort();
            return Err(DirectoryError::Protocol {
                url,
                during: "securing the connection",
                reason: "no TLS session on the connection; the bind is not sent in clear".into(),
            });
        }
        let mut session = Self {
            ldap,
            driver: Some(driver),
            config: config.clone(),
            kind: DirectoryKind::Generic,
        };
        session.bind().await?;
        session.kind = session.detect_kind().await?;
        Ok(session)
    }

    /// Active Directory (Samba or Windows) or a generic LDAP server.
    pub fn kind(&self) -> DirectoryKind {
        self.kind
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// Unbinds and closes (bounded). Dropping the session closes it too, without the unbind.
    pub async fn close(mut self) {
        let _ = timeout(self.config.operation_timeout, self.ldap.unbind()).await;
    }

    async fn bind(&mut self) -> Result<(), DirectoryError> {
        let dn = self.config.bind_dn.clone();
        let password = self.config.password.clone();
        let op = self.config.operation_timeout;
        let ldap = &mut self.ldap;
        let result = guarded(
            op,
            ldap.with_timeout(op).simple_bind(&dn, password.expose()),
        )
        .await;
        let result = match result {
            Ok(result) => result,
            Err(failure) => return Err(self.failure("binding", failure).await),
        };
        if result.rc == 0 {
            return Ok(());
        }
        let mut reason = format!("{} ({})", result_name(result.rc), result.rc);
        let text = result.text.trim();
        if !text.is_empty() {
            // AD puts the reason here ("data 52e": bad password, "775": locked out). It never
            // echoes the password, but scrub it anyway: this text ends up in conditions.
            reason.push_str(": ");
            reason.push_str(&text.replace(password.expose(), "<redacted>"));
        }
        Err(DirectoryError::BindFailed {
            url: self.config.url.clone(),
            bind_dn: dn,
            reason,
        })
    }

    async fn detect_kind(&mut self) -> Result<DirectoryKind, DirectoryError> {
        let root = self
            .search(
                "reading the root DSE",
                "",
                Scope::Base,
                "(objectClass=*)",
                &["supportedCapabilities"],
                false,
            )
            .await?;
        Ok(DirectoryKind::from_root_dse(root.first()))
    }

    /// Reads `attrs` of one entry (a base-scope search).
    pub async fn read_attributes(
        &mut self,
        dn: &str,
        attrs: &[&str],
    ) -> Result<Entry, DirectoryError> {
        const DURING: &str = "reading an entry";
        let entries = self
            .search(DURING, dn, Scope::Base, "(objectClass=*)", attrs, false)
            .await?;
        entries
            .into_iter()
            .next()
            .ok_or_else(|| self.protocol(DURING, format!("`{dn}` was not returned")))
    }

    /// A bounded search: at most `max_entries` entries (more is a `Protocol` error and the
    /// search is abandoned), continuation references skipped (AD answers subtree searches
    /// at the domain root with references to other partitions), paged when `paged`.
    pub(crate) async fn search(
        &mut self,
        during: &'static str,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        paged: bool,
    ) -> Result<Vec<Entry>, DirectoryError> {
        let max = self.config.max_entries;
        let op = self.config.operation_timeout;
        let ldap = &mut self.ldap;
        let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
        let run = async move {
            let mut adapters: Vec<Box<dyn Adapter<String, Vec<String>>>> =
                vec![Box::new(EntriesOnly::new())];
            if paged {
                adapters.push(Box::new(PagedResults::new(PAGE_SIZE)));
            }
            let mut stream = ldap
                .with_timeout(op)
                .streaming_search_with(adapters, base, scope, filter, attrs)
                .await
                .map_err(Failure::Ldap)?;
            let mut entries = Vec::new();
            while let Some(raw) = stream.next().await.map_err(Failure::Ldap)? {
                if entries.len() == max {
                    let id = stream.ldap_handle().last_id();
                    let _ = stream.finish().await;
                    let _ = stream.ldap_handle().abandon(id).await;
                    return Err(Failure::TooMany(max));
                }
                entries.push(Entry::decode(raw.0).map_err(Failure::Malformed)?);
            }
            let result = stream.finish().await;
            Ok((entries, result))
        };
        let (entries, result) = match guarded_any(op, run).await {
            Ok(done) => done,
            Err(failure) => return Err(self.failure(during, failure).await),
        };
        match result.rc {
            0 => Ok(entries),
            4 => Err(self.protocol(
                during,
                "the server cut the search off at its size limit".into(),
            )),
            10 => Err(self.protocol(
                during,
                format!(
                    "the server answered with a referral to {}",
                    result.refs.join(" ")
                ),
            )),
            _ => Err(self.rejected(during, &result)),
        }
    }

    /// Runs one single-result operation (add, modify, delete) and returns its result code
    /// and text; the caller decides which codes mean converged.
    pub(crate) async fn single<F>(
        &mut self,
        during: &'static str,
        op: F,
    ) -> Result<LdapResult, DirectoryError>
    where
        F: for<'a> FnOnce(
            &'a mut Ldap,
        )
            -> futures::future::BoxFuture<'a, ldap3::result::Result<LdapResult>>,
    {
        let limit = self.config.operation_timeout;
        let ldap = self.ldap.with_timeout(limit);
        match guarded(limit, op(ldap)).await {
            Ok(result) => Ok(result),
            Err(failure) => Err(self.failure(during, failure).await),
        }
    }

    pub(crate) fn protocol(&self, during: &'static str, reason: String) -> DirectoryError {
        DirectoryError::Protocol {
            url: self.config.url.clone(),
            during,
            reason,
        }
    }

    pub(crate) fn rejected(&self, during: &'static str, result: &LdapResult) -> DirectoryError {
        let mut reason = result_name(result.rc).to_string();
        if !result.text.trim().is_empty() {
            reason = format!("{reason}: {}", result.text.trim());
        }
        DirectoryError::Rejected {
            url: self.config.url.clone(),
            during,
            code: result.rc,
            reason,
        }
    }

    /// Turns a failed operation into a precise error. When the connection is gone, the
    /// connection task's own outcome tells a close from garbage.
    pub(crate) async fn failure(
        &mut self,
        during: &'static str,
        failure: Failure,
    ) -> DirectoryError {
        let url = self.config.url.clone();
        let op = self.config.operation_timeout;
        match failure {
            Failure::Deadline | Failure::Ldap(LdapError::Timeout { .. }) => {
                DirectoryError::Timeout {
                    url,
                    during,
                    timeout: op,
                }
            }
            Failure::TooMany(max) => self.protocol(
                during,
                format!("more than {max} entries; the search was cut off and abandoned"),
            ),
            Failure::Malformed(what) => self.protocol(during, format!("malformed entry ({what})")),
            Failure::Panicked => self.protocol(during, "malformed response from the server".into()),
            Failure::Ldap(LdapError::LdapResult { result }) => self.rejected(during, &result),
            Failure::Ldap(LdapError::Io { source }) => io_failure(&url, during, &source),
            Failure::Ldap(
                LdapError::ResultRecv { .. }
                | LdapError::OpSend { .. }
                | LdapError::IdScrubSend { .. }
                | LdapError::MiscSend { .. }
                | LdapError::EndOfStream,
            ) => self.connection_outcome(during).await,
            Failure::Ldap(LdapError::FilterParsing) => self.protocol(
                during,
                "internal: an invalid search filter was built".into(),
            ),
            Failure::Ldap(other) => self.protocol(during, other.to_string()),
        }
    }

    async fn connection_outcome(&mut self, during: &'static str) -> DirectoryError {
        let url = self.config.url.clone();
        let closed = |url| DirectoryError::Unreachable {
            url,
            reason: format!("the server closed the connection while {during}"),
        };
        let Some(driver) = self.driver.take_if(|d| d.is_finished()) else {
            return closed(url);
        };
        match driver.await {
            Ok(Ok(())) => closed(url),
            Ok(Err(LdapError::Io { source })) => io_failure(&url, during, &source),
            Ok(Err(other)) => self.protocol(during, other.to_string()),
            Err(_) => self.protocol(during, "malformed LDAP message from the server".into()),
        }
    }
}
