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
    /// How `members` relates to the members a group already has; default `additive`.
    #[serde(default)]
    pub members_policy: Option<Located<MembersPolicy>>,
    /// Create role groups the directory lacks (global security groups below `container`);
    /// default false: the vendor requires them to exist, so a missing one is reported.
    #[serde(default)]
    pub create_missing_groups: Option<Located<bool>>,
    /// More CAs (PEM files) trusted for the directory's TLS certificate, besides the
    /// system roots; relative paths resolve against the desired-state directory.
    #[serde(default)]
    pub trust: Vec<Located<String>>,
}

/// How listed members relate to a group's other members.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum MembersPolicy {
    /// Add the listed accounts; never remove anyone.
    #[default]
    Additive,
    /// Also remove members that are not listed.
    Exact,
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
