//! Crash recovery against a directory that remembers which bytes were flushed. A crash keeps
//! the flushed bytes, plus (as a page cache would) an arbitrary subset of the dirty 4 KiB
//! pages and optionally a torn prefix (whole 512-byte sectors) of one more. After reopening:
//! - every message a completed flush covered is readable, with its queue offset;
//! - what survived is exactly the messages ending at or below the recovered CommitLog end,
//!   so each queue's offsets are dense from 0;
//! - puts continue at each queue's max offset.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use proptest::prelude::*;
use rmq_proto::message::{decode_message, MessageExt};
use rmq_store::{Directory, MessageStore, PendingCheckpoint, RecoveryReport, Segment, StoreConfig, StoreError};

/// Page size of the simulated page cache.
const PAGE_BYTES: usize = 4096;
/// A torn page write loses whole sectors.
const SECTOR_BYTES: usize = 512;

#[derive(Debug, Default)]
struct FileState {
    /// What reads see.
    live: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct Disk {
    segments: BTreeMap<String, FileState>,
    /// Small files are replaced atomically and durably (they are written after the flushes
    /// they vouch for, which complete synchronously here).
    small: BTreeMap<String, Vec<u8>>,
}

/// A directory over a shared simulated disk; clones share it.
#[derive(Debug, Clone, Default)]
struct CrashDir {
    disk: Rc<RefCell<Disk>>,
}

#[derive(Debug)]
struct CrashSeg {
    disk: Rc<RefCell<Disk>>,
    path: String,
    size: u64,
}

fn bounds(pos: u64, len: usize, size: u64) -> Result<std::ops::Range<usize>, StoreError> {
    let end = pos + len as u64;
    if end > size {
        return Err(StoreError::OutOfBounds { pos, len_bytes: len as u64, capacity_bytes: size });
    }
    Ok(pos as usize..end as usize)
}

impl Segment for CrashSeg {
    fn capacity_bytes(&self) -> u64 {
        self.size
    }
    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError> {
        let range = bounds(pos, data.len(), self.size)?;
        self.disk.borrow_mut().segments.get_mut(&self.path).expect("open").live[range].copy_from_slice(data);
        Ok(())
    }
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let range = bounds(pos, buf.len(), self.size)?;
        buf.copy_from_slice(&self.disk.borrow().segments[&self.path].live[range]);
        Ok(())
    }
    fn flush_range(&mut self, pos: u64, len: u64) -> Result<(), StoreError> {
        let range = bounds(pos, len as usize, self.size)?;
        let mut disk = self.disk.borrow_mut();
        let file = disk.segments.get_mut(&self.path).expect("open");
        let flushed = file.live[range.clone()].to_vec();
        file.durable[range].copy_from_slice(&flushed);
        Ok(())
    }
}

impl Directory for CrashDir {
    type Seg = CrashSeg;
    fn open_segment(&mut self, path: &str, size: u64) -> Result<CrashSeg, StoreError> {
        let mut disk = self.disk.borrow_mut();
        let file = disk
            .segments
            .entry(path.to_string())
            .or_insert_with(|| FileState { live: vec![0; size as usize], durable: vec![0; size as usize] });
        assert_eq!(file.live.len() as u64, size, "segment sizes never change");
        Ok(CrashSeg { disk: self.disk.clone(), path: path.to_string(), size })
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{dir}/");
        let disk = self.disk.borrow();
        let paths = disk.segments.keys().chain(disk.small.keys());
        let mut names: Vec<String> = paths
            .filter_map(|p| p.strip_prefix(&prefix))
            .filter_map(|rest| rest.split('/').next())
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        let mut disk = self.disk.borrow_mut();
        disk.segments.remove(path);
        disk.small.remove(path);
        Ok(())
    }
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.disk.borrow().small.get(path).cloned())
    }
    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.disk.borrow_mut().small.insert(path.to_string(), bytes.to_vec());
        Ok(())
    }
}

/// What a power cut does to the dirty pages.
#[derive(Debug, Clone, Copy)]
struct Fault {
    /// Seeds which dirty pages happen to have been written back anyway.
    keep_seed: u64,
    /// Out of 8, how likely a dirty page is kept.
    keep_eighths: u64,
    /// Bytes of the first lost dirty page (per file) that made it to disk: whole sectors on a
    /// real disk.
    torn_bytes: usize,
    /// Page granularity of write-back.
    page_bytes: usize,
    /// Files under this prefix keep every dirty page ("" keeps none).
    keep_all_under: &'static str,
}

impl Fault {
    const CLEAN: Fault =
        Fault { keep_seed: 0, keep_eighths: 0, torn_bytes: 0, page_bytes: PAGE_BYTES, keep_all_under: "" };

    fn keeps(&self, path: &str, page: usize) -> bool {
        if !self.keep_all_under.is_empty() && path.starts_with(self.keep_all_under) {
            return true;
        }
        // FNV-1a over (seed, path, page): a fixed, seeded choice per page.
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ self.keep_seed;
        for b in path.bytes().chain(page.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h % 8 < self.keep_eighths
    }
}

impl CrashDir {
    /// The directory a crash leaves behind.
    fn crash(&self, fault: Fault) -> CrashDir {
        let disk = self.disk.borrow();
        let mut segments = BTreeMap::new();
        for (path, file) in &disk.segments {
            let mut bytes = file.durable.clone();
            let mut torn_left = fault.torn_bytes;
            for (page, start) in (0..bytes.len()).step_by(fault.page_bytes).enumerate() {
                let range = start..(start + fault.page_bytes).min(bytes.len());
                if file.live[range.clone()] == bytes[range.clone()] {
                    continue;
                }
                let keep = if fault.keeps(path, page) { range.len() } else { std::mem::take(&mut torn_left) };
                let kept = range.start..range.start + keep.min(range.len());
                bytes[kept.clone()].copy_from_slice(&file.live[kept]);
            }
            segments.insert(path.clone(), FileState { live: bytes.clone(), durable: bytes });
        }
        let disk = Disk { segments, small: disk.small.clone() };
        CrashDir { disk: Rc::new(RefCell::new(disk)) }
    }
}

fn config() -> StoreConfig {
    StoreConfig { commit_log_segment_bytes: 16 * 1024, consume_queue_segment_entries: 16, ..Default::default() }
}

/// One put, as the oracle remembers it.
#[derive(Debug, Clone)]
struct Put {
    topic: String,
    queue_id: i32,
    queue_offset: u64,
    end_offset: u64,
    body: Vec<u8>,
}

/// The store under test and what the oracle knows.
struct Harness {
    dir: CrashDir,
    store: MessageStore<CrashDir>,
    config: StoreConfig,
    /// Every put that survived so far, in put order.
    puts: Vec<Put>,
    /// The CommitLog offset the last completed flush reported durable.
    durable_offset: u64,
    /// A detached flush begun and not yet reported: its target.
    pending_flush: Option<u64>,
    /// A detached checkpoint begun and not yet completed.
    pending_checkpoint: Option<PendingCheckpoint>,
    serial: u32,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(config())
    }

    fn with_config(config: StoreConfig) -> Self {
        let dir = CrashDir::default();
        let (store, _) = MessageStore::open(dir.clone(), config.clone()).unwrap();
        Harness {
            dir,
            store,
            config,
            puts: Vec::new(),
            durable_offset: 0,
            pending_flush: None,
            pending_checkpoint: None,
            serial: 0,
        }
    }

    fn put(&mut self, topic: &str, queue_id: i32, len: usize) {
        self.serial += 1;
        let body: Vec<u8> = self.serial.to_be_bytes().iter().cycle().take(len.max(4)).copied().collect();
        let mut m = MessageExt { topic: topic.into(), queue_id, body: Bytes::from(body.clone()), ..Default::default() };
        let expected = self.puts.iter().filter(|p| p.topic == topic && p.queue_id == queue_id).count() as u64;
        let r = self.store.put(&mut m).unwrap();
        assert_eq!(r.queue_offset, expected, "puts continue at the queue's max offset");
        let end_offset = r.end_offset;
        self.puts.push(Put { topic: topic.into(), queue_id, queue_offset: r.queue_offset, end_offset, body });
    }

    /// The CommitLog flush that acknowledges puts.
    fn flush(&mut self) {
        self.durable_offset = self.durable_offset.max(self.store.flush().unwrap());
    }

    /// CommitLog, ConsumeQueues, checkpoint, in place.
    fn checkpoint(&mut self) {
        self.durable_offset = self.durable_offset.max(self.store.checkpoint().unwrap());
    }

    fn begin_flush(&mut self) {
        let (target, jobs) = self.store.begin_flush().unwrap();
        for job in jobs {
            job.run().unwrap();
        }
        self.pending_flush = Some(target);
    }

    fn complete_flush(&mut self) {
        if let Some(target) = self.pending_flush.take() {
            self.store.complete_flush(target);
            self.durable_offset = self.durable_offset.max(target);
        }
    }

    fn begin_checkpoint(&mut self, thorough: bool) {
        self.pending_checkpoint = Some(self.store.begin_checkpoint(thorough).unwrap());
    }

    fn complete_checkpoint(&mut self) {
        if let Some(PendingCheckpoint { commit_log_offset, queue_offsets, jobs }) = self.pending_checkpoint.take() {
            for job in jobs {
                job.run().unwrap();
            }
            self.store.complete_checkpoint(commit_log_offset, &queue_offsets).unwrap();
            self.durable_offset = self.durable_offset.max(commit_log_offset);
        }
    }

    /// Power cut: pending flushes and checkpoints are lost with the process.
    fn crash(&mut self, fault: Fault) -> RecoveryReport {
        (self.pending_flush, self.pending_checkpoint) = (None, None);
        self.dir = self.dir.crash(fault);
        let (store, report) = MessageStore::open(self.dir.clone(), self.config.clone()).unwrap();
        self.store = store;
        self.store.assert_invariants();
        self.check_after_recovery(&report);
        report
    }

    fn check_after_recovery(&mut self, report: &RecoveryReport) {
        let end = report.commit_log_end;
        assert!(end >= self.durable_offset, "flushed data lost: end {end} < durable {}", self.durable_offset);
        assert_eq!(self.store.commit_log_max_offset(), end);
        assert_eq!(self.store.commit_log_flushed_offset(), end, "recovery leaves the log durable");
        self.puts.retain(|p| p.end_offset <= end);
        for p in &self.puts {
            let got = self.store.get_messages(&p.topic, p.queue_id, p.queue_offset, 1, u32::MAX, &|_| true);
            assert_eq!(got.messages.len(), 1, "lost {p:?}");
            let (m, _) = decode_message(&got.messages[0], true).unwrap();
            assert_eq!((m.body.as_ref(), m.queue_offset as u64), (p.body.as_slice(), p.queue_offset));
        }
        let mut counts: BTreeMap<(String, i32), u64> = BTreeMap::new();
        for p in &self.puts {
            *counts.entry((p.topic.clone(), p.queue_id)).or_default() += 1;
        }
        for (topic, queue_id) in self.store.queues() {
            let expected = counts.get(&(topic.clone(), queue_id)).copied().unwrap_or(0);
            assert_eq!(self.store.max_queue_offset(&topic, queue_id), expected, "{topic}/{queue_id} not dense");
            assert_eq!(self.store.min_queue_offset(&topic, queue_id), 0);
        }
        self.durable_offset = end;
    }
}

#[test]
fn a_clean_crash_keeps_exactly_the_flushed_prefix() {
    let mut h = Harness::new();
    for i in 0..6 {
        h.put("T", i % 2, 100);
    }
    h.flush();
    for i in 0..4 {
        h.put("T", i % 2, 100);
    }
    let report = h.crash(Fault::CLEAN);
    assert_eq!((h.puts.len(), report.torn_records), (6, 0));
    assert_eq!(report.scan_start_offset, 0, "no checkpoint yet: scan from the first segment");
    h.put("T", 0, 10);
    h.put("T", 1, 10);
}

#[test]
fn a_torn_page_is_cut() {
    let mut h = Harness::new();
    h.put("T", 0, 100);
    h.flush();
    h.put("T", 0, 500);
    // The page holding the second record (bytes 192..784) is written back one sector deep.
    let report = h.crash(Fault { torn_bytes: SECTOR_BYTES, ..Fault::CLEAN });
    assert_eq!((h.puts.len(), report.torn_records), (1, 1));
    assert!(report.truncated_bytes > 0);
    h.put("T", 0, 10);
}

#[test]
fn index_entries_written_back_ahead_of_the_log_are_cut() {
    let mut h = Harness::new();
    for _ in 0..5 {
        h.put("T", 0, 50);
    }
    h.checkpoint();
    for _ in 0..3 {
        h.put("T", 0, 50);
    }
    // The page cache wrote the index back, not the log.
    h.crash(Fault { keep_all_under: "consumequeue", ..Fault::CLEAN });
    assert_eq!(h.store.max_queue_offset("T", 0), 5);
    h.put("T", 0, 10);
}

#[test]
fn index_entries_behind_the_checkpoint_are_rebuilt() {
    let mut h = Harness::new();
    for _ in 0..5 {
        h.put("T", 0, 50);
    }
    h.checkpoint();
    for i in 0..300 {
        h.put("T", i % 3, 50);
    }
    h.begin_flush();
    h.complete_flush();
    let report = h.crash(Fault::CLEAN);
    assert_eq!(h.puts.len(), 305, "all flushed, though the index after the checkpoint was not");
    assert!(report.redispatched >= 300);
}

#[test]
fn a_checkpoint_in_flight_at_the_crash_vouches_for_nothing() {
    let mut h = Harness::new();
    for i in 0..80 {
        h.put("T", i % 2, 300);
    }
    h.begin_checkpoint(true);
    h.put("T", 0, 300);
    let report = h.crash(Fault { keep_seed: 3, keep_eighths: 4, ..Fault::CLEAN });
    assert_eq!(report.scan_start_offset, 0, "the checkpoint was never written");
    h.begin_checkpoint(true);
    h.put("T", 1, 300);
    h.complete_checkpoint();
    let report = h.crash(Fault::CLEAN);
    assert!(report.scan_start_offset > 0, "from the completed checkpoint's segment");
}

#[test]
fn a_crash_right_after_recovery_loses_nothing() {
    let mut h = Harness::new();
    for i in 0..20 {
        h.put("T", i % 2, 150);
    }
    h.flush();
    h.put("T", 0, 150);
    h.crash(Fault { keep_seed: 7, keep_eighths: 4, torn_bytes: 2 * SECTOR_BYTES, ..Fault::CLEAN });
    let survivors = h.puts.len();
    h.crash(Fault::CLEAN);
    assert_eq!(h.puts.len(), survivors);
}

/// Harsher than a disk (256-byte pages, a tear at byte 241, not at a sector boundary): a crash
/// keeps the page holding an unflushed record's body but loses the header bytes from QUEUEID
/// on, so QUEUEOFFSET reads 0 while the body CRC still matches. Recovery sees that queue
/// offset 0 of B/0 is already taken. (With whole lost sectors a header cannot be damaged while
/// its body-length field survives; this checks the continuity rule anyway.)
#[test]
fn a_torn_header_with_an_intact_body_is_cut() {
    let mut h = Harness::with_config(StoreConfig { commit_log_segment_bytes: 2048, ..config() });
    h.put("A", 0, 317);
    h.put("A", 0, 23);
    h.crash(Fault { keep_seed: 690866019264611525, keep_eighths: 4, page_bytes: 256, ..Fault::CLEAN });
    for len in [196, 0, 79, 157, 121, 408, 0, 0, 0, 235, 159, 182, 309, 368, 120, 354] {
        h.put("A", 0, len);
    }
    h.put("B", 0, 313);
    h.flush();
    for len in [25, 124, 222, 297] {
        h.put("A", 0, len);
    }
    h.put("B", 1, 431);
    h.put("A", 0, 390);
    h.flush();
    h.put("B", 0, 116);
    let fault =
        Fault { keep_seed: 6636774224335296069, keep_eighths: 3, torn_bytes: 241, page_bytes: 256, keep_all_under: "" };
    let report = h.crash(fault);
    assert_eq!((report.torn_records, h.store.max_queue_offset("B", 0)), (1, 1));
}

#[derive(Debug, Clone)]
enum Op {
    Put { topic: u8, queue_id: i32, len: usize },
    Flush,
    Checkpoint,
    BeginFlush,
    CompleteFlush,
    BeginCheckpoint { thorough: bool },
    CompleteCheckpoint,
    Crash { keep_seed: u64, keep_eighths: u64, torn_bytes: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        16 => (0u8..2, 0i32..3, 0usize..1500).prop_map(|(topic, queue_id, len)| Op::Put { topic, queue_id, len }),
        2 => Just(Op::Flush),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::BeginFlush),
        1 => Just(Op::CompleteFlush),
        2 => any::<bool>().prop_map(|thorough| Op::BeginCheckpoint { thorough }),
        1 => Just(Op::CompleteCheckpoint),
        2 => (any::<u64>(), 0u64..=8, 0usize..PAGE_BYTES / SECTOR_BYTES).prop_map(|(keep_seed, keep_eighths, sectors)| {
            Op::Crash { keep_seed, keep_eighths, torn_bytes: sectors * SECTOR_BYTES }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn flushed_messages_survive_any_crash(ops in proptest::collection::vec(op(), 1..120)) {
        let mut h = Harness::new();
        for op in ops {
            match op {
                Op::Put { topic, queue_id, len } => h.put(["A", "B"][topic as usize], queue_id, len),
                Op::Flush => h.flush(),
                Op::Checkpoint => h.checkpoint(),
                Op::BeginFlush => h.begin_flush(),
                Op::CompleteFlush => h.complete_flush(),
                Op::BeginCheckpoint { thorough } => h.begin_checkpoint(thorough),
                Op::CompleteCheckpoint => h.complete_checkpoint(),
                Op::Crash { keep_seed, keep_eighths, torn_bytes } => {
                    h.crash(Fault { keep_seed, keep_eighths, torn_bytes, ..Fault::CLEAN });
                }
            }
            h.store.assert_invariants();
        }
        h.crash(Fault::CLEAN);
    }
}
