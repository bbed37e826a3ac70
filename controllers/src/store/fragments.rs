//! Each server's part of the status document, as JSON, kept until that server's records
//! (or its services') change. At 1,000 servers x 11 services the document is about 11 MB;
//! rendering all of it for every request cost a quarter of a second on a loaded machine,
//! most of it under the store's lock. With the parts kept, a request renders only the
//! servers that changed since the last one and concatenates the rest.

use std::collections::HashMap;

use bytes::Bytes;

/// The rendered parts and the version each was rendered at.
#[derive(Debug, Default)]
pub(super) struct Fragments {
    /// Bumped for a server on every change of its records or its services'.
    versions: HashMap<String, u64>,
    /// The last version handed out.
    last: u64,
    /// Bumped by a change that touches every server (a new desired state).
    epoch: u64,
    rendered: HashMap<String, Fragment>,
}

/// Where a server's records stood when its part was rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    epoch: u64,
    version: u64,
}

/// One server's part, whole and compact.
#[derive(Debug, Clone)]
pub(super) struct Fragment {
    stamp: Stamp,
    /// `ServerStatus` as JSON.
    pub whole: Bytes,
    /// The same without its installed, declared and healthy services.
    pub compact: Bytes,
    /// How many services `compact` leaves out.
    pub omitted: usize,
}

impl Fragments {
    /// A server's records changed: its part is rendered again when next asked for.
    pub(super) fn touch(&mut self, server: &str) {
        self.last += 1;
        match self.versions.get_mut(server) {
            Some(version) => *version = self.last,
            None => {
                self.versions.insert(server.to_owned(), self.last);
            }
        }
    }

    /// Every server's records may have changed.
    pub(super) fn touch_all(&mut self) {
        self.epoch += 1;
        self.rendered.clear();
    }

    /// The server is gone: nothing of it is kept.
    pub(super) fn forget(&mut self, server: &str) {
        self.touch(server);
        self.rendered.remove(server);
    }

    pub(super) fn stamp(&self, server: &str) -> Stamp {
        Stamp {
            epoch: self.epoch,
            version: self.versions.get(server).copied().unwrap_or(0),
        }
    }

    /// The server's part if its records did not change since it was rendered.
    pub(super) fn current(&self, server: &str) -> Option<&Fragment> {
        self.rendered
            .get(server)
            .filter(|f| f.stamp == self.stamp(server))
    }

    /// Keep a part rendered (outside the lock) from records stamped `stamp`, unless they
    /// changed meanwhile.
    pub(super) fn keep(&mut self, server: &str, fragment: Fragment) {
        if fragment.stamp == self.stamp(server) {
            self.rendered.insert(server.to_owned(), fragment);
        }
    }
}

impl Fragment {
    pub(super) fn new(stamp: Stamp, whole: Bytes, compact: Bytes, omitted: usize) -> Self {
        Self {
            stamp,
            whole,
            compact,
            omitted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(stamp: Stamp) -> Fragment {
        Fragment::new(
            stamp,
            Bytes::from_static(b"{}"),
            Bytes::from_static(b"{}"),
            0,
        )
    }

    #[test]
    fn a_part_is_current_until_its_server_or_every_server_changes() {
        let mut f = Fragments::default();
        f.keep("app1", fragment(f.stamp("app1")));
        f.keep("app2", fragment(f.stamp("app2")));
        assert!(f.current("app1").is_some());
        f.touch("app1");
        assert!(f.current("app1").is_none(), "its server changed");
        assert!(f.current("app2").is_some(), "another server's part stays");
        f.touch_all();
        assert!(f.current("app2").is_none(), "a new desired state");
    }

    #[test]
    fn a_part_rendered_from_records_that_changed_meanwhile_is_not_kept() {
        let mut f = Fragments::default();
        let stamp = f.stamp("app1");
        f.touch("app1");
        f.keep("app1", fragment(stamp));
        assert!(f.current("app1").is_none());
        let stamp = f.stamp("app1");
        f.touch_all();
        f.keep("app1", fragment(stamp));
        assert!(f.current("app1").is_none());
    }
}
