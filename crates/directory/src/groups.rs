//! Role groups: looked up by name below the group base, reported present / missing /
//! ambiguous, one object reached under two names detected, missing ones created.

use std::collections::BTreeMap;

use std::collections::HashSet;

use futures::{stream, FutureExt, StreamExt, TryStreamExt};
use ldap3::{dn_escape, ldap_escape, LdapResult, Scope};

use crate::connect::{guarded, Failure};

use crate::entry::Entry;
use crate::error::DirectoryError;
use crate::kind::DirectoryKind;
use crate::session::Session;

/// Names per search filter: large enough that 1,000 groups take a handful of round trips,
/// small enough to stay far below server filter-size limits.
const NAMES_PER_SEARCH: usize = 200;

/// Group adds outstanding at once on one connection (see `create_groups`). Small on
/// purpose: each add's operation timeout runs from when it is sent, so it also covers its
/// wait behind the adds ahead of it (Samba commits them one at a time: 128 outstanding on
/// a DC taking 80 ms per add timed out at 10 s). Eight hide the round trips of a distant
/// directory, which is what pipelining can win.
const ADDS_IN_FLIGHT: usize = 8;

/// AD's `groupType` for a global security group (ADS_GROUP_TYPE_GLOBAL_GROUP |
/// ADS_GROUP_TYPE_SECURITY_ENABLED).
pub const GLOBAL_SECURITY_GROUP: &str = "-2147483646";

/// A group found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub dn: String,
    /// `objectGUID` (hex) or `entryUUID`; the DN (lower-cased) when the server has neither.
    pub id: String,
}

/// What one requested name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Present(Group),
    Missing,
    /// The name matches several groups (e.g. the same `cn` in two OUs): their DNs.
    Ambiguous(Vec<String>),
}

/// One directory object reached under several requested names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedGroup {
    pub dn: String,
    pub names: Vec<String>,
}

/// The outcome of `find_groups`, keyed by the requested name as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupReport {
    pub groups: BTreeMap<String, Lookup>,
}

impl GroupReport {
    pub fn get(&self, name: &str) -> Option<&Lookup> {
        self.groups.get(name)
    }

    pub fn missing(&self) -> Vec<&str> {
        self.names_where(|l| matches!(l, Lookup::Missing))
    }

    pub fn ambiguous(&self) -> Vec<&str> {
        self.names_where(|l| matches!(l, Lookup::Ambiguous(_)))
    }

    /// Names that resolve to the same object (same identity, or same DN): the live
    /// check of "a group may hold only one role".
    pub fn shared(&self) -> Vec<SharedGroup> {
        let mut by_id: BTreeMap<&str, (String, Vec<String>)> = BTreeMap::new();
        for (name, lookup) in &self.groups {
            if let Lookup::Present(group) = lookup {
                let slot = by_id
                    .entry(&group.id)
                    .or_insert_with(|| (group.dn.clone(), Vec::new()));
                slot.1.push(name.clone());
            }
        }
        by_id
            .into_values()
            .filter(|(_, names)| names.len() > 1)
            .map(|(dn, names)| SharedGroup { dn, names })
            .collect()
    }

    fn names_where(&self, keep: impl Fn(&Lookup) -> bool) -> Vec<&str> {
        self.groups
            .iter()
            .filter(|(_, l)| keep(l))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// What `create_group` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created {
        dn: String,
    },
    /// Something already has that DN (a concurrent creation, or a non-group object).
    AlreadyExists {
        dn: String,
    },
}

impl Session {
    /// Looks every name up below the group base (by `sAMAccountName` or `cn` on AD, `cn`
    /// elsewhere; case-insensitive like the servers), in a few batched searches over this
    /// one connection.
    pub async fn find_groups<S: AsRef<str>>(
        &mut self,
        names: &[S],
    ) -> Result<GroupReport, DirectoryError> {
        let base = self.config.group_base()?;
        let kind = self.kind();
        let mut report = GroupReport::default();
        for chunk in names.chunks(NAMES_PER_SEARCH) {
            let filter = group_filter(kind, chunk);
            let mut attrs = vec!["cn", kind.identity_attribute()];
            attrs.extend(kind.group_name_attributes());
            let entries = self
                .search(
                    "looking up role groups",
                    &base,
                    Scope::Subtree,
                    &filter,
                    &attrs,
                    true,
                )
                .await?;
            for name in chunk {
                let name = name.as_ref();
                report
                    .groups
                    .insert(name.to_string(), match_name(kind, name, &entries));
            }
        }
        Ok(report)
    }

    /// Creates `name` below the group base (see [`Session::create_groups`]).
    pub async fn create_group(&mut self, name: &str) -> Result<Created, DirectoryError> {
        let mut created = self.create_groups(&[name]).await?;
        Ok(created.remove(0))
    }

    /// Creates every name below the group base, in order, one [`Created`] per name. On
    /// AD: a global security group with `sAMAccountName` and `groupType` set explicitly
    /// (otherwise AD invents a `$XXXX` name). On generic LDAP: a `groupOfNames` with one
    /// empty `member` value, because the schema requires at least one member and steward
    /// must not invent one.
    ///
    /// The adds are pipelined over this one connection, up to `ADDS_IN_FLIGHT` (8)
    /// outstanding, so a distant directory costs its commit time per add rather than a
    /// round trip plus the commit. (Against Samba on loopback this wins nothing: it commits
    /// one synced transaction per add, and those dominate.) Every name is checked before anything is sent; the first failure (in name
    /// order) ends the call and abandons the adds still in flight, so a stalled directory
    /// costs about one operation timeout, not one per name.
    pub async fn create_groups<S: AsRef<str>>(
        &mut self,
        names: &[S],
    ) -> Result<Vec<Created>, DirectoryError> {
        const DURING: &str = "creating a group";
        for name in names {
            check_group_name(name.as_ref())?;
        }
        let base = self.config.group_base()?;
        let kind = self.kind();
        let limit = self.config.operation_timeout;
        let ldap = self.ldap.clone();
        // Built up front: a stream holding a borrowing closure would make the caller's
        // future not `Send`.
        let adds: Vec<_> = names
            .iter()
            .map(|name| {
                let name = name.as_ref();
                let dn = format!("CN={},{base}", dn_escape(name));
                let attrs = group_attributes(kind, name);
                let mut ldap = ldap.clone();
                async move {
                    match guarded(limit, ldap.with_timeout(limit).add(&dn, attrs)).await {
                        Ok(result) => Ok((dn, result)),
                        Err(failure) => Err(failure),
                    }
                }
            })
            .collect();
        let answered: Result<Vec<(String, LdapResult)>, Failure> = stream::iter(adds)
            .buffered(ADDS_IN_FLIGHT)
            .try_collect()
            .await;
        let answered = match answered {
            Ok(answered) => answered,
            Err(failure) => return Err(self.failure(DURING, failure).await),
        };
        answered
            .into_iter()
            .map(|(dn, result)| match result.rc {
                0 => Ok(Created::Created { dn }),
                68 => Ok(Created::AlreadyExists { dn }),
                _ => Err(self.rejected(DURING, &result)),
            })
            .collect()
    }

    /// Deletes a group by DN (used by tests and tools; the controller never deletes).
    pub async fn delete_entry(&mut self, dn: &str) -> Result<(), DirectoryError> {
        let target = dn.to_string();
        let result = self
            .single("deleting an entry", move |ldap| {
                async move { ldap.delete(&target).await }.boxed()
            })
            .await?;
        match result.rc {
            0 => Ok(()),
            _ => Err(self.rejected("deleting an entry", &result)),
        }
    }
}

/// The attributes of a new group named `name`.
fn group_attributes(kind: DirectoryKind, name: &str) -> Vec<(String, HashSet<String>)> {
    let attrs: Vec<(&str, Vec<&str>)> = match kind {
        DirectoryKind::ActiveDirectory => vec![
            ("objectClass", vec!["top", "group"]),
            ("cn", vec![name]),
            ("sAMAccountName", vec![name]),
            ("groupType", vec![GLOBAL_SECURITY_GROUP]),
        ],
        DirectoryKind::Generic => vec![
            ("objectClass", vec!["top", "groupOfNames"]),
            ("cn", vec![name]),
            ("member", vec![""]),
        ],
    };
    attrs
        .into_iter()
        .map(|(a, vs)| (a.to_string(), vs.into_iter().map(str::to_string).collect()))
        .collect()
}

fn group_filter<S: AsRef<str>>(kind: DirectoryKind, names: &[S]) -> String {
    let mut alternatives = String::new();
    for name in names {
        let escaped = ldap_escape(name.as_ref());
        for attr in kind.group_name_attributes() {
            alternatives.push_str(&format!("({attr}={escaped})"));
        }
    }
    format!("(&{}(|{alternatives}))", kind.group_class_filter())
}

/// The group a name denotes. On AD a `sAMAccountName` match wins over a `cn` match (the
/// former is unique in the domain, the latter only per container).
fn match_name(kind: DirectoryKind, name: &str, entries: &[Entry]) -> Lookup {
    for attr in kind.group_name_attributes() {
        let hits: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.text(attr).iter().any(|v| v.eq_ignore_ascii_case(name)))
            .collect();
        match hits.as_slice() {
            [] => continue,
            [one] => return Lookup::Present(group_of(kind, one)),
            many => return Lookup::Ambiguous(many.iter().map(|e| e.dn.clone()).collect()),
        }
    }
    Lookup::Missing
}

fn group_of(kind: DirectoryKind, entry: &Entry) -> Group {
    let id = match kind {
        DirectoryKind::ActiveDirectory => entry.bytes("objectGUID").first().map(|g| hex(g)),
        DirectoryKind::Generic => entry.first("entryUUID").map(str::to_ascii_lowercase),
    };
    Group {
        dn: entry.dn.clone(),
        id: id.unwrap_or_else(|| entry.dn.to_ascii_lowercase()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// AD's rules for a group's `cn` (at most 64 characters) and `sAMAccountName` (none of
/// `"/\[]:;|=,+*?<>`, not ending in `.`); checked before sending so the error is precise.
fn check_group_name(name: &str) -> Result<(), DirectoryError> {
    let bad = |why: &str| DirectoryError::Config(format!("group name `{name}`: {why}"));
    if name.trim().is_empty() || name.trim() != name {
        return Err(bad("empty or with leading/trailing spaces"));
    }
    if name.chars().count() > 64 {
        return Err(bad("longer than 64 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| "\"/\\[]:;|=,+*?<>".contains(*c) || c.is_control())
    {
        return Err(bad(&format!("contains `{}`", c.escape_default())));
    }
    if name.ends_with('.') {
        return Err(bad("ends with `.`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(dn: &str, sam: &str, cn: &str, guid: &str) -> Entry {
        Entry::for_test(
            dn,
            &[
                ("sAMAccountName", &[sam]),
                ("cn", &[cn]),
                ("objectGUID", &[guid]),
            ],
        )
    }

    #[test]
    fn filter_escapes_names_and_matches_both_attributes_on_ad() {
        let f = group_filter(DirectoryKind::ActiveDirectory, &["PS-Users", "a*(b)"]);
        assert_eq!(
            f,
            "(&(objectClass=group)(|(sAMAccountName=PS-Users)(cn=PS-Users)\
             (sAMAccountName=a\\2a\\28b\\29)(cn=a\\2a\\28b\\29)))"
        );
        let f = group_filter(DirectoryKind::Generic, &["x"]);
        assert_eq!(f, "(&(objectClass=groupOfNames)(|(cn=x)))");
    }

    #[test]
    fn sam_account_name_wins_over_cn_and_two_cn_hits_are_ambiguous() {
        let kind = DirectoryKind::ActiveDirectory;
        let entries = [
            group("CN=Ops,OU=A,DC=x", "ops-sam", "Ops", "g1"),
            group("CN=Ops,OU=B,DC=x", "ops-b", "Ops", "g2"),
            group("CN=Other,DC=x", "Ops", "Other", "g3"),
        ];
        assert!(
            matches!(match_name(kind, "ops", &entries), Lookup::Present(g) if g.dn == "CN=Other,DC=x")
        );
        let two = [entries[0].clone(), entries[1].clone()];
        assert!(matches!(match_name(kind, "OPS", &two), Lookup::Ambiguous(dns) if dns.len() == 2));
        assert_eq!(match_name(kind, "nope", &entries), Lookup::Missing);
    }

    #[test]
    fn shared_reports_one_object_under_two_names() {
        let mut report = GroupReport::default();
        let g = |dn: &str, id: &str| {
            Lookup::Present(Group {
                dn: dn.into(),
                id: id.into(),
            })
        };
        report
            .groups
            .insert("PS-Admins".into(), g("CN=PS-Admins,DC=x", "aa"));
        report
            .groups
            .insert("Admins-Old".into(), g("CN=PS-Admins,DC=x", "aa"));
        report
            .groups
            .insert("PS-Users".into(), g("CN=PS-Users,DC=x", "bb"));
        report.groups.insert("PS-Gone".into(), Lookup::Missing);
        assert_eq!(
            report.shared(),
            [SharedGroup {
                dn: "CN=PS-Admins,DC=x".into(),
                names: vec!["Admins-Old".into(), "PS-Admins".into()]
            }]
        );
        assert_eq!(report.missing(), ["PS-Gone"]);
    }

    #[test]
    fn group_names_ad_would_reject_are_refused_before_sending() {
        for bad in ["", " x", "a,b", "a*", "x.", &"n".repeat(65), "a\nb"] {
            assert_eq!(
                check_group_name(bad).unwrap_err().label(),
                "Config",
                "{bad:?}"
            );
        }
        for good in ["PS-Users", "PatientSecure Owners", "grp_01"] {
            check_group_name(good).unwrap();
        }
    }
}
