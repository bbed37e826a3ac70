//! LDAP client for the ActiveDirectory controller: TLS-only binds with bounded timeouts,
//! role groups looked up and created, membership read with range retrieval and changed
//! value by value. Works against Active Directory (Windows or Samba) and, for the generic
//! paths, any RFC 4519 directory such as OpenLDAP.
//!
//! A controller pass: [`Session::connect`] (TCP, StartTLS or LDAPS, bind, dialect from the
//! root DSE), [`Session::find_groups`] for every role group (then
//! [`GroupReport::missing`] and [`GroupReport::shared`] for "one group in two roles"),
//! [`Session::create_group`] for missing ones when allowed, and for managed membership
//! [`Session::plan_members`] (all that `mode: monitor` needs) then
//! [`Session::apply_members`].
//!
//! Generic LDAP differs from AD in the schema, not the flow: groups are `groupOfNames`
//! matched by `cn` only (AD: `group` by `sAMAccountName`, then `cn`); identity is
//! `entryUUID` (AD: `objectGUID`); accounts are found by `uid` (AD: `sAMAccountName`); a
//! created group carries one empty `member` value because `groupOfNames` requires a member
//! (AD: `groupType` and `sAMAccountName` instead); "already a member" is result 20 and "not
//! a member" 16 (AD: 68 and 53); no server-side value ranges (AD: 1,500 per read).
//!
//! Every failure is a [`DirectoryError`] whose [`label`](DirectoryError::label) is one of a
//! fixed set of condition names; no error, `Debug` output or log line holds the password.

mod config;
mod connect;
mod entry;
mod error;
mod groups;
mod kind;
mod members;
mod session;
mod starttls;
mod tls;

#[cfg(feature = "test-support")]
pub mod test_support;

pub use config::{DirectoryConfig, Endpoint, Password, Transport};
pub use entry::Entry;
pub use error::DirectoryError;
pub use groups::{Created, Group, GroupReport, Lookup, SharedGroup, GLOBAL_SECURITY_GROUP};
pub use kind::DirectoryKind;
pub use members::{sorted, Accounts, Applied, MemberChanges, MembersPolicy, MembershipPlan};
pub use session::Session;
