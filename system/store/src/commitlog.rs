//! The CommitLog: one append-only log of stored-message records for every topic, split into
//! fixed-size segments named by their 20-digit start offset. A record that does not fit in
//! what is left of a segment (it needs `len + 8` bytes) is preceded by a BLANK record filling
//! the segment, and goes to the next one. So a segment always ends with a BLANK record once
//! the log has moved past it, and no record straddles two segments.

use rmq_proto::message::MAGIC_BLANK;

use crate::segment::{Directory, FlushJob, Segment};
use crate::StoreError;

/// Directory of CommitLog segments.
pub const COMMITLOG_DIR: &str = "commitlog";
/// Bytes that must stay free at a segment's end for a BLANK record (TOTALSIZE + MAGICCODE).
pub const END_BLANK_MIN_BYTES: u64 = 8;

/// Segment file name for a start offset.
pub fn segment_name(start_offset: u64) -> String {
    format!("{start_offset:020}")
}

pub(crate) fn segment_path(start_offset: u64) -> String {
    format!("{COMMITLOG_DIR}/{}", segment_name(start_offset))
}

/// The log and its write and flush positions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitLog<S> {
    /// (start offset, segment), ascending and contiguous.
    segments: Vec<(u64, S)>,
    /// Size of every segment.
    segment_bytes: u64,
    /// Next append position.
    write_offset: u64,
    /// Everything below is durable: flushed in place, or reported by the driver.
    flushed_offset: u64,
    /// The lowest offset written since the last [`Self::commit`]: the segments from the one
    /// holding it on may hold staged bytes.
    uncommitted_from: Option<u64>,
}

/// What lies at a CommitLog offset, judged by its TOTALSIZE and MAGICCODE fields only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// A record's bytes (TOTALSIZE of them; not yet decoded).
    Record(Vec<u8>),
    /// BLANK padding up to the segment's end, where the next record starts.
    Blank {
        /// Start of the next segment.
        next_offset: u64,
    },
    /// Zeroes: nothing was ever written here (or it was truncated).
    Zero,
    /// A size or magic that no append writes: a torn or corrupt record.
    Invalid,
    /// No segment holds this offset.
    Beyond,
}

impl<S: Segment> CommitLog<S> {
    /// Each open segment with its relative path.
    pub fn segment_files(&self) -> impl Iterator<Item = (String, &S)> {
        self.segments.iter().map(|(start, seg)| (segment_path(*start), seg))
    }

    /// An empty log.
    pub fn new(segment_bytes: u64) -> Self {
        CommitLog { segments: Vec::new(), segment_bytes, write_offset: 0, flushed_offset: 0, uncommitted_from: None }
    }

    /// Opens the existing segments. The contiguous run from the first one is kept; files after
    /// a gap cannot be reached and are removed (reopening one later would resurrect stale
    /// records). The write position starts at the first segment; recovery sets it.
    pub fn load<D: Directory<Seg = S>>(dir: &mut D, segment_bytes: u64) -> Result<Self, StoreError> {
        let mut starts = Vec::new();
        for name in dir.list(COMMITLOG_DIR)? {
            let Ok(start) = name.parse::<u64>() else {
                continue;
            };
            if start % segment_bytes != 0 {
                return Err(StoreError::MisalignedSegment { path: segment_path(start), segment_bytes });
            }
            starts.push(start);
        }
        starts.sort_unstable();
        let mut log = Self::new(segment_bytes);
        for start in starts {
            let contiguous = log.segments.last().is_none_or(|(last, _)| last + segment_bytes == start);
            if contiguous {
                log.segments.push((start, dir.open_log_segment(&segment_path(start), segment_bytes)?));
            } else {
                dir.remove(&segment_path(start))?;
            }
        }
        log.write_offset = log.min_offset();
        log.flushed_offset = log.min_offset();
        Ok(log)
    }

    /// The start of the segment after the last one, once the last one is at least half
    /// written (the one to prepare ahead of the rollover).
    pub fn segment_to_prepare(&self) -> Option<u64> {
        let (last, _) = self.segments.last()?;
        (self.write_offset >= last + self.segment_bytes / 2).then_some(last + self.segment_bytes)
    }

    /// Segment size.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Next append position.
    pub fn write_offset(&self) -> u64 {
        self.write_offset
    }

    /// Everything below is durable.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset
    }

    /// Smallest offset held (the first segment's start).
    pub fn min_offset(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.0)
    }

    /// Start of the last segment, if any.
    pub fn last_segment_start(&self) -> Option<u64> {
        self.segments.last().map(|s| s.0)
    }

    /// Start of the second segment: where the log would begin once the first one is deleted.
    pub fn second_segment_start(&self) -> Option<u64> {
        self.segments.get(1).map(|s| s.0)
    }

    /// Deletes the first segment (retention) and returns the new smallest offset. The caller
    /// has checked that it lies wholly below what is durable; the last segment, where appends
    /// go, is never deleted.
    pub fn remove_first<D: Directory<Seg = S>>(&mut self, dir: &mut D) -> Result<u64, StoreError> {
        assert!(self.segments.len() >= 2, "the segment being written is never deleted");
        let start = self.segments[0].0;
        dir.remove(&segment_path(start))?;
        self.segments.remove(0);
        Ok(self.min_offset())
    }

    /// Start of the segment that holds `offset`.
    pub fn segment_start_of(&self, offset: u64) -> u64 {
        offset - offset % self.segment_bytes
    }

    /// (segment index, position inside it) of `offset`.
    fn locate(&self, offset: u64) -> Option<(usize, u64)> {
        let first = self.segments.first()?.0;
        let i = usize::try_from(offset.checked_sub(first)? / self.segment_bytes).ok()?;
        (i < self.segments.len()).then(|| (i, offset - self.segments[i].0))
    }

    /// Where a record of `len` bytes would be appended now: the write position, or the next
    /// segment's start when it does not fit (leaving room for the BLANK record).
    pub fn next_record_offset(&self, len: u64) -> u64 {
        assert!(len + END_BLANK_MIN_BYTES <= self.segment_bytes, "callers check record size against the segment");
        let remaining = self.segment_bytes - self.write_offset % self.segment_bytes;
        if len + END_BLANK_MIN_BYTES <= remaining {
            self.write_offset
        } else {
            self.write_offset + remaining
        }
    }

    /// Appends `record` at [`Self::next_record_offset`], writing BLANK padding and opening the
    /// next segment as needed; returns where it landed.
    pub fn append<D: Directory<Seg = S>>(&mut self, dir: &mut D, record: &[u8]) -> Result<u64, StoreError> {
        let len = record.len() as u64;
        let offset = self.next_record_offset(len);
        if offset != self.write_offset {
            let remaining = offset - self.write_offset;
            let mut blank = [0u8; END_BLANK_MIN_BYTES as usize];
            blank[..4].copy_from_slice(&(remaining as i32).to_be_bytes());
            blank[4..].copy_from_slice(&MAGIC_BLANK.to_be_bytes());
            self.write(self.write_offset, &blank)?;
            self.write_offset = offset;
        }
        if self.locate(offset).is_none() {
            assert_eq!(
                offset,
                self.segments.last().map_or(offset, |s| s.0 + self.segment_bytes),
                "segments stay contiguous"
            );
            self.segments.push((offset, dir.open_log_segment(&segment_path(offset), self.segment_bytes)?));
        }
        self.write(offset, record)?;
        self.write_offset = offset + len;
        assert!(
            self.segment_start_of(self.write_offset) < self.write_offset,
            "a record never ends at a segment boundary"
        );
        Ok(offset)
    }

    /// Appends bytes a master streamed, verbatim, at `offset`: the write position (or, in an
    /// empty log, any segment start). They may end mid-record but never cross a segment end.
    pub fn append_raw<D: Directory<Seg = S>>(
        &mut self,
        dir: &mut D,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let mismatch = |reason: String| StoreError::ReplicaMismatch { offset, reason };
        if self.segments.is_empty() {
            if !offset.is_multiple_of(self.segment_bytes) {
                return Err(mismatch(format!("an empty log starts at a segment start (size {})", self.segment_bytes)));
            }
            self.write_offset = offset;
            self.flushed_offset = offset;
        } else if offset != self.write_offset {
            return Err(mismatch(format!("the log ends at {}", self.write_offset)));
        }
        let len = data.len() as u64;
        if offset % self.segment_bytes + len > self.segment_bytes {
            return Err(mismatch(format!("{len} bytes would cross the segment end")));
        }
        if len == 0 {
            return Ok(());
        }
        if self.locate(offset).is_none() {
            self.segments.push((offset, dir.open_log_segment(&segment_path(offset), self.segment_bytes)?));
        }
        self.write(offset, data)?;
        self.write_offset = offset + len;
        Ok(())
    }

    /// Up to `max` bytes from `offset` for a slave: never past the write position or the end of
    /// the segment holding `offset`.
    pub fn read_raw(&self, offset: u64, max: usize) -> Result<Vec<u8>, StoreError> {
        let segment_end = self.segment_start_of(offset) + self.segment_bytes;
        let end = self.write_offset.min(segment_end).min(offset.saturating_add(max as u64));
        if end <= offset {
            return Ok(Vec::new());
        }
        self.read(offset, usize::try_from(end - offset).expect("bounded by max"))
    }

    /// Undoes the last append, which started at `offset` (its index entry could not be
    /// written). BLANK padding before it stays: it is valid on its own.
    pub fn rewind(&mut self, offset: u64) -> Result<(), StoreError> {
        assert!(offset <= self.write_offset, "rewind only undoes appends");
        let len = usize::try_from(self.write_offset - offset).expect("one record fits memory");
        self.write(offset, &vec![0u8; len])?;
        self.write_offset = offset;
        self.flushed_offset = self.flushed_offset.min(offset);
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let (i, pos) = self.locate(offset).expect("writes go to the last, open segment");
        self.uncommitted_from = Some(self.uncommitted_from.map_or(offset, |from| from.min(offset)));
        self.segments[i].1.write_at(pos, data)
    }

    /// Reads `len` bytes at `offset`, inside one segment.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let (i, pos) = self.locate(offset).ok_or(StoreError::OffsetNotStored {
            commit_log_offset: offset,
            min_offset: self.min_offset(),
            max_offset: self.write_offset,
        })?;
        let mut buf = vec![0u8; len];
        self.segments[i].1.read_at(pos, &mut buf)?;
        Ok(buf)
    }

    /// What lies at `offset`.
    pub fn slot(&self, offset: u64) -> Slot {
        let Some((_, pos)) = self.locate(offset) else {
            return Slot::Beyond;
        };
        let remaining = self.segment_bytes - pos;
        let Some(head) = (remaining >= END_BLANK_MIN_BYTES).then(|| self.read(offset, 8).ok()).flatten() else {
            return Slot::Invalid;
        };
        let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let magic = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if size == 0 && magic == 0 {
            return Slot::Zero;
        }
        if magic == MAGIC_BLANK {
            return if size as u64 == remaining {
                Slot::Blank { next_offset: offset + remaining }
            } else {
                Slot::Invalid
            };
        }
        // A record leaves at least a BLANK's room after it.
        match u64::try_from(size) {
            Ok(len) if len > 8 && len + END_BLANK_MIN_BYTES <= remaining => {
                self.read(offset, len as usize).map_or(Slot::Invalid, Slot::Record)
            }
            _ => Slot::Invalid,
        }
    }

    /// Hands whatever the segments staged to their files (see [`Segment::commit`]): every
    /// segment written since the last commit (one batch may roll over several small ones).
    /// Nothing to do, and no segment visited, when nothing was written.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        let Some(from) = self.uncommitted_from else { return Ok(()) };
        let first = self.locate(from).map_or(0, |(i, _)| i);
        for (_, seg) in &mut self.segments[first..] {
            seg.commit()?;
        }
        self.uncommitted_from = None;
        Ok(())
    }

    /// Flushes `[flushed, write)` in place; returns the new flushed offset.
    pub fn flush(&mut self) -> Result<u64, StoreError> {
        let (from, to) = (self.flushed_offset, self.write_offset);
        for (i, pos, len) in self.ranges(from, to) {
            self.segments[i].1.flush_range(pos, len)?;
        }
        self.flushed_offset = to;
        Ok(to)
    }

    /// Detached flush work for `[flushed, write)` (segments that flush in place do so now);
    /// returns the offset durable once the jobs ran. Report it with [`Self::complete_flush`].
    pub fn begin_flush(&mut self) -> Result<(u64, Vec<FlushJob>), StoreError> {
        let (from, to) = (self.flushed_offset, self.write_offset);
        let mut jobs = Vec::new();
        for (i, pos, len) in self.ranges(from, to) {
            let seg = &mut self.segments[i].1;
            seg.commit()?;
            match seg.detached_flush(pos, len) {
                Some(job) => jobs.push(job),
                None => seg.flush_range(pos, len)?,
            }
        }
        Ok((to, jobs))
    }

    /// A flush up to `offset` completed.
    pub fn complete_flush(&mut self, offset: u64) {
        assert!(offset <= self.write_offset, "a flush reported beyond the write position");
        self.flushed_offset = self.flushed_offset.max(offset);
    }

    /// (segment index, position, length) pieces of `[from, to)`.
    fn ranges(&self, from: u64, to: u64) -> Vec<(usize, u64, u64)> {
        let mut out = Vec::new();
        if from >= to {
            return out;
        }
        for (i, (start, _)) in self.segments.iter().enumerate() {
            let end = start + self.segment_bytes;
            if end > from && *start < to {
                let a = from.max(*start) - start;
                out.push((i, a, to.min(end) - start - a));
            }
        }
        out
    }

    /// Makes `end` the write position after recovery: zeroes every byte after it in its segment
    /// and removes later segments, then flushes, so no stale record can reappear after a later
    /// crash. `[durable_below, end)` is flushed too: recovery read it, but after a process crash
    /// it may only have been in the page cache. Returns how many non-zero bytes were discarded.
    pub fn truncate_to<D: Directory<Seg = S>>(
        &mut self,
        dir: &mut D,
        durable_below: u64,
        end: u64,
    ) -> Result<u64, StoreError> {
        let mut discarded = 0;
        // A segment starting at `end` holds nothing valid: drop it too (appends reopen it).
        while let Some(&(start, _)) =
            self.segments.last().filter(|(start, _)| *start >= end && *start > self.min_offset())
        {
            let (_, seg) = self.segments.pop().expect("checked non-empty");
            discarded += count_nonzero(&seg, 0)?;
            drop(seg);
            dir.remove(&segment_path(start))?;
        }
        if let Some((i, pos)) = self.locate(end) {
            let seg = &mut self.segments[i].1;
            discarded += zero_tail(seg, pos)?;
            seg.flush_range(pos, self.segment_bytes - pos)?;
        }
        self.write_offset = end;
        self.flushed_offset = durable_below.clamp(self.min_offset().min(end), end);
        self.flush()?;
        Ok(discarded)
    }

    /// Checks positions and segment layout (cheap; called after every simulated step).
    pub fn assert_invariants(&self) {
        assert!(self.flushed_offset <= self.write_offset, "flushed beyond the write position");
        for pair in self.segments.windows(2) {
            assert_eq!(pair[0].0 + self.segment_bytes, pair[1].0, "CommitLog segments are contiguous");
        }
        if let Some((start, _)) = self.segments.last() {
            assert!(self.write_offset >= self.min_offset(), "write position below the log");
            assert!(self.write_offset <= start + self.segment_bytes, "write position beyond the last segment");
        }
    }
}

const CHUNK_BYTES: usize = 64 * 1024;

fn count_nonzero<S: Segment>(seg: &S, pos: u64) -> Result<u64, StoreError> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let (mut at, mut count) = (pos, 0);
    while at < seg.capacity_bytes() {
        let n = (seg.capacity_bytes() - at).min(CHUNK_BYTES as u64) as usize;
        seg.read_at(at, &mut buf[..n])?;
        count += buf[..n].iter().filter(|b| **b != 0).count() as u64;
        at += n as u64;
    }
    Ok(count)
}

/// Zeroes every non-zero chunk from `pos` to the segment's end; returns the non-zero bytes.
fn zero_tail<S: Segment>(seg: &mut S, pos: u64) -> Result<u64, StoreError> {
    let (mut buf, zeros) = (vec![0u8; CHUNK_BYTES], vec![0u8; CHUNK_BYTES]);
    let (mut at, mut discarded) = (pos, 0);
    while at < seg.capacity_bytes() {
        let n = (seg.capacity_bytes() - at).min(CHUNK_BYTES as u64) as usize;
        seg.read_at(at, &mut buf[..n])?;
        let nonzero = buf[..n].iter().filter(|b| **b != 0).count() as u64;
        if nonzero > 0 {
            discarded += nonzero;
            seg.write_at(at, &zeros[..n])?;
        }
        at += n as u64;
    }
    Ok(discarded)
}
