//! A multiplexed remoting client: one connection per address, many requests in flight, matched
//! by opaque. Requests the server initiates (NOTIFY_CONSUMER_IDS_CHANGED,
//! CHECK_TRANSACTION_STATE) go to an optional [`Incoming`] channel.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmq_proto::RemotingCommand;
use tokio::sync::{mpsc, oneshot};

use crate::server::{encode, read_frames, write_loop, Frame, ReadEnd, ReadLimits, CONN_OUTBOX_MAX};
use crate::{spawn, Env};

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The connection could not be made.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// Peer.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// No response within the timeout.
    #[error("request to {addr} timed out after {timeout_ms} ms")]
    Timeout {
        /// Peer.
        addr: String,
        /// Timeout.
        timeout_ms: u64,
    },
    /// The connection closed before the response arrived.
    #[error("connection to {addr} closed")]
    Closed {
        /// Peer.
        addr: String,
    },
}

/// A request a server sent to this client.
#[derive(Debug)]
pub struct Incoming {
    /// The server's address.
    pub addr: String,
    /// The request.
    pub cmd: RemotingCommand,
    /// Where to write a response frame, if one is due.
    pub reply: mpsc::Sender<Frame>,
}

type Pending = Arc<Mutex<BTreeMap<i32, oneshot::Sender<RemotingCommand>>>>;

/// How long a connect may take (RocketMQ's `connectTimeoutMillis`), and never longer than the
/// request's own timeout.
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;

#[derive(Debug)]
struct Conn {
    outbox: mpsc::Sender<Frame>,
    pending: Pending,
    /// Set by the reader task when the connection ends.
    closed: Arc<AtomicBool>,
    /// The reader and writer tasks: aborted (closing the socket) when the connection is dropped.
    tasks: Vec<crate::task::JoinHandle<()>>,
}

impl Conn {
    fn alive(&self) -> bool {
        !self.outbox.is_closed() && !self.closed.load(Ordering::Acquire)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Called on every request just before it is written (RocketMQ's `RPCHook.doBeforeRequest`),
/// e.g. to sign it for ACL.
#[derive(Clone)]
pub struct RequestHook(pub Arc<dyn Fn(&mut RemotingCommand) + Send + Sync>);

impl std::fmt::Debug for RequestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestHook")
    }
}

/// A multiplexed client over an [`Env`].
#[derive(Debug, Clone)]
pub struct RemotingClient<E: Env> {
    env: E,
    conns: Arc<tokio::sync::Mutex<BTreeMap<String, Arc<Conn>>>>,
    next_opaque: Arc<AtomicI32>,
    incoming: Option<mpsc::UnboundedSender<Incoming>>,
    max_frame_bytes: usize,
    /// Runs on every request before it is written.
    hook: Option<RequestHook>,
}

impl<E: Env> RemotingClient<E> {
    /// A client; server-initiated requests are dropped.
    pub fn new(env: E) -> Self {
        RemotingClient {
            env,
            conns: Arc::default(),
            next_opaque: Arc::new(AtomicI32::new(0)),
            incoming: None,
            max_frame_bytes: rmq_proto::frame::FRAME_MAX_BYTES_DEFAULT,
            hook: None,
        }
    }

    /// This client, running `hook` on every request just before it is written.
    pub fn with_request_hook(mut self, hook: RequestHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// A client that forwards server-initiated requests to the returned receiver.
    pub fn with_incoming(env: E) -> (Self, mpsc::UnboundedReceiver<Incoming>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut c = Self::new(env);
        c.incoming = Some(tx);
        (c, rx)
    }

    /// The runtime this client runs on.
    pub fn env(&self) -> &E {
        &self.env
    }

    /// The next request id.
    pub fn next_opaque(&self) -> i32 {
        self.next_opaque.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request and waits for its response.
    pub async fn invoke(
        &self,
        addr: &str,
        mut cmd: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, RpcError> {
        cmd.opaque = self.next_opaque();
        if let Some(hook) = &self.hook {
            (hook.0)(&mut cmd);
        }
        let conn = self.conn(addr, timeout_ms.min(CONNECT_TIMEOUT_MS)).await?;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().expect("pending map lock is never held across a panic").insert(cmd.opaque, tx);
        if conn.outbox.send(encode(&cmd)).await.is_err() {
            self.forget(addr, &conn).await;
            return Err(RpcError::Closed { addr: addr.to_string() });
        }
        match crate::time::timeout(Duration::from_millis(timeout_ms), rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(RpcError::Closed { addr: addr.to_string() }),
            Err(_) => {
                conn.pending.lock().expect("pending map lock is never held across a panic").remove(&cmd.opaque);
                // As RocketMQ's client does (clientCloseSocketIfTimeout, on by default): a
                // connection that let a request time out may be half-open (the peer lost power,
                // a partition ate segments), so the next request opens a fresh one.
                self.forget(addr, &conn).await;
                Err(RpcError::Timeout { addr: addr.to_string(), timeout_ms })
            }
        }
    }

    /// Sends a one-way request (flag bit 1 is set here).
    pub async fn invoke_oneway(&self, addr: &str, cmd: RemotingCommand) -> Result<(), RpcError> {
        let mut cmd = cmd.oneway();
        cmd.opaque = self.next_opaque();
        if let Some(hook) = &self.hook {
            (hook.0)(&mut cmd);
        }
        let conn = self.conn(addr, CONNECT_TIMEOUT_MS).await?;
        if conn.outbox.send(encode(&cmd)).await.is_err() {
            self.forget(addr, &conn).await;
            return Err(RpcError::Closed { addr: addr.to_string() });
        }
        Ok(())
    }

    /// Drops every connection (pending requests fail with `Closed`).
    pub async fn close_all(&self) {
        self.conns.lock().await.clear();
    }

    async fn forget(&self, addr: &str, conn: &Arc<Conn>) {
        let mut conns = self.conns.lock().await;
        if conns.get(addr).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(addr);
        }
    }

    /// The live connection to `addr`, or a new one. The connection table is not locked while
    /// connecting: a peer that never answers the handshake (powered off, a partition eating
    /// SYNs) costs the requests to it their connect timeout, never every other address's.
    async fn conn(&self, addr: &str, connect_timeout_ms: u64) -> Result<Arc<Conn>, RpcError> {
        if let Some(c) = self.live(addr).await {
            return Ok(c);
        }
        let stream = match crate::time::timeout(Duration::from_millis(connect_timeout_ms), self.env.connect(addr)).await
        {
            Ok(connected) => connected.map_err(|source| RpcError::Connect { addr: addr.to_string(), source })?,
            Err(_) => {
                let source =
                    io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {connect_timeout_ms} ms"));
                return Err(RpcError::Connect { addr: addr.to_string(), source });
            }
        };
        let (rd, wr) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(CONN_OUTBOX_MAX);
        let (pending, closed): (Pending, Arc<AtomicBool>) = (Arc::default(), Arc::default());
        let writer = spawn(write_loop(wr, rx));
        let reader = spawn(read_responses(
            rd,
            addr.to_string(),
            pending.clone(),
            closed.clone(),
            tx.clone(),
            self.incoming.clone(),
            self.max_frame_bytes,
        ));
        let conn = Arc::new(Conn { outbox: tx, pending, closed, tasks: vec![writer, reader] });
        let mut conns = self.conns.lock().await;
        // Another request connected meanwhile: use its connection (dropping this one closes it).
        if let Some(c) = conns.get(addr).filter(|c| c.alive()) {
            return Ok(c.clone());
        }
        conns.insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    /// The cached connection to `addr` if it is still open (a dead one is forgotten).
    async fn live(&self, addr: &str) -> Option<Arc<Conn>> {
        let mut conns = self.conns.lock().await;
        match conns.get(addr) {
            Some(c) if c.alive() => Some(c.clone()),
            Some(_) => {
                conns.remove(addr);
                None
            }
            None => None,
        }
    }
}

async fn read_responses<R: tokio::io::AsyncRead + Unpin>(
    rd: R,
    addr: String,
    pending: Pending,
    closed: Arc<AtomicBool>,
    reply: mpsc::Sender<Frame>,
    incoming: Option<mpsc::UnboundedSender<Incoming>>,
    max_frame_bytes: usize,
) {
    let ended = read_frames(rd, &ReadLimits::frame_only(max_frame_bytes), |cmd| {
        if cmd.is_response() {
            let waiter = pending.lock().expect("pending map lock is never held across a panic").remove(&cmd.opaque);
            if let Some(w) = waiter {
                let _ = w.send(cmd);
            }
        } else if let Some(tx) = &incoming {
            let _ = tx.send(Incoming { addr: addr.clone(), cmd, reply: reply.clone() });
        }
        std::future::ready(true)
    })
    .await;
    if let ReadEnd::Malformed(e) = ended {
        tracing::warn!(%addr, error = %e, "malformed frame from server; closing");
    }
    closed.store(true, Ordering::Release);
    // Dropping the waiters fails their requests with `Closed`.
    pending.lock().expect("pending map lock is never held across a panic").clear();
}
