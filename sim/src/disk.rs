//! `SimDisk`: a page-cache model behind the store's `Segment`/`Directory` seam.
//!
//! Writes land in the page cache (`live`) and mark pages dirty. A flush (`flush_range`, small
//! file writes) is synchronous, as msync/fsync are: the pages become durable when it returns;
//! how *long* it takes is modelled by the simulator delaying the flush report (flush lag). A
//! crash keeps only durable bytes, plus optionally a seeded subset of dirty pages (background
//! write-back) and one torn page cut at a 512-byte sector boundary. Restart re-opens the store
//! over what survived and runs the real recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rmq_store::{Directory, Segment, StoreError};

/// Page size of the model.
pub const PAGE_BYTES: usize = 4096;
/// Sector size: the unit a torn write keeps or loses.
pub const SECTOR_BYTES: usize = 512;

#[derive(Debug, Default)]
struct SimFile {
    live: Vec<u8>,
    durable: Vec<u8>,
    dirty: BTreeSet<usize>,
}

/// The disk of one node: files and small files, shared by every open segment.
#[derive(Debug, Default)]
pub struct DiskState {
    files: BTreeMap<String, SimFile>,
    small: BTreeMap<String, Vec<u8>>,
}

/// What a crash keeps of un-flushed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CrashMode {
    /// Chance (0..=100) that each dirty page was written back before the crash.
    pub writeback_pct: u32,
    /// Tear one dirty page at a sector boundary.
    pub tear: bool,
}

/// A node's disk; clones share state. Implements the store's `Directory`.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
}

/// One file of a [`SimDisk`].
#[derive(Debug)]
pub struct SimSegment {
    state: Arc<Mutex<DiskState>>,
    path: String,
    size: u64,
}

/// The disk lock; a panic while holding it already failed the run, so poisoning is ignored.
fn lock(state: &Arc<Mutex<DiskState>>) -> MutexGuard<'_, DiskState> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn oob(pos: u64, len: usize, size: u64) -> StoreError {
    StoreError::OutOfBounds { pos, len_bytes: len as u64, capacity_bytes: size }
}

impl Segment for SimSegment {
    fn capacity_bytes(&self) -> u64 {
        self.size
    }

    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError> {
        let end = pos as usize + data.len();
        if end as u64 > self.size {
            return Err(oob(pos, data.len(), self.size));
        }
        let mut st = lock(&self.state);
        let f = st.files.get_mut(&self.path).expect("an open segment's file exists");
        f.live[pos as usize..end].copy_from_slice(data);
        for page in pos as usize / PAGE_BYTES..end.div_ceil(PAGE_BYTES) {
            f.dirty.insert(page);
        }
        Ok(())
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let end = pos as usize + buf.len();
        if end as u64 > self.size {
            return Err(oob(pos, buf.len(), self.size));
        }
        let st = lock(&self.state);
        buf.copy_from_slice(&st.files[&self.path].live[pos as usize..end]);
        Ok(())
    }

    fn flush_range(&mut self, pos: u64, len: u64) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let f = st.files.get_mut(&self.path).expect("an open segment's file exists");
        let first = pos as usize / PAGE_BYTES;
        let last = ((pos + len) as usize).div_ceil(PAGE_BYTES);
        let pages: Vec<usize> = f.dirty.range(first..last).copied().collect();
        for p in pages {
            let (a, b) = (p * PAGE_BYTES, ((p + 1) * PAGE_BYTES).min(f.live.len()));
            let src = f.live[a..b].to_vec();
            f.durable[a..b].copy_from_slice(&src);
            f.dirty.remove(&p);
        }
        Ok(())
    }
}

impl Directory for SimDisk {
    type Seg = SimSegment;

    fn open_segment(&mut self, path: &str, size: u64) -> Result<SimSegment, StoreError> {
        let mut st = lock(&self.state);
        let f = st.files.entry(path.to_string()).or_default();
        if f.live.len() != size as usize {
            f.live.resize(size as usize, 0);
            f.durable.resize(size as usize, 0);
        }
        Ok(SimSegment { state: self.state.clone(), path: path.to_string(), size })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let st = lock(&self.state);
        let mut names: BTreeSet<String> = BTreeSet::new();
        for k in st.files.keys().chain(st.small.keys()) {
            if let Some(rest) = k.strip_prefix(&prefix) {
                names.insert(rest.split('/').next().unwrap_or(rest).to_string());
            }
        }
        Ok(names.into_iter().collect())
    }

    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        st.files.remove(path);
        st.small.remove(path);
        Ok(())
    }

    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.state).small.get(path).cloned())
    }

    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        // Atomic replace + fsync: durable on return.
        lock(&self.state).small.insert(path.to_string(), bytes.to_vec());
        Ok(())
    }
}

impl SimDisk {
    /// Bytes written but not yet durable, over all files.
    pub fn dirty_pages(&self) -> usize {
        lock(&self.state).files.values().map(|f| f.dirty.len()).sum()
    }

    /// Power loss: returns the disk as it is after reboot.
    pub fn crash(&self, mode: CrashMode, rng: &mut ChaCha8Rng) -> SimDisk {
        let st = lock(&self.state);
        let mut files = BTreeMap::new();
        let mut torn_done = !mode.tear;
        for (path, f) in &st.files {
            let mut bytes = f.durable.clone();
            for &p in &f.dirty {
                let (a, b) = (p * PAGE_BYTES, ((p + 1) * PAGE_BYTES).min(f.live.len()));
                if rng.gen_range(0..100) < mode.writeback_pct {
                    bytes[a..b].copy_from_slice(&f.live[a..b]);
                } else if !torn_done {
                    let sectors = (b - a) / SECTOR_BYTES;
                    let keep = rng.gen_range(1..sectors.max(2)) * SECTOR_BYTES;
                    bytes[a..a + keep].copy_from_slice(&f.live[a..a + keep]);
                    torn_done = true;
                }
            }
            files.insert(path.clone(), SimFile { live: bytes.clone(), durable: bytes, dirty: BTreeSet::new() });
        }
        SimDisk { state: Arc::new(Mutex::new(DiskState { files, small: st.small.clone() })) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn only_flushed_pages_survive_a_plain_crash() {
        let mut disk = SimDisk::default();
        let mut seg = disk.open_segment("f", 3 * PAGE_BYTES as u64).unwrap();
        seg.write_at(0, &[1; 10]).unwrap();
        seg.write_at(PAGE_BYTES as u64, &[2; 10]).unwrap();
        seg.flush_range(0, 10).unwrap();
        let after = disk.crash(CrashMode::default(), &mut ChaCha8Rng::seed_from_u64(1));
        let mut again = after.clone();
        let seg2 = again.open_segment("f", 3 * PAGE_BYTES as u64).unwrap();
        let mut buf = [0u8; 10];
        seg2.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, [1; 10]);
        seg2.read_at(PAGE_BYTES as u64, &mut buf).unwrap();
        assert_eq!(buf, [0; 10], "the unflushed page is gone");
        assert_eq!(disk.dirty_pages(), 1);
    }
}
