//! The test kit: what every test of the workspace shares.
//!
//! - [`in_ci`], [`skip`], [`require_tool`]: one answer to "am I in CI?" and "my peer is
//!   missing: do I fail or skip?". In CI (`CI` set to anything but empty, `0`, `false` or
//!   `no`) a missing peer fails the test: a green run must mean every test ran. Elsewhere
//!   the test prints `SKIPPED: <reason>` and returns, and the skip is appended to the file
//!   named by `STEWARD_SKIPPED_LOG` (the test script sets it) so the closing summary can
//!   count skips that libtest, which captures a passing test's output, would otherwise hide.
//! - [`eventually`] / [`eventually_async`]: the one polling loop.
//! - [`http`] (feature `http`): the one HTTP client, on hyper.
//! - [`lab`] (feature `lab`): [`lab::LabDaemon`], one `steward run --lab` on its own
//!   loopback addresses.
//! - [`fixture`]: desired-state YAML built from a few calls instead of pasted copies.
//! - [`bundled_desired_state`], [`run`], [`text`]: the example deployment and the
//!   command-line program under test.
//! - [`etcd::EtcdCluster`]: a real etcd cluster (one or more members) on loopback.
//! - [`iridium::Iridium`]: a real TDS server (iridium_server) on loopback.
//! - [`serve_each`]: a misbehaving peer on loopback, scripted by the test;
//!   [`read_request_head`]: what such a peer reads before it answers.
//! - [`processes::command_lines`]: the machine's processes by command line.
//! - [`copy_dir`], [`rerun_unprivileged`]: files a test prepares, and tests about
//!   unreadable files that must not run as root.

mod ci;
mod command;
pub mod etcd;
mod eventually;
mod files;
pub mod fixture;
#[cfg(feature = "http")]
pub mod http;
pub mod iridium;
#[cfg(feature = "lab")]
pub mod lab;
mod peer;
pub mod processes;
mod unprivileged;

pub use ci::{find_tool, in_ci, require_tool, skip};
pub use command::{bundled_desired_state, run, text, workspace_root};
pub use eventually::{eventually, eventually_async, within, within_async, Settled};
pub use files::copy_dir;
pub use fixture::Fixture;
pub use peer::{read_request_head, serve_each};
pub use unprivileged::rerun_unprivileged;
