//! Crash recovery, run by [`MessageStore::open`].
//!
//! 1. Scan the CommitLog from the start of the segment holding the checkpoint's
//!    confirmPhyOffset (the first segment without a checkpoint), validating each record's
//!    size, magic, position and (if configured) body CRC. The first zero or invalid record is
//!    the end. Each valid record is re-indexed at its own QUEUEOFFSET (idempotent).
//!    Each record's QUEUEOFFSET must continue its queue (the previous one plus 1; for the
//!    first record of a queue in the scan, right after the index's entries): the body CRC does
//!    not cover the header, so a torn write can leave a decodable record with a wrong offset.
//! 2. If a queue's first record in the scan has no index entry just before it, that queue's
//!    index lags the checkpoint (lost or damaged files): scan again from the first segment,
//!    where such a record ends the log instead.
//! 3. Zero the CommitLog after the end and drop later segments; flush what was scanned.
//! 4. Cut each ConsumeQueue after its last entry that points below the end at a record of its
//!    own (topic, queue, offset): new puts continue densely.
//! 5. Flush the indexes and write a fresh checkpoint.

use std::collections::BTreeMap;

use bytes::Bytes;
use rmq_proto::message::{decode_message, MessageExt};

use super::{check_topic, tag_hash, MessageStore, RecoveryReport};
use crate::commitlog::Slot;
use crate::consumequeue::{ConsumeQueue, Entry};
use crate::segment::Directory;
use crate::StoreError;

/// What one CommitLog scan found.
#[derive(Debug, Default)]
struct Scan {
    /// Where the valid prefix ends.
    end_offset: u64,
    /// Records re-indexed.
    redispatched: u64,
    /// Stopped at an invalid record rather than zeros or the last segment's end.
    torn: bool,
    /// A queue's index lagged the scan start (the scan stopped early when asked to check).
    lagging: bool,
    /// Store time of the last valid record, if any.
    last_store_timestamp_ms: Option<i64>,
}

/// How a record's queue offset fits the queue as recovered so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fits {
    /// The next offset of its queue.
    Yes,
    /// The index lacks the record's predecessor: the index lags the scan start.
    Lagging,
    /// The offset repeats or skips one: the record's header is damaged.
    Torn,
}

impl<D: Directory> MessageStore<D> {
    pub(super) fn recover(&mut self) -> Result<RecoveryReport, StoreError> {
        let start = self.scan_start();
        let mut scan_start_offset = start;
        let mut scan = self.redispatch_from(start, true)?;
        if scan.lagging {
            scan_start_offset = self.commit_log.min_offset();
            scan = self.redispatch_from(scan_start_offset, false)?;
        }
        let end = scan.end_offset;
        let truncated_bytes = self.commit_log.truncate_to(&mut self.dir, start, end)?;
        self.truncate_queues(end)?;
        if let Some(t) = scan.last_store_timestamp_ms {
            (self.last_store_timestamp_ms, self.flushed_store_timestamp_ms) = (t, t);
        }
        // A broker must start on a full disk and serve reads: a checkpoint that cannot be
        // written is deferred (the old one only makes the next recovery scan further).
        let checkpoint_deferred = match self.checkpoint() {
            Ok(confirmed) => {
                assert_eq!(confirmed, end, "recovery leaves everything up to the end durable");
                false
            }
            Err(StoreError::DiskFull { .. }) => true,
            Err(e) => return Err(e),
        };
        Ok(RecoveryReport {
            commit_log_end: end,
            truncated_bytes,
            redispatched: scan.redispatched,
            torn_records: u64::from(scan.torn),
            queues: self.queues.len() as u64,
            scan_start_offset,
            checkpoint_deferred,
            fresh: false,
            reindexed: 0,
        })
    }

    /// The start of the segment holding the checkpoint's safe offset, within the segments held.
    fn scan_start(&self) -> u64 {
        let Some(last) = self.commit_log.last_segment_start() else {
            return self.commit_log.min_offset();
        };
        let safe = self.checkpoint.confirm_phy_offset;
        self.commit_log.segment_start_of(safe).clamp(self.commit_log.min_offset(), last)
    }

    /// Walks valid records from `start`, re-indexing each. With `check_lag`, returns early
    /// (marked lagging) at the first record whose queue's index lacks its predecessor.
    fn redispatch_from(&mut self, start: u64, check_lag: bool) -> Result<Scan, StoreError> {
        let mut scan = Scan { end_offset: start, ..Scan::default() };
        let mut last_queue_offsets: BTreeMap<(String, i32), u64> = BTreeMap::new();
        loop {
            let pos = scan.end_offset;
            let (msg, len) = match self.commit_log.slot(pos) {
                Slot::Blank { next_offset } => {
                    scan.end_offset = next_offset;
                    continue;
                }
                Slot::Zero | Slot::Beyond => break,
                Slot::Invalid => {
                    scan.torn = true;
                    break;
                }
                Slot::Record(raw) => match self.valid_record(raw, pos) {
                    Some(valid) => valid,
                    None => {
                        scan.torn = true;
                        break;
                    }
                },
            };
            let key = (msg.topic.clone(), msg.queue_id);
            let n = msg.queue_offset as u64;
            let fits = match last_queue_offsets.get(&key) {
                Some(prev) if n == prev + 1 => Fits::Yes,
                Some(_) => Fits::Torn,
                None => self.first_of_queue_fits(&msg, pos),
            };
            match fits {
                Fits::Yes => {}
                Fits::Lagging if check_lag => {
                    scan.lagging = true;
                    break;
                }
                Fits::Lagging | Fits::Torn => {
                    scan.torn = true;
                    break;
                }
            }
            last_queue_offsets.insert(key, n);
            self.redispatch(&msg, pos, len)?;
            scan.redispatched += 1;
            scan.last_store_timestamp_ms = Some(msg.store_timestamp);
            scan.end_offset = pos + len;
        }
        Ok(scan)
    }

    /// Decodes a record found at `pos`; `None` if it is not one this store appended there.
    fn valid_record(&self, raw: Vec<u8>, pos: u64) -> Option<(MessageExt, u64)> {
        let (msg, len) = decode_message(&Bytes::from(raw), self.config.check_crc_on_recover).ok()?;
        let sound = msg.commit_log_offset == pos as i64 && msg.queue_offset >= 0 && check_topic(&msg.topic).is_ok();
        sound.then_some((msg, len as u64))
    }

    /// Whether `msg`, the first record of its queue in this scan, continues that queue's index:
    /// no earlier record holds its queue offset, and its predecessor's entry (which lies before
    /// the scan) is in place. The body CRC does not cover the header, so a torn write can leave
    /// a record whose QUEUEOFFSET is wrong but which otherwise decodes.
    fn first_of_queue_fits(&self, msg: &MessageExt, pos: u64) -> Fits {
        let n = msg.queue_offset as u64;
        let Some(q) = self.queue(&msg.topic, msg.queue_id) else {
            return if n == 0 { Fits::Yes } else { Fits::Lagging };
        };
        if self.entry_is_valid(q, n, pos) {
            return Fits::Torn; // An earlier record already holds queue offset n.
        }
        let predecessor_known = n == 0 || n - 1 < q.min_offset() || self.entry_is_valid(q, n - 1, pos);
        if predecessor_known {
            Fits::Yes
        } else {
            Fits::Lagging
        }
    }

    /// Writes the index entry of the record at `pos` (idempotent).
    pub(super) fn redispatch(&mut self, msg: &MessageExt, pos: u64, len: u64) -> Result<(), StoreError> {
        let entries = self.config.consume_queue_segment_entries;
        let q = self
            .queues
            .get_or_insert_with(&msg.topic, msg.queue_id, || ConsumeQueue::new(&msg.topic, msg.queue_id, entries));
        let n = msg.queue_offset as u64;
        if n < q.first_slot() && q.min_offset() != q.max_offset() {
            return Ok(()); // Below the index's retained files: nothing to restore.
        }
        let entry = Entry { commit_log_offset: pos, size: len as u32, tag_hash: tag_hash(msg) };
        q.write_entry(&mut self.dir, n, entry)
    }

    /// Cuts every queue after its last entry valid against a CommitLog ending at `end`.
    pub(super) fn truncate_queues(&mut self, end: u64) -> Result<(), StoreError> {
        let mut cuts = Vec::new();
        for ((topic, queue_id), q) in self.queues.iter() {
            let mut n = q.max_offset();
            while n > q.min_offset() && !self.entry_is_valid(q, n - 1, end) {
                n -= 1;
            }
            cuts.push((topic.to_string(), queue_id, n));
        }
        for (topic, queue_id, n) in cuts {
            self.queues.get_mut(&topic, queue_id).expect("key listed above").truncate(n)?;
        }
        Ok(())
    }

    /// An entry is valid when it points below `end` at a record of its own queue and queue
    /// offset: stale entries from before a crash point at nothing, or at other records.
    fn entry_is_valid(&self, q: &ConsumeQueue<D::Seg>, n: u64, end: u64) -> bool {
        let Some(e) = q.entry(n) else { return false };
        if e.end_offset() > end {
            return false;
        }
        match self.commit_log.slot(e.commit_log_offset) {
            Slot::Record(raw) if raw.len() == e.size as usize => {
                decode_message(&Bytes::from(raw), false).is_ok_and(|(m, _)| {
                    m.topic == q.topic()
                        && m.queue_id == q.queue_id()
                        && m.queue_offset == n as i64
                        && m.commit_log_offset == e.commit_log_offset as i64
                })
            }
            _ => false,
        }
    }
}
