//! LDAP client for the ActiveDirectory controller: TLS-only binds with bounded timeouts,
//! role groups looked up and created, membership read with range retrieval and changed
//! value by value. Works against Active Directory (Windows or Samba) and, for the generic
//! paths, any RFC 4519 directory such as OpenLDAP.
//!
//! Every failure is a [`DirectoryError`] whose [`label`](DirectoryError::label) is one of a
//! fixed set of condition names; no error, `Debug` output or log line holds the password.

mod config;
mod entry;
mod error;
mod groups;
mod kind;
mod members;
mod session;
mod starttls;
mod tls;

pub use config::{DirectoryConfig, Endpoint, Password, Transport};
pub use entry::Entry;
pub use error::DirectoryError;
pub use groups::{Created, Group, GroupReport, Lookup, SharedGroup, GLOBAL_SECURITY_GROUP};
pub use kind::DirectoryKind;
pub use members::{sorted, Accounts, Applied, MemberChanges, MembersPolicy, MembershipPlan};
pub use session::Session;
