//! Active Directory or generic LDAP, and what differs between them.

use crate::entry::Entry;

/// `LDAP_CAP_ACTIVE_DIRECTORY_OID` in the root DSE's `supportedCapabilities`: Windows AD
/// and Samba AD DCs advertise it.
const AD_CAPABILITY: &str = "1.2.840.113556.1.4.800";

/// The schema dialect of the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryKind {
    /// Windows AD or Samba AD: `group` objects named by `sAMAccountName`, identity in
    /// `objectGUID`, accounts by `sAMAccountName`, `member` in ranges of 1,500.
    ActiveDirectory,
    /// RFC 4519 LDAP (OpenLDAP): `groupOfNames` named by `cn`, identity in `entryUUID`,
    /// accounts by `uid`; `groupOfNames` must hold at least one `member`.
    Generic,
}

impl DirectoryKind {
    pub(crate) fn from_root_dse(root: Option<&Entry>) -> Self {
        let ad = root.is_some_and(|r| r.text("supportedCapabilities").contains(&AD_CAPABILITY));
        if ad {
            Self::ActiveDirectory
        } else {
            Self::Generic
        }
    }

    /// The filter selecting group objects.
    pub(crate) fn group_class_filter(self) -> &'static str {
        match self {
            Self::ActiveDirectory => "(objectClass=group)",
            Self::Generic => "(objectClass=groupOfNames)",
        }
    }

    /// Attributes a role group name may match (in order of preference).
    pub(crate) fn group_name_attributes(self) -> &'static [&'static str] {
        match self {
            Self::ActiveDirectory => &["sAMAccountName", "cn"],
            Self::Generic => &["cn"],
        }
    }

    /// The attribute holding an account's login name.
    pub(crate) fn account_attribute(self) -> &'static str {
        match self {
            Self::ActiveDirectory => "sAMAccountName",
            Self::Generic => "uid",
        }
    }

    /// The attribute holding an object's stable identity (survives renames and moves).
    pub(crate) fn identity_attribute(self) -> &'static str {
        match self {
            Self::ActiveDirectory => "objectGUID",
            Self::Generic => "entryUUID",
        }
    }

    /// Result codes that mean "already a member" for an add of one `member` value:
    /// AD answers 68 (entryAlreadyExists), RFC servers 20 (attributeOrValueExists).
    pub(crate) fn already_member(self, code: u32) -> bool {
        match self {
            Self::ActiveDirectory => code == 68 || code == 20,
            Self::Generic => code == 20,
        }
    }

    /// Result codes that mean "not a member" for a delete of one `member` value: AD
    /// answers 53 (unwillingToPerform), RFC servers 16 (noSuchAttribute).
    pub(crate) fn not_member(self, code: u32) -> bool {
        match self {
            Self::ActiveDirectory => code == 53 || code == 16,
            Self::Generic => code == 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ad_capability_marks_active_directory() {
        let ad = Entry::for_test(
            "",
            &[(
                "supportedCapabilities",
                &["1.2.840.113556.1.4.1670", AD_CAPABILITY],
            )],
        );
        let slapd = Entry::for_test("", &[("supportedCapabilities", &[])]);
        assert_eq!(
            DirectoryKind::from_root_dse(Some(&ad)),
            DirectoryKind::ActiveDirectory
        );
        assert_eq!(
            DirectoryKind::from_root_dse(Some(&slapd)),
            DirectoryKind::Generic
        );
        assert_eq!(DirectoryKind::from_root_dse(None), DirectoryKind::Generic);
    }

    #[test]
    fn unwilling_counts_as_not_a_member_only_on_ad() {
        assert!(DirectoryKind::ActiveDirectory.not_member(53));
        assert!(!DirectoryKind::Generic.not_member(53));
        assert!(DirectoryKind::ActiveDirectory.already_member(68));
        assert!(!DirectoryKind::Generic.already_member(68));
    }
}
