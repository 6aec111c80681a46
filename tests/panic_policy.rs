//! A panic in a request handler never leaves a server that holds its port without serving.
//!
//! The panic is provoked through the runtime seam, not a debug switch in production code:
//! [`PanicEnv`] is the real Env, except that its clock panics once after a connection carried
//! the bytes `PANIC_HERE`. The node loop reads the clock first thing when it handles that
//! request, so the real NameServer and broker drivers panic inside their handler.
//!
//! - With the servers' policy installed ([`rmq_rt::abort_on_panic`], called by `mqnamesrv` and
//!   `mqbroker`), the process logs the panic at error level and dies by SIGABRT; its port is
//!   free at once. Run in a child process (this test binary, re-executed).
//! - Without it (library use), the node loop's `AcceptGuard` closes the listener as the loop
//!   unwinds, and every connection is closed: clients see the server gone, not a hang.

// Real-socket tests drive child processes from plain threads; the determinism rules are for
// cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rmq_proto::codes::RequestCode;
use rmq_proto::frame::{encode_to_bytes, FrameDecoder};
use rmq_proto::RemotingCommand;
use rmq_rt::{Env, Listener, RealEnv};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const MARKER: &[u8] = b"PANIC_HERE";
const CHILD_VAR: &str = "RMQ_PANIC_POLICY_CHILD";
const STORE_VAR: &str = "RMQ_PANIC_POLICY_STORE";

/// The real Env with a clock that panics once after a connection read [`MARKER`].
#[derive(Debug, Clone, Default)]
struct PanicEnv {
    real: RealEnv,
    armed: Arc<AtomicBool>,
}

#[derive(Debug)]
struct PanicListener {
    inner: rmq_rt::TcpListener,
    armed: Arc<AtomicBool>,
}

#[derive(Debug)]
struct PanicStream {
    inner: tokio::net::TcpStream,
    armed: Arc<AtomicBool>,
}

impl AsyncRead for PanicStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled()[before..].windows(MARKER.len()).any(|w| w == MARKER) {
            self.armed.store(true, Ordering::SeqCst);
        }
        polled
    }
}

impl AsyncWrite for PanicStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Listener for PanicListener {
    type Stream = PanicStream;
    async fn accept(&mut self) -> std::io::Result<(PanicStream, SocketAddr)> {
        let (inner, peer) = self.inner.accept().await?;
        Ok((PanicStream { inner, armed: self.armed.clone() }, peer))
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Env for PanicEnv {
    type Stream = PanicStream;
    type Listener = PanicListener;
    type Dir = rmq_store::MmapDirectory;

    fn bind(&self, addr: &str) -> impl Future<Output = std::io::Result<PanicListener>> + Send {
        let (real, armed, addr) = (self.real.clone(), self.armed.clone(), addr.to_string());
        async move { Ok(PanicListener { inner: real.bind(&addr).await?, armed }) }
    }
    fn connect(&self, addr: &str) -> impl Future<Output = std::io::Result<PanicStream>> + Send {
        let (real, armed, addr) = (self.real.clone(), self.armed.clone(), addr.to_string());
        async move { Ok(PanicStream { inner: real.connect(&addr).await?, armed }) }
    }
    fn now_ms(&self) -> u64 {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("provoked: a request handler panicked");
        }
        self.real.now_ms()
    }
    fn seed(&self) -> u64 {
        7
    }
    fn open_dir(&self, root: &str) -> std::io::Result<Self::Dir> {
        self.real.open_dir(root)
    }
    fn offload<F, R>(&self, work: F) -> impl Future<Output = R> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.real.offload(work)
    }
    fn process_id(&self) -> u32 {
        self.real.process_id()
    }
}

/// Starts the named server on 127.0.0.1:0 over [`PanicEnv`]; returns its address and a value
/// to keep alive while it serves.
async fn start_server(which: &str, store: &str) -> (SocketAddr, Box<dyn std::any::Any + Send>) {
    let env = PanicEnv::default();
    match which {
        "namesrv" => {
            let h = rmq_namesrv::start(env, "127.0.0.1:0", Default::default()).await.unwrap();
            (h.local_addr, Box::new(h))
        }
        "broker" => {
            let opts = common::in_process_broker(std::path::Path::new(store));
            let h = rmq_broker::start(env, opts).await.unwrap();
            (h.local_addr, Box::new(h))
        }
        other => panic!("unknown server {other}"),
    }
}

/// One request/response on a raw socket; `None` when the peer closed first.
fn call(s: &mut TcpStream, req: &RemotingCommand) -> Option<RemotingCommand> {
    s.write_all(&encode_to_bytes(req).unwrap()).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = bytes::BytesMut::new();
    loop {
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(c) = FrameDecoder::default().decode(&mut buf).unwrap() {
            return Some(c);
        }
    }
}

/// True when a connection to `addr` is refused: nothing listens there any more. A listener
/// kept by a dead node would still complete the TCP handshake for this attempt.
fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

fn healthy_request() -> RemotingCommand {
    RemotingCommand::request(RequestCode::GetBrokerRuntimeInfo, 1)
}

fn poison_request() -> RemotingCommand {
    RemotingCommand::request(RequestCode::GetBrokerRuntimeInfo, 2).with_ext("probe", "PANIC_HERE")
}

/// Before the panic the server answers; the poison request panics its handler.
fn serve_then_poison(addr: SocketAddr) -> TcpStream {
    let mut healthy = TcpStream::connect(addr).unwrap();
    let resp = call(&mut healthy, &healthy_request()).expect("the server answers before the panic");
    assert_eq!(resp.opaque, 1);
    let mut poisoned = TcpStream::connect(addr).unwrap();
    assert!(call(&mut poisoned, &poison_request()).is_none(), "the panicking request gets no answer");
    healthy
}

fn library_mode(which: &str) {
    let store = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (addr, _handle) = rt.block_on(start_server(which, &store.path().to_string_lossy()));
    let mut healthy = serve_then_poison(addr);
    assert!(common::closed_by_peer(&mut healthy), "{which}: the other connections close too, they do not hang");
    // The listener closes as the node loop unwinds; give the aborted accept task a moment.
    std::thread::sleep(Duration::from_millis(1_000));
    assert!(refused(addr), "{which}: the listener closed with the node loop");
}

#[test]
fn namesrv_handler_panic_in_library_mode_closes_the_listener() {
    library_mode("namesrv");
}

#[test]
fn broker_handler_panic_in_library_mode_closes_the_listener() {
    library_mode("broker");
}

/// The child side of [`binary_mode`]: a real server with the binaries' panic policy. Does
/// nothing unless started by the parent.
#[test]
fn child_entry() {
    let Ok(which) = std::env::var(CHILD_VAR) else { return };
    rmq_tools::init_tracing("error");
    rmq_rt::abort_on_panic();
    let store = std::env::var(STORE_VAR).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let (addr, _handle) = start_server(&which, &store).await;
        println!("LISTENING {addr}");
        std::future::pending::<()>().await;
    });
}

fn binary_mode(which: &str) {
    use std::os::unix::process::ExitStatusExt;
    let store = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // `ulimit -c 0`: the abort must not leave a core file behind.
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -c 0; exec \"$0\" \"$@\""])
        .arg(&exe)
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, which)
        .env(STORE_VAR, store.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("LISTENING "))
        .expect("the child server started");
    // libtest prints "test child_entry ... " before the child's own output on the same line.
    let addr: SocketAddr = line.rsplit("LISTENING ").next().unwrap().trim().parse().unwrap();
    let _healthy = serve_then_poison(addr);
    let mut status = None;
    for _ in 0..500 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("{which}: the process kept running after a handler panic");
    };
    assert_eq!(status.signal(), Some(6), "{which}: died by SIGABRT, got {status:?}");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("ERROR") && stderr.contains("aborting the process"), "logged at error level: {stderr}");
    assert!(stderr.contains("provoked: a request handler panicked"), "{stderr}");
    assert!(refused(addr), "{which}: the port is free for the restarted process");
}

#[test]
fn namesrv_process_aborts_on_a_handler_panic() {
    binary_mode("namesrv");
}

#[test]
fn broker_process_aborts_on_a_handler_panic() {
    binary_mode("broker");
}
