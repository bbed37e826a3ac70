//! The CAs trusted when probing services: the daemon's own (the steward CA), plus the
//! installation's `certificateAuthority.certFile` and `trust` files, which issued
//! third-party server certificates. Those files are read when a generation is accepted
//! and again every poll, and the prober is handed the new set only when what they hold
//! changed: replacing a CA file needs no commit and no restart.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::in_force::Accepted;
use crate::prober::Prober;

/// More than this is no CA certificate file.
const MAX_CA_FILE: u64 = 1 << 20;

/// Each CA file and what it held (`None`: unreadable, or not UTF-8 PEM).
type FilesRead = Vec<(PathBuf, Option<String>)>;

pub(crate) struct TrustRoots {
    /// Always trusted (the steward CA).
    base: Vec<String>,
    /// The files and what they held at the last read (`None`: unreadable).
    last: Mutex<Option<FilesRead>>,
}

impl TrustRoots {
    pub(crate) fn new(base: Vec<String>) -> Self {
        Self {
            base,
            last: Mutex::new(None),
        }
    }

    /// Read the installation's CA files; if they changed since the last read, trust the
    /// new set. Returns whether the prober was given a new set.
    pub(crate) fn refresh(&self, accepted: &Accepted, prober: &dyn Prober) -> bool {
        let desired = &accepted.desired;
        let authority = &desired.snapshot.installation.certificate_authority;
        let read: FilesRead = authority
            .cert_file
            .iter()
            .chain(&authority.trust)
            .map(|file| {
                let path = if file.is_absolute() {
                    file.clone()
                } else {
                    desired.dir.join(file)
                };
                // Bounded, and refusing a FIFO (which would block the poll for good).
                let pem = steward_model::load::read_regular_file(&path, MAX_CA_FILE)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok());
                (path, pem)
            })
            .collect();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref() == Some(&read) {
            return false;
        }
        for (path, pem) in &read {
            if pem.is_none() {
                tracing::warn!(
                    file = %path.display(),
                    "cannot read a trusted CA (or it is not UTF-8 PEM); probes of certificates it issued will fail"
                );
            }
        }
        let roots: Vec<String> = self
            .base
            .iter()
            .cloned()
            .chain(read.iter().filter_map(|(_, pem)| pem.clone()))
            .collect();
        match prober.trust(&roots) {
            Ok(()) => {
                if last.is_some() {
                    tracing::info!("trusted CAs for probing re-read: {} in use", roots.len());
                }
                *last = Some(read);
                true
            }
            Err(e) => {
                tracing::warn!("the trusted CA files are unusable ({e}); the previous set stays");
                *last = Some(read);
                false
            }
        }
    }
}
