//! Steward's desired-state model.
//!
//! Pipeline: [`load`] reads a directory into raw, located documents; [`validate`] compiles
//! them into a [`Snapshot`] or a list of located [`Diagnostic`]s; [`plan`] turns a snapshot
//! into ordered actions. The [`catalog`] is the single source of truth about services.

pub mod catalog;
pub mod diagnostic;
pub mod diff;
pub mod load;
pub mod located;
pub mod notifications;
pub mod plan;
pub mod ports;
pub mod resource;
pub mod schema;
pub mod secret;
pub mod snapshot;
pub mod status_range;
pub mod syntax;
pub mod upgrade;
pub mod validate;

pub use catalog::{HealthTest, InstallType, PortRule, ServiceKind, ServiceSpec};
pub use diagnostic::{Code, Diagnostic, Severity};
pub use located::{Located, Pos};
pub use secret::{SecretRef, SecretValue};
pub use snapshot::Snapshot;
pub use status_range::StatusRanges;
pub use validate::{validate_dir, Compiled};
