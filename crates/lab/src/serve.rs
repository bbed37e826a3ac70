//! Accept loops and per-connection tasks shared by the HTTPS, redirect and MLLP listeners.
//!
//! Every connection is its own task, tracked so that shutdown can wait for in-flight work,
//! and every wait on a peer is bounded, so a misbehaving client costs one task and nothing
//! else.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bounds on how long a peer may keep a task waiting.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the TLS handshake to complete.
    pub handshake: Duration,
    /// For a request's headers (HTTP) or the next message (MLLP) once a connection is idle.
    pub idle: Duration,
    /// For in-flight requests to finish after shutdown begins.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            drain: Duration::from_secs(5),
        }
    }
}

/// Shutdown in two steps: `stop` asks connections to finish what they are doing, `abort`
/// ends whatever has not finished when the drain deadline passes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Drain {
    pub stop: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
}

impl Drain {
    /// Spawns a connection task that is abandoned on abort.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let abort = self.abort.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = task => {}
                () = abort.cancelled() => {}
            }
        });
    }

    /// Stops accepting, waits up to `deadline` for connections, then abandons the rest.
    pub async fn shutdown(&self, deadline: Duration) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.tracker.len(),
                "drain deadline passed; closing remaining connections"
            );
            self.abort.cancel();
            self.tracker.wait().await;
        }
    }
}

/// Accepts connections until `drain.stop`, handing each to `on_conn` in its own task.
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, drain: Drain, on_conn: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            () = drain.stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => drain.spawn(on_conn(stream, peer)),
                Err(err) => {
                    // Out of descriptors or an aborted connection: retrying at once
                    // would spin, and neither is a reason to stop serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves HTTP/1.1 on one established connection until the peer leaves, the idle timeout
/// passes, or shutdown lets the in-flight request finish.
///
/// HTTP/1.1 only: it is what health probes speak, and hyper's header-read timeout then
/// bounds every wait for a client, from the first request to the last idle keep-alive.
pub(crate) async fn serve_http<I, H, Fut>(
    io: I,
    timeouts: Timeouts,
    stop: CancellationToken,
    handler: H,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.idle);
    let service = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}
