//! NameServer driver: shuttles frames between connections and [`NamesrvCore`], and fires its
//! timer. No routing decision is made here.
//!
//! # Layout
//! - [`start`]: bind, spawn the accept loop and the node loop, return a [`NamesrvHandle`].
//! - [`conf`]: namesrv.conf keys.
//! - `bin/mqnamesrv.rs`: the binary (flags, config file, signals).
//!
//! # Panics: the process aborts
//! Peer input never panics the core (bad requests get response codes). A panic is therefore a
//! bug, and `mqnamesrv` aborts on it ([`rmq_rt::abort_on_panic`]): the error is logged, the
//! process exits by SIGABRT at once, the kernel releases the port, and a supervisor restarts
//! it. Brokers re-register within 30 s, so a restarted NameServer has its routes back quickly.
//!
//! Why not catch the panic and keep serving: one node loop runs the core for every
//! connection, and a panic can stop it half-way through a request (the panic this policy was
//! written for fired *after* a registration had updated some tables and not others). Serving on
//! from tables nobody can vouch for spreads wrong routes to every client; a restart rebuilds
//! them from the brokers. Without the abort hook (tests, embedding) the driver still never
//! leaves a zombie: when the node loop unwinds, its [`AcceptGuard`] closes the listener.

pub mod conf;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rmq_namesrv_core::{NamesrvConfig, NamesrvCore};
use rmq_rt::server::{accept_loop, encode, AcceptGuard, Outbox, ServerEvent, ServerLimits};
use rmq_rt::{spawn, ConnId, Env, Listener};
use tokio::sync::{mpsc, watch};

/// Inbound events buffered before connections feel backpressure.
pub const INBOX_MAX: usize = 65_536;

/// A running NameServer.
#[derive(Debug)]
pub struct NamesrvHandle {
    /// The bound address.
    pub local_addr: SocketAddr,
    /// The Prometheus endpoint's bound address, when it is on.
    pub metrics_addr: Option<SocketAddr>,
    metrics_task: Option<rmq_rt::task::JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    done: rmq_rt::task::JoinHandle<()>,
}

impl NamesrvHandle {
    /// Stops the node loop and waits for it.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = &self.metrics_task {
            task.abort();
        }
        let _ = self.done.await;
    }
}

/// Binds `listen` and starts serving, with the default [`ServerLimits`].
pub async fn start<E: Env>(env: E, listen: &str, config: NamesrvConfig) -> std::io::Result<NamesrvHandle> {
    start_with_limits(env, listen, config, ServerLimits::default(), None).await
}

/// Binds `listen` and starts serving within `limits` (connections, idle timeout, memory),
/// with a Prometheus endpoint on `metrics_listen` when given.
pub async fn start_with_limits<E: Env>(
    env: E,
    listen: &str,
    config: NamesrvConfig,
    limits: ServerLimits,
    metrics_listen: Option<&str>,
) -> std::io::Result<NamesrvHandle> {
    let listener = env.bind(listen).await?;
    let local_addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(INBOX_MAX);
    let accept = spawn(accept_loop(listener, tx, limits));
    let (shutdown, stop) = watch::channel(false);
    let core = NamesrvCore::new(config);
    let (figures_tx, figures_rx) = watch::channel(Figures::default());
    let (metrics_addr, metrics_task) = match metrics_listen {
        Some(addr) => {
            let render: rmq_rt::metrics::Render = std::sync::Arc::new(move || figures_rx.borrow().render());
            let (bound, task) = rmq_rt::metrics::serve(&env, addr, render)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("binding the metrics endpoint {addr}: {e}")))?;
            tracing::info!(%bound, "Prometheus metrics at http://{bound}/metrics");
            (Some(bound), Some(task))
        }
        None => (None, None),
    };
    let done = spawn(async move {
        // Dropped when the loop returns or unwinds: the listener closes with the node.
        let mut accept = AcceptGuard::new(accept);
        node_loop(env, core, rx, stop, &mut accept, figures_tx).await;
    });
    tracing::info!(%local_addr, "name server started");
    Ok(NamesrvHandle { local_addr, metrics_addr, metrics_task, shutdown, done })
}

/// What the NameServer's metrics endpoint reports.
#[derive(Debug, Clone, Default)]
struct Figures {
    brokers: usize,
    topics: usize,
    clusters: usize,
    requests: u64,
}

impl Figures {
    fn render(&self) -> String {
        use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
        let mut registry = prometheus_client::registry::Registry::default();
        for (name, help, v) in [
            ("rocketmq_namesrv_live_brokers", "Brokers registered and not expired", self.brokers),
            ("rocketmq_namesrv_topics", "Topics with a route", self.topics),
            ("rocketmq_namesrv_clusters", "Clusters", self.clusters),
        ] {
            let g = Gauge::<i64>::default();
            g.set(v as i64);
            registry.register(name, help, g);
        }
        let requests = Counter::<u64>::default();
        requests.inc_by(self.requests);
        registry.register("rocketmq_namesrv_requests", "Requests served", requests);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

async fn node_loop<E: Env>(
    env: E,
    mut core: NamesrvCore,
    mut inbox: mpsc::Receiver<ServerEvent>,
    mut stop: watch::Receiver<bool>,
    accept: &mut AcceptGuard,
    figures: watch::Sender<Figures>,
) {
    let mut conns: BTreeMap<ConnId, Outbox> = BTreeMap::new();
    let mut requests = 0u64;
    loop {
        let deadline = core.next_deadline_ms();
        // Biased: a fixed polling order (stop, timer, inbox) keeps simulated runs replayable;
        // the timer goes before the inbox so a busy inbox never starves expiry.
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = accept.ended() => break,
            _ = rmq_rt::sleep_until_ms(&env, deadline) => core.tick(env.now_ms()),
            ev = inbox.recv() => {
                let Some(ev) = ev else { break };
                let now = env.now_ms();
                match ev {
                    ServerEvent::Accepted { conn, outbox, peer } => {
                        conns.insert(conn, outbox);
                        core.on_conn_opened(now, conn, peer);
                    }
                    ServerEvent::Frame { conn, cmd } => {
                        requests += 1;
                        if let Some(resp) = core.handle(now, conn, &cmd) {
                            if let Some(out) = conns.get(&conn) {
                                if let Err(e) = out.send(encode(&resp)) {
                                    // The connection is closed; its reader reports `Closed`.
                                    tracing::warn!(conn = conn.0, error = %e, "dropping the connection");
                                    conns.remove(&conn);
                                }
                            }
                        }
                    }
                    ServerEvent::Closed { conn } => {
                        conns.remove(&conn);
                        core.on_conn_closed(now, conn);
                    }
                }
            }
        }
        for ev in core.drain_events() {
            tracing::info!(event = ?ev, "namesrv");
        }
        if !figures.is_closed() {
            let f = Figures {
                brokers: core.live_brokers().len(),
                topics: core.topic_count(),
                clusters: core.cluster_count(),
                requests,
            };
            figures.send_replace(f);
        }
    }
}
