//! Steward's one HTTPS client stack, used by the daemon's agent client and by the health
//! prober: rustls under hyper's HTTP/1.1 client connection, with
//!
//! * the TLS configuration from steward-pki (trusted roots; a client certificate for the
//!   agents' mutual TLS), the request's host as SNI and certificate name, HTTP/1.1 in ALPN;
//! * kept-alive connections pooled per (address, TLS name), bounded per key, in all, in
//!   idle time and in age (`pool.rs`), so a renewed certificate is seen within `max_age`;
//! * TLS sessions kept per (address, TLS name) to resume when a connection is dialled
//!   again (`sessions.rs`), each key doing a full handshake at least every `max_age`;
//! * the served leaf certificate's notAfter recorded per connection and reported with
//!   every exchange, and whether a kept-alive connection carried it;
//! * one deadline per request covering resolution, connect, handshake, response and body;
//! * failures by phase, TLS failures by class, and a socket this process cannot open
//!   (out of descriptors, memory or ports) told apart from a peer's failure (`error.rs`).
//!
//! It is not hyper-util's pooled `Client`: that pool is keyed by the URI's authority, so
//! it cannot dial an address other than the name it checks (the lab's services, a probe's
//! `connect_ip`), bound a connection's age, or say which phase ran out of time or whether
//! a connection was reused.

mod client;
mod error;
mod pool;
mod sessions;

pub use client::{resolve, Exchange, HttpsClient, Response};
pub use error::{local_exhaustion, HttpsError, Phase, TlsFailure};
pub use pool::PoolLimits;
