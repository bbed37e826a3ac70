//! Zero-downtime certificate rotation.
//!
//! The TLS acceptor asks [`ReloadingCert`] for a certificate on every handshake, so swapping
//! the `Arc` it holds changes what new connections get while established ones keep the
//! session they negotiated. A replacement is only swapped in once the pair parses and the
//! key matches the certificate: the agent writes the two files one after the other, and the
//! moment in between (new certificate, old key) must not take the service down.
//!
//! It also keeps the TLS sessions clients may resume, as Windows Schannel does by default:
//! a resumed handshake skips the certificate (the client keeps the one it saw when the
//! session began), so the sessions belong to the certificate they were made under and a
//! replacement starts with none, as a new Schannel credential does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use sha1::{Digest, Sha1};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Writers rarely replace both files in one filesystem event; waiting a moment after the
/// first event lets the pair settle so that one reload sees both.
const SETTLE: Duration = Duration::from_millis(200);

/// Why a certificate/key pair cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no usable PEM private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("the certificate is unusable: {0}")]
    BadCertificate(rustls::Error),
}

impl CertError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::NoCertificate { .. } => "no_certificate",
            Self::BadKey { .. } => "bad_key",
            Self::KeyMismatch => "key_mismatch",
            Self::BadCertificate(_) => "bad_certificate",
        }
    }
}

/// What the store serves and what happened to the last replacement; watched by tests and
/// reported by `/steward/lab`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertStatus {
    /// SHA-1 of the served leaf certificate, upper-case hex (a Windows thumbprint).
    pub thumbprint: String,
    /// How many pairs have been loaded, the first included.
    pub loaded: u64,
    /// How many replacements were refused.
    pub rejected: u64,
    pub last_error: Option<String>,
}

/// The certificate resolver whose pair is replaced when its files change.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Sessions made under `current`, replaced with it.
    sessions: RwLock<CertSessions>,
    status: watch::Sender<CertStatus>,
}

/// Sessions a service keeps to resume: a lab service has few clients (the prober, a test),
/// and each one resumes the one ticket it was last sent.
const SESSIONS: usize = 64;
/// A session is stored as its handshake ends, and a handshake that chose the previous
/// certificate may end this long (the default handshake timeout) after the replacement:
/// none is stored meanwhile, or its clients would go on resuming the old certificate.
const NO_SESSIONS_AFTER_REPLACEMENT: Duration = Duration::from_secs(10);

struct CertSessions {
    store: Arc<ServerSessionMemoryCache>,
    /// When the certificate they belong to replaced another.
    replaced_at: Option<std::time::Instant>,
}

impl CertSessions {
    fn new(replaced_at: Option<std::time::Instant>) -> Self {
        Self {
            store: ServerSessionMemoryCache::new(SESSIONS),
            replaced_at,
        }
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl ReloadingCert {
    /// Loads the initial pair; unlike a replacement, a bad initial pair is an error.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, CertError> {
        let key = load_pair(cert_path, key_path, &provider)?;
        let status = CertStatus {
            thumbprint: thumbprint(&key),
            loaded: 1,
            rejected: 0,
            last_error: None,
        };
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: RwLock::new(Arc::new(key)),
            sessions: RwLock::new(CertSessions::new(None)),
            status: watch::channel(status).0,
        })
    }

    pub fn status(&self) -> CertStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<CertStatus> {
        self.status.subscribe()
    }

    /// Re-reads the files. Returns whether a new pair was swapped in; a bad pair is
    /// logged and counted, and the current one kept.
    pub fn reload(&self) -> bool {
        match load_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(key) => {
                let new_thumbprint = thumbprint(&key);
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                if current.cert == key.cert {
                    drop(current);
                    // The files are back to what is served: nothing is wrong any more.
                    self.status
                        .send_if_modified(|s| s.last_error.take().is_some());
                    return false;
                }
                *current = Arc::new(key);
                // Still under the certificate's lock: no handshake sees the new one
                // before its sessions are gone.
                *self.sessions.write().unwrap_or_else(|e| e.into_inner()) =
                    CertSessions::new(Some(std::time::Instant::now()));
                drop(current);
                tracing::info!(thumbprint = %new_thumbprint, "certificate reloaded");
                self.status.send_modify(|s| {
                    s.thumbprint = new_thumbprint;
                    s.loaded += 1;
                    s.last_error = None;
                });
                true
            }
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    reason = err.metric_label(),
                    "certificate replacement refused; still serving the previous one"
                );
                self.status.send_modify(|s| {
                    s.rejected += 1;
                    s.last_error = Some(err.to_string());
                });
                false
            }
        }
    }

    /// The directories whose changes may replace the files (watching the files themselves
    /// would lose track of them after an atomic rename-over).
    fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.cert_path, &self.key_path]
            .iter()
            .map(|p| match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.dedup();
        dirs
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl ReloadingCert {
    fn sessions(&self) -> Arc<ServerSessionMemoryCache> {
        let sessions = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        sessions.store.clone()
    }
}

impl StoresServerSessions for ReloadingCert {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let sessions = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        let settling = sessions
            .replaced_at
            .is_some_and(|at| at.elapsed() < NO_SESSIONS_AFTER_REPLACEMENT);
        !settling && sessions.store.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.sessions().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.sessions().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// Reloads `store` whenever its files' directories change or the process gets SIGHUP,
/// until `stop` is cancelled. Without a file watcher (inotify limits exhausted, say) it
/// still reloads on SIGHUP.
pub fn spawn_watcher(
    store: Arc<ReloadingCert>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (poke_tx, mut poke_rx) = mpsc::channel::<()>(1);
    let watcher = match watch_dirs(&store.watched_dirs(), poke_tx) {
        Ok(w) => Some(w),
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch certificate files; reload with SIGHUP");
            None
        }
    };
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();

    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            #[cfg(unix)]
            let sighup = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let sighup = std::future::pending::<()>();
            tokio::select! {
                () = stop.cancelled() => return,
                () = sighup => tracing::info!("SIGHUP: reloading certificate"),
                Some(()) = poke_rx.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while poke_rx.try_recv().is_ok() {}
                }
            }
            let store = store.clone();
            if let Err(err) = tokio::task::spawn_blocking(move || store.reload()).await {
                tracing::error!(error = %err, "certificate reload task failed");
            }
        }
    })
}

fn watch_dirs(
    dirs: &[PathBuf],
    poke: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            // Opening and reading (our own reloads included) change nothing.
            Ok(e) => match e.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                EventKind::Access(_) => false,
                _ => true,
            },
            Err(_) => true,
        };
        if relevant {
            // A full channel already holds a pending reload.
            let _ = poke.try_send(());
        }
    })?;
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| CertError::NoCertificate {
            path: cert_path.to_owned(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let bad_key = |reason: String| CertError::BadKey {
        path: key_path.to_owned(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_key(e.to_string()))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad_key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(CertError::KeyMismatch),
        Err(other) => Err(CertError::BadCertificate(other)),
    }
}

fn thumbprint(key: &CertifiedKey) -> String {
    let leaf = key.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    hex::encode_upper(Sha1::digest(leaf))
}
