//! HL7's port: MLLP over plain TCP, answering every message with a real ACK.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use steward_hl7::{acknowledge, new_control_id, MllpCodec};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::serve::{accept_loop, Drain, Timeouts};

pub(crate) async fn serve(listener: TcpListener, timeouts: Timeouts, drain: Drain) {
    let stop = drain.stop.clone();
    accept_loop(listener, drain, move |stream, peer| {
        connection(stream, peer, timeouts, stop.clone())
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    timeouts: Timeouts,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, MllpCodec::default());
    loop {
        // Shutdown only interrupts the wait for a message, never a reply being written.
        let next = tokio::select! {
            () = stop.cancelled() => return,
            next = tokio::time::timeout(timeouts.idle, framed.next()) => next,
        };
        let frame = match next {
            Err(_) => {
                tracing::debug!(%peer, "MLLP connection idle too long; closing");
                return;
            }
            Ok(None) => return,
            Ok(Some(Err(err))) => {
                // Without a frame there is no message to acknowledge: drop the peer.
                tracing::debug!(%peer, error = %err, reason = err.metric_label(), "MLLP framing error");
                return;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let (code, ack) = acknowledge(&frame, &new_control_id());
        tracing::debug!(%peer, %code, "HL7 message acknowledged");
        let sent = tokio::time::timeout(timeouts.idle, framed.send(ack)).await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!(%peer, "could not deliver ACK; closing");
            return;
        }
    }
}
