//! Steward's desired-state model.
//!
//! Pipeline: [`load`] reads a directory into raw, located documents; [`validate`] compiles
//! them into a [`Snapshot`] or a list of located [`Diagnostic`]s; [`plan`] turns a snapshot
//! into ordered actions. The [`catalog`] is the single source of truth about services.

pub mod catalog;
pub mod located;
pub mod secret;
pub mod status_range;

pub use catalog::{HealthTest, InstallType, PortRule, ServiceKind, ServiceSpec};
pub use located::{Located, Pos};
pub use secret::{SecretRef, SecretValue};
pub use status_range::StatusRanges;
