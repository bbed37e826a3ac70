//! One connection, in its own task: the TLS handshake if any, then HTTP/1.1 exchanges,
//! until the client leaves, a phase overruns its deadline, the connection is shed, or the
//! server shuts down.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::admission::{Phase, Slot, Ticket};
use crate::request::Dispatch;
use crate::watched::WatchedIo;

pub(crate) struct Connection {
    pub ticket: Ticket,
    pub dispatch: Dispatch,
    /// Cancelled when the server starts shutting down: idle connections close, requests in
    /// progress finish.
    pub draining: CancellationToken,
}

impl Connection {
    fn peer(&self) -> SocketAddr {
        self.dispatch.peer
    }

    pub(crate) async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>) {
        let _ = tcp.set_nodelay(true);
        let slot = Arc::clone(self.ticket.slot());
        let limits = self.dispatch.limits;
        let mut deadline = std::pin::pin!(overrun(&slot, &limits));
        let Some(acceptor) = tls else {
            return self
                .http(WatchedIo::new(tcp, Arc::clone(&slot)), deadline)
                .await;
        };
        let handshake = tokio::select! {
            () = slot.stop.cancelled() => return,
            () = self.draining.cancelled() => return,
            phase = &mut deadline => return self.timed_out(phase),
            handshake = acceptor.accept(tcp) => handshake,
        };
        match handshake {
            Ok(stream) => {
                slot.enter(Phase::Head);
                self.http(WatchedIo::new(stream, Arc::clone(&slot)), deadline)
                    .await;
            }
            Err(e) => tracing::debug!(peer = %self.peer(), error = %e, "TLS handshake failed"),
        }
    }

    async fn http<I>(
        self,
        io: WatchedIo<I>,
        mut deadline: std::pin::Pin<&mut impl std::future::Future<Output = Phase>>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let slot = Arc::clone(self.ticket.slot());
        let service = {
            let (dispatch, slot) = (self.dispatch.clone(), Arc::clone(&slot));
            hyper::service::service_fn(move |request| {
                slot.enter(Phase::Exchange);
                dispatch.clone().respond(request, Arc::clone(&slot))
            })
        };
        let mut builder = http1::Builder::new();
        builder
            // Our own deadlines cover every phase; hyper's would also run between requests.
            .header_read_timeout(None::<std::time::Duration>)
            .max_buf_size(self.dispatch.limits.max_head_bytes.max(8192))
            .keep_alive(true);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let mut connection = std::pin::pin!(connection);
        let mut draining = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(peer = %self.peer(), error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = slot.stop.cancelled() => return,
                phase = &mut deadline => return self.timed_out(phase),
                () = self.draining.cancelled(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }

    fn timed_out(&self, phase: Phase) {
        self.ticket.admission().timed_out(phase);
        tracing::debug!(peer = %self.peer(), reason = phase.timeout_label(), "connection closed");
    }
}

/// Resolves when the connection has stayed in one phase longer than that phase allows.
async fn overrun(slot: &Slot, limits: &crate::Limits) -> Phase {
    loop {
        let (phase, since) = slot.phase();
        tokio::select! {
            () = tokio::time::sleep_until(since + phase.allowance(limits)) => {}
            () = slot.changed() => continue,
        }
        if slot.phase() == (phase, since) {
            return phase;
        }
    }
}
