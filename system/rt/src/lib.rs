//! The runtime facade. Drivers are generic over [`Env`]; the only place that touches the real
//! clock, real sockets, real files or spawns tasks is this crate.
//!
//! # Layout
//! - [`Env`], [`Listener`]: what a driver may ask of its runtime.
//! - [`RealEnv`]: tokio sockets, the system clock, memmap2 files.
//! - [`server`]: accept loop and per-connection reader/writer tasks feeding a node inbox.
//! - [`client`]: a multiplexed request/response client ([`RemotingClient`]).
//! - [`spawn`]: the one sanctioned way to start a task.
//! - [`abort_on_panic`]: the servers' panic policy (log, then abort).

pub mod client;
pub mod conf;
pub mod metrics;
pub mod server;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite};

pub use client::{RemotingClient, RpcError};
pub use server::{ConnId, ServerEvent};

/// A listening socket.
pub trait Listener: Send + 'static {
    /// The stream type accepted connections have.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The bound address (with the real port when bound to port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Everything a driver may ask of its runtime: network, wall clock, seed, storage.
pub trait Env: Clone + Send + Sync + 'static {
    /// Connected stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Listening socket.
    type Listener: Listener<Stream = Self::Stream>;
    /// Storage directory for a broker's store.
    type Dir: rmq_store::Directory<Seg: Send> + Send + 'static;
    /// Binds a listener.
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Connects to a peer.
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Wall-clock milliseconds since the Unix epoch (message timestamps, expiry).
    fn now_ms(&self) -> u64;
    /// A seed for this node's deterministic RNG.
    fn seed(&self) -> u64;
    /// Opens the storage directory rooted at `root`.
    fn open_dir(&self, root: &str) -> io::Result<Self::Dir>;
    /// Runs blocking storage work (msync, fdatasync) away from the node loop and resolves to its
    /// result. The real runtime uses tokio's blocking pool; a simulated runtime runs it inside
    /// its own scheduler, after the simulated disk's latency, so that a seed replays bit for bit
    /// and a crash can land while the work is in flight.
    fn offload<F, R>(&self, work: F) -> impl Future<Output = R> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static;
    /// [`Env::offload`] whose result goes straight to `then`, where the work ran, with no task
    /// awaiting it in between: a flush's completion reaches the node loop's channel in one
    /// hand-off instead of three (blocking thread, awaiting task, loop). The default awaits
    /// [`Env::offload`] in a spawned task, which is what a simulated runtime wants.
    fn offload_then<F, R, T>(&self, work: F, then: T)
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
        T: FnOnce(R) + Send + 'static,
    {
        let env = self.clone();
        spawn(async move { then(env.offload(work).await) });
    }
    /// The process id stamped into message ids and client ids.
    fn process_id(&self) -> u32;
    /// Whether a driver may run short storage work (a small SYNC_FLUSH group commit) in its own
    /// loop instead of [`Env::offload`]ing it. The real runtime does: a hand-off to another
    /// thread and back costs two wake-ups, more than the work. A simulated runtime keeps every
    /// flush offloaded (the default), where it models the disk's latency and aims crashes into
    /// a flush in flight; the durability a flush gives is the same either way.
    fn inline_storage_work(&self) -> bool {
        false
    }
}

/// Makes every later panic, on any thread, log at error level and then abort the process.
///
/// The server binaries call this first thing: a panic is a bug whose damage cannot be bounded
/// (a core's tables or store may be half-updated), so the process dies at once, releasing its
/// port, and a supervisor (systemd `Restart=on-failure`, Kubernetes) restarts it into recovery.
/// Without it, a panicking worker would leave a process that holds its port but no longer
/// serves. Libraries and tests do not call it.
pub fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panic: aborting the process (a supervisor should restart it)");
        default_hook(info);
        std::process::abort();
    }));
}

/// Starts a task on the current runtime. The one place drivers spawn from.
#[allow(clippy::disallowed_methods)] // The runtime facade is the one place tasks are spawned.
pub fn spawn<F>(f: F) -> task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(not(madsim))]
    return tokio::spawn(f);
    #[cfg(madsim)]
    return madsim::task::spawn(f);
}

/// Tasks: the join handle of whichever runtime the build runs on (tokio's, or madsim's in a
/// `--cfg madsim` build). Drivers name these, never a runtime's own.
pub mod task {
    #[cfg(madsim)]
    pub use madsim::task::JoinHandle;
    #[cfg(not(madsim))]
    pub use tokio::task::JoinHandle;
}

/// Timers of whichever runtime the build runs on: tokio's, or madsim's simulated clock in a
/// `--cfg madsim` build. Drivers take every sleep, timeout and interval from here, so the same
/// driver code runs on real time, on turmoil's clock (turmoil drives tokio's timer) and on
/// madsim's.
pub mod time {
    #[cfg(madsim)]
    pub use madsim::time::{interval, sleep, timeout};
    #[cfg(not(madsim))]
    pub use tokio::time::{interval, sleep, timeout};
}

/// Sleeps until the given wall-clock deadline of `env` (ms), using the runtime's timer.
pub async fn sleep_until_ms<E: Env>(env: &E, deadline_ms: u64) {
    let now = env.now_ms();
    if deadline_ms > now {
        time::sleep(std::time::Duration::from_millis(deadline_ms - now)).await;
    }
}

/// The production runtime: tokio sockets, the system clock, memmap2-backed storage.
#[derive(Debug, Clone, Default)]
pub struct RealEnv {
    /// Seed override; when `None`, derived from the clock and pid at construction.
    pub seed: Option<u64>,
}

/// A tokio TCP listener.
#[derive(Debug)]
pub struct TcpListener(tokio::net::TcpListener);

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, a) = self.0.accept().await?;
        s.set_nodelay(true)?;
        Ok((s, a))
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl RealEnv {
    /// A monotonic stopwatch for tools that measure real elapsed time (benchmarks). Cores and
    /// drivers never use it: their time comes from `Env::now_ms`.
    #[allow(clippy::disallowed_methods)] // The real Env is the one place the real clock is read.
    pub fn stopwatch() -> std::time::Instant {
        std::time::Instant::now()
    }
}

impl Env for RealEnv {
    type Stream = tokio::net::TcpStream;
    type Listener = TcpListener;
    type Dir = rmq_store::MmapDirectory;

    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        let addr = addr.to_string();
        async move { Ok(TcpListener(tokio::net::TcpListener::bind(addr).await?)) }
    }

    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let addr = addr.to_string();
        async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(s)
        }
    }

    #[allow(clippy::disallowed_methods)] // The real Env is the one place the system clock is read.
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(|| self.now_ms() ^ (u64::from(std::process::id()) << 32))
    }

    fn open_dir(&self, root: &str) -> io::Result<Self::Dir> {
        // The store is one broker's alone: a second process on `root` is refused, naming the holder.
        let holder = format!("pid {}", std::process::id());
        rmq_store::MmapDirectory::open_exclusive(PathBuf::from(root), &holder).map_err(|e| match e {
            rmq_store::StoreError::Io { source, path } => io::Error::new(source.kind(), format!("{path}: {source}")),
            other => io::Error::other(other.to_string()),
        })
    }

    #[allow(clippy::disallowed_methods)] // The real Env owns the blocking pool.
    fn offload<F, R>(&self, work: F) -> impl Future<Output = R> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let task = tokio::task::spawn_blocking(work);
        async move {
            match task.await {
                Ok(r) => r,
                // A panic in the work is the caller's panic; cancellation only happens while the
                // runtime shuts down, when nobody awaits the result any more.
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(e) => panic!("blocking work cancelled while its caller waited: {e}"),
                },
            }
        }
    }

    #[allow(clippy::disallowed_methods)] // The real Env owns the blocking pool.
    fn offload_then<F, R, T>(&self, work: F, then: T)
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
        T: FnOnce(R) + Send + 'static,
    {
        // A panic in the work ends here as it would in an awaiting task: the binaries' panic
        // hook aborts the process (see `abort_on_panic`).
        drop(tokio::task::spawn_blocking(move || then(work())));
    }

    fn process_id(&self) -> u32 {
        std::process::id()
    }

    fn inline_storage_work(&self) -> bool {
        true
    }
}
