//! A ConsumeQueue: the index of one (topic, queue), 20-byte entries of (commit-log offset u64,
//! size u32, tag hash i64); entry `n` is queue offset `n`. Files are named by their 20-digit
//! start byte offset under `consumequeue/<topic>/<queueId>/`.

use crate::segment::{Directory, Segment};
use crate::StoreError;

/// Directory of ConsumeQueues.
pub const CONSUMEQUEUE_DIR: &str = "consumequeue";
/// Bytes per entry.
pub const ENTRY_BYTES: u64 = 20;

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Where the record starts in the CommitLog.
    pub commit_log_offset: u64,
    /// Record size.
    pub size: u32,
    /// Java hash of the TAGS property, or 0.
    pub tag_hash: i64,
}

/// The index of one queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumeQueue<S> {
    topic: String,
    queue_id: i32,
    entries_per_segment: u64,
    /// (first entry, segment), ascending and contiguous.
    segments: Vec<(u64, S)>,
    /// Next queue offset to be written.
    max_offset: u64,
    flushed_offset: u64,
}

fn dir_of(topic: &str, queue_id: i32) -> String {
    format!("{CONSUMEQUEUE_DIR}/{topic}/{queue_id}")
}

impl<S: Segment> ConsumeQueue<S> {
    /// An empty queue.
    pub fn new(topic: &str, queue_id: i32, entries_per_segment: u64) -> Self {
        ConsumeQueue {
            topic: topic.into(),
            queue_id,
            entries_per_segment,
            segments: Vec::new(),
            max_offset: 0,
            flushed_offset: 0,
        }
    }

    /// Opens a queue's files and finds its last entry.
    pub fn load<D: Directory<Seg = S>>(
        dir: &mut D,
        topic: &str,
        queue_id: i32,
        entries_per_segment: u64,
    ) -> Result<Self, StoreError> {
        let mut q = Self::new(topic, queue_id, entries_per_segment);
        let seg_bytes = entries_per_segment * ENTRY_BYTES;
        for name in dir.list(&dir_of(topic, queue_id))? {
            let Ok(start_byte) = name.parse::<u64>() else { continue };
            if start_byte % seg_bytes != 0 {
                continue;
            }
            let seg = dir.open_segment(&format!("{}/{name}", dir_of(topic, queue_id)), seg_bytes)?;
            q.segments.push((start_byte / ENTRY_BYTES, seg));
        }
        // Entries fill each segment from its start: binary-search the last segment for the
        // first empty slot. Recovery re-dispatches anything after the last checkpoint.
        let n = match q.segments.last() {
            None => 0,
            Some((first, _)) => {
                let (mut lo, mut hi) = (*first, *first + entries_per_segment);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if q.entry(mid).is_some() {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
        };
        q.max_offset = n;
        q.flushed_offset = n;
        Ok(q)
    }

    /// Topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queue id.
    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    /// Smallest queue offset held.
    pub fn min_offset(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.0)
    }

    /// Next queue offset to be written.
    pub fn max_offset(&self) -> u64 {
        self.max_offset
    }

    fn locate(&self, n: u64) -> Option<(usize, u64)> {
        let first = self.segments.first()?.0;
        if n < first {
            return None;
        }
        let i = ((n - first) / self.entries_per_segment) as usize;
        (i < self.segments.len()).then(|| (i, (n - self.segments[i].0) * ENTRY_BYTES))
    }

    /// The entry at queue offset `n`, if written.
    pub fn entry(&self, n: u64) -> Option<Entry> {
        let (i, pos) = self.locate(n)?;
        let mut b = [0u8; ENTRY_BYTES as usize];
        self.segments[i].1.read_at(pos, &mut b).ok()?;
        let e = Entry {
            commit_log_offset: u64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
            size: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
            tag_hash: i64::from_be_bytes(b[12..20].try_into().expect("8 bytes")),
        };
        (e.size > 0).then_some(e)
    }

    /// Writes the entry for queue offset `n` (idempotent; recovery rewrites entries).
    pub fn put<D: Directory<Seg = S>>(&mut self, dir: &mut D, n: u64, e: Entry) -> Result<(), StoreError> {
        assert!(e.size > 0, "an entry always indexes a non-empty record");
        if self.segments.is_empty() {
            let start = n - n % self.entries_per_segment;
            self.open(dir, start)?;
        }
        while self.locate(n).is_none() {
            let next = self.segments.last().map_or(0, |s| s.0 + self.entries_per_segment);
            if n < self.min_offset() {
                return Err(StoreError::OutOfBounds { pos: n, len: 1, capacity_bytes: self.min_offset() });
            }
            self.open(dir, next)?;
        }
        let (i, pos) = self.locate(n).expect("segment opened above");
        let mut b = [0u8; ENTRY_BYTES as usize];
        b[0..8].copy_from_slice(&e.commit_log_offset.to_be_bytes());
        b[8..12].copy_from_slice(&e.size.to_be_bytes());
        b[12..20].copy_from_slice(&e.tag_hash.to_be_bytes());
        self.segments[i].1.write_at(pos, &b)?;
        self.max_offset = self.max_offset.max(n + 1);
        Ok(())
    }

    fn open<D: Directory<Seg = S>>(&mut self, dir: &mut D, first_entry: u64) -> Result<(), StoreError> {
        let seg_bytes = self.entries_per_segment * ENTRY_BYTES;
        let name = format!("{}/{:020}", dir_of(&self.topic, self.queue_id), first_entry * ENTRY_BYTES);
        let seg = dir.open_segment(&name, seg_bytes)?;
        self.segments.push((first_entry, seg));
        Ok(())
    }

    /// Drops entries from `n` on (zeroing them) so the next put is `n`.
    /// The zeroing is flushed: a later crash must not bring the dropped entries back.
    pub fn truncate(&mut self, n: u64) -> Result<(), StoreError> {
        let zero = [0u8; ENTRY_BYTES as usize];
        let mut k = n.max(self.min_offset());
        while k < self.max_offset {
            if let Some((i, pos)) = self.locate(k) {
                self.segments[i].1.write_at(pos, &zero)?;
                self.segments[i].1.flush_range(pos, ENTRY_BYTES)?;
            }
            k += 1;
        }
        self.max_offset = n.max(self.min_offset()).min(self.max_offset);
        self.flushed_offset = self.flushed_offset.min(self.max_offset);
        Ok(())
    }

    /// Flushes written entries.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.flushed_offset >= self.max_offset {
            return Ok(());
        }
        let (from, to) = (self.flushed_offset, self.max_offset);
        for (first, seg) in self.segments.iter_mut() {
            let last = *first + self.entries_per_segment;
            if last <= from || *first >= to {
                continue;
            }
            let a = (from.max(*first) - *first) * ENTRY_BYTES;
            let b = (to.min(last) - *first) * ENTRY_BYTES;
            seg.flush_range(a, b - a)?;
        }
        self.flushed_offset = to;
        Ok(())
    }
}
