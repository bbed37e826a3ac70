//! One pass over a bound directory: look every role group up, create the missing ones when
//! allowed, and bring managed membership to the declared policy. What it found and did is
//! an [`Outcome`]; turning that into conditions and events is the controller's job.

use std::collections::BTreeMap;

use steward_directory::{
    Created, DirectoryError, Lookup, MemberChanges, MembersPolicy as Policy, Session,
};
use steward_model::resource::MembersPolicy;
use steward_model::snapshot::ActiveDirectory;

use crate::status::GroupStatus;

/// What one pass found, and what it changed.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Every role group, in role order.
    pub groups: Vec<GroupStatus>,
    /// Role groups that do not exist (after any creation).
    pub missing: Vec<String>,
    /// Names that match several groups.
    pub ambiguous: Vec<String>,
    /// One directory object reached under several declared names.
    pub shared: Vec<Vec<String>>,
    /// Listed members no account has (or several have), by group.
    pub unknown_members: BTreeMap<String, Vec<String>>,
    /// Groups created in this pass.
    pub created: Vec<String>,
    /// Membership changed in this pass (autoCorrect), by group.
    pub changed: BTreeMap<String, Changed>,
    /// Membership that differs and was left alone (monitor), by group.
    pub pending: BTreeMap<String, Changed>,
}

/// Accounts added to and removed from one group (as DNs, which name no secret).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Changed {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl From<&MemberChanges> for Changed {
    fn from(changes: &MemberChanges) -> Self {
        Self {
            added: changes.add.clone(),
            removed: changes.remove.clone(),
        }
    }
}

/// Check (and, unless `monitor`, repair) `directory` over `session`.
pub(super) async fn run(
    session: &mut Session,
    directory: &ActiveDirectory,
    monitor: bool,
) -> Result<Outcome, DirectoryError> {
    let mut outcome = Outcome::default();
    let role_groups: Vec<(&str, &String)> = directory
        .roles
        .iter()
        .flat_map(|(role, groups)| groups.iter().map(move |g| (role.as_str(), g)))
        .collect();
    let managed: BTreeMap<String, &Vec<String>> = directory
        .members
        .iter()
        .flatten()
        .map(|(group, members)| (group.to_lowercase(), members))
        .collect();
    // Groups listed under `members` only (a warning in validation) are managed too.
    let mut names: Vec<&str> = role_groups.iter().map(|(_, g)| g.as_str()).collect();
    for group in directory.members.iter().flat_map(|m| m.keys()) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(group)) {
            names.push(group);
        }
    }
    let report = session.find_groups(&names).await?;
    outcome.shared = report.shared().into_iter().map(|s| s.names).collect();

    // Group name (lower case) -> its DN, once it exists.
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let mut absent: Vec<&str> = Vec::new();
    for name in &names {
        match report.get(name) {
            Some(Lookup::Present(group)) => {
                found.insert(name.to_lowercase(), group.dn.clone());
            }
            Some(Lookup::Ambiguous(_)) => outcome.ambiguous.push((*name).to_owned()),
            Some(Lookup::Missing) | None => absent.push(name),
        }
    }
    if directory.create_missing_groups && !monitor {
        // All in one pipelined call: a directory that syncs each add to disk would
        // otherwise make a thousand missing groups take a minute.
        let created = session.create_groups(&absent).await?;
        for (name, created) in absent.iter().zip(created) {
            let dn = match created {
                Created::Created { dn } => {
                    outcome.created.push((*name).to_owned());
                    dn
                }
                // Created by someone else since the lookup: there all the same.
                Created::AlreadyExists { dn } => dn,
            };
            found.insert(name.to_lowercase(), dn);
        }
    } else {
        outcome.missing = absent.iter().map(|n| (*n).to_owned()).collect();
    }

    let policy = match directory.members_policy {
        MembersPolicy::Additive => Policy::Additive,
        MembersPolicy::Exact => Policy::Exact,
    };
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for (group, members) in directory.members.iter().flatten() {
        let Some(dn) = found.get(&group.to_lowercase()) else {
            continue;
        };
        let plan = session.plan_members(dn, members, policy).await?;
        let unknown: Vec<String> = plan
            .unknown
            .iter()
            .chain(&plan.ambiguous)
            .cloned()
            .collect();
        if !unknown.is_empty() {
            outcome.unknown_members.insert(group.clone(), unknown);
        }
        let mut count = plan.current.len();
        if !plan.changes.is_empty() {
            if monitor {
                outcome
                    .pending
                    .insert(group.clone(), Changed::from(&plan.changes));
            } else {
                session.apply_members(dn, &plan.changes).await?;
                count = count + plan.changes.add.len() - plan.changes.remove.len().min(count);
                outcome
                    .changed
                    .insert(group.clone(), Changed::from(&plan.changes));
            }
        }
        counts.insert(
            group.to_lowercase(),
            u32::try_from(count).unwrap_or(u32::MAX),
        );
    }

    outcome.groups = role_groups
        .iter()
        .map(|(role, group)| {
            let key = group.to_lowercase();
            let present = if outcome.ambiguous.contains(group) {
                // It exists, more than once: present, and reported as ambiguous.
                true
            } else {
                found.contains_key(&key)
            };
            GroupStatus {
                role: (*role).to_owned(),
                group: (*group).clone(),
                present: Some(present),
                members: managed.get(&key).and_then(|_| counts.get(&key).copied()),
            }
        })
        .collect();
    Ok(outcome)
}
