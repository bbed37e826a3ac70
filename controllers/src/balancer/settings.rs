//! How steward runs the load balancer on this machine: not part of the desired state (the
//! same files drive a production HAProxy and the lab's), so the daemon sets it once.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use steward_balancer::haproxy::Haproxy;
use steward_balancer::BalancerError;

/// More than this is no CA certificate file.
const MAX_CA_FILE: u64 = 1 << 20;

/// Where HAProxy's frontends listen and which binary runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancerSettings {
    /// The address every frontend binds (default `0.0.0.0`; the lab's 127.0.0.10).
    pub bind: IpAddr,
    /// Serve ports below 1024 on 10000 + port (ADMIN's 443 on 10443), as the lab's agents
    /// do, so an unprivileged HAProxy can run.
    pub map_low_ports: bool,
    /// The `haproxy` binary; `None`: the first on `PATH`.
    pub haproxy: Option<PathBuf>,
}

impl Default for BalancerSettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            map_low_ports: false,
            haproxy: None,
        }
    }
}

impl BalancerSettings {
    /// `bind` as a `bind` line takes it before `:port`.
    pub(crate) fn bind_text(&self) -> String {
        match self.bind {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        }
    }

    /// The binary to run, or why there is none.
    pub fn binary(&self) -> Result<PathBuf, BalancerError> {
        match &self.haproxy {
            Some(bin) => Ok(bin.clone()),
            None => find_on_path("haproxy").ok_or_else(|| {
                BalancerError::HaproxyMissing(
                    "no haproxy on PATH (Debian package `haproxy`, 2.6 or later)".into(),
                )
            }),
        }
    }
}

/// The controller's memory between runs: the settings, and which binary passed the
/// version check (asked again only when the binary changes).
#[derive(Debug, Default)]
pub(crate) struct BalancerState {
    pub settings: OnceLock<BalancerSettings>,
    version_checked: Mutex<Option<(PathBuf, Option<SystemTime>)>>,
}

impl BalancerState {
    pub(crate) fn settings(&self) -> BalancerSettings {
        self.settings.get().cloned().unwrap_or_default()
    }

    /// `haproxy -vv` (>= 2.6), once per binary: a missing or too old one is the load
    /// balancer's condition, and nothing is written for it.
    pub(crate) async fn check_version(&self, h: &Haproxy) -> Result<(), BalancerError> {
        let stamp = (
            h.bin.clone(),
            std::fs::metadata(&h.bin).and_then(|m| m.modified()).ok(),
        );
        if self.checked().as_ref() == Some(&stamp) {
            return Ok(());
        }
        let version = h.version().await?;
        tracing::info!(bin = %h.bin.display(), %version, "haproxy found");
        *self
            .version_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(stamp);
        Ok(())
    }

    fn checked(&self) -> Option<(PathBuf, Option<SystemTime>)> {
        self.version_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The CAs HAProxy verifies the members' certificates against (`ca-file`): the steward CA
/// and the installation's `certFile` and `trust` files, which issued third-party
/// certificates. Unreadable files are left out (the prober warns about them).
pub(crate) fn trusted_pem(
    base: &[String],
    authority: &steward_model::snapshot::CertificateAuthority,
    desired_dir: &Path,
) -> String {
    let mut pem: String = base.concat();
    for file in authority.cert_file.iter().chain(&authority.trust) {
        let path = if file.is_absolute() {
            file.clone()
        } else {
            desired_dir.join(file)
        };
        if let Some(text) = steward_model::load::read_regular_file(&path, MAX_CA_FILE)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        {
            if !pem.ends_with('\n') && !pem.is_empty() {
                pem.push('\n');
            }
            pem.push_str(&text);
        }
    }
    pem
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}
