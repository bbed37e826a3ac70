//! The accept loop: admits each connection into the table (shedding or refusing when it is
//! full), runs it in its own task, and on shutdown lets requests in progress finish within
//! the grace before cutting what is left.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use rustix::io::Errno;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, ConnectionCounts, Phase, Room};
use crate::connection::Connection;
use crate::limits::Limits;
use crate::request::Dispatch;

/// How often, at most, a failing accept is logged.
const ACCEPT_WARNING_EVERY: Duration = Duration::from_secs(10);

/// A bound listener with its limits, not serving yet.
pub struct Server {
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    admission: Arc<Admission>,
}

/// A view of a server's connection table that outlives `serve`'s borrow of the server.
#[derive(Clone)]
pub struct Connections(Arc<Admission>);

impl Connections {
    pub fn counts(&self) -> ConnectionCounts {
        self.0.counts()
    }
}

impl Server {
    /// `name` says which server a log line is about (`api`, `agent`).
    pub fn new(name: &'static str, listener: TcpListener, limits: Limits) -> Self {
        Self {
            name,
            listener,
            tls: None,
            admission: Admission::new(name, limits.max_connections),
            limits,
        }
    }

    /// Serve over TLS; the handshake is a phase with its own deadline.
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn connections(&self) -> Connections {
        Connections(Arc::clone(&self.admission))
    }

    /// Serve `router` until `shutdown` completes; then stop accepting, close idle
    /// connections, give requests in progress `shutdown_grace`, and cut the rest.
    pub async fn serve(self, router: Router, shutdown: impl Future<Output = ()>) {
        let tasks = TaskTracker::new();
        let draining = CancellationToken::new();
        let mut warned: Option<Instant> = None;
        let first = if self.tls.is_some() {
            Phase::Handshake
        } else {
            Phase::Head
        };
        let mut shutdown = std::pin::pin!(shutdown);
        'accepting: loop {
            let (tcp, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        self.accept_failed(&e, &mut warned).await;
                        continue;
                    }
                },
            };
            // Room is made only for a connection that is here, and only a few shed
            // connections may still be closing when it is admitted: the sockets held stay
            // bounded however fast connections come.
            loop {
                match self.admission.make_room() {
                    Room::Free => break,
                    Room::Freeing => tokio::select! {
                        biased;
                        () = &mut shutdown => break 'accepting,
                        () = self.admission.released() => {}
                    },
                    Room::Full => {
                        self.admission.refused();
                        refuse(&tcp, self.tls.is_none());
                        continue 'accepting;
                    }
                }
            }
            let Some(ticket) = self.admission.admit(first) else {
                refuse(&tcp, self.tls.is_none());
                continue;
            };
            let connection = Connection {
                ticket,
                dispatch: Dispatch {
                    router: router.clone(),
                    peer,
                    limits: self.limits,
                },
                draining: draining.clone(),
            };
            tasks.spawn(connection.run(tcp, self.tls.clone()));
        }
        drop(self.listener);
        draining.cancel();
        tasks.close();
        if tokio::time::timeout(self.limits.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                server = self.name,
                "requests in progress did not finish within the shutdown grace"
            );
            self.admission.stop_all();
            tasks.wait().await;
        }
    }

    /// A failed accept never ends the loop. Out of file descriptors, a connection without a
    /// request in progress is given up so the process gets one back.
    async fn accept_failed(&self, error: &io::Error, warned: &mut Option<Instant>) {
        let errno = Errno::from_io_error(error);
        if matches!(
            errno,
            Some(Errno::CONNABORTED | Errno::AGAIN | Errno::INTR | Errno::PROTO)
        ) {
            return; // the client gave up before we took it: nothing wrong here
        }
        let exhausted = matches!(
            errno,
            Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
        );
        let shed = exhausted && self.admission.shed_one();
        let now = Instant::now();
        if warned.is_none_or(|at| now.duration_since(at) >= ACCEPT_WARNING_EVERY) {
            *warned = Some(now);
            if exhausted {
                tracing::warn!(server = self.name, error = %error, shed, "cannot accept a connection: the process is out of file descriptors or memory");
            } else {
                tracing::warn!(server = self.name, error = %error, "cannot accept a connection");
            }
        }
        // Give a shed connection's descriptor time to be closed before trying again.
        let pause = if shed { 1 } else { 50 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Every held connection is in the middle of a request: tell a plain-HTTP client so in one
/// write that cannot block, and close.
fn refuse(tcp: &TcpStream, plain: bool) {
    static RESPONSE: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let body = r#"{"error":"too many connections"}"#;
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    if plain {
        let _ = tcp.try_write(&RESPONSE);
    }
}
