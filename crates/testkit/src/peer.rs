//! Misbehaving peers: a loopback listener whose every connection a test script serves.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};

/// A listener on `127.0.0.1` (a free port) handing every connection to `serve`, each on
/// a task of its own, until the test's runtime ends; its port.
pub async fn serve_each<F, Fut>(serve: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    port
}
