//! Faults a release asks the lab for, so that a failed upgrade can be shown and tested
//! with real processes: build metadata `lab-fail-KIND` (`6.13.0+lab-fail-PSWS`) makes
//! every lab service of KIND installed with that release fail its health test (503);
//! `lab-fail-KIND-at-A-B-C-D` only the one bound to address A.B.C.D (a build identifier
//! cannot hold dots), so one server of a fleet fails. An operator's repair, so that a
//! resumed upgrade can be shown to finish: the service passes again once a file
//! [`REPAIRED`] exists in its working directory (its directory on the lab server).

use std::net::IpAddr;

use steward_model::catalog::ServiceKind;
use steward_model::upgrade::build_metadata;

/// The file whose presence in a failing service's working directory lifts the fault.
pub(crate) const REPAIRED: &str = "lab-repaired";

/// An operator repaired this service (read at every health request of a failing one).
pub(crate) fn repaired() -> bool {
    std::path::Path::new(REPAIRED).exists()
}

/// Whether `release` asks the service of `kind` bound to `bind` to fail its health test.
pub(crate) fn fails_health(release: Option<&str>, kind: ServiceKind, bind: IpAddr) -> bool {
    let Some(release) = release else {
        return false;
    };
    build_metadata(release).any(|id| {
        let Some(rest) = id.strip_prefix("lab-fail-") else {
            return false;
        };
        let (named, at) = match rest.split_once("-at-") {
            Some((k, at)) => (k, Some(at)),
            None => (rest, None),
        };
        named == kind.as_str() && at.is_none_or(|a| a.replace('-', ".") == bind.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_a_kind_and_maybe_an_address() {
        let ip: IpAddr = "127.0.5.12".parse().unwrap();
        let other: IpAddr = "127.0.5.11".parse().unwrap();
        let psws = ServiceKind::Psws;
        assert!(fails_health(Some("6.13.0+lab-fail-PSWS"), psws, ip));
        assert!(fails_health(Some("6.13.0+b7.lab-fail-PSWS"), psws, ip));
        assert!(!fails_health(Some("6.13.0+lab-fail-PSIS"), psws, ip));
        assert!(!fails_health(Some("6.13.0"), psws, ip));
        assert!(!fails_health(None, psws, ip));
        assert!(!fails_health(Some("6.13.0-lab-fail-PSWS"), psws, ip));
        let at = Some("6.13.0+lab-fail-PSWS-at-127-0-5-12");
        assert!(fails_health(at, psws, ip));
        assert!(!fails_health(at, psws, other));
    }
}
