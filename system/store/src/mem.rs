//! In-memory segments and directory, for unit tests and model checking. Plain values: cloning,
//! comparing and hashing a store over them is cheap enough for a state-space search when the
//! segments are small.

use std::collections::BTreeMap;

use crate::segment::{bounds, Directory, Segment};
use crate::StoreError;

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
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|path| path.strip_prefix(&prefix))
            .filter_map(|rest| rest.split('/').next())
            .map(str::to_string)
            .collect();
        // Keys sort by full path, not by first component ("a-b" < "a/x"): sort before dedup.
        names.sort();
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
}
