//! The CommitLog: one append-only log of stored-message records for every topic, split into
//! fixed-size segments named by their 20-digit start offset. A record that does not fit in
//! what is left of a segment (it needs `len + 8` bytes) is preceded by a BLANK record filling
//! the segment, and goes to the next one.

use rmq_proto::message::MAGIC_BLANK;

use crate::segment::{Directory, Segment};
use crate::StoreError;

/// Directory of CommitLog segments.
pub const COMMITLOG_DIR: &str = "commitlog";
/// Bytes that must stay free at a segment's end for a BLANK record.
pub const END_BLANK_MIN_BYTES: u64 = 8;

/// Segment file name for a start offset.
pub fn segment_name(start: u64) -> String {
    format!("{start:020}")
}

/// The log and its write and flush positions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitLog<S> {
    /// (start offset, segment), ascending and contiguous.
    segments: Vec<(u64, S)>,
    segment_bytes: u64,
    write_offset: u64,
    flushed_offset: u64,
}

/// What lies at a CommitLog offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// A record of this many bytes (not yet validated).
    Record(Vec<u8>),
    /// Blank padding: the next record starts at this offset.
    Blank(u64),
    /// Zeros, garbage, or beyond the log.
    Nothing,
}

impl<S: Segment> CommitLog<S> {
    /// An empty log.
    pub fn new(segment_bytes: u64) -> Self {
        CommitLog { segments: Vec::new(), segment_bytes, write_offset: 0, flushed_offset: 0 }
    }

    /// Opens the existing segments (recovery decides the write offset afterwards).
    pub fn load<D: Directory<Seg = S>>(dir: &mut D, segment_bytes: u64) -> Result<Self, StoreError> {
        let mut log = Self::new(segment_bytes);
        for name in dir.list(COMMITLOG_DIR)? {
            let Ok(start) = name.parse::<u64>() else { continue };
            if start % segment_bytes != 0 {
                continue;
            }
            let seg = dir.open_segment(&format!("{COMMITLOG_DIR}/{name}"), segment_bytes)?;
            log.segments.push((start, seg));
        }
        // Keep only the contiguous run from the first segment.
        let mut expect = log.segments.first().map_or(0, |s| s.0);
        let mut keep = 0;
        for (start, _) in &log.segments {
            if *start != expect {
                break;
            }
            keep += 1;
            expect += segment_bytes;
        }
        log.segments.truncate(keep);
        let first = log.segments.first().map_or(0, |s| s.0);
        log.write_offset = first;
        log.flushed_offset = first;
        Ok(log)
    }

    /// Segment size.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Next write position.
    pub fn write_offset(&self) -> u64 {
        self.write_offset
    }

    /// Durable position reported by the last flush.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset
    }

    /// Smallest offset held.
    pub fn min_offset(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.0)
    }

    /// Start offsets of the segments.
    pub fn segment_starts(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.0).collect()
    }

    fn locate(&self, offset: u64) -> Option<(usize, u64)> {
        let first = self.segments.first()?.0;
        if offset < first {
            return None;
        }
        let i = ((offset - first) / self.segment_bytes) as usize;
        (i < self.segments.len()).then(|| (i, offset - self.segments[i].0))
    }

    fn ensure_segment<D: Directory<Seg = S>>(&mut self, dir: &mut D, start: u64) -> Result<usize, StoreError> {
        if let Some((i, 0)) = self.locate(start) {
            return Ok(i);
        }
        let seg = dir.open_segment(&format!("{COMMITLOG_DIR}/{}", segment_name(start)), self.segment_bytes)?;
        self.segments.push((start, seg));
        Ok(self.segments.len() - 1)
    }

    /// Where a record of `len` bytes will be written, padding and rolling as needed.
    pub fn reserve<D: Directory<Seg = S>>(&mut self, dir: &mut D, len: u64) -> Result<u64, StoreError> {
        assert!(len + END_BLANK_MIN_BYTES <= self.segment_bytes, "callers check record size against the segment");
        let in_seg = self.write_offset % self.segment_bytes;
        if in_seg == 0 {
            self.ensure_segment(dir, self.write_offset)?;
            return Ok(self.write_offset);
        }
        let remaining = self.segment_bytes - in_seg;
        if len + END_BLANK_MIN_BYTES <= remaining {
            return Ok(self.write_offset);
        }
        let mut blank = [0u8; 8];
        blank[..4].copy_from_slice(&(remaining as i32).to_be_bytes());
        blank[4..].copy_from_slice(&MAGIC_BLANK.to_be_bytes());
        self.write(self.write_offset, &blank)?;
        self.write_offset += remaining;
        self.ensure_segment(dir, self.write_offset)?;
        Ok(self.write_offset)
    }

    /// Writes a record at the reserved offset and advances the write position.
    pub fn append_at(&mut self, offset: u64, record: &[u8]) -> Result<(), StoreError> {
        assert_eq!(offset, self.write_offset, "records are appended at the write position");
        self.write(offset, record)?;
        self.write_offset += record.len() as u64;
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let (i, pos) = self.locate(offset).ok_or(StoreError::OutOfBounds {
            pos: offset,
            len: data.len() as u64,
            capacity_bytes: 0,
        })?;
        self.segments[i].1.write_at(pos, data)
    }

    /// Reads `len` bytes at `offset` (within one segment).
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let (i, pos) =
            self.locate(offset).ok_or(StoreError::OutOfBounds { pos: offset, len: len as u64, capacity_bytes: 0 })?;
        let mut buf = vec![0u8; len];
        self.segments[i].1.read_at(pos, &mut buf)?;
        Ok(buf)
    }

    /// What lies at `offset`, by its size and magic fields only.
    pub fn slot(&self, offset: u64) -> Slot {
        let Some((_, pos)) = self.locate(offset) else { return Slot::Nothing };
        let remaining = self.segment_bytes - pos;
        if remaining < END_BLANK_MIN_BYTES {
            return Slot::Nothing;
        }
        let Ok(head) = self.read(offset, 8) else { return Slot::Nothing };
        let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let magic = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if magic == MAGIC_BLANK && size as u64 == remaining {
            return Slot::Blank(offset + remaining);
        }
        if size < 8 || size as u64 > remaining {
            return Slot::Nothing;
        }
        match self.read(offset, size as usize) {
            Ok(r) => Slot::Record(r),
            Err(_) => Slot::Nothing,
        }
    }

    /// Flush jobs covering `[flushed, write)` and the offset they make durable; segments that
    /// cannot flush detached are flushed here. Report completion with [`Self::mark_flushed`].
    pub fn begin_flush(&mut self) -> Result<(u64, Vec<crate::segment::FlushJob>), StoreError> {
        let (from, to) = (self.flushed_offset, self.write_offset);
        let mut jobs = Vec::new();
        for (start, seg) in self.segments.iter_mut() {
            let end = *start + self.segment_bytes;
            if end <= from || *start >= to {
                continue;
            }
            let a = from.max(*start) - *start;
            let b = to.min(end) - *start;
            match seg.detached_flush(a, b - a) {
                Some(job) => jobs.push(job),
                None => seg.flush_range(a, b - a)?,
            }
        }
        Ok((to, jobs))
    }

    /// Records that a flush up to `offset` completed.
    pub fn mark_flushed(&mut self, offset: u64) {
        assert!(offset <= self.write_offset, "flushed beyond the write position");
        self.flushed_offset = self.flushed_offset.max(offset);
    }

    /// Flushes `[flushed, write)`; returns the new flushed offset.
    pub fn flush(&mut self) -> Result<u64, StoreError> {
        let (from, to) = (self.flushed_offset, self.write_offset);
        for (start, seg) in self.segments.iter_mut() {
            let end = *start + self.segment_bytes;
            if end <= from || *start >= to {
                continue;
            }
            let a = from.max(*start) - *start;
            let b = to.min(end) - *start;
            seg.flush_range(a, b - a)?;
        }
        self.flushed_offset = to;
        Ok(to)
    }

    /// Sets the write position after recovery, zeroing stale bytes after it in its segment and
    /// dropping later segments. Returns how many non-zero bytes were discarded.
    pub fn truncate_to<D: Directory<Seg = S>>(&mut self, dir: &mut D, end: u64) -> Result<u64, StoreError> {
        let mut discarded = 0;
        while self.segments.last().is_some_and(|(s, _)| *s > end || (*s == end && end != self.min_offset())) {
            let (start, _) = self.segments.pop().expect("checked non-empty");
            dir.remove(&format!("{COMMITLOG_DIR}/{}", segment_name(start)))?;
            discarded += self.segment_bytes;
        }
        if let Some((i, pos)) = self.locate(end) {
            discarded += zero_tail(&mut self.segments[i].1, pos)?;
            self.segments[i].1.flush_range(pos, self.segment_bytes - pos)?;
        }
        self.write_offset = end;
        self.flushed_offset = end;
        Ok(discarded)
    }
}

/// Zeroes every non-zero 64 KiB chunk from `pos` to the segment's end.
fn zero_tail<S: Segment>(seg: &mut S, pos: u64) -> Result<u64, StoreError> {
    const CHUNK: u64 = 64 * 1024;
    let cap = seg.capacity_bytes();
    let mut at = pos;
    let mut discarded = 0;
    let mut buf = vec![0u8; CHUNK as usize];
    let zeros = vec![0u8; CHUNK as usize];
    while at < cap {
        let n = CHUNK.min(cap - at) as usize;
        seg.read_at(at, &mut buf[..n])?;
        if buf[..n].iter().any(|b| *b != 0) {
            discarded += buf[..n].iter().filter(|b| **b != 0).count() as u64;
            seg.write_at(at, &zeros[..n])?;
        }
        at += n as u64;
    }
    Ok(discarded)
}
