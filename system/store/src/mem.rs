//! In-memory segments and directory, for unit tests and model checking. Plain values: cloning,
//! comparing and hashing a store over them is cheap enough for a state-space search when the
//! segments are small.

use std::collections::BTreeMap;

use crate::segment::{bounds, Directory, Segment};
use crate::{MessageStore, StoreError};

/// A segment held in a `Vec`; every flush completes at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemSegment {
    /// The segment's contents; its length is the capacity.
    bytes: Vec<u8>,
}

impl MemSegment {
    /// A zeroed segment of `size_bytes`.
    pub fn new(size_bytes: u64) -> Self {
        let size = usize::try_from(size_bytes).expect("a memory segment fits the address space");
        MemSegment { bytes: vec![0; size] }
    }
}

impl Segment for MemSegment {
    fn capacity_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError> {
        let (start, end) = bounds(pos, data.len() as u64, self.capacity_bytes())?;
        self.bytes[start..end].copy_from_slice(data);
        Ok(())
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let (start, end) = bounds(pos, buf.len() as u64, self.capacity_bytes())?;
        buf.copy_from_slice(&self.bytes[start..end]);
        Ok(())
    }

    fn flush_range(&mut self, pos: u64, len: u64) -> Result<(), StoreError> {
        bounds(pos, len, self.capacity_bytes()).map(|_| ())
    }
}

/// Small files in a map. Segments are not kept: each [`Directory::open_segment`] returns a
/// fresh zeroed [`MemSegment`] (the store owns it), so reopening a store over a `MemDirectory`
/// finds only the small files. Crash-recovery tests use a directory that keeps segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MemDirectory {
    /// Small files by relative path.
    files: BTreeMap<String, Vec<u8>>,
}

impl Directory for MemDirectory {
    type Seg = MemSegment;

    fn open_segment(&mut self, _path: &str, size: u64) -> Result<MemSegment, StoreError> {
        Ok(MemSegment::new(size))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        Ok(names_under(self.files.keys(), dir))
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

/// A segment that remembers what was flushed: reads see `live`; a power cut keeps `durable`.
/// Plain values, like [`MemSegment`], so a model checker can clone, compare and hash it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DurableSegment {
    live: Vec<u8>,
    durable: Vec<u8>,
}

impl DurableSegment {
    /// What survives a power cut: the bytes of every completed flush, zeros elsewhere.
    pub fn durable_bytes(&self) -> &[u8] {
        &self.durable
    }
}

impl Segment for DurableSegment {
    fn capacity_bytes(&self) -> u64 {
        self.live.len() as u64
    }

    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError> {
        let (start, end) = bounds(pos, data.len() as u64, self.capacity_bytes())?;
        self.live[start..end].copy_from_slice(data);
        Ok(())
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let (start, end) = bounds(pos, buf.len() as u64, self.capacity_bytes())?;
        buf.copy_from_slice(&self.live[start..end]);
        Ok(())
    }

    fn flush_range(&mut self, pos: u64, len: u64) -> Result<(), StoreError> {
        let (start, end) = bounds(pos, len, self.capacity_bytes())?;
        self.durable[start..end].copy_from_slice(&self.live[start..end]);
        Ok(())
    }
}

/// An in-memory disk that outlives the store opened over it: small files are durable when
/// written (as the seam requires), segments are durable as far as they were flushed. While a
/// store holds a segment open, the disk only records that the file exists; its bytes live in
/// the store's [`DurableSegment`], and [`MemDisk::after_power_cut`] takes their durable part.
/// A value (no shared handles): cloning a broker over it clones its disk, which is what a
/// model checker exploring crash sequences needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MemDisk {
    /// Small files.
    files: MemDirectory,
    /// Segment files by relative path: their durable bytes when no store holds them open,
    /// empty while one does.
    segments: BTreeMap<String, Vec<u8>>,
}

impl MemDisk {
    /// The disk as a power cut leaves it under `store`: small files as written, and each
    /// open segment's flushed bytes (nothing written after its last flush survives).
    pub fn after_power_cut(store: &MessageStore<MemDisk>) -> MemDisk {
        let mut disk = store.directory().clone();
        for (path, seg) in store.segment_files() {
            disk.segments.insert(path, seg.durable_bytes().to_vec());
        }
        disk
    }
}

impl Directory for MemDisk {
    type Seg = DurableSegment;

    fn open_segment(&mut self, path: &str, size: u64) -> Result<DurableSegment, StoreError> {
        let size = usize::try_from(size).expect("a memory segment fits the address space");
        // The file exists from now on; its bytes move into the segment.
        let mut image = std::mem::take(self.segments.entry(path.to_string()).or_default());
        image.resize(size, 0);
        Ok(DurableSegment { live: image.clone(), durable: image })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        Ok(names_under(self.files.files.keys().chain(self.segments.keys()), dir))
    }

    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        self.segments.remove(path);
        self.files.remove(path)
    }

    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.files.read_file(path)
    }

    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.files.write_file(path, bytes)
    }
}

/// Names (first path components) directly under `dir` among `paths`, sorted, deduplicated.
fn names_under<'a>(paths: impl Iterator<Item = &'a String>, dir: &str) -> Vec<String> {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let mut names: Vec<String> = paths
        .filter_map(|path| path.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('/').next())
        .map(str::to_string)
        .collect();
    // Keys sort by full path, not by first component ("a-b" < "a/x"): sort before dedup.
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_accesses_are_bounds_checked() {
        let mut seg = MemSegment::new(16);
        seg.write_at(12, b"abcd").unwrap();
        let mut buf = [0u8; 4];
        seg.read_at(12, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        assert!(matches!(seg.write_at(13, b"abcd"), Err(StoreError::OutOfBounds { pos: 13, .. })));
        assert!(matches!(seg.read_at(u64::MAX, &mut buf), Err(StoreError::OutOfBounds { .. })));
        assert!(seg.flush_range(0, 17).is_err());
        assert!(seg.detached_flush(0, 16).is_none(), "memory flushes in place");
    }

    #[test]
    fn list_is_sorted_and_deduplicated() {
        let mut dir = MemDirectory::default();
        for path in ["d/a/x", "d/a-b", "d/a/y", "d/c", "e/z"] {
            dir.write_file(path, b"1").unwrap();
        }
        assert_eq!(dir.list("d").unwrap(), ["a", "a-b", "c"]);
        assert!(dir.list("nothing").unwrap().is_empty());
        dir.remove("d/c").unwrap();
        assert_eq!(dir.read_file("d/c").unwrap(), None);
        assert_eq!(dir.read_file("e/z").unwrap().as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn a_power_cut_keeps_what_was_flushed_and_nothing_after() {
        use crate::StoreConfig;
        use rmq_proto::message::MessageExt;
        let config =
            StoreConfig { commit_log_segment_bytes: 4096, consume_queue_segment_entries: 8, ..StoreConfig::default() };
        let (mut store, report) = MessageStore::open(MemDisk::default(), config.clone()).unwrap();
        assert!(report.fresh);
        let put = |store: &mut MessageStore<MemDisk>, body: &[u8]| {
            let mut msg = MessageExt { topic: "T".into(), body: body.to_vec().into(), ..MessageExt::default() };
            store.put(&mut msg).unwrap()
        };
        put(&mut store, b"flushed");
        let flushed = store.flush().unwrap();
        put(&mut store, b"only in the page cache");
        assert_eq!(store.max_queue_offset("T", 0), 2);

        let disk = MemDisk::after_power_cut(&store);
        let (store2, report) = MessageStore::open(disk.clone(), config.clone()).unwrap();
        assert!(!report.fresh, "the segment files survive");
        assert_eq!(store2.commit_log_max_offset(), flushed);
        assert_eq!(store2.max_queue_offset("T", 0), 1);
        assert_eq!(&store2.read_message(0).unwrap().body[..], b"flushed");

        // A value: the first store is untouched, and the disk reopens the same way twice.
        assert_eq!(store.max_queue_offset("T", 0), 2);
        let (store3, _) = MessageStore::open(disk, config).unwrap();
        assert_eq!(store3, store2);
    }
}
