//! Broker driver: a fixed-order loop that reads a bounded batch of inbound frames, hands them
//! to [`BrokerCore`], then executes its outputs (transmits, flushes, NameServer registrations)
//! and re-arms one timer. Business decisions live in the core.
//!
//! Flushes run after each batch, so every send of the batch shares one flush (group commit).
//!
//! # Layout
//! - [`start`], [`BrokerOptions`], [`BrokerHandle`]: run a broker on any [`Env`].
//! - [`conf`]: RocketMQ broker.conf keys → options.
//! - `bin/mqbroker.rs`: the binary.
//!
//! # Panics: the process aborts
//! Peer input never panics the core (bad requests get response codes). A panic is therefore a
//! bug, and `mqbroker` aborts on it ([`rmq_rt::abort_on_panic`]): the error is logged, the
//! process exits by SIGABRT at once, the kernel releases the port, and a supervisor restarts
//! it; recovery then rebuilds a consistent store from the CommitLog, and nothing acknowledged
//! is lost (acknowledgements follow the flush the mode requires).
//!
//! Why not catch the panic and keep serving: one node loop runs the core for every
//! connection, and a panic can stop it half-way through a request, e.g. after a record was
//! appended to the CommitLog and before it was indexed, or with flush waiters that will never
//! be answered. Serving on from such a state risks acknowledging what is not stored; recovery
//! is the one path that proves the store consistent. Without the abort hook (tests, embedding)
//! the driver still never leaves a zombie: when the node loop unwinds, its [`AcceptGuard`]
//! closes the listener.

pub mod conf;
mod ha;
pub mod metrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use rmq_broker_core::{BrokerConfig, BrokerCore, BrokerRole, Output};
use rmq_rt::server::{accept_loop, encode, AcceptGuard, Outbox, ServerEvent, ServerLimits};
use rmq_rt::{spawn, ConnId, Env, Listener, RemotingClient};
use tokio::sync::{mpsc, watch};

/// Inbound events buffered before connections feel backpressure.
pub const INBOX_MAX: usize = 65_536;
/// Most inbound events handled before outputs (and the shared flush) are executed.
pub const BATCH_MAX: usize = 1_024;
/// Timeout of a registration RPC (RocketMQ: 24 s).
pub const REGISTER_TIMEOUT_MS: u64 = 24_000;

/// How to run one broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Address to listen on (port 0 = ephemeral; the advertised port follows the bound one).
    pub listen: String,
    /// NameServer addresses; the broker registers with every one.
    pub namesrv_addrs: Vec<String>,
    /// storePathRootDir.
    pub store_root: String,
    /// Core settings.
    pub core: BrokerConfig,
    /// What peers may make the broker hold (connections, idle time, memory).
    pub limits: ServerLimits,
    /// Where a master listens for slaves (haListenPort); `None`: the listen port + 1, or an
    /// ephemeral port when the listen port is 0. A slave does not listen.
    pub ha_listen: Option<String>,
    /// Where the Prometheus endpoint listens (metricsExporterType=PROM with
    /// metricsPromExporterHost/Port); `None`: no endpoint.
    pub metrics_listen: Option<String>,
}

/// The HA listen address a master uses by default: RocketMQ's listenPort + 1.
fn default_ha_listen(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some((host, "0")) => format!("{host}:0"),
        Some((host, port)) => format!("{host}:{}", port.parse::<u16>().map_or(0, |p| p.saturating_add(1))),
        None => "0.0.0.0:0".into(),
    }
}

/// A running broker.
#[derive(Debug)]
pub struct BrokerHandle {
    /// The bound address.
    pub local_addr: SocketAddr,
    /// The address advertised to NameServers and in message ids.
    pub advertised_addr: String,
    /// Master: the HA address slaves connect to (haListenPort); `None` on a slave.
    pub ha_addr: Option<String>,
    /// The Prometheus endpoint's bound address, when it is on.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    done: rmq_rt::task::JoinHandle<()>,
}

impl BrokerHandle {
    /// Flushes, persists, unregisters and stops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.done.await;
    }
}

/// Why a broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding or opening storage failed.
    #[error("{0}")]
    Io(std::io::Error),
    /// The store or persisted config is unusable.
    #[error("{0}")]
    Open(rmq_broker_core::OpenError),
}

/// Receives the broker core's events (stores, answers, flushes, offset commits) as they happen.
pub type EventSink = Box<dyn FnMut(&rmq_broker_core::Event) + Send>;

/// Binds, opens (and recovers) the store, and starts serving.
pub async fn start<E: Env>(env: E, opts: BrokerOptions) -> Result<BrokerHandle, StartError> {
    start_observed(env, opts, None).await
}

/// [`start`], handing every core event to `events` (histories for the simulator's oracle,
/// audit logs).
pub async fn start_observed<E: Env>(
    env: E,
    mut opts: BrokerOptions,
    events: Option<EventSink>,
) -> Result<BrokerHandle, StartError> {
    opts.core.record_events |= events.is_some();
    let listen = opts.listen.clone();
    let listener = env
        .bind(&listen)
        .await
        .map_err(|e| StartError::Io(std::io::Error::new(e.kind(), format!("binding {listen}: {e}"))))?;
    let local_addr = listener.local_addr().map_err(StartError::Io)?;
    if opts.core.broker_addr.ends_with(":0") || opts.core.broker_addr.is_empty() {
        let ip = opts.core.broker_addr.rsplit_once(':').map_or("127.0.0.1", |(ip, _)| ip).to_string();
        let ip = if ip.is_empty() || ip == "0.0.0.0" { "127.0.0.1".to_string() } else { ip };
        opts.core.broker_addr = format!("{ip}:{}", local_addr.port());
        opts.core.ha_addr = format!("{ip}:{}", local_addr.port() + 1);
    }
    let (ha_tx, ha_rx) = mpsc::unbounded_channel();
    let ha_accept = if opts.core.broker_role == BrokerRole::Slave {
        None
    } else {
        let ha_listen = opts.ha_listen.clone().unwrap_or_else(|| default_ha_listen(&listen));
        let ha = env
            .bind(&ha_listen)
            .await
            .map_err(|e| StartError::Io(std::io::Error::new(e.kind(), format!("binding HA port {ha_listen}: {e}"))))?;
        let ha_port = ha.local_addr().map_err(StartError::Io)?.port();
        let ip = opts.core.broker_addr.rsplit_once(':').map_or("127.0.0.1", |(ip, _)| ip).to_string();
        opts.core.ha_addr = format!("{ip}:{ha_port}");
        Some(AbortOnDrop(spawn(ha::accept_slaves(ha, ha_tx.clone()))))
    };
    let advertised_addr = opts.core.broker_addr.clone();
    let ha_addr = ha_accept.as_ref().map(|_| opts.core.ha_addr.clone());
    let dir = env.open_dir(&opts.store_root).map_err(StartError::Io)?;
    let mut core = BrokerCore::open(dir, opts.core, env.now_ms()).map_err(StartError::Open)?;
    if let Some(job) = core.prepare_first_log_segment() {
        let bytes = core.config().store.commit_log_segment_bytes;
        tracing::info!(bytes, "warmMapedFileEnable: zero-filling the first CommitLog segment before serving");
        if let Err(e) = env.offload(move || job.run()).await {
            // Nothing is lost: the first put allocates the segment as it would without warming.
            tracing::warn!(error = %e, "the first CommitLog segment could not be warmed");
        }
    }
    let (runtime_tx, runtime_rx) = watch::channel(core.runtime(env.now_ms()));
    let (metrics_addr, metrics_task) = match &opts.metrics_listen {
        Some(addr) => {
            let render: rmq_rt::metrics::Render = std::sync::Arc::new(move || metrics::render(&runtime_rx.borrow()));
            let (bound, task) = rmq_rt::metrics::serve(&env, addr, render).await.map_err(|e| {
                StartError::Io(std::io::Error::new(e.kind(), format!("binding the metrics endpoint {addr}: {e}")))
            })?;
            tracing::info!(%bound, "Prometheus metrics at http://{bound}/metrics");
            (Some(bound), Some(AbortOnDrop(task)))
        }
        None => (None, None),
    };
    let (tx, rx) = mpsc::channel(INBOX_MAX);
    let accept = spawn(accept_loop(listener, tx, opts.limits));
    let (shutdown, stop) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let node = Node {
        namesrv: RemotingClient::new(env.clone()),
        env,
        core,
        done_tx,
        conns: BTreeMap::new(),
        namesrv_addrs: opts.namesrv_addrs,
        events,
        ha_tx,
        ha_slaves: BTreeMap::new(),
        ha_master: None,
        ha_generation: 0,
        _ha_accept: ha_accept,
        runtime: metrics_task.map(|task| (runtime_tx, 0, task)),
    };
    let done = spawn(async move {
        // Dropped when the loop returns or unwinds: the listener closes with the node.
        let mut accept = AcceptGuard::new(accept);
        node.run(rx, done_rx, ha_rx, stop, &mut accept).await;
    });
    tracing::info!(%local_addr, %advertised_addr, "broker started");
    Ok(BrokerHandle { local_addr, advertised_addr, ha_addr, metrics_addr, shutdown, done })
}

/// Blocking work that finished on the blocking pool.
enum Done {
    /// A CommitLog flush: (target offset, every job succeeded).
    Flush(u64, bool),
    /// A checkpoint: (what it covered, every job succeeded).
    Checkpoint(rmq_store::PendingCheckpoint, bool),
}

struct Node<E: Env> {
    env: E,
    core: BrokerCore<E::Dir>,
    /// Completed detached flushes and checkpoints.
    done_tx: mpsc::UnboundedSender<Done>,
    conns: BTreeMap<ConnId, Outbox>,
    namesrv: RemotingClient<E>,
    namesrv_addrs: Vec<String>,
    /// Where core events go, if anyone listens.
    events: Option<EventSink>,
    /// Where HA tasks report (cloned into each).
    ha_tx: mpsc::UnboundedSender<ha::HaEvent>,
    /// Master: each slave's HA writer.
    ha_slaves: BTreeMap<ConnId, mpsc::UnboundedSender<Bytes>>,
    /// Slave: the current connection to the master (generation, reader task, writer).
    ha_master: Option<(u64, AbortOnDrop, Option<mpsc::UnboundedSender<Bytes>>)>,
    /// Slave: generation of the newest connection attempt (older ones' events are stale).
    ha_generation: u64,
    /// Master: the HA accept task, stopped with the node.
    _ha_accept: Option<AbortOnDrop>,
    /// With a metrics endpoint: where its snapshots go, when the last one went, and its task.
    runtime: Option<(watch::Sender<rmq_broker_core::stats::Runtime>, u64, AbortOnDrop)>,
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(rmq_rt::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs flush jobs; false if any failed (each failure is logged).
fn run_jobs(jobs: Vec<rmq_store::FlushJob>, what: &str) -> bool {
    let mut ok = true;
    for job in jobs {
        if let Err(e) = job.run() {
            tracing::error!(error = %e, "{what}");
            ok = false;
        }
    }
    ok
}

impl<E: Env> Node<E> {
    /// Hands the metrics endpoint a fresh snapshot, at most once a second.
    fn publish_runtime(&mut self) {
        let now = self.env.now_ms();
        if let Some((tx, last, _)) = &mut self.runtime {
            if now >= *last + 1_000 {
                *last = now;
                tx.send_replace(self.core.runtime(now));
            }
        }
    }

    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<ServerEvent>,
        mut done: mpsc::UnboundedReceiver<Done>,
        mut ha_events: mpsc::UnboundedReceiver<ha::HaEvent>,
        mut stop: watch::Receiver<bool>,
        accept: &mut AcceptGuard,
    ) {
        self.core.on_timer(self.env.now_ms());
        self.execute_outputs();
        loop {
            let deadline = self.core.next_deadline_ms();
            // Biased: a fixed polling order keeps simulated runs replayable. Completions and
            // timers go before the inbox so a busy inbox never delays an acknowledgement.
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = accept.ended() => break,
                Some(d) = done.recv() => match d {
                    Done::Flush(target, true) => self.core.on_flushed(self.env.now_ms(), target),
                    Done::Flush(_, false) => self.core.on_flush_failed(self.env.now_ms()),
                    Done::Checkpoint(p, ok) => self.core.on_checkpointed(self.env.now_ms(), &p, ok),
                },
                Some(ev) = ha_events.recv() => self.ha_event(ev),
                _ = rmq_rt::sleep_until_ms(&self.env, deadline) => {
                    self.core.on_timer(self.env.now_ms());
                    self.publish_runtime();
                }
                ev = inbox.recv() => {
                    let Some(ev) = ev else { break };
                    self.handle(ev);
                    for _ in 1..BATCH_MAX {
                        match inbox.try_recv() {
                            Ok(ev) => self.handle(ev),
                            Err(_) => break,
                        }
                    }
                }
            }
            self.execute_outputs();
        }
        self.stop().await;
    }

    fn handle(&mut self, ev: ServerEvent) {
        let now = self.env.now_ms();
        match ev {
            ServerEvent::Accepted { conn, peer, outbox } => {
                self.conns.insert(conn, outbox);
                self.core.on_conn_opened(now, conn, peer);
            }
            ServerEvent::Frame { conn, cmd } => self.core.on_request(now, conn, cmd),
            ServerEvent::Closed { conn } => {
                self.conns.remove(&conn);
                self.core.on_conn_closed(now, conn);
            }
        }
    }

    fn execute_outputs(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { conn, cmd } => self.transmit(conn, &cmd),
                Output::Flush => self.flush(),
                Output::Checkpoint => self.checkpoint(),
                Output::RegisterBroker(cmd) => self.register(cmd),
                Output::HaTransmit { conn, offset, bytes } => {
                    if let Some(tx) = self.ha_slaves.get(&conn) {
                        let _ = tx.send(ha::transfer_frame(offset, &bytes));
                    }
                }
                Output::HaClose { conn, reason } => {
                    tracing::warn!(conn = conn.0, %reason, "closing a slave's HA connection");
                    self.ha_slaves.remove(&conn);
                    self.core.on_ha_slave_closed(self.env.now_ms(), conn);
                }
                Output::HaConnect { addr } => {
                    self.ha_generation += 1;
                    let (env, events, generation) = (self.env.clone(), self.ha_tx.clone(), self.ha_generation);
                    let idle = self.core.config().ha_housekeeping_ms;
                    let task = spawn(ha::connect_master(env, addr, generation, idle, events));
                    self.ha_master = Some((generation, AbortOnDrop(task), None));
                }
                Output::HaReport { offset } => {
                    if let Some((_, _, Some(tx))) = &self.ha_master {
                        let _ = tx.send(Bytes::copy_from_slice(&offset.to_be_bytes()));
                    }
                }
                Output::HaDisconnect { reason } => {
                    tracing::warn!(%reason, "closing the HA connection to the master");
                    self.ha_master = None;
                    self.core.on_ha_master_closed(self.env.now_ms());
                }
                Output::MasterRequest { addr, cmd } => {
                    let (client, events) = (self.namesrv.clone(), self.ha_tx.clone());
                    spawn(async move {
                        let opaque = cmd.opaque;
                        match client.invoke(&addr, cmd, REGISTER_TIMEOUT_MS).await {
                            Ok(mut r) => {
                                r.opaque = opaque;
                                let _ = events.send(ha::HaEvent::Answer(r));
                            }
                            Err(e) => tracing::warn!(%addr, error = %e, "metadata copy from the master failed"),
                        }
                    });
                }
            }
        }
        if let Some(sink) = &mut self.events {
            for e in self.core.drain_events() {
                sink(&e);
            }
        }
    }

    /// Starts the requested flush: a small SYNC_FLUSH group commit runs here
    /// ([`rmq_broker_core::PendingFlush::inline`]);
    /// other detached jobs run on the blocking pool while this loop keeps taking sends, which
    /// the next flush then covers together (group commit).
    fn flush(&mut self) {
        match self.core.begin_flush() {
            Ok(p) if p.jobs.is_empty() => self.core.on_flushed(self.env.now_ms(), p.target),
            // A SYNC_FLUSH group commit: synced here, its senders answered in this same pass
            // (a simulated runtime offloads it like any flush: see `Env::inline_storage_work`).
            Ok(p) if p.inline && self.env.inline_storage_work() => {
                if run_jobs(p.jobs, "flush failed; covered sends stay unanswered until a flush succeeds") {
                    self.core.on_flushed(self.env.now_ms(), p.target);
                } else {
                    self.core.on_flush_failed(self.env.now_ms());
                }
            }
            Ok(p) => {
                let (tx, target) = (self.done_tx.clone(), p.target);
                self.env.offload_then(
                    move || run_jobs(p.jobs, "flush failed; covered sends stay unanswered until a flush succeeds"),
                    move |ok| {
                        let _ = tx.send(Done::Flush(target, ok));
                    },
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "flush could not start");
                self.core.on_flush_failed(self.env.now_ms());
            }
        }
    }

    /// Starts the periodic ConsumeQueue flush + checkpoint on the blocking pool.
    fn checkpoint(&mut self) {
        match self.core.begin_checkpoint() {
            Ok(mut p) => {
                let jobs = std::mem::take(&mut p.jobs);
                let (tx, env) = (self.done_tx.clone(), self.env.clone());
                spawn(async move {
                    let ok = env.offload(move || run_jobs(jobs, "checkpoint flush failed")).await;
                    let _ = tx.send(Done::Checkpoint(p, ok));
                });
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint could not start"),
        }
    }

    fn ha_event(&mut self, ev: ha::HaEvent) {
        let now = self.env.now_ms();
        let current = |g: u64, m: &Option<(u64, AbortOnDrop, Option<mpsc::UnboundedSender<Bytes>>)>| {
            m.as_ref().is_some_and(|(cur, _, _)| *cur == g)
        };
        match ev {
            ha::HaEvent::SlaveOpened { conn, tx } => {
                self.ha_slaves.insert(conn, tx);
                self.core.on_ha_slave_opened(now, conn);
            }
            ha::HaEvent::SlaveReport { conn, offset } => self.core.on_ha_slave_report(now, conn, offset),
            ha::HaEvent::SlaveClosed { conn } => {
                if self.ha_slaves.remove(&conn).is_some() {
                    self.core.on_ha_slave_closed(now, conn);
                }
            }
            ha::HaEvent::MasterConnected { generation, tx } if current(generation, &self.ha_master) => {
                if let Some(m) = &mut self.ha_master {
                    m.2 = Some(tx);
                }
                self.core.on_ha_master_connected(now);
            }
            ha::HaEvent::MasterData { generation, offset, bytes } if current(generation, &self.ha_master) => {
                self.core.on_ha_master_data(now, offset, &bytes);
            }
            ha::HaEvent::MasterClosed { generation } if current(generation, &self.ha_master) => {
                self.ha_master = None;
                self.core.on_ha_master_closed(now);
            }
            ha::HaEvent::Answer(r) => self.core.on_response(now, &r),
            // Events of a connection already replaced.
            ha::HaEvent::MasterConnected { .. } | ha::HaEvent::MasterData { .. } | ha::HaEvent::MasterClosed { .. } => {
            }
        }
    }

    fn transmit(&mut self, conn: ConnId, cmd: &rmq_proto::RemotingCommand) {
        let Some(out) = self.conns.get(&conn) else { return };
        if let Err(e) = out.send(encode(cmd)) {
            // The connection is closed for real; its reader reports `Closed` to the core.
            tracing::warn!(conn = conn.0, error = %e, "dropping the connection");
            self.conns.remove(&conn);
        }
    }

    fn register(&self, cmd: rmq_proto::RemotingCommand) {
        for addr in &self.namesrv_addrs {
            let (client, addr, cmd) = (self.namesrv.clone(), addr.clone(), cmd.clone());
            let events = self.ha_tx.clone();
            spawn(async move {
                match client.invoke(&addr, cmd, REGISTER_TIMEOUT_MS).await {
                    Ok(mut r) if r.code == 0 => {
                        tracing::info!(%addr, "registered with name server");
                        r.opaque = -1; // Not an answer to a metadata request.
                                       // A slave learns its master's addresses from the answer.
                        let _ = events.send(ha::HaEvent::Answer(r));
                    }
                    Ok(r) => {
                        tracing::warn!(%addr, code = r.code, remark = ?r.remark, "name server refused registration")
                    }
                    Err(e) => tracing::warn!(%addr, error = %e, "registration failed"),
                }
            });
        }
    }

    async fn stop(mut self) {
        let now = self.env.now_ms();
        match self.core.shutdown(now) {
            Ok(off) => tracing::info!(flushed = off, "store flushed"),
            Err(e) => tracing::error!(error = %e, "final flush failed"),
        }
        self.execute_outputs();
        let unreg = self.core.unregistration();
        for addr in &self.namesrv_addrs {
            let _ = self.namesrv.invoke(addr, unreg.clone(), 3_000).await;
        }
    }
}
