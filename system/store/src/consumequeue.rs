//! A ConsumeQueue: the index of one (topic, queue), 20-byte entries of (commit-log offset u64,
//! size u32, tag hash i64), all big-endian; entry `n` is queue offset `n`. Files are named by
//! their 20-digit start byte offset under `consumequeue/<topic>/<queueId>/`.

use crate::segment::{Directory, FlushJob, Segment};
use crate::StoreError;

/// Directory of ConsumeQueues.
pub const CONSUMEQUEUE_DIR: &str = "consumequeue";
/// Bytes per entry (CQ_STORE_UNIT_SIZE).
pub const ENTRY_BYTES: u64 = 20;

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Where the record starts in the CommitLog.
    pub commit_log_offset: u64,
    /// Record size in bytes; never 0 (0 marks an empty slot).
    pub size: u32,
    /// Java hash of the TAGS property, or 0.
    pub tag_hash: i64,
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY_BYTES as usize] {
        let mut b = [0u8; ENTRY_BYTES as usize];
        b[0..8].copy_from_slice(&self.commit_log_offset.to_be_bytes());
        b[8..12].copy_from_slice(&self.size.to_be_bytes());
        b[12..20].copy_from_slice(&self.tag_hash.to_be_bytes());
        b
    }

    fn decode(b: &[u8; ENTRY_BYTES as usize]) -> Option<Self> {
        let e = Entry {
            commit_log_offset: u64::from_be_bytes(b[0..8].try_into().expect("8-byte slice")),
            size: u32::from_be_bytes(b[8..12].try_into().expect("4-byte slice")),
            tag_hash: i64::from_be_bytes(b[12..20].try_into().expect("8-byte slice")),
        };
        (e.size > 0).then_some(e)
    }

    /// Where the record ends in the CommitLog.
    pub fn end_offset(&self) -> u64 {
        // Saturating: recovery reads entries from disk, and a garbage entry near u64::MAX must
        // come out as "beyond the CommitLog" (invalid), not overflow (found by fuzzing).
        self.commit_log_offset.saturating_add(u64::from(self.size))
    }
}

/// The relative directory of one queue's files.
pub fn queue_dir(topic: &str, queue_id: i32) -> String {
    format!("{CONSUMEQUEUE_DIR}/{topic}/{queue_id}")
}

/// The index of one queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumeQueue<S> {
    /// Topic, also the directory name.
    topic: String,
    /// Queue id, also the directory name.
    queue_id: i32,
    /// Entries per segment file.
    entries_per_segment: u64,
    /// (first queue offset, segment), ascending and contiguous.
    segments: Vec<(u64, S)>,
    /// Smallest queue offset held (the first non-empty entry).
    min_offset: u64,
    /// Next queue offset to be written.
    max_offset: u64,
    /// Entries below are durable; a rewrite below lowers it.
    flushed_offset: u64,
}

impl<S: Segment> ConsumeQueue<S> {
    /// An empty queue with no files yet.
    pub fn new(topic: &str, queue_id: i32, entries_per_segment: u64) -> Self {
        ConsumeQueue {
            topic: topic.into(),
            queue_id,
            entries_per_segment,
            segments: Vec::new(),
            min_offset: 0,
            max_offset: 0,
            flushed_offset: 0,
        }
    }

    fn segment_bytes(&self) -> u64 {
        self.entries_per_segment * ENTRY_BYTES
    }

    /// Each open segment with its relative path.
    pub fn segment_files(&self) -> impl Iterator<Item = (String, &S)> {
        self.segments.iter().map(|(first, seg)| (self.segment_path(*first), seg))
    }

    fn segment_path(&self, first_offset: u64) -> String {
        format!("{}/{:020}", queue_dir(&self.topic, self.queue_id), first_offset * ENTRY_BYTES)
    }

    /// Opens a queue's files and finds its bounds. Files after a gap are removed (they would
    /// be misaddressed). Entries fill each file from its start, so the end is found by binary
    /// search in the last file; recovery then validates the tail against the CommitLog.
    pub fn load<D: Directory<Seg = S>>(
        dir: &mut D,
        topic: &str,
        queue_id: i32,
        entries_per_segment: u64,
    ) -> Result<Self, StoreError> {
        let mut q = Self::new(topic, queue_id, entries_per_segment);
        let mut firsts = Vec::new();
        for name in dir.list(&queue_dir(topic, queue_id))? {
            let Ok(start_byte) = name.parse::<u64>() else {
                continue;
            };
            if start_byte % q.segment_bytes() != 0 {
                let path = format!("{}/{name}", queue_dir(topic, queue_id));
                return Err(StoreError::MisalignedSegment { path, segment_bytes: q.segment_bytes() });
            }
            firsts.push(start_byte / ENTRY_BYTES);
        }
        firsts.sort_unstable();
        for first in firsts {
            let path = q.segment_path(first);
            if q.segments.last().is_none_or(|(last, _)| last + entries_per_segment == first) {
                q.segments.push((first, dir.open_queue_segment(&path, q.segment_bytes())?));
            } else {
                dir.remove(&path)?;
            }
        }
        q.max_offset = q.find_end();
        q.min_offset = q.find_start();
        q.flushed_offset = q.max_offset;
        Ok(q)
    }

    /// One past the last entry, by binary search in the last file.
    fn find_end(&self) -> u64 {
        let Some((first, _)) = self.segments.last() else {
            return 0;
        };
        let (mut lo, mut hi) = (*first, *first + self.entries_per_segment);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid).is_some() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The first non-empty entry of the first file (normally its first slot), or the end.
    fn find_start(&self) -> u64 {
        let first = self.segments.first().map_or(0, |s| s.0);
        (first..self.max_offset).find(|n| self.entry(*n).is_some()).unwrap_or(self.max_offset)
    }

    /// Moves the smallest offset up to the first entry that points at or above
    /// `commit_log_min` (RocketMQ's correctMinOffset): entries below it point at deleted
    /// CommitLog segments. Entries ascend in CommitLog offset, so this is a binary search.
    pub fn correct_min_offset(&mut self, commit_log_min: u64) {
        let (mut lo, mut hi) = (self.min_offset, self.max_offset);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some(e) if e.commit_log_offset < commit_log_min => lo = mid + 1,
                _ => hi = mid,
            }
        }
        self.min_offset = lo;
    }

    /// Follows a CommitLog whose segments below `commit_log_min` were deleted: corrects the
    /// smallest offset, then deletes every file wholly below it (never the last one, where
    /// appends go). Returns how many files were deleted.
    pub fn delete_below<D: Directory<Seg = S>>(&mut self, dir: &mut D, commit_log_min: u64) -> Result<u32, StoreError> {
        self.correct_min_offset(commit_log_min);
        let mut deleted = 0;
        while self.segments.len() >= 2 && self.segments[0].0 + self.entries_per_segment <= self.min_offset {
            dir.remove(&self.segment_path(self.segments[0].0))?;
            self.segments.remove(0);
            deleted += 1;
        }
        Ok(deleted)
    }

    /// The first slot of the first file held (entries below it were deleted with their file).
    pub fn first_slot(&self) -> u64 {
        self.segments.first().map_or(self.min_offset, |s| s.0)
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
        self.min_offset
    }

    /// Next queue offset to be written.
    pub fn max_offset(&self) -> u64 {
        self.max_offset
    }

    /// (segment index, byte position inside it) of queue offset `n`.
    fn locate(&self, n: u64) -> Option<(usize, u64)> {
        let first = self.segments.first()?.0;
        let i = usize::try_from(n.checked_sub(first)? / self.entries_per_segment).ok()?;
        (i < self.segments.len()).then(|| (i, (n - self.segments[i].0) * ENTRY_BYTES))
    }

    /// The entry at queue offset `n`, if one is written there.
    pub fn entry(&self, n: u64) -> Option<Entry> {
        let (i, pos) = self.locate(n)?;
        let mut b = [0u8; ENTRY_BYTES as usize];
        self.segments[i].1.read_at(pos, &mut b).ok()?;
        Entry::decode(&b)
    }

    /// Appends the entry for the next queue offset, `n` (which must be [`Self::max_offset`]).
    pub fn append<D: Directory<Seg = S>>(&mut self, dir: &mut D, n: u64, e: Entry) -> Result<(), StoreError> {
        assert_eq!(n, self.max_offset, "queue offsets are dense");
        self.write_entry(dir, n, e)?;
        assert_eq!(self.max_offset, n + 1, "an append advances the queue by one");
        Ok(())
    }

    /// Opens the files that slot `n` needs, so a following write cannot fail on I/O.
    pub fn reserve<D: Directory<Seg = S>>(&mut self, dir: &mut D, n: u64) -> Result<(), StoreError> {
        if n < self.first_slot() && self.min_offset != self.max_offset {
            let (topic, queue_id) = (self.topic.clone(), self.queue_id);
            return Err(StoreError::QueueOffsetBelowMin {
                topic,
                queue_id,
                queue_offset: n,
                min_offset: self.min_offset,
            });
        }
        if n < self.segments.first().map_or(u64::MAX, |s| s.0) {
            // No file yet, or an emptied queue restarting below its first file: start afresh.
            self.remove_files(dir)?;
            let first = n - n % self.entries_per_segment;
            self.segments.push((first, dir.open_queue_segment(&self.segment_path(first), self.segment_bytes())?));
        }
        while self.locate(n).is_none() {
            let next = self.segments.last().map(|s| s.0 + self.entries_per_segment).expect("a file was opened above");
            self.segments.push((next, dir.open_queue_segment(&self.segment_path(next), self.segment_bytes())?));
        }
        Ok(())
    }

    /// Writes the entry for queue offset `n`, opening files as needed. Idempotent: recovery
    /// rewrites entries from the records' own QUEUEOFFSET fields.
    pub fn write_entry<D: Directory<Seg = S>>(&mut self, dir: &mut D, n: u64, e: Entry) -> Result<(), StoreError> {
        assert!(e.size > 0, "an entry always indexes a non-empty record");
        self.reserve(dir, n)?;
        let (i, pos) = self.locate(n).expect("reserve opened the file holding n");
        self.segments[i].1.write_at(pos, &e.encode())?;
        if self.min_offset == self.max_offset {
            (self.min_offset, self.max_offset) = (n, n + 1);
        } else {
            // Leading empty slots of the first file are pages a crash lost, not deleted
            // entries (files are deleted whole): an entry rewritten there lowers the start.
            self.min_offset = self.min_offset.min(n);
            self.max_offset = self.max_offset.max(n + 1);
        }
        self.flushed_offset = self.flushed_offset.min(n);
        Ok(())
    }

    fn remove_files<D: Directory<Seg = S>>(&mut self, dir: &mut D) -> Result<(), StoreError> {
        while let Some((first, seg)) = self.segments.pop() {
            drop(seg);
            dir.remove(&self.segment_path(first))?;
        }
        Ok(())
    }

    /// Drops the entries from `n` on (zeroed and flushed, so a later crash cannot bring them
    /// back); the next append is at `n`.
    pub fn truncate(&mut self, n: u64) -> Result<(), StoreError> {
        let n = n.clamp(self.min_offset, self.max_offset);
        const ZEROS: [u8; 64 * ENTRY_BYTES as usize] = [0; 64 * ENTRY_BYTES as usize];
        let mut k = n;
        while k < self.max_offset {
            let (i, pos) = self.locate(k).expect("entries below max lie in open files");
            let in_segment = self.segments[i].0 + self.entries_per_segment - k;
            let count = in_segment.min(self.max_offset - k).min(64);
            let len = count * ENTRY_BYTES;
            self.segments[i].1.write_at(pos, &ZEROS[..len as usize])?;
            self.segments[i].1.flush_range(pos, len)?;
            k += count;
        }
        self.max_offset = n;
        self.flushed_offset = self.flushed_offset.min(n);
        Ok(())
    }

    /// Flushes in place the entries written since the last flush.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let to = self.max_offset;
        for (i, pos, len) in self.dirty_ranges() {
            self.segments[i].1.flush_range(pos, len)?;
        }
        self.flushed_offset = to;
        Ok(())
    }

    /// Detached flush work for the entries written since the last flush (segments that cannot
    /// detach flush in place here), and the queue offset durable once it ran. Report it with
    /// [`Self::mark_flushed`].
    pub fn begin_flush(&mut self) -> Result<(u64, Vec<FlushJob>), StoreError> {
        let mut jobs = Vec::new();
        for (i, pos, len) in self.dirty_ranges() {
            let seg = &mut self.segments[i].1;
            match seg.detached_flush(pos, len) {
                Some(job) => jobs.push(job),
                None => seg.flush_range(pos, len)?,
            }
        }
        Ok((self.max_offset, jobs))
    }

    /// Entries below are durable.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset
    }

    /// Entries written since the last flush.
    pub fn unflushed_entries(&self) -> u64 {
        self.max_offset - self.flushed_offset
    }

    /// A flush of the entries below `queue_offset` completed.
    pub fn mark_flushed(&mut self, queue_offset: u64) {
        self.flushed_offset = self.flushed_offset.max(queue_offset.min(self.max_offset));
    }

    /// (segment index, byte position, length) pieces of the entries `[flushed, max)`.
    fn dirty_ranges(&self) -> Vec<(usize, u64, u64)> {
        let (from, to) = (self.flushed_offset, self.max_offset);
        let mut out = Vec::new();
        for (i, (first, _)) in self.segments.iter().enumerate() {
            let last = *first + self.entries_per_segment;
            if from < to && last > from && *first < to {
                let a = (from.max(*first) - *first) * ENTRY_BYTES;
                out.push((i, a, (to.min(last) - *first) * ENTRY_BYTES - a));
            }
        }
        out
    }

    /// Checks bounds and that the tail entry exists (cheap; called after every simulated step).
    /// `commit_log_end` is the CommitLog write position.
    pub fn assert_invariants(&self, commit_log_end: u64) {
        assert!(self.min_offset <= self.max_offset, "queue bounds inverted");
        assert!(self.flushed_offset <= self.max_offset, "queue flushed beyond its end");
        for pair in self.segments.windows(2) {
            assert_eq!(pair[0].0 + self.entries_per_segment, pair[1].0, "ConsumeQueue files are contiguous");
        }
        if self.max_offset > self.min_offset {
            let last = self.entry(self.max_offset - 1).expect("the last queue offset has an entry");
            assert!(last.end_offset() <= commit_log_end, "an entry points past the CommitLog end");
            assert!(self.entry(self.min_offset).is_some(), "the first queue offset has an entry");
        }
    }
}
