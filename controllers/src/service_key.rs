//! The service controller's key: one service kind on one server.

use std::fmt;

use steward_model::ServiceKind;

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub server: String,
    pub kind: ServiceKind,
}

impl ServiceKey {
    pub fn new(server: impl Into<String>, kind: ServiceKind) -> Self {
        Self {
            server: server.into(),
            kind,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.kind)
    }
}

/// Short, because it is the `key` field of every reconcile span.
impl fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_keys_print_short() {
        let key = ServiceKey::new("app1", ServiceKind::Psws);
        assert_eq!(format!("{key:?}"), "app1/PSWS");
    }
}
