//! The push consumer's decisions, sans-IO: route requests and refreshes, heartbeats, which
//! queues this member owns (rebalance), where each owned queue starts (committed offset, or the
//! queue's first or last offset), when to pull and from which replica, which messages are in
//! flight, which offset is safe to commit and when, what goes back to the broker for a retry and
//! when a failed send-back is consumed again here, and how a queue recovers when a request to
//! its broker fails (re-seat from the committed offset: redelivery, never a skip). Both the
//! tokio push consumer (`rmq_client::PushConsumer`) and the fast simulation lane drive this one
//! state machine.
//!
//! # Calling contract
//! Every input carries `now_ms` and returns the outputs it caused. Requests carry a [`ReqId`];
//! answer each with the matching `on_*` method, or [`ConsumerCore::on_failed`] when it failed
//! without an answer. Answers to requests the core no longer holds (timed out, or for a queue
//! it released) are dropped. [`ConsumerCore::tick`] must run by [`ConsumerCore::next_wakeup`].
//! [`ConsumerOutput::Consume`] hands messages of the pull just answered to the listener; report
//! each with [`ConsumerCore::on_consumed`]. A queue is consumed serially: it is not pulled again
//! while any of its messages is with the listener or waiting for a retry.
//!
//! ```
//! use rmq_client_core::consumer::*;
//! use rmq_proto::body::{BrokerData, QueueData, TopicRouteData};
//! let mut core = ConsumerCore::new(ConsumerSettings::new("me", &["T"]), 0);
//! let out = core.tick(0);
//! let ConsumerOutput::FetchRoute { req, .. } = out[0].clone() else { panic!() };
//! let route = TopicRouteData {
//!     queue_datas: vec![QueueData { broker_name: "b".into(), read_queue_nums: 1, write_queue_nums: 1, perm: 6, topic_sys_flag: 0 }],
//!     broker_datas: vec![BrokerData { cluster: "c".into(), broker_name: "b".into(),
//!         broker_addrs: [(0, "127.0.0.1:10911".to_string())].into(), zone_name: None, enable_acting_master: false }],
//!     ..Default::default()
//! };
//! let out = core.on_route(req, Some(route), 1);
//! let req = out.iter().find_map(|o| match o { ConsumerOutput::QueryMembers { req, .. } => Some(*req), _ => None }).unwrap();
//! let out = core.on_members(req, vec!["me".into()], 2);
//! assert!(matches!(&out[0], ConsumerOutput::Rebalanced { queues } if queues.len() == 1));
//! let ConsumerOutput::QueryCommitted { req, .. } = out[1].clone() else { panic!() };
//! let out = core.on_committed(req, Some(5), 3);
//! assert!(matches!(&out[0], ConsumerOutput::Pull { offset: 5, commit: Some(5), .. }));
//! core.assert_invariants();
//! ```

use std::collections::{BTreeMap, BTreeSet};

use rmq_proto::body::{MessageQueue, TopicRouteData};

use crate::rebalance::allocate_averagely;
use crate::{ProcessQueue, PublishInfo};

/// Identifies one request of the consumer.
pub type ReqId = u64;

/// How a group shares messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Model {
    /// Each message to one member; offsets on the broker.
    Clustering,
    /// Each message to every member; offsets in the client.
    Broadcasting,
}

/// Where a queue with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StartFrom {
    /// Its first offset held.
    First,
    /// Its end: only new messages.
    Last,
}

/// The consumer's settings (RocketMQ's names in brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerSettings {
    /// This member's client id.
    pub client_id: String,
    /// Subscribed topics (the retry topic included).
    pub topics: BTreeSet<String>,
    /// Clustering or broadcasting [messageModel].
    pub model: Model,
    /// Start of a queue with no committed offset [consumeFromWhere].
    pub start_from: StartFrom,
    /// Messages per pull [pullBatchSize].
    pub pull_batch: i32,
    /// Long-poll hold asked of the broker [brokerSuspendMaxTimeMillis].
    pub pull_hold_ms: u64,
    /// A request unanswered this long (beyond a pull's hold) is abandoned.
    pub request_timeout_ms: u64,
    /// Wait after a failed pull [pullTimeDelayMillsWhenException].
    pub pull_retry_delay_ms: u64,
    /// Wait before consuming again here when a send-back failed.
    pub local_retry_delay_ms: u64,
    /// Rebalance period [rebalanceInterval].
    pub rebalance_ms: u64,
    /// Heartbeat period [heartbeatBrokerInterval].
    pub heartbeat_ms: u64,
    /// Route refresh period [pollNameServerInterval].
    pub route_refresh_ms: u64,
    /// Offset commit period [persistConsumerOffsetInterval].
    pub persist_ms: u64,
    /// Which broker group is asked for the member list first (members ask in turn).
    pub members_rotor: usize,
    /// Orderly consumption [MessageListenerOrderly]: each queue's messages go to the listener
    /// one at a time, in queue order; a CLUSTERING member consumes a queue only while it holds
    /// the broker's lock on it (LOCK_BATCH_MQ), and a failure is retried here, without a
    /// send-back, after [`Self::suspend_ms`], until [`Self::max_reconsume`] retries are spent
    /// and the message goes to the dead-letter queue.
    pub orderly: bool,
    /// Lock renewal period [lockInterval, 20 s].
    pub lock_renew_ms: u64,
    /// How long the client trusts a lock it has not renewed [REBALANCE_LOCK_MAX_LIVE_TIME,
    /// 30 s; the broker keeps it 60 s].
    pub lock_live_ms: u64,
    /// Pause of an orderly queue after a failure [suspendCurrentQueueTimeMillis].
    pub suspend_ms: u64,
    /// Orderly: local retries before the dead-letter queue [maxReconsumeTimes].
    pub max_reconsume: u32,
    /// Fault injection, never for applications: an orderly CLUSTERING member consumes without
    /// taking the broker's queue locks. It exists to show what the lock protects (the
    /// `orderly-rebalance` simulation fails with it).
    pub skip_queue_lock: bool,
}

impl ConsumerSettings {
    /// RocketMQ's defaults for a clustering member `client_id` of `topics`.
    pub fn new(client_id: &str, topics: &[&str]) -> Self {
        ConsumerSettings {
            client_id: client_id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            model: Model::Clustering,
            start_from: StartFrom::Last,
            pull_batch: 32,
            pull_hold_ms: 15_000,
            request_timeout_ms: 3_000,
            pull_retry_delay_ms: 3_000,
            local_retry_delay_ms: 5_000,
            rebalance_ms: 20_000,
            heartbeat_ms: 30_000,
            route_refresh_ms: 30_000,
            persist_ms: 5_000,
            members_rotor: 0,
            orderly: false,
            lock_renew_ms: 20_000,
            lock_live_ms: 30_000,
            suspend_ms: 1_000,
            max_reconsume: 16,
            skip_queue_lock: false,
        }
    }
}

/// What a broker answered to a pull.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PullAnswer {
    /// Messages at these queue offsets (after the client's own tag check), and the next offset.
    Found {
        /// Queue offsets of the messages to consume.
        offsets: Vec<u64>,
        /// Where to pull next.
        next_begin: u64,
    },
    /// Nothing (new, or matching): continue from `next_begin`.
    Empty {
        /// Where to pull next.
        next_begin: u64,
    },
    /// The broker refused the pull (a code other than found / not found / moved).
    Refused,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConsumerOutput {
    /// Ask a NameServer for `topic`'s route; answer with [`ConsumerCore::on_route`].
    FetchRoute {
        /// Request.
        req: ReqId,
        /// Topic.
        topic: String,
    },
    /// Heartbeat these brokers.
    Heartbeat {
        /// Broker addresses, sorted.
        addrs: Vec<String>,
    },
    /// GET_CONSUMER_LIST_BY_GROUP; answer with [`ConsumerCore::on_members`].
    QueryMembers {
        /// Request.
        req: ReqId,
        /// Broker address.
        addr: String,
    },
    /// QUERY_CONSUMER_OFFSET; answer with [`ConsumerCore::on_committed`].
    QueryCommitted {
        /// Request.
        req: ReqId,
        /// Queue.
        mq: MessageQueue,
        /// Broker address.
        addr: String,
    },
    /// GET_MIN_OFFSET (`max` false) or GET_MAX_OFFSET; answer with
    /// [`ConsumerCore::on_queue_offset`].
    QueryQueueOffset {
        /// Request.
        req: ReqId,
        /// Queue.
        mq: MessageQueue,
        /// Broker address.
        addr: String,
        /// GET_MAX_OFFSET.
        max: bool,
    },
    /// PULL_MESSAGE; answer with [`ConsumerCore::on_pulled`].
    Pull {
        /// Request.
        req: ReqId,
        /// Queue.
        mq: MessageQueue,
        /// Broker address.
        addr: String,
        /// Offset to pull from.
        offset: u64,
        /// Offset to commit on the way (COMMIT_OFFSET flag).
        commit: Option<u64>,
        /// Most messages.
        max_nums: i32,
        /// Long-poll hold.
        hold_ms: u64,
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// Hand the messages at these offsets of `mq` (from the pull just answered, or held for a
    /// local retry) to the listener.
    Consume {
        /// Queue.
        mq: MessageQueue,
        /// Queue offsets.
        offsets: Vec<u64>,
    },
    /// CONSUMER_SEND_MSG_BACK of the message at `queue_offset`; answer with
    /// [`ConsumerCore::on_sent_back`].
    SendBack {
        /// Request.
        req: ReqId,
        /// Queue.
        mq: MessageQueue,
        /// The message's queue offset.
        queue_offset: u64,
        /// The master's address.
        addr: String,
        /// Straight to the dead-letter queue (delay level -1): an orderly message that spent
        /// its local retries.
        to_dlq: bool,
    },
    /// LOCK_BATCH_MQ at a master; answer with [`ConsumerCore::on_locked`].
    Lock {
        /// Request.
        req: ReqId,
        /// The master's address.
        addr: String,
        /// Queues to lock (or renew).
        mqs: Vec<MessageQueue>,
    },
    /// UNLOCK_BATCH_MQ at a master, one-way: these queues are committed and let go.
    Unlock {
        /// The master's address.
        addr: String,
        /// Queues.
        mqs: Vec<MessageQueue>,
    },
    /// UPDATE_CONSUMER_OFFSET, one-way.
    Commit {
        /// Queue.
        mq: MessageQueue,
        /// Broker address.
        addr: String,
        /// Offset.
        offset: u64,
    },
    /// The owned queues changed.
    Rebalanced {
        /// Owned queues now, sorted.
        queues: Vec<MessageQueue>,
    },
    /// BROADCASTING: write these offsets (every queue this client ever consumed) to the
    /// client's local offset store, replacing what it held; read them back into
    /// [`ConsumerCore::restore_offsets`] when the client starts again.
    SaveOffsets {
        /// Next offset to consume, per queue.
        offsets: BTreeMap<MessageQueue, u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seat {
    /// Needs its start offset.
    Unseated,
    /// Pulls from here.
    At(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct QueueState {
    seat: Seat,
    /// The queue's request outstanding (offset query or pull).
    busy: Option<ReqId>,
    /// No request before this time.
    not_before: u64,
    in_flight: ProcessQueue,
    /// Offsets with the listener, or with the broker for a send-back.
    consuming: BTreeSet<u64>,
    /// Offsets whose send-back failed, and when to consume them again here.
    retry_at: BTreeMap<u64, u64>,
    /// The offset last committed.
    committed: Option<u64>,
    /// Orderly: pulled offsets not handed to the listener yet.
    waiting: BTreeSet<u64>,
    /// Orderly: failed attempts per offset.
    attempts: BTreeMap<u64, u32>,
    /// Orderly CLUSTERING: when the broker last granted this member the queue's lock.
    locked_at: Option<u64>,
    /// Orderly CLUSTERING: the lock request outstanding.
    locking: Option<ReqId>,
}

impl QueueState {
    fn new() -> Self {
        QueueState {
            seat: Seat::Unseated,
            busy: None,
            not_before: 0,
            in_flight: ProcessQueue::default(),
            consuming: BTreeSet::new(),
            retry_at: BTreeMap::new(),
            committed: None,
            waiting: BTreeSet::new(),
            attempts: BTreeMap::new(),
            locked_at: None,
            locking: None,
        }
    }

    fn lock_valid(&self, s: &ConsumerSettings, now_ms: u64) -> bool {
        self.locked_at.is_some_and(|t| now_ms < t + s.lock_live_ms)
    }

    /// The lock is gone (refused, or not renewed in time): nothing more goes to the listener;
    /// what was pulled or waits for a retry is dropped, to be pulled again from the safe
    /// offset once the lock is back.
    fn lose_lock(&mut self) {
        self.locked_at = None;
        self.drop_queued();
    }

    /// Orderly: drops what was pulled but not handed to the listener and what waits for a
    /// local retry, and pulls again from the first of them (so the safe offset never passes
    /// them).
    fn drop_queued(&mut self) {
        let dropped: Vec<u64> = std::mem::take(&mut self.waiting)
            .into_iter()
            .chain(std::mem::take(&mut self.retry_at).into_keys())
            .collect();
        if let (Some(first), Seat::At(next)) = (dropped.iter().min(), &mut self.seat) {
            *next = (*next).min(*first);
        }
        self.in_flight.remove(&dropped);
    }

    fn committable(&self) -> Option<u64> {
        match self.seat {
            Seat::At(next) => Some(self.in_flight.committable(next)),
            Seat::Unseated => None,
        }
    }

    fn seat_at(&mut self, offset: u64) {
        self.seat = Seat::At(offset);
        self.in_flight = ProcessQueue::default();
        self.retry_at.clear();
        self.waiting.clear();
        self.attempts.clear();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Req {
    Route(String),
    Members,
    Committed(MessageQueue),
    QueueOffset(MessageQueue),
    Pull(MessageQueue),
    SendBack(MessageQueue, u64),
    Lock(Vec<MessageQueue>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
struct RouteView {
    queues: Vec<MessageQueue>,
    addrs: BTreeMap<String, BTreeMap<i64, String>>,
    asked_at: Option<u64>,
    asking: bool,
    /// The last request got no route: ask again after the retry delay if that is sooner than
    /// the refresh period.
    failed: bool,
}

impl RouteView {
    /// When to ask for the route next (when no request is outstanding).
    fn due(&self, s: &ConsumerSettings) -> u64 {
        let wait = if self.failed { s.pull_retry_delay_ms.min(s.route_refresh_ms) } else { s.route_refresh_ms };
        self.asked_at.map_or(0, |t| t + wait)
    }
}

/// The push consumer's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerCore {
    settings: ConsumerSettings,
    routes: BTreeMap<String, RouteView>,
    suggested: BTreeMap<String, i64>,
    owned: BTreeMap<MessageQueue, QueueState>,
    /// Orderly CLUSTERING: queues let go by rebalance while a message is still with the
    /// listener; committed and unlocked when it comes back.
    draining: BTreeMap<MessageQueue, QueueState>,
    /// Orderly CLUSTERING: the last lock renewal.
    last_lock_renew: u64,
    /// Broadcasting offsets (clustering ones live on the broker).
    local_offsets: BTreeMap<MessageQueue, u64>,
    /// The broadcasting offsets last handed out to be saved.
    saved_offsets: BTreeMap<MessageQueue, u64>,
    pending: BTreeMap<ReqId, (Req, u64)>,
    next_req: ReqId,
    members_rotor: usize,
    last_heartbeat: Option<u64>,
    last_rebalance: Option<u64>,
    last_persist: u64,
}

impl ConsumerCore {
    /// A consumer that owns nothing yet, started at `now_ms`.
    pub fn new(settings: ConsumerSettings, now_ms: u64) -> Self {
        let members_rotor = settings.members_rotor;
        let routes = settings.topics.iter().map(|t| (t.clone(), RouteView::default())).collect();
        ConsumerCore {
            settings,
            routes,
            suggested: BTreeMap::new(),
            owned: BTreeMap::new(),
            draining: BTreeMap::new(),
            last_lock_renew: now_ms,
            local_offsets: BTreeMap::new(),
            saved_offsets: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_req: 1,
            members_rotor,
            last_heartbeat: None,
            last_rebalance: None,
            last_persist: now_ms,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ConsumerSettings {
        &self.settings
    }

    /// Owned queues, sorted.
    pub fn owned(&self) -> Vec<MessageQueue> {
        self.owned.keys().cloned().collect()
    }

    /// Whether the message at `offset` of `mq` is still the consumer's business: with the
    /// listener, with the broker for a send-back, or waiting to be consumed again here. A driver
    /// that holds pulled messages may drop the others.
    pub fn holds(&self, mq: &MessageQueue, offset: u64) -> bool {
        self.owned.get(mq).or_else(|| self.draining.get(mq)).is_some_and(|q| {
            q.consuming.contains(&offset) || q.retry_at.contains_key(&offset) || q.waiting.contains(&offset)
        })
    }

    /// Orderly: the failed attempts so far of the message at `offset` of `mq` (a driver adds
    /// them to the reconsume count the listener sees, as RocketMQ does).
    pub fn attempts(&self, mq: &MessageQueue, offset: u64) -> u32 {
        self.owned.get(mq).and_then(|q| q.attempts.get(&offset)).copied().unwrap_or(0)
    }

    /// Orderly CLUSTERING with the queue locks taken.
    fn needs_lock(&self) -> bool {
        let s = &self.settings;
        s.orderly && s.model == Model::Clustering && !s.skip_queue_lock
    }

    /// Every broker address of the known routes, sorted.
    pub fn broker_addrs(&self) -> Vec<String> {
        let all: BTreeSet<&String> =
            self.routes.values().flat_map(|r| r.addrs.values().flat_map(|m| m.values())).collect();
        all.into_iter().cloned().collect()
    }

    /// A member joined or left (NOTIFY_CONSUMER_IDS_CHANGED): rebalance now.
    pub fn rebalance_now(&mut self, now_ms: u64) -> Vec<ConsumerOutput> {
        self.last_rebalance = None;
        self.tick(now_ms)
    }

    /// An operator reset the group's offsets (RESET_CONSUMER_CLIENT_OFFSET): every owned queue
    /// in `offsets` drops what it pulled and what is with the listener (those answers are
    /// ignored when they come), and pulls from its new offset. The broker already committed
    /// the offsets (CLUSTERING); BROADCASTING keeps them here. Queues this member does not own
    /// are for other members; a queue owned later starts from what the broker holds.
    pub fn reset_offsets(&mut self, offsets: &BTreeMap<MessageQueue, u64>, now_ms: u64) -> Vec<ConsumerOutput> {
        for (mq, offset) in offsets {
            if self.settings.model == Model::Broadcasting {
                self.local_offsets.insert(mq.clone(), *offset);
            }
            let Some(q) = self.owned.get_mut(mq) else { continue };
            if let Some(req) = q.busy.take() {
                self.pending.remove(&req);
            }
            q.consuming.clear();
            q.not_before = now_ms;
            q.seat_at(*offset);
            q.committed = Some(*offset);
        }
        self.tick(now_ms)
    }

    /// Stops: commits every owned queue's safe offset and releases it.
    pub fn shutdown(&mut self) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let queues: Vec<MessageQueue> = self.owned.keys().cloned().collect();
        for mq in queues {
            self.release(&mq, false, &mut out);
        }
        let draining: Vec<MessageQueue> = self.draining.keys().cloned().collect();
        for mq in draining {
            if let Some(q) = self.draining.get_mut(&mq) {
                q.consuming.clear();
            }
            self.finish_draining(&mq, &mut out);
        }
        self.pending.clear();
        if self.settings.model == Model::Broadcasting {
            self.saved_offsets = self.local_offsets.clone();
            out.push(ConsumerOutput::SaveOffsets { offsets: self.local_offsets.clone() });
        }
        out
    }

    /// BROADCASTING: the offsets the client's local store held at start (what an earlier run
    /// handed out in [`ConsumerOutput::SaveOffsets`]); each queue resumes there instead of
    /// asking the broker where to start. Call before the first input.
    pub fn restore_offsets(&mut self, offsets: BTreeMap<MessageQueue, u64>) {
        self.saved_offsets = offsets.clone();
        self.local_offsets = offsets;
    }

    /// BROADCASTING: the offsets kept here, per queue.
    pub fn local_offsets(&self) -> &BTreeMap<MessageQueue, u64> {
        &self.local_offsets
    }

    /// A route answer (`None`: no NameServer had it).
    pub fn on_route(&mut self, req: ReqId, route: Option<TopicRouteData>, now_ms: u64) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let Some((Req::Route(topic), _)) = self.pending.remove(&req) else { return out };
        let first = {
            let view = self.routes.entry(topic.clone()).or_default();
            view.asking = false;
            let Some(route) = route else {
                view.failed = true;
                return out;
            };
            view.failed = false;
            let queues = PublishInfo::readable_queues(&topic, &route);
            view.addrs = route.broker_datas.iter().map(|b| (b.broker_name.clone(), b.broker_addrs.clone())).collect();
            let first = view.queues.is_empty() && !queues.is_empty();
            // A route that lost a group's queues (its master and slave unregistered) keeps the
            // queues known: the group comes back, and rebalance must not shuffle.
            if !queues.is_empty() {
                view.queues = queues;
            }
            first
        };
        if first {
            // The first route of a topic: join the group and take queues at once.
            self.last_heartbeat = None;
            self.last_rebalance = None;
        }
        out.extend(self.tick(now_ms));
        out
    }

    /// The group's members (an empty list when the broker had none).
    pub fn on_members(&mut self, req: ReqId, members: Vec<String>, now_ms: u64) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let Some((Req::Members, _)) = self.pending.remove(&req) else { return out };
        if self.settings.model == Model::Clustering {
            let mut wanted = BTreeSet::new();
            for view in self.routes.values() {
                wanted.extend(allocate_averagely(&view.queues, &members, &self.settings.client_id));
            }
            self.reassign(wanted, &mut out);
        }
        self.poll_all(now_ms, &mut out);
        out
    }

    /// The group's committed offset of a queue (`None`: the group has none).
    pub fn on_committed(&mut self, req: ReqId, offset: Option<u64>, now_ms: u64) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let Some((Req::Committed(mq), _)) = self.pending.remove(&req) else { return out };
        let Some(q) = self.owned.get_mut(&mq) else { return out };
        q.busy = None;
        match offset {
            Some(o) => {
                q.seat_at(o);
                q.committed = Some(o);
            }
            None => {
                let max = self.settings.start_from == StartFrom::Last;
                if let Some(addr) = self.read_addr(&mq.broker_name) {
                    let req = self.request(Req::QueueOffset(mq.clone()), now_ms, self.settings.request_timeout_ms);
                    self.owned.get_mut(&mq).expect("owned").busy = Some(req);
                    out.push(ConsumerOutput::QueryQueueOffset { req, mq: mq.clone(), addr, max });
                }
            }
        }
        self.poll(&mq, now_ms, &mut out);
        out
    }

    /// A queue's first or last offset.
    pub fn on_queue_offset(&mut self, req: ReqId, offset: u64, now_ms: u64) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let Some((Req::QueueOffset(mq), _)) = self.pending.remove(&req) else { return out };
        let Some(q) = self.owned.get_mut(&mq) else { return out };
        q.busy = None;
        q.seat_at(offset);
        self.poll(&mq, now_ms, &mut out);
        out
    }

    /// A pull's answer; `suggested` is the broker id the broker suggested reading from.
    pub fn on_pulled(
        &mut self,
        req: ReqId,
        answer: PullAnswer,
        suggested: Option<i64>,
        now_ms: u64,
    ) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let Some((Req::Pull(mq), _)) = self.pending.remove(&req) else { return out };
        if let Some(id) = suggested {
            self.suggested.insert(mq.broker_name.clone(), id);
        }
        let Some(q) = self.owned.get_mut(&mq) else { return out };
        q.busy = None;
        match answer {
            PullAnswer::Found { offsets, next_begin } => {
                q.seat = Seat::At(next_begin);
                if !offsets.is_empty() {
                    q.in_flight.add(&offsets);
                    if self.settings.orderly {
                        // Handed over one at a time by `poll`.
                        q.waiting.extend(offsets.iter().copied());
                    } else {
                        q.consuming.extend(offsets.iter().copied());
                        out.push(ConsumerOutput::Consume { mq: mq.clone(), offsets });
                    }
                }
            }
            PullAnswer::Empty { next_begin } => q.seat = Seat::At(next_begin),
            PullAnswer::Refused => q.not_before = now_ms + self.settings.pull_retry_delay_ms,
        }
        self.poll(&mq, now_ms, &mut out);
        out
    }

    /// The listener finished the messages at `offsets` of `mq`.
    pub fn on_consumed(
        &mut self,
        mq: &MessageQueue,
        offsets: &[u64],
        success: bool,
        now_ms: u64,
    ) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        if let Some(q) = self.draining.get_mut(mq) {
            for o in offsets {
                // A failure is abandoned: the queue's next owner consumes it again from the
                // committed offset, which does not pass it.
                if q.consuming.remove(o) && success {
                    q.in_flight.remove(&[*o]);
                }
            }
            self.finish_draining(mq, &mut out);
            return out;
        }
        let Some(q) = self.owned.get_mut(mq) else { return out };
        let offsets: Vec<u64> = offsets.iter().copied().filter(|o| q.consuming.remove(o)).collect();
        if self.settings.orderly {
            let s = &self.settings;
            let master = self.master_addr(&mq.broker_name);
            let mut backs = Vec::new();
            let q = self.owned.get_mut(mq).expect("owned");
            for o in offsets {
                if success {
                    q.in_flight.remove(&[o]);
                    q.attempts.remove(&o);
                    continue;
                }
                let n = q.attempts.entry(o).or_insert(0);
                *n += 1;
                match &master {
                    // Spent: to the dead-letter queue, blocking the queue until the broker
                    // has it.
                    Some(addr) if *n > s.max_reconsume && s.model == Model::Clustering => {
                        q.consuming.insert(o);
                        backs.push((o, addr.clone()));
                    }
                    // Broadcasting keeps no dead letters: a spent message is dropped.
                    _ if *n > s.max_reconsume && s.model == Model::Broadcasting => {
                        q.in_flight.remove(&[o]);
                        q.attempts.remove(&o);
                    }
                    // The queue waits, then the same message is consumed again here.
                    _ => {
                        q.retry_at.insert(o, now_ms + s.suspend_ms);
                    }
                }
            }
            for (o, addr) in backs {
                let req = self.request(Req::SendBack(mq.clone(), o), now_ms, self.settings.request_timeout_ms);
                out.push(ConsumerOutput::SendBack { req, mq: mq.clone(), queue_offset: o, addr, to_dlq: true });
            }
            self.poll(mq, now_ms, &mut out);
            return out;
        }
        if success || self.settings.model == Model::Broadcasting {
            // Broadcasting has no retry: a failed message is dropped, as RocketMQ does.
            q.in_flight.remove(&offsets);
        } else {
            let addr = self.master_addr(&mq.broker_name);
            for o in offsets {
                match &addr {
                    Some(addr) => {
                        // Until the broker answers, the message blocks its queue as if it
                        // were still with the listener.
                        self.owned.get_mut(mq).expect("owned").consuming.insert(o);
                        let req = self.request(Req::SendBack(mq.clone(), o), now_ms, self.settings.request_timeout_ms);
                        out.push(ConsumerOutput::SendBack {
                            req,
                            mq: mq.clone(),
                            queue_offset: o,
                            addr: addr.clone(),
                            to_dlq: false,
                        });
                    }
                    None => {
                        let at = now_ms + self.settings.local_retry_delay_ms;
                        self.owned.get_mut(mq).expect("owned").retry_at.insert(o, at);
                    }
                }
            }
        }
        self.poll(mq, now_ms, &mut out);
        out
    }

    /// The broker's answer to a send-back (`accepted`: it took the message for a retry).
    pub fn on_sent_back(&mut self, req: ReqId, accepted: bool, now_ms: u64) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let Some((Req::SendBack(mq, o), _)) = self.pending.remove(&req) else { return out };
        self.sent_back(&mq, o, accepted, now_ms, &mut out);
        out
    }

    /// The broker's answer to a [`ConsumerOutput::Lock`]: the queues it locked for this member.
    /// A queue asked for and not granted is not consumed (another member holds it); one that
    /// was held and is no longer granted stops at once.
    pub fn on_locked(&mut self, req: ReqId, granted: &[MessageQueue], now_ms: u64) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let Some((Req::Lock(mqs), _)) = self.pending.remove(&req) else { return out };
        let retry = self.settings.pull_retry_delay_ms;
        for mq in mqs {
            let Some(q) = self.owned.get_mut(&mq) else { continue };
            if q.locking == Some(req) {
                q.locking = None;
            }
            if granted.contains(&mq) {
                q.locked_at = Some(now_ms);
            } else if q.locked_at.is_some() {
                q.lose_lock();
            } else {
                q.not_before = q.not_before.max(now_ms + retry);
            }
        }
        self.poll_all(now_ms, &mut out);
        out
    }

    /// A request failed without an answer (connection lost, timed out).
    pub fn on_failed(&mut self, req: ReqId, now_ms: u64) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let Some((kind, _)) = self.pending.remove(&req) else { return out };
        self.failed(kind, now_ms, &mut out);
        out
    }

    /// Time passed: request deadlines, routes, heartbeats, rebalance, commits, pulls.
    pub fn tick(&mut self, now_ms: u64) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let expired: Vec<ReqId> = self.pending.iter().filter(|(_, (_, d))| now_ms >= *d).map(|(r, _)| *r).collect();
        for req in expired {
            let (kind, _) = self.pending.remove(&req).expect("listed");
            self.failed(kind, now_ms, &mut out);
        }
        let topics: Vec<String> = self.routes.keys().cloned().collect();
        for topic in topics {
            let view = &self.routes[&topic];
            if !view.asking && now_ms >= view.due(&self.settings) {
                let req = self.request(Req::Route(topic.clone()), now_ms, self.settings.request_timeout_ms);
                let view = self.routes.get_mut(&topic).expect("listed");
                view.asking = true;
                view.asked_at = Some(now_ms);
                out.push(ConsumerOutput::FetchRoute { req, topic });
            }
        }
        let routed = self.routes.values().any(|v| !v.queues.is_empty());
        if routed && self.last_heartbeat.is_none_or(|at| now_ms >= at + self.settings.heartbeat_ms) {
            self.last_heartbeat = Some(now_ms);
            out.push(ConsumerOutput::Heartbeat { addrs: self.broker_addrs() });
        }
        if routed && self.last_rebalance.is_none_or(|at| now_ms >= at + self.settings.rebalance_ms) {
            self.last_rebalance = Some(now_ms);
            self.rebalance(now_ms, &mut out);
        }
        if now_ms >= self.last_persist + self.settings.persist_ms {
            self.last_persist = now_ms;
            self.persist(&mut out);
        }
        if self.needs_lock() {
            let s = &self.settings;
            for q in self.owned.values_mut() {
                if q.locked_at.is_some() && !q.lock_valid(s, now_ms) {
                    q.lose_lock();
                }
            }
            if now_ms >= self.last_lock_renew + s.lock_renew_ms {
                self.last_lock_renew = now_ms;
                self.renew_locks(now_ms, &mut out);
            }
        }
        for (mq, q) in self.owned.iter_mut() {
            let due: Vec<u64> = q.retry_at.iter().filter(|(_, at)| now_ms >= **at).map(|(o, _)| *o).collect();
            if !due.is_empty() {
                for o in &due {
                    q.retry_at.remove(o);
                    q.consuming.insert(*o);
                }
                out.push(ConsumerOutput::Consume { mq: mq.clone(), offsets: due });
            }
        }
        self.poll_all(now_ms, &mut out);
        out
    }

    /// When [`ConsumerCore::tick`] must run next.
    pub fn next_wakeup(&self) -> u64 {
        let s = &self.settings;
        let mut at = vec![
            self.last_persist + s.persist_ms,
            self.last_heartbeat.map_or(0, |t| t + s.heartbeat_ms),
            self.last_rebalance.map_or(0, |t| t + s.rebalance_ms),
        ];
        if !self.routes.values().any(|v| !v.queues.is_empty()) {
            at.truncate(1);
        }
        at.extend(self.pending.values().map(|(_, d)| *d));
        at.extend(self.routes.values().filter(|v| !v.asking).map(|v| v.due(s)));
        if self.needs_lock() && !self.owned.is_empty() {
            at.push(self.last_lock_renew + s.lock_renew_ms);
        }
        for q in self.owned.values() {
            at.extend(q.locked_at.map(|t| t + s.lock_live_ms));
            at.extend(q.retry_at.values().copied());
            if q.busy.is_none() && q.not_before > 0 {
                at.push(q.not_before);
            }
        }
        at.into_iter().min().unwrap_or(u64::MAX)
    }

    /// Checks the core's own consistency; panics naming what broke.
    pub fn assert_invariants(&self) {
        for (mq, q) in &self.owned {
            if let Some(req) = q.busy {
                let kind = self.pending.get(&req).map(|(k, _)| k);
                assert!(
                    matches!(kind, Some(Req::Pull(m) | Req::Committed(m) | Req::QueueOffset(m)) if m == mq),
                    "{mq:?}: busy with request {req}, which is not its own"
                );
            }
            for o in q.consuming.iter().chain(q.retry_at.keys()) {
                if let Seat::At(next) = q.seat {
                    assert!(*o < next, "{mq:?}: offset {o} with the listener is not below the pull position {next}");
                }
            }
            if let (Some(c), Seat::At(_)) = (q.committable(), &q.seat) {
                assert!(q.consuming.iter().all(|o| c <= *o), "{mq:?}: committable {c} passes a message in flight");
                assert!(q.waiting.iter().all(|o| c <= *o), "{mq:?}: committable {c} passes a waiting message");
            }
            if self.settings.orderly {
                assert!(
                    q.consuming.len() <= 1,
                    "{mq:?}: orderly, yet {} messages with the listener",
                    q.consuming.len()
                );
                if let Some(c) = q.consuming.first() {
                    assert!(q.retry_at.is_empty(), "{mq:?}: {c} with the listener while a retry waits");
                    assert!(q.waiting.iter().all(|w| w > c), "{mq:?}: {c} with the listener before a waiting message");
                }
            }
        }
        for (mq, q) in &self.draining {
            assert!(!self.owned.contains_key(mq), "{mq:?}: both owned and draining");
            assert!(!q.consuming.is_empty(), "{mq:?}: draining with nothing to wait for");
        }
        assert!(self.pending.keys().all(|r| *r < self.next_req), "a request id was never issued");
    }

    fn request(&mut self, kind: Req, now_ms: u64, timeout_ms: u64) -> ReqId {
        let req = self.next_req;
        self.next_req += 1;
        self.pending.insert(req, (kind, now_ms + timeout_ms));
        req
    }

    /// The address to read a broker group from: the broker id its last pull answer suggested
    /// if the route lists it, else the master, else the lowest-numbered slave (RocketMQ's
    /// findBrokerAddressInSubscribe).
    fn read_addr(&self, broker_name: &str) -> Option<String> {
        let ids = self.routes.values().find_map(|v| v.addrs.get(broker_name))?;
        let suggested = self.suggested.get(broker_name).and_then(|id| ids.get(id));
        suggested.or_else(|| ids.values().next()).cloned()
    }

    fn master_addr(&self, broker_name: &str) -> Option<String> {
        self.routes.values().find_map(|v| v.addrs.get(broker_name)).and_then(|ids| ids.get(&0)).cloned()
    }

    fn rebalance(&mut self, now_ms: u64, out: &mut Vec<ConsumerOutput>) {
        match self.settings.model {
            Model::Broadcasting => {
                let wanted: BTreeSet<MessageQueue> = self.routes.values().flat_map(|v| v.queues.clone()).collect();
                self.reassign(wanted, out);
            }
            Model::Clustering => {
                if self.pending.values().any(|(k, _)| *k == Req::Members) {
                    return;
                }
                let mut groups: Vec<String> =
                    self.routes.values().flat_map(|v| v.queues.iter().map(|q| q.broker_name.clone())).collect();
                groups.sort();
                groups.dedup();
                let addrs: Vec<String> = groups.iter().filter_map(|g| self.read_addr(g)).collect();
                if addrs.is_empty() {
                    return;
                }
                let addr = addrs[self.members_rotor % addrs.len()].clone();
                self.members_rotor = self.members_rotor.wrapping_add(1);
                let req = self.request(Req::Members, now_ms, self.settings.request_timeout_ms);
                out.push(ConsumerOutput::QueryMembers { req, addr });
            }
        }
    }

    fn reassign(&mut self, wanted: BTreeSet<MessageQueue>, out: &mut Vec<ConsumerOutput>) {
        let gone: Vec<MessageQueue> = self.owned.keys().filter(|q| !wanted.contains(*q)).cloned().collect();
        let mut changed = !gone.is_empty();
        for mq in gone {
            self.release(&mq, true, out);
        }
        for mq in wanted {
            if let std::collections::btree_map::Entry::Vacant(e) = self.owned.entry(mq) {
                // A queue being drained comes back as it is (its lock still held).
                let q = self.draining.remove(e.key()).unwrap_or_else(QueueState::new);
                e.insert(q);
                changed = true;
            }
        }
        if changed {
            out.push(ConsumerOutput::Rebalanced { queues: self.owned() });
        }
    }

    /// Gives a queue up: its safe offset is committed first.
    /// Lets a queue go, committing its position unless a request is outstanding: as in
    /// [`Self::persist`], the pull in flight already carries that commit (a queue pulls only
    /// with nothing in flight), and if it never comes back the broker may have lost the tail
    /// the position rests on, where committing would skip what is stored there next.
    ///
    /// Orderly with locks (`drain`): a queue whose message is still with the listener is kept
    /// aside until it comes back; only then is the position committed and the lock released,
    /// so the next owner starts after what this member finished, never beside it.
    fn release(&mut self, mq: &MessageQueue, drain: bool, out: &mut Vec<ConsumerOutput>) {
        let Some(mut q) = self.owned.remove(mq) else { return };
        if let Some(req) = q.locking.take() {
            self.pending.remove(&req);
        }
        if self.needs_lock() && drain && !q.consuming.is_empty() {
            q.drop_queued();
            self.draining.insert(mq.clone(), q);
            return;
        }
        let outstanding = q.busy.is_some() && self.settings.model == Model::Clustering;
        if let Some(req) = q.busy {
            self.pending.remove(&req);
        }
        if let Some(offset) = q.committable().filter(|_| !outstanding) {
            self.commit(mq, offset, out);
        }
        self.unlock(mq, out);
    }

    /// A drained queue whose last message came back: commit, then unlock.
    fn finish_draining(&mut self, mq: &MessageQueue, out: &mut Vec<ConsumerOutput>) {
        if !self.draining.get(mq).is_some_and(|q| q.consuming.is_empty()) {
            return;
        }
        let q = self.draining.remove(mq).expect("draining");
        if let Some(offset) = q.committable() {
            self.commit(mq, offset, out);
        }
        self.unlock(mq, out);
    }

    fn unlock(&mut self, mq: &MessageQueue, out: &mut Vec<ConsumerOutput>) {
        if self.needs_lock() {
            if let Some(addr) = self.master_addr(&mq.broker_name) {
                out.push(ConsumerOutput::Unlock { addr, mqs: vec![mq.clone()] });
            }
        }
    }

    /// Asks each master to renew the locks of the owned queues it serves.
    fn renew_locks(&mut self, now_ms: u64, out: &mut Vec<ConsumerOutput>) {
        let mut by_addr: BTreeMap<String, Vec<MessageQueue>> = BTreeMap::new();
        for (mq, q) in &self.owned {
            if q.locking.is_none() {
                if let Some(addr) = self.master_addr(&mq.broker_name) {
                    by_addr.entry(addr).or_default().push(mq.clone());
                }
            }
        }
        for (addr, mqs) in by_addr {
            let req = self.request(Req::Lock(mqs.clone()), now_ms, self.settings.request_timeout_ms);
            for mq in &mqs {
                self.owned.get_mut(mq).expect("owned").locking = Some(req);
            }
            out.push(ConsumerOutput::Lock { req, addr, mqs });
        }
    }

    fn commit(&mut self, mq: &MessageQueue, offset: u64, out: &mut Vec<ConsumerOutput>) {
        match self.settings.model {
            Model::Broadcasting => {
                self.local_offsets.insert(mq.clone(), offset);
            }
            Model::Clustering => {
                if let Some(addr) = self.read_addr(&mq.broker_name) {
                    out.push(ConsumerOutput::Commit { mq: mq.clone(), addr, offset });
                }
            }
        }
    }

    /// Commits what changed. A queue with a request outstanding is left to it: the pull that
    /// follows carries the commit, and if the request fails instead, the broker may have lost
    /// the tail this position rests on (committing it would skip what is stored there next).
    fn persist(&mut self, out: &mut Vec<ConsumerOutput>) {
        let due: Vec<(MessageQueue, u64)> = self
            .owned
            .iter()
            .filter(|(_, q)| q.busy.is_none() || self.settings.model == Model::Broadcasting)
            .filter_map(|(mq, q)| q.committable().filter(|c| q.committed != Some(*c)).map(|c| (mq.clone(), c)))
            .collect();
        for (mq, offset) in due {
            self.owned.get_mut(&mq).expect("listed").committed = Some(offset);
            self.commit(&mq, offset, out);
        }
        if self.settings.model == Model::Broadcasting && self.local_offsets != self.saved_offsets {
            self.saved_offsets = self.local_offsets.clone();
            out.push(ConsumerOutput::SaveOffsets { offsets: self.local_offsets.clone() });
        }
    }

    fn sent_back(&mut self, mq: &MessageQueue, o: u64, accepted: bool, now_ms: u64, out: &mut Vec<ConsumerOutput>) {
        if let Some(q) = self.draining.get_mut(mq) {
            if q.consuming.remove(&o) && accepted {
                q.in_flight.remove(&[o]);
            }
            self.finish_draining(mq, out);
            return;
        }
        let Some(q) = self.owned.get_mut(mq) else { return };
        if !q.consuming.remove(&o) {
            return;
        }
        if accepted {
            q.in_flight.remove(&[o]);
            q.attempts.remove(&o);
        } else {
            // The broker did not take the retry: consume it again here after a pause.
            q.retry_at.insert(o, now_ms + self.settings.local_retry_delay_ms);
        }
        self.poll(mq, now_ms, out);
    }

    fn failed(&mut self, kind: Req, now_ms: u64, out: &mut Vec<ConsumerOutput>) {
        match kind {
            Req::Route(topic) => {
                if let Some(v) = self.routes.get_mut(&topic) {
                    v.asking = false;
                    v.failed = true;
                }
            }
            Req::Members => {}
            Req::Committed(mq) | Req::QueueOffset(mq) | Req::Pull(mq) => {
                let clustering = self.settings.model == Model::Clustering;
                let Some(q) = self.owned.get_mut(&mq) else { return };
                q.busy = None;
                q.not_before = now_ms + self.settings.pull_retry_delay_ms;
                if clustering {
                    // The broker may have restarted and lost the tail this position points
                    // past: re-seat from the group's committed offset (redelivery, never a
                    // skip). Messages still with the listener finish; they come again.
                    q.seat = Seat::Unseated;
                }
                // The broker may be gone: learn the route again (a slave may now serve).
                if let Some(v) = self.routes.get_mut(&mq.topic) {
                    if !v.asking {
                        v.asked_at = None;
                    }
                }
            }
            Req::SendBack(mq, o) => self.sent_back(&mq, o, false, now_ms, out),
            Req::Lock(mqs) => {
                for mq in mqs {
                    let Some(q) = self.owned.get_mut(&mq) else { continue };
                    q.locking = None;
                    if q.locked_at.is_none() {
                        q.not_before = q.not_before.max(now_ms + self.settings.pull_retry_delay_ms);
                    }
                }
            }
        }
    }

    fn poll_all(&mut self, now_ms: u64, out: &mut Vec<ConsumerOutput>) {
        let queues: Vec<MessageQueue> = self.owned.keys().cloned().collect();
        for mq in queues {
            self.poll(&mq, now_ms, out);
        }
    }

    /// Asks for what an idle queue needs next: its start offset, or its next messages.
    fn poll(&mut self, mq: &MessageQueue, now_ms: u64, out: &mut Vec<ConsumerOutput>) {
        let needs_lock = self.needs_lock();
        let Some(q) = self.owned.get_mut(mq) else { return };
        if q.busy.is_some() || now_ms < q.not_before {
            return;
        }
        // The pause is over: it no longer asks for a tick (a queue whose broker has no address
        // now waits for the route, not for a clock that already passed).
        q.not_before = 0;
        if !q.consuming.is_empty() || !q.retry_at.is_empty() {
            return;
        }
        if needs_lock && !q.lock_valid(&self.settings, now_ms) {
            // Nothing is pulled or consumed without the broker's lock; one that expired here
            // is as good as lost (another member may hold it by now).
            if q.locked_at.is_some() {
                q.lose_lock();
            }
            if q.locking.is_none() {
                if let Some(addr) = self.master_addr(&mq.broker_name) {
                    let req = self.request(Req::Lock(vec![mq.clone()]), now_ms, self.settings.request_timeout_ms);
                    self.owned.get_mut(mq).expect("owned").locking = Some(req);
                    out.push(ConsumerOutput::Lock { req, addr, mqs: vec![mq.clone()] });
                }
            }
            return;
        }
        if let Some(o) = q.waiting.first().copied() {
            let q = self.owned.get_mut(mq).expect("owned");
            q.waiting.remove(&o);
            q.consuming.insert(o);
            out.push(ConsumerOutput::Consume { mq: mq.clone(), offsets: vec![o] });
            return;
        }
        let Some(addr) = self.read_addr(&mq.broker_name) else { return };
        let q = &self.owned[mq];
        let s = &self.settings;
        let (req, output) = match q.seat {
            Seat::Unseated => {
                if s.model == Model::Broadcasting {
                    if let Some(o) = self.local_offsets.get(mq).copied() {
                        self.owned.get_mut(mq).expect("owned").seat_at(o);
                        return self.poll(mq, now_ms, out);
                    }
                    let max = s.start_from == StartFrom::Last;
                    let req = self.request(Req::QueueOffset(mq.clone()), now_ms, self.settings.request_timeout_ms);
                    (req, ConsumerOutput::QueryQueueOffset { req, mq: mq.clone(), addr, max })
                } else {
                    let req = self.request(Req::Committed(mq.clone()), now_ms, self.settings.request_timeout_ms);
                    (req, ConsumerOutput::QueryCommitted { req, mq: mq.clone(), addr })
                }
            }
            Seat::At(offset) => {
                let commit = if s.model == Model::Clustering { q.committable() } else { None };
                let (max_nums, hold_ms) = (s.pull_batch, s.pull_hold_ms);
                let timeout_ms = hold_ms + s.request_timeout_ms;
                let req = self.request(Req::Pull(mq.clone()), now_ms, timeout_ms);
                (req, ConsumerOutput::Pull { req, mq: mq.clone(), addr, offset, commit, max_nums, hold_ms, timeout_ms })
            }
        };
        self.owned.get_mut(mq).expect("owned").busy = Some(req);
        out.push(output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmq_proto::body::{BrokerData, QueueData};

    pub(super) fn route(queues: i32, slave: bool) -> TopicRouteData {
        let mut addrs: BTreeMap<i64, String> = [(0, "m:1".to_string())].into();
        if slave {
            addrs.insert(1, "s:1".into());
        }
        TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: "b".into(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: 6,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![BrokerData {
                cluster: "c".into(),
                broker_name: "b".into(),
                broker_addrs: addrs,
                zone_name: None,
                enable_acting_master: false,
            }],
            ..Default::default()
        }
    }

    fn find<T>(out: &[ConsumerOutput], f: impl Fn(&ConsumerOutput) -> Option<T>) -> T {
        out.iter().find_map(f).unwrap_or_else(|| panic!("not in {out:?}"))
    }

    /// A member of `members` that owns its share of 2 queues, seated at `start`.
    fn seated(me: &str, members: &[&str], start: u64) -> (ConsumerCore, Vec<ConsumerOutput>) {
        let mut core = ConsumerCore::new(ConsumerSettings::new(me, &["T"]), 0);
        let out = core.tick(0);
        let req = find(&out, |o| match o {
            ConsumerOutput::FetchRoute { req, .. } => Some(*req),
            _ => None,
        });
        let out = core.on_route(req, Some(route(2, true)), 0);
        assert!(out.iter().any(|o| matches!(o, ConsumerOutput::Heartbeat { addrs } if addrs.len() == 2)));
        let req = find(&out, |o| match o {
            ConsumerOutput::QueryMembers { req, .. } => Some(*req),
            _ => None,
        });
        let out = core.on_members(req, members.iter().map(|m| m.to_string()).collect(), 0);
        let mut pulls = Vec::new();
        for o in out {
            if let ConsumerOutput::QueryCommitted { req, .. } = o {
                pulls.extend(core.on_committed(req, Some(start), 0));
            }
        }
        core.assert_invariants();
        (core, pulls)
    }

    fn pull_req(out: &[ConsumerOutput]) -> (ReqId, MessageQueue, u64, Option<u64>) {
        find(out, |o| match o {
            ConsumerOutput::Pull { req, mq, offset, commit, .. } => Some((*req, mq.clone(), *offset, *commit)),
            _ => None,
        })
    }

    #[test]
    fn members_split_the_queues_and_each_queue_starts_at_its_committed_offset() {
        let (a, pulls) = seated("a", &["a", "b"], 7);
        assert_eq!(a.owned().len(), 1);
        assert_eq!(pull_req(&pulls).2, 7);
        let (b, _) = seated("b", &["a", "b"], 7);
        assert_ne!(a.owned(), b.owned());
    }

    #[test]
    fn the_commit_never_passes_a_message_with_the_listener_and_a_failure_goes_back() {
        let (mut core, pulls) = seated("a", &["a"], 0);
        let (req, mq, _, _) = pull_req(&pulls);
        let out = core.on_pulled(req, PullAnswer::Found { offsets: vec![0, 1, 2], next_begin: 3 }, Some(1), 1);
        assert_eq!(out[0], ConsumerOutput::Consume { mq: mq.clone(), offsets: vec![0, 1, 2] });
        assert!(!out.iter().any(|o| matches!(o, ConsumerOutput::Pull { mq: m, .. } if *m == mq)), "serial per queue");
        let out = core.on_consumed(&mq, &[1, 2], true, 2);
        assert!(out.is_empty(), "offset 0 is still with the listener: {out:?}");
        let out = core.on_consumed(&mq, &[0], false, 3);
        let (back, addr) = find(&out, |o| match o {
            ConsumerOutput::SendBack { req, addr, queue_offset: 0, .. } => Some((*req, addr.clone())),
            _ => None,
        });
        assert_eq!(addr, "m:1", "send-back goes to the master");
        let out = core.on_pulled(999, PullAnswer::Empty { next_begin: 0 }, None, 3);
        assert!(out.is_empty(), "an unknown request is dropped");
        // The send-back failed: consumed again here after the pause, and still not committable.
        assert!(core.on_sent_back(back, false, 4).is_empty());
        let out = core.tick(4 + core.settings().local_retry_delay_ms);
        assert!(out.contains(&ConsumerOutput::Consume { mq: mq.clone(), offsets: vec![0] }), "{out:?}");
        let out = core.on_consumed(&mq, &[0], true, 10_000);
        let (_, _, offset, commit) = pull_req(&out);
        assert_eq!((offset, commit), (3, Some(3)));
        // The suggested slave is read from now.
        assert!(out.iter().any(|o| matches!(o, ConsumerOutput::Pull { addr, .. } if addr == "s:1")), "{out:?}");
        core.assert_invariants();
    }

    #[test]
    fn a_failed_pull_reseats_from_the_committed_offset_after_a_pause() {
        let (mut core, pulls) = seated("a", &["a"], 5);
        let (req, mq, _, _) = pull_req(&pulls);
        let out = core.on_pulled(req, PullAnswer::Found { offsets: vec![5], next_begin: 6 }, None, 1);
        assert_eq!(out.len(), 1);
        let (req, _, offset, _) = pull_req(&core.on_consumed(&mq, &[5], true, 2));
        assert_eq!(offset, 6);
        let out = core.on_failed(req, 4);
        assert!(!out.iter().any(|o| matches!(o, ConsumerOutput::Pull { .. })), "{out:?}");
        let delay = core.settings().pull_retry_delay_ms;
        let out = core.tick(4 + delay);
        assert!(out.iter().any(|o| matches!(o, ConsumerOutput::FetchRoute { .. })), "the route is asked again");
        let req = find(&out, |o| match o {
            ConsumerOutput::QueryCommitted { req, .. } => Some(*req),
            _ => None,
        });
        let (_, _, offset, _) = pull_req(&core.on_committed(req, Some(5), 4 + delay));
        assert_eq!(offset, 5, "re-seated at the committed offset: offset 5 comes again");
    }

    #[test]
    fn a_new_group_starts_at_the_end_and_a_released_queue_commits_first() {
        let mut core = ConsumerCore::new(ConsumerSettings::new("a", &["T"]), 0);
        let req = find(&core.tick(0), |o| match o {
            ConsumerOutput::FetchRoute { req, .. } => Some(*req),
            _ => None,
        });
        let out = core.on_route(req, Some(route(1, false)), 0);
        let req = find(&out, |o| match o {
            ConsumerOutput::QueryMembers { req, .. } => Some(*req),
            _ => None,
        });
        let out = core.on_members(req, vec!["a".into()], 0);
        let req = find(&out, |o| match o {
            ConsumerOutput::QueryCommitted { req, .. } => Some(*req),
            _ => None,
        });
        let out = core.on_committed(req, None, 1);
        let req = find(&out, |o| match o {
            ConsumerOutput::QueryQueueOffset { req, max: true, .. } => Some(*req),
            _ => None,
        });
        let (req, mq, offset, _) = pull_req(&core.on_queue_offset(req, 40, 2));
        assert_eq!(offset, 40);
        core.on_pulled(req, PullAnswer::Found { offsets: vec![40], next_begin: 41 }, None, 3);
        // Another member takes the queue: the safe offset (40, still consuming) is committed.
        let rebalance = core.settings().rebalance_ms;
        let req = find(&core.tick(rebalance), |o| match o {
            ConsumerOutput::QueryMembers { req, .. } => Some(*req),
            _ => None,
        });
        let out = core.on_members(req, vec!["a".into(), "0-first".into()], rebalance);
        assert!(out.contains(&ConsumerOutput::Commit { mq: mq.clone(), addr: "m:1".into(), offset: 40 }), "{out:?}");
        assert!(out.contains(&ConsumerOutput::Rebalanced { queues: vec![] }));
        assert!(core.on_consumed(&mq, &[40], true, rebalance + 1).is_empty(), "a released queue is forgotten");
        core.assert_invariants();
    }

    #[test]
    fn a_queue_released_with_its_pull_outstanding_commits_nothing() {
        // The held pull to a broker that then lost power never answers. Committing the
        // position on release would point the group past the tail the broker lost, where new
        // messages are stored next (skipped by whoever takes the queue); the pull carried it.
        let (mut core, pulls) = seated("a", &["a"], 7);
        let (_, mq, offset, commit) = pull_req(&pulls);
        assert_eq!((offset, commit), (7, Some(7)), "the pull carries the commit");
        // A member joins while the pull is still within its deadline.
        let req = find(&core.rebalance_now(1), |o| match o {
            ConsumerOutput::QueryMembers { req, .. } => Some(*req),
            _ => None,
        });
        let out = core.on_members(req, vec!["a".into(), "0-first".into(), "1-second".into()], 2);
        assert!(out.contains(&ConsumerOutput::Rebalanced { queues: vec![] }), "{out:?}");
        assert!(!core.owned().contains(&mq));
        assert!(!out.iter().any(|o| matches!(o, ConsumerOutput::Commit { .. })), "{out:?}");
        core.assert_invariants();
    }

    #[test]
    fn broadcasting_keeps_its_own_offsets_and_drops_failures() {
        let mut settings = ConsumerSettings::new("a", &["T"]);
        settings.model = Model::Broadcasting;
        settings.start_from = StartFrom::First;
        let mut core = ConsumerCore::new(settings, 0);
        let req = find(&core.tick(0), |o| match o {
            ConsumerOutput::FetchRoute { req, .. } => Some(*req),
            _ => None,
        });
        let out = core.on_route(req, Some(route(1, false)), 0);
        let req = find(&out, |o| match o {
            ConsumerOutput::QueryQueueOffset { req, max: false, .. } => Some(*req),
            _ => None,
        });
        let (req, mq, _, commit) = pull_req(&core.on_queue_offset(req, 0, 1));
        assert_eq!(commit, None, "broadcasting commits nothing to the broker");
        core.on_pulled(req, PullAnswer::Found { offsets: vec![0], next_begin: 1 }, None, 2);
        let out = core.on_consumed(&mq, &[0], false, 3);
        assert!(!out.iter().any(|o| matches!(o, ConsumerOutput::SendBack { .. })), "{out:?}");
        let persist = core.settings().persist_ms;
        let out = core.tick(persist);
        assert!(!out.iter().any(|o| matches!(o, ConsumerOutput::Commit { .. })));
        assert_eq!(core.local_offsets().get(&mq), Some(&1));
        let saved: BTreeMap<MessageQueue, u64> = [(mq.clone(), 1)].into();
        assert!(out.contains(&ConsumerOutput::SaveOffsets { offsets: saved.clone() }), "{out:?}");
        assert!(
            !core.tick(2 * persist).iter().any(|o| matches!(o, ConsumerOutput::SaveOffsets { .. })),
            "nothing changed, nothing written"
        );
        assert!(core.shutdown().contains(&ConsumerOutput::SaveOffsets { offsets: saved.clone() }));
    }

    #[test]
    fn a_restarted_broadcasting_consumer_resumes_from_its_saved_offsets() {
        let mut settings = ConsumerSettings::new("a", &["T"]);
        settings.model = Model::Broadcasting;
        let mut core = ConsumerCore::new(settings, 0);
        let mq = MessageQueue { topic: "T".into(), broker_name: "b".into(), queue_id: 0 };
        core.restore_offsets([(mq.clone(), 7)].into());
        let req = find(&core.tick(0), |o| match o {
            ConsumerOutput::FetchRoute { req, .. } => Some(*req),
            _ => None,
        });
        let out = core.on_route(req, Some(route(1, false)), 0);
        assert!(!out.iter().any(|o| matches!(o, ConsumerOutput::QueryQueueOffset { .. })), "{out:?}");
        let (_, pulled, offset, _) = pull_req(&out);
        assert_eq!((pulled, offset), (mq, 7), "resumes where the last run stopped");
        core.assert_invariants();
    }

    #[test]
    fn a_missing_route_is_asked_again_after_the_retry_delay_not_at_once() {
        let mut core = ConsumerCore::new(ConsumerSettings::new("a", &["T"]), 0);
        let fetch = |out: &[ConsumerOutput]| {
            out.iter().find_map(|o| match o {
                ConsumerOutput::FetchRoute { req, .. } => Some(*req),
                _ => None,
            })
        };
        let req = fetch(&core.tick(0)).expect("asked at start");
        assert!(core.on_route(req, None, 10).is_empty());
        let delay = core.settings().pull_retry_delay_ms;
        assert_eq!(core.next_wakeup(), delay, "no busy loop on a NameServer without the topic");
        assert_eq!(fetch(&core.tick(delay - 1)), None);
        let req = fetch(&core.tick(delay)).expect("asked again");
        core.on_route(req, Some(route(1, false)), delay + 1);
        let refresh = core.settings().route_refresh_ms;
        assert!(core.next_wakeup() <= delay + refresh);
        assert_eq!(fetch(&core.tick(delay + refresh - 1)), None, "a found route waits for the refresh period");
        core.assert_invariants();
    }
}

#[cfg(test)]
mod orderly_tests {
    use super::*;

    /// `queues` queues on broker group `b`, master only.
    fn route(queues: i32) -> TopicRouteData {
        super::tests::route(queues, false)
    }

    fn pick<T>(out: &[ConsumerOutput], f: impl Fn(&ConsumerOutput) -> Option<T>) -> Vec<T> {
        out.iter().filter_map(f).collect()
    }

    fn locks(out: &[ConsumerOutput]) -> Vec<(ReqId, Vec<MessageQueue>)> {
        pick(out, |o| match o {
            ConsumerOutput::Lock { req, mqs, addr } => {
                assert_eq!(addr, "m:1", "locks are taken at the master");
                Some((*req, mqs.clone()))
            }
            _ => None,
        })
    }

    fn consumes(out: &[ConsumerOutput]) -> Vec<(MessageQueue, Vec<u64>)> {
        pick(out, |o| match o {
            ConsumerOutput::Consume { mq, offsets } => Some((mq.clone(), offsets.clone())),
            _ => None,
        })
    }

    fn pulls(out: &[ConsumerOutput]) -> Vec<(ReqId, MessageQueue, u64)> {
        pick(out, |o| match o {
            ConsumerOutput::Pull { req, mq, offset, .. } => Some((*req, mq.clone(), *offset)),
            _ => None,
        })
    }

    /// A member `me` with `settings` that learned a route of `queues` queues and the group
    /// `members`: the core and its outputs to the member list.
    fn joined(s: ConsumerSettings, members: &[&str], queues: i32) -> (ConsumerCore, Vec<ConsumerOutput>) {
        let mut core = ConsumerCore::new(s, 0);
        let ConsumerOutput::FetchRoute { req, .. } = core.tick(0)[0].clone() else { panic!("no route request") };
        let out = core.on_route(req, Some(route(queues)), 0);
        let req = pick(&out, |o| match o {
            ConsumerOutput::QueryMembers { req, .. } => Some(*req),
            _ => None,
        })[0];
        let out = core.on_members(req, members.iter().map(|m| m.to_string()).collect(), 0);
        (core, out)
    }

    /// An orderly member `me` of `members` over `queues` queues, through its locks and start
    /// offsets (0) to its first pulls.
    fn orderly(me: &str, members: &[&str], queues: i32) -> (ConsumerCore, Vec<ConsumerOutput>) {
        let mut s = ConsumerSettings::new(me, &["T"]);
        s.orderly = true;
        s.max_reconsume = 2;
        let (mut core, out) = joined(s, members, queues);
        assert!(
            !out.iter().any(|o| matches!(o, ConsumerOutput::QueryCommitted { .. } | ConsumerOutput::Pull { .. })),
            "nothing is read before the lock: {out:?}"
        );
        let mut next = Vec::new();
        for (req, mqs) in locks(&out) {
            for o in core.on_locked(req, &mqs, 1) {
                if let ConsumerOutput::QueryCommitted { req, .. } = o {
                    next.extend(core.on_committed(req, Some(0), 1));
                }
            }
        }
        core.assert_invariants();
        (core, next)
    }

    #[test]
    fn an_orderly_member_hands_over_one_message_at_a_time_and_retries_here_then_dead_letters() {
        let (mut core, out) = orderly("a", &["a"], 1);
        let (req, mq, offset) = pulls(&out)[0].clone();
        assert_eq!(offset, 0);
        let out = core.on_pulled(req, PullAnswer::Found { offsets: vec![0, 1, 2], next_begin: 3 }, None, 2);
        assert_eq!(consumes(&out), vec![(mq.clone(), vec![0])], "one message at a time");
        assert!(pulls(&out).is_empty(), "no pull while messages wait");
        let out = core.on_consumed(&mq, &[0], true, 3);
        assert_eq!(consumes(&out), vec![(mq.clone(), vec![1])]);
        // 1 fails: the queue waits (no send-back, nothing else handed over), then 1 again.
        let out = core.on_consumed(&mq, &[1], false, 4);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(core.attempts(&mq, 1), 1);
        assert!(consumes(&core.tick(4 + 999)).is_empty(), "not before the suspension ends");
        let out = core.tick(4 + 1_000);
        assert_eq!(consumes(&out), vec![(mq.clone(), vec![1])]);
        core.assert_invariants();
        let out = core.on_consumed(&mq, &[1], false, 1_010);
        assert!(out.is_empty(), "second failure: one more local retry (max_reconsume 2): {out:?}");
        let out = core.tick(2_010);
        assert_eq!(consumes(&out), vec![(mq.clone(), vec![1])]);
        // The third failure spends the retries: straight to the DLQ, and the queue still waits.
        let out = core.on_consumed(&mq, &[1], false, 2_020);
        let backs = pick(&out, |o| match o {
            ConsumerOutput::SendBack { req, queue_offset, to_dlq, .. } => Some((*req, *queue_offset, *to_dlq)),
            _ => None,
        });
        assert_eq!(backs.len(), 1);
        assert_eq!((backs[0].1, backs[0].2), (1, true));
        assert!(consumes(&out).is_empty());
        let out = core.on_sent_back(backs[0].0, true, 2_030);
        assert_eq!(consumes(&out), vec![(mq.clone(), vec![2])], "the dead letter unblocks the queue");
        let out = core.on_consumed(&mq, &[2], true, 2_040);
        let (_, _, offset) = pulls(&out)[0].clone();
        assert_eq!(offset, 3);
        core.assert_invariants();
    }

    #[test]
    fn a_refused_or_lost_lock_stops_consumption_and_the_queue_is_read_again_from_the_first_unfinished() {
        let mut s = ConsumerSettings::new("a", &["T"]);
        s.orderly = true;
        let (mut core, out) = joined(s, &["a"], 1);
        let (req, _) = locks(&out)[0].clone();
        // Another member holds it: nothing is read; the lock is asked again after the pause.
        let out = core.on_locked(req, &[], 1);
        assert!(out.is_empty(), "{out:?}");
        assert!(locks(&core.tick(1_000)).is_empty(), "not before the retry delay");
        let out = core.tick(1 + core.settings().pull_retry_delay_ms);
        let (req, mqs) = locks(&out)[0].clone();
        let out = core.on_locked(req, &mqs, 3_001);
        let ConsumerOutput::QueryCommitted { req, .. } = out[0].clone() else { panic!("{out:?}") };
        let out = core.on_committed(req, Some(10), 3_002);
        let (req, mq, _) = pulls(&out)[0].clone();
        let out = core.on_pulled(req, PullAnswer::Found { offsets: vec![10, 11, 12], next_begin: 13 }, None, 3_003);
        assert_eq!(consumes(&out), vec![(mq.clone(), vec![10])]);
        core.on_consumed(&mq, &[10], true, 3_004);
        core.on_consumed(&mq, &[11], true, 3_005);
        // 12 is with the listener when the renewal comes; the broker no longer grants the lock.
        let out = core.tick(20_000);
        let (req, mqs) = locks(&out)[0].clone();
        assert_eq!(mqs, vec![mq.clone()]);
        assert!(core.on_locked(req, &[], 20_001).is_empty());
        // 12 comes back; nothing more is handed over, nothing is pulled, the lock is asked for.
        let out = core.on_consumed(&mq, &[12], true, 20_002);
        assert!(consumes(&out).is_empty() && pulls(&out).is_empty(), "{out:?}");
        let (req, mqs) = locks(&out)[0].clone();
        let out = core.on_locked(req, &mqs, 20_003);
        assert_eq!(pulls(&out)[0].2, 13);
        core.assert_invariants();
    }

    #[test]
    fn a_lock_not_renewed_in_time_expires_here_and_what_waited_is_pulled_again() {
        let (mut core, out) = orderly("a", &["a"], 1);
        let (req, mq, _) = pulls(&out)[0].clone();
        let out = core.on_pulled(req, PullAnswer::Found { offsets: vec![0, 1, 2], next_begin: 3 }, None, 2);
        assert_eq!(consumes(&out), vec![(mq.clone(), vec![0])]);
        // The renewal goes unanswered; the listener takes 31 s over offset 0.
        let out = core.tick(20_000);
        assert_eq!(locks(&out).len(), 1);
        core.tick(23_000);
        let out = core.on_consumed(&mq, &[0], true, 31_000);
        assert!(consumes(&out).is_empty(), "the lock expired at 30 s: nothing more is consumed: {out:?}");
        let (req, mqs) = locks(&out)[0].clone();
        let out = core.on_locked(req, &mqs, 31_001);
        assert_eq!(pulls(&out)[0].2, 1, "1 and 2 were dropped unconsumed and are read again");
        core.assert_invariants();
    }

    #[test]
    fn a_queue_given_up_mid_message_is_committed_and_unlocked_only_after_it_comes_back() {
        let (mut core, out) = orderly("a", &["a"], 2);
        let ps = pulls(&out);
        assert_eq!(ps.len(), 2);
        let (req, mq, _) = ps[1].clone();
        let out = core.on_pulled(req, PullAnswer::Found { offsets: vec![0, 1], next_begin: 2 }, None, 2);
        assert_eq!(consumes(&out), vec![(mq.clone(), vec![0])]);
        // b joins and takes the second queue while offset 0 is with a's listener.
        let out = core.rebalance_now(3);
        let req = pick(&out, |o| match o {
            ConsumerOutput::QueryMembers { req, .. } => Some(*req),
            _ => None,
        })[0];
        let out = core.on_members(req, vec!["a".into(), "b".into()], 4);
        assert!(
            !out.iter().any(|o| matches!(o, ConsumerOutput::Unlock { .. })
                || matches!(o, ConsumerOutput::Commit { mq: m, .. } if *m == mq)),
            "nothing is committed or unlocked while a message is with the listener: {out:?}"
        );
        assert!(!core.owned().contains(&mq));
        assert!(core.holds(&mq, 0) && !core.holds(&mq, 1), "offset 1 was dropped unconsumed");
        core.assert_invariants();
        let out = core.on_consumed(&mq, &[0], true, 5);
        assert_eq!(
            out,
            vec![
                ConsumerOutput::Commit { mq: mq.clone(), addr: "m:1".into(), offset: 1 },
                ConsumerOutput::Unlock { addr: "m:1".into(), mqs: vec![mq.clone()] },
            ],
            "committed after the message, then unlocked"
        );
        core.assert_invariants();
    }

    #[test]
    fn without_the_lock_step_an_orderly_member_reads_at_once() {
        let mut s = ConsumerSettings::new("a", &["T"]);
        s.orderly = true;
        s.skip_queue_lock = true;
        let (_, out) = joined(s, &["a"], 1);
        assert!(locks(&out).is_empty());
        assert!(out.iter().any(|o| matches!(o, ConsumerOutput::QueryCommitted { .. })), "{out:?}");
    }
}
