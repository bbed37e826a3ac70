//! Bounded HTTP/1.1 serving of an axum [`Router`](axum::Router), over plain TCP (the
//! daemon's API) or TLS (the agent's mTLS API), for clients that may be hostile.
//!
//! A client holds a connection only while it makes progress: every phase has a deadline
//! (TLS handshake, request head, keep-alive idle, the exchange itself). The number of
//! connections is bounded by [`Limits::max_connections`], a fraction of the process's
//! open-file limit ([`Limits::connection_budget`]), so that no number of idle or slow
//! clients can take the file descriptors the rest of the process needs: a new connection
//! beyond the bound replaces a connection without a request in progress (one that never
//! completed a request before a kept-alive client's, longest-waiting first), or is closed
//! at once when every connection is in the middle of a request.
//! Request bodies are capped, handlers get a deadline (`503`), and handlers can extract
//! the peer's address with `axum::extract::ConnectInfo<SocketAddr>`.
//!
//! One crate for both servers because they face the same clients and must behave alike;
//! the daemon and the agent only choose the numbers.

mod admission;
mod connection;
mod limits;
mod request;
mod server;
mod watched;

pub use admission::ConnectionCounts;
pub use limits::{open_files_limit, Limits};
pub use server::{Connections, Server};

#[cfg(test)]
mod tests;
