//! `SimDisk`: a page-cache model behind the store's `Segment`/`Directory` seam.
//!
//! Writes land in the page cache (`live`) and mark pages dirty. An in-place flush
//! (`flush_range`, small file writes) is synchronous, as msync/fsync are: the pages are durable
//! when it returns. A detached flush (`detached_flush`, what the broker's group commit uses) is
//! *in flight* from the moment it is asked for until its job runs, which the simulator does
//! after the flush lag: its pages become durable only then, as with a real fdatasync. A crash
//! keeps only durable bytes, plus a seeded half of the pages of flushes in flight (a device
//! had written some of them), a seeded subset of other dirty pages (background write-back,
//! `writeback_pct`) and one torn page cut at a 512-byte sector boundary whose lost sectors hold
//! garbage or zeros. Restart re-opens the store over what survived and runs the real recovery.
//!
//! Faithful to the real write paths (`rmq_store::mmap`): the CommitLog is written with pwrite
//! and flushed with fdatasync, queues and indexes are copied into mappings and msync'ed; both
//! land in the one page cache modelled here, so a process crash keeps every write and a power
//! cut keeps what was flushed plus what write-back happened to reach. fdatasync makes the whole
//! file's dirty pages durable where this model flushes only the range asked for: the model
//! keeps no more than the disk would. Segments prepared ahead (`warmMapedFileEnable`) and
//! blocks reserved in chunks change what is allocated, not which bytes survive: a fresh
//! segment here is zeros, as a zero-filled or newly reserved one is on disk. The real CommitLog
//! stages a loop batch's records in memory and commits them with one pwrite when the broker
//! core hands out its outputs (`BrokerCore::poll_output`), before any answer leaves; the
//! simulator drains a broker's outputs at the end of every step it runs, and a crash lands
//! between steps, so every write it finds in this page cache is one the real broker would
//! have committed.

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
    /// Detached flushes asked for and not yet run: id → (file, first page, end page).
    in_flight: BTreeMap<u64, (String, usize, usize)>,
    /// Id of the next detached flush.
    next_flush_id: u64,
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
        let (first, last) = page_span(pos, len);
        make_durable(&mut lock(&self.state), &self.path, first, last);
        Ok(())
    }

    fn detached_flush(&self, pos: u64, len: u64) -> Option<rmq_store::FlushJob> {
        let (first, last) = page_span(pos, len);
        let id = {
            let mut st = lock(&self.state);
            let id = st.next_flush_id;
            st.next_flush_id += 1;
            st.in_flight.insert(id, (self.path.clone(), first, last));
            id
        };
        let (state, path) = (self.state.clone(), self.path.clone());
        Some(rmq_store::FlushJob::new(move || {
            let mut st = lock(&state);
            // A job of a disk that has since crashed finds its flush gone: nothing to do.
            if st.in_flight.remove(&id).is_some() {
                make_durable(&mut st, &path, first, last);
            }
            Ok(())
        }))
    }
}

/// Pages `[first, last)` covering `len` bytes at `pos`.
fn page_span(pos: u64, len: u64) -> (usize, usize) {
    (pos as usize / PAGE_BYTES, ((pos + len) as usize).div_ceil(PAGE_BYTES))
}

/// Copies the dirty pages of `[first, last)` of `path` to durable storage.
fn make_durable(st: &mut DiskState, path: &str, first: usize, last: usize) {
    let Some(f) = st.files.get_mut(path) else { return };
    let pages: Vec<usize> = f.dirty.range(first..last).copied().collect();
    for p in pages {
        let (a, b) = (p * PAGE_BYTES, ((p + 1) * PAGE_BYTES).min(f.live.len()));
        let src = f.live[a..b].to_vec();
        f.durable[a..b].copy_from_slice(&src);
        f.dirty.remove(&p);
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

    /// Detached flushes asked for and not yet completed.
    pub fn flushes_in_flight(&self) -> usize {
        lock(&self.state).in_flight.len()
    }

    /// A copy of what the page cache holds now (what a reader of the live node sees), as a disk
    /// with everything durable: for opening a second store over a live node's data.
    pub fn snapshot_live(&self) -> SimDisk {
        let st = lock(&self.state);
        let files = st
            .files
            .iter()
            .map(|(p, f)| {
                (p.clone(), SimFile { live: f.live.clone(), durable: f.live.clone(), dirty: BTreeSet::new() })
            })
            .collect();
        SimDisk { state: Arc::new(Mutex::new(DiskState { files, small: st.small.clone(), ..DiskState::default() })) }
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
                let flushing =
                    st.in_flight.values().any(|(fp, first, last)| fp == path && (*first..*last).contains(&p));
                // A page under an fdatasync in flight reached the device with even odds; any other
                // dirty page only if background write-back got to it.
                let written = if flushing { rng.gen_bool(0.5) } else { rng.gen_range(0..100) < mode.writeback_pct };
                if written {
                    bytes[a..b].copy_from_slice(&f.live[a..b]);
                } else if !torn_done {
                    tear_page(&mut bytes[a..b], &f.live[a..b], rng);
                    torn_done = true;
                }
            }
            files.insert(path.clone(), SimFile { live: bytes.clone(), durable: bytes, dirty: BTreeSet::new() });
        }
        SimDisk { state: Arc::new(Mutex::new(DiskState { files, small: st.small.clone(), ..DiskState::default() })) }
    }
}

/// A torn page: a leading run of sectors reached the device; the rest holds what the device
/// had there before or, with even odds, garbage (a half-written sector, a firmware remap), so
/// recovery's CRC and size checks have real work to do.
///
/// Only a sector that held nothing durable (still zero-filled, fresh space) can turn to
/// garbage: a sector that already holds durable records is either rewritten whole or left as
/// it was (power-loss-atomic sectors), so a tear never destroys data a flush made durable.
fn tear_page(out: &mut [u8], live: &[u8], rng: &mut ChaCha8Rng) {
    let sectors = out.len() / SECTOR_BYTES;
    let keep = rng.gen_range(1..sectors.max(2)) * SECTOR_BYTES;
    out[..keep].copy_from_slice(&live[..keep]);
    let garbage_end = (keep + SECTOR_BYTES).min(out.len());
    if rng.gen_bool(0.5) && out[keep..garbage_end].iter().all(|b| *b == 0) {
        rng.fill(&mut out[keep..garbage_end]);
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
