//! Broker core: the whole broker as a pure state machine over a [`MessageStore`].
//!
//! Inputs carry `now_ms`: requests ([`BrokerCore::on_request`]), connection open/close, flush
//! reports ([`BrokerCore::on_flushed`]) and timers ([`BrokerCore::on_timer`]). Outputs are drained
//! with [`BrokerCore::poll_output`]: frames to send, flush requests, registrations to send to
//! every NameServer. The core never awaits, reads a clock or opens a socket.
//!
//! **Durability is a handshake**: under SYNC_FLUSH a send is answered only from
//! [`BrokerCore::on_flushed`], i.e. after the driver reported a flush covering it.
//!
//! # Layout
//! - [`config`]: settings; [`topics`]: topic table; [`offsets`]: consumer offsets;
//!   [`clients`]: producer/consumer channels; `checks`: topic and group names refused with
//!   RocketMQ's codes; `send`: SEND_MESSAGE(_V2)/batch and flush waiters;
//!   `pull`: PULL_MESSAGE and long-poll holds; `schedule`: delay levels, retries, DLQ;
//!   `admin`: topic admin, offsets queries, stats; `access`: the ACL check at the request entry
//!   and the signing of this broker's own requests.
//!
//! # Calling contract
//! ```
//! use rmq_broker_core::{BrokerCore, BrokerConfig, FlushDiskType, Output};
//! use rmq_proto::{ConnId, RemotingCommand, codes::RequestCode, header::SendMessageRequestHeader};
//! use rmq_store::MemDirectory;
//!
//! let config = BrokerConfig { flush_disk_type: FlushDiskType::SyncFlush, ..Default::default() };
//! let mut broker = BrokerCore::open(MemDirectory::default(), config, 0).unwrap();
//! let conn = ConnId(1);
//! broker.on_conn_opened(0, conn, "127.0.0.1:5555".parse().unwrap());
//! let header = SendMessageRequestHeader { producer_group: "g".into(), topic: "T".into(),
//!     default_topic: "TBW102".into(), default_topic_queue_nums: 4, queue_id: 0, ..Default::default() };
//! let req = RemotingCommand::request_with(RequestCode::SendMessage, 1, &header).with_body(&b"hi"[..]);
//! broker.on_request(1, conn, req);
//! // Under SYNC_FLUSH nothing is answered yet; the core asks for a flush instead.
//! let mut asked_flush = false;
//! while let Some(out) = broker.poll_output() {
//!     match out {
//!         Output::Flush => asked_flush = true,
//!         Output::Transmit { .. } => panic!("answered before the flush"),
//!         _ => {}
//!     }
//! }
//! assert!(asked_flush);
//! // The driver flushes the store, then reports how far the flush reached.
//! let flushed = broker.flush_store().unwrap();
//! broker.on_flushed(2, flushed);
//! assert!(matches!(broker.poll_output(), Some(Output::Transmit { cmd, .. }) if cmd.code == 0));
//! ```

pub mod clients;
pub mod config;
pub mod groups;
pub mod offsets;
pub mod topics;
pub mod transaction;

mod access;
mod admin;
mod checks;
mod ha;
mod ops;
mod pull;
mod retention;
mod schedule;
mod send;
mod slave_sync;
pub mod stats;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use rmq_proto::codes::RequestCode;
use rmq_proto::{ConnId, RemotingCommand, ResponseCode};
use rmq_store::{Directory, MessageStore, StoreError};

pub use config::{BrokerConfig, BrokerRole, FlushDiskType};

use clients::ClientManager;
use ha::Ha;
use offsets::ConsumerOffsets;
use pull::PullHolds;
use schedule::DelayProgress;
use send::FlushWaiters;
use topics::TopicTable;

/// Flushes that may run at once; a second one lets new writes start syncing without waiting.
pub const FLUSHES_IN_FLIGHT_MAX: u8 = 2;

/// How often ConsumeQueues are flushed and the checkpoint written (flushIntervalConsumeQueue).
pub const CHECKPOINT_INTERVAL_MS: u64 = 1_000;

/// One checkpoint in this many flushes every changed ConsumeQueue (RocketMQ: a thorough flush
/// every 60 s).
pub const THOROUGH_CHECKPOINT_EVERY: u32 = 60;

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// Send a frame on a connection.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// The frame.
        cmd: RemotingCommand,
    },
    /// Make everything written durable: call [`BrokerCore::flush_store`], then report the
    /// returned offset through [`BrokerCore::on_flushed`] once the flush completed.
    Flush,
    /// Flush ConsumeQueues and write the checkpoint: call [`BrokerCore::begin_checkpoint`], run
    /// its jobs, then [`BrokerCore::on_checkpointed`].
    Checkpoint,
    /// Send this request to every NameServer: REGISTER_BROKER, or UNREGISTER_BROKER from a
    /// fenced master.
    RegisterBroker(RemotingCommand),
    /// Master: stream `bytes` (CommitLog bytes at `offset`; empty = heartbeat) to a slave's HA
    /// connection, as a 12-byte header (offset, length) and the bytes.
    HaTransmit {
        /// The slave's HA connection.
        conn: ConnId,
        /// CommitLog offset of the first byte.
        offset: u64,
        /// The bytes.
        bytes: bytes::Bytes,
    },
    /// Master: close a slave's HA connection (then report it with `on_ha_slave_closed`).
    HaClose {
        /// The slave's HA connection.
        conn: ConnId,
        /// Why, for the log.
        reason: String,
    },
    /// Slave: connect to the master's HA port; report `on_ha_master_connected` or
    /// `on_ha_master_closed`.
    HaConnect {
        /// The master's HA address.
        addr: String,
    },
    /// Slave: send this 8-byte offset report on the HA connection.
    HaReport {
        /// The CommitLog offset the slave holds.
        offset: u64,
    },
    /// Slave: close the HA connection (then report `on_ha_master_closed`); the next timer
    /// reconnects.
    HaDisconnect {
        /// Why, for the log.
        reason: String,
    },
    /// Slave: send this request to the master's remoting address and hand the answer, with
    /// this opaque, to [`BrokerCore::on_response`] (metadata copy, RocketMQ's
    /// SlaveSynchronize).
    MasterRequest {
        /// The master's remoting address.
        addr: String,
        /// The request.
        cmd: RemotingCommand,
    },
}

/// A flush in progress: run `jobs`, then report `target`.
#[derive(Debug)]
pub struct PendingFlush {
    /// The CommitLog offset durable once every job ran.
    pub target: u64,
    /// Detached flush work (empty when the store flushed in place).
    pub jobs: Vec<rmq_store::FlushJob>,
    /// Whether a driver should run `jobs` in its own loop rather than hand them to another
    /// thread: a SYNC_FLUSH group commit of at most [`INLINE_FLUSH_MAX_BYTES`]. Its senders wait
    /// for it anyway, and the hand-off there and back (two thread wake-ups per group commit)
    /// cost the broker more CPU than the flush itself on two cores.
    pub inline: bool,
}

/// The largest SYNC_FLUSH group commit a driver runs in its loop (an fdatasync of it takes well
/// under a millisecond on a disk writing ~350 MB/s); a larger backlog goes to another thread,
/// so the loop keeps answering reads while it syncs.
pub const INLINE_FLUSH_MAX_BYTES: u64 = 256 * 1024;

/// Past-tense facts for traces (recorded only when `record_events` is on).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// A message was appended to the CommitLog.
    MessageStored {
        /// Topic.
        topic: String,
        /// Queue.
        queue_id: i32,
        /// Queue offset.
        queue_offset: u64,
        /// CommitLog offset.
        commit_log_offset: u64,
        /// UNIQ_KEY, when the producer set one.
        uniq_key: Option<String>,
    },
    /// A send was answered.
    SendAnswered {
        /// Response code.
        code: i32,
        /// Queue offset (first of a batch).
        queue_offset: u64,
    },
    /// The store reported a flush up to this CommitLog offset.
    FlushCompleted {
        /// Durable CommitLog offset.
        commit_log_offset: u64,
    },
    /// A consumer offset moved.
    ConsumerOffsetCommitted {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Queue.
        queue_id: i32,
        /// New offset.
        offset: u64,
    },
    /// An operator moved a consumer offset (any direction).
    ConsumerOffsetReset {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Queue.
        queue_id: i32,
        /// New offset.
        offset: u64,
    },
    /// A topic was created or updated.
    TopicUpdated {
        /// Topic.
        topic: String,
    },
    /// A consumer group's membership changed.
    GroupMembershipChanged {
        /// Group.
        group: String,
        /// Members now.
        members: usize,
    },
    /// A pull was parked for long polling.
    PullHeld {
        /// Topic.
        topic: String,
        /// Queue.
        queue_id: i32,
    },
    /// END_TRANSACTION resolved a half message.
    TransactionEnded {
        /// The half message's offset in `RMQ_SYS_TRANS_HALF_TOPIC`.
        half_offset: u64,
        /// Committed (else rolled back).
        commit: bool,
    },
    /// A check round asked about a half message (`asked` false: no producer of its group
    /// is connected; the check still counts).
    TransactionChecked {
        /// The half message's offset.
        half_offset: u64,
        /// Checks so far.
        times: u32,
        /// Whether a producer was asked.
        asked: bool,
    },
    /// A half message checked `transactionCheckMax` times went to TRANS_CHECK_MAX_TIME_TOPIC.
    TransactionDiscarded {
        /// The half message's offset.
        half_offset: u64,
    },
    /// END_TRANSACTION was refused (one-way, so this is where the reason shows).
    TransactionRefused {
        /// Response code.
        code: i32,
        /// Why.
        reason: String,
    },
    /// A delayed or retried message became deliverable.
    DelayedDelivered {
        /// Target topic.
        topic: String,
    },
    /// Retention deleted files.
    FilesDeleted {
        /// CommitLog segments deleted.
        commit_log_segments: u32,
        /// ConsumeQueue files deleted.
        queue_segments: u32,
        /// The smallest CommitLog offset held now.
        commit_log_min_offset: u64,
        /// Consumer offsets moved up to their queue's new min.
        offsets_raised: usize,
    },
    /// A checkpoint's flushes were started.
    CheckpointBegan {
        /// The CommitLog offset it will record.
        commit_log_offset: u64,
    },
    /// A checkpoint's flushes finished (`ok` false: one failed, nothing recorded).
    CheckpointCompleted {
        /// Whether it was recorded.
        ok: bool,
    },
    /// Slave: the master's log ends before this slave's (the master lost an unflushed tail in
    /// a crash), so the slave cut its own log back to the master's end to follow it again.
    ReplicaTruncated {
        /// The slave's CommitLog end before.
        from: u64,
        /// The master's end, now the slave's.
        to: u64,
    },
    /// Master: a slave holds more than this master, whose store opened empty (its disk was
    /// lost or replaced): the slave is refused and keeps its data for an operator to restore.
    SlaveAheadOfEmptyMaster {
        /// The slave's reported offset.
        slave_offset: u64,
    },
}

/// Why the broker could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store failed to open or recover.
    #[error("store: {0}")]
    Store(StoreError),
    /// A persisted config file does not parse.
    #[error("{path}: {reason}")]
    Config {
        /// File.
        path: &'static str,
        /// Parser message.
        reason: String,
    },
}

/// The broker. A value over a value directory: `BrokerCore<MemDisk>` clones, compares and
/// hashes (see [`value_impls`]), so a model checker can hold it (see `models/`).
#[derive(Debug)]
pub struct BrokerCore<D: Directory> {
    config: BrokerConfig,
    store: MessageStore<D>,
    topics: TopicTable,
    offsets: ConsumerOffsets,
    clients: ClientManager,
    holds: PullHolds,
    flush_waiters: FlushWaiters,
    /// Replication: attached slaves and SYNC_MASTER waiters, or the link to the master.
    ha: Ha,
    /// Slave: what it learned about its master and the metadata copy in flight.
    sync: slave_sync::SlaveSync,
    delay: DelayProgress,
    /// Half messages resolved by END_TRANSACTION.
    transactions: transaction::Transactions,
    /// Connection → peer address (born host of messages, consumer connection lists).
    peers: BTreeMap<ConnId, SocketAddr>,
    /// Flush outputs emitted and not yet reported (at most `FLUSHES_IN_FLIGHT_MAX`).
    flushes_in_flight: u8,
    /// Flushes begun and not reported: (target, truncation generation at begin). A flush
    /// begun before a slave cut its log back may report a target whose bytes are new and
    /// unflushed: it earns nothing (see [`Self::on_flushed`]).
    flush_targets: Vec<(u64, u64)>,
    /// How many times this slave cut its log back (its truncation generation).
    truncations: u64,
    /// The truncation generation when the checkpoint in flight began.
    checkpoint_generation: u64,
    /// The CommitLog write position the latest emitted flush covers.
    flush_requested_to: u64,
    next_flush_ms: u64,
    next_register_ms: u64,
    next_persist_ms: u64,
    next_checkpoint_ms: u64,
    /// An Output::Checkpoint is outstanding.
    checkpoint_in_flight: bool,
    /// Checkpoints since the last thorough one.
    checkpoints_since_thorough: u32,
    /// Topics changed since the last persist of `config/topics.json`.
    topics_dirty: bool,
    /// Why the last checkpoint failed, if it did.
    last_checkpoint_error: Option<String>,
    next_client_scan_ms: u64,
    /// Retention: when it runs next, and why writes are refused (a disk past
    /// diskSpaceWarningLevelRatio), if they are.
    next_clean_ms: u64,
    disk_full: Option<String>,
    /// Subscription group settings (updateSubGroup).
    groups: groups::SubscriptionGroups,
    /// Put and get figures.
    stats: stats::Stats,
    /// Round-robin counter for sends that leave the queue to the broker.
    queue_rotor: u32,
    store_host: SocketAddr,
    outputs: VecDeque<Output>,
    events: Vec<Event>,
}

/// `Clone`, `PartialEq`, `Eq` and `Hash` for [`BrokerCore`] wherever its store has them
/// (`#[derive]` would ask them of `D` alone, not of `D::Seg`). One field list serves all
/// three: `Clone` builds the struct from it, so a field missing from it does not compile.
macro_rules! value_impls {
    ($($field:ident),* $(,)?) => {
        impl<D: Directory> Clone for BrokerCore<D>
        where
            MessageStore<D>: Clone,
        {
            fn clone(&self) -> Self {
                BrokerCore { $($field: self.$field.clone()),* }
            }
        }

        impl<D: Directory> PartialEq for BrokerCore<D>
        where
            MessageStore<D>: PartialEq,
        {
            fn eq(&self, other: &Self) -> bool {
                true $(&& self.$field == other.$field)*
            }
        }

        impl<D: Directory> Eq for BrokerCore<D> where MessageStore<D>: Eq {}

        impl<D: Directory> std::hash::Hash for BrokerCore<D>
        where
            MessageStore<D>: std::hash::Hash,
        {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                $(self.$field.hash(state);)*
            }
        }
    };
}

value_impls!(
    config,
    store,
    topics,
    offsets,
    clients,
    holds,
    flush_waiters,
    ha,
    sync,
    delay,
    transactions,
    peers,
    flushes_in_flight,
    flush_targets,
    truncations,
    checkpoint_generation,
    flush_requested_to,
    next_flush_ms,
    next_register_ms,
    next_persist_ms,
    next_checkpoint_ms,
    checkpoint_in_flight,
    checkpoints_since_thorough,
    topics_dirty,
    last_checkpoint_error,
    next_client_scan_ms,
    next_clean_ms,
    disk_full,
    groups,
    stats,
    queue_rotor,
    store_host,
    outputs,
    events,
);

impl<D: Directory> BrokerCore<D> {
    /// Opens the store (running recovery) and loads persisted topics, offsets and delay progress.
    pub fn open(dir: D, config: BrokerConfig, now_ms: u64) -> Result<Self, OpenError> {
        let (mut store, report) = MessageStore::open(dir, config.store.clone()).map_err(OpenError::Store)?;
        let mut topics = TopicTable::load(store.directory(), &config)
            .map_err(|reason| OpenError::Config { path: topics::TOPICS_PATH, reason })?;
        // Queues with data whose topic never reached topics.json (a crash inside the persist
        // window) get their topic back, so no stored message becomes unreachable.
        let restored = topics.restore_from_queues(now_ms, &store.queues());
        // Topics an older version let in with unsafe names are forgotten (and so never
        // registered again); the next persist rewrites topics.json without them.
        let dropped = !topics.drop_invalid_names(now_ms).is_empty();
        let mut offsets = ConsumerOffsets::load(store.directory())
            .map_err(|reason| OpenError::Config { path: offsets::OFFSETS_PATH, reason })?;
        let capped = offsets.cap_at(|topic, qid| store.max_queue_offset(topic, qid));
        tracing::info!(
            fresh = report.fresh,
            commit_log_end = report.commit_log_end,
            commit_log_min = store.commit_log_min_offset(),
            scanned_from = report.scan_start_offset,
            redispatched = report.redispatched,
            truncated_bytes = report.truncated_bytes,
            torn_records = report.torn_records,
            queues = report.queues,
            reindexed = report.reindexed,
            checkpoint_deferred = report.checkpoint_deferred,
            topics_restored = restored,
            offsets_capped = capped,
            "store recovered"
        );
        let groups = groups::SubscriptionGroups::load(store.directory())
            .map_err(|reason| OpenError::Config { path: groups::GROUPS_PATH, reason })?;
        let delay = DelayProgress::load(store.directory())
            .map_err(|reason| OpenError::Config { path: schedule::DELAY_PATH, reason })?;
        let store_host = config.broker_addr.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 10911)));
        let flush_requested_to = store.commit_log_flushed_offset();
        let fenced =
            ha::load_fence(store.directory()).map_err(|reason| OpenError::Config { path: ha::FENCE_PATH, reason })?;
        let end = store.commit_log_max_offset();
        let (floor, fresh) = if config.broker_role == BrokerRole::Slave {
            (end, report.fresh)
        } else {
            ha::open_floor(store.directory_mut(), end, report.fresh)
                .map_err(|reason| OpenError::Config { path: ha::FLOOR_PATH, reason })?
        };
        let ha = Ha::opened(floor, fresh, fenced);
        let mut transactions = transaction::Transactions::load(&store);
        transactions.start(now_ms, config.transaction_check_interval_ms);
        Ok(BrokerCore {
            transactions,
            store,
            topics,
            offsets,
            clients: ClientManager::default(),
            holds: PullHolds::default(),
            flush_waiters: FlushWaiters::default(),
            ha,
            sync: slave_sync::SlaveSync::default(),
            delay,
            peers: BTreeMap::new(),
            flushes_in_flight: 0,
            flush_targets: Vec::new(),
            truncations: 0,
            checkpoint_generation: 0,
            flush_requested_to,
            next_flush_ms: now_ms + config.flush_interval_ms,
            // The first registration goes out at once.
            next_register_ms: now_ms,
            next_persist_ms: now_ms + config.offset_persist_interval_ms,
            next_checkpoint_ms: now_ms + CHECKPOINT_INTERVAL_MS,
            last_checkpoint_error: None,
            topics_dirty: restored || dropped,
            checkpoint_in_flight: false,
            checkpoints_since_thorough: 0,
            next_client_scan_ms: now_ms + 10_000,
            next_clean_ms: now_ms + config.clean_resource_interval_ms,
            disk_full: None,
            groups,
            stats: stats::Stats::default(),
            queue_rotor: 0,
            store_host,
            outputs: VecDeque::new(),
            events: Vec::new(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// What the broker reports about itself at `now_ms` (runtime info, metrics).
    pub fn runtime(&self, now_ms: u64) -> stats::Runtime {
        let conf = self.config.to_properties();
        let prop = |k: &str| conf.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        stats::Runtime {
            broker_name: self.config.broker_name.clone(),
            broker_role: prop("brokerRole"),
            flush_disk_type: prop("flushDiskType"),
            stats: self.stats.clone(),
            rates: self.stats.rates(now_ms),
            commit_log_min_offset: self.store.commit_log_min_offset(),
            commit_log_max_offset: self.store.commit_log_max_offset(),
            commit_log_flushed_offset: self.flushed_offset(),
            dispatch_behind_bytes: self.store.commit_log_max_offset().saturating_sub(self.store.reput_offset()),
            disk_ratio: self.store.used_space_ratio(),
            disk_full: self.disk_full.is_some(),
            slave_acked_offset: self.ha.best_ack(),
            topics: self.topics.len(),
            queues: self.store.queue_count(),
            consumer_groups: self.clients.consumer_groups().len(),
            last_checkpoint_error: self.last_checkpoint_error.clone(),
            index_error: self.store.index_error().map(String::from),
        }
    }

    /// Read access to the store (tests, tools, the simulator's oracle).
    pub fn store(&self) -> &MessageStore<D> {
        &self.store
    }

    /// A connection opened.
    pub fn on_conn_opened(&mut self, _now_ms: u64, conn: ConnId, peer: SocketAddr) {
        self.peers.insert(conn, peer);
    }

    /// A connection closed: its clients leave their groups and its held pulls are dropped.
    pub fn on_conn_closed(&mut self, now_ms: u64, conn: ConnId) {
        self.peers.remove(&conn);
        self.holds.drop_conn(conn);
        let changed = self.clients.remove_conn(conn);
        self.notify_groups(now_ms, changed);
    }

    /// One request arrived on `conn`. With an ACL configured, it is checked first (see
    /// [`rmq_acl::check`]); a refused request is answered NO_PERMISSION and changes nothing.
    pub fn on_request(&mut self, now_ms: u64, conn: ConnId, req: RemotingCommand) {
        if req.is_response() {
            // Answers to this broker's own requests (registration, a slave's metadata copy);
            // answers to pushes to clients expect nothing.
            self.on_response(now_ms, &req);
            return;
        }
        if let Err(refusal) = self.access_check(conn, &req) {
            if !req.is_oneway() {
                self.outputs.push_back(Output::Transmit { conn, cmd: refusal });
            }
            return;
        }
        let resp = match req.request_code() {
            RequestCode::SendMessage | RequestCode::SendMessageV2 | RequestCode::SendBatchMessage => {
                self.send(now_ms, conn, &req)
            }
            RequestCode::PullMessage => self.pull(now_ms, conn, &req, true),
            RequestCode::ConsumerSendMsgBack => self.send_back(now_ms, &req),
            RequestCode::HeartBeat => self.heartbeat(now_ms, conn, &req),
            RequestCode::UnregisterClient => self.unregister_client(now_ms, conn, &req),
            RequestCode::GetConsumerListByGroup => self.consumer_list(&req),
            RequestCode::QueryConsumerOffset => self.query_consumer_offset(&req),
            RequestCode::UpdateConsumerOffset => self.update_consumer_offset(now_ms, &req),
            RequestCode::LockBatchMq => self.lock_batch(now_ms, &req),
            RequestCode::EndTransaction => self.end_transaction(now_ms, &req),
            RequestCode::UnlockBatchMq => self.unlock_batch(&req),
            _ => self.admin(now_ms, conn, &req),
        };
        if let Some(mut resp) = resp {
            if !req.is_oneway() {
                resp.opaque = req.opaque;
                self.outputs.push_back(Output::Transmit { conn, cmd: resp });
            }
        }
        self.pump(now_ms);
    }

    /// The store reported everything below `commit_log_offset` durable.
    pub fn on_flushed(&mut self, now_ms: u64, commit_log_offset: u64) {
        self.flushes_in_flight = self.flushes_in_flight.saturating_sub(1);
        // Reports of one target are indistinguishable: one begun before a cut is consumed
        // first, earning nothing, so a target is credited only once every flush of it ran.
        let gen = self.truncations;
        if let Some(i) = self.flush_targets.iter().position(|(t, g)| *t == commit_log_offset && *g != gen) {
            self.flush_targets.remove(i);
            self.flush_requested_to = self.flushed_offset();
            return;
        }
        if let Some(i) = self.flush_targets.iter().position(|(t, _)| *t == commit_log_offset) {
            self.flush_targets.remove(i);
        }
        self.store.complete_flush(commit_log_offset);
        self.event(|| Event::FlushCompleted { commit_log_offset });
        self.release_flush_waiters(now_ms);
        self.report_to_master(now_ms, false);
        self.pump(now_ms);
    }

    /// Starts the flush an [`Output::Flush`] asked for. Run the returned jobs (anywhere, e.g. on
    /// a blocking thread), then report `target` through [`Self::on_flushed`]; if a job failed,
    /// call [`Self::on_flush_failed`] instead.
    pub fn begin_flush(&mut self) -> Result<PendingFlush, StoreError> {
        let from = self.flushed_offset();
        let (target, jobs) = self.store.begin_flush()?;
        self.flush_targets.push((target, self.truncations));
        let inline = self.config.flush_disk_type == FlushDiskType::SyncFlush
            && target.saturating_sub(from) <= INLINE_FLUSH_MAX_BYTES;
        Ok(PendingFlush { target, jobs, inline })
    }

    /// Performs a whole flush in place; returns the offset to report through `on_flushed`.
    pub fn flush_store(&mut self) -> Result<u64, StoreError> {
        let pending = self.begin_flush()?;
        for job in pending.jobs {
            job.run()?;
        }
        Ok(pending.target)
    }

    /// The job zero-filling the first CommitLog segment of a master whose log was never written
    /// (`warmMapedFileEnable`), once: the driver runs it before it serves, as RocketMQ's first
    /// put waits for its warmed file (a put arriving first creates the file allocated but
    /// unwritten, and every fdatasync then also writes the inode). A checkpoint asks again, for
    /// a core whose driver did not.
    pub fn prepare_first_log_segment(&mut self) -> Option<rmq_store::FlushJob> {
        if self.config.broker_role == BrokerRole::Slave {
            return None;
        }
        self.store.prepare_first_log_segment()
    }

    /// Starts the checkpoint an [`Output::Checkpoint`] asked for; run the jobs, then report
    /// with [`Self::on_checkpointed`] (`ok = false` if any job failed).
    pub fn begin_checkpoint(&mut self) -> Result<rmq_store::PendingCheckpoint, StoreError> {
        // Every 60th checkpoint flushes every changed ConsumeQueue, not only the busy ones.
        self.checkpoints_since_thorough = (self.checkpoints_since_thorough + 1) % THOROUGH_CHECKPOINT_EVERY;
        let mut pending = self.store.begin_checkpoint(self.checkpoints_since_thorough == 0)?;
        pending.jobs.extend(self.prepare_first_log_segment());
        self.checkpoint_generation = self.truncations;
        let commit_log_offset = pending.commit_log_offset;
        self.event(|| Event::CheckpointBegan { commit_log_offset });
        Ok(pending)
    }

    /// A checkpoint's jobs finished. A failed checkpoint only makes the next recovery re-index
    /// more; nothing acknowledged depends on it. Failures show in GET_BROKER_RUNTIME_INFO.
    pub fn on_checkpointed(&mut self, _now_ms: u64, done: &rmq_store::PendingCheckpoint, ok: bool) {
        self.checkpoint_in_flight = false;
        self.last_checkpoint_error = if self.checkpoint_generation != self.truncations {
            Some("the log was cut back while this checkpoint was in flight".into())
        } else if ok {
            self.store.complete_checkpoint(done.commit_log_offset, &done.queue_offsets).err().map(|e| e.to_string())
        } else {
            Some("a checkpoint flush job failed".into())
        };
        let recorded = self.last_checkpoint_error.is_none();
        self.event(|| Event::CheckpointCompleted { ok: recorded });
    }

    /// A flush failed: nothing it covered is acknowledged; the next timer asks again.
    pub fn on_flush_failed(&mut self, _now_ms: u64) {
        self.flushes_in_flight = self.flushes_in_flight.saturating_sub(1);
        if !self.flush_targets.is_empty() {
            self.flush_targets.remove(0);
        }
        // What that flush covered must be asked for again.
        self.flush_requested_to = self.flushed_offset();
    }

    /// Timers: ASYNC flush, flush timeouts, expired pull holds, registration, offset
    /// persistence, client expiry, delayed messages. Call at [`Self::next_deadline_ms`].
    pub fn on_timer(&mut self, now_ms: u64) {
        self.stats.sample(now_ms);
        if now_ms >= self.next_flush_ms {
            self.next_flush_ms = now_ms + self.config.flush_interval_ms;
            if self.store.commit_log_max_offset() > self.flushed_offset() {
                self.request_flush();
            }
        }
        self.expire_flush_waiters(now_ms);
        self.expire_holds(now_ms);
        if now_ms >= self.next_register_ms {
            self.persist_topics();
            self.next_register_ms = now_ms + self.config.register_interval_ms;
            // A fenced master leaves the routes (again at every interval, so a NameServer that
            // restarted and heard an old registration forgets it too); its slave serves reads.
            let reg = if self.ha.fenced.is_some() { self.unregistration() } else { self.registration() };
            self.outputs.push_back(Output::RegisterBroker(reg));
        }
        if now_ms >= self.next_persist_ms {
            self.next_persist_ms = now_ms + self.config.offset_persist_interval_ms;
            self.persist_offsets();
        }
        if now_ms >= self.next_checkpoint_ms {
            self.next_checkpoint_ms = now_ms + CHECKPOINT_INTERVAL_MS;
            if !self.checkpoint_in_flight {
                self.checkpoint_in_flight = true;
                self.outputs.push_back(Output::Checkpoint);
            }
        }
        if now_ms >= self.next_client_scan_ms {
            self.next_client_scan_ms = now_ms + 10_000;
            let changed = self.clients.expire(now_ms, self.config.client_expiry_ms);
            if !changed.is_empty() {
                tracing::info!(groups = ?changed, "consumer clients expired (no heartbeat)");
            }
            self.notify_groups(now_ms, changed);
        }
        if now_ms >= self.next_clean_ms {
            self.next_clean_ms = now_ms + self.config.clean_resource_interval_ms;
            self.clean_files(now_ms);
        }
        if self.config.broker_role != BrokerRole::Slave {
            // A slave's CommitLog is the master's, byte for byte: it never writes on its own.
            self.deliver_due_delayed(now_ms);
            self.check_transactions(now_ms);
        }
        self.ha_timer(now_ms);
        self.slave_sync_timer(now_ms);
        self.pump(now_ms);
    }

    /// The earliest time [`Self::on_timer`] has work.
    pub fn next_deadline_ms(&self) -> u64 {
        let mut d = self
            .next_flush_ms
            .min(self.next_register_ms)
            .min(self.next_persist_ms)
            .min(self.next_client_scan_ms)
            .min(self.next_clean_ms);
        if let Some(t) = self.flush_waiters.next_deadline_ms() {
            d = d.min(t);
        }
        if let Some(t) = self.holds.next_deadline_ms() {
            d = d.min(t);
        }
        if let Some(t) = self.delay.next_due_ms().filter(|_| self.config.broker_role != BrokerRole::Slave) {
            d = d.min(t);
        }
        if let Some(t) = self.ha_deadline_ms() {
            d = d.min(t);
        }
        if let Some(t) = self.transaction_deadline_ms() {
            d = d.min(t);
        }
        if let Some(t) = self.slave_sync_deadline_ms() {
            d = d.min(t);
        }
        d
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        // Records the store staged reach the page cache before any answer (a SEND_OK, a
        // replica's ack, a pull result) leaves, and by the end of every driver batch (one-way
        // sends included): an acknowledged record survives a process crash. One commit covers
        // every put of the batch; with nothing staged it costs nothing.
        if let Err(e) = self.store.commit() {
            // The log's file refused a write inside its allocated length: a failing disk.
            // Answering would acknowledge records that are not in the file, so the broker stops
            // here (the binaries abort on panic) and recovery restarts it from the log.
            panic!("the CommitLog could not be written ({e}); stopping before acknowledging what it holds");
        }
        self.outputs.pop_front()
    }

    /// Takes the events recorded since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Writes topics, offsets and delay progress, and flushes: the clean-shutdown path.
    pub fn shutdown(&mut self, now_ms: u64) -> Result<u64, StoreError> {
        self.persist_topics();
        self.persist_offsets();
        let flushed = self.store.checkpoint()?;
        self.on_flushed(now_ms, flushed);
        Ok(flushed)
    }

    /// The UNREGISTER_BROKER request to send to every NameServer at shutdown.
    pub fn unregistration(&self) -> RemotingCommand {
        let h = rmq_proto::header::UnregisterBrokerRequestHeader {
            broker_addr: self.config.broker_addr.clone(),
            broker_id: self.config.broker_id,
            broker_name: self.config.broker_name.clone(),
            cluster_name: self.config.cluster_name.clone(),
        };
        self.signed(RemotingCommand::request_with(RequestCode::UnregisterBroker, 0, &h))
    }

    /// Checks cross-structure invariants; the simulator calls it after every step.
    pub fn assert_invariants(&self) {
        self.store.assert_invariants();
        self.topics.assert_names_valid();
        assert!(self.flushed_offset() <= self.store.commit_log_max_offset(), "flushed beyond the write position");
        assert!(self.flushes_in_flight <= FLUSHES_IN_FLIGHT_MAX, "more flushes in flight than allowed");
        self.flush_waiters.assert_ordered();
        if let Some(end) = self.flush_waiters.last_end_offset() {
            assert!(end <= self.store.commit_log_max_offset(), "a flush waiter waits for data never written");
        }
        self.holds.assert_bounded(self.config.pull_holds_max);
        self.assert_ha_invariants();
    }

    /// Asks for a flush of everything written, unless in-flight flushes already cover it. Up to
    /// `FLUSHES_IN_FLIGHT_MAX` overlap: writes that arrive while a flush runs start the next
    /// one at once instead of waiting for the first to finish (group commit, pipelined).
    /// Where the CommitLog is durable, as the store last recorded a completed flush.
    fn flushed_offset(&self) -> u64 {
        self.store.commit_log_flushed_offset()
    }

    fn request_flush(&mut self) {
        let written = self.store.commit_log_max_offset();
        if self.flushes_in_flight < FLUSHES_IN_FLIGHT_MAX && written > self.flush_requested_to {
            self.flushes_in_flight += 1;
            // begin_flush runs after this point, so that flush covers at least `written`.
            self.flush_requested_to = written;
            self.outputs.push_back(Output::Flush);
        }
    }

    fn event(&mut self, f: impl FnOnce() -> Event) {
        if self.config.record_events {
            self.events.push(f());
        }
    }

    /// Work that follows any input: wake held pulls whose queues grew, stream new bytes to
    /// slaves.
    fn pump(&mut self, now_ms: u64) {
        self.wake_holds(now_ms);
        if self.config.broker_role != BrokerRole::Slave {
            self.stream_to_slaves(now_ms);
        }
    }
}

/// A response with a code and remark.
pub(crate) fn reply(req: &RemotingCommand, code: ResponseCode, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::response_to(req, code).with_remark(remark)
}

/// A SUCCESS response.
pub(crate) fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, ResponseCode::Success)
}

#[cfg(test)]
mod tests;
