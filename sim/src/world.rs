//! The fast lane: a discrete-event loop over the real NameServer and broker cores.
//!
//! Nodes: `ns` (NameServerCore), `broker` (BrokerCore over a [`SimDisk`]), producers `p0..`
//! and consumers `c0..` (small actors speaking the real protocol). Every frame crosses the real
//! codec (`encode_frame` → bytes → `FrameDecoder`). Time, network delay, loss, duplication and
//! crash damage all come from one seeded RNG, and events at equal times run in insertion order,
//! so a seed replays bit for bit.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rmq_broker_core::{BrokerConfig, BrokerCore, FlushDiskType, Output};
use rmq_namesrv_core::{NamesrvConfig, NamesrvCore};
use rmq_proto::frame::{encode_frame, FrameDecoder};
use rmq_proto::{ConnId, RemotingCommand};

use crate::actors::{Consumer, Producer};
use crate::disk::{CrashMode, SimDisk};
use crate::oracle::History;
use crate::scenario::{Fault, Scenario};
use crate::trace::Trace;

/// Wall-clock origin of simulated time (cores stamp messages with `EPOCH_MS + t`).
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// The topic every scenario uses.
pub const TOPIC: &str = "SimTopic";
/// Node index of the NameServer.
pub const NS: usize = 0;
/// Node index of the broker.
pub const BROKER: usize = 1;

#[derive(Debug)]
enum Ev {
    Deliver { from: usize, to: usize, from_epoch: u64, to_epoch: u64, frame: Bytes },
    Timer { node: usize, at: u64 },
    FlushDone { epoch: u64, target: u64 },
    Fault(Fault),
}

/// What runs on a node.
pub enum Role {
    /// The NameServer core.
    Namesrv(Option<NamesrvCore>),
    /// The broker core and its disk.
    Broker(Option<Box<BrokerCore<SimDisk>>>),
    /// A producer actor.
    Producer(Producer),
    /// A consumer actor.
    Consumer(Consumer),
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
    partitions: Vec<(usize, usize)>,
    disk: SimDisk,
    broker_config: BrokerConfig,
    /// Sends, acks, deliveries, crashes.
    pub history: History,
    /// Event lines and their digest.
    pub trace: Trace,
}

impl World {
    /// Builds the cluster of a scenario.
    pub fn new(scenario: Scenario, seed: u64, keep_trace: bool) -> Self {
        let mut broker_config = BrokerConfig {
            flush_disk_type: if scenario.sync_flush { FlushDiskType::SyncFlush } else { FlushDiskType::AsyncFlush },
            broker_addr: "10.0.0.2:10911".into(),
            record_events: true,
            register_interval_ms: 10_000,
            ..Default::default()
        };
        broker_config.store.commit_log_segment_bytes = 256 * 1024;
        broker_config.store.consume_queue_segment_entries = 1_024;
        let mut nodes = vec![
            Node {
                name: "ns".into(),
                up: true,
                epoch: 0,
                timer_at: None,
                paused_until: 0,
                skew_ms: 0,
                role: Role::Namesrv(None),
            },
            Node {
                name: "broker".into(),
                up: true,
                epoch: 0,
                timer_at: None,
                paused_until: 0,
                skew_ms: 0,
                role: Role::Broker(None),
            },
        ];
        for i in 0..scenario.producers {
            nodes.push(Node {
                name: format!("p{i}"),
                up: true,
                epoch: 0,
                timer_at: None,
                paused_until: 0,
                skew_ms: 0,
                role: Role::Producer(Producer::new(i, scenario.messages)),
            });
        }
        for i in 0..scenario.consumers {
            nodes.push(Node {
                name: format!("c{i}"),
                up: true,
                epoch: 0,
                timer_at: None,
                paused_until: 0,
                skew_ms: 0,
                role: Role::Consumer(Consumer::new(i)),
            });
        }
        for n in nodes.iter_mut() {
            n.skew_ms = scenario.clock_skew_ms.get(&n.name).copied().unwrap_or(0);
        }
        let mut w = World {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            nodes,
            partitions: Vec::new(),
            disk: SimDisk::default(),
            broker_config,
            history: History::default(),
            trace: Trace::new(keep_trace),
            scenario,
        };
        w.boot();
        w
    }

    fn boot(&mut self) {
        self.nodes[NS].role = Role::Namesrv(Some(NamesrvCore::new(NamesrvConfig::default())));
        self.start_broker();
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
        if let Role::Broker(Some(core)) = &mut self.nodes[BROKER].role {
            // The operator's mqadmin updateTopic, before any client starts.
            core.on_request(EPOCH_MS, ConnId(u64::MAX), req);
        }
        self.pump_broker();
        for n in 2..self.nodes.len() {
            self.schedule_timer(n, 100 + n as u64);
        }
        for (at, f) in self.scenario.faults.clone() {
            self.push(at, Ev::Fault(f));
        }
    }

    fn start_broker(&mut self) {
        let core = BrokerCore::open(self.disk.clone(), self.broker_config.clone(), self.wall_ms(BROKER))
            .expect("recovery over a simulated disk never fails to open");
        self.nodes[BROKER].role = Role::Broker(Some(Box::new(core)));
        self.trace.line(self.now, "broker", "broker.node.started", "");
        self.pump_broker();
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

    /// Sends `cmd` from one node to another through the codec and the simulated network.
    pub fn send(&mut self, from: usize, to: usize, cmd: &RemotingCommand) {
        let mut buf = BytesMut::new();
        if encode_frame(cmd, &mut buf).is_err() {
            self.trace.line(self.now, &self.nodes[from].name.clone(), "net.frame.unencodable", "");
            return;
        }
        let frame = buf.freeze();
        let blocked = self.partitions.iter().any(|&(a, b)| (a, b) == (from, to) || (a, b) == (to, from));
        if blocked || !self.nodes[to].up || self.rng.gen_range(0..100) < self.scenario.drop_pct {
            let what = if blocked { "partition" } else { "loss" };
            self.trace.line(
                self.now,
                &self.nodes[from].name.clone(),
                "net.frame.dropped",
                &format!("to={} cause={what}", self.nodes[to].name),
            );
            return;
        }
        let copies = if self.rng.gen_range(0..100) < self.scenario.dup_pct { 2 } else { 1 };
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
            Ev::Timer { node, .. } => Some(*node),
            Ev::FlushDone { .. } => Some(BROKER),
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
            Ev::FlushDone { epoch, target } => {
                if self.nodes[BROKER].epoch != epoch || !self.nodes[BROKER].up {
                    return;
                }
                let now_ms = self.wall_ms(BROKER);
                if let Role::Broker(Some(core)) = &mut self.nodes[BROKER].role {
                    core.on_flushed(now_ms, target);
                }
                self.pump_broker();
            }
            Ev::Fault(f) => self.fault(f),
        }
    }

    fn deliver(&mut self, from: usize, to: usize, cmd: RemotingCommand) {
        let now_ms = self.wall_ms(to);
        match to {
            NS => {
                let resp = match &mut self.nodes[NS].role {
                    Role::Namesrv(Some(core)) if !cmd.is_response() => core.handle(now_ms, ConnId(from as u64), &cmd),
                    _ => None,
                };
                if let Some(r) = resp {
                    self.send(NS, from, &r);
                }
                self.drain_namesrv_events();
            }
            BROKER => {
                if let Role::Broker(Some(core)) = &mut self.nodes[BROKER].role {
                    core.on_conn_opened(
                        now_ms,
                        ConnId(from as u64),
                        format!("10.0.1.{from}:5000").parse().expect("valid address"),
                    );
                    core.on_request(now_ms, ConnId(from as u64), cmd);
                }
                self.pump_broker();
            }
            _ => crate::actors::on_frame(self, to, from, cmd),
        }
    }

    fn tick(&mut self, node: usize) {
        let now_ms = self.wall_ms(node);
        match node {
            NS => {
                let next = match &mut self.nodes[NS].role {
                    Role::Namesrv(Some(core)) => {
                        core.tick(now_ms);
                        Some(core.next_deadline_ms())
                    }
                    _ => None,
                };
                self.drain_namesrv_events();
                if let Some(d) = next {
                    let at = self.sim_time(NS, d);
                    self.schedule_timer(NS, at);
                }
            }
            BROKER => {
                if let Role::Broker(Some(core)) = &mut self.nodes[BROKER].role {
                    core.on_timer(now_ms);
                }
                self.pump_broker();
            }
            _ => crate::actors::on_tick(self, node),
        }
    }

    /// Executes the broker core's outputs and re-arms its timer.
    fn pump_broker(&mut self) {
        let now_ms = self.wall_ms(BROKER);
        loop {
            let out = match &mut self.nodes[BROKER].role {
                Role::Broker(Some(core)) => core.poll_output(),
                _ => None,
            };
            let Some(out) = out else { break };
            match out {
                Output::Transmit { conn, cmd } => {
                    if (conn.0 as usize) < self.nodes.len() {
                        self.send(BROKER, conn.0 as usize, &cmd);
                    }
                }
                Output::Flush => {
                    let target = match &mut self.nodes[BROKER].role {
                        Role::Broker(Some(core)) => core.flush_store().ok(),
                        _ => None,
                    };
                    if let Some(target) = target {
                        let (lag, epoch) = (self.scenario.flush_lag_ms, self.nodes[BROKER].epoch);
                        self.push(self.now + lag, Ev::FlushDone { epoch, target });
                    }
                }
                Output::Checkpoint => {
                    if let Role::Broker(Some(core)) = &mut self.nodes[BROKER].role {
                        if let Ok(mut p) = core.begin_checkpoint() {
                            let ok = std::mem::take(&mut p.jobs).into_iter().all(|j| j.run().is_ok());
                            core.on_checkpointed(now_ms, &p, ok);
                        }
                    }
                }
                Output::RegisterBroker(cmd) => self.send(BROKER, NS, &cmd),
            }
        }
        let (events, deadline) = match &mut self.nodes[BROKER].role {
            Role::Broker(Some(core)) => (core.drain_events(), Some(core.next_deadline_ms())),
            _ => (Vec::new(), None),
        };
        for e in events {
            self.history.broker_event(self.nodes[BROKER].epoch, &e);
            self.trace.broker_event(self.now, &e);
        }
        if let Some(d) = deadline {
            let at = self.sim_time(BROKER, d);
            self.schedule_timer(BROKER, at);
        }
    }

    fn drain_namesrv_events(&mut self) {
        let events = match &mut self.nodes[NS].role {
            Role::Namesrv(Some(core)) => core.drain_events(),
            _ => Vec::new(),
        };
        for e in events {
            self.trace.line(self.now, "ns", "namesrv.broker.changed", &format!("{e:?}"));
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
                self.nodes[i].up = false;
                self.nodes[i].epoch += 1;
                self.nodes[i].timer_at = None;
                self.history.crashes += 1;
                match i {
                    BROKER => {
                        let mode = CrashMode { writeback_pct: self.scenario.writeback_pct, tear: self.scenario.tear };
                        let dirty = self.disk.dirty_pages();
                        self.nodes[BROKER].role = Role::Broker(None);
                        self.disk = self.disk.crash(mode, &mut self.rng);
                        self.trace.line(self.now, &name, "sim.node.crashed", &format!("dirty_pages={dirty}"));
                    }
                    NS => {
                        self.nodes[NS].role = Role::Namesrv(None);
                        self.trace.line(self.now, &name, "sim.node.crashed", "");
                    }
                    _ => self.trace.line(self.now, &name, "sim.node.crashed", ""),
                }
                self.close_connections_of(i);
            }
            Fault::Restart(name) => {
                let Some(i) = self.node_index(&name) else { return };
                if self.nodes[i].up {
                    return;
                }
                self.nodes[i].up = true;
                self.nodes[i].epoch += 1;
                self.trace.line(self.now, &name, "sim.node.restarted", "");
                match i {
                    BROKER => self.start_broker(),
                    NS => {
                        self.nodes[NS].role = Role::Namesrv(Some(NamesrvCore::new(NamesrvConfig::default())));
                        self.schedule_timer(NS, self.now + 1);
                    }
                    _ => {
                        // A restarted client starts from scratch, as a new process would.
                        self.nodes[i].role = match &self.nodes[i].role {
                            Role::Producer(p) => Role::Producer(p.restarted()),
                            Role::Consumer(c) => Role::Consumer(Consumer::new(c.index())),
                            _ => unreachable!("nodes past the broker are clients"),
                        };
                        self.schedule_timer(i, self.now + 1);
                    }
                }
            }
            Fault::Partition(a, b) => {
                if let (Some(x), Some(y)) = (self.node_index(&a), self.node_index(&b)) {
                    self.partitions.push((x, y));
                    self.trace.line(self.now, "sim", "sim.net.partitioned", &format!("a={a} b={b}"));
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
        if i != BROKER {
            let now_ms = self.wall_ms(BROKER);
            if let Role::Broker(Some(core)) = &mut self.nodes[BROKER].role {
                core.on_conn_closed(now_ms, ConnId(i as u64));
            }
            self.pump_broker();
        }
        if i != NS {
            let now_ms = self.wall_ms(NS);
            if let Role::Namesrv(Some(core)) = &mut self.nodes[NS].role {
                core.on_conn_closed(now_ms, ConnId(i as u64));
            }
            self.drain_namesrv_events();
        }
    }

    /// The broker core, if it is up.
    pub fn broker(&self) -> Option<&BrokerCore<SimDisk>> {
        match &self.nodes[BROKER].role {
            Role::Broker(Some(c)) => Some(c),
            _ => None,
        }
    }
}
