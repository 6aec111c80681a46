//! The IndexFile: a hash index from `topic#key` (each KEYS entry, and UNIQ_KEY) to CommitLog
//! offsets, in RocketMQ's layout (spec §2.4): a 40-byte header, `hash_slots` 4-byte slots each
//! holding the number of the newest entry of its chain, then 20-byte entries of (key hash
//! i32, CommitLog offset i64, seconds since the file's first message i32, previous entry
//! number i32), all big-endian. Entry 0 means "none", so the count starts at 1. A full file is
//! followed by a new one; files are named by the 20-digit CommitLog offset of their first
//! message.
//!
//! A hit is only a candidate: hashes collide and a crash can leave stale entries, so the
//! store reads the message back and checks its topic and key before answering.

use serde::{Deserialize, Serialize};

use crate::segment::{Directory, FlushJob, Segment};
use crate::StoreError;

/// Directory of index files.
pub const INDEX_DIR: &str = "index";
const HEADER_BYTES: u64 = 40;
const SLOT_BYTES: u64 = 4;
const ENTRY_BYTES: u64 = 20;

/// Index sizes (RocketMQ's maxHashSlotNum and maxIndexNum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexConfig {
    /// Hash slots per file.
    pub hash_slots: u32,
    /// Entries per file (entry 0 is never used).
    pub max_entries: u32,
}

impl Default for IndexConfig {
    /// RocketMQ's defaults: 5,000,000 slots and 20,000,000 entries, a 420,000,040-byte file.
    fn default() -> Self {
        IndexConfig { hash_slots: 5_000_000, max_entries: 20_000_000 }
    }
}

impl IndexConfig {
    /// Bytes per index file.
    pub fn file_bytes(&self) -> u64 {
        HEADER_BYTES + u64::from(self.hash_slots) * SLOT_BYTES + u64::from(self.max_entries) * ENTRY_BYTES
    }

    /// Why these sizes cannot work, if they cannot.
    pub fn invalid(&self) -> Option<&'static str> {
        if self.hash_slots == 0 || self.hash_slots > i32::MAX as u32 {
            Some("index hash_slots must be in 1..=2147483647")
        } else if self.max_entries < 2 || self.max_entries > i32::MAX as u32 {
            Some("index max_entries must be in 2..=2147483647")
        } else {
            None
        }
    }
}

/// The 40-byte header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
struct Header {
    begin_timestamp_ms: i64,
    end_timestamp_ms: i64,
    begin_phy_offset: i64,
    end_phy_offset: i64,
    hash_slot_count: i32,
    index_count: i32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_BYTES as usize] {
        let mut b = [0u8; HEADER_BYTES as usize];
        b[0..8].copy_from_slice(&self.begin_timestamp_ms.to_be_bytes());
        b[8..16].copy_from_slice(&self.end_timestamp_ms.to_be_bytes());
        b[16..24].copy_from_slice(&self.begin_phy_offset.to_be_bytes());
        b[24..32].copy_from_slice(&self.end_phy_offset.to_be_bytes());
        b[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        b[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_BYTES as usize]) -> Self {
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let i32_at = |at: usize| i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        Header {
            begin_timestamp_ms: i64_at(0),
            end_timestamp_ms: i64_at(8),
            begin_phy_offset: i64_at(16),
            end_phy_offset: i64_at(24),
            hash_slot_count: i32_at(32),
            index_count: i32_at(36),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IndexFile<S> {
    path: String,
    seg: S,
    header: Header,
    dirty: bool,
}

/// The index files, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Index<S> {
    config: IndexConfig,
    files: Vec<IndexFile<S>>,
}

/// RocketMQ's key hash: the absolute Java `String.hashCode` (0 for `i32::MIN`).
fn key_hash(key: &str) -> i32 {
    rmq_proto::java_string_hash(key).checked_abs().unwrap_or(0)
}

fn read_i32<S: Segment>(seg: &S, pos: u64) -> Option<i32> {
    let mut b = [0u8; 4];
    seg.read_at(pos, &mut b).ok()?;
    Some(i32::from_be_bytes(b))
}

impl<S: Segment> IndexFile<S> {
    fn slot_pos(&self, hash: i32, slots: u32) -> u64 {
        HEADER_BYTES + (hash as u64 % u64::from(slots)) * SLOT_BYTES
    }

    fn entry_pos(&self, n: i32, slots: u32) -> u64 {
        HEADER_BYTES + u64::from(slots) * SLOT_BYTES + n as u64 * ENTRY_BYTES
    }
}

impl<S: Segment> Index<S> {
    /// Opens the index files under `index/`.
    pub fn load<D: Directory<Seg = S>>(dir: &mut D, config: IndexConfig) -> Result<Self, StoreError> {
        let mut names: Vec<(u64, String)> =
            dir.list(INDEX_DIR)?.into_iter().filter_map(|n| n.parse::<u64>().ok().map(|o| (o, n))).collect();
        names.sort_unstable();
        let mut files = Vec::with_capacity(names.len());
        for (_, name) in names {
            let path = format!("{INDEX_DIR}/{name}");
            let seg = dir.open_segment(&path, config.file_bytes())?;
            let mut b = [0u8; HEADER_BYTES as usize];
            seg.read_at(0, &mut b)?;
            let mut header = Header::decode(&b);
            // A header torn or from other sizes is treated as empty: its entries are unreachable.
            if header.hash_slot_count != config.hash_slots as i32
                || !(1..=config.max_entries as i32).contains(&header.index_count)
            {
                header = Header { hash_slot_count: config.hash_slots as i32, index_count: 1, ..Header::default() };
            }
            files.push(IndexFile { path, seg, header, dirty: false });
        }
        Ok(Index { config, files })
    }

    /// The CommitLog offset of the last message indexed, if any.
    pub fn end_phy_offset(&self) -> Option<u64> {
        self.files.iter().rev().find(|f| f.header.index_count > 1).map(|f| f.header.end_phy_offset.max(0) as u64)
    }

    /// Indexes `key` (already `topic#key`) for the message at `phy_offset`, stored at
    /// `store_timestamp_ms`.
    pub fn add<D: Directory<Seg = S>>(
        &mut self,
        dir: &mut D,
        key: &str,
        phy_offset: u64,
        store_timestamp_ms: i64,
    ) -> Result<(), StoreError> {
        let slots = self.config.hash_slots;
        let full = self.files.last().is_none_or(|f| f.header.index_count >= self.config.max_entries as i32);
        if full {
            let path = format!("{INDEX_DIR}/{phy_offset:020}");
            let seg = dir.open_segment(&path, self.config.file_bytes())?;
            let header = Header { hash_slot_count: slots as i32, index_count: 1, ..Header::default() };
            self.files.push(IndexFile { path, seg, header, dirty: true });
        }
        let f = self.files.last_mut().expect("a file was just ensured");
        let hash = key_hash(key);
        let n = f.header.index_count;
        if n == 1 {
            f.header.begin_timestamp_ms = store_timestamp_ms;
            f.header.begin_phy_offset = phy_offset as i64;
        }
        let slot_pos = f.slot_pos(hash, slots);
        let prev = read_i32(&f.seg, slot_pos).filter(|p| (1..n).contains(p)).unwrap_or(0);
        let seconds =
            ((store_timestamp_ms - f.header.begin_timestamp_ms).max(0) / 1000).min(i64::from(i32::MAX)) as i32;
        let mut e = [0u8; ENTRY_BYTES as usize];
        e[0..4].copy_from_slice(&hash.to_be_bytes());
        e[4..12].copy_from_slice(&(phy_offset as i64).to_be_bytes());
        e[12..16].copy_from_slice(&seconds.to_be_bytes());
        e[16..20].copy_from_slice(&prev.to_be_bytes());
        f.seg.write_at(f.entry_pos(n, slots), &e)?;
        f.seg.write_at(slot_pos, &n.to_be_bytes())?;
        f.header.index_count = n + 1;
        f.header.end_timestamp_ms = store_timestamp_ms;
        f.header.end_phy_offset = phy_offset as i64;
        f.seg.write_at(0, &f.header.encode())?;
        f.dirty = true;
        Ok(())
    }

    /// CommitLog offsets of messages indexed under `key` stored within
    /// `[begin_timestamp_ms, end_timestamp_ms]`, newest first, at most `max` and without
    /// repeats. Candidates only: see the module docs.
    pub fn lookup(&self, key: &str, max: usize, begin_timestamp_ms: i64, end_timestamp_ms: i64) -> Vec<u64> {
        let slots = self.config.hash_slots;
        let hash = key_hash(key);
        let mut out: Vec<u64> = Vec::new();
        for f in self.files.iter().rev() {
            let h = &f.header;
            if h.index_count <= 1 || h.end_timestamp_ms < begin_timestamp_ms || h.begin_timestamp_ms > end_timestamp_ms
            {
                continue;
            }
            let mut n = read_i32(&f.seg, f.slot_pos(hash, slots)).unwrap_or(0);
            // Entries only point back, so a chain is at most index_count long; a torn entry
            // cannot make the walk loop.
            let mut steps = 0;
            while (1..h.index_count).contains(&n) && out.len() < max && steps < h.index_count {
                steps += 1;
                let mut e = [0u8; ENTRY_BYTES as usize];
                if f.seg.read_at(f.entry_pos(n, slots), &mut e).is_err() {
                    break;
                }
                let at = |r: std::ops::Range<usize>| e[r].to_vec();
                let entry_hash = i32::from_be_bytes(at(0..4).try_into().expect("4 bytes"));
                let phy = i64::from_be_bytes(at(4..12).try_into().expect("8 bytes"));
                let seconds = i32::from_be_bytes(at(12..16).try_into().expect("4 bytes"));
                let prev = i32::from_be_bytes(at(16..20).try_into().expect("4 bytes"));
                let time = h.begin_timestamp_ms + i64::from(seconds) * 1000;
                // Seconds are truncated: a message stored in the last second counts as in range.
                let in_range = time + 999 >= begin_timestamp_ms && time <= end_timestamp_ms;
                if entry_hash == hash && in_range && phy >= 0 && !out.contains(&(phy as u64)) {
                    out.push(phy as u64);
                }
                if prev >= n {
                    break;
                }
                n = prev;
            }
            if out.len() >= max {
                break;
            }
        }
        out
    }

    /// Deletes the files whose every entry points below `commit_log_min` (retention), never
    /// the last one. Returns how many went.
    pub fn delete_below<D: Directory<Seg = S>>(&mut self, dir: &mut D, commit_log_min: u64) -> Result<u32, StoreError> {
        let mut deleted = 0;
        while self.files.len() >= 2 && (self.files[0].header.end_phy_offset.max(0) as u64) < commit_log_min {
            dir.remove(&self.files[0].path)?;
            self.files.remove(0);
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Flushes changed files in place.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        for f in self.files.iter_mut().filter(|f| f.dirty) {
            let cap = f.seg.capacity_bytes();
            f.seg.flush_range(HEADER_BYTES, cap - HEADER_BYTES)?;
            f.seg.flush_range(0, HEADER_BYTES)?;
            f.dirty = false;
        }
        Ok(())
    }

    /// [`Self::flush`] as detached jobs where the segments allow it (entries and slots, then
    /// the header, in one job).
    pub fn begin_flush(&mut self) -> Result<Vec<FlushJob>, StoreError> {
        let mut jobs = Vec::new();
        for f in self.files.iter_mut().filter(|f| f.dirty) {
            let cap = f.seg.capacity_bytes();
            match (f.seg.detached_flush(HEADER_BYTES, cap - HEADER_BYTES), f.seg.detached_flush(0, HEADER_BYTES)) {
                (Some(body), Some(header)) => jobs.push(FlushJob::new(move || {
                    body.run()?;
                    header.run()
                })),
                _ => {
                    f.seg.flush_range(HEADER_BYTES, cap - HEADER_BYTES)?;
                    f.seg.flush_range(0, HEADER_BYTES)?;
                }
            }
            f.dirty = false;
        }
        Ok(jobs)
    }

    /// How many index files there are.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDirectory;

    #[test]
    fn keys_chain_through_slots_and_roll_to_a_new_file() {
        let mut dir = MemDirectory::default();
        let config = IndexConfig { hash_slots: 4, max_entries: 5 };
        let mut idx = Index::load(&mut dir, config).unwrap();
        assert_eq!(idx.end_phy_offset(), None);
        for i in 0..10u64 {
            let key = if i % 2 == 0 { "T#even" } else { "T#odd" };
            idx.add(&mut dir, key, i * 100, 1_000 + i as i64 * 1_000).unwrap();
        }
        assert_eq!(idx.file_count(), 3, "four entries per file");
        assert_eq!(idx.end_phy_offset(), Some(900));
        assert_eq!(idx.lookup("T#even", 100, 0, i64::MAX), [800, 600, 400, 200, 0]);
        assert_eq!(idx.lookup("T#odd", 2, 0, i64::MAX), [900, 700]);
        assert_eq!(idx.lookup("T#even", 100, 3_000, 5_000), [400, 200], "by store time");
        assert!(
            idx.lookup("T#none", 100, 0, i64::MAX)
                .iter()
                .all(|o| [0, 200, 400, 600, 800].contains(o) || [100, 300, 500, 700, 900].contains(o)),
            "collisions are only candidates"
        );
        assert_eq!(idx.delete_below(&mut dir, 450).unwrap(), 1, "the first file ends at 300");
        assert_eq!(idx.lookup("T#even", 100, 0, i64::MAX), [800, 600, 400]);
    }
}
