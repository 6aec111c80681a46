//! Server side connection plumbing: an accept loop and, per connection, a reader task that
//! decodes frames into the node's inbox and a writer task that drains encoded frames.
//!
//! Malformed or oversized frames close only the offending connection.
//!
//! # Panics
//! The binaries abort the whole process on any panic ([`crate::abort_on_panic`]), so a
//! supervisor restarts it; see the drivers' crate docs for why. Where no such hook is installed
//! (tests, embedding), this module still never leaves a node that holds its port without
//! serving: [`AcceptGuard`] stops accepting (closing the listener) when the node loop that owns
//! it ends or unwinds, and a reader task that panics reports its connection closed.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use rmq_proto::frame::{encode_frame, FrameDecoder};
use rmq_proto::RemotingCommand;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::{spawn, Listener};

pub use rmq_proto::ConnId;

/// Outbound frames queued per connection before the connection is considered stuck.
pub const CONN_OUTBOX_MAX: usize = 16_384;

/// What the connection tasks report to the node loop.
#[derive(Debug)]
pub enum ServerEvent {
    /// A connection was accepted; `outbox` takes encoded frames for it.
    Accepted {
        /// The connection.
        conn: ConnId,
        /// Peer address.
        peer: SocketAddr,
        /// Encoded frames to write.
        outbox: mpsc::Sender<Bytes>,
    },
    /// A whole frame arrived.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The decoded command.
        cmd: RemotingCommand,
    },
    /// The connection ended (peer closed, I/O error, or a malformed frame).
    Closed {
        /// The connection.
        conn: ConnId,
    },
}

/// Accepts connections forever, feeding `inbox`. Ends when the inbox is dropped.
pub async fn accept_loop<L: Listener>(mut listener: L, inbox: mpsc::Sender<ServerEvent>, max_frame_bytes: usize) {
    let mut next = 1u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let conn = ConnId(next);
        next += 1;
        let (tx, rx) = mpsc::channel(CONN_OUTBOX_MAX);
        if inbox.send(ServerEvent::Accepted { conn, peer, outbox: tx }).await.is_err() {
            return;
        }
        let (rd, wr) = tokio::io::split(stream);
        spawn(write_loop(wr, rx));
        spawn(read_loop(rd, conn, inbox.clone(), max_frame_bytes));
    }
}

/// Reads frames from `rd` into `inbox` until EOF or a malformed frame.
pub async fn read_loop<R: tokio::io::AsyncRead + Unpin>(
    rd: R,
    conn: ConnId,
    inbox: mpsc::Sender<ServerEvent>,
    max_frame_bytes: usize,
) {
    let mut closed = ClosedOnDrop { conn, inbox: Some(inbox.clone()) };
    let ended = read_frames(rd, max_frame_bytes, |cmd| {
        let inbox = inbox.clone();
        async move { inbox.send(ServerEvent::Frame { conn, cmd }).await.is_ok() }
    })
    .await;
    if let Some(e) = ended {
        tracing::warn!(conn = conn.0, error = %e, "malformed frame; closing connection");
    }
    if let Some(inbox) = closed.inbox.take() {
        let _ = inbox.send(ServerEvent::Closed { conn }).await;
    }
}

/// Reports a reader's connection closed if the reader unwinds before it could say so.
struct ClosedOnDrop {
    /// The connection the reader served.
    conn: ConnId,
    /// Taken by the normal end of the reader, which reports with backpressure.
    inbox: Option<mpsc::Sender<ServerEvent>>,
}

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            if std::thread::panicking() {
                tracing::error!(conn = self.conn.0, "connection reader panicked; closing the connection");
            }
            // Best effort: a full inbox drops the report and the node expires the peer instead.
            let _ = inbox.try_send(ServerEvent::Closed { conn: self.conn });
        }
    }
}

/// The accept task of a node, owned by the node loop. Dropping it (the node loop returned,
/// was cancelled, or is unwinding from a panic) stops accepting, which closes the listener:
/// a node that no longer serves never keeps its port.
#[derive(Debug)]
pub struct AcceptGuard {
    /// The task running [`accept_loop`].
    task: tokio::task::JoinHandle<()>,
}

impl AcceptGuard {
    /// Takes ownership of a spawned [`accept_loop`] task.
    pub fn new(task: tokio::task::JoinHandle<()>) -> Self {
        AcceptGuard { task }
    }

    /// Completes if the accept task ends on its own (it only does so by panicking while the
    /// node still runs); the node loop should then stop too. Do not poll again after it
    /// completed.
    pub async fn ended(&mut self) {
        if let Err(e) = (&mut self.task).await {
            if e.is_panic() {
                tracing::error!("accept loop panicked; the node stops");
            }
        }
    }
}

impl Drop for AcceptGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("node loop panicked; closing its listener");
        }
        self.task.abort();
    }
}

/// Decodes frames from `rd` and hands each to `on_frame` until EOF, an I/O error, a malformed
/// frame (returned) or `on_frame` answering false.
pub async fn read_frames<R, F, Fut>(mut rd: R, max_frame_bytes: usize, mut on_frame: F) -> Option<rmq_proto::FrameError>
where
    R: tokio::io::AsyncRead + Unpin,
    F: FnMut(RemotingCommand) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut dec = FrameDecoder { max_frame_bytes };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(cmd)) => {
                    if !on_frame(cmd).await {
                        return None;
                    }
                }
                Ok(None) => break,
                Err(e) => return Some(e),
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Writes queued frames to `wr`, batching whatever is queued into one write.
pub async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Bytes>) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if wr.write_all(&batch).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        batch.clear();
    }
    let _ = wr.shutdown().await;
}

/// Encodes `cmd` for an outbox; an unencodable command becomes a SYSTEM_ERROR response.
pub fn encode(cmd: &RemotingCommand) -> Bytes {
    let ext_bytes: usize = cmd.ext_fields.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
    let mut out = BytesMut::with_capacity(64 + ext_bytes + cmd.remark.as_ref().map_or(0, String::len) + cmd.body.len());
    if let Err(e) = encode_frame(cmd, &mut out) {
        out.clear();
        let mut err = cmd.clone();
        err.code = rmq_proto::ResponseCode::SystemError.code();
        err.body = Bytes::new();
        err.ext_fields.clear();
        err.remark = Some(format!("response could not be encoded: {e}"));
        encode_frame(&err, &mut out).expect("a bare error response always encodes");
    }
    out.freeze()
}
