//! Delay levels and consumer retries: delayed messages wait in SCHEDULE_TOPIC_XXXX (queue =
//! level - 1) and are re-put to their real topic when due; CONSUMER_SEND_MSG_BACK routes a
//! failed message to `%RETRY%<group>` with a growing delay, or to `%DLQ%<group>` when spent.

use std::collections::BTreeMap;

use rmq_proto::body::TopicConfig;
use rmq_proto::header::ConsumerSendMsgBackRequestHeader;
use rmq_proto::message::{decode_message, prop, MessageExt, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR};
use rmq_proto::{RemotingCommand, ResponseCode};
use rmq_store::Directory;
use serde::{Deserialize, Serialize};

use crate::topics::{RETRY_PREFIX, SCHEDULE_TOPIC};
use crate::{checks, ok, reply, BrokerCore, Event};

/// Where delay progress is persisted.
pub const DELAY_PATH: &str = "config/delayOffset.json";
/// Most delayed messages re-put per timer tick and level.
pub const DELIVERIES_PER_TICK_MAX: usize = 1_024;

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DelayFile {
    #[serde(default)]
    offset_table: BTreeMap<i32, i64>,
}

/// Per delay level: the next schedule-queue offset to deliver, and when it is due.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct DelayProgress {
    offsets: BTreeMap<i32, u64>,
    due_ms: BTreeMap<i32, u64>,
    dirty: bool,
}

impl DelayProgress {
    pub(crate) fn load<D: Directory>(dir: &D) -> Result<Self, String> {
        let mut out = DelayProgress::default();
        if let Some(bytes) = dir.read_file(DELAY_PATH).map_err(|e| e.to_string())? {
            let f: DelayFile = rmq_proto::body::from_json(&bytes).map_err(|e| e.to_string())?;
            out.offsets = f.offset_table.into_iter().map(|(l, o)| (l, o.max(0) as u64)).collect();
        }
        // Recovered delayed messages are examined on the first tick.
        Ok(out)
    }

    pub(crate) fn next_due_ms(&self) -> Option<u64> {
        self.due_ms.values().min().copied()
    }

    pub(crate) fn persist<D: Directory>(&mut self, dir: &mut D) -> Result<(), rmq_store::StoreError> {
        if !self.dirty {
            return Ok(());
        }
        dir.write_file(DELAY_PATH, &self.to_body())?;
        self.dirty = false;
        Ok(())
    }

    /// The progress as `delayOffset.json` and GET_ALL_DELAY_OFFSET carry it.
    pub(crate) fn to_body(&self) -> Vec<u8> {
        let f = DelayFile { offset_table: self.offsets.iter().map(|(l, o)| (*l, *o as i64)).collect() };
        rmq_proto::body::to_json(&f)
    }

    /// A slave takes over its master's delay progress.
    pub(crate) fn take_over(&mut self, body: &[u8]) -> Result<(), String> {
        let f: DelayFile = rmq_proto::body::from_json(body).map_err(|e| e.to_string())?;
        self.offsets = f.offset_table.into_iter().map(|(l, o)| (l, o.max(0) as u64)).collect();
        self.dirty = true;
        Ok(())
    }
}

impl<D: Directory> BrokerCore<D> {
    /// Rewrites a message with a DELAY property into the schedule topic.
    pub(crate) fn apply_delay(&self, m: &mut MessageExt) {
        let levels = self.config.delay_levels_ms.len() as i32;
        let Some(level) = m.properties.get(prop::DELAY).and_then(|d| d.parse::<i32>().ok()) else { return };
        // A half message is delayed when it is committed, not before (RocketMQ issue #1540).
        if level <= 0 || levels == 0 || m.topic == SCHEDULE_TOPIC || crate::transaction::is_prepared(m) {
            return;
        }
        let level = level.min(levels);
        m.properties.insert(prop::DELAY.into(), level.to_string());
        m.properties.insert(prop::REAL_TOPIC.into(), m.topic.clone());
        m.properties.insert(prop::REAL_QID.into(), m.queue_id.to_string());
        m.topic = SCHEDULE_TOPIC.into();
        m.queue_id = level - 1;
    }

    fn delay_ms(&self, level: i32) -> u64 {
        self.config.delay_levels_ms.get((level - 1).max(0) as usize).copied().unwrap_or(0)
    }

    /// Notes when a freshly stored delayed message falls due.
    pub(crate) fn note_delayed(&mut self, m: &MessageExt) {
        if m.topic == SCHEDULE_TOPIC {
            let level = m.queue_id + 1;
            let due = m.store_timestamp.max(0) as u64 + self.delay_ms(level);
            let slot = self.delay.due_ms.entry(level).or_insert(due);
            *slot = (*slot).min(due);
        }
    }

    /// Re-puts every delayed message that is due.
    pub(crate) fn deliver_due_delayed(&mut self, now_ms: u64) {
        let levels = self.config.delay_levels_ms.len() as i32;
        if self.delay.due_ms.values().all(|d| *d > now_ms) && !self.delay.due_ms.is_empty() {
            return;
        }
        for level in 1..=levels {
            self.deliver_level(now_ms, level);
        }
    }

    fn deliver_level(&mut self, now_ms: u64, level: i32) {
        let qid = level - 1;
        let max = self.store.max_queue_offset(SCHEDULE_TOPIC, qid);
        let mut next =
            self.delay.offsets.get(&level).copied().unwrap_or(0).max(self.store.min_queue_offset(SCHEDULE_TOPIC, qid));
        self.delay.due_ms.remove(&level);
        for _ in 0..DELIVERIES_PER_TICK_MAX {
            if next >= max {
                break;
            }
            let got = self.store.get_messages(SCHEDULE_TOPIC, qid, next, 1, u32::MAX, &|_| true);
            let Some(raw) = got.messages.first() else {
                next = got.next_begin_offset.max(next + 1);
                continue;
            };
            let Ok((msg, _)) = decode_message(raw, false) else {
                next += 1;
                continue;
            };
            let due = msg.store_timestamp.max(0) as u64 + self.delay_ms(level);
            if due > now_ms {
                self.delay.due_ms.insert(level, due);
                break;
            }
            self.redeliver(now_ms, msg);
            next += 1;
        }
        if next >= max {
            self.delay.due_ms.remove(&level);
        } else {
            self.delay.due_ms.entry(level).or_insert(now_ms + self.config.delay_poll_interval_ms);
        }
        if self.delay.offsets.get(&level) != Some(&next) {
            self.delay.offsets.insert(level, next);
            self.delay.dirty = true;
        }
    }

    /// Re-puts a due delayed message to its real topic. A stored name re-enters here, so it
    /// is checked again: a message whose REAL_TOPIC is not a valid topic is skipped.
    fn redeliver(&mut self, now_ms: u64, mut msg: MessageExt) {
        let Some(topic) = msg.properties.remove(prop::REAL_TOPIC) else { return };
        if rmq_proto::names::validate_topic(&topic).is_err() {
            return;
        }
        let qid = msg.properties.remove(prop::REAL_QID).and_then(|q| q.parse::<i32>().ok()).unwrap_or(0);
        msg.properties.remove(prop::DELAY);
        let queues = if topic.starts_with(RETRY_PREFIX) { 1 } else { self.config.default_topic_queue_nums };
        if self.ensure_topic(now_ms, &topic, queues).is_err() {
            return;
        }
        let queues = self.topics.get(&topic).map_or(1, |tc| tc.write_queue_nums.max(tc.read_queue_nums));
        msg.topic = topic.clone();
        msg.queue_id = if (0..queues).contains(&qid) { qid } else { 0 };
        msg.store_timestamp = now_ms as i64;
        if self.put_message(now_ms, &mut msg).is_ok() {
            self.event(|| Event::DelayedDelivered { topic });
        }
    }

    /// CONSUMER_SEND_MSG_BACK: retry later with a growing delay, or dead-letter.
    pub(crate) fn send_back(&mut self, now_ms: u64, req: &RemotingCommand) -> Option<RemotingCommand> {
        let h: ConsumerSendMsgBackRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return Some(reply(req, ResponseCode::InvalidParameter, e.to_string())),
        };
        // Names first: the retry and DLQ topics are derived from the group.
        if let Err(resp) = checks::consumer_group(req, &h.group) {
            return Some(resp);
        }
        if let Some(Err(resp)) = h.origin_topic.as_deref().map(|t| checks::topic(req, t)) {
            return Some(resp);
        }
        if h.offset < 0 {
            return Some(reply(req, ResponseCode::InvalidParameter, "offset must not be negative"));
        }
        if h.origin_msg_id.as_deref().is_some_and(|id| id.contains([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR])) {
            return Some(reply(req, ResponseCode::InvalidParameter, "originMsgId holds a property separator"));
        }
        let Ok(orig) = self.store.read_message(h.offset as u64) else {
            return Some(reply(req, ResponseCode::SystemError, format!("look message by offset failed, {}", h.offset)));
        };
        let group_max = self.groups.configured(&h.group).map_or(self.config.max_reconsume_times, |g| g.retry_max_times);
        let max_times = h.max_reconsume_times.filter(|_| req.version >= 121).unwrap_or(group_max);
        let dead = orig.reconsume_times >= max_times || h.delay_level < 0;
        let target = match checks::group_topic(req, &h.group, dead) {
            Ok(t) => t,
            Err(resp) => return Some(resp),
        };
        if self.topics.get(&target).is_none() {
            if let Err(e) = self.create_topic(now_ms, TopicConfig::new(&target, 1)) {
                return Some(reply(req, ResponseCode::SystemError, e.to_string()));
            }
        }
        let mut m = MessageExt {
            topic: target,
            queue_id: 0,
            store_timestamp: now_ms as i64,
            // Reconsume counts come from producers' headers: saturate rather than overflow.
            reconsume_times: orig.reconsume_times.saturating_add(1),
            commit_log_offset: 0,
            queue_offset: 0,
            ..orig.clone()
        };
        m.properties.entry(prop::RETRY_TOPIC.into()).or_insert_with(|| orig.topic.clone());
        let origin_id = h.origin_msg_id.clone().unwrap_or_else(|| orig.msg_id());
        m.properties.entry(prop::ORIGIN_MESSAGE_ID.into()).or_insert(origin_id);
        m.properties.remove(prop::REAL_TOPIC);
        m.properties.remove(prop::REAL_QID);
        if dead {
            m.properties.remove(prop::DELAY);
        } else {
            let level = if h.delay_level == 0 { orig.reconsume_times.saturating_add(3) } else { h.delay_level };
            m.properties.insert(prop::DELAY.into(), level.to_string());
            self.apply_delay(&mut m);
        }
        match self.put_message(now_ms, &mut m) {
            Ok(_) => Some(ok(req)),
            Err((code, why)) => Some(reply(req, code, why)),
        }
    }
}
