use std::collections::BTreeMap;
use std::path::Path;

use super::installation::CONSOLE_MAX_LEN;
use super::Report;
use crate::load::Sourced;
use crate::resource::{ActiveDirectorySpec, Document};
use crate::snapshot::{ActiveDirectory, Role};
use crate::syntax::{check_fqdn, parse_host_url};
use crate::Located;

pub(super) fn compile(
    file: &Path,
    doc: &Document<ActiveDirectorySpec>,
    report: &mut Report,
) -> Option<ActiveDirectory> {
    let spec = &doc.spec;
    let len = spec.display_name.chars().count();
    if len > CONSOLE_MAX_LEN {
        report.error(
            file,
            spec.display_name.pos,
            "too-long",
            format!("displayName is {len} characters; at most {CONSOLE_MAX_LEN} are allowed"),
        );
    }
    if let Err(e) = check_fqdn(&spec.domain) {
        report.error(
            file,
            spec.domain.pos,
            "invalid-fqdn",
            format!("domain `{}` {e}", spec.domain.value),
        );
    }
    let server = match parse_host_url(&spec.server, &["ldap", "ldaps"], "ldap:// or ldaps://") {
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
                "invalid-url",
                format!("server `{}` {e}", spec.server.value),
            );
            None
        }
    };
    if spec.account.trim().is_empty() {
        report.error(
            file,
            spec.account.pos,
            "empty-value",
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
            if group.trim().is_empty() {
                report.error(
                    file,
                    group.pos,
                    "empty-value",
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
                    "group-in-two-roles",
                    format!(
                        "group `{}` already holds the {} role; a group may hold only one role",
                        group.value,
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
                if !group_role.contains_key(&group.to_lowercase()) {
                    let pos = users
                        .first()
                        .map_or(spec.display_name.pos, |u: &Located<String>| u.pos);
                    report.warning(
                        file,
                        pos,
                        "unmapped-group-members",
                        format!("members are listed for `{group}`, which holds no role in `roles`"),
                    );
                }
                (
                    group.clone(),
                    users.iter().map(|u| u.value.clone()).collect(),
                )
            })
            .collect()
    });
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
    })
}

/// Two directories managing the same domain would fight over its groups.
pub(super) fn check_across(documents: &[Sourced], report: &mut Report) {
    let mut domains: BTreeMap<String, &str> = BTreeMap::new();
    for doc in documents {
        if let crate::resource::Resource::ActiveDirectory(d) = &doc.resource {
            let key = d.spec.domain.to_lowercase();
            if let Some(other) = domains.get(&key) {
                report.error(
                    &doc.file,
                    d.spec.domain.pos,
                    "duplicate-domain",
                    format!(
                        "domain `{}` is already managed by ActiveDirectory `{other}`",
                        d.spec.domain.value
                    ),
                );
            } else {
                domains.insert(key, &d.metadata.name);
            }
        }
    }
}
