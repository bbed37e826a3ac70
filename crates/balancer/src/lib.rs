//! Load-balanced farms (`Installation.spec.loadBalancer`).
//!
//! [`Farms`] is derived from a validated snapshot; `render` turns it into each vendor's
//! configuration (HAProxy, IIS ARR, Citrix ADC NITRO, F5 AS3) and `haproxy` drives a live
//! HAProxy: write, `haproxy -c`, reload through the master socket, server-state file and
//! runtime API.

pub mod error;
pub mod farm;
pub mod haproxy;
pub mod render;

pub use error::BalancerError;
pub use farm::{Farm, Farms};
