pub mod harness;
pub mod iridium;
