//! [`MessageStore`]: puts, flushes, reads and crash recovery over one CommitLog and its
//! ConsumeQueues.

use std::collections::BTreeMap;

use bytes::Bytes;
use rmq_proto::message::{decode_message, encode_message, prop, MessageExt};

use crate::commitlog::{CommitLog, Slot, END_BLANK_MIN_BYTES};
use crate::consumequeue::{ConsumeQueue, Entry, CONSUMEQUEUE_DIR};
use crate::segment::Directory;
use crate::StoreError;

/// Where the checkpoint lives.
pub const CHECKPOINT_PATH: &str = "checkpoint";
/// Most ConsumeQueue entries examined by one get (filtered-out entries included).
pub const GET_SCAN_ENTRIES_MAX: u64 = 16_000;

/// Store settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreConfig {
    /// mappedFileSizeCommitLog.
    pub commit_log_segment_bytes: u64,
    /// mappedFileSizeConsumeQueue / 20.
    pub consume_queue_segment_entries: u64,
    /// Largest encoded record accepted.
    pub max_message_bytes: usize,
    /// checkCRCOnRecover.
    pub check_crc_on_recover: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            commit_log_segment_bytes: 1 << 30,
            consume_queue_segment_entries: 300_000,
            max_message_bytes: 4 * 1024 * 1024 + 64 * 1024,
            check_crc_on_recover: true,
        }
    }
}

/// Where a put landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PutResult {
    /// Record start in the CommitLog.
    pub commit_log_offset: u64,
    /// Queue offset.
    pub queue_offset: u64,
    /// Record size.
    pub wrote_bytes: u32,
    /// `commit_log_offset + wrote_bytes`: the flush that covers this put.
    pub end_offset: u64,
}

/// Outcome of a get (RocketMQ's GetMessageStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GetStatus {
    /// Messages returned.
    Found,
    /// The queue is empty.
    NoMessageInQueue,
    /// Entries exist but the filter rejected all scanned.
    NoMatchedMessage,
    /// The index points at no readable record.
    OffsetFoundNull,
    /// The offset is the next one to be written.
    OffsetOverflowOne,
    /// The offset is beyond the next one to be written.
    OffsetOverflowBadly,
    /// The offset is below the smallest held.
    OffsetTooSmall,
    /// No such queue.
    NoMatchedLogicQueue,
}

/// The answer to a get.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GetResult {
    /// Status.
    pub status: GetStatus,
    /// Raw stored records.
    pub messages: Vec<Bytes>,
    /// Where the next get should start.
    pub next_begin_offset: u64,
    /// Smallest queue offset held.
    pub min_offset: u64,
    /// Next queue offset to be written.
    pub max_offset: u64,
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RecoveryReport {
    /// The CommitLog end after recovery.
    pub commit_log_end: u64,
    /// Non-zero bytes discarded after the end.
    pub truncated_bytes: u64,
    /// Messages re-indexed into ConsumeQueues.
    pub redispatched: u64,
    /// 1 if the scan stopped at an invalid (torn or corrupt) record rather than zeros.
    pub torn_records: u64,
    /// ConsumeQueues after recovery.
    pub queues: u64,
}

/// One CommitLog and its ConsumeQueues.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageStore<D: Directory> {
    dir: D,
    config: StoreConfig,
    commit_log: CommitLog<D::Seg>,
    queues: BTreeMap<(String, i32), ConsumeQueue<D::Seg>>,
}

fn tag_hash(m: &MessageExt) -> i64 {
    m.properties.get(prop::TAGS).map_or(0, |t| i64::from(rmq_proto::java_string_hash(t)))
}

impl<D: Directory> MessageStore<D> {
    /// Opens the store in `dir` and recovers it.
    pub fn open(mut dir: D, config: StoreConfig) -> Result<(Self, RecoveryReport), StoreError> {
        assert!(config.commit_log_segment_bytes > END_BLANK_MIN_BYTES, "a segment holds at least a blank record");
        let commit_log = CommitLog::load(&mut dir, config.commit_log_segment_bytes)?;
        let mut queues = BTreeMap::new();
        for topic in dir.list(CONSUMEQUEUE_DIR)? {
            for qid in dir.list(&format!("{CONSUMEQUEUE_DIR}/{topic}"))? {
                let Ok(queue_id) = qid.parse::<i32>() else { continue };
                let q = ConsumeQueue::load(&mut dir, &topic, queue_id, config.consume_queue_segment_entries)?;
                queues.insert((topic.clone(), queue_id), q);
            }
        }
        let mut store = MessageStore { dir, config, commit_log, queues };
        let report = store.recover()?;
        store.assert_invariants();
        Ok((store, report))
    }

    fn checkpoint_safe_offset(&self) -> u64 {
        match self.dir.read_file(CHECKPOINT_PATH) {
            Ok(Some(b)) if b.len() >= 40 => u64::from_be_bytes(b[32..40].try_into().expect("8 bytes")),
            _ => 0,
        }
    }

    /// Finds the valid CommitLog prefix, re-indexes it from the last checkpoint, truncates the
    /// rest and every index entry pointing past it.
    fn recover(&mut self) -> Result<RecoveryReport, StoreError> {
        let seg = self.config.commit_log_segment_bytes;
        let min = self.commit_log.min_offset();
        let safe = self.checkpoint_safe_offset().max(min);
        let mut pos = (safe - safe % seg).max(min);
        let mut report = RecoveryReport::default();
        loop {
            match self.commit_log.slot(pos) {
                Slot::Blank(next) if self.commit_log.segment_starts().contains(&next) => pos = next,
                Slot::Record(raw) => {
                    let Ok((m, n)) = decode_message(&Bytes::from(raw), self.config.check_crc_on_recover) else {
                        report.torn_records = 1;
                        break;
                    };
                    if m.commit_log_offset != pos as i64 || m.queue_offset < 0 {
                        report.torn_records = 1;
                        break;
                    }
                    self.index(&m, pos, n as u32)?;
                    report.redispatched += 1;
                    pos += n as u64;
                }
                _ => break,
            }
        }
        report.truncated_bytes = self.commit_log.truncate_to(&mut self.dir, pos)?;
        let keys: Vec<(String, i32)> = self.queues.keys().cloned().collect();
        for key in keys {
            let q = &self.queues[&key];
            let mut n = q.max_offset();
            while n > q.min_offset() && !self.entry_is_valid(q, n - 1, pos) {
                n -= 1;
            }
            self.queues.get_mut(&key).expect("key listed above").truncate(n)?;
        }
        report.commit_log_end = pos;
        report.queues = self.queues.len() as u64;
        self.checkpoint()?;
        Ok(report)
    }

    /// An index entry is valid when it points below `end` at a record of its own queue and
    /// queue offset (stale entries from before a crash point elsewhere).
    fn entry_is_valid(&self, q: &ConsumeQueue<D::Seg>, n: u64, end: u64) -> bool {
        let Some(e) = q.entry(n) else { return false };
        if e.commit_log_offset + u64::from(e.size) > end {
            return false;
        }
        match self.commit_log.slot(e.commit_log_offset) {
            Slot::Record(raw) if raw.len() == e.size as usize => decode_message(&Bytes::from(raw), false)
                .is_ok_and(|(m, _)| m.topic == q.topic() && m.queue_id == q.queue_id() && m.queue_offset == n as i64),
            _ => false,
        }
    }

    fn index(&mut self, m: &MessageExt, commit_log_offset: u64, size: u32) -> Result<(), StoreError> {
        let key = (m.topic.clone(), m.queue_id);
        let entries = self.config.consume_queue_segment_entries;
        let q = self.queues.entry(key).or_insert_with(|| ConsumeQueue::new(&m.topic, m.queue_id, entries));
        q.put(&mut self.dir, m.queue_offset as u64, Entry { commit_log_offset, size, tag_hash: tag_hash(m) })
    }

    /// Appends a message: assigns its queue offset and CommitLog offset, writes the record and
    /// indexes it.
    pub fn put(&mut self, msg: &mut MessageExt) -> Result<PutResult, StoreError> {
        let queue_offset = self.max_queue_offset(&msg.topic, msg.queue_id);
        msg.queue_offset = queue_offset as i64;
        let len = msg.encoded_len();
        let limit =
            self.config.max_message_bytes.min((self.config.commit_log_segment_bytes - END_BLANK_MIN_BYTES) as usize);
        if len > limit {
            return Err(StoreError::MessageTooLarge { size_bytes: len, max_bytes: limit });
        }
        let offset = self.commit_log.reserve(&mut self.dir, len as u64)?;
        msg.commit_log_offset = offset as i64;
        let mut record = Vec::with_capacity(len);
        encode_message(msg, &mut record).map_err(StoreError::Encode)?;
        debug_assert_eq!(record.len(), len, "encoded_len agrees with encode_message");
        self.commit_log.append_at(offset, &record)?;
        self.index(msg, offset, len as u32)?;
        Ok(PutResult {
            commit_log_offset: offset,
            queue_offset,
            wrote_bytes: len as u32,
            end_offset: offset + len as u64,
        })
    }

    /// Next CommitLog write position.
    pub fn commit_log_max_offset(&self) -> u64 {
        self.commit_log.write_offset()
    }

    /// CommitLog position covered by the last flush.
    pub fn commit_log_flushed_offset(&self) -> u64 {
        self.commit_log.flushed_offset()
    }

    /// Flushes the CommitLog; returns the flushed offset. This is the flush that acknowledges
    /// SYNC_FLUSH sends: ConsumeQueues are rebuilt from the CommitLog by recovery, so they are
    /// flushed on their own cadence by [`Self::checkpoint`].
    pub fn flush(&mut self) -> Result<u64, StoreError> {
        self.commit_log.flush()
    }

    /// Starts a CommitLog flush that runs elsewhere: returns the offset it will make durable and
    /// the jobs to run (possibly none). After running them, call [`Self::complete_flush`].
    pub fn begin_flush(&mut self) -> Result<(u64, Vec<crate::segment::FlushJob>), StoreError> {
        self.commit_log.begin_flush()
    }

    /// Records a completed [`Self::begin_flush`].
    pub fn complete_flush(&mut self, offset: u64) {
        self.commit_log.mark_flushed(offset);
    }

    /// Flushes the ConsumeQueues and records, in the checkpoint, the CommitLog offset up to which
    /// CommitLog and indexes are both durable; recovery re-indexes from there. Call about once
    /// a second (RocketMQ's flushIntervalConsumeQueue) and at shutdown.
    pub fn checkpoint(&mut self) -> Result<u64, StoreError> {
        let flushed = self.commit_log.flush()?;
        for q in self.queues.values_mut() {
            q.flush()?;
        }
        let mut ck = vec![0u8; 4096];
        ck[32..40].copy_from_slice(&flushed.to_be_bytes());
        self.dir.write_file(CHECKPOINT_PATH, &ck)?;
        Ok(flushed)
    }

    /// Reads up to `max_msgs` records (and about `max_bytes`) from `queue_offset`, skipping
    /// entries whose tag hash `filter` rejects.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        queue_offset: u64,
        max_msgs: u32,
        max_bytes: u32,
        filter: &dyn Fn(i64) -> bool,
    ) -> GetResult {
        let Some(q) = self.queues.get(&(topic.to_string(), queue_id)) else {
            return GetResult {
                status: GetStatus::NoMatchedLogicQueue,
                messages: Vec::new(),
                next_begin_offset: 0,
                min_offset: 0,
                max_offset: 0,
            };
        };
        let (min, max) = (q.min_offset(), q.max_offset());
        let result = |status, next| GetResult {
            status,
            messages: Vec::new(),
            next_begin_offset: next,
            min_offset: min,
            max_offset: max,
        };
        if max == 0 {
            return result(GetStatus::NoMessageInQueue, 0);
        }
        if queue_offset < min {
            return result(GetStatus::OffsetTooSmall, min);
        }
        if queue_offset == max {
            return result(GetStatus::OffsetOverflowOne, queue_offset);
        }
        if queue_offset > max {
            return result(GetStatus::OffsetOverflowBadly, max);
        }
        let mut messages = Vec::new();
        let mut bytes = 0u64;
        let mut n = queue_offset;
        let scan_end = max.min(queue_offset + GET_SCAN_ENTRIES_MAX);
        while n < scan_end && messages.len() < max_msgs as usize {
            let Some(e) = q.entry(n) else { break };
            if !filter(e.tag_hash) {
                n += 1;
                continue;
            }
            if !messages.is_empty() && bytes + u64::from(e.size) > u64::from(max_bytes) {
                break;
            }
            match self.commit_log.read(e.commit_log_offset, e.size as usize) {
                Ok(raw) => {
                    bytes += u64::from(e.size);
                    messages.push(Bytes::from(raw));
                    n += 1;
                }
                Err(_) => break,
            }
        }
        let status = if !messages.is_empty() {
            GetStatus::Found
        } else if n > queue_offset {
            GetStatus::NoMatchedMessage
        } else {
            GetStatus::OffsetFoundNull
        };
        let next = if status == GetStatus::OffsetFoundNull { queue_offset + 1 } else { n };
        GetResult { status, messages, next_begin_offset: next, min_offset: min, max_offset: max }
    }

    /// Smallest queue offset held.
    pub fn min_queue_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.queues.get(&(topic.to_string(), queue_id)).map_or(0, |q| q.min_offset())
    }

    /// Next queue offset to be written.
    pub fn max_queue_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.queues.get(&(topic.to_string(), queue_id)).map_or(0, |q| q.max_offset())
    }

    /// The message stored at a CommitLog offset (CRC checked).
    pub fn read_message(&self, commit_log_offset: u64) -> Result<MessageExt, StoreError> {
        if commit_log_offset >= self.commit_log.write_offset() {
            return Err(StoreError::NotFound { offset: commit_log_offset, reason: "beyond the CommitLog end".into() });
        }
        match self.commit_log.slot(commit_log_offset) {
            Slot::Record(raw) => decode_message(&Bytes::from(raw), true)
                .map(|(m, _)| m)
                .map_err(|e| StoreError::NotFound { offset: commit_log_offset, reason: e.to_string() }),
            _ => Err(StoreError::NotFound { offset: commit_log_offset, reason: "no record starts here".into() }),
        }
    }

    /// The first queue offset whose store timestamp is at or after `timestamp_ms`.
    pub fn queue_offset_by_time(&self, topic: &str, queue_id: i32, timestamp_ms: i64) -> u64 {
        let Some(q) = self.queues.get(&(topic.to_string(), queue_id)) else { return 0 };
        let store_time = |n: u64| -> Option<i64> {
            let e = q.entry(n)?;
            self.read_message(e.commit_log_offset).ok().map(|m| m.store_timestamp)
        };
        let (mut lo, mut hi) = (q.min_offset(), q.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match store_time(mid) {
                Some(t) if t < timestamp_ms => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// Every (topic, queue) with an index, sorted.
    pub fn queues(&self) -> Vec<(String, i32)> {
        self.queues.keys().cloned().collect()
    }

    /// The directory (config files live beside the data).
    pub fn directory(&self) -> &D {
        &self.dir
    }

    /// Mutable directory access.
    pub fn directory_mut(&mut self) -> &mut D {
        &mut self.dir
    }

    /// Checks positions and indexes agree.
    pub fn assert_invariants(&self) {
        let end = self.commit_log.write_offset();
        assert!(self.commit_log.flushed_offset() <= end, "flushed beyond the write position");
        for q in self.queues.values() {
            assert!(q.min_offset() <= q.max_offset(), "queue bounds inverted");
            if let Some(e) = q.max_offset().checked_sub(1).filter(|n| *n >= q.min_offset()).and_then(|n| q.entry(n)) {
                assert!(e.commit_log_offset + u64::from(e.size) <= end, "index entry points past the CommitLog end");
            }
        }
    }
}

#[cfg(test)]
mod tests;
