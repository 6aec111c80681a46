//! The full-stack lane: turmoil hosts run the real drivers (`rmq_namesrv::start`,
//! `rmq_broker::start`) and the real client library over [`TurmoilEnv`]: turmoil's simulated
//! TCP, its virtual clock, and a [`SimDisk`] per broker. Same scenario files as the fast lane;
//! fewer seeds, because it also exercises framing over streams, reconnects and timeouts.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rmq_broker::BrokerOptions;
use rmq_broker_core::{BrokerConfig, FlushDiskType};
use rmq_client::{ClientConfig, ConsumeFromWhere, ConsumeResult, Message, Producer, PushConsumer, SendStatus};
use rmq_rt::{Env, Listener};

use crate::disk::{CrashMode, SimDisk};
use crate::scenario::{Fault, Scenario};
use crate::world::{EPOCH_MS, TOPIC};

/// The runtime for drivers on turmoil hosts.
#[derive(Debug, Clone)]
pub struct TurmoilEnv {
    disk: SimDisk,
    seed: u64,
}

/// A turmoil listener.
pub struct TurmoilListener(turmoil::net::TcpListener);

impl std::fmt::Debug for TurmoilListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurmoilListener")
    }
}

impl Listener for TurmoilListener {
    type Stream = turmoil::net::TcpStream;
    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        self.0.accept().await
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Env for TurmoilEnv {
    type Stream = turmoil::net::TcpStream;
    type Listener = TurmoilListener;
    type Dir = SimDisk;

    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        let addr = addr.to_string();
        async move { Ok(TurmoilListener(turmoil::net::TcpListener::bind(addr).await?)) }
    }

    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let addr = addr.to_string();
        async move { turmoil::net::TcpStream::connect(addr).await }
    }

    fn now_ms(&self) -> u64 {
        EPOCH_MS + turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn open_dir(&self, _root: &str) -> io::Result<SimDisk> {
        Ok(self.disk.clone())
    }
}

/// What the stack lane observed.
#[derive(Debug, Clone, Default)]
pub struct StackReport {
    /// Keys answered SEND_OK.
    pub acked: BTreeSet<String>,
    /// Key → deliveries.
    pub deliveries: BTreeMap<String, u32>,
    /// Sends that failed.
    pub failed: u64,
    /// Acknowledged keys never delivered.
    pub lost: Vec<String>,
    /// Simulated time, ms.
    pub simulated_ms: u64,
}

/// A fault as the stack lane applies it.
enum StackFault {
    Plain(Fault),
    Hold(String),
    Release(String),
}

const NS_PORT: u16 = 9876;
const BROKER_PORT: u16 = 10911;

fn broker_options(s: &Scenario) -> BrokerOptions {
    let mut core = BrokerConfig {
        flush_disk_type: if s.sync_flush { FlushDiskType::SyncFlush } else { FlushDiskType::AsyncFlush },
        broker_addr: format!("broker:{BROKER_PORT}"),
        ha_addr: format!("broker:{}", BROKER_PORT + 1),
        register_interval_ms: 10_000,
        ..Default::default()
    };
    core.store.commit_log_segment_bytes = 256 * 1024;
    core.store.consume_queue_segment_entries = 1_024;
    BrokerOptions {
        listen: format!("0.0.0.0:{BROKER_PORT}"),
        namesrv_addrs: vec![format!("ns:{NS_PORT}")],
        store_root: "store".into(),
        core,
    }
}

fn client_config(group: &str, instance: &str) -> ClientConfig {
    let mut c = ClientConfig::new(&format!("ns:{NS_PORT}"), group);
    c.instance_name = Some(instance.into());
    c.rebalance_interval_ms = 1_000;
    c.heartbeat_interval_ms = 1_000;
    c.persist_offset_interval_ms = 500;
    c.pull_suspend_ms = 1_000;
    c.poll_namesrv_interval_ms = 1_000;
    c.consume_from_where = ConsumeFromWhere::FirstOffset;
    c
}

/// Runs a scenario in the full-stack lane.
pub fn run_stack(s: &Scenario, seed: u64) -> Result<StackReport, String> {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_millis(s.duration_ms + 60_000))
        .min_message_latency(Duration::from_millis(s.latency_ms.max(1)))
        .max_message_latency(Duration::from_millis(s.latency_ms.max(1) + s.jitter_ms))
        .rng_seed(seed)
        .build();
    let disk = Arc::new(Mutex::new(SimDisk::default()));
    let report = Arc::new(Mutex::new(StackReport::default()));
    sim.host("ns", || async {
        let env = TurmoilEnv { disk: SimDisk::default(), seed: 1 };
        let _h = rmq_namesrv::start(env, &format!("0.0.0.0:{NS_PORT}"), Default::default()).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    let broker_disk = disk.clone();
    let opts = broker_options(s);
    sim.host("broker", move || {
        let (disk, opts) = (broker_disk.lock().expect("disk slot").clone(), opts.clone());
        async move {
            let env = TurmoilEnv { disk, seed: 2 };
            let h = rmq_broker::start(env, opts).await.map_err(|e| e.to_string())?;
            let _ = h;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    for p in 0..s.producers {
        let (report, messages, interval) = (report.clone(), s.messages, s.send_interval_ms);
        sim.client(format!("p{p}"), async move {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            let env = TurmoilEnv { disk: SimDisk::default(), seed: 100 + u64::from(p) };
            let producer = Producer::start(env, client_config("PG", &format!("p{p}")));
            for i in 0..messages {
                let key = format!("p{p}-{i}");
                let mut msg = Message::new(TOPIC, key.clone().into_bytes());
                msg.properties.insert("KEYS".into(), key.clone());
                match producer.send(msg).await {
                    Ok(r) if r.status == SendStatus::SendOk => {
                        report.lock().expect("report lock").acked.insert(key);
                    }
                    _ => report.lock().expect("report lock").failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(interval)).await;
            }
            Ok(())
        });
    }
    for c in 0..s.consumers {
        let (report, until) = (report.clone(), s.duration_ms);
        sim.client(format!("c{c}"), async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let env = TurmoilEnv { disk: SimDisk::default(), seed: 200 + u64::from(c) };
            let r2 = report.clone();
            let consumer =
                PushConsumer::start(env, client_config("G", &format!("c{c}")), &[(TOPIC, "*")], move |msgs| {
                    let mut r = r2.lock().expect("report lock");
                    for m in msgs {
                        let key = m.properties.get("KEYS").cloned().unwrap_or_default();
                        *r.deliveries.entry(key).or_default() += 1;
                    }
                    ConsumeResult::Success
                })
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_millis(until)).await;
            consumer.shutdown().await;
            Ok(())
        });
    }
    // A pause holds every link of the node (nothing in or out) until it resumes.
    let hosts: Vec<String> = ["ns".to_string(), "broker".to_string()]
        .into_iter()
        .chain((0..s.producers).map(|p| format!("p{p}")))
        .chain((0..s.consumers).map(|c| format!("c{c}")))
        .collect();
    let mut schedule: Vec<(u64, StackFault)> = Vec::new();
    for (at, f) in &s.faults {
        match f {
            Fault::Pause(node, ms) => {
                schedule.push((*at, StackFault::Hold(node.clone())));
                schedule.push((at + ms, StackFault::Release(node.clone())));
            }
            other => schedule.push((*at, StackFault::Plain(other.clone()))),
        }
    }
    schedule.sort_by_key(|f| f.0);
    let mut faults = schedule.into_iter().peekable();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut partitioned: Vec<(String, String)> = Vec::new();
    loop {
        let now = sim.elapsed().as_millis() as u64;
        while faults.peek().is_some_and(|(at, _)| *at <= now) {
            let (_, f) = faults.next().expect("peeked");
            let f = match f {
                StackFault::Hold(node) | StackFault::Release(node) if !hosts.contains(&node) => continue,
                StackFault::Hold(node) => {
                    for other in hosts.iter().filter(|h| **h != node) {
                        sim.hold(node.as_str(), other.as_str());
                    }
                    continue;
                }
                StackFault::Release(node) => {
                    for other in hosts.iter().filter(|h| **h != node) {
                        sim.release(node.as_str(), other.as_str());
                    }
                    continue;
                }
                StackFault::Plain(f) => f,
            };
            match f {
                Fault::Crash(h) => {
                    sim.crash(h.as_str());
                    if h == "broker" {
                        let mut slot = disk.lock().expect("disk slot");
                        let mode = CrashMode { writeback_pct: s.writeback_pct, tear: s.tear };
                        *slot = slot.crash(mode, &mut rng);
                    }
                }
                Fault::Restart(h) => sim.bounce(h.as_str()),
                Fault::Partition(a, b) => {
                    sim.partition(a.as_str(), b.as_str());
                    partitioned.push((a, b));
                }
                Fault::Heal => {
                    for (a, b) in partitioned.drain(..) {
                        sim.repair(a.as_str(), b.as_str());
                    }
                }
                Fault::Pause(..) => unreachable!("pauses were turned into hold/release above"),
                Fault::PartitionOneWay(a, b) => {
                    sim.partition_oneway(a.as_str(), b.as_str());
                    partitioned.push((a, b));
                }
            }
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut r = report.lock().expect("report lock").clone();
    r.lost = r.acked.iter().filter(|k| !r.deliveries.contains_key(*k)).cloned().collect();
    r.simulated_ms = sim.elapsed().as_millis() as u64;
    Ok(r)
}
