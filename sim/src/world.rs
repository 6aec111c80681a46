//! The fast lane: a discrete-event loop over the real NameServer and broker cores.
//!
//! Nodes: NameServers (`ns`, `ns1`, …), brokers (`broker`, `broker1`, …; each a `BrokerCore`
//! over its own [`SimDisk`]), producers `p0..` and consumers `c0..` (small actors speaking the
//! real protocol). Every frame crosses the real codec (`encode_frame` → bytes →
//! `FrameDecoder`). Time, network delay, loss, duplication and crash damage all come from one
//! seeded RNG, and events at equal times run in insertion order, so a seed replays bit for bit.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rmq_broker_core::{BrokerConfig, BrokerCore, BrokerRole, FlushDiskType, Output};
use rmq_namesrv_core::{NamesrvConfig, NamesrvCore};
use rmq_proto::frame::{encode_frame, FrameDecoder};
use rmq_proto::{ConnId, RemotingCommand};

use crate::actors::{Consumer, Producer};
use crate::disk::{CrashMode, SimDisk};
use crate::oracle::History;
use crate::scenario::{node_name, Fault, Replication, Scenario, Trigger};
use crate::trace::Trace;

/// Wall-clock origin of simulated time (cores stamp messages with `EPOCH_MS + t`).
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// The topic every scenario uses.
pub const TOPIC: &str = "SimTopic";
/// The consumer group of every simulation.
pub const GROUP: &str = "G";
/// Master-side connection ids of HA links start here (below: remoting peers by node index).
const HA_CONN_BASE: u64 = 1 << 32;

#[derive(Debug)]
enum Ev {
    Deliver {
        from: usize,
        to: usize,
        from_epoch: u64,
        to_epoch: u64,
        frame: Bytes,
    },
    Timer {
        node: usize,
        at: u64,
    },
    /// A detached flush's lag has passed: run its jobs (now its pages are durable), report it.
    FlushDone {
        node: usize,
        epoch: u64,
        target: u64,
        job: u64,
    },
    /// A detached checkpoint's lag has passed.
    CheckpointDone {
        node: usize,
        epoch: u64,
        job: u64,
    },
    Fault(Fault),
    /// A slave's HA connect reached the master: both ends learn the link is up.
    HaOpen {
        link: u64,
    },
    /// A slave's HA connect found no master listening (down or cut off).
    HaRefused {
        slave: usize,
        epoch: u64,
    },
    /// Bytes on an HA link, in stream order: CommitLog bytes (or a heartbeat) to the slave,
    /// or the slave's offset report to the master.
    HaData {
        link: u64,
        to_slave: bool,
        offset: u64,
        bytes: Bytes,
    },
}

/// One HA connection (a TCP stream: frames arrive in order, a lost segment resets it).
#[derive(Debug)]
struct HaLink {
    master: usize,
    slave: usize,
    master_epoch: u64,
    slave_epoch: u64,
    up: bool,
    /// Latest arrival scheduled in each direction (to the slave, to the master): in order.
    arrives_at: [u64; 2],
}

/// What runs on a node.
pub enum Role {
    /// A NameServer core (`None` while crashed).
    Namesrv(Option<NamesrvCore>),
    /// A broker core (`None` while crashed).
    Broker(Option<Box<BrokerCore<SimDisk>>>),
    /// A producer actor.
    Producer(Producer),
    /// A consumer actor.
    Consumer(Box<Consumer>),
}

/// One simulated process.
pub struct Node {
    /// Trace name.
    pub name: String,
    /// Crashed nodes are down.
    pub up: bool,
    /// Incremented at every crash and restart; frames across epochs are lost (connection reset).
    pub epoch: u64,
    timer_at: Option<u64>,
    /// Processing resumes at this time (a paused process).
    paused_until: u64,
    /// Wall-clock skew of this node, ms.
    skew_ms: i64,
    /// The node's logic.
    pub role: Role,
}

impl Node {
    fn new(name: String, role: Role, skew_ms: i64) -> Self {
        Node { name, up: true, epoch: 0, timer_at: None, paused_until: 0, skew_ms, role }
    }
}

/// The simulated cluster.
pub struct World {
    /// The scenario.
    pub scenario: Scenario,
    /// Simulated time, ms.
    pub now: u64,
    /// All randomness.
    pub rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    seq: u64,
    /// Processes.
    pub nodes: Vec<Node>,
    /// Node indexes of the NameServers.
    pub namesrvs: Vec<usize>,
    /// Node indexes of the brokers (the masters, by group).
    pub brokers: Vec<usize>,
    /// Node indexes of the slaves, by group (empty without replication).
    pub slaves: Vec<usize>,
    /// Broker node by listening address (remoting and HA).
    node_by_addr: BTreeMap<String, usize>,
    /// HA connections by id.
    ha_links: BTreeMap<u64, HaLink>,
    next_link: u64,
    /// RocketMQ broker name → node index.
    broker_by_name: BTreeMap<String, usize>,
    /// Blocked directions (from, to).
    partitions: Vec<(usize, usize)>,
    disks: BTreeMap<usize, SimDisk>,
    configs: BTreeMap<usize, BrokerConfig>,
    /// Detached flush work waiting for its lag, by job id.
    flush_jobs: BTreeMap<u64, Vec<rmq_store::FlushJob>>,
    /// Detached checkpoints waiting for their lag, by job id.
    checkpoint_jobs: BTreeMap<u64, rmq_store::PendingCheckpoint>,
    /// Crash triggers armed by `at T crash NODE on WHAT`: node → what it waits for.
    armed: BTreeMap<usize, Trigger>,
    /// The group's processing log (message id + scenario, on disk in the brief's "strong
    /// check"): shared by every member and kept across consumer crashes.
    pub processing_log: std::collections::BTreeSet<String>,
    /// Sends, acks, deliveries, crashes.
    pub history: History,
    /// Event lines and their digest.
    pub trace: Trace,
}

impl World {
    /// Builds the cluster of a scenario.
    pub fn new(scenario: Scenario, seed: u64, keep_trace: bool) -> Self {
        let skew = |n: &str| scenario.clock_skew_ms.get(n).copied().unwrap_or(0);
        let mut nodes = Vec::new();
        let mut namesrvs = Vec::new();
        for k in 0..scenario.namesrvs.max(1) {
            let name = node_name("ns", k);
            namesrvs.push(nodes.len());
            nodes.push(Node::new(name.clone(), Role::Namesrv(None), skew(&name)));
        }
        let (mut brokers, mut broker_by_name, mut configs) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
        let mut slaves = Vec::new();
        let mut node_by_addr = BTreeMap::new();
        let master_role = match scenario.replication {
            Replication::None | Replication::Async => BrokerRole::AsyncMaster,
            Replication::Sync => BrokerRole::SyncMaster,
        };
        let broker_config = |broker_name: &str, host: u32| {
            let mut c = BrokerConfig {
                flush_disk_type: if scenario.sync_flush { FlushDiskType::SyncFlush } else { FlushDiskType::AsyncFlush },
                broker_name: broker_name.to_string(),
                broker_addr: format!("10.0.0.{host}:10911"),
                ha_addr: format!("10.0.0.{host}:10912"),
                broker_role: master_role,
                record_events: true,
                register_interval_ms: 10_000,
                transaction_timeout_ms: crate::scenario::TX_TIMEOUT_MS,
                transaction_check_interval_ms: crate::scenario::TX_CHECK_INTERVAL_MS,
                ..Default::default()
            };
            scenario.apply_store(&mut c);
            c
        };
        for k in 0..scenario.brokers.max(1) {
            let name = node_name("broker", k);
            let i = nodes.len();
            let broker_name = format!("broker-{}", (b'a' + k as u8) as char);
            let c = broker_config(&broker_name, 10 + k);
            node_by_addr.insert(c.broker_addr.clone(), i);
            node_by_addr.insert(c.ha_addr.clone(), i);
            configs.insert(i, c);
            broker_by_name.insert(broker_name, i);
            brokers.push(i);
            nodes.push(Node::new(name.clone(), Role::Broker(None), skew(&name)));
        }
        for k in 0..scenario.slaves() {
            let name = node_name("slave", k);
            let i = nodes.len();
            let master = &configs[&brokers[k as usize]];
            let mut c = broker_config(&master.broker_name, 40 + k);
            c.broker_id = 1;
            c.broker_role = BrokerRole::Slave;
            c.ha_master_addr = Some(master.ha_addr.clone());
            node_by_addr.insert(c.broker_addr.clone(), i);
            node_by_addr.insert(c.ha_addr.clone(), i);
            configs.insert(i, c);
            slaves.push(i);
            nodes.push(Node::new(name.clone(), Role::Broker(None), skew(&name)));
        }
        for k in 0..scenario.producers {
            let name = format!("p{k}");
            nodes.push(Node::new(name.clone(), Role::Producer(Producer::new(k, scenario.messages)), skew(&name)));
        }
        for k in 0..scenario.consumers {
            let name = format!("c{k}");
            nodes.push(Node::new(name.clone(), Role::Consumer(Box::new(Consumer::new(k, &scenario))), skew(&name)));
        }
        let disks = brokers.iter().chain(&slaves).map(|b| (*b, SimDisk::default())).collect();
        let mut w = World {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            nodes,
            namesrvs,
            brokers,
            slaves,
            node_by_addr,
            ha_links: BTreeMap::new(),
            next_link: 1,
            broker_by_name,
            partitions: Vec::new(),
            disks,
            configs,
            flush_jobs: BTreeMap::new(),
            checkpoint_jobs: BTreeMap::new(),
            armed: BTreeMap::new(),
            processing_log: std::collections::BTreeSet::new(),
            history: History::of(&scenario),
            trace: Trace::new(keep_trace),
            scenario,
        };
        w.boot();
        w
    }

    fn boot(&mut self) {
        for i in self.namesrvs.clone() {
            self.nodes[i].role = Role::Namesrv(Some(NamesrvCore::new(NamesrvConfig::default())));
            // Its scan for silent brokers runs from the start (before, only a restarted
            // NameServer ever scanned, so a silent broker stayed routed for good).
            self.schedule_timer(i, self.now + 1);
        }
        for b in self.brokers.clone() {
            self.start_broker(b);
            let create = rmq_proto::header::CreateTopicRequestHeader {
                topic: TOPIC.into(),
                default_topic: "TBW102".into(),
                read_queue_nums: self.scenario.queues,
                write_queue_nums: self.scenario.queues,
                perm: 6,
                topic_filter_type: "SINGLE_TAG".into(),
                topic_sys_flag: None,
                order: false,
            };
            let req = RemotingCommand::request_with(rmq_proto::codes::RequestCode::UpdateAndCreateTopic, 0, &create);
            let now_ms = self.wall_ms(b);
            if let Role::Broker(Some(core)) = &mut self.nodes[b].role {
                // The operator's mqadmin updateTopic, before any client starts.
                core.on_request(now_ms, ConnId(u64::MAX), req);
            }
            self.pump_broker(b);
        }
        for b in self.slaves.clone() {
            self.start_broker(b);
        }
        let first_client = self.brokers.iter().chain(&self.slaves).max().map_or(0, |b| b + 1);
        for n in first_client..self.nodes.len() {
            self.schedule_timer(n, 100 + n as u64);
        }
        for (at, f) in self.scenario.faults.clone() {
            self.push(at, Ev::Fault(f));
        }
    }

    fn start_broker(&mut self, b: usize) {
        let core = BrokerCore::open(self.disks[&b].clone(), self.configs[&b].clone(), self.wall_ms(b))
            .expect("recovery over a simulated disk never fails to open");
        self.nodes[b].role = Role::Broker(Some(Box::new(core)));
        self.trace.line(self.now, &self.nodes[b].name.clone(), "broker.node.started", "");
        self.pump_broker(b);
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// Arms `node`'s timer for time `at` unless an earlier one is armed.
    pub fn schedule_timer(&mut self, node: usize, at: u64) {
        let at = at.max(self.now);
        if self.nodes[node].timer_at.is_none_or(|t| at < t) {
            self.nodes[node].timer_at = Some(at);
            self.push(at, Ev::Timer { node, at });
        }
    }

    /// The node index of a RocketMQ broker name.
    pub fn broker_node(&self, broker_name: &str) -> Option<usize> {
        self.broker_by_name.get(broker_name).copied()
    }

    /// The broker node listening on `addr` (as a route names it).
    pub fn node_at(&self, addr: &str) -> Option<usize> {
        self.node_by_addr.get(addr).copied()
    }

    /// A NameServer for a client to ask, rotating by the caller's index.
    pub fn namesrv_for(&self, caller: usize) -> usize {
        self.namesrvs[(caller + self.now as usize / 1_000) % self.namesrvs.len()]
    }

    /// Sends `cmd` from one node to another through the codec and the simulated network.
    pub fn send(&mut self, from: usize, to: usize, cmd: &RemotingCommand) {
        let mut buf = BytesMut::new();
        if encode_frame(cmd, &mut buf).is_err() {
            self.trace.line(self.now, &self.nodes[from].name.clone(), "net.frame.unencodable", "");
            return;
        }
        let frame = buf.freeze();
        let blocked = self.partitions.contains(&(from, to));
        let noisy = self.now < self.scenario.net_faults_end_ms();
        if blocked || !self.nodes[to].up || (noisy && self.rng.gen_range(0..100) < self.scenario.drop_pct) {
            let what = if blocked { "partition" } else { "loss" };
            let line = format!("to={} cause={what}", self.nodes[to].name);
            self.trace.line(self.now, &self.nodes[from].name.clone(), "net.frame.dropped", &line);
            return;
        }
        let copies = if noisy && self.rng.gen_range(0..100) < self.scenario.dup_pct { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.scenario.latency_ms + self.rng.gen_range(0..=self.scenario.jitter_ms);
            let (from_epoch, to_epoch) = (self.nodes[from].epoch, self.nodes[to].epoch);
            self.push(self.now + delay, Ev::Deliver { from, to, from_epoch, to_epoch, frame: frame.clone() });
        }
    }

    /// Runs the scenario to its end; returns the number of events processed.
    pub fn run(&mut self) -> u64 {
        let mut processed = 0;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > self.scenario.duration_ms {
                break;
            }
            self.now = at;
            let ev = self.events.remove(&seq).expect("every queued seq has an event");
            self.step(ev);
            processed += 1;
        }
        self.now = self.scenario.duration_ms;
        processed
    }

    /// The wall clock node `i` reads (simulated time, plus its skew).
    fn wall_ms(&self, i: usize) -> u64 {
        (EPOCH_MS + self.now).saturating_add_signed(self.nodes[i].skew_ms)
    }

    /// The simulated time at which node `i`'s wall clock reads `wall_ms`.
    fn sim_time(&self, i: usize, wall_ms: u64) -> u64 {
        wall_ms.saturating_add_signed(-self.nodes[i].skew_ms).saturating_sub(EPOCH_MS)
    }

    fn step(&mut self, ev: Ev) {
        // A paused process handles nothing until it resumes: its events wait.
        let target = match &ev {
            Ev::Deliver { to, .. } => Some(*to),
            Ev::Timer { node, .. } | Ev::FlushDone { node, .. } | Ev::CheckpointDone { node, .. } => Some(*node),
            Ev::HaRefused { slave, .. } => Some(*slave),
            Ev::HaOpen { link } => self.ha_links.get(link).map(|l| l.master),
            Ev::HaData { link, to_slave, .. } => {
                self.ha_links.get(link).map(|l| if *to_slave { l.slave } else { l.master })
            }
            Ev::Fault(_) => None,
        };
        if let Some(i) = target {
            if self.nodes[i].paused_until > self.now {
                let at = self.nodes[i].paused_until;
                self.push(at, ev);
                return;
            }
        }
        match ev {
            Ev::Deliver { from, to, from_epoch, to_epoch, frame } => {
                if !self.nodes[to].up || self.nodes[to].epoch != to_epoch || self.nodes[from].epoch != from_epoch {
                    return;
                }
                let mut buf = BytesMut::from(&frame[..]);
                match FrameDecoder::default().decode(&mut buf) {
                    Ok(Some(cmd)) => self.deliver(from, to, cmd),
                    _ => self.trace.line(self.now, &self.nodes[to].name.clone(), "net.frame.undecodable", ""),
                }
            }
            Ev::Timer { node, at } => {
                if self.nodes[node].timer_at != Some(at) || !self.nodes[node].up {
                    return;
                }
                self.nodes[node].timer_at = None;
                self.tick(node);
            }
            Ev::FlushDone { node, epoch, target, job } => {
                let jobs = self.flush_jobs.remove(&job).unwrap_or_default();
                if self.nodes[node].epoch != epoch || !self.nodes[node].up {
                    return;
                }
                let ok = jobs.into_iter().all(|j| j.run().is_ok());
                let now_ms = self.wall_ms(node);
                if let Role::Broker(Some(core)) = &mut self.nodes[node].role {
                    if ok {
                        core.on_flushed(now_ms, target);
                    } else {
                        core.on_flush_failed(now_ms);
                    }
                }
                self.pump_broker(node);
            }
            Ev::CheckpointDone { node, epoch, job } => {
                let Some(mut pending) = self.checkpoint_jobs.remove(&job) else { return };
                if self.nodes[node].epoch != epoch || !self.nodes[node].up {
                    return;
                }
                let ok = std::mem::take(&mut pending.jobs).into_iter().all(|j| j.run().is_ok());
                let now_ms = self.wall_ms(node);
                if let Role::Broker(Some(core)) = &mut self.nodes[node].role {
                    core.on_checkpointed(now_ms, &pending, ok);
                }
                self.pump_broker(node);
            }
            Ev::Fault(f) => self.fault(f),
            Ev::HaOpen { link } => self.ha_opened(link),
            Ev::HaRefused { slave, epoch } => {
                if self.nodes[slave].up && self.nodes[slave].epoch == epoch {
                    let now_ms = self.wall_ms(slave);
                    if let Some(core) = self.broker_core(slave) {
                        core.on_ha_master_closed(now_ms);
                    }
                    self.pump_broker(slave);
                }
            }
            Ev::HaData { link, to_slave, offset, bytes } => self.ha_arrived(link, to_slave, offset, &bytes),
        }
    }

    // ---- HA links ----

    fn ha_link_live(&self, link: u64) -> bool {
        self.ha_links.get(&link).is_some_and(|l| {
            l.up && self.nodes[l.master].up
                && self.nodes[l.slave].up
                && self.nodes[l.master].epoch == l.master_epoch
                && self.nodes[l.slave].epoch == l.slave_epoch
        })
    }

    /// The slave's HA link that is up, if any.
    fn ha_link_of_slave(&self, slave: usize) -> Option<u64> {
        self.ha_links.iter().rev().find(|(_, l)| l.slave == slave && l.up).map(|(id, _)| *id)
    }

    fn ha_connect(&mut self, slave: usize, addr: &str) {
        let delay = self.scenario.latency_ms + self.rng.gen_range(0..=self.scenario.jitter_ms);
        let master = self.node_at(addr).filter(|m| {
            self.nodes[*m].up && !self.partitions.contains(&(slave, *m)) && !self.partitions.contains(&(*m, slave))
        });
        let name = self.nodes[slave].name.clone();
        let Some(master) = master else {
            self.trace.line(self.now, &name, "ha.connect.refused", &format!("addr={addr}"));
            let epoch = self.nodes[slave].epoch;
            self.push(self.now + 2 * delay, Ev::HaRefused { slave, epoch });
            return;
        };
        let link = self.next_link;
        self.next_link += 1;
        let (master_epoch, slave_epoch) = (self.nodes[master].epoch, self.nodes[slave].epoch);
        let l = HaLink { master, slave, master_epoch, slave_epoch, up: true, arrives_at: [0; 2] };
        self.ha_links.insert(link, l);
        self.push(self.now + delay, Ev::HaOpen { link });
    }

    fn ha_opened(&mut self, link: u64) {
        let Some((master, slave)) = self.ha_links.get(&link).map(|l| (l.master, l.slave)) else { return };
        if !self.ha_link_live(link) {
            self.ha_reset(link, "peer gone before the connect completed");
            return;
        }
        let name = self.nodes[slave].name.clone();
        self.trace.line(self.now, &name, "ha.link.opened", &format!("master={} link={link}", self.nodes[master].name));
        let now_ms = self.wall_ms(master);
        if let Some(core) = self.broker_core(master) {
            core.on_ha_slave_opened(now_ms, ConnId(HA_CONN_BASE + link));
        }
        self.pump_broker(master);
        let now_ms = self.wall_ms(slave);
        if let Some(core) = self.broker_core(slave) {
            core.on_ha_master_connected(now_ms);
        }
        self.pump_broker(slave);
    }

    /// Puts bytes on an HA link: they arrive in order (a lost segment is retransmitted, late),
    /// or, across a partition, the link resets; a TCP stream never skips bytes.
    fn ha_send(&mut self, link: u64, to_slave: bool, offset: u64, bytes: Bytes) {
        if !self.ha_link_live(link) {
            return;
        }
        let (from, to) = {
            let l = &self.ha_links[&link];
            if to_slave {
                (l.master, l.slave)
            } else {
                (l.slave, l.master)
            }
        };
        let noisy = self.now < self.scenario.net_faults_end_ms();
        if self.partitions.contains(&(from, to)) {
            self.ha_reset(link, "partition");
            return;
        }
        let mut delay = self.scenario.latency_ms + self.rng.gen_range(0..=self.scenario.jitter_ms);
        if noisy && self.rng.gen_range(0..100) < self.scenario.drop_pct {
            // TCP retransmits a lost segment after its timeout: late, never missing.
            delay += self.rng.gen_range(200..=400);
        }
        let dir = usize::from(!to_slave);
        let l = self.ha_links.get_mut(&link).expect("live link");
        let at = (self.now + delay).max(l.arrives_at[dir]);
        l.arrives_at[dir] = at;
        self.push(at, Ev::HaData { link, to_slave, offset, bytes });
    }

    fn ha_arrived(&mut self, link: u64, to_slave: bool, offset: u64, bytes: &[u8]) {
        if !self.ha_link_live(link) {
            return;
        }
        let (master, slave) = (self.ha_links[&link].master, self.ha_links[&link].slave);
        if to_slave {
            let now_ms = self.wall_ms(slave);
            if let Some(core) = self.broker_core(slave) {
                core.on_ha_master_data(now_ms, offset, bytes);
            }
            self.pump_broker(slave);
        } else {
            let now_ms = self.wall_ms(master);
            if let Some(core) = self.broker_core(master) {
                core.on_ha_slave_report(now_ms, ConnId(HA_CONN_BASE + link), offset);
            }
            self.pump_broker(master);
        }
    }

    /// Closes an HA link; each end that is still the process that opened it is told.
    fn ha_reset(&mut self, link: u64, cause: &str) {
        let Some(l) = self.ha_links.get_mut(&link) else { return };
        if !l.up {
            return;
        }
        l.up = false;
        let (master, slave, me, se) = (l.master, l.slave, l.master_epoch, l.slave_epoch);
        let name = self.nodes[slave].name.clone();
        self.trace.line(self.now, &name, "ha.link.closed", &format!("link={link} cause={cause}"));
        // The link is gone from the table once both ends know: nothing more can use it.
        self.ha_links.remove(&link);
        if self.nodes[master].up && self.nodes[master].epoch == me {
            let now_ms = self.wall_ms(master);
            if let Some(core) = self.broker_core(master) {
                core.on_ha_slave_closed(now_ms, ConnId(HA_CONN_BASE + link));
            }
            self.pump_broker(master);
        }
        if self.nodes[slave].up && self.nodes[slave].epoch == se {
            let now_ms = self.wall_ms(slave);
            if let Some(core) = self.broker_core(slave) {
                core.on_ha_master_closed(now_ms);
            }
            self.pump_broker(slave);
        }
    }

    fn deliver(&mut self, from: usize, to: usize, cmd: RemotingCommand) {
        let now_ms = self.wall_ms(to);
        match &mut self.nodes[to].role {
            Role::Namesrv(core) => {
                let resp = match core {
                    Some(core) if !cmd.is_response() => core.handle(now_ms, ConnId(from as u64), &cmd),
                    _ => None,
                };
                if let Some(r) = resp {
                    self.send(to, from, &r);
                }
                self.drain_namesrv_events(to);
            }
            Role::Broker(core) => {
                if let Some(core) = core {
                    let peer = format!("10.0.1.{}:5000", from % 250).parse().expect("valid address");
                    core.on_conn_opened(now_ms, ConnId(from as u64), peer);
                    core.on_request(now_ms, ConnId(from as u64), cmd);
                }
                self.pump_broker(to);
            }
            Role::Producer(_) | Role::Consumer(_) => crate::actors::on_frame(self, to, from, cmd),
        }
    }

    fn tick(&mut self, node: usize) {
        let now_ms = self.wall_ms(node);
        match &mut self.nodes[node].role {
            Role::Namesrv(core) => {
                let next = core.as_mut().map(|c| {
                    c.tick(now_ms);
                    c.next_deadline_ms()
                });
                self.drain_namesrv_events(node);
                if let Some(d) = next {
                    let at = self.sim_time(node, d);
                    self.schedule_timer(node, at);
                }
            }
            Role::Broker(core) => {
                if let Some(core) = core {
                    core.on_timer(now_ms);
                }
                self.pump_broker(node);
            }
            Role::Producer(_) | Role::Consumer(_) => crate::actors::on_tick(self, node),
        }
    }

    fn broker_core(&mut self, b: usize) -> Option<&mut BrokerCore<SimDisk>> {
        match &mut self.nodes[b].role {
            Role::Broker(Some(core)) => Some(core),
            _ => None,
        }
    }

    /// Executes broker `b`'s outputs and re-arms its timer.
    fn pump_broker(&mut self, b: usize) {
        let now_ms = self.wall_ms(b);
        while let Some(out) = self.broker_core(b).and_then(|c| c.poll_output()) {
            match out {
                Output::Transmit { conn, cmd } => {
                    if (conn.0 as usize) < self.nodes.len() {
                        self.send(b, conn.0 as usize, &cmd);
                    }
                }
                // As the real driver does: the flush's jobs run away from the loop and complete
                // after the disk's latency; only then are its pages durable and the flush reported.
                Output::Flush => match self.broker_core(b).map(|c| c.begin_flush()) {
                    Some(Ok(p)) => {
                        let (lag, epoch, job) = (self.scenario.flush_lag_ms, self.nodes[b].epoch, self.seq + 1);
                        self.flush_jobs.insert(job, p.jobs);
                        self.push(self.now + lag, Ev::FlushDone { node: b, epoch, target: p.target, job });
                        self.trace.line(
                            self.now,
                            &self.nodes[b].name.clone(),
                            "sim.flush.began",
                            &format!("clo={}", p.target),
                        );
                        self.fire_trigger(b, Trigger::Flush);
                    }
                    Some(Err(_)) => {
                        if let Some(core) = self.broker_core(b) {
                            core.on_flush_failed(now_ms);
                        }
                    }
                    None => {}
                },
                Output::Checkpoint => {
                    if let Some(Ok(p)) = self.broker_core(b).map(|c| c.begin_checkpoint()) {
                        let (lag, epoch, job) = (self.scenario.flush_lag_ms, self.nodes[b].epoch, self.seq + 1);
                        self.checkpoint_jobs.insert(job, p);
                        self.push(self.now + lag, Ev::CheckpointDone { node: b, epoch, job });
                        self.fire_trigger(b, Trigger::Checkpoint);
                    }
                }
                Output::RegisterBroker(cmd) => {
                    for ns in self.namesrvs.clone() {
                        self.send(b, ns, &cmd);
                    }
                }
                Output::HaTransmit { conn, offset, bytes } => {
                    self.ha_send(conn.0.saturating_sub(HA_CONN_BASE), true, offset, bytes);
                }
                Output::HaClose { conn, reason } => {
                    let name = self.nodes[b].name.clone();
                    self.trace.line(self.now, &name, "ha.slave.refused", &format!("reason={reason:?}"));
                    self.ha_reset(conn.0.saturating_sub(HA_CONN_BASE), "closed by the master");
                }
                Output::HaConnect { addr } => self.ha_connect(b, &addr),
                Output::HaReport { offset } => {
                    if let Some(link) = self.ha_link_of_slave(b) {
                        self.ha_send(link, false, offset, Bytes::new());
                    }
                }
                Output::MasterRequest { addr, cmd } => {
                    if let Some(master) = self.node_at(&addr) {
                        self.send(b, master, &cmd);
                    }
                }
                Output::HaDisconnect { reason } => {
                    let name = self.nodes[b].name.clone();
                    self.trace.line(self.now, &name, "ha.master.refused", &format!("reason={reason:?}"));
                    if let Some(link) = self.ha_link_of_slave(b) {
                        self.ha_reset(link, "closed by the slave");
                    }
                }
            }
        }
        let (events, deadline) = match self.broker_core(b) {
            Some(core) => (core.drain_events(), Some(core.next_deadline_ms())),
            None => (Vec::new(), None),
        };
        let name = self.nodes[b].name.clone();
        for e in events {
            self.history.broker_event(b, self.nodes[b].epoch, &e);
            self.trace.broker_event(self.now, &name, &e);
        }
        if let Some(d) = deadline {
            let at = self.sim_time(b, d);
            self.schedule_timer(b, at);
        }
    }

    fn drain_namesrv_events(&mut self, ns: usize) {
        let events = match &mut self.nodes[ns].role {
            Role::Namesrv(Some(core)) => {
                core.assert_invariants();
                core.drain_events()
            }
            _ => Vec::new(),
        };
        let name = self.nodes[ns].name.clone();
        for e in events {
            self.trace.line(self.now, &name, "namesrv.broker.changed", &format!("{e:?}"));
        }
    }

    /// Crashes `node` now if a crash armed on it waits for `what`.
    fn fire_trigger(&mut self, node: usize, what: Trigger) {
        if self.armed.get(&node) == Some(&what) {
            self.armed.remove(&node);
            let name = self.nodes[node].name.clone();
            self.trace.line(self.now, &name, "sim.trigger.fired", &format!("on={}", what.word()));
            self.push(self.now, Ev::Fault(Fault::Crash(name)));
        }
    }

    /// A producer was just answered SEND_OK: fires every crash armed `on ack`.
    pub fn on_client_acked(&mut self) {
        let waiting: Vec<usize> = self.armed.iter().filter(|(_, t)| **t == Trigger::Ack).map(|(n, _)| *n).collect();
        for n in waiting {
            self.fire_trigger(n, Trigger::Ack);
        }
    }

    /// Index of a node by trace name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn fault(&mut self, f: Fault) {
        match f {
            Fault::Crash(name) => {
                let Some(i) = self.node_index(&name) else { return };
                if !self.nodes[i].up {
                    return;
                }
                self.nodes[i].up = false;
                self.nodes[i].epoch += 1;
                self.nodes[i].timer_at = None;
                self.history.crashes += 1;
                let mut detail = String::new();
                if let Role::Consumer(c) = &self.nodes[i].role {
                    let saved = c.saved_offsets();
                    self.history.member_down(&name);
                    self.history.member_saved(&name, saved);
                }
                match self.nodes[i].role {
                    Role::Broker(_) => {
                        let mode = CrashMode { writeback_pct: self.scenario.writeback_pct, tear: self.scenario.tear };
                        let disk = self.disks[&i].clone();
                        detail = format!("dirty_pages={}", disk.dirty_pages());
                        self.nodes[i].role = Role::Broker(None);
                        let survived = disk.crash(mode, &mut self.rng);
                        self.disks.insert(i, survived);
                    }
                    Role::Namesrv(_) => self.nodes[i].role = Role::Namesrv(None),
                    Role::Consumer(_) | Role::Producer(_) => {}
                }
                self.trace.line(self.now, &name, "sim.node.crashed", &detail);
                self.close_connections_of(i);
                let links: Vec<u64> =
                    self.ha_links.iter().filter(|(_, l)| l.master == i || l.slave == i).map(|(id, _)| *id).collect();
                for link in links {
                    self.ha_reset(link, "peer crashed");
                }
            }
            Fault::Restart(name) => {
                let Some(i) = self.node_index(&name) else { return };
                if self.nodes[i].up {
                    // An aimed crash that found no moment before the node's next restart is
                    // withdrawn, so the node is never left down at the end.
                    if let Some(what) = self.armed.remove(&i) {
                        self.trace.line(self.now, &name, "sim.trigger.expired", &format!("on={}", what.word()));
                    }
                    return;
                }
                self.nodes[i].up = true;
                self.nodes[i].epoch += 1;
                self.trace.line(self.now, &name, "sim.node.restarted", "");
                let restarted = match &self.nodes[i].role {
                    Role::Broker(_) => None,
                    Role::Namesrv(_) => Some(Role::Namesrv(Some(NamesrvCore::new(NamesrvConfig::default())))),
                    // A restarted client starts from scratch, as a new process would.
                    Role::Producer(p) => Some(Role::Producer(p.restarted(self.now))),
                    Role::Consumer(c) => Some(Role::Consumer(Box::new(c.restarted(self.now)))),
                };
                match restarted {
                    None => self.start_broker(i),
                    Some(role) => {
                        self.nodes[i].role = role;
                        self.schedule_timer(i, self.now + 1);
                    }
                }
                self.fire_trigger(i, Trigger::Recovery);
            }
            Fault::Wipe(name) => {
                let Some(i) = self.node_index(&name) else { return };
                if self.nodes[i].up || !self.disks.contains_key(&i) {
                    // Only a crashed broker's disk can be swapped; a wipe of a running node is
                    // logged, not silently applied to a live process.
                    self.trace.line(self.now, &name, "sim.wipe.skipped", "reason=node-up");
                    return;
                }
                self.disks.insert(i, SimDisk::default());
                self.trace.line(self.now, &name, "sim.disk.wiped", "");
            }
            Fault::CrashOn(name, what) => {
                let Some(i) = self.node_index(&name) else { return };
                self.trace.line(self.now, &name, "sim.trigger.armed", &format!("on={}", what.word()));
                self.armed.insert(i, what);
            }
            Fault::Partition(a, b) => {
                if let (Some(x), Some(y)) = (self.node_index(&a), self.node_index(&b)) {
                    self.partitions.extend([(x, y), (y, x)]);
                    self.trace.line(self.now, "sim", "sim.net.partitioned", &format!("a={a} b={b}"));
                }
            }
            Fault::PartitionOneWay(a, b) => {
                if let (Some(x), Some(y)) = (self.node_index(&a), self.node_index(&b)) {
                    self.partitions.push((x, y));
                    self.trace.line(self.now, "sim", "sim.net.partitioned", &format!("from={a} to={b} oneway=true"));
                }
            }
            Fault::ResetOffsets(back_ms) => {
                for b in self.brokers.clone() {
                    let now_ms = self.wall_ms(b);
                    let h = rmq_proto::header::ResetOffsetRequestHeader {
                        topic: TOPIC.into(),
                        group: GROUP.into(),
                        timestamp: now_ms.saturating_sub(back_ms) as i64,
                        is_force: true,
                    };
                    let req =
                        RemotingCommand::request_with(rmq_proto::codes::RequestCode::InvokeBrokerToResetOffset, 0, &h);
                    let name = self.nodes[b].name.clone();
                    if let Role::Broker(Some(core)) = &mut self.nodes[b].role {
                        // The operator's mqadmin resetOffsetByTime; its answer goes nowhere.
                        core.on_request(now_ms, ConnId(u64::MAX), req);
                        self.trace.line(self.now, &name, "sim.offsets.reset", &format!("back_ms={back_ms}"));
                    }
                    self.pump_broker(b);
                }
            }
            Fault::Heal => {
                self.partitions.clear();
                self.trace.line(self.now, "sim", "sim.net.healed", "");
            }
            Fault::Pause(name, ms) => {
                if let Some(i) = self.node_index(&name) {
                    self.nodes[i].paused_until = self.now + ms;
                    self.trace.line(self.now, &name, "sim.node.paused", &format!("ms={ms}"));
                }
            }
        }
    }

    /// A crashed process's TCP connections reset: its servers notice at once.
    fn close_connections_of(&mut self, i: usize) {
        for b in self.broker_nodes() {
            let now_ms = self.wall_ms(b);
            if b != i {
                if let Some(core) = self.broker_core(b) {
                    core.on_conn_closed(now_ms, ConnId(i as u64));
                }
                self.pump_broker(b);
            }
        }
        for ns in self.namesrvs.clone() {
            let now_ms = self.wall_ms(ns);
            if ns != i {
                if let Role::Namesrv(Some(core)) = &mut self.nodes[ns].role {
                    core.on_conn_closed(now_ms, ConnId(i as u64));
                }
                self.drain_namesrv_events(ns);
            }
        }
    }

    /// Every broker node: masters, then slaves.
    pub fn broker_nodes(&self) -> Vec<usize> {
        self.brokers.iter().chain(&self.slaves).copied().collect()
    }

    /// Broker groups with no member up (neither the master nor its slave).
    pub fn groups_down(&self) -> usize {
        (0..self.brokers.len())
            .filter(|k| {
                let master_up = self.nodes[self.brokers[*k]].up;
                let slave_up = self.slaves.get(*k).is_some_and(|s| self.nodes[*s].up);
                !master_up && !slave_up
            })
            .count()
    }

    /// Under SYNC_FLUSH + SYNC_MASTER, a SEND_OK for (broker group, queue, offset) must find
    /// the message in the group's slave when that slave is up (and it is durable there: the
    /// slave reports only flushed bytes). A violation otherwise.
    pub fn check_replicated_ack(&mut self, broker_name: &str, key: &str, queue: i32, offset: u64) {
        if self.scenario.replication != Replication::Sync || !self.scenario.sync_flush {
            return;
        }
        let Some(k) = self.brokers.iter().position(|b| self.configs[b].broker_name == broker_name) else { return };
        let Some(&slave) = self.slaves.get(k) else { return };
        let Role::Broker(Some(core)) = &self.nodes[slave].role else { return };
        let held = core.store().max_queue_offset(TOPIC, queue);
        if held <= offset {
            self.history.replica_violations.push(format!(
                "{key} answered SEND_OK at {broker_name} queue {queue} offset {offset}, but its slave holds that queue only below {held}"
            ));
        }
    }

    /// The cores of the brokers that are up, with their node names.
    pub fn live_brokers(&self) -> Vec<(&str, &BrokerCore<SimDisk>)> {
        self.brokers
            .iter()
            .chain(&self.slaves)
            .filter_map(|b| match &self.nodes[*b].role {
                Role::Broker(Some(c)) => Some((self.nodes[*b].name.as_str(), &**c)),
                _ => None,
            })
            .collect()
    }
}
