//! Master/slave replication at the store level (RocketMQ 4.x HA): a master hands out raw
//! CommitLog bytes; a slave appends them verbatim at the same offsets and indexes every record
//! they complete, as its own dispatcher would.

use bytes::Bytes;
use rmq_proto::message::{decode_message, MAGIC_BLANK};

use super::MessageStore;
use crate::commitlog::Slot;
use crate::segment::Directory;
use crate::StoreError;

impl<D: Directory> MessageStore<D> {
    /// Where streaming to a slave that reported `slave_offset` starts: there, if this store holds
    /// it; a fresh slave (0) gets everything this store still holds. `None` when the slave is
    /// ahead of this store (it holds bytes this store lost): streaming would overwrite them with
    /// different records, so the caller must refuse that slave.
    pub fn replica_start(&self, slave_offset: u64) -> Option<u64> {
        let (min, max) = (self.commit_log.min_offset(), self.commit_log.write_offset());
        match slave_offset {
            0 => Some(min),
            o if o > max => None,
            o => Some(o.max(min)),
        }
    }

    /// Up to `max` raw CommitLog bytes from `offset`, within one segment and below the write
    /// position (empty when there is nothing more).
    pub fn read_for_replica(&self, offset: u64, max: usize) -> Result<Vec<u8>, StoreError> {
        self.commit_log.read_raw(offset, max)
    }

    /// Appends bytes streamed by the master at `offset` (this store's write position) and
    /// indexes every record they complete. Returns the new write position.
    pub fn append_replicated(&mut self, offset: u64, bytes: &[u8]) -> Result<u64, StoreError> {
        let fresh = self.commit_log.last_segment_start().is_none();
        self.commit_log.append_raw(&mut self.dir, offset, bytes)?;
        if fresh {
            self.reput_offset = offset;
        }
        self.dispatch_replicated()?;
        Ok(self.commit_log.write_offset())
    }

    /// Indexes complete records from the dispatch position up to the write position.
    fn dispatch_replicated(&mut self) -> Result<(), StoreError> {
        let end = self.commit_log.write_offset();
        while self.reput_offset + 8 <= end {
            let pos = self.reput_offset;
            let head = self.commit_log.read(pos, 8)?;
            let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let magic = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            let len = u64::try_from(size).unwrap_or(0);
            if magic != MAGIC_BLANK && pos + len > end {
                break; // The rest of this record is still on its way.
            }
            match self.commit_log.slot(pos) {
                Slot::Blank { next_offset } => self.reput_offset = next_offset,
                Slot::Record(raw) => {
                    let (msg, len) = decode_message(&Bytes::from(raw), true)
                        .map_err(|e| StoreError::ReplicaMismatch { offset: pos, reason: format!("record: {e}") })?;
                    if msg.commit_log_offset != pos as i64 {
                        return Err(StoreError::ReplicaMismatch {
                            offset: pos,
                            reason: format!("record claims commit-log offset {}", msg.commit_log_offset),
                        });
                    }
                    self.redispatch(&msg, pos, len as u64)?;
                    self.index_message(&msg, pos);
                    self.last_store_timestamp_ms = msg.store_timestamp;
                    self.reput_offset = pos + len as u64;
                }
                Slot::Zero | Slot::Beyond => break,
                Slot::Invalid => {
                    return Err(StoreError::ReplicaMismatch { offset: pos, reason: "not a record".into() })
                }
            }
        }
        Ok(())
    }

    /// Cuts this replica's CommitLog back to `end` (a record boundary: where its master's log
    /// ends after the master lost an unflushed tail), with every index entry past it, zeroed
    /// and flushed so no discarded record reappears after a crash. The next streamed byte is
    /// appended at `end`. Returns how many non-zero bytes were discarded. Refused below the
    /// oldest byte this store holds.
    pub fn truncate_replica(&mut self, end: u64) -> Result<u64, StoreError> {
        let write = self.commit_log.write_offset();
        if end >= write {
            return Ok(0);
        }
        if end < self.commit_log.min_offset() || end < self.reput_offset.min(end) {
            return Err(StoreError::ReplicaMismatch {
                offset: end,
                reason: format!("cannot cut below the oldest retained byte {}", self.commit_log.min_offset()),
            });
        }
        let durable = self.commit_log.flushed_offset().min(end);
        let discarded = self.commit_log.truncate_to(&mut self.dir, durable, end)?;
        self.truncate_queues(end)?;
        self.reput_offset = self.reput_offset.min(end);
        // The checkpoint vouched for bytes that are gone: it moves back with the log.
        let confirmed = self.checkpoint.confirm_phy_offset.min(end);
        self.checkpoint.confirm_phy_offset = u64::MAX; // Forces the write below.
        self.write_checkpoint(confirmed)?;
        Ok(discarded)
    }

    /// Where the next replicated record will be indexed from.
    pub fn dispatched_offset(&self) -> u64 {
        self.reput_offset
    }
}
