//! The full-stack lane: turmoil hosts run the real drivers (`rmq_namesrv::start`,
//! `rmq_broker::start_observed`) and the real client library (`Producer`, `PushConsumer`) over
//! [`TurmoilEnv`]: turmoil's simulated TCP, its virtual clock, a [`SimDisk`] per broker, and a
//! frame-level fault layer ([`FaultyStream`]) for loss and duplication. Same scenario files and
//! same oracle as the fast lane.
//!
//! Determinism: every host runs on turmoil's one thread; drivers poll `select!` in a fixed
//! order; blocking storage work runs inside the simulation through [`Env::offload`] (after the
//! flush lag, which is also when its pages become durable); all randomness comes from the
//! seed. A seed therefore replays bit for bit, and the run prints a trace digest.
//!
//! What this lane cannot express is refused up front by [`refusal`], never downgraded.

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
use rmq_client::{ClientConfig, ConsumeFromWhere, ConsumeResult, Message, Producer, PushConsumer, SendStatus};
use rmq_proto::codes::RequestCode;
use rmq_proto::RemotingCommand;
use rmq_rt::{Env, Listener, RemotingClient};
use rmq_store::MessageStore;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::disk::{CrashMode, SimDisk};
use crate::oracle::{check_run, message_key, History, Promise};
use crate::scenario::{node_name, Fault, Replication, Scenario, Trigger};
use crate::trace::Trace;
use crate::world::{EPOCH_MS, TOPIC};
use crate::RunReport;

const NS_PORT: u16 = 9876;
const BROKER_PORT: u16 = 10911;
/// Turmoil's step: every host runs once per step. 2 ms halves the per-step cost of 1 ms (the
/// lane's main cost) and keeps every scenario's verdict; latencies are rounded up to a step.
const TICK_MS: u64 = 2;
/// Simulated time the run goes on after the scenario's end while turmoil winds down (unused
/// steps are never taken).
const SIM_SLACK_MS: u64 = 10_000;

/// Why a scenario cannot run in the stack lane.
///
/// - `pause`: turmoil can hold a host's links but cannot stop its runtime, so a paused node's
///   timers would still fire (flush waiters expire, clients time out): that is a network
///   freeze, not a stopped process, and running it would silently test something else.
/// - `crash … on flush|checkpoint` of a node that is not a broker: only brokers flush.
pub fn refusal(s: &Scenario) -> Option<String> {
    for (at, f) in &s.faults {
        match f {
            Fault::Pause(node, _) => {
                return Some(format!(
                "`at {at} pause {node}`: turmoil cannot stop a host's timers, only hold its links (use the fast lane)"
            ))
            }
            Fault::CrashOn(node, Trigger::Flush | Trigger::Checkpoint)
                if !node.starts_with("broker") && !node.starts_with("slave") =>
            {
                return Some(format!("`at {at} crash {node} on …`: only brokers flush or checkpoint"));
            }
            _ => {}
        }
    }
    None
}

/// State every host of one run shares: the history the oracle reads, the trace, the network
/// fault RNG and the producers' progress. One thread runs every host, so the lock is never
/// contended; it only satisfies `Send`.
#[derive(Debug)]
struct Lab {
    rng: ChaCha8Rng,
    trace: Trace,
    history: History,
    /// Next message index per producer (a restarted producer resumes after the last one begun).
    next_seq: BTreeMap<u32, u32>,
    /// The idempotent group's processing log (message keys), kept across consumer crashes.
    processing_log: BTreeSet<String>,
    /// SEND_OKs received so far (for `crash … on ack`).
    acks: u64,
    /// Brokers with a checkpoint in flight (for `crash … on checkpoint`).
    checkpointing: BTreeSet<usize>,
    /// Starts of each broker (its epoch for offset-monotonicity checks).
    broker_epochs: BTreeMap<usize, u64>,
    /// The node whose software is being torn down by a crash right now.
    crashing: Option<String>,
    /// Sockets of the crashing node, parked by stream id as tokio drops their tasks (in an order
    /// that depends on process-wide task ids, so a second run in the same process would
    /// differ); its [`Reaper`] closes them in id order.
    graveyard: BTreeMap<u64, (String, turmoil::net::TcpStream)>,
    /// Id of the next stream.
    next_stream: u64,
}

/// Owned by each host's main future, which turmoil drops last when the host crashes: closes
/// the sockets its tasks left in the graveyard, in the order they were opened, so peers see
/// the resets in an order the seed decides.
struct Reaper {
    node: String,
    lab: Shared,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let sockets: Vec<turmoil::net::TcpStream> = {
            let mut l = lab(&self.lab);
            let ids: Vec<u64> = l.graveyard.iter().filter(|(_, (n, _))| *n == self.node).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| l.graveyard.remove(&id)).map(|(_, s)| s).collect()
        };
        for socket in sockets {
            drop(socket);
        }
    }
}

type Shared = Arc<Mutex<Lab>>;

fn lab(shared: &Shared) -> MutexGuard<'_, Lab> {
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_sim_ms() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

/// The runtime for drivers on turmoil hosts.
#[derive(Debug, Clone)]
pub struct TurmoilEnv {
    node: String,
    disk: SimDisk,
    seed: u64,
    pid: u32,
    skew_ms: i64,
    flush_lag_ms: u64,
    drop_pct: u32,
    dup_pct: u32,
    net_faults_end_ms: u64,
    lab: Shared,
}

/// A turmoil listener whose accepted streams pass through the fault layer.
pub struct TurmoilListener {
    inner: turmoil::net::TcpListener,
    env: TurmoilEnv,
}

impl std::fmt::Debug for TurmoilListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurmoilListener")
    }
}

impl Listener for TurmoilListener {
    type Stream = FaultyStream;
    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, a) = self.inner.accept().await?;
        Ok((self.env.wrap(s), a))
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl TurmoilEnv {
    fn wrap(&self, inner: turmoil::net::TcpStream) -> FaultyStream {
        let id = {
            let mut l = lab(&self.lab);
            l.next_stream += 1;
            l.next_stream
        };
        // The frame-level loss and duplication layer reads remoting frames; an HA stream
        // (raw offsets and CommitLog bytes) is a plain TCP stream that never loses or repeats
        // bytes, so it passes untouched (partitions and crashes still cut it).
        let ha_port = |a: io::Result<SocketAddr>| a.is_ok_and(|a| a.port() == BROKER_PORT + 1);
        let ha = ha_port(inner.local_addr()) || ha_port(inner.peer_addr());
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

impl Env for TurmoilEnv {
    type Stream = FaultyStream;
    type Listener = TurmoilListener;
    type Dir = SimDisk;

    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        let (addr, env) = (addr.to_string(), self.clone());
        async move { Ok(TurmoilListener { inner: turmoil::net::TcpListener::bind(addr).await?, env }) }
    }

    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let (addr, env) = (addr.to_string(), self.clone());
        async move { Ok(env.wrap(turmoil::net::TcpStream::connect(addr).await?)) }
    }

    fn now_ms(&self) -> u64 {
        (EPOCH_MS + now_sim_ms()).saturating_add_signed(self.skew_ms)
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
            tokio::time::sleep(Duration::from_millis(lag_ms)).await;
            work()
        }
    }

    fn process_id(&self) -> u32 {
        self.pid
    }
}

/// A turmoil stream with frame-level loss and duplication on its read side, as the fast lane's
/// network applies them: whole remoting frames (4-byte length prefix) vanish or arrive twice.
pub struct FaultyStream {
    /// The socket (taken only when the stream is dropped).
    inner: Option<turmoil::net::TcpStream>,
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

impl FaultyStream {
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
                let t = now_sim_ms();
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

impl Drop for FaultyStream {
    fn drop(&mut self) {
        let mut l = lab(&self.lab);
        if l.crashing.as_deref() == Some(self.node.as_str()) {
            if let Some(socket) = self.inner.take() {
                l.graveyard.insert(self.id, (self.node.clone(), socket));
            }
        }
    }
}

/// Runs `f` on the socket (present until the stream is dropped).
fn with_socket<T>(
    inner: &mut Option<turmoil::net::TcpStream>,
    f: impl FnOnce(Pin<&mut turmoil::net::TcpStream>) -> Poll<io::Result<T>>,
) -> Poll<io::Result<T>> {
    match inner.as_mut() {
        Some(s) => f(Pin::new(s)),
        None => Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "stream closed"))),
    }
}

impl AsyncRead for FaultyStream {
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

impl AsyncWrite for FaultyStream {
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
struct Topology {
    namesrvs: Vec<String>,
    /// Broker hosts: the masters of the groups (`broker`, `broker1`, …), then their slaves
    /// (`slave`, `slave1`, …) with replication.
    brokers: Vec<String>,
    /// Broker groups.
    groups: usize,
    producers: Vec<String>,
    consumers: Vec<String>,
}

impl Topology {
    fn of(s: &Scenario) -> Self {
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

    fn namesrv_addrs(&self) -> Vec<String> {
        self.namesrvs.iter().map(|n| format!("{n}:{NS_PORT}")).collect()
    }
}

fn broker_options(s: &Scenario, topo: &Topology, k: usize) -> BrokerOptions {
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
        ..Default::default()
    };
    if k >= topo.groups {
        core.broker_id = 1;
        core.broker_role = BrokerRole::Slave;
        core.ha_master_addr = Some(format!("{}:{}", topo.brokers[group], BROKER_PORT + 1));
    }
    core.store.commit_log_segment_bytes = 256 * 1024;
    core.store.consume_queue_segment_entries = 1_024;
    BrokerOptions {
        listen: format!("0.0.0.0:{BROKER_PORT}"),
        namesrv_addrs: topo.namesrv_addrs(),
        store_root: "store".into(),
        core,
        limits: Default::default(),
        ha_listen: None,
    }
}

fn client_config(namesrvs: &[String], group: &str, instance: &str) -> ClientConfig {
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

/// What one stack-lane run needs while it builds its hosts.
struct Build<'a> {
    s: &'a Scenario,
    topo: &'a Topology,
    lab: Shared,
    disks: Arc<Mutex<Vec<SimDisk>>>,
}

impl Build<'_> {
    fn env(&self, node: &str, seed: u64, disk: SimDisk) -> TurmoilEnv {
        TurmoilEnv {
            node: node.to_string(),
            disk,
            seed,
            pid: 1_000 + seed as u32,
            skew_ms: self.s.clock_skew_ms.get(node).copied().unwrap_or(0),
            flush_lag_ms: self.s.flush_lag_ms,
            drop_pct: self.s.drop_pct,
            dup_pct: self.s.dup_pct,
            net_faults_end_ms: self.s.net_faults_end_ms(),
            lab: self.lab.clone(),
        }
    }

    fn namesrv(&self, sim: &mut turmoil::Sim<'_>, k: usize) {
        let env = self.env(&self.topo.namesrvs[k], 1 + k as u64, SimDisk::default());
        sim.host(self.topo.namesrvs[k].as_str(), move || {
            let env = env.clone();
            async move {
                let _reaper = Reaper { node: env.node.clone(), lab: env.lab.clone() };
                let trace_node = env.node.clone();
                match rmq_namesrv::start(env.clone(), &format!("0.0.0.0:{NS_PORT}"), Default::default()).await {
                    Ok(_h) => {
                        lab(&env.lab).trace.line(now_sim_ms(), &trace_node, "namesrv.node.started", "");
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        lab(&env.lab).trace.line(now_sim_ms(), &trace_node, "namesrv.node.failed", &e.to_string())
                    }
                }
                Ok(())
            }
        });
    }

    fn broker(&self, sim: &mut turmoil::Sim<'_>, k: usize) {
        let opts = broker_options(self.s, self.topo, k);
        let base = self.env(&self.topo.brokers[k], 10 + k as u64, SimDisk::default());
        let (disks, queues) = (self.disks.clone(), self.s.queues);
        sim.host(self.topo.brokers[k].as_str(), move || {
            let mut env = base.clone();
            env.disk = disks.lock().expect("disk slots")[k].clone();
            let opts = opts.clone();
            async move { run_broker(env, opts, k, queues).await }
        });
    }

    fn producer(&self, sim: &mut turmoil::Sim<'_>, k: usize) {
        let env = self.env(&self.topo.producers[k], 100 + k as u64, SimDisk::default());
        let cfg = client_config(&self.topo.namesrv_addrs(), "PG", &self.topo.producers[k]);
        let (messages, interval_ms) = (self.s.messages, self.s.send_interval_ms);
        sim.host(self.topo.producers[k].as_str(), move || {
            let (env, cfg) = (env.clone(), cfg.clone());
            async move {
                let _reaper = Reaper { node: env.node.clone(), lab: env.lab.clone() };
                run_producer(env, cfg, k as u32, messages, interval_ms).await;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }

    fn consumer(&self, sim: &mut turmoil::Sim<'_>, k: usize) {
        let env = self.env(&self.topo.consumers[k], 200 + k as u64, SimDisk::default());
        let cfg = client_config(&self.topo.namesrv_addrs(), "G", &self.topo.consumers[k]);
        let idempotent = self.s.idempotent;
        sim.host(self.topo.consumers[k].as_str(), move || {
            let (env, cfg) = (env.clone(), cfg.clone());
            async move {
                let _reaper = Reaper { node: env.node.clone(), lab: env.lab.clone() };
                run_consumer(env, cfg, k as u32, idempotent).await;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
}

async fn run_broker(env: TurmoilEnv, opts: BrokerOptions, k: usize, queues: i32) -> turmoil::Result {
    let _reaper = Reaper { node: env.node.clone(), lab: env.lab.clone() };
    tokio::time::sleep(Duration::from_millis(1)).await;
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
        l.trace.broker_event(now_sim_ms(), &sink_node, e);
    });
    let addr = opts.core.broker_addr.clone();
    let slave = opts.core.broker_role == BrokerRole::Slave;
    match rmq_broker::start_observed(env.clone(), opts, Some(sink)).await {
        Ok(_h) => {
            lab(&shared).trace.line(now_sim_ms(), &node, "broker.node.started", "");
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
                lab(&shared).trace.line(now_sim_ms(), &node, "broker.topic.create_failed", &e.to_string());
            }
            std::future::pending::<()>().await;
        }
        Err(e) => lab(&shared).trace.line(now_sim_ms(), &node, "broker.node.failed", &e.to_string()),
    }
    Ok(())
}

async fn run_producer(env: TurmoilEnv, cfg: ClientConfig, k: u32, messages: u32, interval_ms: u64) {
    // Clients start at 100 ms (plus a step per client), as in the fast lane.
    tokio::time::sleep(Duration::from_millis(100 + u64::from(k))).await;
    let (node, shared) = (env.node.clone(), env.lab.clone());
    let producer = Producer::start(env, cfg);
    loop {
        let key = {
            let mut l = lab(&shared);
            let seq = l.next_seq.entry(k).or_insert(0);
            if *seq >= messages {
                return;
            }
            let key = format!("p{k}-{seq}");
            *seq += 1;
            l.history.sent.insert(key.clone());
            l.trace.line(now_sim_ms(), &node, "client.send.began", &format!("key={key}"));
            key
        };
        let msg = Message::new(TOPIC, key.clone().into_bytes()).with_keys(&key);
        let result = producer.send(msg).await;
        {
            let mut l = lab(&shared);
            let t = now_sim_ms();
            match result {
                Ok(r) if r.status == SendStatus::SendOk => {
                    let (queue, offset) = (r.queue.queue_id, r.queue_offset.max(0) as u64);
                    l.history.acked(&key, queue, offset, t);
                    l.acks += 1;
                    l.trace.line(t, &node, "client.send.acked", &format!("key={key} queue={queue} offset={offset}"));
                }
                Ok(r) => {
                    l.history.unconfirmed += 1;
                    l.trace.line(t, &node, "client.send.unconfirmed", &format!("key={key} status={:?}", r.status));
                }
                Err(e) => {
                    l.history.failed += 1;
                    let cause = e.to_string().replace(' ', "_");
                    l.trace.line(t, &node, "client.send.failed", &format!("key={key} cause={cause}"));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
    }
}

async fn run_consumer(env: TurmoilEnv, cfg: ClientConfig, k: u32, idempotent: bool) {
    tokio::time::sleep(Duration::from_millis(100 + u64::from(k))).await;
    let (node, shared) = (env.node.clone(), env.lab.clone());
    let (listener_lab, listener_node) = (shared.clone(), node.clone());
    let started = PushConsumer::start(env, cfg, &[(TOPIC, "*")], move |msgs| {
        let mut l = lab(&listener_lab);
        let t = now_sim_ms();
        for m in msgs {
            let key = message_key(&m.properties);
            l.history.delivered(k, &key, m.queue_id, m.queue_offset as u64, t);
            let fresh = !idempotent || l.processing_log.insert(key.clone());
            if fresh {
                l.history.processed(&key);
            }
            let line = format!("key={key} queue={} offset={} processed={fresh}", m.queue_id, m.queue_offset);
            l.trace.line(t, &listener_node, "client.message.delivered", &line);
        }
        ConsumeResult::Success
    })
    .await;
    match started {
        // The consumer lives as long as the host; a crash drops it with the host's runtime.
        Ok(c) => {
            std::future::pending::<()>().await;
            drop(c);
        }
        Err(e) => lab(&shared).trace.line(now_sim_ms(), &node, "client.consumer.failed", &e.to_string()),
    }
}

/// Runs a scenario in the full-stack lane and judges it with the shared oracle.
pub fn run_stack(s: &Scenario, seed: u64, keep_trace: bool) -> Result<RunReport, String> {
    if let Some(why) = s.unknown_node().or_else(|| refusal(s)) {
        return Err(why);
    }
    let topo = Topology::of(s);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_millis(s.duration_ms + SIM_SLACK_MS))
        .min_message_latency(Duration::from_millis(s.latency_ms.max(1)))
        .max_message_latency(Duration::from_millis(s.latency_ms.max(1) + s.jitter_ms))
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(TICK_MS))
        .build();
    let shared: Shared = Arc::new(Mutex::new(Lab {
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0x4e45_5446_4155_4c54),
        trace: Trace::new(keep_trace),
        history: History::default(),
        next_seq: BTreeMap::new(),
        processing_log: BTreeSet::new(),
        acks: 0,
        broker_epochs: BTreeMap::new(),
        checkpointing: BTreeSet::new(),
        crashing: None,
        graveyard: BTreeMap::new(),
        next_stream: 0,
    }));
    // One disk per broker (`vec![disk; n]` would share one: clones share state).
    let disks = Arc::new(Mutex::new((0..topo.brokers.len()).map(|_| SimDisk::default()).collect::<Vec<_>>()));
    let build = Build { s, topo: &topo, lab: shared.clone(), disks: disks.clone() };
    for k in 0..topo.namesrvs.len() {
        build.namesrv(&mut sim, k);
    }
    for k in 0..topo.brokers.len() {
        build.broker(&mut sim, k);
    }
    for k in 0..topo.producers.len() {
        build.producer(&mut sim, k);
    }
    for k in 0..topo.consumers.len() {
        build.consumer(&mut sim, k);
    }
    let mut faults = s.faults.clone().into_iter().peekable();
    let mut crash_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4352_4153_4800_0000);
    let mut partitioned: Vec<(String, String, bool)> = Vec::new();
    let mut armed: BTreeMap<String, (Trigger, u64)> = BTreeMap::new();
    let mut down: BTreeSet<String> = BTreeSet::new();
    let mut events = 0u64;
    let mode = CrashMode { writeback_pct: s.writeback_pct, tear: s.tear };
    loop {
        let now = sim.elapsed().as_millis() as u64;
        if now >= s.duration_ms {
            break;
        }
        // Armed crashes whose moment has come.
        let (acks, checkpointing) = {
            let l = lab(&shared);
            (l.acks, l.checkpointing.clone())
        };
        let due: Vec<String> = armed
            .iter()
            .filter(|(node, (what, acks_then))| {
                let disk =
                    topo.brokers.iter().position(|b| b == *node).map(|k| disks.lock().expect("disk slots")[k].clone());
                match what {
                    Trigger::Flush => disk.is_some_and(|d| d.flushes_in_flight() > 0),
                    Trigger::Checkpoint => {
                        topo.brokers.iter().position(|b| b == *node).is_some_and(|k| checkpointing.contains(&k))
                    }
                    Trigger::Ack => acks > *acks_then,
                    // Set to the restart time + 1 ms when the node restarts: it has begun its
                    // recovery and not finished settling.
                    Trigger::Recovery => *acks_then > 0 && now >= *acks_then,
                }
            })
            .map(|(n, _)| n.clone())
            .collect();
        for node in due {
            let (what, _) = armed.remove(&node).expect("due triggers are armed");
            lab(&shared).trace.line(now, &node, "sim.trigger.fired", &format!("on={}", what.word()));
            crash(&mut sim, &topo, &disks, &shared, &mut down, &node, mode, &mut crash_rng, now);
        }
        while faults.peek().is_some_and(|(at, _)| *at <= now) {
            let (_, f) = faults.next().expect("peeked");
            events += 1;
            match f {
                Fault::Pause(..) => unreachable!("refused before the run"),
                Fault::Wipe(node) => {
                    // Only a crashed broker's disk is swapped for an empty one.
                    let slot = topo.brokers.iter().position(|b| *b == node).filter(|_| down.contains(&node));
                    if let Some(k) = slot {
                        disks.lock().expect("disk slots")[k] = SimDisk::default();
                        lab(&shared).trace.line(now, &node, "sim.disk.wiped", "");
                    } else {
                        lab(&shared).trace.line(now, &node, "sim.wipe.skipped", "reason=node-up");
                    }
                }
                Fault::Crash(node) => {
                    crash(&mut sim, &topo, &disks, &shared, &mut down, &node, mode, &mut crash_rng, now);
                }
                Fault::Restart(node) => {
                    if !down.contains(&node) {
                        // An aimed crash that found no moment before this restart is withdrawn.
                        if let Some((what, _)) = armed.remove(&node) {
                            lab(&shared).trace.line(now, &node, "sim.trigger.expired", &format!("on={}", what.word()));
                        }
                    }
                    if down.remove(&node) {
                        sim.bounce(node.as_str());
                        lab(&shared).trace.line(now, &node, "sim.node.restarted", "");
                        if let Some((Trigger::Recovery, at)) = armed.get_mut(&node) {
                            *at = now + 1;
                        }
                    }
                }
                Fault::CrashOn(node, what) => {
                    lab(&shared).trace.line(now, &node, "sim.trigger.armed", &format!("on={}", what.word()));
                    // For `ack`: the acknowledgements counted so far; for `recovery`: when the
                    // next restart happened (0 until then).
                    let mark = if what == Trigger::Recovery { 0 } else { lab(&shared).acks };
                    armed.insert(node, (what, mark));
                }
                Fault::Partition(a, b) => {
                    sim.partition(a.as_str(), b.as_str());
                    lab(&shared).trace.line(now, "sim", "sim.net.partitioned", &format!("a={a} b={b}"));
                    partitioned.push((a, b, false));
                }
                Fault::PartitionOneWay(a, b) => {
                    sim.partition_oneway(a.as_str(), b.as_str());
                    lab(&shared).trace.line(now, "sim", "sim.net.partitioned", &format!("from={a} to={b} oneway=true"));
                    partitioned.push((a, b, true));
                }
                Fault::Heal => {
                    for (a, b, oneway) in partitioned.drain(..) {
                        if oneway {
                            sim.repair_oneway(a.as_str(), b.as_str());
                        } else {
                            sim.repair(a.as_str(), b.as_str());
                        }
                    }
                    lab(&shared).trace.line(now, "sim", "sim.net.healed", "");
                }
            }
        }
        sim.step().map_err(|e| format!("turmoil: {e}"))?;
        events += 1;
    }
    let simulated_ms = sim.elapsed().as_millis() as u64;
    let mut l = lab(&shared);
    let disks = disks.lock().expect("disk slots").clone();
    let mut opened = Vec::new();
    for (k, name) in topo.brokers.iter().enumerate() {
        if down.contains(name) {
            continue;
        }
        let config = broker_options(s, &topo, k).core.store;
        let (store, _) = MessageStore::open(disks[k].snapshot_live(), config)
            .map_err(|e| format!("{name}: reading its store at the end failed: {e}"))?;
        opened.push((name.as_str(), store));
    }
    let stores: Vec<(&str, &MessageStore<SimDisk>)> = opened.iter().map(|(n, st)| (*n, st)).collect();
    // A group is down when none of its members (master, slave) is up.
    let groups_down = (0..topo.groups)
        .filter(|g| topo.brokers.iter().enumerate().all(|(k, b)| k % topo.groups != *g || down.contains(b)))
        .count();
    let findings = check_run(&l.history, &stores, groups_down, s.queues, &Promise::of(s));
    let l = &mut *l;
    Ok(RunReport::new(s, seed, crate::Lane::Stack, &l.history, &mut l.trace, events, simulated_ms, findings))
}

/// Power loss of a host: its software stops, its connections reset, and a broker's disk keeps
/// only what the crash model lets survive.
#[allow(clippy::too_many_arguments)]
fn crash(
    sim: &mut turmoil::Sim<'_>,
    topo: &Topology,
    disks: &Arc<Mutex<Vec<SimDisk>>>,
    shared: &Shared,
    down: &mut BTreeSet<String>,
    node: &str,
    mode: CrashMode,
    rng: &mut ChaCha8Rng,
    now: u64,
) {
    if !down.insert(node.to_string()) {
        return;
    }
    // The node's sockets go to the graveyard as turmoil drops its tasks; its Reaper, dropped
    // last, closes them in opening order.
    lab(shared).crashing = Some(node.to_string());
    sim.crash(node);
    lab(shared).crashing = None;
    let mut detail = String::new();
    if let Some(k) = topo.brokers.iter().position(|b| b == node) {
        lab(shared).checkpointing.remove(&k);
        let mut slots = disks.lock().expect("disk slots");
        detail = format!("dirty_pages={}", slots[k].dirty_pages());
        slots[k] = slots[k].crash(mode, rng);
    }
    let mut l = lab(shared);
    l.history.crashes += 1;
    l.trace.line(now, node, "sim.node.crashed", &detail);
}
