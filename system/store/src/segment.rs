//! The storage seam: fixed-size segments, the directory that opens them, and detachable
//! flush work. Production implementations are in [`crate::mmap`], in-memory ones in
//! [`crate::mem`]; a page-cache simulation lives in `sim/`.
//!
//! # Durability contract
//! - A [`Segment::write_at`] is visible to reads at once but durable only after a
//!   [`Segment::flush_range`] covering it has completed (or a [`FlushJob`] for it ran, after a
//!   [`Segment::commit`]). A segment may stage writes in memory until its next commit: the
//!   store commits before anything it wrote is acknowledged ([`crate::MessageStore::commit`]),
//!   so an acknowledged write is in the page cache, as it would be had it been written at once.
//! - [`Directory::write_file`] must not become durable before the `flush_range` calls issued
//!   earlier through the same directory have: the store writes its checkpoint *after* flushing
//!   the data the checkpoint vouches for. (Real files: msync is synchronous, so this holds.)
//! - Creating and removing files is durable when the call returns.
//! - A write torn by a crash loses whole 512-byte sectors, never a few bytes: record headers
//!   carry no checksum (RocketMQ's body CRC covers the body only), and the recovery checks
//!   (size, magic, position, body CRC, queue-offset continuity) rely on a lost range being
//!   wider than the unchecked header fields between MAGICCODE and the body length (76 bytes,
//!   100 with IPv6 hosts).

use std::fmt;

use crate::StoreError;

/// Page size assumed for pre-faulting.
pub const PAGE_BYTES: u64 = 4096;

/// A fixed-size, zero-initialised region of storage (one CommitLog or ConsumeQueue file).
pub trait Segment: fmt::Debug {
    /// Size in bytes.
    fn capacity_bytes(&self) -> u64;
    /// Writes `data` at `pos` (bounds-checked).
    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError>;
    /// Reads `buf.len()` bytes at `pos` (bounds-checked).
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), StoreError>;
    /// Asks for `[pos, pos + len)` to become durable (committing staged writes first). For
    /// mmap: msync. A simulated disk may complete it later.
    fn flush_range(&mut self, pos: u64, len: u64) -> Result<(), StoreError>;
    /// Hands writes staged in memory to the file, where they survive a process crash (the
    /// page cache). A segment may stage [`Segment::write_at`]s (the mmap CommitLog does, so a
    /// loop batch's records reach the file in one `pwrite`); reads see staged bytes at once.
    /// The default stages nothing.
    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Pre-faults pages into memory (RocketMQ's `load()`).
    fn preload(&mut self) {}
    /// Whether the pages are resident (RocketMQ's `isLoaded()`), best effort.
    fn is_loaded(&self) -> bool {
        true
    }
    /// The flush of `[pos, pos + len)` as a job that can run away from the segment (on another
    /// thread) while the owner keeps writing elsewhere in it (group commit); `None` when the
    /// segment only flushes in place, which is the default. Covers committed bytes only: the
    /// caller commits first.
    fn detached_flush(&self, _pos: u64, _len: u64) -> Option<FlushJob> {
        None
    }
}

/// A directory of named segments and small files; the runtime supplies the implementation.
/// Paths are relative and use `/`.
pub trait Directory: fmt::Debug {
    /// The segment type.
    type Seg: Segment;
    /// Opens (creating zero-filled if absent) the segment at relative path `path` with `size`
    /// bytes.
    fn open_segment(&mut self, path: &str, size: u64) -> Result<Self::Seg, StoreError>;
    /// Opens a segment that is written append-only and flushed from its flushed position to
    /// its write position (a CommitLog file). Same contract as [`Self::open_segment`]; an
    /// implementation may write it by another path into the same cache (the mmap directory
    /// writes it through the file and flushes it with fdatasync). Defaults to `open_segment`.
    fn open_log_segment(&mut self, path: &str, size: u64) -> Result<Self::Seg, StoreError> {
        self.open_segment(path, size)
    }
    /// Opens a segment written in order from its start and read only below what was written
    /// (a ConsumeQueue file). Same contract as [`Self::open_segment`]; an implementation may
    /// reserve its storage as writes approach. Defaults to `open_segment`.
    fn open_queue_segment(&mut self, path: &str, size: u64) -> Result<Self::Seg, StoreError> {
        self.open_segment(path, size)
    }
    /// Work that makes the log segment at `path` ready before [`Self::open_log_segment`] is
    /// asked for it (RocketMQ's `warmMapedFileEnable`, done ahead like its allocate service):
    /// run it anywhere; it never fails (if it cannot finish, the segment is created at open as
    /// usual). The file appears complete and zero-filled or not at all; once it exists, opening
    /// it only maps it. `None` (the default) when there is nothing to gain.
    fn prepare_log_segment(&self, _path: &str, _size: u64) -> Option<FlushJob> {
        None
    }
    /// Names (not paths) of entries directly under relative dir `dir`, sorted; empty if absent.
    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError>;
    /// Removes a file (absent is fine).
    fn remove(&mut self, path: &str) -> Result<(), StoreError>;
    /// Reads a whole small file (config JSON, checkpoint); `None` if absent.
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Atomically replaces a small file (tmp + fsync + rename + directory fsync for real files).
    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// The share of the disk holding the directory that is in use, 0.0 to 1.0 (what
    /// `diskMaxUsedSpaceRatio` is compared with); `None` when it cannot be measured, as for
    /// storage with no fixed size.
    fn used_space_ratio(&self) -> Option<f64> {
        None
    }
}

/// Flush work detached from a segment: run it anywhere (a blocking thread), then report the
/// flush the store asked for as complete. Dropping it unrun means the flush never happened.
pub struct FlushJob(Box<dyn FnOnce() -> Result<(), StoreError> + Send>);

impl FlushJob {
    /// Wraps the work (an msync of a shared mapping, say).
    pub fn new(task: impl FnOnce() -> Result<(), StoreError> + Send + 'static) -> Self {
        FlushJob(Box::new(task))
    }

    /// Performs the flush (blocking).
    pub fn run(self) -> Result<(), StoreError> {
        (self.0)()
    }
}

impl fmt::Debug for FlushJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FlushJob")
    }
}

/// The `[start, end)` byte range of an access of `len` bytes at `pos`, if inside `capacity_bytes`.
pub(crate) fn bounds(pos: u64, len: u64, capacity_bytes: u64) -> Result<(usize, usize), StoreError> {
    match pos.checked_add(len).filter(|end| *end <= capacity_bytes) {
        // Capacities are usize-sized allocations or mappings, so the casts are lossless.
        Some(end) => Ok((pos as usize, end as usize)),
        None => Err(StoreError::OutOfBounds { pos, len_bytes: len, capacity_bytes }),
    }
}
