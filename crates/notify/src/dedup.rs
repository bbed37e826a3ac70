//! One mail per event kind and object per `rateLimit` window, and a recovery mail only
//! after a down mail. The state is a small JSON file in the state directory, replaced
//! atomically (write, fsync, rename) after every change, so a restarted daemon does not
//! mail again what it mailed a minute ago.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use steward_model::notifications::NotificationEvent;

use crate::notice::Notice;

/// Entries kept at most (windows and open downs each): a flood of distinct objects cannot
/// grow the file without bound.
const MAX_ENTRIES: usize = 10_000;

/// Why a notice is not mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// The same event kind and object was mailed within the window.
    RateLimited,
    /// A recovery whose down was never mailed.
    NoDownMailed,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    /// `notification event object` -> end of its window (ms since the epoch).
    windows: BTreeMap<String, u64>,
    /// `notification object` of services whose down was mailed and not yet recovered.
    down: BTreeSet<String>,
}

#[derive(Debug)]
pub struct Dedup {
    path: Option<PathBuf>,
    state: State,
}

impl Dedup {
    /// The state under `state_dir` (`notifications/dedup.json`), or kept in memory only
    /// without one. An unreadable or corrupt file starts afresh, with a warning.
    pub fn load(state_dir: Option<&Path>) -> Self {
        let path = state_dir.map(|d| d.join("notifications").join("dedup.json"));
        let state = match path.as_deref().map(std::fs::read) {
            None => State::default(),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Some(Err(e)) => {
                tracing::warn!("notification dedup state unreadable ({e}); starting afresh");
                State::default()
            }
            Some(Ok(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("notification dedup state corrupt ({e}); starting afresh");
                State::default()
            }),
        };
        Self { path, state }
    }

    /// Decide whether `notification` (with its `window`) mails `notice` now, and remember
    /// it when it does.
    pub fn admit(
        &mut self,
        notification: &str,
        window: Duration,
        notice: &Notice,
        now: SystemTime,
    ) -> Verdict {
        let now_ms = millis(now);
        let down_key = format!("{notification} {}", notice.object);
        if notice.event == NotificationEvent::ServiceRecovered
            && !self.state.down.contains(&down_key)
        {
            return Verdict::NoDownMailed;
        }
        let key = format!("{notification} {} {}", notice.event, notice.object);
        if self
            .state
            .windows
            .get(&key)
            .is_some_and(|until| now_ms < *until)
        {
            return Verdict::RateLimited;
        }
        self.state.windows.retain(|_, until| *until > now_ms);
        if self.state.windows.len() < MAX_ENTRIES {
            self.state
                .windows
                .insert(key, now_ms.saturating_add(millis_of(window)));
        }
        match notice.event {
            NotificationEvent::ServiceDown if self.state.down.len() < MAX_ENTRIES => {
                self.state.down.insert(down_key);
            }
            NotificationEvent::ServiceRecovered => {
                self.state.down.remove(&down_key);
            }
            _ => {}
        }
        self.persist();
        Verdict::Send
    }

    /// Forget a Notifications object that left the desired state.
    pub fn forget(&mut self, notification: &str) {
        let prefix = format!("{notification} ");
        let before = self.state.windows.len() + self.state.down.len();
        self.state.windows.retain(|k, _| !k.starts_with(&prefix));
        self.state.down.retain(|k| !k.starts_with(&prefix));
        if before != self.state.windows.len() + self.state.down.len() {
            self.persist();
        }
    }

    fn persist(&self) {
        let Some(path) = &self.path else { return };
        if let Err(e) = write_atomically(path, &self.state) {
            tracing::warn!(
                "cannot save notification dedup state to {}: {e}",
                path.display()
            );
        }
    }
}

fn write_atomically(path: &Path, state: &State) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".dedup.json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(state).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable only once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

fn millis(t: SystemTime) -> u64 {
    millis_of(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn notice(event: NotificationEvent, object: &str) -> Notice {
        Notice {
            event,
            object: object.into(),
            reason: "r".into(),
            message: "m".into(),
            time: OffsetDateTime::UNIX_EPOCH,
            warning: true,
        }
    }

    const MIN5: Duration = Duration::from_secs(300);

    #[test]
    fn one_mail_per_kind_and_object_per_window() {
        let mut d = Dedup::load(None);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let down = notice(NotificationEvent::ServiceDown, "service/app1/PSIS");
        assert_eq!(d.admit("admins", MIN5, &down, t0), Verdict::Send);
        assert_eq!(
            d.admit("admins", MIN5, &down, t0 + Duration::from_secs(299)),
            Verdict::RateLimited
        );
        // Another object, another notification object: their own windows.
        let other = notice(NotificationEvent::ServiceDown, "service/app2/PSIS");
        assert_eq!(d.admit("admins", MIN5, &other, t0), Verdict::Send);
        assert_eq!(d.admit("oncall", MIN5, &down, t0), Verdict::Send);
        assert_eq!(d.admit("admins", MIN5, &down, t0 + MIN5), Verdict::Send);
    }

    #[test]
    fn a_recovery_only_after_a_down_mail() {
        let mut d = Dedup::load(None);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let up = notice(NotificationEvent::ServiceRecovered, "service/app1/PSIS");
        assert_eq!(d.admit("admins", MIN5, &up, t0), Verdict::NoDownMailed);
        let down = notice(NotificationEvent::ServiceDown, "service/app1/PSIS");
        assert_eq!(d.admit("admins", MIN5, &down, t0), Verdict::Send);
        assert_eq!(d.admit("admins", MIN5, &up, t0), Verdict::Send);
        // Recovered once: a second recovery has no down before it.
        assert_eq!(
            d.admit("admins", MIN5, &up, t0 + Duration::from_secs(600)),
            Verdict::NoDownMailed
        );
    }

    #[test]
    fn the_state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let down = notice(NotificationEvent::ServiceDown, "service/app1/PSIS");
        let mut d = Dedup::load(Some(dir.path()));
        assert_eq!(d.admit("admins", MIN5, &down, t0), Verdict::Send);
        drop(d);
        let mut again = Dedup::load(Some(dir.path()));
        assert_eq!(
            again.admit("admins", MIN5, &down, t0 + Duration::from_secs(10)),
            Verdict::RateLimited
        );
        let up = notice(NotificationEvent::ServiceRecovered, "service/app1/PSIS");
        assert_eq!(again.admit("admins", MIN5, &up, t0), Verdict::Send);
        assert!(!dir.path().join("notifications/.dedup.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_file_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("notifications")).unwrap();
        std::fs::write(dir.path().join("notifications/dedup.json"), b"{not json").unwrap();
        let mut d = Dedup::load(Some(dir.path()));
        let down = notice(NotificationEvent::ServiceDown, "service/app1/PSIS");
        assert_eq!(
            d.admit("admins", MIN5, &down, SystemTime::now()),
            Verdict::Send
        );
    }
}
