//! Production storage: segments are memory-mapped files under a root directory
//! (RocketMQ's `storePathRootDir`).
//!
//! Two write paths, one page cache:
//! - [`Directory::open_queue_segment`] (ConsumeQueues) and [`Directory::open_segment`] (index
//!   files): writes are copies into the mapping, flushes are msync of the range. The descriptor
//!   is closed once mapped, so tens of thousands of queue files cost no descriptors; queue files
//!   reserve their blocks as writes approach, index files all at once.
//! - [`Directory::open_log_segment`] (the CommitLog): writes are staged in memory and handed
//!   to the file by [`Segment::commit`] in one `pwrite` (the broker commits once per loop
//!   batch, before it answers), into the same page cache the mapping reads; flushes commit,
//!   then `fdatasync`. Copying into a fresh mapping takes a page fault per 4 KiB (the kernel
//!   zero-fills the page first) and, after every msync has cleaned the pages, a write-protect
//!   fault on the next write; on this project's machines that made a 64 KiB write + msync five
//!   to ten times slower than write + fdatasync. A `pwrite` per record still zeroed the rest of
//!   each fresh block (9-14 % of the broker's CPU); whole batches write whole blocks. RocketMQ
//!   sidesteps the same costs with `transientStorePoolEnable` (stage in pooled buffers, commit
//!   with a file write, then force). Both paths keep the durability contract of
//!   [`crate::segment`]: a write is in the page cache (and survives a process crash) when the
//!   call returns, or for the log when the next commit returns, and durable after the flush.
//!
//! The mapping (and the log's file) is shared (`Arc`) so a [`FlushJob`] can flush on another
//! thread while the store keeps appending elsewhere in the same file; only the store's thread
//! ever writes.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapRaw;

use crate::segment::{bounds, Directory, FlushJob, Segment, PAGE_BYTES};
use crate::StoreError;

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io { path: path.display().to_string(), source }
}

/// Makes a directory's entries (created, renamed, removed files) durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(dir, e))
}

/// Reserves disk blocks for `[offset, offset + len)` of `file`, inside its length. File
/// systems without fallocate support keep the range sparse.
fn allocate_range(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let off = |v: u64| libc::off_t::try_from(v).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput));
    // SAFETY: posix_fallocate on a descriptor we own; no memory is passed.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), off(offset)?, off(len)?) } {
        0 | libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        code => Err(std::io::Error::from_raw_os_error(code)),
    }
}

/// How a segment is allocated and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Fully allocated, written and flushed through the file (the CommitLog).
    Log,
    /// Blocks reserved as writes approach, written through the mapping (ConsumeQueues).
    Queue,
    /// Fully allocated, written through the mapping (index files: slots are read and written
    /// anywhere, and on tmpfs even reading a hole through a mapping takes a page, which a full
    /// file system answers with SIGBUS).
    Whole,
}

/// Blocks reserved at a time for a queue segment: a ConsumeQueue of 300,000
/// entries is 6 MB, and a broker with 50,000 topics of 4 queues would reserve 1.2 TB up front.
/// Reserving as writes approach keeps the guarantee (a page written through the mapping
/// always has its block, so a full disk is an error, never a SIGBUS) at the size written.
const RESERVE_CHUNK_BYTES: u64 = 64 * 1024;

/// Creates `path` holding `size` zero bytes, written and made durable. The zeros go to the
/// disk with direct I/O from one aligned buffer, not through the page cache: a buffered fill
/// allocates, copies and writes back every page of the segment on the broker's cores while it
/// serves (a 256 MiB segment cost SYNC_FLUSH sends ~10 % of their rate on two cores). Where
/// direct I/O is refused (tmpfs; a length that is not a whole number of blocks), the rest is
/// written buffered.
fn zero_fill(path: &Path, size: u64) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const CHUNK: usize = 1 << 20;
    const ALIGN: usize = 4096;
    let mut direct =
        OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path).ok();
    let file = OpenOptions::new().write(true).create(true).truncate(direct.is_none()).open(path)?;
    let zeros = vec![0u8; CHUNK + ALIGN];
    let lead = zeros.as_ptr().align_offset(ALIGN);
    let zeros = &zeros[lead..lead + CHUNK];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(CHUNK as u64) as usize;
        if let Some(d) = direct.as_ref().filter(|_| n.is_multiple_of(ALIGN)) {
            match d.write_all_at(&zeros[..n], at) {
                Ok(()) => {
                    at += n as u64;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => direct = None,
                Err(e) => return Err(e),
            }
        }
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()
}

/// ENOSPC or EDQUOT: no room on the disk (or in the quota).
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// A memory-mapped file of fixed size. The file descriptor is closed once mapped.
#[derive(Debug)]
pub struct MmapSegment {
    /// The mapping, shared with detached flush jobs.
    map: Arc<MmapRaw>,
    /// The file, for errors.
    path: String,
    /// Set by [`Segment::preload`].
    loaded: bool,
    /// Kept open for log segments: writes are `pwrite`s and flushes `fdatasync`s of it.
    file: Option<Arc<File>>,
    /// Disk blocks are reserved below this (the whole file for log segments); a mapped write
    /// past it reserves the next [`RESERVE_CHUNK_BYTES`] first.
    reserved_to: u64,
    /// Log segments: bytes written since the last [`Segment::commit`], handed to the file in one
    /// `pwrite` (RocketMQ's transientStorePool commit step), starting at `staged_at`.
    staged: Vec<u8>,
    staged_at: u64,
}

/// A log segment commits what it staged before the staging buffer would grow past this (one
/// broker loop batch is committed at its end, so this only bounds a batch of large messages).
const STAGE_MAX_BYTES: usize = 1 << 20;

impl MmapSegment {
    /// Reserves blocks up to `end` (rounded up to a chunk) before a mapped write reaches them.
    fn reserve(&mut self, end: u64) -> Result<(), StoreError> {
        let to = end.div_ceil(RESERVE_CHUNK_BYTES).saturating_mul(RESERVE_CHUNK_BYTES).min(self.capacity_bytes());
        let file = OpenOptions::new().write(true).open(&self.path).map_err(|e| self.error(e))?;
        allocate_range(&file, self.reserved_to, to - self.reserved_to).map_err(|e| self.error(e))?;
        self.reserved_to = to;
        Ok(())
    }

    fn staged_end(&self) -> u64 {
        self.staged_at + self.staged.len() as u64
    }

    /// Stages a log write: appended to (or written over) the staged bytes when it starts inside
    /// or right after them, else after committing them.
    fn stage(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError> {
        let inside = (self.staged_at..=self.staged_end()).contains(&pos);
        if !self.staged.is_empty() && (!inside || self.staged.len() + data.len() > STAGE_MAX_BYTES) {
            self.commit()?;
        }
        if self.staged.is_empty() {
            self.staged_at = pos;
        }
        let at = (pos - self.staged_at) as usize;
        let overlap = (self.staged.len() - at).min(data.len());
        self.staged[at..at + overlap].copy_from_slice(&data[..overlap]);
        self.staged.extend_from_slice(&data[overlap..]);
        Ok(())
    }

    fn error(&self, e: std::io::Error) -> StoreError {
        if is_disk_full(&e) {
            StoreError::DiskFull { path: self.path.clone(), source: e }
        } else {
            io_err(Path::new(&self.path), e)
        }
    }
}

/// Flushes `[start, end)` of a segment: `fdatasync` of the whole file for log segments (their
/// only dirty pages are the unflushed tail), msync of the range otherwise.
fn flush(map: &MmapRaw, file: Option<&File>, path: &str, start: usize, end: usize) -> Result<(), StoreError> {
    if start == end {
        return Ok(());
    }
    match file {
        Some(f) => f.sync_data(),
        None => map.flush_range(start, end - start),
    }
    .map_err(|e| io_err(Path::new(path), e))
}

impl Drop for MmapSegment {
    /// A segment closed with bytes staged (a store dropped without its final flush) hands them
    /// to the file: a dropped store loses no more than a crashed process's page cache would.
    fn drop(&mut self) {
        let _ = self.commit();
    }
}

impl Segment for MmapSegment {
    fn capacity_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError> {
        let (start, _) = bounds(pos, data.len() as u64, self.capacity_bytes())?;
        if self.file.is_some() {
            return self.stage(pos, data);
        }
        // `>=`: the entry after the last one written is always reserved too, so recovery's scan
        // for the end of a queue never reads an unreserved hole (on tmpfs that takes a page).
        let end = pos + data.len() as u64;
        if end >= self.reserved_to && self.reserved_to < self.capacity_bytes() {
            self.reserve(end + 1)?;
        }
        // SAFETY: the range is inside the mapping (checked above) and the file is never
        // truncated while mapped. Only this segment's owner writes through the mapping and it
        // holds `&mut self`; flush jobs only msync, so no Rust reference aliases these bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.as_mut_ptr().add(start), data.len()) };
        Ok(())
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let (start, _) = bounds(pos, buf.len() as u64, self.capacity_bytes())?;
        // SAFETY: in bounds (checked); writes happen only through `&mut self`, so none runs
        // concurrently with this `&self` read.
        unsafe { std::ptr::copy_nonoverlapping(self.map.as_ptr().add(start), buf.as_mut_ptr(), buf.len()) };
        // What is staged and not committed yet is newer than the file.
        let (from, to) = (pos.max(self.staged_at), (pos + buf.len() as u64).min(self.staged_end()));
        if from < to {
            let (b, s) = ((from - pos) as usize, (from - self.staged_at) as usize);
            let n = (to - from) as usize;
            buf[b..b + n].copy_from_slice(&self.staged[s..s + n]);
        }
        Ok(())
    }

    fn flush_range(&mut self, pos: u64, len: u64) -> Result<(), StoreError> {
        let (start, end) = bounds(pos, len, self.capacity_bytes())?;
        self.commit()?;
        flush(&self.map, self.file.as_deref(), &self.path, start, end)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let Some(f) = &self.file else { return Ok(()) };
        if self.staged.is_empty() {
            return Ok(());
        }
        use std::os::unix::fs::FileExt;
        // Zeros to the end of the last page go with the batch (past the write position the log
        // holds zeros anyway): a write that covers whole pages never reads one in first, which
        // a partial page of a zero-filled segment not in the page cache would (it is written on
        // disk, so the kernel reads it; only an unwritten block reads as zeros for free).
        let held = self.staged.len();
        let end = self.staged_at + held as u64;
        let padded_end = end.next_multiple_of(PAGE_BYTES).min(self.capacity_bytes());
        self.staged.resize(held + (padded_end - end) as usize, 0);
        // Inside the file's allocated length (the mapping's), so nothing grows it. On failure the
        // bytes stay staged (and readable) for the next commit.
        let written = f.write_all_at(&self.staged, self.staged_at);
        self.staged.truncate(held);
        written.map_err(|e| self.error(e))?;
        self.staged.clear();
        Ok(())
    }

    fn preload(&mut self) {
        let mut sum = 0u8;
        for pos in (0..self.map.len()).step_by(PAGE_BYTES as usize) {
            // SAFETY: `pos` < len; a volatile read so the page fault is not optimised away.
            sum = sum.wrapping_add(unsafe { std::ptr::read_volatile(self.map.as_ptr().add(pos)) });
        }
        std::hint::black_box(sum);
        self.loaded = true;
    }

    fn is_loaded(&self) -> bool {
        self.loaded
    }

    fn detached_flush(&self, pos: u64, len: u64) -> Option<FlushJob> {
        let (start, end) = bounds(pos, len, self.capacity_bytes()).ok()?;
        let (map, file, path) = (Arc::clone(&self.map), self.file.clone(), self.path.clone());
        Some(FlushJob::new(move || flush(&map, file.as_deref(), &path, start, end)))
    }
}

/// Segments as memory-mapped files under `root`; parent directories are created on demand.
#[derive(Debug, Clone)]
pub struct MmapDirectory {
    /// Root directory (storePathRootDir).
    pub root: PathBuf,
    /// The exclusive lock on `root/lock` ([`MmapDirectory::open_exclusive`]), held as long as
    /// any clone of this directory lives; `None` for unlocked directories (tests, tools).
    lock: Option<Arc<File>>,
}

/// The file in the store root a running broker holds locked (RocketMQ's `storePathRootDir/lock`).
pub const LOCK_FILE: &str = "lock";

impl MmapDirectory {
    /// Whether this directory holds the store lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// A directory over `root` without the store lock (tests and offline tools).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        MmapDirectory { root: root.into(), lock: None }
    }

    /// Creates `root` if needed and takes an exclusive `flock` on `root/lock`, writing `holder`
    /// (e.g. pid and listen address) into it. A second process on the same root gets
    /// [`StoreError::Locked`] naming the path and the holder; the lock ends with the process.
    pub fn open_exclusive(root: impl Into<PathBuf>, holder: &str) -> Result<Self, StoreError> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
        let path = root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io_err(&path, err));
            }
            let mut holder = String::new();
            // Best effort: the holder text is only for the error message.
            let _ = file.read_to_string(&mut holder);
            return Err(StoreError::Locked { path: path.display().to_string(), holder: holder.trim().to_string() });
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .map_err(|e| io_err(&path, e))?;
        Ok(MmapDirectory { root, lock: Some(Arc::new(file)) })
    }

    fn full(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Creates `dir` and its missing ancestors, making each new entry durable.
    fn create_dirs(&self, dir: &Path) -> Result<(), StoreError> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.create_dirs(parent)?;
        }
        std::fs::create_dir(dir).or_else(|e| if dir.is_dir() { Ok(()) } else { Err(e) }).map_err(|e| io_err(dir, e))?;
        dir.parent().map_or(Ok(()), sync_dir)
    }

    fn parent_of(full: &Path) -> &Path {
        full.parent().expect("paths under the root have a parent")
    }
}

impl MmapDirectory {
    /// Opens (creating and allocating if absent) and maps a segment; keeps the descriptor when
    /// `Kind::Log` (written through it).
    fn open(&mut self, path: &str, size: u64, kind: Kind) -> Result<MmapSegment, StoreError> {
        let keep_file = kind == Kind::Log;
        let full = self.full(path);
        self.create_dirs(Self::parent_of(&full))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&full)
            .map_err(|e| io_err(&full, e))?;
        let actual_bytes = file.metadata().map_err(|e| io_err(&full, e))?.len();
        let mut reserved_to = 0;
        if actual_bytes == 0 {
            // New (or created but never sized before a crash): size it and make that durable.
            // Blocks are allocated before mapping (a log segment's all at once, a mapped
            // segment's first chunk, the rest as writes approach), so a full disk fails with an
            // error the broker answers, never with a SIGBUS on a later page write.
            reserved_to = if kind == Kind::Queue { size.min(RESERVE_CHUNK_BYTES) } else { size };
            let sized = file.set_len(size).and_then(|()| allocate_range(&file, 0, reserved_to));
            if let Err(e) = sized {
                // Leave no zero-length file behind: the next attempt starts clean.
                let _ = std::fs::remove_file(&full);
                return Err(if is_disk_full(&e) {
                    StoreError::DiskFull { path: full.display().to_string(), source: e }
                } else {
                    io_err(&full, e)
                });
            }
            file.sync_all().map_err(|e| io_err(&full, e))?;
            sync_dir(Self::parent_of(&full))?;
        } else if actual_bytes != size {
            let path = full.display().to_string();
            return Err(StoreError::SegmentSizeMismatch { path, expected_bytes: size, actual_bytes });
        }
        let map = MmapRaw::map_raw(&file).map_err(|e| io_err(&full, e))?;
        if kind == Kind::Queue {
            // No read-around on a fault. A queue write lands on a page that is often not in
            // the page cache yet; by default the fault reads (for unwritten blocks: zero-fills)
            // a readahead window of 128 KiB or more around it. With 10,000 topics that is
            // 10,000 windows for 20-byte entries, refaulted over and over once the page cache
            // evicts them: 222 µs per send instead of 7.5 in `examples/broker_core_probe.rs`'s
            // first round. A queue is read in order, but after its writes, from the cache.
            // (Index files keep read-around: random slots, yet the probe ran slower without.)
            map.advise(memmap2::Advice::Random).map_err(|e| io_err(&full, e))?;
        }
        // Unless kept, `file` drops here: the mapping stays valid without the descriptor.
        let file = keep_file.then(|| Arc::new(file));
        // A reopened queue segment re-reserves from 0 on its first write (a no-op where blocks
        // exist); the others are fully allocated when created.
        if kind != Kind::Queue {
            reserved_to = size;
        }
        Ok(MmapSegment {
            map: Arc::new(map),
            path: full.display().to_string(),
            loaded: false,
            file,
            reserved_to,
            staged: Vec::new(),
            staged_at: 0,
        })
    }
}

impl Directory for MmapDirectory {
    type Seg = MmapSegment;

    fn open_segment(&mut self, path: &str, size: u64) -> Result<MmapSegment, StoreError> {
        self.open(path, size, Kind::Whole)
    }

    fn open_log_segment(&mut self, path: &str, size: u64) -> Result<MmapSegment, StoreError> {
        self.open(path, size, Kind::Log)
    }

    fn open_queue_segment(&mut self, path: &str, size: u64) -> Result<MmapSegment, StoreError> {
        self.open(path, size, Kind::Queue)
    }

    /// Writes zeros through the whole file (under a `.tmp` name, then linked into place): its
    /// extents are then written, not merely allocated, so an fdatasync after an append has
    /// only the data to write, where an allocated-but-unwritten extent also costs a journal
    /// commit to mark it written (measured here: 4 KiB write + fdatasync 0.13-0.15 ms on a
    /// zero-filled file against 0.21-0.27 ms on a fallocated one).
    fn prepare_log_segment(&self, path: &str, size: u64) -> Option<FlushJob> {
        let full = self.full(path);
        if full.exists() {
            return None;
        }
        let parent = Self::parent_of(&full).to_path_buf();
        self.create_dirs(&parent).ok()?;
        let mut tmp = full.clone().into_os_string();
        tmp.push(".warm.tmp");
        let tmp = PathBuf::from(tmp);
        Some(FlushJob::new(move || {
            // On failure (the store opened the file first: EEXIST; no room) nothing is lost:
            // the open allocates the file as it would have without this.
            let _ = zero_fill(&tmp, size).and_then(|()| std::fs::hard_link(&tmp, &full));
            let _ = std::fs::remove_file(&tmp);
            let _ = sync_dir(&parent);
            Ok(())
        }))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let full = self.full(dir);
        let entries = match std::fs::read_dir(&full) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&full, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry.map_err(|e| io_err(&full, e))?.file_name().to_string_lossy().into_owned();
            // Leftovers of an interrupted `write_file` are not entries.
            if !name.ends_with(".tmp") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        let full = self.full(path);
        match std::fs::remove_file(&full) {
            Ok(()) => sync_dir(Self::parent_of(&full)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&full, e)),
        }
    }

    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.full(path);
        match std::fs::read(&full) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&full, e)),
        }
    }

    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        use std::io::Write;
        let full = self.full(path);
        let parent = Self::parent_of(&full);
        self.create_dirs(parent)?;
        let mut tmp_name = full.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        // A full disk is the typed error the broker knows how to answer, here as for segments.
        let err = |e: std::io::Error| {
            let _ = std::fs::remove_file(&tmp);
            if is_disk_full(&e) {
                StoreError::DiskFull { path: tmp.display().to_string(), source: e }
            } else {
                io_err(&tmp, e)
            }
        };
        let mut file = File::create(&tmp).map_err(err)?;
        file.write_all(bytes).and_then(|()| file.sync_all()).map_err(err)?;
        std::fs::rename(&tmp, &full).map_err(|e| io_err(&full, e))?;
        sync_dir(parent)
    }

    fn used_space_ratio(&self) -> Option<f64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.root.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs writes only into the zeroed struct we pass; the path is a valid
        // NUL-terminated string that outlives the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
            return None;
        }
        // What `df` prints as Use%: used / (used + available to unprivileged writers). Blocks
        // reserved for root count neither way (RocketMQ's used / total counts them as free,
        // and would let a non-root broker run into ENOSPC below its ratios).
        let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
        let usable = used + st.f_bavail as f64;
        (usable > 0.0).then(|| used / usable)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_used_share_of_the_disk_is_what_df_prints() {
        let tmp = tempfile::tempdir().unwrap();
        let ratio = MmapDirectory::new(tmp.path()).used_space_ratio().expect("a real file system");
        let out = std::process::Command::new("df").arg("--output=pcent").arg(tmp.path()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let pcent: f64 = text.lines().nth(1).unwrap().trim().trim_end_matches('%').parse().unwrap();
        // df rounds up to a whole percent; the disk may change a little between the two reads.
        assert!((ratio * 100.0 - pcent).abs() <= 2.0, "ours {:.1}% vs df {pcent}%", ratio * 100.0);
    }

    use super::*;

    fn dir() -> (tempfile::TempDir, MmapDirectory) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = MmapDirectory::new(tmp.path());
        (tmp, dir)
    }

    /// Bytes this thread has had read from storage (the page cache's misses), where Linux
    /// accounts them.
    fn thread_read_bytes() -> Option<u64> {
        let io = std::fs::read_to_string("/proc/thread-self/io").ok()?;
        io.lines().find_map(|l| l.strip_prefix("read_bytes: ")).and_then(|v| v.trim().parse().ok())
    }

    #[test]
    fn commits_into_a_prepared_segment_read_nothing_from_the_disk() {
        const SIZE: u64 = 1 << 20;
        let (_tmp, mut dir) = dir();
        let path = "commitlog/00000000000000000000";
        dir.prepare_log_segment(path, SIZE).expect("an absent segment is prepared").run().unwrap();
        let file = OpenOptions::new().read(true).write(true).open(dir.full(path)).unwrap();
        use std::os::unix::fs::OpenOptionsExt;
        if OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(dir.full(path)).is_ok() {
            // Where direct I/O works, the zeros went past the page cache.
            let map = MmapRaw::map_raw(&file).unwrap();
            let mut resident = vec![0u8; (SIZE / PAGE_BYTES) as usize];
            // SAFETY: mincore over a live mapping of SIZE bytes, one status byte per page.
            assert_eq!(unsafe { libc::mincore(map.as_mut_ptr().cast(), SIZE as usize, resident.as_mut_ptr()) }, 0);
            assert_eq!(resident.iter().filter(|r| *r & 1 == 1).count(), 0, "no zero page is left in the cache");
        }
        let mut log = dir.open_log_segment(path, SIZE).unwrap();
        let Some(before) = thread_read_bytes() else { return };
        // Records that end inside pages: each commit's last page is one the zero-fill wrote
        // past the page cache; writing only part of it would read it in first.
        for i in 0..40u64 {
            log.write_at(i * 1000, &[i as u8 + 1; 1000]).unwrap();
            log.commit().unwrap();
        }
        assert_eq!(thread_read_bytes().unwrap() - before, 0, "no page was read in to be written");
        let mut back = [0u8; 1000];
        log.read_at(39_000, &mut back).unwrap();
        assert_eq!(back, [40u8; 1000]);
        log.read_at(40_000, &mut back).unwrap();
        assert_eq!(back, [0u8; 1000], "zeros past the write position");
        assert_eq!(std::fs::metadata(dir.full(path)).unwrap().len(), SIZE);
    }

    #[test]
    fn segments_persist_across_opens_and_refuse_a_size_change() {
        let (_tmp, mut dir) = dir();
        let mut seg = dir.open_segment("a/b/00000000000000000000", 8192).unwrap();
        assert_eq!(seg.capacity_bytes(), 8192);
        assert!(!seg.is_loaded());
        seg.preload();
        assert!(seg.is_loaded());
        seg.write_at(8188, b"tail").unwrap();
        assert!(matches!(seg.write_at(8189, b"tail"), Err(StoreError::OutOfBounds { .. })));
        seg.flush_range(8000, 192).unwrap();
        assert!(seg.detached_flush(0, 8193).is_none(), "out of bounds");
        let job = seg.detached_flush(0, 8192).expect("mmap flushes detach");
        std::thread::scope(|s| {
            s.spawn(move || job.run().unwrap());
        });
        drop(seg);
        let seg = dir.open_segment("a/b/00000000000000000000", 8192).unwrap();
        let mut buf = [0u8; 4];
        seg.read_at(8188, &mut buf).unwrap();
        assert_eq!(&buf, b"tail");
        assert!(matches!(
            dir.open_segment("a/b/00000000000000000000", 4096),
            Err(StoreError::SegmentSizeMismatch { expected_bytes: 4096, actual_bytes: 8192, .. })
        ));
        assert_eq!(dir.list("a").unwrap(), ["b"]);
    }

    #[test]
    fn log_segments_write_through_the_file_into_what_the_mapping_reads() {
        let (tmp, mut dir) = dir();
        let mut log = dir.open_log_segment("commitlog/00000000000000000000", 8192).unwrap();
        assert!(log.file.is_some(), "the log keeps its descriptor");
        let file = tmp.path().join("commitlog/00000000000000000000");
        log.write_at(4090, b"across a page").unwrap();
        let mut buf = [0u8; 13];
        log.read_at(4090, &mut buf).unwrap();
        assert_eq!(&buf, b"across a page", "a staged write is readable at once");
        assert_eq!(&std::fs::read(&file).unwrap()[4090..4103], &[0u8; 13], "staged: not in the file yet");
        log.commit().unwrap();
        // What another process (or the next start after a crash) reads: the page cache.
        assert_eq!(&std::fs::read(&file).unwrap()[4090..4103], b"across a page", "committed with a pwrite");
        assert!(matches!(log.write_at(8190, b"xyz"), Err(StoreError::OutOfBounds { .. })));
        log.flush_range(4090, 13).unwrap();
        let job = log.detached_flush(0, 8192).expect("log flushes detach");
        std::thread::scope(|s| {
            s.spawn(move || job.run().unwrap());
        });
        drop(log);
        let queue = dir.open_segment("commitlog/00000000000000000000", 8192).unwrap();
        assert!(queue.file.is_none(), "queue segments close their descriptor once mapped");
        queue.read_at(4090, &mut buf).unwrap();
        assert_eq!(&buf, b"across a page");
    }

    #[test]
    fn log_writes_are_staged_until_a_commit_and_read_back_over_the_file() {
        let (tmp, mut dir) = dir();
        let file = tmp.path().join("commitlog/00000000000000000000");
        let on_disk = |at: usize, n: usize| std::fs::read(&file).unwrap()[at..at + n].to_vec();
        let mut log = dir.open_log_segment("commitlog/00000000000000000000", 1 << 22).unwrap();
        log.write_at(0, b"first").unwrap();
        log.write_at(5, b"second").unwrap();
        // A rewind writes over the end of what is staged; a read spans file and staging.
        log.write_at(8, b"XYZW").unwrap();
        log.commit().unwrap();
        assert_eq!(on_disk(0, 12), b"firstsecXYZW");
        log.write_at(12, b"tail").unwrap();
        let mut buf = [0u8; 8];
        log.read_at(8, &mut buf).unwrap();
        assert_eq!(&buf, b"XYZWtail", "committed bytes, then staged ones");
        assert_eq!(on_disk(12, 4), [0u8; 4]);
        // A write elsewhere commits what was staged first.
        log.write_at(100, b"far").unwrap();
        assert_eq!(on_disk(12, 4), b"tail");
        // Flushing commits; a staging buffer never grows past STAGE_MAX_BYTES.
        log.flush_range(0, 103).unwrap();
        assert_eq!(on_disk(100, 3), b"far");
        let big = vec![7u8; STAGE_MAX_BYTES - 10];
        log.write_at(200, &big).unwrap();
        log.write_at(200 + big.len() as u64, &[8u8; 20]).unwrap();
        assert_eq!(on_disk(200, 4), [7u8; 4], "the full buffer was committed before it grew");
        assert!(log.staged.len() <= STAGE_MAX_BYTES);
        // Dropping the segment commits what is left.
        drop(log);
        assert_eq!(on_disk(200 + STAGE_MAX_BYTES - 10, 20), [8u8; 20]);
    }

    #[test]
    fn mapped_segments_reserve_blocks_as_writes_approach_and_log_segments_up_front() {
        use std::os::unix::fs::MetadataExt;
        let (tmp, mut dir) = dir();
        let blocks = |rel: &str| std::fs::metadata(tmp.path().join(rel)).unwrap().blocks() * 512;
        let mut queue = dir.open_queue_segment("consumequeue/T/0/00000000000000000000", 6_000_000).unwrap();
        assert_eq!(
            std::fs::metadata(tmp.path().join("consumequeue/T/0/00000000000000000000")).unwrap().len(),
            6_000_000
        );
        let first = blocks("consumequeue/T/0/00000000000000000000");
        assert!((RESERVE_CHUNK_BYTES..6_000_000 / 8).contains(&first), "one chunk reserved, not 6 MB: {first}");
        queue.write_at(1_000_000, &[7u8; 20]).unwrap();
        let after = blocks("consumequeue/T/0/00000000000000000000");
        assert!((1_000_020..2_000_000).contains(&after), "reserved up to the write: {after}");
        let mut buf = [0u8; 20];
        queue.read_at(1_000_000, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 20]);
        drop(queue);
        let mut again = dir.open_queue_segment("consumequeue/T/0/00000000000000000000", 6_000_000).unwrap();
        again.write_at(5_999_980, &[9u8; 20]).unwrap();
        let index = dir.open_segment("index/00000000000000000000", 4_000_000).unwrap();
        assert!(blocks("index/00000000000000000000") >= 4_000_000, "an index file is allocated whole");
        drop(index);
        let _log = dir.open_log_segment("commitlog/00000000000000000000", 4_000_000).unwrap();
        assert!(blocks("commitlog/00000000000000000000") >= 4_000_000, "a log segment is allocated whole");
    }

    /// The `VmFlags` the kernel reports for the mapping whose start address is `seg`'s.
    fn vm_flags(seg: &MmapSegment) -> String {
        let start = format!("{:x}-", seg.map.as_ptr() as usize);
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("Linux /proc");
        // A mapping's block starts with a line `start-end perms ...`; match at a line start
        // only, so a longer address ending in the same digits is never taken for it.
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
        assert!(lines.next().is_some(), "the segment's mapping is listed");
        let flags = lines.find_map(|l| l.strip_prefix("VmFlags:")).expect("a VmFlags line");
        flags.trim().to_string()
    }

    #[test]
    fn queue_mappings_fault_one_page_at_a_time_and_the_others_read_around() {
        let (_tmp, mut dir) = dir();
        let queue = dir.open_queue_segment("consumequeue/T/0/00000000000000000000", 6_000_000).unwrap();
        let index = dir.open_segment("index/00000000000000000000", 1 << 20).unwrap();
        let log = dir.open_log_segment("commitlog/00000000000000000000", 1 << 20).unwrap();
        // `rr`: MADV_RANDOM, no readahead window around a fault.
        assert!(vm_flags(&queue).split(' ').any(|f| f == "rr"), "queue mapping: {}", vm_flags(&queue));
        for seg in [&index, &log] {
            assert!(!vm_flags(seg).split(' ').any(|f| f == "rr"), "{}: {}", seg.path, vm_flags(seg));
        }
    }

    #[test]
    fn small_files_are_replaced_atomically() {
        let (tmp, mut dir) = dir();
        assert_eq!(dir.read_file("config/topics.json").unwrap(), None);
        dir.write_file("config/topics.json", b"{}").unwrap();
        dir.write_file("config/topics.json", b"{\"a\":1}").unwrap();
        assert_eq!(dir.read_file("config/topics.json").unwrap().as_deref(), Some(&b"{\"a\":1}"[..]));
        std::fs::write(tmp.path().join("config/x.json.tmp"), b"partial").unwrap();
        assert_eq!(dir.list("config").unwrap(), ["topics.json"], "temporary files are not listed");
        dir.remove("config/topics.json").unwrap();
        dir.remove("config/topics.json").unwrap();
        assert!(dir.list("config").unwrap().is_empty());
        assert!(dir.list("absent").unwrap().is_empty());
    }
}
