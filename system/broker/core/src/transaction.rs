//! Transactional messages, broker side (RocketMQ's half messages; rocketmq-spec.md §3.3).
//!
//! A send whose sysFlag says TRANSACTION_PREPARED is stored in [`HALF_TOPIC`] queue 0 with its
//! real topic and queue in REAL_TOPIC / REAL_QID, where no consumer of the real topic sees it.
//! END_TRANSACTION resolves it: COMMIT writes it to its real topic (the prepared bits become
//! COMMIT), ROLLBACK writes nothing there; both append an op record to [`OP_TOPIC`] (tag
//! [`REMOVE_TAG`], body the half message's queue offset), so a restart knows what was resolved
//! and a second END_TRANSACTION for the same half message changes nothing.
//!
//! The resolved set is rebuilt from the op queue when the broker opens, so it holds for a
//! master that restarted or that was fed by its slave. A slave refuses END_TRANSACTION.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use rmq_proto::codes::sys_flag;
use rmq_proto::codes::RequestCode;
use rmq_proto::header::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use rmq_proto::message::{decode_message, encode_message, offset_msg_id, prop, MessageExt};
use rmq_proto::{RemotingCommand, ResponseCode};
use rmq_store::{Directory, MessageStore};

use crate::{checks, ok, reply, BrokerCore, BrokerRole, Event, Output};

/// Where prepared (half) messages wait for their outcome.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where resolutions are recorded.
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// The op record's tag.
pub const REMOVE_TAG: &str = "d";
/// Property of a committed message: the queue offset of its half message.
pub const PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";

/// The transaction type bits of a sysFlag.
fn kind(flag: i32) -> i32 {
    flag & sys_flag::TRANSACTION_ROLLBACK
}

/// Whether a sent message is a half message.
pub(crate) fn is_prepared(m: &MessageExt) -> bool {
    kind(m.sys_flag) == sys_flag::TRANSACTION_PREPARED
}

/// Where half messages go after `transactionCheckMax` checks without an outcome.
pub const CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// Property: how many times a half message was checked back.
pub const CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
/// Most half messages looked at in one check round.
pub const CHECKS_PER_ROUND_MAX: u64 = 1_000;

/// Half messages resolved (by their queue offset in [`HALF_TOPIC`]) and the check-back's
/// progress. Check counts live here, not in re-appended copies of the half message (RocketMQ
/// 4.x): a restart starts them over, so a half message may be checked up to
/// `transactionCheckMax` more times after one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Transactions {
    resolved: BTreeSet<u64>,
    /// Checks so far, per unresolved half offset.
    checks: BTreeMap<u64, u32>,
    /// Every half offset below this is resolved.
    scan_from: u64,
    /// The next check round.
    next_check_ms: u64,
}

impl Transactions {
    /// Reads every op record in the store.
    pub(crate) fn load<D: Directory>(store: &MessageStore<D>) -> Self {
        let mut resolved = BTreeSet::new();
        let max = store.max_queue_offset(OP_TOPIC, 0);
        let mut next = store.min_queue_offset(OP_TOPIC, 0);
        while next < max {
            let got = store.get_messages(OP_TOPIC, 0, next, 32, u32::MAX, &|_| true);
            if got.messages.is_empty() {
                if got.next_begin_offset <= next {
                    break;
                }
                next = got.next_begin_offset;
                continue;
            }
            for raw in &got.messages {
                if let Ok((m, _)) = decode_message(raw, false) {
                    resolved.extend(op_offsets(&m.body));
                }
            }
            next = got.next_begin_offset.max(next + 1);
        }
        let mut t = Transactions { resolved, ..Default::default() };
        t.advance_scan();
        t
    }

    /// Moves `scan_from` past resolved half offsets, forgetting their check counts.
    fn advance_scan(&mut self) {
        while self.resolved.contains(&self.scan_from) {
            self.scan_from += 1;
        }
        let below = self.scan_from;
        self.resolved = self.resolved.split_off(&below);
        self.checks = self.checks.split_off(&below);
    }

    /// Records an outcome.
    fn resolve(&mut self, half_offset: u64) {
        self.resolved.insert(half_offset);
        self.checks.remove(&half_offset);
        self.advance_scan();
    }

    /// Schedules the first check round.
    pub(crate) fn start(&mut self, now_ms: u64, interval_ms: u64) {
        self.next_check_ms = now_ms + interval_ms;
    }

    /// Whether the half message at `queue_offset` has its outcome.
    pub(crate) fn is_resolved(&self, queue_offset: u64) -> bool {
        queue_offset < self.scan_from || self.resolved.contains(&queue_offset)
    }
}

/// The half-queue offsets of an op record's body ("12,13,…").
fn op_offsets(body: &[u8]) -> impl Iterator<Item = u64> + '_ {
    std::str::from_utf8(body).unwrap_or("").split(',').filter_map(|s| s.trim().parse().ok())
}

impl<D: Directory> BrokerCore<D> {
    /// Moves a half message to [`HALF_TOPIC`] (creating it), keeping its real address.
    pub(crate) fn move_to_half(&mut self, now_ms: u64, m: &mut MessageExt) -> Result<(), (ResponseCode, String)> {
        self.ensure_topic(now_ms, HALF_TOPIC, 1)?;
        m.properties.insert(prop::REAL_TOPIC.into(), m.topic.clone());
        m.properties.insert(prop::REAL_QID.into(), m.queue_id.to_string());
        m.topic = HALF_TOPIC.into();
        m.queue_id = 0;
        Ok(())
    }

    /// END_TRANSACTION: commit or roll back a half message. One-way as RocketMQ sends it
    /// (nothing is answered); a two-way request gets SUCCESS or the reason it was refused.
    pub(crate) fn end_transaction(&mut self, now_ms: u64, req: &RemotingCommand) -> Option<RemotingCommand> {
        let resp = self.resolve(now_ms, req).unwrap_or_else(|refusal| {
            // A one-way request has no answer to carry the reason: the event does.
            let (code, reason) = (refusal.code, refusal.remark.clone().unwrap_or_default());
            self.event(|| Event::TransactionRefused { code, reason });
            refusal
        });
        (!req.is_oneway()).then_some(resp)
    }

    fn resolve(&mut self, now_ms: u64, req: &RemotingCommand) -> Result<RemotingCommand, RemotingCommand> {
        if self.config.broker_role == BrokerRole::Slave {
            return Err(reply(
                req,
                ResponseCode::SlaveNotAvailable,
                "this broker is a slave; END_TRANSACTION goes to its master",
            ));
        }
        let h: EndTransactionRequestHeader =
            req.decode_header().map_err(|e| reply(req, ResponseCode::InvalidParameter, e.to_string()))?;
        checks::producer_group(req, &h.producer_group)?;
        let commit = match kind(h.commit_or_rollback) {
            // Unknown: the check-back will ask again.
            0 => return Ok(ok(req)),
            sys_flag::TRANSACTION_COMMIT => true,
            sys_flag::TRANSACTION_ROLLBACK => false,
            _ => {
                return Err(reply(
                    req,
                    ResponseCode::InvalidParameter,
                    format!("commitOrRollback {} is not 0, 8 (commit) or 12 (rollback)", h.commit_or_rollback),
                ))
            }
        };
        let clo = u64::try_from(h.commit_log_offset)
            .map_err(|_| reply(req, ResponseCode::InvalidParameter, "commitLogOffset is negative"))?;
        let half = self.store.read_message(clo).map_err(|e| {
            reply(req, ResponseCode::SystemError, format!("find prepared transaction message failed: {e}"))
        })?;
        if half.topic != HALF_TOPIC || !is_prepared(&half) {
            return Err(reply(req, ResponseCode::SystemError, "the commit log offset wrong: no half message there"));
        }
        if half.queue_offset != h.tran_state_table_offset {
            return Err(reply(req, ResponseCode::SystemError, "the transaction state table offset wrong"));
        }
        if half.properties.get(prop::PGROUP) != Some(&h.producer_group) {
            return Err(reply(req, ResponseCode::SystemError, "the producer group wrong"));
        }
        let half_offset = half.queue_offset as u64;
        if self.transactions.is_resolved(half_offset) {
            // Resolved before (a duplicate, or a check-back answer after the producer's own).
            return Ok(ok(req));
        }
        if commit {
            let mut real = committed(&half, now_ms)
                .ok_or_else(|| reply(req, ResponseCode::SystemError, "the half message names no valid real topic"))?;
            self.ensure_topic(now_ms, &real.topic, self.config.default_topic_queue_nums.max(1))
                .map_err(|(code, why)| reply(req, code, why))?;
            let queues = self.topics.get(&real.topic).map_or(1, |tc| tc.write_queue_nums.max(1));
            if !(0..queues).contains(&real.queue_id) {
                real.queue_id = 0;
            }
            self.apply_delay(&mut real);
            self.put_message(now_ms, &mut real).map_err(|(code, why)| reply(req, code, why))?;
        }
        self.write_op(now_ms, &half).map_err(|(code, why)| reply(req, code, why))?;
        self.event(|| Event::TransactionEnded { half_offset, commit });
        Ok(ok(req))
    }

    /// Appends the op record that resolves `half`, and notes it.
    fn write_op(&mut self, now_ms: u64, half: &MessageExt) -> Result<(), (ResponseCode, String)> {
        let half_offset = half.queue_offset as u64;
        self.ensure_topic(now_ms, OP_TOPIC, 1)?;
        let mut op = MessageExt {
            topic: OP_TOPIC.into(),
            queue_id: 0,
            sys_flag: 0,
            body: Bytes::from(half_offset.to_string()),
            born_timestamp: now_ms as i64,
            born_host: half.born_host,
            store_timestamp: now_ms as i64,
            store_host: self.store_host,
            ..Default::default()
        };
        op.properties.insert(prop::TAGS.into(), REMOVE_TAG.into());
        self.put_message(now_ms, &mut op)?;
        self.transactions.resolve(half_offset);
        Ok(())
    }

    /// When the next check round is due: only while a half message may be unresolved.
    pub(crate) fn transaction_deadline_ms(&self) -> Option<u64> {
        let pending = self.store.max_queue_offset(HALF_TOPIC, 0) > self.transactions.scan_from;
        (pending && self.config.broker_role != BrokerRole::Slave).then_some(self.transactions.next_check_ms)
    }

    /// A check round: each half message older than `transactionTimeOut` with no outcome is
    /// asked about (CHECK_TRANSACTION_STATE, one-way, to the producer of its group heard from
    /// last), or, checked `transactionCheckMax` times already, moved to
    /// [`CHECK_MAX_TIME_TOPIC`] and resolved.
    pub(crate) fn check_transactions(&mut self, now_ms: u64) {
        let Some(due) = self.transaction_deadline_ms() else { return };
        if now_ms < due {
            return;
        }
        self.transactions.next_check_ms = now_ms + self.config.transaction_check_interval_ms;
        let max = self.store.max_queue_offset(HALF_TOPIC, 0);
        let from = self.transactions.scan_from.max(self.store.min_queue_offset(HALF_TOPIC, 0));
        for offset in from..max.min(from + CHECKS_PER_ROUND_MAX) {
            if self.transactions.is_resolved(offset) {
                continue;
            }
            let got = self.store.get_messages(HALF_TOPIC, 0, offset, 1, u32::MAX, &|_| true);
            let Some(Ok((half, _))) = got.messages.first().map(|raw| decode_message(raw, false)) else {
                // Unreadable: nothing can ever resolve it.
                self.transactions.resolve(offset);
                continue;
            };
            if now_ms.saturating_sub(half.store_timestamp.max(0) as u64) < self.config.transaction_timeout_ms {
                break; // the rest are younger
            }
            let times = self.transactions.checks.get(&offset).copied().unwrap_or(0);
            if times >= self.config.transaction_check_max {
                self.discard(now_ms, &half);
                continue;
            }
            self.transactions.checks.insert(offset, times + 1);
            let group = half.properties.get(prop::PGROUP).cloned().unwrap_or_default();
            let conn = self.clients.live_producer(&group);
            self.event(|| Event::TransactionChecked { half_offset: offset, times: times + 1, asked: conn.is_some() });
            if let Some(conn) = conn {
                let cmd = self.check_request(&half);
                self.outputs.push_back(Output::Transmit { conn, cmd });
            }
        }
    }

    fn check_request(&self, half: &MessageExt) -> RemotingCommand {
        let uniq = half.properties.get(prop::UNIQ_KEY).cloned();
        let h = CheckTransactionStateRequestHeader {
            topic: half.properties.get(prop::REAL_TOPIC).cloned(),
            tran_state_table_offset: half.queue_offset,
            commit_log_offset: half.commit_log_offset,
            msg_id: uniq.clone(),
            transaction_id: uniq,
            offset_msg_id: Some(offset_msg_id(self.store_host, half.commit_log_offset)),
        };
        let mut body = Vec::with_capacity(half.encoded_len());
        // A message read back from the store encodes again.
        let _ = encode_message(half, &mut body);
        RemotingCommand::request_with(RequestCode::CheckTransactionState, 0, &h).with_body(body).oneway()
    }

    /// Gives up on a half message: a copy goes to [`CHECK_MAX_TIME_TOPIC`] (where an operator
    /// can find it), and the op record resolves it.
    fn discard(&mut self, now_ms: u64, half: &MessageExt) {
        let half_offset = half.queue_offset as u64;
        let mut copy = half.clone();
        copy.topic = CHECK_MAX_TIME_TOPIC.into();
        copy.queue_id = 0;
        copy.properties.insert(CHECK_TIMES.into(), self.config.transaction_check_max.to_string());
        let stored =
            self.ensure_topic(now_ms, CHECK_MAX_TIME_TOPIC, 1).and_then(|_| self.put_message(now_ms, &mut copy));
        if stored.and_then(|_| self.write_op(now_ms, half)).is_ok() {
            self.event(|| Event::TransactionDiscarded { half_offset });
        }
    }
}

/// The message a committed half message becomes: its real topic and queue, the prepared bits
/// turned to COMMIT. `None` when its REAL_TOPIC is missing or not a valid name.
fn committed(half: &MessageExt, now_ms: u64) -> Option<MessageExt> {
    let mut m = half.clone();
    let topic = m.properties.remove(prop::REAL_TOPIC)?;
    rmq_proto::names::validate_topic(&topic).ok()?;
    let qid = m.properties.remove(prop::REAL_QID).and_then(|q| q.parse::<i32>().ok()).unwrap_or(0);
    m.properties.insert(PREPARED_QUEUE_OFFSET.into(), half.queue_offset.to_string());
    m.topic = topic;
    m.queue_id = qid;
    m.sys_flag = (m.sys_flag & !sys_flag::TRANSACTION_ROLLBACK) | sys_flag::TRANSACTION_COMMIT;
    m.store_timestamp = now_ms as i64;
    Some(m)
}
