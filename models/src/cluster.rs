//! One broker group (a master and, optionally, a slave) made of the real [`BrokerCore`]s over
//! [`MemDisk`], and the network between them and their clients, as a value a model checker can
//! clone, compare and hash.
//!
//! What the harness does for the cores is what the tokio driver does, one output at a time:
//! - `Output::Flush` becomes a pending flush; [`Cluster::flush`] is the moment the disk
//!   finishes it (the store's flush runs, then `on_flushed` reports it);
//! - `Output::Checkpoint` runs at once (ConsumeQueue flushes and the checkpoint file);
//! - the HA link is a TCP stream: ordered, each direction a FIFO, and it can break;
//! - client requests and responses travel as a multiset: delivered in any order, lost,
//!   or delivered twice;
//! - a crash is a power cut: the disk keeps what the store flushed ([`MemDisk::after_power_cut`]);
//!   a restart runs the real recovery ([`BrokerCore::open`]); a lost disk opens empty.
//!
//! Registrations to NameServers and a slave's metadata copy from its master are dropped: no
//! NameServer is modelled, and a slave restores topic configs from the queues it replicates.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use rmq_broker_core::{BrokerConfig, BrokerCore, BrokerRole, FlushDiskType, Output};
use rmq_proto::message::{decode_message, prop, MessageExt};
use rmq_proto::{ConnId, RemotingCommand};
use rmq_store::{GetStatus, MemDisk, MessageStore, StoreConfig};

/// The connection id the master gives its slave's HA connection.
pub const HA_CONN: ConnId = ConnId(1);
/// Client `i` talks to the master over `ConnId(CLIENT_CONN_BASE + i)`.
pub const CLIENT_CONN_BASE: u64 = 10;
/// The topic every model uses; one queue.
pub const TOPIC: &str = "T";

/// Master or slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The master (broker id 0).
    Master,
    /// The slave (broker id 1).
    Slave,
}

/// One broker: running, or down with what its disk kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    /// Running.
    Up {
        /// The real broker core.
        core: Box<BrokerCore<MemDisk>>,
        /// `Output::Flush` asked for and not yet completed by the disk.
        flushes: u8,
    },
    /// Crashed; `disk` is what a restart finds.
    Down {
        /// The disk after the power cut (or empty, if it was lost).
        disk: MemDisk,
    },
}

impl Node {
    /// The core, when running.
    pub fn core(&self) -> Option<&BrokerCore<MemDisk>> {
        match self {
            Node::Up { core, .. } => Some(core),
            Node::Down { .. } => None,
        }
    }

    fn core_mut(&mut self) -> Option<&mut BrokerCore<MemDisk>> {
        match self {
            Node::Up { core, .. } => Some(core),
            Node::Down { .. } => None,
        }
    }
}

/// Where an envelope goes (the client is the envelope's `client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dest {
    /// A request to the master.
    Master,
    /// A response to the client.
    Client,
}

/// A remoting frame in flight between a client and the master.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// Where it goes.
    pub to: Dest,
    /// Which client's connection it travels on.
    pub client: u8,
    /// The frame.
    pub cmd: RemotingCommand,
}

impl Envelope {
    fn sort_key(&self) -> (Dest, u8, i32, i32) {
        (self.to, self.client, self.cmd.opaque, self.cmd.code)
    }
}

/// The master–slave HA connection: two ordered streams.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct HaLink {
    /// Master → slave: CommitLog bytes at an offset (empty: heartbeat).
    pub to_slave: VecDeque<(u64, Bytes)>,
    /// Slave → master: offset reports.
    pub to_master: VecDeque<u64>,
}

/// How the group is configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupConfig {
    /// The master's settings.
    pub master: BrokerConfig,
    /// The slave's settings, if there is a slave.
    pub slave: Option<BrokerConfig>,
    /// How many clients talk to the master.
    pub clients: u8,
}

impl GroupConfig {
    /// A group with small segments (the state a checker hashes stays a few KiB).
    pub fn new(flush: FlushDiskType, master_role: BrokerRole, with_slave: bool, clients: u8) -> Self {
        let store = StoreConfig {
            commit_log_segment_bytes: 1024,
            consume_queue_segment_entries: 8,
            max_message_bytes: 512,
            check_crc_on_recover: true,
            index: None,
            warm_log_segments: false,
        };
        let base = BrokerConfig {
            flush_disk_type: flush,
            max_message_bytes: 256,
            default_topic_queue_nums: 1,
            // No NameServer here: registrations are dropped; keep them rare.
            register_interval_ms: 1 << 40,
            ha_heartbeat_interval_ms: 1_000,
            // Timers that coincide fire in one step: fewer interleavings, same behaviour.
            flush_interval_ms: 1_000,
            ha_housekeeping_ms: 20_000,
            sync_flush_timeout_ms: 5_000,
            store,
            ..BrokerConfig::default()
        };
        let master = BrokerConfig { broker_role: master_role, ..base.clone() };
        let slave = with_slave.then(|| BrokerConfig {
            broker_role: BrokerRole::Slave,
            broker_id: 1,
            broker_addr: "127.0.0.1:10921".into(),
            ha_addr: "127.0.0.1:10922".into(),
            ha_master_addr: Some(base.ha_addr.clone()),
            ..base
        });
        GroupConfig { master, slave, clients }
    }

    fn config(&self, role: Role) -> &BrokerConfig {
        match role {
            Role::Master => &self.master,
            Role::Slave => self.slave.as_ref().expect("a slave is configured"),
        }
    }
}

/// A broker group and its network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cluster {
    /// The master.
    pub master: Node,
    /// The slave, if configured.
    pub slave: Option<Node>,
    /// Each broker's clock (master, slave), in ms.
    pub clock: [u64; 2],
    /// Client frames in flight, sorted (a multiset).
    pub net: Vec<Envelope>,
    /// The HA connection, when up.
    pub ha: Option<HaLink>,
}

/// A broker refused to open over what its disk kept: recovery failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenFailed(pub String);

fn client_peer(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20_000 + u16::from(i)))
}

impl Cluster {
    /// Both brokers started on empty disks, the slave connected.
    pub fn start(cfg: &GroupConfig) -> Self {
        let mut c = Cluster {
            master: Node::Down { disk: MemDisk::default() },
            slave: cfg.slave.as_ref().map(|_| Node::Down { disk: MemDisk::default() }),
            clock: [0, 0],
            net: Vec::new(),
            ha: None,
        };
        c.restart(cfg, Role::Master).expect("an empty master opens");
        if c.slave.is_some() {
            c.restart(cfg, Role::Slave).expect("an empty slave opens");
            // The slave connects on its first timer.
            c.tick(Role::Slave);
        }
        c
    }

    /// The node in `role`.
    pub fn node(&self, role: Role) -> Option<&Node> {
        match role {
            Role::Master => Some(&self.master),
            Role::Slave => self.slave.as_ref(),
        }
    }

    fn node_mut(&mut self, role: Role) -> Option<&mut Node> {
        match role {
            Role::Master => Some(&mut self.master),
            Role::Slave => self.slave.as_mut(),
        }
    }

    fn idx(role: Role) -> usize {
        match role {
            Role::Master => 0,
            Role::Slave => 1,
        }
    }

    /// The roles present.
    pub fn roles(&self) -> Vec<Role> {
        if self.slave.is_some() {
            vec![Role::Master, Role::Slave]
        } else {
            vec![Role::Master]
        }
    }

    /// Runs `f` on a running core at its clock, then routes every output.
    fn with_core(&mut self, role: Role, f: impl FnOnce(&mut BrokerCore<MemDisk>, u64)) {
        let now = self.clock[Self::idx(role)];
        if let Some(core) = self.node_mut(role).and_then(Node::core_mut) {
            f(core, now);
        }
        self.pump();
    }

    /// Routes outputs of both cores until none is left.
    fn pump(&mut self) {
        loop {
            let mut outs = Vec::new();
            for role in self.roles() {
                if let Some(core) = self.node_mut(role).and_then(Node::core_mut) {
                    while let Some(o) = core.poll_output() {
                        outs.push((role, o));
                    }
                }
            }
            if outs.is_empty() {
                break;
            }
            for (role, o) in outs {
                self.route(role, o);
            }
        }
        self.net.sort_by_key(Envelope::sort_key);
    }

    fn route(&mut self, from: Role, out: Output) {
        let now = self.clock[Self::idx(from)];
        match out {
            Output::Transmit { conn, cmd } => {
                if let Some(client) = conn.0.checked_sub(CLIENT_CONN_BASE).and_then(|c| u8::try_from(c).ok()) {
                    self.net.push(Envelope { to: Dest::Client, client, cmd });
                }
            }
            Output::Flush => {
                if let Some(Node::Up { flushes, .. }) = self.node_mut(from) {
                    *flushes += 1;
                }
            }
            Output::Checkpoint => {
                if let Some(core) = self.node_mut(from).and_then(Node::core_mut) {
                    match core.begin_checkpoint() {
                        Ok(mut pending) => {
                            let ok = pending.jobs.drain(..).all(|job| job.run().is_ok());
                            core.on_checkpointed(now, &pending, ok);
                        }
                        Err(_) => {
                            let none = rmq_store::PendingCheckpoint {
                                commit_log_offset: 0,
                                queue_offsets: Vec::new(),
                                jobs: Vec::new(),
                            };
                            core.on_checkpointed(now, &none, false);
                        }
                    }
                }
            }
            Output::RegisterBroker(_) | Output::MasterRequest { .. } => {}
            Output::HaTransmit { conn, offset, bytes } => {
                if conn == HA_CONN {
                    if let Some(link) = &mut self.ha {
                        link.to_slave.push_back((offset, bytes));
                    }
                }
            }
            Output::HaClose { .. } => self.break_ha(),
            Output::HaConnect { .. } => {
                let master_up = self.master.core().is_some();
                if master_up && self.ha.is_none() {
                    self.ha = Some(HaLink::default());
                    let mnow = self.clock[0];
                    if let Some(m) = self.master.core_mut() {
                        m.on_ha_slave_opened(mnow, HA_CONN);
                    }
                    if let Some(s) = self.slave.as_mut().and_then(Node::core_mut) {
                        s.on_ha_master_connected(now);
                    }
                } else if let Some(s) = self.slave.as_mut().and_then(Node::core_mut) {
                    s.on_ha_master_closed(now);
                }
            }
            Output::HaReport { offset } => {
                if let Some(link) = &mut self.ha {
                    link.to_master.push_back(offset);
                }
            }
            Output::HaDisconnect { .. } => self.break_ha(),
        }
    }

    /// The HA connection breaks: both ends are told (the slave reconnects on a later timer).
    pub fn break_ha(&mut self) {
        if self.ha.take().is_none() {
            return;
        }
        let [mnow, snow] = self.clock;
        if let Some(m) = self.master.core_mut() {
            m.on_ha_slave_closed(mnow, HA_CONN);
        }
        if let Some(s) = self.slave.as_mut().and_then(Node::core_mut) {
            s.on_ha_master_closed(snow);
        }
    }

    /// Client `client` puts a request to the master in flight.
    pub fn send_to_master(&mut self, client: u8, cmd: RemotingCommand) {
        self.net.push(Envelope { to: Dest::Master, client, cmd });
        self.net.sort_by_key(Envelope::sort_key);
    }

    /// A request from client `client` reaches the master (nothing happens if it is down).
    pub fn deliver_request(&mut self, client: u8, cmd: RemotingCommand) {
        let conn = ConnId(CLIENT_CONN_BASE + u64::from(client));
        self.with_core(Role::Master, |core, now| core.on_request(now, conn, cmd));
    }

    /// Whether `role` has a flush the disk can complete.
    pub fn can_flush(&self, role: Role) -> bool {
        matches!(self.node(role), Some(Node::Up { flushes, .. }) if *flushes > 0)
    }

    /// The disk completes one flush of `role`.
    pub fn flush(&mut self, role: Role) {
        let now = self.clock[Self::idx(role)];
        if let Some(Node::Up { core, flushes }) = self.node_mut(role) {
            *flushes = flushes.saturating_sub(1);
            match core.flush_store() {
                Ok(target) => core.on_flushed(now, target),
                Err(_) => core.on_flush_failed(now),
            }
        }
        self.pump();
    }

    /// When `role`'s next timer is due, if it is running.
    pub fn next_timer(&self, role: Role) -> Option<u64> {
        let core = self.node(role)?.core()?;
        Some(core.next_deadline_ms().max(self.clock[Self::idx(role)]))
    }

    /// Moves `role`'s clock to its next timer and runs it.
    pub fn tick(&mut self, role: Role) {
        if let Some(at) = self.next_timer(role) {
            self.clock[Self::idx(role)] = at;
            self.with_core(role, |core, now| core.on_timer(now));
        }
    }

    /// The next HA frame reaches the slave.
    pub fn ha_to_slave(&mut self) {
        let Some((offset, bytes)) = self.ha.as_mut().and_then(|l| l.to_slave.pop_front()) else { return };
        self.with_core(Role::Slave, |core, now| core.on_ha_master_data(now, offset, &bytes));
    }

    /// The next HA report reaches the master.
    pub fn ha_to_master(&mut self) {
        let Some(offset) = self.ha.as_mut().and_then(|l| l.to_master.pop_front()) else { return };
        self.with_core(Role::Master, |core, now| core.on_ha_slave_report(now, HA_CONN, offset));
    }

    /// A power cut on `role`: it keeps what it flushed; its connections break. Returns false if
    /// it was already down.
    pub fn crash(&mut self, role: Role) -> bool {
        let Some(Node::Up { core, .. }) = self.node(role) else { return false };
        let disk = MemDisk::after_power_cut(core.store());
        self.break_ha();
        *self.node_mut(role).expect("present") = Node::Down { disk };
        if role == Role::Master {
            // Every client connection to the master breaks with it.
            self.net.clear();
        }
        self.pump();
        true
    }

    /// The master's disk is replaced by an empty one while it is down.
    pub fn lose_disk(&mut self, role: Role) {
        if let Some(Node::Down { disk }) = self.node_mut(role) {
            *disk = MemDisk::default();
        }
    }

    /// A stopped broker starts over what its disk kept (the real recovery runs).
    pub fn restart(&mut self, cfg: &GroupConfig, role: Role) -> Result<(), OpenFailed> {
        let now = self.clock[Self::idx(role)];
        let Some(Node::Down { disk }) = self.node(role) else { return Ok(()) };
        let core = BrokerCore::open(disk.clone(), cfg.config(role).clone(), now)
            .map_err(|e| OpenFailed(format!("{role:?} failed to open after a crash: {e}")))?;
        *self.node_mut(role).expect("present") = Node::Up { core: Box::new(core), flushes: 0 };
        if role == Role::Master {
            for i in 0..cfg.clients {
                let conn = ConnId(CLIENT_CONN_BASE + u64::from(i));
                self.with_core(role, |core, now| core.on_conn_opened(now, conn, client_peer(i)));
            }
        }
        self.pump();
        Ok(())
    }
}

/// A SEND_MESSAGE of the model's topic and queue: body and UNIQ_KEY `id`, and KEYS `id` too
/// when `keyed`.
pub fn send_request(id: &str, opaque: i32, keyed: bool) -> RemotingCommand {
    let mut props: std::collections::BTreeMap<String, String> = [(prop::UNIQ_KEY.to_string(), id.to_string())].into();
    if keyed {
        props.insert(prop::KEYS.to_string(), id.to_string());
    }
    let h = rmq_proto::header::SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: TOPIC.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 1,
        queue_id: 0,
        properties: Some(rmq_proto::message::encode_properties(&props)),
        ..Default::default()
    };
    RemotingCommand::request_with(rmq_proto::codes::RequestCode::SendMessage, opaque, &h)
        .with_body(id.as_bytes().to_vec())
}

/// The message at `queue_offset` of the model's queue in `store`, if one is there.
pub fn message_at(store: &MessageStore<MemDisk>, queue_offset: u64) -> Option<MessageExt> {
    let got = store.get_messages(TOPIC, 0, queue_offset, 1, u32::MAX, &|_| true);
    if got.status != GetStatus::Found {
        return None;
    }
    let raw = got.messages.first()?;
    decode_message(raw, false).ok().map(|(m, _)| m)
}

/// The store a node would serve from: its running store, or (down) the store its disk
/// reopens as after recovery. `None` if the disk does not reopen.
pub fn readable_store<'a>(
    cfg: &GroupConfig,
    role: Role,
    node: &'a Node,
) -> Option<std::borrow::Cow<'a, MessageStore<MemDisk>>> {
    match node {
        Node::Up { core, .. } => Some(std::borrow::Cow::Borrowed(core.store())),
        Node::Down { disk } => MessageStore::open(disk.clone(), cfg.config(role).store.clone())
            .ok()
            .map(|(s, _)| std::borrow::Cow::Owned(s)),
    }
}

/// The model key (`KEYS` property) of a stored message.
pub fn key_of(msg: &MessageExt) -> Option<&str> {
    msg.properties.get(prop::KEYS).map(String::as_str)
}
