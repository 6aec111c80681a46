//! SEND_MESSAGE, SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE, and the SYNC_FLUSH waiters that hold
//! their answers until a flush covering them is reported.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use rmq_proto::body::TopicConfig;
use rmq_proto::codes::{perm, sys_flag, RequestCode};
use rmq_proto::header::{SendMessageRequestHeader, SendMessageResponseHeader};
use rmq_proto::message::{self, decode_batch, decode_properties, offset_msg_id, prop, MessageExt};
use rmq_proto::{ConnId, RemotingCommand, ResponseCode};
use rmq_store::{Directory, PutResult, StoreError};

use crate::topics::{DLQ_PREFIX, RETRY_PREFIX, SCHEDULE_TOPIC};
use crate::{checks, ok, reply, transaction, BrokerCore, BrokerRole, Event, FlushDiskType};

/// Most sends waiting for a flush; beyond it sends are refused with SYSTEM_BUSY.
pub const FLUSH_WAITERS_MAX: usize = 100_000;
/// Most messages in one batch.
pub const BATCH_MESSAGES_MAX: usize = 4_096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Waiter {
    end_offset: u64,
    /// SYNC_MASTER: once flushed, wait for a slave too.
    need_slave: bool,
    deadline_ms: u64,
    conn: ConnId,
    resp: RemotingCommand,
}

/// Answers held until the CommitLog is durable past `end_offset`, in offset order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct FlushWaiters {
    q: VecDeque<Waiter>,
}

impl FlushWaiters {
    pub(crate) fn next_deadline_ms(&self) -> Option<u64> {
        self.q.front().map(|w| w.deadline_ms)
    }

    pub(crate) fn last_end_offset(&self) -> Option<u64> {
        self.q.back().map(|w| w.end_offset)
    }

    pub(crate) fn assert_ordered(&self) {
        let mut prev = 0;
        for w in &self.q {
            assert!(w.end_offset >= prev, "flush waiters out of CommitLog order");
            prev = w.end_offset;
        }
    }
}

impl<D: Directory> BrokerCore<D> {
    pub(crate) fn send(&mut self, now_ms: u64, conn: ConnId, req: &RemotingCommand) -> Option<RemotingCommand> {
        let h: SendMessageRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return Some(reply(req, ResponseCode::InvalidParameter, e.to_string())),
        };
        let write_queue_nums = match self.check_writable(now_ms, req, &h) {
            Ok(n) => n,
            Err(resp) => return Some(resp),
        };
        let queue_id = if h.queue_id < 0 || h.queue_id >= write_queue_nums {
            self.queue_rotor = self.queue_rotor.wrapping_add(1);
            (self.queue_rotor % write_queue_nums.max(1) as u32) as i32
        } else {
            h.queue_id
        };
        let mut msgs = match self.build_messages(now_ms, conn, req, &h, queue_id) {
            Ok(m) => m,
            Err(resp) => return Some(resp),
        };
        if msgs.iter().any(transaction::is_prepared) {
            if msgs.len() > 1 {
                return Some(reply(req, ResponseCode::MessageIllegal, "a batch cannot hold transactional messages"));
            }
            for m in msgs.iter_mut() {
                if let Err((code, why)) = self.move_to_half(now_ms, m) {
                    return Some(reply(req, code, why));
                }
            }
        }
        let wait = msgs.iter().all(|m| m.properties.get(prop::WAIT).is_none_or(|w| w != "false"));
        let mut ids = Vec::with_capacity(msgs.len());
        let mut first: Option<PutResult> = None;
        let mut last_end = 0;
        for m in msgs.iter_mut() {
            let r = match self.put_message(now_ms, m) {
                Ok(r) => r,
                Err((code, why)) => return Some(reply(req, code, why)),
            };
            ids.push(offset_msg_id(self.store_host, r.commit_log_offset as i64));
            last_end = r.end_offset;
            first.get_or_insert(r);
        }
        let (Some(first), Some(first_msg)) = (first, msgs.first()) else {
            return Some(reply(req, ResponseCode::MessageIllegal, "a send holds at least one message"));
        };
        let resp_header = SendMessageResponseHeader {
            msg_id: ids.join(","),
            queue_id: first_msg.queue_id,
            queue_offset: first.queue_offset as i64,
            transaction_id: first_msg.properties.get(prop::UNIQ_KEY).cloned(),
        };
        let resp = ok(req)
            .with_header(&resp_header)
            .with_ext(prop::MSG_REGION, "DefaultRegion")
            .with_ext(prop::TRACE_ON, "true");
        let need_slave = self.config.broker_role == BrokerRole::SyncMaster && wait && !req.is_oneway();
        if self.config.flush_disk_type == FlushDiskType::SyncFlush && wait && !req.is_oneway() {
            if self.flush_waiters.q.len() >= FLUSH_WAITERS_MAX {
                return Some(reply(
                    req,
                    ResponseCode::SystemBusy,
                    "[FLUSH_WAITERS_FULL] broker busy: stored but too many sends await a flush",
                ));
            }
            let deadline_ms = now_ms + self.config.sync_flush_timeout_ms;
            self.flush_waiters.q.push_back(Waiter { end_offset: last_end, need_slave, deadline_ms, conn, resp });
            self.request_flush();
            return None;
        }
        if need_slave {
            self.wait_for_slave(now_ms, last_end, conn, resp);
            return None;
        }
        self.event(|| Event::SendAnswered { code: 0, queue_offset: first.queue_offset });
        Some(resp)
    }

    /// Refuses sends a slave, a bad name or a read-only topic cannot take; auto-creates
    /// topics. Returns the topic's writeQueueNums.
    fn check_writable(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
        h: &SendMessageRequestHeader,
    ) -> Result<i32, RemotingCommand> {
        if self.config.broker_role == BrokerRole::Slave {
            return Err(reply(req, ResponseCode::ServiceNotAvailable, "this broker is a slave; send to its master"));
        }
        if let Some(why) = &self.ha.fenced {
            return Err(reply(req, ResponseCode::ServiceNotAvailable, format!("this master is fenced: {why}")));
        }
        if let Some(why) = self.disk_full() {
            return Err(reply(req, ResponseCode::ServiceNotAvailable, why.to_string()));
        }
        checks::topic(req, &h.topic)?;
        checks::producer_group(req, &h.producer_group)?;
        if h.topic == SCHEDULE_TOPIC {
            // TopicValidator.isNotAllowedSendTopic.
            return Err(reply(
                req,
                ResponseCode::NoPermission,
                format!("Sending message to topic[{SCHEDULE_TOPIC}] is forbidden."),
            ));
        }
        // One lookup on the hot path (a topic that exists); the fields are copied out so the
        // auto-create path below may borrow the table mutably.
        let known = self.topics.get(&h.topic).map(|tc| (tc.perm, tc.write_queue_nums));
        let (topic_perm, write_queue_nums) = match known {
            Some(known) => known,
            None => {
                let retry = h.topic.starts_with(RETRY_PREFIX) || h.topic.starts_with(DLQ_PREFIX);
                if !self.config.auto_create_topic_enable && !retry {
                    return Err(reply(
                        req,
                        ResponseCode::TopicNotExist,
                        format!("topic[{}] not exist, apply first please!", h.topic),
                    ));
                }
                let queues = if retry {
                    1
                } else {
                    h.default_topic_queue_nums.clamp(1, self.config.default_topic_queue_nums.max(1))
                };
                if let Err(e) = self.create_topic(now_ms, TopicConfig::new(&h.topic, queues)) {
                    return Err(reply(req, ResponseCode::SystemError, e.to_string()));
                }
                let Some(tc) = self.topics.get(&h.topic) else {
                    return Err(reply(req, ResponseCode::TopicNotExist, format!("topic[{}] not exist", h.topic)));
                };
                (tc.perm, tc.write_queue_nums)
            }
        };
        if topic_perm & perm::WRITE == 0 {
            return Err(reply(
                req,
                ResponseCode::NoPermission,
                format!("the topic[{}] sending message is forbidden", h.topic),
            ));
        }
        Ok(write_queue_nums)
    }

    fn build_messages(
        &self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
        h: &SendMessageRequestHeader,
        queue_id: i32,
    ) -> Result<Vec<MessageExt>, RemotingCommand> {
        let born_host = self.peers.get(&conn).copied().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let base = MessageExt {
            topic: h.topic.clone(),
            queue_id,
            flag: h.flag,
            sys_flag: h.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6),
            born_timestamp: h.born_timestamp,
            born_host,
            store_timestamp: now_ms as i64,
            store_host: self.store_host,
            reconsume_times: h.reconsume_times.unwrap_or(0),
            properties: decode_properties(h.properties.as_deref().unwrap_or_default()),
            ..Default::default()
        };
        let check = |body: &Bytes, properties: &_| {
            if body.len() > self.config.max_message_bytes {
                return Err(reply(
                    req,
                    ResponseCode::MessageIllegal,
                    format!("message body of {} bytes exceeds {}", body.len(), self.config.max_message_bytes),
                ));
            }
            if message::encoded_properties_len(properties) > message::PROPERTIES_MAX_BYTES {
                return Err(reply(req, ResponseCode::MessageIllegal, "properties longer than 32766 bytes"));
            }
            Ok(())
        };
        if req.request_code() != RequestCode::SendBatchMessage && h.batch != Some(true) {
            // One message: the header's fields and the request's body, as they are.
            let body = req.body.clone();
            check(&body, &base.properties)?;
            let mut m = MessageExt { body, ..base };
            self.apply_delay(&mut m);
            return Ok(vec![m]);
        }
        let items = decode_batch(&req.body)
            .map_err(|e| reply(req, ResponseCode::MessageIllegal, format!("bad batch body: {e}")))?;
        if items.is_empty() || items.len() > BATCH_MESSAGES_MAX {
            return Err(reply(
                req,
                ResponseCode::MessageIllegal,
                format!("a batch holds 1 to {BATCH_MESSAGES_MAX} messages"),
            ));
        }
        // Each item carries its own properties: the header's are not copied into every one.
        let base = MessageExt { properties: Default::default(), ..base };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            check(&item.body, &item.properties)?;
            let mut m = MessageExt { flag: item.flag, body: item.body, properties: item.properties, ..base.clone() };
            self.apply_delay(&mut m);
            out.push(m);
        }
        Ok(out)
    }

    /// Appends one message, records it, and marks its queue for held pulls.
    pub(crate) fn put_message(
        &mut self,
        _now_ms: u64,
        m: &mut MessageExt,
    ) -> Result<PutResult, (ResponseCode, String)> {
        // Every append passes here: the last check before a name becomes a directory.
        if let Err(e) = rmq_proto::names::validate_topic(&m.topic) {
            return Err((ResponseCode::SystemError, e.to_string()));
        }
        let r = self.store.put(m).map_err(|e| match e {
            StoreError::MessageTooLarge { .. } => (ResponseCode::MessageIllegal, e.to_string()),
            // RocketMQ's answer while the disk is full (RunningFlags.isDiskFull); the next put
            // that gets its segment allocated is accepted again.
            StoreError::DiskFull { .. } => {
                (ResponseCode::ServiceNotAvailable, format!("service not available now, maybe disk full: {e}"))
            }
            other => (ResponseCode::SystemError, format!("store failed: {other}")),
        })?;
        self.holds.note_arrival(&m.topic, m.queue_id);
        self.stats.on_put(&m.topic, u64::from(r.wrote_bytes));
        self.note_delayed(m);
        let uniq = m.properties.get(prop::UNIQ_KEY).cloned();
        self.event(|| Event::MessageStored {
            topic: m.topic.clone(),
            queue_id: m.queue_id,
            queue_offset: r.queue_offset,
            commit_log_offset: r.commit_log_offset,
            uniq_key: uniq,
        });
        Ok(r)
    }

    /// Answers every waiter the reported flush covers.
    pub(crate) fn release_flush_waiters(&mut self, now_ms: u64) {
        while self.flush_waiters.q.front().is_some_and(|w| w.end_offset <= self.flushed_offset()) {
            let w = self.flush_waiters.q.pop_front().expect("front checked above");
            if w.need_slave {
                self.wait_for_slave(now_ms, w.end_offset, w.conn, w.resp);
            } else {
                self.answer_send(w.conn, w.resp);
            }
        }
        if !self.flush_waiters.q.is_empty() {
            self.request_flush();
        }
    }

    /// Waiters past their deadline get FLUSH_DISK_TIMEOUT: stored, durability not confirmed.
    pub(crate) fn expire_flush_waiters(&mut self, now_ms: u64) {
        while self.flush_waiters.q.front().is_some_and(|w| w.deadline_ms <= now_ms) {
            let mut w = self.flush_waiters.q.pop_front().expect("front checked above");
            w.resp.code = ResponseCode::FlushDiskTimeout.code();
            w.resp.remark = Some("stored, but the flush was not confirmed in time".into());
            self.answer_send(w.conn, w.resp);
        }
    }
}
