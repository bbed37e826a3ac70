use std::collections::BTreeMap;
use std::path::Path;

use super::{max_len, normalize_host, Report};
use crate::diagnostic::{quote, Code};
use crate::load::Sourced;
use crate::resource::{ActiveDirectorySpec, Document, MembersPolicy};
use crate::snapshot::{ActiveDirectory, Role};
use crate::syntax::{check_fqdn, parse_host_url};
use crate::Located;

pub(super) fn compile(
    file: &Path,
    doc: &Document<ActiveDirectorySpec>,
    report: &mut Report,
) -> Option<ActiveDirectory> {
    let spec = &doc.spec;
    report.within_length(file, "displayName", &spec.display_name, max_len::CONSOLE);
    if report.within_length(file, "domain", &spec.domain, max_len::FQDN) {
        if let Err(e) = check_fqdn(&spec.domain) {
            report.error(
                file,
                spec.domain.pos,
                Code::InvalidFqdn,
                format!("domain {} {e}", quote(&spec.domain)),
            );
        }
    }
    report.secret_ref_within_length(file, "passwordRef", &spec.password_ref);
    if let Some(container) = &spec.container {
        report.within_length(file, "container", container, max_len::DN);
    }
    let server = if !report.within_length(file, "server", &spec.server, max_len::URL) {
        None
    } else {
        match parse_host_url(&spec.server, &["ldap", "ldaps"], "ldap:// or ldaps://") {
            Ok(u) => {
                let port = u
                    .port
                    .unwrap_or(if u.scheme == "ldaps" { 636 } else { 389 });
                Some(format!("{}://{}:{port}", u.scheme, u.host))
            }
            Err(e) => {
                report.error(
                    file,
                    spec.server.pos,
                    Code::InvalidUrl,
                    format!("server {} {e}", quote(&spec.server)),
                );
                None
            }
        }
    };
    if report.within_length(file, "account", &spec.account, max_len::DN)
        && spec.account.trim().is_empty()
    {
        report.error(
            file,
            spec.account.pos,
            Code::EmptyValue,
            "account must not be empty",
        );
    }

    let mut roles: BTreeMap<Role, Vec<String>> = BTreeMap::new();
    let mut group_role: BTreeMap<String, Role> = BTreeMap::new();
    let declared = [
        (Role::Owners, &spec.roles.owners),
        (Role::Administrators, &spec.roles.administrators),
        (Role::Users, &spec.roles.users),
    ];
    for (role, groups) in declared {
        for group in groups {
            if !report.within_length(file, "group name", group, max_len::ACCOUNT) {
                continue;
            }
            if group.trim().is_empty() {
                report.error(
                    file,
                    group.pos,
                    Code::EmptyValue,
                    "group name must not be empty",
                );
                continue;
            }
            // AD compares group names case-insensitively.
            let key = group.to_lowercase();
            if let Some(other) = group_role.get(&key) {
                report.error(
                    file,
                    group.pos,
                    Code::GroupInTwoRoles,
                    format!(
                        "group {} already holds the {} role; a group may hold only one role",
                        quote(group),
                        other.as_str()
                    ),
                );
                continue;
            }
            group_role.insert(key, role);
            roles.entry(role).or_default().push(group.value.clone());
        }
    }
    let members = spec.members.as_ref().map(|m| {
        m.iter()
            .map(|(group, users)| {
                for user in users {
                    report.within_length(file, "member", user, max_len::ACCOUNT);
                }
                if !group_role.contains_key(&group.to_lowercase()) {
                    let pos = users
                        .first()
                        .map_or(spec.display_name.pos, |u: &Located<String>| u.pos);
                    report.warning(
                        file,
                        pos,
                        Code::UnmappedGroupMembers,
                        format!(
                            "members are listed for {}, which holds no role in `roles`",
                            quote(group)
                        ),
                    );
                }
                (
                    group.clone(),
                    users.iter().map(|u| u.value.clone()).collect(),
                )
            })
            .collect()
    });
    for path in &spec.trust {
        if report.within_length(file, "trust", path, max_len::PATH) && path.trim().is_empty() {
            report.error(
                file,
                path.pos,
                Code::EmptyValue,
                "trust file must not be empty",
            );
        }
    }
    let members_policy = spec
        .members_policy
        .as_ref()
        .map(|p| p.value)
        .unwrap_or_default();
    if let (Some(policy), None) = (&spec.members_policy, &spec.members) {
        if policy.value == MembersPolicy::Exact {
            // Without `members` no membership is managed, so `exact` does nothing: most
            // likely the list was forgotten, and nobody should believe it is enforced.
            report.warning(
                file,
                policy.pos,
                Code::MembersPolicyWithoutMembers,
                "membersPolicy `exact` has no effect without `members`; list each managed group's members",
            );
        }
    }
    Some(ActiveDirectory {
        name: doc.metadata.name.value.clone(),
        display_name: spec.display_name.value.clone(),
        domain: spec.domain.value.clone(),
        server: server?,
        container: spec.container.as_ref().map(|c| c.value.clone()),
        account: spec.account.value.clone(),
        password_ref: spec.password_ref.value.clone(),
        roles,
        members,
        members_policy,
        create_missing_groups: spec.create_missing_groups.as_ref().is_some_and(|c| c.value),
        trust: spec
            .trust
            .iter()
            .map(|t| std::path::PathBuf::from(&t.value))
            .collect(),
    })
}

/// Two directories managing the same domain would fight over its groups.
pub(super) fn check_across(documents: &[Sourced], report: &mut Report) {
    let mut domains: BTreeMap<String, &str> = BTreeMap::new();
    for doc in documents {
        if let crate::resource::Resource::ActiveDirectory(d) = &doc.resource {
            let key = normalize_host(&d.spec.domain);
            if let Some(other) = domains.get(&key) {
                report.error(
                    &doc.file,
                    d.spec.domain.pos,
                    Code::DuplicateDomain,
                    format!(
                        "domain {} is already managed by ActiveDirectory {}",
                        quote(&d.spec.domain),
                        quote(other)
                    ),
                );
            } else {
                domains.insert(key, &d.metadata.name);
            }
        }
    }
}
