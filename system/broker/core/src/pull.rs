//! PULL_MESSAGE and long polling: a pull that finds nothing is held until a message arrives on
//! its queue or its suspend time runs out.

use std::collections::{BTreeMap, BTreeSet};

use rmq_proto::body::SubscriptionData;
use rmq_proto::codes::{perm, pull_flag};
use rmq_proto::header::{PullMessageRequestHeader, PullMessageResponseHeader};
use rmq_proto::{ConnId, RemotingCommand, ResponseCode};
use rmq_store::{Directory, GetStatus};

use crate::{checks, reply, BrokerCore, BrokerRole, Event, Output};

/// Most messages one pull returns (RocketMQ's in-memory cap).
pub const PULL_MESSAGES_MAX: u32 = 32;
/// Most bytes one pull returns.
pub const PULL_BYTES_MAX: u32 = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Hold {
    conn: ConnId,
    req: RemotingCommand,
    pub(crate) queue_offset: u64,
    deadline_ms: u64,
}

/// Pulls parked per queue, with their deadlines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct PullHolds {
    by_queue: BTreeMap<(String, i32), BTreeMap<u64, Hold>>,
    /// (deadline, seq) → queue, to find expired holds in deadline order.
    deadlines: BTreeSet<(u64, u64, String, i32)>,
    /// Queues that received messages since the last wake.
    arrived: BTreeSet<(String, i32)>,
    next_seq: u64,
    count: usize,
}

impl PullHolds {
    pub(crate) fn note_arrival(&mut self, topic: &str, queue_id: i32) {
        if !self.by_queue.is_empty() && self.by_queue.contains_key(&(topic.to_string(), queue_id)) {
            self.arrived.insert((topic.to_string(), queue_id));
        }
    }

    pub(crate) fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|d| d.0)
    }

    pub(crate) fn drop_conn(&mut self, conn: ConnId) {
        let mut dropped = Vec::new();
        for (key, holds) in self.by_queue.iter_mut() {
            holds.retain(|seq, h| {
                let keep = h.conn != conn;
                if !keep {
                    dropped.push((h.deadline_ms, *seq, key.0.clone(), key.1));
                }
                keep
            });
        }
        for d in dropped {
            self.deadlines.remove(&d);
            self.count -= 1;
        }
        self.by_queue.retain(|_, h| !h.is_empty());
    }

    pub(crate) fn assert_bounded(&self, max: usize) {
        assert!(self.count <= max, "more pulls held than pull_holds_max");
        assert_eq!(self.count, self.deadlines.len(), "every hold has one deadline");
    }

    fn insert(&mut self, topic: &str, queue_id: i32, hold: Hold) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.deadlines.insert((hold.deadline_ms, seq, topic.to_string(), queue_id));
        self.by_queue.entry((topic.to_string(), queue_id)).or_default().insert(seq, hold);
        self.count += 1;
    }

    pub(crate) fn take(&mut self, topic: &str, queue_id: i32, pred: impl Fn(&Hold) -> bool) -> Vec<Hold> {
        let key = (topic.to_string(), queue_id);
        let Some(holds) = self.by_queue.get_mut(&key) else { return Vec::new() };
        let seqs: Vec<u64> = holds.iter().filter(|(_, h)| pred(h)).map(|(s, _)| *s).collect();
        let mut out = Vec::with_capacity(seqs.len());
        for s in seqs {
            let h = holds.remove(&s).expect("seq listed above");
            self.deadlines.remove(&(h.deadline_ms, s, topic.to_string(), queue_id));
            self.count -= 1;
            out.push(h);
        }
        if holds.is_empty() {
            self.by_queue.remove(&key);
        }
        out
    }
}

fn status_to_code(status: GetStatus, requested_offset: u64) -> ResponseCode {
    match status {
        GetStatus::Found => ResponseCode::Success,
        GetStatus::NoMatchedMessage => ResponseCode::PullRetryImmediately,
        GetStatus::NoMessageInQueue | GetStatus::NoMatchedLogicQueue if requested_offset != 0 => {
            ResponseCode::PullOffsetMoved
        }
        GetStatus::NoMessageInQueue | GetStatus::NoMatchedLogicQueue => ResponseCode::PullNotFound,
        GetStatus::OffsetFoundNull | GetStatus::OffsetOverflowOne => ResponseCode::PullNotFound,
        GetStatus::OffsetOverflowBadly | GetStatus::OffsetTooSmall => ResponseCode::PullOffsetMoved,
    }
}

impl<D: Directory> BrokerCore<D> {
    /// Serves a pull; returns `None` when the pull was parked.
    pub(crate) fn pull(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
        allow_hold: bool,
    ) -> Option<RemotingCommand> {
        let h: PullMessageRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return Some(reply(req, ResponseCode::InvalidParameter, e.to_string())),
        };
        if let Err(resp) = checks::topic(req, &h.topic).and_then(|()| checks::consumer_group(req, &h.consumer_group)) {
            return Some(resp);
        }
        if self.ha.fenced.is_some() {
            // A fenced master holds nothing of the group's history: the consumer is sent to the
            // slave (suggestWhichBrokerId), its position untouched. A suspending pull is held
            // first, so a consumer with no slave to go to does not spin on the answer.
            if allow_hold && h.sys_flag & pull_flag::SUSPEND != 0 && self.holds.count < self.config.pull_holds_max {
                let wait_ms = (h.suspend_timeout_millis.max(0) as u64).min(self.config.pull_hold_max_ms).max(1);
                let offset = h.queue_offset.max(0) as u64;
                let hold = Hold { conn, req: req.clone(), queue_offset: offset, deadline_ms: now_ms + wait_ms };
                self.holds.insert(&h.topic, h.queue_id, hold);
                return None;
            }
            let header = PullMessageResponseHeader {
                suggest_which_broker_id: 1,
                next_begin_offset: h.queue_offset.max(0),
                min_offset: 0,
                max_offset: 0,
            };
            return Some(
                reply(req, ResponseCode::PullRetryImmediately, "this master is fenced; read from its slave")
                    .with_header(&header),
            );
        }
        let Some(tc) = self.topics.get(&h.topic) else {
            return Some(reply(
                req,
                ResponseCode::TopicNotExist,
                format!("topic[{}] not exist, apply first please!", h.topic),
            ));
        };
        let group = self.groups.get(&h.consumer_group);
        if !group.consume_enable {
            let why = format!("subscription group no permission, {}", h.consumer_group);
            return Some(reply(req, ResponseCode::NoPermission, why));
        }
        let broadcasting = self
            .clients
            .consumers(&h.consumer_group)
            .is_some_and(|m| m.values().any(|c| c.data.message_model == "BROADCASTING"));
        if broadcasting && !group.consume_broadcast_enable {
            let why = format!("the consumer group[{}] can not consume by broadcast way", h.consumer_group);
            return Some(reply(req, ResponseCode::NoPermission, why));
        }
        if tc.perm & perm::READ == 0 {
            return Some(reply(
                req,
                ResponseCode::NoPermission,
                format!("the topic[{}] pulling message is forbidden", h.topic),
            ));
        }
        if h.queue_id < 0 || h.queue_id >= tc.read_queue_nums.max(tc.write_queue_nums) {
            return Some(reply(
                req,
                ResponseCode::SystemError,
                format!("queueId[{}] is illegal, topic:[{}]", h.queue_id, h.topic),
            ));
        }
        if h.queue_offset < 0 {
            return Some(reply(req, ResponseCode::InvalidParameter, "queueOffset must not be negative"));
        }
        if h.sys_flag & pull_flag::COMMIT_OFFSET != 0
            && h.commit_offset >= 0
            && self.config.broker_role != BrokerRole::Slave
        {
            // A piggybacked commit that cannot apply (backward, stale) is dropped: the pull itself
            // is still served, and its answer re-seats a stale consumer.
            let _ = self.commit_offset(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset as u64);
        }
        let sub = match (h.sys_flag & pull_flag::SUBSCRIPTION != 0, &h.subscription) {
            (true, Some(expr)) => Some(SubscriptionData::tag(&h.topic, expr)),
            _ => self.clients.subscription(&h.consumer_group, &h.topic).cloned(),
        };
        let codes: Vec<i64> = sub.map(|s| s.code_set.iter().map(|c| i64::from(*c)).collect()).unwrap_or_default();
        let filter = |tag_hash: i64| codes.is_empty() || codes.contains(&tag_hash);
        let max_msgs = (h.max_msg_nums.max(1) as u32).min(PULL_MESSAGES_MAX);
        let max_bytes = h.max_msg_bytes.map_or(PULL_BYTES_MAX, |b| (b.max(1) as u32).min(PULL_BYTES_MAX));
        let offset = h.queue_offset as u64;
        let r = self.store.get_messages(&h.topic, h.queue_id, offset, max_msgs, max_bytes, &filter);
        let code = status_to_code(r.status, offset);
        if code == ResponseCode::PullNotFound
            && allow_hold
            && h.sys_flag & pull_flag::SUSPEND != 0
            && self.holds.count < self.config.pull_holds_max
        {
            let wait_ms = if self.config.long_polling_enable {
                (h.suspend_timeout_millis.max(0) as u64).min(self.config.pull_hold_max_ms)
            } else {
                self.config.short_polling_ms
            };
            let hold = Hold { conn, req: req.clone(), queue_offset: offset, deadline_ms: now_ms + wait_ms };
            self.holds.insert(&h.topic, h.queue_id, hold);
            let (topic, queue_id) = (h.topic.clone(), h.queue_id);
            self.event(|| Event::PullHeld { topic, queue_id });
            return None;
        }
        let header = PullMessageResponseHeader {
            // A slave cut off from its master suggests itself (consumers stay here); otherwise
            // the master (RocketMQ: MASTER_ID unless the master is slow).
            suggest_which_broker_id: self.read_suggestion(),
            next_begin_offset: r.next_begin_offset as i64,
            min_offset: r.min_offset as i64,
            max_offset: r.max_offset as i64,
        };
        let mut body = Vec::with_capacity(r.messages.iter().map(|m| m.len()).sum());
        for m in &r.messages {
            body.extend_from_slice(m);
        }
        self.stats.on_get(&h.consumer_group, &h.topic, r.messages.len() as u64, body.len() as u64);
        Some(
            reply(req, code, format!("{:?}", r.status))
                .with_header(&header)
                .with_ext("topicSysFlag", tc_sys_flag(self.topics.get(&h.topic)))
                .with_ext("groupSysFlag", 0)
                .with_body(body),
        )
    }

    /// Re-runs held pulls whose queues received messages.
    pub(crate) fn wake_holds(&mut self, now_ms: u64) {
        if self.holds.arrived.is_empty() {
            return;
        }
        let arrived = std::mem::take(&mut self.holds.arrived);
        for (topic, queue_id) in arrived {
            let max = self.store.max_queue_offset(&topic, queue_id);
            for hold in self.holds.take(&topic, queue_id, |h| h.queue_offset < max) {
                self.answer_hold(now_ms, hold);
            }
        }
    }

    /// Answers holds whose suspend time ran out.
    pub(crate) fn expire_holds(&mut self, now_ms: u64) {
        while let Some((deadline, _, topic, queue_id)) = self.holds.deadlines.first().cloned() {
            if deadline > now_ms {
                break;
            }
            for hold in self.holds.take(&topic, queue_id, |h| h.deadline_ms <= now_ms) {
                self.answer_hold(now_ms, hold);
            }
        }
    }

    pub(crate) fn answer_hold(&mut self, now_ms: u64, hold: Hold) {
        if let Some(resp) = self.pull(now_ms, hold.conn, &hold.req, false) {
            self.outputs.push_back(Output::Transmit { conn: hold.conn, cmd: resp });
        }
    }
}

fn tc_sys_flag(tc: Option<&rmq_proto::body::TopicConfig>) -> i32 {
    tc.map_or(0, |t| t.topic_sys_flag)
}
