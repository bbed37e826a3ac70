use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{Located, SecretRef};

/// `kind: ActiveDirectory`: a directory whose groups map to PatientSecure roles.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActiveDirectorySpec {
    /// Shown in the console; at most 50 characters.
    pub display_name: Located<String>,
    /// DNS domain, e.g. corp.example.eng.
    pub domain: Located<String>,
    /// `ldap://host:389` or `ldaps://host:636`.
    pub server: Located<String>,
    /// Optional search base (a distinguished name).
    #[serde(default)]
    pub container: Option<Located<String>>,
    /// The bind account's distinguished name.
    pub account: Located<String>,
    /// `env:NAME` or `file:PATH`.
    pub password_ref: Located<SecretRef>,
    /// AD groups per role; a group may hold only one role.
    pub roles: RoleGroups,
    /// Optional: when set, steward manages these groups' membership.
    #[serde(default)]
    pub members: Option<BTreeMap<String, Vec<Located<String>>>>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoleGroups {
    #[serde(default)]
    pub owners: Vec<Located<String>>,
    #[serde(default)]
    pub administrators: Vec<Located<String>>,
    #[serde(default)]
    pub users: Vec<Located<String>>,
}
