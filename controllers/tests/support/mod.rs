//! What the controllers' integration tests share: in-process agents over mutual TLS, the
//! controllers' settings for them, and (for the `harness = false` tests) a `main` that is
//! also the lab service those agents start.
#![allow(dead_code)] // each test binary uses a part

pub mod agents;
pub mod harness;
pub mod hl7_lab;
pub mod iridium;
