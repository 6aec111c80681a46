//! The storage seam: fixed-size segments and the directory that opens them.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;

use memmap2::MmapMut;

use crate::StoreError;

/// Page size assumed for pre-faulting and flush alignment.
pub const PAGE_BYTES: u64 = 4096;

/// A fixed-size, zero-initialised region of storage (one CommitLog or ConsumeQueue file).
pub trait Segment: std::fmt::Debug {
    /// Size in bytes.
    fn capacity_bytes(&self) -> u64;
    /// Writes `data` at `pos` (bounds-checked).
    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError>;
    /// Reads `buf.len()` bytes at `pos` (bounds-checked).
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), StoreError>;
    /// Asks for `[pos, pos + len)` to become durable (msync for mmap). A simulated disk may
    /// complete it later.
    fn flush_range(&mut self, pos: u64, len: u64) -> Result<(), StoreError>;
    /// A flush of `[pos, pos + len)` that can run away from the segment (on another thread),
    /// or `None` when the segment only flushes in place.
    fn detached_flush(&self, _pos: u64, _len: u64) -> Option<FlushJob> {
        None
    }
    /// Pre-faults pages into memory (RocketMQ's `load()`).
    fn preload(&mut self) {}
    /// Whether the pages are resident (RocketMQ's `isLoaded()`), best effort.
    fn is_loaded(&self) -> bool {
        true
    }
}

/// A flush detached from its segment: run it anywhere, then report completion.
pub struct FlushJob(Box<dyn FnOnce() -> Result<(), StoreError> + Send>);

impl FlushJob {
    /// Wraps a closure.
    pub fn new(f: impl FnOnce() -> Result<(), StoreError> + Send + 'static) -> Self {
        FlushJob(Box::new(f))
    }

    /// Performs the flush.
    pub fn run(self) -> Result<(), StoreError> {
        (self.0)()
    }
}

impl std::fmt::Debug for FlushJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushJob")
    }
}

/// A directory of named segments and small files; the runtime supplies it.
pub trait Directory: std::fmt::Debug {
    /// The segment type.
    type Seg: Segment;
    /// Opens (creating zero-filled if absent) the segment at `path` with `size` bytes.
    fn open_segment(&mut self, path: &str, size: u64) -> Result<Self::Seg, StoreError>;
    /// Names of the entries directly under `dir`, sorted; empty if absent.
    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError>;
    /// Removes a file.
    fn remove(&mut self, path: &str) -> Result<(), StoreError>;
    /// Reads a whole small file.
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Atomically replaces a small file (write, fsync, rename).
    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError>;
}

fn bounds(pos: u64, len: usize, capacity_bytes: u64) -> Result<(usize, usize), StoreError> {
    let end = pos.checked_add(len as u64).filter(|e| *e <= capacity_bytes);
    match end {
        Some(e) => Ok((pos as usize, e as usize)),
        None => Err(StoreError::OutOfBounds { pos, len: len as u64, capacity_bytes }),
    }
}

/// A segment in memory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemSegment {
    bytes: Vec<u8>,
}

impl MemSegment {
    /// A zeroed segment.
    pub fn new(size: u64) -> Self {
        MemSegment { bytes: vec![0; size as usize] }
    }
}

impl Segment for MemSegment {
    fn capacity_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError> {
        let (a, b) = bounds(pos, data.len(), self.capacity_bytes())?;
        self.bytes[a..b].copy_from_slice(data);
        Ok(())
    }
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let (a, b) = bounds(pos, buf.len(), self.capacity_bytes())?;
        buf.copy_from_slice(&self.bytes[a..b]);
        Ok(())
    }
    fn flush_range(&mut self, _pos: u64, _len: u64) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Small files in memory; every segment opens zeroed (no persistence across opens).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MemDirectory {
    files: BTreeMap<String, Vec<u8>>,
}

impl Directory for MemDirectory {
    type Seg = MemSegment;
    fn open_segment(&mut self, _path: &str, size: u64) -> Result<MemSegment, StoreError> {
        Ok(MemSegment::new(size))
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect();
        names.dedup();
        Ok(names)
    }
    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        self.files.remove(path);
        Ok(())
    }
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.files.get(path).cloned())
    }
    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.files.insert(path.to_string(), bytes.to_vec());
        Ok(())
    }
}

/// A memory-mapped file.
#[derive(Debug)]
pub struct MmapSegment {
    map: MmapMut,
    path: String,
    /// The mapped file: `fdatasync` on it writes back pages dirtied through the mapping, so
    /// flushes can run on another thread while the mapping keeps taking writes.
    file: std::sync::Arc<std::fs::File>,
}

impl MmapSegment {
    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { path: self.path.clone(), source }
    }
}

impl Segment for MmapSegment {
    fn capacity_bytes(&self) -> u64 {
        self.map.len() as u64
    }
    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError> {
        let (a, b) = bounds(pos, data.len(), self.capacity_bytes())?;
        self.map[a..b].copy_from_slice(data);
        Ok(())
    }
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let (a, b) = bounds(pos, buf.len(), self.capacity_bytes())?;
        buf.copy_from_slice(&self.map[a..b]);
        Ok(())
    }
    fn flush_range(&mut self, pos: u64, len: u64) -> Result<(), StoreError> {
        if len == 0 {
            return Ok(());
        }
        let (a, b) = bounds(pos, len as usize, self.capacity_bytes())?;
        self.map.flush_range(a, b - a).map_err(|e| self.io(e))
    }
    fn detached_flush(&self, _pos: u64, _len: u64) -> Option<FlushJob> {
        let (file, path) = (self.file.clone(), self.path.clone());
        Some(FlushJob::new(move || file.sync_data().map_err(|source| StoreError::Io { path, source })))
    }
    fn preload(&mut self) {
        let mut i = 0;
        let mut sum = 0u8;
        while i < self.map.len() {
            sum = sum.wrapping_add(self.map[i]);
            i += PAGE_BYTES as usize;
        }
        std::hint::black_box(sum);
    }
}

/// Segments as memory-mapped files under a root directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MmapDirectory {
    /// Root (storePathRootDir).
    pub root: PathBuf,
}

impl MmapDirectory {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

fn io_err(path: &std::path::Path, source: std::io::Error) -> StoreError {
    StoreError::Io { path: path.display().to_string(), source }
}

impl Directory for MmapDirectory {
    type Seg = MmapSegment;

    fn open_segment(&mut self, path: &str, size: u64) -> Result<MmapSegment, StoreError> {
        let full = self.path(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&full)
            .map_err(|e| io_err(&full, e))?;
        let len = file.metadata().map_err(|e| io_err(&full, e))?.len();
        if len != size {
            file.set_len(size).map_err(|e| io_err(&full, e))?;
        }
        // SAFETY: the file is owned by this store for its lifetime; nothing else maps or
        // truncates it while the mapping lives.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io_err(&full, e))?;
        Ok(MmapSegment { map, path: full.display().to_string(), file: std::sync::Arc::new(file) })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let full = self.path(dir);
        let rd = match std::fs::read_dir(&full) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&full, e)),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| io_err(&full, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".tmp") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        let full = self.path(path);
        match std::fs::remove_file(&full) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&full, e)),
            _ => Ok(()),
        }
    }

    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.path(path);
        match std::fs::read(&full) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&full, e)),
        }
    }

    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        use std::io::Write;
        let full = self.path(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        let tmp = full.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &full).map_err(|e| io_err(&full, e))
    }
}
