//! Server side connection plumbing: an accept loop and, per connection, a reader task that
//! decodes frames into the node's inbox and a writer task that drains encoded frames.
//!
//! # Bounded resources
//! What a peer can make a server hold is bounded by [`ServerLimits`]:
//! - **connections**: beyond `max_connections` a new connection is refused politely (its first
//!   request, if it arrives within a second, is answered SYSTEM_BUSY naming the limit; then the
//!   connection closes);
//! - **idle connections**: a connection that sends nothing for `idle_timeout_ms` is closed
//!   (RocketMQ's `serverChannelMaxIdleTimeSeconds`, 120 s by default); clients heartbeat every
//!   30 s, so only dead, half-open or abandoned connections reach it;
//! - **incomplete frames**: the bytes announced by frames still arriving, over all connections,
//!   stay within `incomplete_frames_max_bytes`; a frame that would exceed it closes its
//!   connection before anything is reserved for it (slow-loris and "announce 16 MiB, send
//!   nothing" peers);
//! - **unread responses**: each connection's queue of encoded, unwritten frames stays within
//!   `outbound_max_bytes`; a peer that does not read is closed, socket and all, and its node
//!   is told the connection ended.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rmq_proto::frame::{encode_frame_head, FrameDecoder};
use rmq_proto::{RemotingCommand, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::{spawn, Listener};

pub use rmq_proto::ConnId;

/// Outbound frames a client connection queues before `send` waits (client side backpressure).
pub const CONN_OUTBOX_MAX: usize = 16_384;

/// Read buffer an idle or quiet connection holds (10,000 idle connections cost 40 MiB).
const READ_BUF_MIN: usize = 4 * 1024;

/// Read buffer a busy connection (one whose last read filled the buffer) reads into.
const READ_BUF_BYTES: usize = 64 * 1024;

/// Connections being refused at once (each waits up to [`REFUSE_WAIT_MS`] for a request to
/// answer); beyond this, refused connections are closed without an answer.
const REFUSING_MAX: usize = 64;

/// How long a refused connection may take to send the request its refusal answers.
const REFUSE_WAIT_MS: u64 = 1_000;

/// What a server lets its peers make it hold. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Largest accepted frame, counting everything after the length prefix.
    pub max_frame_bytes: usize,
    /// Open connections; more are refused.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout_ms: u64,
    /// Bytes announced by incomplete frames, over all connections.
    pub incomplete_frames_max_bytes: usize,
    /// Encoded frames queued for one connection and not yet written.
    pub outbound_max_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_frame_bytes: rmq_proto::frame::FRAME_MAX_BYTES_DEFAULT,
            max_connections: 10_000,
            idle_timeout_ms: 120_000,
            incomplete_frames_max_bytes: 256 << 20,
            outbound_max_bytes: 64 << 20,
        }
    }
}

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
        outbox: Outbox,
    },
    /// A whole frame arrived.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The decoded command.
        cmd: RemotingCommand,
    },
    /// The connection ended (peer closed, I/O error, a malformed frame, idle, over a budget).
    Closed {
        /// The connection.
        conn: ConnId,
    },
}

/// Why a frame could not be queued for a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// The peer does not read: queuing the frame would exceed the budget, so the connection
    /// was closed.
    #[error("peer is not reading: {queued} bytes queued, {frame} more would exceed the {budget}-byte outbound budget; connection closed")]
    Overflow {
        /// Bytes already queued.
        queued: usize,
        /// Size of the refused frame.
        frame: usize,
        /// The budget.
        budget: usize,
    },
    /// The connection has ended.
    #[error("connection closed")]
    Closed,
}

/// The sending side of one server connection, bounded in bytes.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Frame>,
    shared: Arc<OutboxShared>,
}

#[derive(Debug)]
struct OutboxShared {
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
    /// The budget for `queued`.
    budget: usize,
    /// Set to true to end both connection tasks (closing the socket).
    kill: watch::Sender<bool>,
}

impl Outbox {
    /// An outbox with `budget` bytes, the receiver its writer drains, and the kill switch its
    /// reader and writer watch.
    fn new(budget: usize) -> (Outbox, mpsc::UnboundedReceiver<Frame>, watch::Receiver<bool>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (kill, killed) = watch::channel(false);
        (Outbox { tx, shared: Arc::new(OutboxShared { queued: AtomicUsize::new(0), budget, kill }) }, rx, killed)
    }

    /// Queues an encoded frame. A frame that would take the queue over budget closes the
    /// connection (unless the queue is empty: one frame always fits).
    pub fn send(&self, frame: Frame) -> Result<(), OutboxError> {
        let len = frame.len();
        let queued = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if queued > 0 && queued + len > self.shared.budget {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.close();
            return Err(OutboxError::Overflow { queued, frame: len, budget: self.shared.budget });
        }
        self.tx.send(frame).map_err(|_| {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            OutboxError::Closed
        })
    }

    /// Closes the connection: the reader and writer end, the socket closes, and the node gets
    /// [`ServerEvent::Closed`].
    pub fn close(&self) {
        let _ = self.shared.kill.send(true);
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

/// Incomplete-frame bytes held over all of a server's connections.
#[derive(Debug, Clone)]
pub struct FrameBudget {
    held: Arc<AtomicUsize>,
    max: usize,
}

impl FrameBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameBudget { held: Arc::default(), max }
    }

    /// Bytes currently held.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn try_take(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| h.checked_add(n).filter(|&t| t <= self.max))
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What a reader enforces.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    /// Largest accepted frame.
    pub max_frame_bytes: usize,
    /// Close after this long without a byte from the peer.
    pub idle_timeout_ms: Option<u64>,
    /// Shared incomplete-frame budget.
    pub budget: Option<FrameBudget>,
}

impl ReadLimits {
    /// Only a frame size limit (clients).
    pub fn frame_only(max_frame_bytes: usize) -> Self {
        ReadLimits { max_frame_bytes, idle_timeout_ms: None, budget: None }
    }
}

/// Why a reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadEnd {
    /// The peer closed, an I/O error, or the frame handler asked to stop.
    #[error("connection ended")]
    Ended,
    /// A malformed or oversized frame.
    #[error("malformed frame: {0}")]
    Malformed(#[from] rmq_proto::FrameError),
    /// Nothing arrived for the idle timeout.
    #[error("idle for {0} ms")]
    Idle(u64),
    /// A frame would take the incomplete-frame budget over its limit.
    #[error("a {frame}-byte frame would exceed the incomplete-frame budget ({held} of {max} bytes held)")]
    OverBudget {
        /// Announced frame size.
        frame: usize,
        /// Held when it was refused.
        held: usize,
        /// The budget.
        max: usize,
    },
    /// The connection was closed by its node (an outbox over budget).
    #[error("closed by the server")]
    Killed,
}

/// Accepts connections until the inbox is dropped, feeding `inbox` within `limits`.
pub async fn accept_loop<L: Listener>(mut listener: L, inbox: mpsc::Sender<ServerEvent>, limits: ServerLimits) {
    let mut next = 1u64;
    let live = Arc::new(AtomicUsize::new(0));
    let refusing = Arc::new(AtomicUsize::new(0));
    let budget = FrameBudget::new(limits.incomplete_frames_max_bytes);
    let read_limits = ReadLimits {
        max_frame_bytes: limits.max_frame_bytes,
        idle_timeout_ms: Some(limits.idle_timeout_ms),
        budget: Some(budget),
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                crate::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if live.load(Ordering::Acquire) >= limits.max_connections {
            tracing::warn!(%peer, max = limits.max_connections, "connection limit reached; refusing a connection");
            if refusing.fetch_add(1, Ordering::AcqRel) < REFUSING_MAX {
                spawn(refuse(stream, limits.max_connections, Slot::take(&refusing)));
            } else {
                refusing.fetch_sub(1, Ordering::AcqRel);
            }
            continue;
        }
        live.fetch_add(1, Ordering::AcqRel);
        let slot = Arc::new(Slot::take(&live));
        let conn = ConnId(next);
        next += 1;
        let (outbox, rx, killed) = Outbox::new(limits.outbound_max_bytes);
        let shared = outbox.shared.clone();
        if inbox.send(ServerEvent::Accepted { conn, peer, outbox }).await.is_err() {
            return;
        }
        let (rd, wr) = tokio::io::split(stream);
        let writer_slot = slot.clone();
        let writer_killed = killed.clone();
        spawn(async move {
            write_frames(wr, rx, &shared.queued, writer_killed).await;
            drop(writer_slot);
        });
        spawn(read_loop(rd, conn, inbox.clone(), read_limits.clone(), killed, slot));
    }
}

/// Counts one open connection (or one refusal in progress) until dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot on `counter`, which the caller has already incremented.
    fn take(counter: &Arc<AtomicUsize>) -> Slot {
        Slot(counter.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers the first request of a connection over the limit with SYSTEM_BUSY, then closes it.
async fn refuse<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S, max: usize, _slot: Slot) {
    let (rd, mut wr) = tokio::io::split(stream);
    let mut first = None;
    let limits = ReadLimits::frame_only(READ_BUF_BYTES);
    let read = read_frames(rd, &limits, |cmd| {
        first = Some(cmd);
        std::future::ready(false)
    });
    let _ = crate::time::timeout(Duration::from_millis(REFUSE_WAIT_MS), read).await;
    if let Some(req) = first.filter(|c| !c.is_response() && !c.is_oneway()) {
        let resp = RemotingCommand::response_to(&req, ResponseCode::SystemBusy)
            .with_remark(format!("connection limit reached: this server accepts at most {max} connections"));
        let _ = wr.write_all(&encode(&resp).to_bytes()).await;
    }
    let _ = wr.shutdown().await;
}

/// Reads frames from `rd` into `inbox` until EOF, a malformed frame, idleness, a budget, or
/// the kill switch; then reports the connection closed.
async fn read_loop<R: tokio::io::AsyncRead + Unpin>(
    rd: R,
    conn: ConnId,
    inbox: mpsc::Sender<ServerEvent>,
    limits: ReadLimits,
    killed: watch::Receiver<bool>,
    _slot: Arc<Slot>,
) {
    let mut closed = ClosedOnDrop { conn, inbox: Some(inbox.clone()) };
    let read = read_frames(rd, &limits, |cmd| {
        let inbox = inbox.clone();
        async move { inbox.send(ServerEvent::Frame { conn, cmd }).await.is_ok() }
    });
    let ended = until_killed(read, killed).await;
    match &ended {
        ReadEnd::Ended => {}
        ReadEnd::Malformed(_) | ReadEnd::OverBudget { .. } => {
            tracing::warn!(conn = conn.0, reason = %ended, "closing connection")
        }
        ReadEnd::Idle(_) | ReadEnd::Killed => tracing::info!(conn = conn.0, reason = %ended, "closing connection"),
    }
    if let Some(inbox) = closed.inbox.take() {
        let _ = inbox.send(ServerEvent::Closed { conn }).await;
    }
}

/// Runs `work` until it ends or the kill switch flips.
async fn until_killed(work: impl std::future::Future<Output = ReadEnd>, mut killed: watch::Receiver<bool>) -> ReadEnd {
    tokio::select! {
        biased;
        _ = killed.wait_for(|k| *k) => ReadEnd::Killed,
        end = work => end,
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
    task: crate::task::JoinHandle<()>,
}

impl AcceptGuard {
    /// Takes ownership of a spawned [`accept_loop`] task.
    pub fn new(task: crate::task::JoinHandle<()>) -> Self {
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

/// The bytes an incomplete frame at the front of `buf` announces (prefix included), if known.
fn announced(buf: &BytesMut) -> Option<usize> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(4 + u32::from_be_bytes(prefix) as usize)
}

/// Incomplete-frame bytes one reader holds against the shared budget; given back on drop.
struct Held<'a> {
    budget: Option<&'a FrameBudget>,
    bytes: usize,
}

impl Held<'_> {
    fn release(&mut self) {
        if let Some(b) = self.budget {
            b.give_back(std::mem::take(&mut self.bytes));
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Decodes frames from `rd` and hands each to `on_frame` until EOF, an I/O error, a malformed
/// frame, `on_frame` answering false, idleness or the budget (see [`ReadEnd`]).
pub async fn read_frames<R, F, Fut>(mut rd: R, limits: &ReadLimits, mut on_frame: F) -> ReadEnd
where
    R: tokio::io::AsyncRead + Unpin,
    F: FnMut(RemotingCommand) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut dec = FrameDecoder { max_frame_bytes: limits.max_frame_bytes };
    let mut buf = BytesMut::with_capacity(READ_BUF_MIN);
    let mut held = Held { budget: limits.budget.as_ref(), bytes: 0 };
    let mut busy = false;
    loop {
        loop {
            // Charge a frame that is still arriving before the decoder reserves room for it.
            if let (Some(budget), Some(total)) = (limits.budget.as_ref(), announced(&buf)) {
                if total > buf.len() && held.bytes == 0 && total <= limits.max_frame_bytes + 4 {
                    if !budget.try_take(total) {
                        return ReadEnd::OverBudget { frame: total, held: budget.held(), max: budget.max };
                    }
                    held.bytes = total;
                }
            }
            match dec.decode(&mut buf) {
                Ok(Some(cmd)) => {
                    held.release();
                    if buf.is_empty() && buf.capacity() > READ_BUF_BYTES {
                        // Let a large frame's memory go once its command is dropped.
                        buf = BytesMut::with_capacity(READ_BUF_MIN);
                    }
                    if !on_frame(cmd).await {
                        return ReadEnd::Ended;
                    }
                }
                Ok(None) => break,
                Err(e) => return ReadEnd::Malformed(e),
            }
        }
        if buf.capacity() - buf.len() < READ_BUF_MIN {
            buf.reserve(if busy { READ_BUF_BYTES } else { READ_BUF_MIN });
        }
        let spare = buf.capacity() - buf.len();
        let read = rd.read_buf(&mut buf);
        let n = match limits.idle_timeout_ms {
            None => read.await,
            Some(ms) => match crate::time::timeout(Duration::from_millis(ms), read).await {
                Ok(r) => r,
                Err(_) => return ReadEnd::Idle(ms),
            },
        };
        match n {
            Ok(0) | Err(_) => return ReadEnd::Ended,
            Ok(n) => busy = n == spare,
        }
    }
}

/// Frames gathered for one write: at most [`GATHER_BYTES_MAX`] bytes past the first frame.
const GATHER_BYTES_MAX: usize = 1 << 20;
/// At most this many buffers per write (a frame is one or two; Linux takes 1024 in one writev).
const GATHER_BUFFERS_MAX: usize = 512;

/// Frames queued for one write. Where the stream takes vectored writes (a real TCP socket)
/// they go out in one writev without being copied; elsewhere (the simulators' streams) they
/// are copied into one buffer, so each write carries the bytes it always did.
#[derive(Default)]
struct Gather {
    /// Each frame's head, then its body if it has one.
    frames: Vec<Bytes>,
    bytes: usize,
    copy: BytesMut,
}

impl Gather {
    fn push(&mut self, frame: Frame) {
        self.bytes += frame.len();
        self.frames.push(frame.head);
        if !frame.body.is_empty() {
            self.frames.push(frame.body);
        }
    }

    fn full(&self) -> bool {
        self.bytes >= GATHER_BYTES_MAX || self.frames.len() >= GATHER_BUFFERS_MAX
    }

    /// Writes and flushes every gathered frame, then empties the gather.
    async fn write<W: tokio::io::AsyncWrite + Unpin>(&mut self, wr: &mut W) -> std::io::Result<()> {
        let r = self.write_all(wr).await;
        self.frames.clear();
        self.bytes = 0;
        self.copy.clear();
        if self.copy.capacity() > 4 << 20 {
            self.copy = BytesMut::new();
        }
        r
    }

    async fn write_all<W: tokio::io::AsyncWrite + Unpin>(&mut self, wr: &mut W) -> std::io::Result<()> {
        if let [one] = &self.frames[..] {
            wr.write_all(one).await?;
        } else if wr.is_write_vectored() {
            let mut next = 0;
            while next < self.frames.len() {
                let slices: Vec<std::io::IoSlice<'_>> =
                    self.frames[next..].iter().map(|f| std::io::IoSlice::new(f)).collect();
                let mut wrote = wr.write_vectored(&slices).await?;
                if wrote == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                while wrote > 0 {
                    let front = &mut self.frames[next];
                    if wrote >= front.len() {
                        wrote -= front.len();
                        next += 1;
                    } else {
                        bytes::Buf::advance(front, wrote);
                        wrote = 0;
                    }
                }
            }
        } else {
            for f in &self.frames {
                self.copy.extend_from_slice(f);
            }
            wr.write_all(&self.copy).await?;
        }
        wr.flush().await
    }
}

/// Writes a client connection's queued frames to `wr`, batching whatever is queued into one
/// write, until the queue's senders are gone.
pub async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Frame>) {
    let mut gather = Gather::default();
    while let Some(first) = rx.recv().await {
        gather.push(first);
        while !gather.full() {
            match rx.try_recv() {
                Ok(more) => gather.push(more),
                Err(_) => break,
            }
        }
        if gather.write(&mut wr).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Writes a server connection's outbox to `wr` (as [`write_loop`]), giving written bytes back
/// to the outbox budget, until the outbox is dropped or the kill switch flips.
async fn write_frames<W: tokio::io::AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    queued: &AtomicUsize,
    mut killed: watch::Receiver<bool>,
) {
    let mut gather = Gather::default();
    loop {
        let first = tokio::select! {
            biased;
            _ = killed.wait_for(|k| *k) => return,
            f = rx.recv() => f,
        };
        let Some(first) = first else { break };
        gather.push(first);
        while !gather.full() {
            match rx.try_recv() {
                Ok(more) => gather.push(more),
                Err(_) => break,
            }
        }
        let n = gather.bytes;
        let wrote = tokio::select! {
            biased;
            _ = killed.wait_for(|k| *k) => return,
            r = gather.write(&mut wr) => r,
        };
        queued.fetch_sub(n, Ordering::AcqRel);
        if wrote.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// An encoded frame: its length words and header, then its body, kept apart so the body is
/// written from where it already is (by one writev with the rest) instead of being copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    head: Bytes,
    body: Bytes,
}

impl Frame {
    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// True for a frame of no bytes (never one [`encode`] made).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame in one buffer.
    pub fn to_bytes(&self) -> Bytes {
        if self.body.is_empty() {
            return self.head.clone();
        }
        let mut out = BytesMut::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.body);
        out.freeze()
    }
}

/// Encodes `cmd` for an outbox; an unencodable command becomes a SYSTEM_ERROR response.
pub fn encode(cmd: &RemotingCommand) -> Frame {
    let ext_bytes: usize = cmd.ext_fields.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
    let mut head = BytesMut::with_capacity(64 + ext_bytes + cmd.remark.as_ref().map_or(0, String::len));
    if let Err(e) = encode_frame_head(cmd, &mut head) {
        head.clear();
        let mut err = cmd.clone();
        err.code = rmq_proto::ResponseCode::SystemError.code();
        err.body = Bytes::new();
        err.ext_fields.clear();
        err.remark = Some(format!("response could not be encoded: {e}"));
        encode_frame_head(&err, &mut head).expect("a bare error response always encodes");
        return Frame { head: head.freeze(), body: Bytes::new() };
    }
    Frame { head: head.freeze(), body: cmd.body.clone() }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A stream that takes at most `per_call` bytes per write and records each call's size.
    struct Trickle {
        vectored: bool,
        per_call: usize,
        got: Vec<u8>,
        calls: Vec<usize>,
        /// How many of the calls were vectored.
        vectored_calls: usize,
    }

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.per_call);
            self.got.extend_from_slice(&buf[..n]);
            self.calls.push(n);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            self.vectored_calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.per_call - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.per_call {
                    break;
                }
            }
            self.calls.push(n);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Frames, every other one with a body.
    fn frames() -> Vec<Frame> {
        (0u8..9)
            .map(|i| {
                let body = if i % 2 == 0 { Bytes::from(vec![i + 100; usize::from(i) * 3 + 1]) } else { Bytes::new() };
                Frame { head: Bytes::from(vec![i; usize::from(i) * 5 + 1]), body }
            })
            .collect()
    }

    fn wire(frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.to_bytes()).collect()
    }

    #[tokio::test]
    async fn gathered_frames_arrive_whole_and_in_order_through_partial_vectored_writes() {
        for per_call in [1, 7, 64, 1 << 20] {
            let mut wr = Trickle { vectored: true, per_call, got: Vec::new(), calls: Vec::new(), vectored_calls: 0 };
            let mut gather = Gather::default();
            frames().into_iter().for_each(|f| gather.push(f));
            gather.write(&mut wr).await.unwrap();
            assert_eq!(wr.got, wire(&frames()), "{per_call} bytes per call");
            assert!(gather.frames.is_empty() && gather.bytes == 0);
        }
        // Everything at once where the stream takes it: one call.
        let mut wr =
            Trickle { vectored: true, per_call: 1 << 20, got: Vec::new(), calls: Vec::new(), vectored_calls: 0 };
        let mut gather = Gather::default();
        frames().into_iter().for_each(|f| gather.push(f));
        gather.write(&mut wr).await.unwrap();
        assert_eq!(wr.calls, vec![wire(&frames()).len()]);
        assert_eq!(wr.vectored_calls, 1, "one writev, no copy");
    }

    #[tokio::test]
    async fn a_stream_without_vectored_writes_gets_one_buffer_per_write_as_before() {
        let mut wr =
            Trickle { vectored: false, per_call: 1 << 20, got: Vec::new(), calls: Vec::new(), vectored_calls: 0 };
        let mut gather = Gather::default();
        frames().into_iter().for_each(|f| gather.push(f));
        gather.write(&mut wr).await.unwrap();
        assert_eq!(wr.got, wire(&frames()));
        assert_eq!(wr.calls, vec![wire(&frames()).len()], "one write of the whole batch, as the simulators saw it");
        assert_eq!(wr.vectored_calls, 0);
    }
}
