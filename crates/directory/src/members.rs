//! Group membership: read completely (range retrieval), accounts resolved by login name,
//! the change set for a policy, and per-value application.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::FutureExt;
use ldap3::{ldap_escape, Mod, Scope};

use crate::entry::Entry;
use crate::error::DirectoryError;
use crate::kind::DirectoryKind;
use crate::session::Session;

/// Names per account search filter.
const ACCOUNTS_PER_SEARCH: usize = 200;

/// Values asked for per ranged read: AD's default MaxValRange.
const RANGE_SIZE: usize = 1500;

/// How listed members relate to the members a group already has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MembersPolicy {
    /// Add the listed members, never remove anyone.
    #[default]
    Additive,
    /// Also remove members that are not listed.
    Exact,
}

/// Member DNs to add and to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberChanges {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

impl MemberChanges {
    /// The changes that bring `current` to `wanted` under `policy`. DNs compare
    /// case-insensitively, as directories do.
    pub fn plan(current: &[String], wanted: &[String], policy: MembersPolicy) -> Self {
        let have: HashSet<String> = current.iter().map(|d| d.to_ascii_lowercase()).collect();
        let want: HashSet<String> = wanted.iter().map(|d| d.to_ascii_lowercase()).collect();
        let mut seen = HashSet::new();
        let add = wanted
            .iter()
            .filter(|d| !have.contains(&d.to_ascii_lowercase()))
            .filter(|d| seen.insert(d.to_ascii_lowercase()))
            .cloned()
            .collect();
        let remove = match policy {
            MembersPolicy::Additive => Vec::new(),
            MembersPolicy::Exact => current
                .iter()
                .filter(|d| !want.contains(&d.to_ascii_lowercase()))
                .cloned()
                .collect(),
        };
        Self { add, remove }
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Login names resolved to DNs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    /// Requested name -> DN.
    pub found: BTreeMap<String, String>,
    /// Names no account has.
    pub unknown: Vec<String>,
    /// Names several accounts have (generic LDAP: the same `uid` in two OUs).
    pub ambiguous: Vec<String>,
}

/// What a membership check found and what it would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipPlan {
    pub group_dn: String,
    /// Member DNs the group has now.
    pub current: Vec<String>,
    pub changes: MemberChanges,
    pub unknown: Vec<String>,
    pub ambiguous: Vec<String>,
}

/// What applying changes did, value by value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub added: usize,
    /// Adds answered "already a member" (a concurrent change): converged all the same.
    pub already_member: usize,
    pub removed: usize,
    /// Removals answered "not a member": converged all the same.
    pub not_member: usize,
}

impl Session {
    /// Every member DN of the group. On AD the values are read in explicit ranges
    /// (`member;range=0-1499`, then from one past the high end the server answered) until
    /// the server marks the last one (`member;range=N-*`): Windows caps a plain read at
    /// 1,500 values and Samba answers explicit ranges, so both are read the same way.
    /// Generic LDAP has no ranges: one plain read. Empty values (a `groupOfNames`
    /// placeholder) are skipped.
    pub async fn read_members(&mut self, group_dn: &str) -> Result<Vec<String>, DirectoryError> {
        const DURING: &str = "reading group members";
        let max = self.config.max_members;
        let ranged = self.kind() == DirectoryKind::ActiveDirectory;
        let mut members = Vec::new();
        let mut next_low = 0usize;
        let range = |low: usize| format!("member;range={low}-{}", low + RANGE_SIZE - 1);
        let mut request = if ranged {
            range(0)
        } else {
            "member".to_string()
        };
        loop {
            let entries = self
                .search(
                    DURING,
                    group_dn,
                    Scope::Base,
                    "(objectClass=*)",
                    &[request.as_str()],
                    false,
                )
                .await?;
            let Some(entry) = entries.first() else {
                return Err(
                    self.protocol(DURING, format!("the group `{group_dn}` was not returned"))
                );
            };
            let page = member_page(entry).map_err(|reason| self.protocol(DURING, reason))?;
            if let Some((low, _)) = page.range {
                if low != next_low {
                    return Err(self.protocol(
                        DURING,
                        format!("range retrieval went from {next_low} to {low}; refusing to loop"),
                    ));
                }
            }
            members.extend(page.values.into_iter().filter(|v| !v.is_empty()));
            if members.len() > max {
                return Err(
                    self.protocol(DURING, format!("more than {max} members in `{group_dn}`"))
                );
            }
            match page.range {
                Some((_, Some(high))) if high >= next_low => {
                    next_low = high + 1;
                    request = range(next_low);
                }
                Some((_, Some(_))) => {
                    return Err(
                        self.protocol(DURING, "a member range ended before it began".into())
                    );
                }
                _ => return Ok(members),
            }
        }
    }

    /// Resolves login names (`sAMAccountName` on AD, `uid` elsewhere) below the domain
    /// base, in batched searches.
    pub async fn resolve_accounts<S: AsRef<str>>(
        &mut self,
        names: &[S],
    ) -> Result<Accounts, DirectoryError> {
        let base = self.config.domain_base()?;
        let attr = self.kind().account_attribute();
        let mut accounts = Accounts::default();
        for chunk in names.chunks(ACCOUNTS_PER_SEARCH) {
            let alternatives: String = chunk
                .iter()
                .map(|n| format!("({attr}={})", ldap_escape(n.as_ref())))
                .collect();
            let filter = format!("(|{alternatives})");
            let entries = self
                .search(
                    "resolving member accounts",
                    &base,
                    Scope::Subtree,
                    &filter,
                    &[attr],
                    true,
                )
                .await?;
            for name in chunk {
                let name = name.as_ref();
                let hits: Vec<&Entry> = entries
                    .iter()
                    .filter(|e| e.text(attr).iter().any(|v| v.eq_ignore_ascii_case(name)))
                    .collect();
                match hits.as_slice() {
                    [] => accounts.unknown.push(name.to_string()),
                    [one] => {
                        accounts.found.insert(name.to_string(), one.dn.clone());
                    }
                    _ => accounts.ambiguous.push(name.to_string()),
                }
            }
        }
        Ok(accounts)
    }

    /// Reads the group, resolves the listed accounts and computes the changes, without
    /// changing anything (what `mode: monitor` reports).
    pub async fn plan_members<S: AsRef<str>>(
        &mut self,
        group_dn: &str,
        accounts: &[S],
        policy: MembersPolicy,
    ) -> Result<MembershipPlan, DirectoryError> {
        let resolved = self.resolve_accounts(accounts).await?;
        let current = self.read_members(group_dn).await?;
        let wanted: Vec<String> = resolved.found.values().cloned().collect();
        let mut changes = MemberChanges::plan(&current, &wanted, policy);
        // An account we could not resolve must not turn into the removal of its real
        // entry under exact: keep members unless every listed name resolved.
        if !resolved.unknown.is_empty() || !resolved.ambiguous.is_empty() {
            changes.remove.clear();
        }
        Ok(MembershipPlan {
            group_dn: group_dn.to_string(),
            current,
            changes,
            unknown: resolved.unknown,
            ambiguous: resolved.ambiguous,
        })
    }

    /// Applies changes one value per modify, so one bad value names itself and a
    /// concurrent change by someone else cannot fail the rest. "Already a member" and
    /// "not a member" answers count as converged.
    pub async fn apply_members(
        &mut self,
        group_dn: &str,
        changes: &MemberChanges,
    ) -> Result<Applied, DirectoryError> {
        let kind = self.kind();
        let mut applied = Applied::default();
        for member in &changes.add {
            let code = self.modify_member(group_dn, member, true).await?;
            if code == 0 {
                applied.added += 1;
            } else if kind.already_member(code) {
                applied.already_member += 1;
            }
        }
        for member in &changes.remove {
            let code = self.modify_member(group_dn, member, false).await?;
            if code == 0 {
                applied.removed += 1;
            } else if kind.not_member(code) {
                applied.not_member += 1;
            }
        }
        Ok(applied)
    }

    /// One `member` value added or deleted; returns the result code when it is success or
    /// a "converged" answer, the error otherwise.
    async fn modify_member(
        &mut self,
        group_dn: &str,
        member: &str,
        add: bool,
    ) -> Result<u32, DirectoryError> {
        let during = if add {
            "adding a member"
        } else {
            "removing a member"
        };
        let dn = group_dn.to_string();
        let value: HashSet<String> = [member.to_string()].into();
        let change = if add {
            Mod::Add("member".to_string(), value)
        } else {
            Mod::Delete("member".to_string(), value)
        };
        let result = self
            .single(during, move |ldap| {
                async move { ldap.modify(&dn, vec![change]).await }.boxed()
            })
            .await?;
        let kind = self.kind();
        let converged = if add {
            kind.already_member(result.rc)
        } else {
            kind.not_member(result.rc)
        };
        if result.rc == 0 || converged {
            return Ok(result.rc);
        }
        let mut error = self.rejected(during, &result);
        if let DirectoryError::Rejected { reason, .. } = &mut error {
            *reason = format!("{reason} (member `{member}` of `{group_dn}`)");
        }
        Err(error)
    }
}

/// One read of `member`: its values and, for a ranged answer, `(low, high)` with `None`
/// for the final `*`.
struct MemberPage {
    values: Vec<String>,
    range: Option<(usize, Option<usize>)>,
}

fn member_page(entry: &Entry) -> Result<MemberPage, String> {
    let ranged: Vec<&str> = entry
        .attribute_names()
        .filter(|n| n.starts_with("member;range="))
        .collect();
    match ranged.as_slice() {
        [] => Ok(MemberPage {
            values: entry
                .text("member")
                .into_iter()
                .map(str::to_string)
                .collect(),
            range: None,
        }),
        [name] => {
            let spec = &name["member;range=".len()..];
            let (low, high) = spec
                .split_once('-')
                .ok_or_else(|| format!("unreadable range `{name}`"))?;
            let low = low
                .parse()
                .map_err(|_| format!("unreadable range `{name}`"))?;
            let high = match high {
                "*" => None,
                n => Some(
                    n.parse()
                        .map_err(|_| format!("unreadable range `{name}`"))?,
                ),
            };
            Ok(MemberPage {
                values: entry.text(name).into_iter().map(str::to_string).collect(),
                range: Some((low, high)),
            })
        }
        _ => Err(format!(
            "several member ranges in one answer: {}",
            ranged.join(", ")
        )),
    }
}

/// A deterministic view for tests and reports.
pub fn sorted(dns: &[String]) -> BTreeSet<String> {
    dns.iter().map(|d| d.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn additive_adds_the_missing_and_never_removes() {
        let c = MemberChanges::plan(
            &dns(&["CN=a", "CN=x"]),
            &dns(&["cn=A", "CN=b", "CN=b"]),
            MembersPolicy::Additive,
        );
        assert_eq!(
            c,
            MemberChanges {
                add: dns(&["CN=b"]),
                remove: vec![]
            }
        );
    }

    #[test]
    fn exact_also_removes_the_unlisted() {
        let c = MemberChanges::plan(
            &dns(&["CN=a", "CN=x"]),
            &dns(&["CN=a", "CN=b"]),
            MembersPolicy::Exact,
        );
        assert_eq!(
            c,
            MemberChanges {
                add: dns(&["CN=b"]),
                remove: dns(&["CN=x"])
            }
        );
        assert!(
            MemberChanges::plan(&dns(&["CN=a"]), &dns(&["cn=a"]), MembersPolicy::Exact).is_empty()
        );
    }

    #[test]
    fn ranged_and_plain_member_answers_are_read() {
        let plain = Entry::for_test("CN=g", &[("member", &["CN=a", ""])]);
        let page = member_page(&plain).unwrap();
        assert_eq!((page.values.len(), page.range), (2, None));
        let first = Entry::for_test("CN=g", &[("member;range=0-1499", &["CN=a"])]);
        assert_eq!(member_page(&first).unwrap().range, Some((0, Some(1499))));
        let last = Entry::for_test("CN=g", &[("member;range=1500-*", &["CN=b"])]);
        assert_eq!(member_page(&last).unwrap().range, Some((1500, None)));
        let bad = Entry::for_test("CN=g", &[("member;range=x-1", &["CN=b"])]);
        assert!(member_page(&bad).is_err());
    }
}
