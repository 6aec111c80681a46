//! [`MessageStore`]: puts, flushes, reads and crash recovery over one CommitLog and its
//! ConsumeQueues.

use bytes::Bytes;
use rmq_proto::message::{decode_message, encode_message, prop, MessageError, MessageExt, MAGIC_BLANK};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CHECKPOINT_PATH};
use crate::commitlog::{CommitLog, Slot, END_BLANK_MIN_BYTES};
use crate::consumequeue::{ConsumeQueue, Entry, CONSUMEQUEUE_DIR};
use crate::index::{Index, IndexConfig};
use crate::segment::{Directory, FlushJob};
use crate::StoreError;

mod get;
mod queues;
mod recovery;
mod replica;

use queues::QueueMap;

/// Smallest CommitLog segment accepted: room for a few records.
pub const COMMIT_LOG_SEGMENT_MIN_BYTES: u64 = 1024;
/// Largest CommitLog segment: the BLANK record's TOTALSIZE (an i32) must span any remainder.
pub const COMMIT_LOG_SEGMENT_MAX_BYTES: u64 = i32::MAX as u64;
/// Most entries in one ConsumeQueue file (1 GB files).
pub const CONSUME_QUEUE_SEGMENT_ENTRIES_MAX: u64 = 50_000_000;
/// ConsumeQueue entries below which a routine checkpoint leaves a queue for later: two pages
/// (RocketMQ's flushConsumeQueueLeastPages).
pub const CHECKPOINT_LEAST_ENTRIES: u64 = 2 * crate::segment::PAGE_BYTES / crate::consumequeue::ENTRY_BYTES;
/// Longest topic accepted as a directory name (a file-name limit, not a naming policy).
pub const TOPIC_MAX_BYTES: usize = 255;

/// Store settings (RocketMQ's MessageStoreConfig, the part this store uses).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// mappedFileSizeCommitLog: bytes per CommitLog file.
    pub commit_log_segment_bytes: u64,
    /// mappedFileSizeConsumeQueue / 20: entries per ConsumeQueue file.
    pub consume_queue_segment_entries: u64,
    /// Largest encoded record accepted (maxMessageSize plus header room).
    pub max_message_bytes: usize,
    /// checkCRCOnRecover: validate body CRCs while recovering.
    pub check_crc_on_recover: bool,
    /// messageIndexEnable with maxHashSlotNum and maxIndexNum: the key index behind queries by
    /// key and unique key; `None`: no index (queries by key are refused).
    pub index: Option<IndexConfig>,
    /// warmMapedFileEnable: once the CommitLog's last segment is half full, the periodic
    /// checkpoint also prepares the next one ([`Directory::prepare_log_segment`]: zero-filled
    /// ahead of time, so appends to it need no extent conversion at each flush).
    pub warm_log_segments: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            commit_log_segment_bytes: 1 << 30,
            consume_queue_segment_entries: 300_000,
            max_message_bytes: 4 * 1024 * 1024 + 64 * 1024,
            check_crc_on_recover: true,
            index: None,
            warm_log_segments: false,
        }
    }
}

impl StoreConfig {
    /// Refuses settings the store cannot work with.
    pub fn validate(&self) -> Result<(), StoreError> {
        let reason = if self.commit_log_segment_bytes < COMMIT_LOG_SEGMENT_MIN_BYTES {
            "commit_log_segment_bytes is below 1024"
        } else if self.commit_log_segment_bytes > COMMIT_LOG_SEGMENT_MAX_BYTES {
            "commit_log_segment_bytes exceeds i32::MAX (a BLANK record could not span the remainder)"
        } else if !(1..=CONSUME_QUEUE_SEGMENT_ENTRIES_MAX).contains(&self.consume_queue_segment_entries) {
            "consume_queue_segment_entries must be in 1..=50_000_000"
        } else if self.max_message_bytes == 0 {
            "max_message_bytes is 0"
        } else if let Some(why) = self.index.and_then(|i| i.invalid()) {
            why
        } else {
            return Ok(());
        };
        Err(StoreError::InvalidConfig { reason })
    }
}

/// Where a put landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PutResult {
    /// Record start in the CommitLog.
    pub commit_log_offset: u64,
    /// Queue offset in the message's ConsumeQueue.
    pub queue_offset: u64,
    /// Record size.
    pub wrote_bytes: u32,
    /// `commit_log_offset + wrote_bytes`: a flush reaching this makes the put durable.
    pub end_offset: u64,
}

/// Outcome of a get (RocketMQ's GetMessageStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GetStatus {
    /// Messages returned.
    Found,
    /// The queue has never held a message (its max offset is 0).
    NoMessageInQueue,
    /// Entries exist but the filter rejected every one scanned.
    NoMatchedMessage,
    /// No index entry at the requested offset (a hole).
    OffsetFoundNull,
    /// The offset is the next one to be written: nothing new yet.
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
    /// What happened.
    pub status: GetStatus,
    /// Raw stored records, ready to concatenate into a pull body.
    pub messages: Vec<Bytes>,
    /// Where the consumer should continue.
    pub next_begin_offset: u64,
    /// Smallest queue offset held.
    pub min_offset: u64,
    /// Next queue offset to be written.
    pub max_offset: u64,
}

/// What one retention pass ([`MessageStore::delete_expired_files`]) deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Cleaned {
    /// CommitLog segments deleted.
    pub commit_log_segments: u32,
    /// ConsumeQueue files deleted.
    pub queue_segments: u32,
    /// Index files deleted.
    pub index_files: u32,
    /// The smallest CommitLog offset held afterwards.
    pub commit_log_min_offset: u64,
}

/// A checkpoint in progress ([`MessageStore::begin_checkpoint`]): run `jobs`, then complete it
/// with the recorded offsets.
#[derive(Debug)]
pub struct PendingCheckpoint {
    /// The CommitLog offset the checkpoint will record.
    pub commit_log_offset: u64,
    /// Per ConsumeQueue, the queue offset its jobs make durable.
    pub queue_offsets: Vec<((String, i32), u64)>,
    /// Detached flush work (empty when every segment flushed in place).
    pub jobs: Vec<FlushJob>,
}

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct RecoveryReport {
    /// The CommitLog write position after recovery.
    pub commit_log_end: u64,
    /// Non-zero bytes discarded after the end (a torn tail, stale later segments).
    pub truncated_bytes: u64,
    /// Messages re-indexed into ConsumeQueues from the scan start.
    pub redispatched: u64,
    /// 1 if the scan stopped at an invalid (torn or corrupt) record rather than at zeros.
    pub torn_records: u64,
    /// ConsumeQueues after recovery.
    pub queues: u64,
    /// Where the CommitLog scan started: the checkpoint's segment, or the first segment when
    /// there is no checkpoint or a ConsumeQueue lagged behind it.
    pub scan_start_offset: u64,
    /// The disk was too full to write the new checkpoint: everything recovered is flushed,
    /// and the previous checkpoint (older, so safe) stays until a later one can be written.
    pub checkpoint_deferred: bool,
    /// Records indexed by key after recovery (the index lagged the log's end).
    pub reindexed: u64,
    /// The directory held no CommitLog segment at all: a new store, or a lost disk (a crash,
    /// however early, leaves the segment file it wrote into).
    pub fresh: bool,
}

/// One CommitLog and its ConsumeQueues. Single-threaded; see the crate docs for the calling
/// contract.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageStore<D: Directory> {
    /// Where every segment and small file lives.
    dir: D,
    /// Settings, fixed at open.
    config: StoreConfig,
    /// The shared log.
    commit_log: CommitLog<D::Seg>,
    /// Indexes by (topic, queue id).
    queues: QueueMap<ConsumeQueue<D::Seg>>,
    /// Store timestamp of the last message appended.
    last_store_timestamp_ms: i64,
    /// Store timestamp of the last message known flushed (the checkpoint's physicMsgTimestamp).
    flushed_store_timestamp_ms: i64,
    /// The detached flush in progress: (target offset, store timestamp of its last message).
    flush_mark: Option<(u64, i64)>,
    /// The checkpoint as last written (or read at open).
    checkpoint: Checkpoint,
    /// The key index, when enabled.
    index: Option<Index<D::Seg>>,
    /// Why the last message could not be indexed, if it could not (the put itself stands).
    index_error: Option<String>,
    /// Replicated CommitLog bytes below this are indexed (a slave's dispatcher position; on a
    /// master it follows the write position).
    reput_offset: u64,
    /// Start of the last CommitLog segment prepared ahead (`warm_log_segments`), if any.
    prepared_log_segment: Option<u64>,
}

/// The tag hash of a ConsumeQueue entry: Java `String.hashCode` of TAGS, widened; 0 if none.
pub fn tag_hash(msg: &MessageExt) -> i64 {
    msg.properties.get(prop::TAGS).map_or(0, |tags| i64::from(rmq_proto::java_string_hash(tags)))
}

/// Refuses topics that cannot be a single directory name.
fn check_topic(topic: &str) -> Result<(), StoreError> {
    let bad = topic.is_empty()
        || topic == "."
        || topic == ".."
        || topic.len() > TOPIC_MAX_BYTES
        || topic.contains(['/', '\\', '\0']);
    if bad {
        return Err(StoreError::InvalidTopic { topic: topic.to_string() });
    }
    Ok(())
}

impl<D: Directory> MessageStore<D> {
    /// Opens the store in `dir` and recovers it: finds the valid CommitLog prefix, re-indexes
    /// it from the checkpoint, truncates everything after it.
    pub fn open(mut dir: D, config: StoreConfig) -> Result<(Self, RecoveryReport), StoreError> {
        config.validate()?;
        let commit_log = CommitLog::load(&mut dir, config.commit_log_segment_bytes)?;
        let fresh = commit_log.last_segment_start().is_none();
        let mut queues = QueueMap::default();
        for topic in dir.list(CONSUMEQUEUE_DIR)? {
            if check_topic(&topic).is_err() {
                continue;
            }
            for name in dir.list(&format!("{CONSUMEQUEUE_DIR}/{topic}"))? {
                let Ok(queue_id) = name.parse::<i32>() else {
                    continue;
                };
                let q = ConsumeQueue::load(&mut dir, &topic, queue_id, config.consume_queue_segment_entries)?;
                queues.get_or_insert_with(&topic, queue_id, move || q);
            }
        }
        // Retention deletes whole CommitLog segments before the ConsumeQueue files that
        // point into them: entries below the log's start are gone, not lost.
        for q in queues.values_mut() {
            q.correct_min_offset(commit_log.min_offset());
        }
        let index = match config.index {
            Some(c) => Some(Index::load(&mut dir, c)?),
            None => None,
        };
        let checkpoint = dir.read_file(CHECKPOINT_PATH)?.and_then(|b| Checkpoint::decode(&b)).unwrap_or_default();
        let mut store = MessageStore {
            dir,
            config,
            commit_log,
            queues,
            last_store_timestamp_ms: checkpoint.physic_msg_timestamp_ms,
            flushed_store_timestamp_ms: checkpoint.physic_msg_timestamp_ms,
            flush_mark: None,
            checkpoint,
            index,
            index_error: None,
            reput_offset: 0,
            prepared_log_segment: None,
        };
        let mut report = store.recover()?;
        report.reindexed = store.catch_up_index()?;
        report.fresh = fresh;
        store.reput_offset = store.commit_log.write_offset();
        store.assert_invariants();
        Ok((store, report))
    }

    /// The settings the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Largest record a put accepts: the configured limit, and what a segment can hold.
    fn record_max_bytes(&self) -> usize {
        let segment_room = self.config.commit_log_segment_bytes - END_BLANK_MIN_BYTES;
        self.config.max_message_bytes.min(usize::try_from(segment_room).unwrap_or(usize::MAX))
    }

    /// Appends one message. Sets `msg.queue_offset` (the next offset of its ConsumeQueue) and
    /// `msg.commit_log_offset`, encodes and writes the record, and indexes it at once. The
    /// record is durable only once a flush covers [`PutResult::end_offset`]. On error nothing
    /// was stored (the two fields of `msg` may have been set).
    pub fn put(&mut self, msg: &mut MessageExt) -> Result<PutResult, StoreError> {
        check_topic(&msg.topic)?;
        // One name lookup per put: with 10,000 topics each is a few cache misses.
        let found = self.queues.locate(&msg.topic, msg.queue_id);
        let queue_offset = found.map_or(0, |at| self.queues.at(at).max_offset());
        msg.queue_offset = i64::try_from(queue_offset).expect("queue offsets stay below i64::MAX");
        let record = self.encode_for_append(msg)?;
        let len = record.len() as u64;
        // A queue is made only for a record that encoded (no empty queue for a refused put).
        let at = match found {
            Some(at) => at,
            None => {
                let entries = self.config.consume_queue_segment_entries;
                self.queues.insert(&msg.topic, msg.queue_id, ConsumeQueue::new(&msg.topic, msg.queue_id, entries))
            }
        };
        let queue = self.queues.at_mut(at);
        // Open the index file first: once the record is in the log, indexing must not fail.
        queue.reserve(&mut self.dir, queue_offset)?;
        let commit_log_offset = self.commit_log.append(&mut self.dir, &record)?;
        assert_eq!(commit_log_offset as i64, msg.commit_log_offset, "the record lands where it was encoded for");
        let entry = Entry { commit_log_offset, size: len as u32, tag_hash: tag_hash(msg) };
        if let Err(e) = queue.append(&mut self.dir, queue_offset, entry) {
            self.commit_log.rewind(commit_log_offset)?;
            return Err(e);
        }
        self.last_store_timestamp_ms = msg.store_timestamp;
        self.reput_offset = self.commit_log.write_offset();
        self.index_message(msg, commit_log_offset);
        Ok(PutResult { commit_log_offset, queue_offset, wrote_bytes: len as u32, end_offset: commit_log_offset + len })
    }

    /// Encodes `msg` for the CommitLog position it will land at (which depends on its length:
    /// a record that does not fit goes to the next segment). Checks the size limits.
    fn encode_for_append(&self, msg: &mut MessageExt) -> Result<Vec<u8>, StoreError> {
        let max_bytes = self.record_max_bytes();
        // A cheap early refusal; the encoded length below is authoritative.
        if msg.body.len() > max_bytes {
            return Err(StoreError::MessageTooLarge { size_bytes: msg.body.len(), max_bytes });
        }
        let mut record = Vec::with_capacity(msg.encoded_len());
        msg.commit_log_offset = self.commit_log.write_offset() as i64;
        encode_message(msg, &mut record).map_err(StoreError::Encode)?;
        if record.len() > max_bytes {
            return Err(StoreError::MessageTooLarge { size_bytes: record.len(), max_bytes });
        }
        let offset = self.commit_log.next_record_offset(record.len() as u64);
        if offset as i64 != msg.commit_log_offset {
            msg.commit_log_offset = offset as i64;
            record.clear();
            encode_message(msg, &mut record).map_err(StoreError::Encode)?;
        }
        Ok(record)
    }

    /// The CommitLog write position.
    pub fn commit_log_max_offset(&self) -> u64 {
        self.commit_log.write_offset()
    }

    /// CommitLog bytes below this are in the ConsumeQueues (a slave's dispatcher position; on
    /// a master it follows the write position).
    pub fn reput_offset(&self) -> u64 {
        self.reput_offset
    }

    /// The smallest CommitLog offset held.
    pub fn commit_log_min_offset(&self) -> u64 {
        self.commit_log.min_offset()
    }

    /// Hands records staged in memory to the CommitLog's files (the page cache), where they
    /// survive a process crash: the broker calls this before anything it answers leaves (see
    /// [`crate::segment::Segment::commit`]). Cheap when nothing is staged. On an error the
    /// records stay staged and readable, and the next commit tries again.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.commit_log.commit()
    }

    /// The durable CommitLog position: set by [`Self::flush`], or reported through
    /// [`Self::complete_flush`].
    pub fn commit_log_flushed_offset(&self) -> u64 {
        self.commit_log.flushed_offset()
    }

    /// Flushes the CommitLog `[flushed, max)` in place and returns the new flushed offset. This
    /// is the flush that makes puts durable (and acknowledges SYNC_FLUSH sends). ConsumeQueues
    /// are rebuilt from the CommitLog by recovery, so they are flushed on their own cadence by
    /// [`Self::checkpoint`]. Blocks for the msyncs.
    pub fn flush(&mut self) -> Result<u64, StoreError> {
        let flushed = self.commit_log.flush()?;
        self.flushed_store_timestamp_ms = self.last_store_timestamp_ms;
        self.flush_mark = None;
        Ok(flushed)
    }

    /// [`Self::flush`] without blocking: returns the target offset and the jobs to run
    /// (anywhere). After every job succeeded, report the target with [`Self::complete_flush`];
    /// if one failed, report nothing (the next flush covers the range again). Segments that
    /// cannot detach flush in place here and yield no job.
    pub fn begin_flush(&mut self) -> Result<(u64, Vec<FlushJob>), StoreError> {
        let (target, jobs) = self.commit_log.begin_flush()?;
        self.flush_mark = Some((target, self.last_store_timestamp_ms));
        Ok((target, jobs))
    }

    /// The driver reports that everything below `commit_log_offset` is durable (the jobs of a
    /// [`Self::begin_flush`] ran). Never beyond the write position.
    pub fn complete_flush(&mut self, commit_log_offset: u64) {
        self.commit_log.complete_flush(commit_log_offset);
        if let Some((target, store_timestamp_ms)) = self.flush_mark {
            if commit_log_offset >= target {
                self.flushed_store_timestamp_ms = store_timestamp_ms;
                self.flush_mark = None;
            }
        }
    }

    /// Flushes in place the CommitLog, then every ConsumeQueue, then writes the checkpoint at
    /// the flushed CommitLog offset, which it returns. Recovery re-indexes from the checkpoint,
    /// so this bounds recovery work: call it about once a second (RocketMQ's
    /// flushIntervalConsumeQueue) and at shutdown.
    pub fn checkpoint(&mut self) -> Result<u64, StoreError> {
        let flushed = self.flush()?;
        for queue in self.queues.values_mut() {
            queue.flush()?;
        }
        if let Some(index) = &mut self.index {
            index.flush()?;
        }
        self.write_checkpoint(flushed)?;
        Ok(flushed)
    }

    /// [`Self::checkpoint`] without blocking: flush jobs for the CommitLog and for every
    /// ConsumeQueue with at least [`CHECKPOINT_LEAST_ENTRIES`] new entries (every changed queue
    /// when `thorough`, RocketMQ's periodic thorough flush). The recorded offset stops below the
    /// first entry a skipped queue leaves unflushed, so recovery re-indexes whatever that queue
    /// could lose. Run the jobs anywhere; if all succeeded, pass the pending checkpoint's
    /// offsets to [`Self::complete_checkpoint`], else drop it.
    pub fn begin_checkpoint(&mut self, thorough: bool) -> Result<PendingCheckpoint, StoreError> {
        let (mut commit_log_offset, mut jobs) = self.begin_flush()?;
        let mut queue_offsets = Vec::with_capacity(self.queues.len());
        for ((topic, queue_id), queue) in self.queues.iter_mut() {
            let (queue_offset, more) = if thorough || queue.unflushed_entries() >= CHECKPOINT_LEAST_ENTRIES {
                queue.begin_flush()?
            } else {
                (queue.flushed_offset(), Vec::new())
            };
            if let Some(first_unflushed) = queue.entry(queue_offset).filter(|_| queue_offset < queue.max_offset()) {
                commit_log_offset = commit_log_offset.min(first_unflushed.commit_log_offset);
            }
            jobs.extend(more);
            queue_offsets.push(((topic.to_string(), queue_id), queue_offset));
        }
        if let Some(index) = &mut self.index {
            jobs.extend(index.begin_flush()?);
        }
        jobs.extend(self.prepare_next_log_segment());
        Ok(PendingCheckpoint { commit_log_offset, queue_offsets, jobs })
    }

    /// The job preparing the CommitLog segment after the last one, once that one is half full
    /// (`warm_log_segments`); once per segment.
    fn prepare_next_log_segment(&mut self) -> Option<FlushJob> {
        if !self.config.warm_log_segments {
            return None;
        }
        let next = self.commit_log.segment_to_prepare()?;
        if self.prepared_log_segment.is_some_and(|p| p >= next) {
            return None;
        }
        self.prepared_log_segment = Some(next);
        self.dir.prepare_log_segment(&crate::commitlog::segment_path(next), self.config.commit_log_segment_bytes)
    }

    /// The job preparing the first CommitLog segment of a log never written
    /// (`warm_log_segments`): for a master, whose log starts at 0. Not for a slave, whose log
    /// starts wherever its master's stream does (a file at 0 would then be a gap before it).
    pub fn prepare_first_log_segment(&mut self) -> Option<FlushJob> {
        let empty = self.commit_log.last_segment_start().is_none() && self.commit_log.write_offset() == 0;
        if !self.config.warm_log_segments || !empty || self.prepared_log_segment.is_some() {
            return None;
        }
        self.prepared_log_segment = Some(0);
        self.dir.prepare_log_segment(&crate::commitlog::segment_path(0), self.config.commit_log_segment_bytes)
    }

    /// Records a checkpoint whose jobs all ran: marks what they flushed and writes the
    /// checkpoint at its CommitLog offset (never moving the checkpoint back).
    pub fn complete_checkpoint(
        &mut self,
        commit_log_offset: u64,
        queue_offsets: &[((String, i32), u64)],
    ) -> Result<(), StoreError> {
        self.complete_flush(commit_log_offset);
        for (key, queue_offset) in queue_offsets {
            if let Some(queue) = self.queues.get_mut(&key.0, key.1) {
                queue.mark_flushed(*queue_offset);
            }
        }
        self.write_checkpoint(commit_log_offset.max(self.checkpoint.confirm_phy_offset))
    }

    /// Writes the checkpoint page, vouching that the CommitLog below `confirm_phy_offset` and
    /// every ConsumeQueue entry of a message below it are durable.
    pub(super) fn write_checkpoint(&mut self, confirm_phy_offset: u64) -> Result<(), StoreError> {
        assert!(confirm_phy_offset <= self.commit_log.flushed_offset(), "a checkpoint vouches only for flushed data");
        let checkpoint = Checkpoint {
            physic_msg_timestamp_ms: self.flushed_store_timestamp_ms,
            logics_msg_timestamp_ms: self.flushed_store_timestamp_ms,
            index_msg_timestamp_ms: 0,
            master_flushed_offset: 0,
            confirm_phy_offset,
        };
        if checkpoint != self.checkpoint {
            self.dir.write_file(CHECKPOINT_PATH, &checkpoint.encode())?;
            self.checkpoint = checkpoint;
        }
        Ok(())
    }

    /// Smallest queue offset held; 0 for an unknown queue.
    pub fn min_queue_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.queue(topic, queue_id).map_or(0, |q| q.min_offset())
    }

    /// Next queue offset to be written; 0 for an unknown queue.
    pub fn max_queue_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.queue(topic, queue_id).map_or(0, |q| q.max_offset())
    }

    fn queue(&self, topic: &str, queue_id: i32) -> Option<&ConsumeQueue<D::Seg>> {
        self.queues.get(topic, queue_id)
    }

    /// The message stored at a CommitLog offset, body CRC checked.
    pub fn read_message(&self, commit_log_offset: u64) -> Result<MessageExt, StoreError> {
        self.decode_at(commit_log_offset, true)
    }

    /// Decodes the record at `commit_log_offset` and checks it says it is there.
    fn decode_at(&self, commit_log_offset: u64, check_crc: bool) -> Result<MessageExt, StoreError> {
        let (min_offset, max_offset) = (self.commit_log.min_offset(), self.commit_log.write_offset());
        if !(min_offset..max_offset).contains(&commit_log_offset) {
            return Err(StoreError::OffsetNotStored { commit_log_offset, min_offset, max_offset });
        }
        let raw = match self.commit_log.slot(commit_log_offset) {
            Slot::Record(raw) => raw,
            Slot::Blank { .. } => return Err(no_record(commit_log_offset, MessageError::BadMagic(MAGIC_BLANK))),
            Slot::Zero => return Err(no_record(commit_log_offset, MessageError::BadMagic(0))),
            Slot::Invalid | Slot::Beyond => {
                return Err(no_record(commit_log_offset, MessageError::Invalid("TOTALSIZE or MAGICCODE")))
            }
        };
        let (msg, _) =
            decode_message(&Bytes::from(raw), check_crc).map_err(|source| no_record(commit_log_offset, source))?;
        if msg.commit_log_offset != commit_log_offset as i64 {
            return Err(no_record(
                commit_log_offset,
                MessageError::Invalid("PHYSICALOFFSET differs from the position"),
            ));
        }
        Ok(msg)
    }

    /// The first queue offset whose message was stored at or after `timestamp_ms` (binary
    /// search over store timestamps); the max offset if none was.
    pub fn queue_offset_by_time(&self, topic: &str, queue_id: i32, timestamp_ms: i64) -> u64 {
        let Some(q) = self.queue(topic, queue_id) else {
            return 0;
        };
        let store_time_ms = |n: u64| -> Option<i64> {
            let e = q.entry(n)?;
            self.decode_at(e.commit_log_offset, false).ok().map(|m| m.store_timestamp)
        };
        let (mut lo, mut hi) = (q.min_offset(), q.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match store_time_ms(mid) {
                Some(t) if t < timestamp_ms => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// Retention (RocketMQ's CleanCommitLogService): deletes CommitLog segments from the
    /// oldest, each one only once every record in it was stored before `expired_before_ms`
    /// (judged by the first record of the segment after it, store timestamps being
    /// nondecreasing), or regardless of age when `force` (a disk nearly full). Never the last
    /// segment, never one whose successor starts beyond the flushed or indexed position; at most
    /// `max_segments` per call (RocketMQ's deletePhysicFilesInterval pacing). The ConsumeQueues
    /// follow: their smallest offsets move to the first entry still held and their files wholly
    /// below it go.
    pub fn delete_expired_files(
        &mut self,
        expired_before_ms: i64,
        force: bool,
        max_segments: u32,
    ) -> Result<Cleaned, StoreError> {
        let mut cleaned = Cleaned::default();
        while cleaned.commit_log_segments < max_segments {
            let Some(next) = self.commit_log.second_segment_start() else { break };
            if next > self.commit_log.flushed_offset() || next > self.reput_offset {
                break;
            }
            let expired = force
                || self.decode_at(next, false).is_ok_and(|first_after| first_after.store_timestamp < expired_before_ms);
            if !expired {
                break;
            }
            self.commit_log.remove_first(&mut self.dir)?;
            cleaned.commit_log_segments += 1;
        }
        if cleaned.commit_log_segments > 0 {
            let min = self.commit_log.min_offset();
            for q in self.queues.values_mut() {
                cleaned.queue_segments += q.delete_below(&mut self.dir, min)?;
            }
            if let Some(index) = &mut self.index {
                cleaned.index_files += index.delete_below(&mut self.dir, min)?;
            }
        }
        cleaned.commit_log_min_offset = self.commit_log.min_offset();
        Ok(cleaned)
    }

    /// Indexes a stored message under `topic#key` for each of its KEYS and under
    /// `topic#uniqKey`. A failure (no room for a new index file) leaves the message stored but
    /// unfindable by key; it shows in [`Self::index_error`].
    pub(super) fn index_message(&mut self, msg: &MessageExt, pos: u64) {
        let Some(index) = &mut self.index else { return };
        let keys = msg.properties.get(prop::KEYS).map(|k| k.split(' ').filter(|k| !k.is_empty()).collect::<Vec<_>>());
        let uniq = msg.properties.get(prop::UNIQ_KEY).map(String::as_str);
        for key in keys.unwrap_or_default().into_iter().chain(uniq) {
            if let Err(e) = index.add(&mut self.dir, &format!("{}#{key}", msg.topic), pos, msg.store_timestamp) {
                self.index_error = Some(e.to_string());
                return;
            }
        }
    }

    /// Indexes the records the index does not cover yet (after its last entry), up to the
    /// end of the log: after recovery, or when the index is enabled on an existing store.
    /// Returns how many records were indexed.
    fn catch_up_index(&mut self) -> Result<u64, StoreError> {
        let Some(index) = &self.index else { return Ok(0) };
        let indexed_to = index.end_phy_offset();
        let mut pos = match indexed_to {
            Some(end) => end.max(self.commit_log.min_offset()),
            None => self.commit_log.min_offset(),
        };
        let mut reindexed = 0;
        while pos < self.commit_log.write_offset() {
            match self.commit_log.slot(pos) {
                Slot::Blank { next_offset } => pos = next_offset,
                Slot::Record(raw) => {
                    let len = raw.len() as u64;
                    if let Ok((msg, _)) = decode_message(&Bytes::from(raw), false) {
                        if indexed_to.is_none_or(|end| pos > end) {
                            self.index_message(&msg, pos);
                            reindexed += 1;
                        }
                    }
                    pos += len;
                }
                Slot::Zero | Slot::Invalid | Slot::Beyond => break,
            }
        }
        Ok(reindexed)
    }

    /// Messages of `topic` indexed under `key` and stored within
    /// `[begin_timestamp_ms, end_timestamp_ms]`, oldest first, at most `max` (RocketMQ's
    /// QUERY_MESSAGE). `unique`: `key` is a UNIQ_KEY (the producer's message id); otherwise
    /// it is one of the message's KEYS. Every candidate is read back and checked.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin_timestamp_ms: i64,
        end_timestamp_ms: i64,
        unique: bool,
    ) -> Result<Vec<MessageExt>, StoreError> {
        let Some(index) = &self.index else {
            return Err(StoreError::InvalidConfig {
                reason: "the message index is disabled (messageIndexEnable=false)",
            });
        };
        // Collisions and stale entries are filtered below, so ask the index for more.
        let candidates = index.lookup(
            &format!("{topic}#{key}"),
            max.saturating_mul(4).max(64),
            begin_timestamp_ms,
            end_timestamp_ms,
        );
        let mut found: Vec<MessageExt> = candidates
            .into_iter()
            .filter_map(|phy| self.decode_at(phy, false).ok())
            .filter(|m| {
                m.topic == topic
                    && (begin_timestamp_ms..=end_timestamp_ms).contains(&m.store_timestamp)
                    && if unique {
                        m.properties.get(prop::UNIQ_KEY).is_some_and(|u| u == key)
                    } else {
                        m.properties.get(prop::KEYS).is_some_and(|ks| ks.split(' ').any(|k| k == key))
                    }
            })
            .collect();
        found.sort_by_key(|m| m.commit_log_offset);
        found.truncate(max);
        Ok(found)
    }

    /// Why the last message could not be indexed, if one could not.
    pub fn index_error(&self) -> Option<&str> {
        self.index_error.as_deref()
    }

    /// The CommitLog offset of the last message indexed by key.
    pub fn index_end_phy_offset(&self) -> Option<u64> {
        self.index.as_ref().and_then(|i| i.end_phy_offset())
    }

    /// The share of the store's disk in use (see [`Directory::used_space_ratio`]).
    pub fn used_space_ratio(&self) -> Option<f64> {
        self.dir.used_space_ratio()
    }

    /// How many ConsumeQueues there are.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Every (topic, queue id) with a ConsumeQueue, sorted.
    pub fn queues(&self) -> Vec<(String, i32)> {
        self.queues.iter().map(|((topic, queue_id), _)| (topic.to_string(), queue_id)).collect()
    }

    /// Every segment the store holds open (CommitLog, then ConsumeQueues), with its relative
    /// path: what a power cut would leave of them is each one's durable part (see
    /// [`crate::mem::MemDisk::after_power_cut`]).
    pub fn segment_files(&self) -> Vec<(String, &D::Seg)> {
        let mut out: Vec<(String, &D::Seg)> = self.commit_log.segment_files().collect();
        for queue in self.queues.values() {
            out.extend(queue.segment_files());
        }
        out
    }

    /// The directory: the broker keeps its config JSON beside the data.
    pub fn directory(&self) -> &D {
        &self.dir
    }

    /// Mutable directory access, for small files (never the store's own segments).
    pub fn directory_mut(&mut self) -> &mut D {
        &mut self.dir
    }

    /// Checks that positions and indexes agree: flushed <= max, contiguous segments, every
    /// queue's first and last entry present (dense offsets) and pointing below the CommitLog
    /// max. Cheap enough to call after every simulated step.
    pub fn assert_invariants(&self) {
        self.commit_log.assert_invariants();
        let end = self.commit_log.write_offset();
        assert!(
            self.checkpoint.confirm_phy_offset <= self.commit_log.flushed_offset(),
            "checkpoint ahead of the flush"
        );
        for queue in self.queues.values() {
            queue.assert_invariants(end);
        }
    }
}

fn no_record(commit_log_offset: u64, source: MessageError) -> StoreError {
    StoreError::NoRecord { commit_log_offset, source }
}

#[cfg(test)]
mod tests;
