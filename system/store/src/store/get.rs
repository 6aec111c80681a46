//! Reading a queue: RocketMQ's `DefaultMessageStore.getMessage` status rules, as on a master.

use bytes::Bytes;

use super::{GetResult, GetStatus, MessageStore};
use crate::consumequeue::ENTRY_BYTES;
use crate::segment::Directory;

/// Index bytes one get examines at least (RocketMQ's maxFilterMessageCount, 16,000 bytes of
/// entries), filtered-out entries included; more when `max_msgs` asks for more.
pub const GET_SCAN_BYTES_MIN: u64 = 16_000;

impl<D: Directory> MessageStore<D> {
    /// Reads up to `max_msgs` records (and up to `max_bytes`, but always at least one) from
    /// `queue_offset`, skipping entries whose tag hash `filter` rejects.
    ///
    /// Statuses: unknown queue → `NoMatchedLogicQueue`; a queue whose max offset is 0 →
    /// `NoMessageInQueue`; below the min → `OffsetTooSmall` (next = min); at the max →
    /// `OffsetOverflowOne` (next = the same offset); beyond → `OffsetOverflowBadly` (next = 0
    /// when the min is 0, else the max, as RocketMQ); a window the filter rejects entirely →
    /// `NoMatchedMessage` with next past the window.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        queue_offset: u64,
        max_msgs: u32,
        max_bytes: u32,
        filter: &dyn Fn(i64) -> bool,
    ) -> GetResult {
        let Some(q) = self.queue(topic, queue_id) else {
            return status_only(GetStatus::NoMatchedLogicQueue, 0, (0, 0));
        };
        let bounds = (q.min_offset(), q.max_offset());
        let (min, max) = bounds;
        if max == 0 {
            return status_only(GetStatus::NoMessageInQueue, 0, bounds);
        }
        if queue_offset < min {
            return status_only(GetStatus::OffsetTooSmall, min, bounds);
        }
        if queue_offset == max {
            return status_only(GetStatus::OffsetOverflowOne, queue_offset, bounds);
        }
        if queue_offset > max {
            return status_only(GetStatus::OffsetOverflowBadly, if min == 0 { 0 } else { max }, bounds);
        }
        let scan_entries = (GET_SCAN_BYTES_MIN / ENTRY_BYTES).max(u64::from(max_msgs)).min(max - queue_offset);
        let (mut messages, mut total_bytes) = (Vec::new(), 0u64);
        let mut n = queue_offset;
        while n < queue_offset + scan_entries {
            let Some(e) = q.entry(n) else { break };
            let full =
                messages.len() as u64 >= u64::from(max_msgs) || total_bytes + u64::from(e.size) > u64::from(max_bytes);
            if !messages.is_empty() && full {
                break;
            }
            if filter(e.tag_hash) {
                let Ok(raw) = self.commit_log.read(e.commit_log_offset, e.size as usize) else {
                    break;
                };
                total_bytes += u64::from(e.size);
                messages.push(Bytes::from(raw));
            }
            n += 1;
        }
        let (status, next) = match (messages.is_empty(), n > queue_offset) {
            (false, _) => (GetStatus::Found, n),
            (true, true) => (GetStatus::NoMatchedMessage, n),
            // The entry at the offset is missing: step over the hole.
            (true, false) => (GetStatus::OffsetFoundNull, queue_offset + 1),
        };
        GetResult { status, messages, next_begin_offset: next, min_offset: min, max_offset: max }
    }
}

fn status_only(status: GetStatus, next_begin_offset: u64, (min_offset, max_offset): (u64, u64)) -> GetResult {
    GetResult { status, messages: Vec::new(), next_begin_offset, min_offset, max_offset }
}
