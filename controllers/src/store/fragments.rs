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

/// One server's part as asked for so far: whole, compact, or both. Each is rendered the
/// first time a document asks for it, so a fleet only ever asked for compact documents (the
/// dashboard's) keeps only those (1.5 MB at 1,000 x 11, not the 11 MB of whole ones).
#[derive(Debug, Clone)]
pub(super) struct Fragment {
    stamp: Stamp,
    /// `ServerStatus` as JSON.
    whole: Option<Bytes>,
    /// The same without its installed, declared and healthy services, and how many it
    /// leaves out.
    compact: Option<(Bytes, usize)>,
}

/// Which form of a server's part a document shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    Whole,
    Compact,
}

/// One form of a part, rendered: its JSON and the services it leaves out.
#[derive(Debug, Clone)]
pub(super) struct Rendered {
    pub form: Form,
    pub json: Bytes,
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

    /// The server's part in `form`, if rendered since its records last changed.
    pub(super) fn current(&self, server: &str, form: Form) -> Option<Rendered> {
        let fragment = self
            .rendered
            .get(server)
            .filter(|f| f.stamp == self.stamp(server))?;
        match form {
            Form::Whole => fragment.whole.clone().map(|json| Rendered {
                form,
                json,
                omitted: 0,
            }),
            Form::Compact => fragment.compact.clone().map(|(json, omitted)| Rendered {
                form,
                json,
                omitted,
            }),
        }
    }

    /// Keep a part rendered (outside the lock) from records stamped `stamp`, unless they
    /// changed meanwhile.
    pub(super) fn keep(&mut self, server: &str, stamp: Stamp, rendered: Rendered) {
        if stamp != self.stamp(server) {
            return;
        }
        let fragment = self
            .rendered
            .entry(server.to_owned())
            .or_insert_with(|| Fragment {
                stamp,
                whole: None,
                compact: None,
            });
        if fragment.stamp != stamp {
            *fragment = Fragment {
                stamp,
                whole: None,
                compact: None,
            };
        }
        match rendered.form {
            Form::Whole => fragment.whole = Some(rendered.json),
            Form::Compact => fragment.compact = Some((rendered.json, rendered.omitted)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole() -> Rendered {
        Rendered {
            form: Form::Whole,
            json: Bytes::from_static(b"{}"),
            omitted: 0,
        }
    }

    #[test]
    fn a_part_is_current_until_its_server_or_every_server_changes() {
        let mut f = Fragments::default();
        f.keep("app1", f.stamp("app1"), whole());
        f.keep("app2", f.stamp("app2"), whole());
        assert!(f.current("app1", Form::Whole).is_some());
        assert!(f.current("app1", Form::Compact).is_none(), "never rendered");
        f.touch("app1");
        assert!(
            f.current("app1", Form::Whole).is_none(),
            "its server changed"
        );
        assert!(
            f.current("app2", Form::Whole).is_some(),
            "another server's stays"
        );
        f.touch_all();
        assert!(
            f.current("app2", Form::Whole).is_none(),
            "a new desired state"
        );
    }

    #[test]
    fn both_forms_are_kept_until_the_server_changes() {
        let mut f = Fragments::default();
        let stamp = f.stamp("app1");
        f.keep("app1", stamp, whole());
        let compact = Rendered {
            form: Form::Compact,
            json: Bytes::from_static(b"[]"),
            omitted: 11,
        };
        f.keep("app1", stamp, compact);
        assert!(f.current("app1", Form::Whole).is_some());
        assert_eq!(f.current("app1", Form::Compact).unwrap().omitted, 11);
        f.touch("app1");
        f.keep("app1", f.stamp("app1"), whole());
        assert!(
            f.current("app1", Form::Compact).is_none(),
            "from older records"
        );
    }

    #[test]
    fn a_part_rendered_from_records_that_changed_meanwhile_is_not_kept() {
        let mut f = Fragments::default();
        let stamp = f.stamp("app1");
        f.touch("app1");
        f.keep("app1", stamp, whole());
        assert!(f.current("app1", Form::Whole).is_none());
        let stamp = f.stamp("app1");
        f.touch_all();
        f.keep("app1", stamp, whole());
        assert!(f.current("app1", Form::Whole).is_none());
    }
}
