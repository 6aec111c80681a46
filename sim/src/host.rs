//! What the two full-stack lanes share: the real NameServer, broker and client library run on
//! simulated hosts, over a [`SimEnv`] whose network comes from the lane's simulator ([`SimNet`]:
//! turmoil in the stack lane, madsim in the madsim lane). The topology, the hosts' programs,
//! the frame-level fault layer ([`FaultyStream`]), the shared history and the final judgement
//! are written once here, so the two lanes differ only in how they schedule hosts and faults.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rmq_broker::BrokerOptions;
use rmq_broker_core::{BrokerConfig, BrokerRole, FlushDiskType};
use rmq_client::{
    ClientConfig, ConsumeFromWhere, ConsumeResult, LocalTransactionState, Message, Producer, PushConsumer, SendStatus,
    TransactionProducer,
};
use rmq_proto::codes::RequestCode;
use rmq_proto::RemotingCommand;
use rmq_rt::{Env, Listener, RemotingClient};
use rmq_store::MessageStore;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::actors::HOT_KEY;
use crate::disk::{CrashMode, SimDisk};
use crate::oracle::{check_run, message_key, History, Promise};
use crate::scenario::{node_name, Replication, Scenario, Trigger};
use crate::trace::Trace;
use crate::world::{EPOCH_MS, TOPIC};
use crate::{Lane, RunReport};

pub(crate) const NS_PORT: u16 = 9876;
pub(crate) const BROKER_PORT: u16 = 10911;

/// A simulator's TCP and clock, as the full-stack hosts need them.
pub(crate) trait SimNet: Send + Sync + 'static {
    /// A connected simulated TCP stream.
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A simulated listening socket.
    type TcpListener: Send + 'static;
    /// Binds a listener on the current host.
    fn bind(addr: String) -> impl Future<Output = io::Result<Self::TcpListener>> + Send;
    /// Accepts the next connection.
    fn accept(l: &mut Self::TcpListener) -> impl Future<Output = io::Result<(Self::Tcp, SocketAddr)>> + Send;
    /// The listener's address.
    fn listener_addr(l: &Self::TcpListener) -> io::Result<SocketAddr>;
    /// Connects from the current host.
    fn connect(addr: String) -> impl Future<Output = io::Result<Self::Tcp>> + Send;
    /// The stream's two ends.
    fn addrs(s: &Self::Tcp) -> (io::Result<SocketAddr>, io::Result<SocketAddr>);
    /// Simulated milliseconds since the run began.
    fn now_ms() -> u64;
}

/// State every host of one run shares: the history the oracle reads, the trace, the network
/// fault RNG and the producers' progress. One thread runs every host, so the lock is never
/// contended; it only satisfies `Send`.
pub(crate) struct Lab {
    pub rng: ChaCha8Rng,
    pub trace: Trace,
    pub history: History,
    /// Next message index per producer (a restarted producer resumes after the last one begun).
    pub next_seq: BTreeMap<u32, u32>,
    /// The idempotent group's processing log (message keys), kept across consumer crashes.
    pub processing_log: BTreeSet<String>,
    /// SEND_OKs received so far (for `crash … on ack`).
    pub acks: u64,
    /// Brokers with a checkpoint in flight (for `crash … on checkpoint`).
    pub checkpointing: BTreeSet<usize>,
    /// Starts of each broker (its epoch for offset-monotonicity checks).
    pub broker_epochs: BTreeMap<usize, u64>,
    /// The node whose software is being torn down by a crash right now.
    pub crashing: Option<String>,
    /// Sockets of the crashing node, parked by stream id as its tasks are dropped (in an order
    /// the lane's simulator may not fix); the lane closes them in id order.
    pub graveyard: BTreeMap<u64, (String, Box<dyn Send>)>,
    /// Id of the next stream.
    pub next_stream: u64,
}

impl Lab {
    pub fn new(seed: u64, keep_trace: bool, s: &Scenario) -> Self {
        Lab {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x4e45_5446_4155_4c54),
            trace: Trace::new(keep_trace),
            history: History::of(s),
            next_seq: BTreeMap::new(),
            processing_log: BTreeSet::new(),
            acks: 0,
            broker_epochs: BTreeMap::new(),
            checkpointing: BTreeSet::new(),
            crashing: None,
            graveyard: BTreeMap::new(),
            next_stream: 0,
        }
    }

    /// Takes the sockets `node`'s tasks parked while it crashed, in the order they were opened.
    #[cfg_attr(madsim, allow(dead_code))] // Only turmoil needs a graveyard.
    pub fn bury(&mut self, node: &str) -> Vec<Box<dyn Send>> {
        let ids: Vec<u64> = self.graveyard.iter().filter(|(_, (n, _))| n == node).map(|(id, _)| *id).collect();
        ids.into_iter().filter_map(|id| self.graveyard.remove(&id)).map(|(_, s)| s).collect()
    }
}

pub(crate) type Shared = Arc<Mutex<Lab>>;

pub(crate) fn lab(shared: &Shared) -> MutexGuard<'_, Lab> {
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The runtime for drivers on a simulated host: the lane's network and clock, a [`SimDisk`],
/// the scenario's clock skew, flush lag and frame faults.
pub(crate) struct SimEnv<N> {
    pub node: String,
    pub disk: SimDisk,
    pub seed: u64,
    pub pid: u32,
    pub skew_ms: i64,
    pub flush_lag_ms: u64,
    pub drop_pct: u32,
    pub dup_pct: u32,
    pub net_faults_end_ms: u64,
    pub lab: Shared,
    pub net: std::marker::PhantomData<fn() -> N>,
}

impl<N> Clone for SimEnv<N> {
    fn clone(&self) -> Self {
        SimEnv {
            node: self.node.clone(),
            disk: self.disk.clone(),
            lab: self.lab.clone(),
            net: std::marker::PhantomData,
            ..*self
        }
    }
}

impl<N> std::fmt::Debug for SimEnv<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimEnv").field("node", &self.node).finish_non_exhaustive()
    }
}

/// A simulated listener whose accepted streams pass through the fault layer.
pub(crate) struct SimListener<N: SimNet> {
    inner: N::TcpListener,
    env: SimEnv<N>,
}

impl<N: SimNet> std::fmt::Debug for SimListener<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimListener")
    }
}

impl<N: SimNet> Listener for SimListener<N> {
    type Stream = FaultyStream<N>;
    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, a) = N::accept(&mut self.inner).await?;
        Ok((self.env.wrap(s), a))
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        N::listener_addr(&self.inner)
    }
}

impl<N: SimNet> SimEnv<N> {
    fn wrap(&self, inner: N::Tcp) -> FaultyStream<N> {
        let id = {
            let mut l = lab(&self.lab);
            l.next_stream += 1;
            l.next_stream
        };
        // The frame-level loss and duplication layer reads remoting frames; an HA stream
        // (raw offsets and CommitLog bytes) is a plain TCP stream that never loses or repeats
        // bytes, so it passes untouched (partitions and crashes still cut it).
        let ha_port = |a: &io::Result<SocketAddr>| a.as_ref().is_ok_and(|a| a.port() == BROKER_PORT + 1);
        let (local, peer) = N::addrs(&inner);
        let ha = ha_port(&local) || ha_port(&peer);
        FaultyStream {
            inner: Some(inner),
            id,
            node: self.node.clone(),
            drop_pct: if ha { 0 } else { self.drop_pct },
            dup_pct: if ha { 0 } else { self.dup_pct },
            net_faults_end_ms: self.net_faults_end_ms,
            lab: self.lab.clone(),
            staged: BytesMut::new(),
            ready: BytesMut::new(),
        }
    }
}

impl<N: SimNet> Env for SimEnv<N> {
    type Stream = FaultyStream<N>;
    type Listener = SimListener<N>;
    type Dir = SimDisk;

    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        let (addr, env) = (addr.to_string(), self.clone());
        async move { Ok(SimListener { inner: N::bind(addr).await?, env }) }
    }

    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let (addr, env) = (addr.to_string(), self.clone());
        async move { Ok(env.wrap(N::connect(addr).await?)) }
    }

    fn now_ms(&self) -> u64 {
        (EPOCH_MS + N::now_ms()).saturating_add_signed(self.skew_ms)
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn open_dir(&self, _root: &str) -> io::Result<SimDisk> {
        Ok(self.disk.clone())
    }

    /// Storage work runs inside the simulation once the disk's latency has passed; a crash
    /// before then drops it, and its pages are as durable as the disk model says.
    fn offload<F, R>(&self, work: F) -> impl Future<Output = R> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let lag_ms = self.flush_lag_ms;
        async move {
            rmq_rt::time::sleep(Duration::from_millis(lag_ms)).await;
            work()
        }
    }

    fn process_id(&self) -> u32 {
        self.pid
    }
}

/// A simulated stream with frame-level loss and duplication on its read side, as the fast
/// lane's network applies them: whole remoting frames (4-byte length prefix) vanish or arrive
/// twice.
pub(crate) struct FaultyStream<N: SimNet> {
    /// The socket (taken only when the stream is dropped).
    inner: Option<N::Tcp>,
    /// Opening order within the run.
    id: u64,
    node: String,
    drop_pct: u32,
    dup_pct: u32,
    /// Simulated time after which no frame is lost or duplicated.
    net_faults_end_ms: u64,
    lab: Shared,
    /// Bytes read but not yet a whole frame.
    staged: BytesMut,
    /// Frames that passed the fault layer, ready for the reader.
    ready: BytesMut,
}

impl<N: SimNet> FaultyStream<N> {
    /// Moves every whole staged frame through the fault layer into `ready`.
    fn sift(&mut self) {
        while self.staged.len() >= 4 {
            let len = u32::from_be_bytes([self.staged[0], self.staged[1], self.staged[2], self.staged[3]]) as usize;
            if self.staged.len() < 4 + len {
                // An oversized announcement is the decoder's business: pass it on as it comes.
                if len > rmq_proto::frame::FRAME_MAX_BYTES_DEFAULT {
                    let all = self.staged.split();
                    self.ready.extend_from_slice(&all);
                }
                return;
            }
            let frame = self.staged.split_to(4 + len);
            let (drop, dup) = {
                let mut l = lab(&self.lab);
                let t = N::now_ms();
                let noisy = t < self.net_faults_end_ms;
                let drop = noisy && self.drop_pct > 0 && l.rng.gen_range(0..100) < self.drop_pct;
                let dup = noisy && !drop && self.dup_pct > 0 && l.rng.gen_range(0..100) < self.dup_pct;
                if drop {
                    l.trace.line(t, &self.node, "net.frame.dropped", "cause=loss");
                } else if dup {
                    l.trace.line(t, &self.node, "net.frame.duplicated", "");
                }
                (drop, dup)
            };
            if !drop {
                self.ready.extend_from_slice(&frame);
                if dup {
                    self.ready.extend_from_slice(&frame);
                }
            }
        }
    }
}

impl<N: SimNet> Drop for FaultyStream<N> {
    fn drop(&mut self) {
        let mut l = lab(&self.lab);
        if l.crashing.as_deref() == Some(self.node.as_str()) {
            if let Some(socket) = self.inner.take() {
                l.graveyard.insert(self.id, (self.node.clone(), Box::new(socket)));
            }
        }
    }
}

/// Runs `f` on the socket (present until the stream is dropped).
fn with_socket<S: Unpin, T>(
    inner: &mut Option<S>,
    f: impl FnOnce(Pin<&mut S>) -> Poll<io::Result<T>>,
) -> Poll<io::Result<T>> {
    match inner.as_mut() {
        Some(s) => f(Pin::new(s)),
        None => Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "stream closed"))),
    }
}

impl<N: SimNet> AsyncRead for FaultyStream<N> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.drop_pct == 0 && this.dup_pct == 0 && this.ready.is_empty() && this.staged.is_empty() {
            return with_socket(&mut this.inner, |s| s.poll_read(cx, buf));
        }
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            match with_socket(&mut this.inner, |s| s.poll_read(cx, &mut rb)) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.staged.extend_from_slice(rb.filled());
                    this.sift();
                }
                other => return other,
            }
        }
    }
}

impl<N: SimNet> AsyncWrite for FaultyStream<N> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        with_socket(&mut self.inner, |s| s.poll_write(cx, buf))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with_socket(&mut self.inner, |s| s.poll_flush(cx))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with_socket(&mut self.inner, |s| s.poll_shutdown(cx))
    }
}

/// The cluster of one run: host names and how to build their runtimes.
pub(crate) struct Topology {
    pub namesrvs: Vec<String>,
    /// Broker hosts: the masters of the groups (`broker`, `broker1`, …), then their slaves
    /// (`slave`, `slave1`, …) with replication.
    pub brokers: Vec<String>,
    /// Broker groups.
    pub groups: usize,
    pub producers: Vec<String>,
    pub consumers: Vec<String>,
}

impl Topology {
    pub fn of(s: &Scenario) -> Self {
        Topology {
            namesrvs: (0..s.namesrvs.max(1)).map(|k| node_name("ns", k)).collect(),
            brokers: (0..s.brokers.max(1))
                .map(|k| node_name("broker", k))
                .chain((0..s.slaves()).map(|k| node_name("slave", k)))
                .collect(),
            groups: s.brokers.max(1) as usize,
            producers: (0..s.producers).map(|k| format!("p{k}")).collect(),
            consumers: (0..s.consumers).map(|k| format!("c{k}")).collect(),
        }
    }

    pub fn namesrv_addrs(&self) -> Vec<String> {
        self.namesrvs.iter().map(|n| format!("{n}:{NS_PORT}")).collect()
    }

    /// Every host, NameServers first, then brokers, producers, consumers.
    pub fn hosts(&self) -> impl Iterator<Item = &String> {
        self.namesrvs.iter().chain(&self.brokers).chain(&self.producers).chain(&self.consumers)
    }
}

pub(crate) fn broker_options(s: &Scenario, topo: &Topology, k: usize) -> BrokerOptions {
    let host = &topo.brokers[k];
    let group = k % topo.groups;
    let mut core = BrokerConfig {
        flush_disk_type: if s.sync_flush { FlushDiskType::SyncFlush } else { FlushDiskType::AsyncFlush },
        broker_name: format!("broker-{}", (b'a' + group as u8) as char),
        broker_addr: format!("{host}:{BROKER_PORT}"),
        ha_addr: format!("{host}:{}", BROKER_PORT + 1),
        broker_role: match s.replication {
            Replication::Sync => BrokerRole::SyncMaster,
            Replication::None | Replication::Async => BrokerRole::AsyncMaster,
        },
        register_interval_ms: 10_000,
        transaction_timeout_ms: crate::scenario::TX_TIMEOUT_MS,
        transaction_check_interval_ms: crate::scenario::TX_CHECK_INTERVAL_MS,
        ..Default::default()
    };
    if k >= topo.groups {
        core.broker_id = 1;
        core.broker_role = BrokerRole::Slave;
        core.ha_master_addr = Some(format!("{}:{}", topo.brokers[group], BROKER_PORT + 1));
    }
    s.apply_store(&mut core);
    BrokerOptions {
        listen: format!("0.0.0.0:{BROKER_PORT}"),
        namesrv_addrs: topo.namesrv_addrs(),
        store_root: "store".into(),
        core,
        limits: Default::default(),
        ha_listen: None,
        metrics_listen: None,
    }
}

/// What neither host lane (stack, madsim) can express, whatever the runtime.
///
/// - `consume_ms`: the client library's listener is a plain function that returns when the
///   message is consumed; the hosts' application cannot spend simulated time inside it, so a
///   run with `consume_ms` would silently test instant processing (the fast lane runs it).
/// - `broadcasting`: the client library keeps a BROADCASTING member's offsets in files
///   (`LocalOffsetStore`, on the machine's real file system), which a simulated host has not
///   got: its restarts would read another run's files.
pub(crate) fn refusal(s: &Scenario) -> Option<String> {
    if let Some((at, _)) = s.faults.iter().find(|(_, f)| matches!(f, crate::scenario::Fault::ResetOffsets(_))) {
        return Some(format!(
            "at {at} reset-offsets: the host lanes have no operator process to send INVOKE_BROKER_TO_RESET_OFFSET (the fast lane runs it)"
        ));
    }
    if s.consume_ms > 0 {
        return Some(format!(
            "consume_ms = {}: the client library's listener returns at once, it cannot take simulated time (the fast lane runs it)",
            s.consume_ms
        ));
    }
    s.broadcasting.then(|| {
        "broadcasting = true: the client library keeps broadcasting offsets in files on the real file system, which a simulated host has not got (the fast lane runs it)".to_string()
    })
}

pub(crate) fn client_config(namesrvs: &[String], group: &str, instance: &str) -> ClientConfig {
    let mut c = ClientConfig::new(&namesrvs.join(";"), group);
    c.instance_name = Some(instance.into());
    c.rebalance_interval_ms = 1_000;
    c.heartbeat_interval_ms = 1_000;
    c.persist_offset_interval_ms = 500;
    c.pull_suspend_ms = 1_000;
    c.poll_namesrv_interval_ms = 1_000;
    c.consume_from_where = ConsumeFromWhere::FirstOffset;
    c
}

/// A host's program: a factory the lane calls at every (re)start of the host.
pub(crate) type Program = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The hosts of one run: how each lane builds their runtimes and programs.
pub(crate) struct Plan<'a> {
    pub s: &'a Scenario,
    pub topo: &'a Topology,
    pub lab: Shared,
    /// One disk per broker (`vec![disk; n]` would share one: clones share state).
    pub disks: Arc<Mutex<Vec<SimDisk>>>,
}

impl<'a> Plan<'a> {
    pub fn new(s: &'a Scenario, topo: &'a Topology, seed: u64, keep_trace: bool) -> Self {
        Plan {
            s,
            topo,
            lab: Arc::new(Mutex::new(Lab::new(seed, keep_trace, s))),
            disks: Arc::new(Mutex::new((0..topo.brokers.len()).map(|_| SimDisk::default()).collect())),
        }
    }

    pub fn env<N>(&self, node: &str, seed: u64) -> SimEnv<N> {
        SimEnv {
            node: node.to_string(),
            disk: SimDisk::default(),
            seed,
            pid: 1_000 + seed as u32,
            skew_ms: self.s.clock_skew_ms.get(node).copied().unwrap_or(0),
            flush_lag_ms: self.s.flush_lag_ms,
            drop_pct: self.s.drop_pct,
            dup_pct: self.s.dup_pct,
            net_faults_end_ms: self.s.net_faults_end_ms(),
            lab: self.lab.clone(),
            net: std::marker::PhantomData,
        }
    }

    /// The program of host `name`, as a factory the lane calls at every (re)start.
    pub fn program<N: SimNet>(&self, name: &str) -> Program {
        let topo = self.topo;
        if let Some(k) = topo.namesrvs.iter().position(|n| n == name) {
            let env = self.env::<N>(name, 1 + k as u64);
            return Arc::new(move || Box::pin(run_namesrv(env.clone())));
        }
        if let Some(k) = topo.brokers.iter().position(|n| n == name) {
            let (opts, base) = (broker_options(self.s, topo, k), self.env::<N>(name, 10 + k as u64));
            let (disks, queues) = (self.disks.clone(), self.s.queues);
            return Arc::new(move || {
                let mut env = base.clone();
                env.disk = disks.lock().expect("disk slots")[k].clone();
                Box::pin(run_broker(env, opts.clone(), k, queues))
            });
        }
        if let Some(k) = topo.producers.iter().position(|n| n == name) {
            let env = self.env::<N>(name, 100 + k as u64);
            let cfg = client_config(&topo.namesrv_addrs(), "PG", name);
            let s = Arc::new(self.s.clone());
            return Arc::new(move || {
                let (env, cfg, s) = (env.clone(), cfg.clone(), s.clone());
                Box::pin(async move {
                    run_producer(env, cfg, k as u32, s).await;
                    std::future::pending::<()>().await;
                })
            });
        }
        let k = topo.consumers.iter().position(|n| n == name).expect("every host is in the topology");
        let env = self.env::<N>(name, 200 + k as u64);
        let cfg = client_config(&topo.namesrv_addrs(), "G", name);
        let mut cfg = cfg;
        cfg.max_reconsume_times = self.s.max_reconsume;
        let s = Arc::new(self.s.clone());
        Arc::new(move || Box::pin(run_consumer(env.clone(), cfg.clone(), k as u32, s.clone())))
    }

    /// Power loss of broker host `node` (if it is one): its disk keeps only what the crash
    /// model lets survive. Returns the trace detail.
    pub fn crash_disk(&self, node: &str, mode: CrashMode, rng: &mut ChaCha8Rng) -> String {
        let Some(k) = self.topo.brokers.iter().position(|b| b == node) else { return String::new() };
        lab(&self.lab).checkpointing.remove(&k);
        let mut slots = self.disks.lock().expect("disk slots");
        let detail = format!("dirty_pages={}", slots[k].dirty_pages());
        slots[k] = slots[k].crash(mode, rng);
        detail
    }

    /// `wipe NODE`: a crashed broker's disk is swapped for an empty one.
    pub fn wipe(&self, node: &str, down: &BTreeSet<String>, now: u64) {
        let slot = self.topo.brokers.iter().position(|b| b == node).filter(|_| down.contains(node));
        if let Some(k) = slot {
            self.disks.lock().expect("disk slots")[k] = SimDisk::default();
            lab(&self.lab).trace.line(now, node, "sim.disk.wiped", "");
        } else {
            lab(&self.lab).trace.line(now, node, "sim.wipe.skipped", "reason=node-up");
        }
    }

    /// Whether broker host `node` has a flush in flight (for `crash … on flush`).
    pub fn flushing(&self, node: &str) -> bool {
        let k = self.topo.brokers.iter().position(|b| b == node);
        k.is_some_and(|k| self.disks.lock().expect("disk slots")[k].flushes_in_flight() > 0)
    }

    /// Whether broker host `node` has a checkpoint in flight (for `crash … on checkpoint`).
    pub fn checkpointing(&self, node: &str) -> bool {
        let k = self.topo.brokers.iter().position(|b| b == node);
        k.is_some_and(|k| lab(&self.lab).checkpointing.contains(&k))
    }

    /// `at T crash NODE on WHAT`: arms it, marked with the SEND_OKs counted so far (for
    /// `ack`) or 0 until the next restart (for `recovery`).
    pub fn arm_trigger(&self, armed: &mut BTreeMap<String, (Trigger, u64)>, node: String, what: Trigger, now: u64) {
        let mut l = lab(&self.lab);
        l.trace.line(now, &node, "sim.trigger.armed", &format!("on={}", what.word()));
        let mark = if what == Trigger::Recovery { 0 } else { l.acks };
        armed.insert(node, (what, mark));
    }

    /// A restart of `node` (`was_down`: it had crashed and now starts again): an aimed crash
    /// that found no moment before a restart of a running node is withdrawn; one aimed at
    /// recovery fires from 1 ms after this restart.
    pub fn on_restart(&self, armed: &mut BTreeMap<String, (Trigger, u64)>, node: &str, was_down: bool, now: u64) {
        if !was_down {
            if let Some((what, _)) = armed.remove(node) {
                lab(&self.lab).trace.line(now, node, "sim.trigger.expired", &format!("on={}", what.word()));
            }
            return;
        }
        lab(&self.lab).trace.line(now, node, "sim.node.restarted", "");
        if let Some((Trigger::Recovery, at)) = armed.get_mut(node) {
            *at = now + 1;
        }
    }

    /// The armed crashes (`crash NODE on …`) whose moment has come, taken out of `armed`
    /// (node → what it waits for, and the SEND_OK count when armed or, for `recovery`, the
    /// restart time + 1 ms once the node restarted), each traced as fired.
    pub fn due_triggers(&self, armed: &mut BTreeMap<String, (Trigger, u64)>, now: u64) -> Vec<String> {
        let acks = lab(&self.lab).acks;
        let due: Vec<String> = armed
            .iter()
            .filter(|(node, (what, mark))| match what {
                Trigger::Flush => self.flushing(node),
                Trigger::Checkpoint => self.checkpointing(node),
                Trigger::Ack => acks > *mark,
                // The node has begun its recovery and not finished settling.
                Trigger::Recovery => *mark > 0 && now >= *mark,
            })
            .map(|(n, _)| n.clone())
            .collect();
        for node in &due {
            let (what, _) = armed.remove(node).expect("due triggers are armed");
            lab(&self.lab).trace.line(now, node, "sim.trigger.fired", &format!("on={}", what.word()));
        }
        due
    }

    /// Judges the finished run with the shared oracle: the history, and the stores of the
    /// brokers that are up.
    pub fn judge(
        &self,
        seed: u64,
        lane: Lane,
        down: &BTreeSet<String>,
        events: u64,
        simulated_ms: u64,
    ) -> Result<RunReport, String> {
        let (s, topo) = (self.s, self.topo);
        let mut l = lab(&self.lab);
        let disks = self.disks.lock().expect("disk slots").clone();
        let mut opened = Vec::new();
        for (k, name) in topo.brokers.iter().enumerate() {
            if down.contains(name) {
                continue;
            }
            let config = broker_options(s, topo, k).core.store;
            let (store, _) = MessageStore::open(disks[k].snapshot_live(), config)
                .map_err(|e| format!("{name}: reading its store at the end failed: {e}"))?;
            let group = format!("broker-{}", (b'a' + (k % topo.groups) as u8) as char);
            opened.push((name.as_str(), group, store));
        }
        let stores: Vec<(&str, &str, &MessageStore<SimDisk>)> =
            opened.iter().map(|(n, g, st)| (*n, g.as_str(), st)).collect();
        // A group is down when none of its members (master, slave) is up.
        let groups_down = (0..topo.groups)
            .filter(|g| topo.brokers.iter().enumerate().all(|(k, b)| k % topo.groups != *g || down.contains(b)))
            .count();
        let findings = check_run(&l.history, &stores, groups_down, s.queues, &Promise::of(s));
        let l = &mut *l;
        Ok(RunReport::new(s, seed, lane, &l.history, &mut l.trace, events, simulated_ms, findings))
    }
}

async fn run_namesrv<N: SimNet>(env: SimEnv<N>) {
    let node = env.node.clone();
    match rmq_namesrv::start(env.clone(), &format!("0.0.0.0:{NS_PORT}"), Default::default()).await {
        Ok(_h) => {
            lab(&env.lab).trace.line(N::now_ms(), &node, "namesrv.node.started", "");
            std::future::pending::<()>().await;
        }
        Err(e) => lab(&env.lab).trace.line(N::now_ms(), &node, "namesrv.node.failed", &e.to_string()),
    }
}

async fn run_broker<N: SimNet>(env: SimEnv<N>, opts: BrokerOptions, k: usize, queues: i32) {
    rmq_rt::time::sleep(Duration::from_millis(1)).await;
    let (node, shared) = (env.node.clone(), env.lab.clone());
    let epoch = {
        let mut l = lab(&shared);
        let e = l.broker_epochs.entry(k).or_insert(0);
        *e += 1;
        *e
    };
    let sink_lab = shared.clone();
    let sink_node = node.clone();
    let sink: rmq_broker::EventSink = Box::new(move |e| {
        let mut l = lab(&sink_lab);
        match e {
            rmq_broker_core::Event::CheckpointBegan { .. } => {
                l.checkpointing.insert(k);
            }
            rmq_broker_core::Event::CheckpointCompleted { .. } => {
                l.checkpointing.remove(&k);
            }
            _ => {}
        }
        l.history.broker_event(k, epoch, e);
        l.trace.broker_event(N::now_ms(), &sink_node, e);
    });
    let addr = opts.core.broker_addr.clone();
    let slave = opts.core.broker_role == BrokerRole::Slave;
    match rmq_broker::start_observed(env.clone(), opts, Some(sink)).await {
        Ok(_h) => {
            lab(&shared).trace.line(N::now_ms(), &node, "broker.node.started", "");
            // The operator's mqadmin updateTopic, as the fast lane does at boot.
            let create = rmq_proto::header::CreateTopicRequestHeader {
                topic: TOPIC.into(),
                default_topic: "TBW102".into(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: 6,
                topic_filter_type: "SINGLE_TAG".into(),
                topic_sys_flag: None,
                order: false,
            };
            let req = RemotingCommand::request_with(RequestCode::UpdateAndCreateTopic, 0, &create);
            // A slave learns the topic from its master's log and metadata.
            if slave {
                std::future::pending::<()>().await;
            }
            if let Err(e) = RemotingClient::new(env).invoke(&addr, req, 3_000).await {
                lab(&shared).trace.line(N::now_ms(), &node, "broker.topic.create_failed", &e.to_string());
            }
            std::future::pending::<()>().await;
        }
        Err(e) => lab(&shared).trace.line(N::now_ms(), &node, "broker.node.failed", &e.to_string()),
    }
}

async fn run_producer<N: SimNet>(env: SimEnv<N>, cfg: ClientConfig, k: u32, s: Arc<Scenario>) {
    let (messages, interval_ms, body_bytes) = (s.messages, s.send_interval_ms, s.body_bytes);
    let hot = |key: &str| s.is_hot(key);
    // Clients start at 100 ms (plus a step per client), as in the fast lane.
    rmq_rt::time::sleep(Duration::from_millis(100 + u64::from(k))).await;
    let (node, shared) = (env.node.clone(), env.lab.clone());
    let sender = if s.transactional {
        // The checker reads the application's record of each local transaction.
        let (lab_c, node_c, sc) = (shared.clone(), node.clone(), s.clone());
        let checker = move |half: &rmq_client::MessageExt| {
            let key = message_key(&half.properties);
            let mut l = lab(&lab_c);
            let t = N::now_ms();
            let state = l.history.tx_check(&sc, &key, t);
            l.trace.line(t, &node_c, "client.transaction.checked", &format!("key={key} state={state:?}"));
            state
        };
        Sender::Transactional(TransactionProducer::start(env, cfg, checker))
    } else {
        Sender::Plain(Producer::start(env, cfg))
    };
    loop {
        let key = {
            let mut l = lab(&shared);
            let seq = l.next_seq.entry(k).or_insert(0);
            if *seq >= messages {
                break;
            }
            let key = format!("p{k}-{seq}");
            *seq += 1;
            l.history.sent.insert(key.clone());
            l.history.send_began(&key, N::now_ms());
            l.trace.line(N::now_ms(), &node, "client.send.began", &format!("key={key}"));
            key
        };
        let msg = Message::new(TOPIC, crate::oracle::body_for(&key, body_bytes)).with_keys(&key);
        // A hot message goes keyed to one queue, as an orderly producer sends it (`hot_pct`).
        // Orderly runs key every message (`order_keys`).
        let result = match (&sender, crate::oracle::order_key(&key, s.order_keys)) {
            (Sender::Transactional(tp), _) => {
                // The local transaction runs on SEND_OK; its decision is the application's
                // record, and a commit counts from before END_TRANSACTION leaves.
                let local = |_: &Message, _: &rmq_client::SendResult| {
                    let mut l = lab(&shared);
                    let state = s.tx_local(&key);
                    l.history.tx_ledger.insert(key.clone(), state);
                    if state == LocalTransactionState::CommitMessage {
                        l.history.tx_committed(&key, N::now_ms());
                    }
                    l.trace.line(N::now_ms(), &node, "client.transaction.local", &format!("key={key} state={state:?}"));
                    state
                };
                match tp.send_in_transaction(msg, local).await {
                    // Acknowledged: a half message whose transaction commits.
                    Ok(r) if r.state == LocalTransactionState::CommitMessage => Ok(r.send),
                    Ok(r) => {
                        {
                            let mut l = lab(&shared);
                            if r.send.status == SendStatus::SendOk {
                                l.acks += 1;
                            }
                            let line = format!("key={key} status={:?} state={:?}", r.send.status, r.state);
                            l.trace.line(N::now_ms(), &node, "client.transaction.not_committed", &line);
                        }
                        rmq_rt::time::sleep(Duration::from_millis(interval_ms)).await;
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            (Sender::Plain(p), Some(ok)) => p.send_orderly(msg, &ok).await,
            (Sender::Plain(p), None) if hot(&key) => p.send_orderly(msg, HOT_KEY).await,
            (Sender::Plain(p), None) => p.send(msg).await,
        };
        {
            let mut l = lab(&shared);
            let t = N::now_ms();
            match result {
                Ok(r) if r.status == SendStatus::SendOk => {
                    let (queue, offset) = (r.queue.queue_id, r.queue_offset.max(0) as u64);
                    l.history.acked(&key, &r.queue.broker_name, queue, offset, t);
                    l.acks += 1;
                    l.trace.line(t, &node, "client.send.acked", &format!("key={key} queue={queue} offset={offset}"));
                }
                Ok(r) => {
                    l.history.unconfirmed += 1;
                    l.trace.line(t, &node, "client.send.unconfirmed", &format!("key={key} status={:?}", r.status));
                }
                Err(e) => {
                    l.history.send_failed(&key, t);
                    let cause = e.to_string().replace(' ', "_");
                    l.trace.line(t, &node, "client.send.failed", &format!("key={key} cause={cause}"));
                }
            }
        }
        rmq_rt::time::sleep(Duration::from_millis(interval_ms)).await;
    }
    if let Sender::Transactional(tp) = sender {
        // It stays in its group to answer check-backs while the host lives.
        std::future::pending::<()>().await;
        drop(tp);
    }
}

/// A host's producer: plain, or transactional (with its checker).
enum Sender<E: Env> {
    Plain(Producer<E>),
    Transactional(TransactionProducer<E>),
}

async fn run_consumer<N: SimNet>(env: SimEnv<N>, cfg: ClientConfig, k: u32, s: Arc<Scenario>) {
    rmq_rt::time::sleep(Duration::from_millis(100 + u64::from(k))).await;
    let (node, shared) = (env.node.clone(), env.lab.clone());
    let (listener_lab, listener_node) = (shared.clone(), node.clone());
    let orderly = s.orderly;
    let listener = move |msgs: &[rmq_client::MessageExt]| {
        let mut l = lab(&listener_lab);
        let t = N::now_ms();
        let mut result = ConsumeResult::Success;
        for m in msgs {
            let key = message_key(&m.properties);
            l.history.check_body(&key, &m.body, s.body_bytes);
            l.history.delivered(k, &key, m.queue_id, m.queue_offset as u64, t);
            // The application fails some messages (`poison_pct`, `flaky_pct`): the client sends
            // them back for a delayed retry (orderly: retries them in place).
            let failed = s.consume_fails(&key, m.reconsume_times);
            l.history.attempted(&key, m.reconsume_times, failed, t);
            // The broker group by name when there is one (as the producers' acks name it);
            // else by the storing host (the order check then knows fewer earlier positions).
            let broker = if s.brokers <= 1 { "broker-a".to_string() } else { m.store_host.to_string() };
            l.history.processing_began(&listener_node, &key, (broker, m.queue_id, m.queue_offset as u64), t);
            // The last failure is final: the client moves the message to the DLQ and its
            // queue on.
            l.history.processing_ended(&listener_node, &key, !failed || m.reconsume_times >= s.max_reconsume);
            if failed {
                result = ConsumeResult::ReconsumeLater;
                let line = format!("key={key} reconsume={} failed=true", m.reconsume_times);
                l.trace.line(t, &listener_node, "client.message.delivered", &line);
                continue;
            }
            let fresh = !s.idempotent || l.processing_log.insert(key.clone());
            if fresh {
                l.history.processed(&key);
            }
            let line = format!("key={key} queue={} offset={} processed={fresh}", m.queue_id, m.queue_offset);
            l.trace.line(t, &listener_node, "client.message.delivered", &line);
        }
        result
    };
    let subs = [(TOPIC, "*")];
    let started = if orderly {
        PushConsumer::start_orderly(env, cfg, &subs, listener).await
    } else {
        PushConsumer::start(env, cfg, &subs, listener).await
    };
    match started {
        // The consumer lives as long as the host; a crash drops it with the host's runtime.
        Ok(c) => {
            std::future::pending::<()>().await;
            drop(c);
        }
        Err(e) => lab(&shared).trace.line(N::now_ms(), &node, "client.consumer.failed", &e.to_string()),
    }
}
