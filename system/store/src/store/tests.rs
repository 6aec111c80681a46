use super::*;
use crate::consumequeue::ENTRY_BYTES;
use crate::store::CHECKPOINT_LEAST_ENTRIES;
use crate::{MemDirectory, MmapDirectory};

fn msg(topic: &str, queue_id: i32, body: &str) -> MessageExt {
    MessageExt { topic: topic.into(), queue_id, body: Bytes::from(body.as_bytes().to_vec()), ..Default::default() }
}

fn tagged(topic: &str, queue_id: i32, body: &str, tag: &str) -> MessageExt {
    let mut m = msg(topic, queue_id, body);
    m.properties.insert("TAGS".into(), tag.into());
    m
}

fn small() -> StoreConfig {
    StoreConfig { commit_log_segment_bytes: 4096, consume_queue_segment_entries: 8, ..Default::default() }
}

fn open<D: Directory>(dir: D, config: StoreConfig) -> MessageStore<D> {
    let (store, report) = MessageStore::open(dir, config).unwrap();
    assert_eq!(report.commit_log_end, 0, "a fresh directory");
    store
}

fn bodies(got: &GetResult) -> Vec<String> {
    got.messages.iter().map(|r| String::from_utf8(decode_message(r, true).unwrap().0.body.to_vec()).unwrap()).collect()
}

fn all(store: &MessageStore<impl Directory>, topic: &str, queue_id: i32) -> Vec<String> {
    bodies(&store.get_messages(topic, queue_id, 0, u32::MAX, u32::MAX, &|_| true))
}

/// Each generic test runs over `MemDirectory` and over `MmapDirectory` in a tempdir.
macro_rules! on_both_directories {
    ($($name:ident),* $(,)?) => {
        mod mem {
            $( #[test] fn $name() { super::$name(crate::MemDirectory::default()); } )*
        }
        mod mmap {
            $( #[test] fn $name() {
                let tmp = tempfile::tempdir().unwrap();
                super::$name(crate::MmapDirectory::new(tmp.path()));
            } )*
        }
    };
}

on_both_directories!(
    puts_share_one_log_with_dense_queue_offsets,
    records_that_do_not_fit_roll_over_behind_a_blank,
    refused_puts_leave_no_trace,
    get_statuses_follow_rocketmq,
    get_limits_and_filter_window,
    time_search_finds_the_first_message_at_or_after,
    checkpoint_flushes_everything_and_writes_the_page,
    detached_flush_and_checkpoint_complete_when_reported,
);

fn puts_share_one_log_with_dense_queue_offsets<D: Directory>(dir: D) {
    let mut s = open(dir, small());
    let mut last_end = 0;
    for i in 0..30 {
        let (topic, queue_id) = (if i % 2 == 0 { "A" } else { "B" }, i % 3);
        let expected_queue_offset = s.max_queue_offset(topic, queue_id);
        let mut m = msg(topic, queue_id, &format!("m{i}"));
        let r = s.put(&mut m).unwrap();
        assert_eq!(r.queue_offset, expected_queue_offset);
        assert_eq!((m.queue_offset as u64, m.commit_log_offset as u64), (r.queue_offset, r.commit_log_offset));
        assert!(r.commit_log_offset >= last_end, "one log, appended in order");
        assert_eq!(r.end_offset, r.commit_log_offset + u64::from(r.wrote_bytes));
        assert_eq!(s.commit_log_max_offset(), r.end_offset);
        last_end = r.end_offset;
        let back = s.read_message(r.commit_log_offset).unwrap();
        assert_eq!((back.topic.as_str(), back.queue_offset, back.body), (topic, m.queue_offset, m.body.clone()));
        s.assert_invariants();
    }
    assert_eq!(all(&s, "A", 0), ["m0", "m6", "m12", "m18", "m24"]);
    assert_eq!(s.queues().len(), 6);
    assert!(s.queues().windows(2).all(|w| w[0] < w[1]), "sorted");
    let total: u64 = s.queues().iter().map(|(t, q)| s.max_queue_offset(t, *q)).sum();
    assert_eq!(total, 30);
    assert_eq!((s.min_queue_offset("nope", 0), s.max_queue_offset("nope", 0)), (0, 0));
    assert!(matches!(s.read_message(last_end), Err(StoreError::OffsetNotStored { .. })));
    assert!(matches!(s.read_message(1), Err(StoreError::NoRecord { .. })));
}

fn records_that_do_not_fit_roll_over_behind_a_blank<D: Directory>(dir: D) {
    let mut s = open(dir, small());
    let big = "x".repeat(1500);
    let puts: Vec<PutResult> = (0..5).map(|_| s.put(&mut msg("T", 0, &big)).unwrap()).collect();
    for p in &puts {
        let in_segment = p.commit_log_offset % 4096;
        assert!(in_segment + u64::from(p.wrote_bytes) + END_BLANK_MIN_BYTES <= 4096, "no record straddles: {p:?}");
    }
    assert_eq!(puts[2].commit_log_offset, 4096, "the third record moved to the second segment");
    let blank = s.read_message(puts[1].end_offset);
    assert!(matches!(blank, Err(StoreError::NoRecord { source: MessageError::BadMagic(MAGIC_BLANK), .. })));
    assert_eq!(all(&s, "T", 0).len(), 5);
    s.assert_invariants();
}

fn refused_puts_leave_no_trace<D: Directory>(dir: D) {
    let mut s = open(dir, StoreConfig { max_message_bytes: 1000, ..small() });
    let too_large = s.put(&mut msg("T", 0, &"y".repeat(2000)));
    assert!(matches!(too_large, Err(StoreError::MessageTooLarge { max_bytes: 1000, .. })), "{too_large:?}");
    let header_pushes_over = s.put(&mut msg("T", 0, &"y".repeat(990)));
    assert!(matches!(header_pushes_over, Err(StoreError::MessageTooLarge { .. })));
    for topic in ["", ".", "..", "a/b", "a\\b", "x\0"] {
        assert!(matches!(s.put(&mut msg(topic, 0, "b")), Err(StoreError::InvalidTopic { .. })), "{topic:?}");
    }
    let mut long_props = msg("T", 0, "b");
    long_props.properties.insert("K".into(), "v".repeat(40_000));
    assert!(matches!(s.put(&mut long_props), Err(StoreError::Encode(_))));
    assert_eq!((s.commit_log_max_offset(), s.max_queue_offset("T", 0)), (0, 0));
    assert!(s.queues().is_empty());
    assert_eq!(s.put(&mut msg("T", 0, "fits")).unwrap().queue_offset, 0);
    s.assert_invariants();
}

fn get_statuses_follow_rocketmq<D: Directory>(dir: D) {
    let mut s = open(dir, small());
    let unknown = s.get_messages("T", 0, 5, 1, 1, &|_| true);
    assert_eq!((unknown.status, unknown.next_begin_offset), (GetStatus::NoMatchedLogicQueue, 0));
    s.put(&mut tagged("T", 0, "a", "TagA")).unwrap();
    s.put(&mut msg("T", 0, "b")).unwrap();
    let one = s.get_messages("T", 0, 2, 1, u32::MAX, &|_| true);
    assert_eq!(
        (one.status, one.next_begin_offset, one.min_offset, one.max_offset),
        (GetStatus::OffsetOverflowOne, 2, 0, 2)
    );
    let badly = s.get_messages("T", 0, 9, 1, u32::MAX, &|_| true);
    assert_eq!((badly.status, badly.next_begin_offset), (GetStatus::OffsetOverflowBadly, 0), "min 0: back to 0");
    let none = s.get_messages("T", 0, 0, 8, u32::MAX, &|h| h == 12345);
    assert_eq!((none.status, none.next_begin_offset), (GetStatus::NoMatchedMessage, 2));
    assert!(none.messages.is_empty());
    let tag_a = i64::from(rmq_proto::java_string_hash("TagA"));
    let only_a = s.get_messages("T", 0, 0, 8, u32::MAX, &|h| h == tag_a);
    assert_eq!((bodies(&only_a), only_a.next_begin_offset), (vec!["a".to_string()], 2));
    let untagged = s.get_messages("T", 0, 0, 8, u32::MAX, &|h| h == 0);
    assert_eq!((untagged.status, bodies(&untagged)), (GetStatus::Found, vec!["b".to_string()]));
}

fn get_limits_and_filter_window<D: Directory>(dir: D) {
    let mut s =
        open(dir, StoreConfig { commit_log_segment_bytes: 1 << 20, consume_queue_segment_entries: 1024, ..small() });
    for i in 0..1000 {
        s.put(&mut msg("T", 0, &format!("{i}"))).unwrap();
    }
    let by_count = s.get_messages("T", 0, 10, 3, u32::MAX, &|_| true);
    assert_eq!((bodies(&by_count), by_count.next_begin_offset), (vec!["10".into(), "11".into(), "12".into()], 13));
    let by_bytes = s.get_messages("T", 0, 0, 32, 1, &|_| true);
    assert_eq!((by_bytes.messages.len(), by_bytes.next_begin_offset), (1, 1), "always at least one message");
    let zero = s.get_messages("T", 0, 0, 0, u32::MAX, &|_| true);
    assert_eq!(zero.messages.len(), 1, "max_msgs 0 still returns one");
    let window = GET_SCAN_BYTES_MIN_ENTRIES;
    let rejected = s.get_messages("T", 0, 100, 32, u32::MAX, &|_| false);
    assert_eq!((rejected.status, rejected.next_begin_offset), (GetStatus::NoMatchedMessage, 100 + window));
    let tail = s.get_messages("T", 0, 990, 32, u32::MAX, &|_| false);
    assert_eq!(tail.next_begin_offset, 1000, "the window stops at the max");
}

const GET_SCAN_BYTES_MIN_ENTRIES: u64 = get::GET_SCAN_BYTES_MIN / ENTRY_BYTES;

fn time_search_finds_the_first_message_at_or_after<D: Directory>(dir: D) {
    let mut s = open(dir, small());
    assert_eq!(s.queue_offset_by_time("T", 0, 25), 0, "unknown queue");
    for t in [10, 20, 20, 30, 40] {
        let mut m = msg("T", 0, "x");
        m.store_timestamp = t;
        s.put(&mut m).unwrap();
    }
    assert_eq!(s.queue_offset_by_time("T", 0, 5), 0);
    assert_eq!(s.queue_offset_by_time("T", 0, 20), 1);
    assert_eq!(s.queue_offset_by_time("T", 0, 25), 3);
    assert_eq!(s.queue_offset_by_time("T", 0, 40), 4);
    assert_eq!(s.queue_offset_by_time("T", 0, 99), 5);
}

fn checkpoint_of<D: Directory>(s: &MessageStore<D>) -> Checkpoint {
    let page = s.directory().read_file(CHECKPOINT_PATH).unwrap();
    page.map_or_else(Checkpoint::default, |page| Checkpoint::decode(&page).unwrap())
}

fn checkpoint_flushes_everything_and_writes_the_page<D: Directory>(dir: D) {
    let mut s = open(dir, small());
    let mut m = msg("T", 0, "x");
    m.store_timestamp = 1234;
    let put = s.put(&mut m).unwrap();
    assert_eq!(s.commit_log_flushed_offset(), 0);
    assert_eq!(s.flush().unwrap(), put.end_offset);
    assert_eq!(s.commit_log_flushed_offset(), put.end_offset);
    assert_eq!(checkpoint_of(&s).confirm_phy_offset, 0, "a flush alone leaves the checkpoint");
    let second = s.put(&mut msg("T", 0, "y")).unwrap();
    assert_eq!(s.checkpoint().unwrap(), second.end_offset);
    assert_eq!(s.commit_log_flushed_offset(), second.end_offset);
    let ck = checkpoint_of(&s);
    assert_eq!((ck.confirm_phy_offset, ck.physic_msg_timestamp_ms), (second.end_offset, 0));
    let page = s.directory().read_file(CHECKPOINT_PATH).unwrap().unwrap();
    assert_eq!(page.len(), 4096);
    assert_eq!(&page[32..40], &second.end_offset.to_be_bytes());
    assert_eq!(s.checkpoint().unwrap(), second.end_offset, "an idle checkpoint changes nothing");
    s.assert_invariants();
}

fn detached_flush_and_checkpoint_complete_when_reported<D: Directory>(dir: D) {
    let mut s = open(dir, small());
    let first = s.put(&mut msg("T", 0, "a")).unwrap();
    let (target, jobs) = s.begin_flush().unwrap();
    assert_eq!(target, first.end_offset);
    let second = s.put(&mut msg("T", 1, "b")).unwrap();
    for job in jobs {
        job.run().unwrap();
    }
    assert_eq!(s.commit_log_flushed_offset(), 0, "durable only once reported");
    s.complete_flush(target);
    assert_eq!(s.commit_log_flushed_offset(), target);
    s.complete_flush(0);
    assert_eq!(s.commit_log_flushed_offset(), target, "flushed never moves back");

    let pending = s.begin_checkpoint(true).unwrap();
    assert_eq!(pending.commit_log_offset, second.end_offset);
    assert_eq!(pending.queue_offsets, [(("T".to_string(), 0), 1), (("T".to_string(), 1), 1)]);
    let third = s.put(&mut msg("T", 0, "c")).unwrap();
    let PendingCheckpoint { commit_log_offset, queue_offsets, jobs } = pending;
    for job in jobs {
        job.run().unwrap();
    }
    assert_eq!(checkpoint_of(&s).confirm_phy_offset, 0, "written only once complete");
    s.complete_checkpoint(commit_log_offset, &queue_offsets).unwrap();
    assert_eq!(checkpoint_of(&s).confirm_phy_offset, second.end_offset);
    assert_eq!(s.commit_log_flushed_offset(), second.end_offset);
    s.complete_checkpoint(first.end_offset, &[]).unwrap();
    assert_eq!(checkpoint_of(&s).confirm_phy_offset, second.end_offset, "the checkpoint never moves back");
    assert_eq!(s.flush().unwrap(), third.end_offset);
    s.assert_invariants();
}

#[test]
fn a_commit_hands_every_segment_a_batch_wrote_to_the_files() {
    // One batch of puts rolls over several 4 KiB segments; until the commit the records are
    // staged (a second store over the same files sees none), after it every one is in the files,
    // while the first store still lives (so its drop did not write them).
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(MmapDirectory::new(tmp.path()), small());
    let body = "x".repeat(700);
    for _ in 0..24 {
        store.put(&mut msg("T", 0, &body)).unwrap();
    }
    let segments = || std::fs::read_dir(tmp.path().join("commitlog")).unwrap().count();
    assert!(segments() >= 4, "the batch spans {} segments", segments());
    let written = || -> usize {
        let files = std::fs::read_dir(tmp.path().join("commitlog")).unwrap();
        files.map(|f| std::fs::read(f.unwrap().path()).unwrap().iter().filter(|b| **b != 0).count()).sum()
    };
    assert_eq!(written(), 0, "staged, not in the files yet");
    store.commit().unwrap();
    assert!(written() >= 24 * 700, "every segment's records are in the files");
    let (other, _) = MessageStore::open(MmapDirectory::new(tmp.path()), small()).unwrap();
    assert_eq!(all(&other, "T", 0).len(), 24, "and a store opened over them recovers all");
    assert_eq!(all(&store, "T", 0).len(), 24);
}

#[test]
fn a_routine_checkpoint_skips_quiet_queues_and_stops_below_them() {
    let mut s = open(MemDirectory::default(), StoreConfig { commit_log_segment_bytes: 1 << 20, ..small() });
    for _ in 0..CHECKPOINT_LEAST_ENTRIES {
        s.put(&mut msg("Busy", 0, "b")).unwrap();
    }
    let quiet = s.put(&mut msg("Quiet", 0, "q")).unwrap();
    s.put(&mut msg("Busy", 0, "b")).unwrap();
    let routine = s.begin_checkpoint(false).unwrap();
    assert_eq!(routine.commit_log_offset, quiet.commit_log_offset, "recovery must re-index the quiet queue");
    let busy_entries = CHECKPOINT_LEAST_ENTRIES + 1;
    assert_eq!(routine.queue_offsets, [(("Busy".to_string(), 0), busy_entries), (("Quiet".to_string(), 0), 0)]);
    s.complete_checkpoint(routine.commit_log_offset, &routine.queue_offsets).unwrap();
    assert_eq!(checkpoint_of(&s).confirm_phy_offset, quiet.commit_log_offset);
    let thorough = s.begin_checkpoint(true).unwrap();
    assert_eq!(thorough.commit_log_offset, s.commit_log_max_offset());
    s.complete_checkpoint(thorough.commit_log_offset, &thorough.queue_offsets).unwrap();
    assert_eq!(checkpoint_of(&s).confirm_phy_offset, s.commit_log_max_offset());
    s.assert_invariants();
}

#[test]
fn memory_stores_are_values() {
    let mut a = open(MemDirectory::default(), small());
    a.put(&mut msg("T", 0, "x")).unwrap();
    let mut b = a.clone();
    assert_eq!(a, b);
    let hash = |s: &MessageStore<MemDirectory>| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        s.hash(&mut h);
        h.finish()
    };
    assert_eq!(hash(&a), hash(&b));
    b.put(&mut msg("T", 0, "y")).unwrap();
    assert_ne!(a, b);
    assert_eq!((a.max_queue_offset("T", 0), b.max_queue_offset("T", 0)), (1, 2));
}

#[test]
fn invalid_configs_are_refused() {
    for config in [
        StoreConfig { commit_log_segment_bytes: 512, ..small() },
        StoreConfig { commit_log_segment_bytes: 1 << 31, ..small() },
        StoreConfig { consume_queue_segment_entries: 0, ..small() },
        StoreConfig { max_message_bytes: 0, ..small() },
    ] {
        let opened = MessageStore::open(MemDirectory::default(), config);
        assert!(matches!(opened, Err(StoreError::InvalidConfig { .. })));
    }
}

// ---- Recovery over real files: reopen the same root. ----

struct Disk {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
}

impl Disk {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        Disk { _tmp: tmp, root }
    }
    fn dir(&self) -> MmapDirectory {
        MmapDirectory::new(self.root.clone())
    }
    fn open(&self, config: StoreConfig) -> (MessageStore<MmapDirectory>, RecoveryReport) {
        MessageStore::open(self.dir(), config).unwrap()
    }
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.root.join(rel)
    }
    /// Overwrites bytes of a file, as a torn or corrupted write would leave them.
    fn scribble(&self, rel: &str, at: u64, bytes: &[u8]) {
        let mut content = std::fs::read(self.path(rel)).unwrap();
        content[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
        std::fs::write(self.path(rel), content).unwrap();
    }
    fn commit_log_file(&self, offset: u64) -> String {
        format!("commitlog/{:020}", offset / 4096 * 4096)
    }
}

/// Puts `n` messages round-robin over queues 0 and 1 of topic T, then checkpoints.
fn fill(s: &mut MessageStore<MmapDirectory>, n: usize, body_bytes: usize) -> Vec<PutResult> {
    let puts = (0..n).map(|i| s.put(&mut msg("T", (i % 2) as i32, &format!("{i:0body_bytes$}"))).unwrap()).collect();
    s.checkpoint().unwrap();
    puts
}

#[test]
fn reopen_keeps_everything_and_puts_continue() {
    let disk = Disk::new();
    let (end, puts) = {
        let (mut s, _) = disk.open(small());
        let puts = fill(&mut s, 40, 200);
        (s.commit_log_max_offset(), puts)
    };
    assert!(end > 2 * 4096, "spans three segments");
    let (mut s, report) = disk.open(small());
    assert_eq!((report.commit_log_end, report.torn_records, report.truncated_bytes), (end, 0, 0));
    assert_eq!(report.scan_start_offset, end / 4096 * 4096, "from the checkpoint's segment");
    assert_eq!(report.queues, 2);
    assert!(report.redispatched > 0 && report.redispatched < 40);
    assert_eq!(all(&s, "T", 0).len() + all(&s, "T", 1).len(), 40);
    assert_eq!(s.read_message(puts[7].commit_log_offset).unwrap().queue_offset, 3);
    let next = s.put(&mut msg("T", 0, "after")).unwrap();
    assert_eq!(next.queue_offset, 20);
    assert!(next.commit_log_offset == end || next.commit_log_offset == (end / 4096 + 1) * 4096, "{next:?} {end}");
    s.assert_invariants();
}

#[test]
fn warm_log_segments_are_prepared_ahead_zero_filled_and_used_at_the_rollover() {
    let disk = Disk::new();
    let warm = StoreConfig { warm_log_segments: true, ..small() };
    let next = disk.path("commitlog/00000000000000004096");
    let (mut s, _) = disk.open(warm.clone());
    let first = s.prepare_first_log_segment().expect("a fresh log's first segment");
    assert!(s.prepare_first_log_segment().is_none(), "once");
    first.run().unwrap();
    assert_eq!(std::fs::read(disk.path("commitlog/00000000000000000000")).unwrap(), vec![0u8; 4096]);
    s.put(&mut msg("T", 0, &"x".repeat(100))).unwrap();
    let jobs = |s: &mut MessageStore<MmapDirectory>| s.begin_checkpoint(true).unwrap().jobs;
    // With everything flushed in place first, a checkpoint has no flush jobs of its own.
    s.checkpoint().unwrap();
    assert_eq!(jobs(&mut s).len(), 0, "nothing is prepared while the last segment is less than half full");
    while s.commit_log_max_offset() < 2048 {
        s.put(&mut msg("T", 0, &"x".repeat(100))).unwrap();
    }
    s.checkpoint().unwrap();
    let ahead = jobs(&mut s);
    assert_eq!(ahead.len(), 1, "the next segment's preparation");
    assert_eq!(jobs(&mut s).len(), 0, "prepared once per segment");
    for job in ahead {
        job.run().unwrap();
    }
    assert_eq!(std::fs::read(&next).unwrap(), vec![0u8; 4096], "complete and zero-filled, under its final name");
    let names = s.dir.list("commitlog").unwrap();
    assert_eq!(names, ["00000000000000000000", "00000000000000004096"], "no temporary file is left or listed");
    while s.commit_log_max_offset() < 4096 + 500 {
        s.put(&mut msg("T", 0, &"y".repeat(100))).unwrap();
    }
    s.checkpoint().unwrap();
    let written = s.commit_log_max_offset();
    let count = all(&s, "T", 0).len();
    drop(s);
    // A crash with the next segment prepared but unused: recovery drops it, nothing else.
    let (s, _) = disk.open(warm.clone());
    assert_eq!((s.commit_log_max_offset(), all(&s, "T", 0).len()), (written, count));
    let mut s = s;
    while s.commit_log_max_offset() < 8192 + 100 {
        s.put(&mut msg("T", 0, &"z".repeat(100))).unwrap();
        for job in jobs(&mut s) {
            job.run().unwrap();
        }
    }
    drop(s);
    let (s, report) = disk.open(warm.clone());
    assert_eq!(report.torn_records, 0);
    assert!(all(&s, "T", 0).len() > count);
    s.assert_invariants();
}

#[test]
fn a_torn_tail_is_cut_zeroed_and_overwritten() {
    let disk = Disk::new();
    let end = {
        let (mut s, _) = disk.open(small());
        fill(&mut s, 9, 100);
        s.commit_log_max_offset()
    };
    // A half-written record after the end: plausible size and magic, garbage after.
    let file = disk.commit_log_file(end);
    disk.scribble(&file, end % 4096, &[0, 0, 0, 200, 0xDA, 0xA3, 0x20, 0xA7, 1, 2, 3, 4]);
    let (mut s, report) = disk.open(small());
    assert_eq!((report.commit_log_end, report.torn_records, report.truncated_bytes), (end, 1, 9));
    let content = std::fs::read(disk.path(&file)).unwrap();
    assert!(content[(end % 4096) as usize..].iter().all(|b| *b == 0), "the tail is zeroed");
    let r = s.put(&mut msg("T", 1, "after")).unwrap();
    assert_eq!((r.queue_offset, r.commit_log_offset), (4, end), "continues over the zeroed tail");
    s.assert_invariants();
}

#[test]
fn a_corrupt_record_ends_the_log_and_the_indexes_follow() {
    let disk = Disk::new();
    let puts = {
        let (mut s, _) = disk.open(small());
        fill(&mut s, 6, 50)
    };
    // Flip a body byte of the fifth record (queue 0, offset 2): its CRC no longer matches.
    let victim = puts[4];
    disk.scribble(&disk.commit_log_file(victim.commit_log_offset), victim.end_offset % 4096 - 10, b"!");
    let (s, report) = disk.open(StoreConfig { check_crc_on_recover: false, ..small() });
    assert_eq!(report.commit_log_end, puts[5].end_offset, "without the CRC check the record passes");
    drop(s);
    let (mut s, report) = disk.open(small());
    assert_eq!((report.commit_log_end, report.torn_records), (victim.commit_log_offset, 1));
    assert_eq!((s.max_queue_offset("T", 0), s.max_queue_offset("T", 1)), (2, 2), "entries past the end are cut");
    assert_eq!(s.put(&mut msg("T", 0, "again")).unwrap().queue_offset, 2);
    s.assert_invariants();
}

#[test]
fn an_emptied_queue_reports_no_message() {
    let disk = Disk::new();
    let only = {
        let (mut s, _) = disk.open(small());
        fill(&mut s, 1, 10)[0]
    };
    disk.scribble(&disk.commit_log_file(0), only.end_offset - 5, b"\x7f");
    let (s, report) = disk.open(small());
    assert_eq!((report.commit_log_end, report.torn_records), (0, 1));
    let got = s.get_messages("T", 0, 0, 1, u32::MAX, &|_| true);
    assert_eq!((got.status, got.max_offset), (GetStatus::NoMessageInQueue, 0));
}

#[test]
fn a_lagging_consume_queue_is_rebuilt_by_a_full_scan() {
    let disk = Disk::new();
    let end = {
        let (mut s, _) = disk.open(small());
        fill(&mut s, 40, 200);
        s.commit_log_max_offset()
    };
    std::fs::remove_dir_all(disk.path("consumequeue/T/1")).unwrap();
    let (s, report) = disk.open(small());
    assert_eq!((report.scan_start_offset, report.redispatched), (0, 40), "lag detected: scanned from the start");
    assert_eq!((all(&s, "T", 0).len(), all(&s, "T", 1).len()), (20, 20));
    assert_eq!(report.commit_log_end, end);
    drop(s);
    std::fs::remove_file(disk.path(CHECKPOINT_PATH)).unwrap();
    std::fs::remove_dir_all(disk.path("consumequeue")).unwrap();
    let (s, report) = disk.open(small());
    assert_eq!((report.scan_start_offset, report.redispatched), (0, 40), "no checkpoint: from the first segment");
    assert_eq!(all(&s, "T", 1).len(), 20);
    s.assert_invariants();
}

#[test]
fn losing_the_first_index_file_moves_the_min_offset() {
    let disk = Disk::new();
    {
        let (mut s, _) = disk.open(StoreConfig { commit_log_segment_bytes: 1 << 16, ..small() });
        for i in 0..20 {
            s.put(&mut msg("T", 0, &format!("{i}"))).unwrap();
        }
        s.checkpoint().unwrap();
    }
    std::fs::remove_file(disk.path("consumequeue/T/0/00000000000000000000")).unwrap();
    let (s, _) = disk.open(StoreConfig { commit_log_segment_bytes: 1 << 16, ..small() });
    assert_eq!((s.min_queue_offset("T", 0), s.max_queue_offset("T", 0)), (8, 20));
    let small_offset = s.get_messages("T", 0, 3, 1, u32::MAX, &|_| true);
    assert_eq!((small_offset.status, small_offset.next_begin_offset), (GetStatus::OffsetTooSmall, 8));
    let badly = s.get_messages("T", 0, 30, 1, u32::MAX, &|_| true);
    assert_eq!((badly.status, badly.next_begin_offset), (GetStatus::OffsetOverflowBadly, 20), "min > 0: the max");
    assert_eq!(bodies(&s.get_messages("T", 0, 8, 1, u32::MAX, &|_| true)), ["8"]);
}

#[test]
fn stale_segments_after_the_end_are_removed() {
    let disk = Disk::new();
    let end = {
        let (mut s, _) = disk.open(small());
        fill(&mut s, 3, 10);
        s.commit_log_max_offset()
    };
    // A later segment with a record-looking start, and one after a gap: neither is reachable.
    for start in [4096u64, 3 * 4096] {
        let mut bytes = vec![0u8; 4096];
        bytes[..12].copy_from_slice(&[0, 0, 0, 200, 0xDA, 0xA3, 0x20, 0xA7, 1, 2, 3, 4]);
        std::fs::write(disk.path(&format!("commitlog/{start:020}")), bytes).unwrap();
    }
    let (mut s, report) = disk.open(small());
    assert_eq!(report.commit_log_end, end);
    assert_eq!(report.truncated_bytes, 9, "the stale next segment's bytes (the one after a gap goes unread)");
    assert_eq!(s.directory().list("commitlog").unwrap(), ["00000000000000000000"]);
    fill(&mut s, 40, 200);
    assert!(s.commit_log_max_offset() > 2 * 4096);
    s.assert_invariants();
}

#[test]
fn a_changed_segment_size_is_refused() {
    let disk = Disk::new();
    {
        let (mut s, _) = disk.open(small());
        fill(&mut s, 30, 200);
    }
    let bigger = MessageStore::open(disk.dir(), StoreConfig { commit_log_segment_bytes: 8192, ..small() });
    assert!(matches!(bigger, Err(StoreError::MisalignedSegment { .. })), "{bigger:?}");
    let entries = MessageStore::open(disk.dir(), StoreConfig { consume_queue_segment_entries: 16, ..small() });
    assert!(matches!(entries, Err(StoreError::MisalignedSegment { .. })), "{entries:?}");
    std::fs::remove_file(disk.path("commitlog/00000000000000004096")).unwrap();
    std::fs::remove_file(disk.path("commitlog/00000000000000008192")).unwrap();
    let resized = MessageStore::open(disk.dir(), StoreConfig { commit_log_segment_bytes: 8192, ..small() });
    assert!(matches!(resized, Err(StoreError::SegmentSizeMismatch { .. })), "{resized:?}");
}

#[test]
fn an_index_hole_below_the_scan_reads_as_offset_found_null() {
    let disk = Disk::new();
    {
        let (mut s, _) = disk.open(small());
        for i in 0..40 {
            s.put(&mut msg("T", 0, &format!("{i:0200}"))).unwrap();
        }
        s.checkpoint().unwrap();
    }
    // Entry 2 lies in the first CommitLog segment, before the checkpoint's: recovery trusts it.
    disk.scribble("consumequeue/T/0/00000000000000000000", 2 * ENTRY_BYTES, &[0; ENTRY_BYTES as usize]);
    let (s, report) = disk.open(small());
    assert!(report.scan_start_offset > 0);
    let before = s.get_messages("T", 0, 0, 10, u32::MAX, &|_| true);
    assert_eq!((before.status, before.messages.len(), before.next_begin_offset), (GetStatus::Found, 2, 2));
    let hole = s.get_messages("T", 0, 2, 10, u32::MAX, &|_| true);
    assert_eq!((hole.status, hole.next_begin_offset), (GetStatus::OffsetFoundNull, 3), "step over the hole");
    assert_eq!(s.get_messages("T", 0, 3, 10, u32::MAX, &|_| true).messages.len(), 10);
}

/// A `MemDirectory` whose `open_segment` fails for paths starting with `fail_prefix`.
#[derive(Debug, Default)]
struct FlakyDir {
    inner: MemDirectory,
    fail_prefix: Option<&'static str>,
}

impl Directory for FlakyDir {
    type Seg = crate::MemSegment;
    fn open_segment(&mut self, path: &str, size: u64) -> Result<Self::Seg, StoreError> {
        match self.fail_prefix {
            Some(prefix) if path.starts_with(prefix) => {
                Err(StoreError::Io { path: path.into(), source: std::io::Error::other("disk full") })
            }
            _ => self.inner.open_segment(path, size),
        }
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(dir)
    }
    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        self.inner.remove(path)
    }
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.read_file(path)
    }
    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.write_file(path, bytes)
    }
}

#[test]
fn a_put_that_cannot_open_a_file_stores_nothing() {
    let config = StoreConfig { consume_queue_segment_entries: 1, ..small() };
    let mut s = open(FlakyDir::default(), config);
    s.put(&mut msg("T", 0, "a")).unwrap();
    let end = s.commit_log_max_offset();
    s.directory_mut().fail_prefix = Some("consumequeue");
    assert!(matches!(s.put(&mut msg("T", 0, "b")), Err(StoreError::Io { .. })), "the next index file cannot open");
    assert_eq!((s.commit_log_max_offset(), s.max_queue_offset("T", 0)), (end, 1));
    s.directory_mut().fail_prefix = Some("commitlog");
    let big = "x".repeat(3950); // Does not fit behind "a": needs the next segment.
    assert!(matches!(s.put(&mut msg("T", 0, &big)), Err(StoreError::Io { .. })), "the next segment cannot open");
    assert_eq!(s.max_queue_offset("T", 0), 1);
    s.assert_invariants();
    s.directory_mut().fail_prefix = None;
    let r = s.put(&mut msg("T", 0, &big)).unwrap();
    assert_eq!((r.queue_offset, r.commit_log_offset), (1, 4096));
    assert_eq!(bodies(&s.get_messages("T", 0, 0, 8, u32::MAX, &|_| true)), ["a".to_string(), big]);
    s.assert_invariants();
}

/// A directory whose disk fills up on demand: `open_segment` fails with [`StoreError::DiskFull`]
/// while `full` is set, as `MmapDirectory` does when `posix_fallocate` meets ENOSPC.
#[derive(Debug)]
struct FillableDisk<D = MemDirectory> {
    inner: D,
    full: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<D: Directory> Directory for FillableDisk<D> {
    type Seg = D::Seg;
    fn open_segment(&mut self, path: &str, size: u64) -> Result<Self::Seg, StoreError> {
        // Segments already on disk have their blocks: only a new one needs space.
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let exists = self.inner.list(parent).is_ok_and(|names| names.iter().any(|n| n == name));
        if self.full.load(std::sync::atomic::Ordering::SeqCst) && !exists {
            let source = std::io::Error::from_raw_os_error(28); // ENOSPC
            return Err(StoreError::DiskFull { path: path.into(), source });
        }
        self.inner.open_segment(path, size)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(dir)
    }
    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        self.inner.remove(path)
    }
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.read_file(path)
    }
    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            let source = std::io::Error::from_raw_os_error(28); // ENOSPC
            return Err(StoreError::DiskFull { path: path.into(), source });
        }
        self.inner.write_file(path, bytes)
    }
}

#[test]
fn a_store_reopens_on_a_full_disk_and_serves_reads() {
    let disk = Disk::new();
    let full = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked: Vec<String> = {
        let (mut store, _) = disk.open(small());
        let acked = (0..30)
            .map(|i| {
                let body = format!("message-{i:04}");
                store.put(&mut msg("T", 0, &body)).unwrap();
                body
            })
            .collect();
        store.flush().unwrap();
        acked
    };
    full.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut store, report) = MessageStore::open(FillableDisk { inner: disk.dir(), full: full.clone() }, small())
        .expect("opens on a full disk");
    assert!(report.checkpoint_deferred, "the checkpoint could not be written");
    assert_eq!(all(&store, "T", 0), acked, "every flushed message is served");
    assert!(matches!(store.put(&mut msg("T", 0, &"y".repeat(3000))), Err(StoreError::DiskFull { .. })));
    full.store(false, std::sync::atomic::Ordering::SeqCst);
    store.put(&mut msg("T", 0, "after")).unwrap();
    assert_eq!(store.checkpoint().unwrap(), store.commit_log_max_offset(), "checkpoints resume once space returns");
}

#[test]
fn a_full_disk_refuses_puts_with_a_typed_error_and_accepts_them_once_space_returns() {
    let full = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dir = FillableDisk { inner: MemDirectory::default(), full: full.clone() };
    let mut store = open(dir, small());
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        if i == 20 {
            full.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if i == 150 {
            full.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        let body = format!("message-{i:04}-{}", "x".repeat(40));
        match store.put(&mut msg("T", 0, &body)) {
            Ok(_) => acked.push(body),
            Err(StoreError::DiskFull { .. }) => refused += 1,
            Err(e) => panic!("put {i}: {e}"),
        }
    }
    assert!(refused > 0, "the full disk refused no put");
    assert!(acked.iter().any(|b| b.starts_with("message-0199")), "puts are accepted again once space returns");
    assert_eq!(all(&store, "T", 0), acked, "every acknowledged message is readable, in order, nothing else");
}

/// Streams everything `master` holds beyond `slave`'s write position, in chunks of `chunk`
/// bytes (cut anywhere, as HA batches are), the way a slave's HA client appends them.
fn replicate(master: &MessageStore<impl Directory>, slave: &mut MessageStore<impl Directory>, chunk: usize) {
    let mut at = master.replica_start(slave.commit_log_max_offset()).expect("the slave is not ahead");
    loop {
        let bytes = master.read_for_replica(at, chunk).unwrap();
        if bytes.is_empty() {
            break;
        }
        at = slave.append_replicated(at, &bytes).unwrap();
    }
}

#[test]
fn a_slave_rebuilds_every_queue_from_streamed_bytes_cut_anywhere() {
    for chunk in [1, 7, 100, 4096] {
        let mut master = open(MemDirectory::default(), small());
        let disk = Disk::new();
        let (mut slave, _) = disk.open(small());
        for i in 0..60 {
            master.put(&mut msg("T", i % 3, &format!("m{i:03}-{}", "x".repeat(i as usize * 37 % 600)))).unwrap();
            if i % 17 == 0 {
                replicate(&master, &mut slave, chunk);
            }
        }
        replicate(&master, &mut slave, chunk);
        assert_eq!(slave.commit_log_max_offset(), master.commit_log_max_offset(), "chunk {chunk}");
        assert!(master.commit_log_max_offset() > 3 * 4096, "spans several segments");
        for q in 0..3 {
            assert_eq!(all(&slave, "T", q), all(&master, "T", q), "chunk {chunk}, queue {q}");
        }
        slave.assert_invariants();
        // A slave that restarts keeps what it has and resumes from there.
        slave.flush().unwrap();
        drop(slave);
        let (mut slave, report) = disk.open(small());
        assert_eq!(report.commit_log_end, master.commit_log_max_offset());
        master.put(&mut msg("T", 0, "after restart")).unwrap();
        replicate(&master, &mut slave, chunk);
        assert_eq!(all(&slave, "T", 0), all(&master, "T", 0));
    }
}

#[test]
fn a_slave_cut_mid_record_recovers_to_the_last_whole_record() {
    let mut master = open(MemDirectory::default(), small());
    for i in 0..10 {
        master.put(&mut msg("T", 0, &format!("message-{i}"))).unwrap();
    }
    let disk = Disk::new();
    let (mut slave, _) = disk.open(small());
    let end = master.commit_log_max_offset();
    let bytes = master.read_for_replica(0, (end - 5) as usize).unwrap();
    slave.append_replicated(0, &bytes).unwrap();
    assert_eq!(all(&slave, "T", 0).len(), 9, "the torn last record is not indexed");
    slave.flush().unwrap();
    drop(slave);
    let (mut slave, report) = disk.open(small());
    assert!(report.commit_log_end < end, "recovery cut the partial record");
    replicate(&master, &mut slave, 64);
    assert_eq!(all(&slave, "T", 0), all(&master, "T", 0));
}

#[test]
fn replicated_bytes_that_do_not_continue_the_log_are_refused() {
    let mut master = open(MemDirectory::default(), small());
    master.put(&mut msg("T", 0, "one")).unwrap();
    let mut slave = open(MemDirectory::default(), small());
    let bytes = master.read_for_replica(0, 4096).unwrap();
    assert!(matches!(slave.append_replicated(7, &bytes), Err(StoreError::ReplicaMismatch { .. })));
    slave.append_replicated(0, &bytes).unwrap();
    assert!(matches!(slave.append_replicated(0, &bytes), Err(StoreError::ReplicaMismatch { .. })));
    assert!(matches!(
        slave.append_replicated(slave.commit_log_max_offset(), &[0xFF; 16]),
        Err(StoreError::ReplicaMismatch { .. })
    ));
    // A slave holding more than the master (the master lost an unflushed tail) is not streamed to.
    assert_eq!(master.replica_start(master.commit_log_max_offset() + 1), None);
    assert_eq!(master.replica_start(0), Some(0));
}

/// Puts `n` messages round-robin over queues 0 and 1 of topic T, each stored at time `i`.
fn fill_timed(s: &mut MessageStore<MmapDirectory>, n: usize) {
    for i in 0..n {
        let mut m = msg("T", (i % 2) as i32, &format!("{i:0200}"));
        m.store_timestamp = i as i64;
        s.put(&mut m).unwrap();
    }
}

#[test]
fn retention_deletes_expired_segments_and_the_queues_follow() {
    let disk = Disk::new();
    let (mut s, _) = disk.open(small());
    fill_timed(&mut s, 80);
    assert!(s.commit_log_max_offset() > 4 * 4096, "spans five segments");
    // Nothing unflushed may go: the successor of every segment must be durable first.
    assert_eq!(s.delete_expired_files(i64::MAX, true, 10).unwrap(), Cleaned::default());
    s.checkpoint().unwrap();
    // Expired means every record older than the cut: the first of the next segment tells.
    let first_of_second = s.read_message(4096).unwrap().store_timestamp;
    let kept = s.delete_expired_files(first_of_second, false, 10).unwrap();
    assert_eq!(kept.commit_log_segments, 0, "the first segment holds a record stored at the cut");
    let cleaned = s.delete_expired_files(first_of_second + 1, false, 10).unwrap();
    assert_eq!((cleaned.commit_log_segments, cleaned.commit_log_min_offset), (1, 4096));
    assert!(!disk.path("commitlog/00000000000000000000").exists(), "the file is gone");
    // Every queue starts at its first message still in the log; below it is OFFSET_TOO_SMALL.
    let min0 = s.min_queue_offset("T", 0);
    assert!(min0 > 0);
    let first = s.get_messages("T", 0, min0, 1, u32::MAX, &|_| true);
    assert_eq!(first.status, GetStatus::Found);
    assert!(decode_message(&first.messages[0], true).unwrap().0.commit_log_offset >= 4096);
    let below = s.get_messages("T", 0, 0, 1, u32::MAX, &|_| true);
    assert_eq!((below.status, below.next_begin_offset), (GetStatus::OffsetTooSmall, min0));
    // Forced cleaning deletes regardless of age, pacing itself, but never the last segment.
    let forced = s.delete_expired_files(0, true, 2).unwrap();
    assert_eq!(forced.commit_log_segments, 2);
    while s.delete_expired_files(0, true, 10).unwrap().commit_log_segments > 0 {}
    assert_eq!(s.commit_log_min_offset(), s.commit_log_max_offset() / 4096 * 4096, "only the last segment is left");
    assert!(cleaned.queue_segments + forced.queue_segments > 0, "ConsumeQueue files went too");
    s.assert_invariants();
    // Puts continue; a reopen sees the same bounds and loses nothing that was kept.
    let (min0, max0) = (s.min_queue_offset("T", 0), s.max_queue_offset("T", 0));
    let kept_bodies = (all(&s, "T", 0), all(&s, "T", 1));
    s.checkpoint().unwrap();
    drop(s);
    let (s, report) = disk.open(small());
    assert_eq!(report.torn_records, 0);
    assert_eq!((s.min_queue_offset("T", 0), s.max_queue_offset("T", 0)), (min0, max0));
    assert_eq!((all(&s, "T", 0), all(&s, "T", 1)), kept_bodies);
}

#[test]
fn reopening_after_retention_without_a_checkpoint_rescans_without_cutting() {
    let disk = Disk::new();
    let (mut s, _) = disk.open(small());
    fill_timed(&mut s, 80);
    s.checkpoint().unwrap();
    s.delete_expired_files(0, true, 3).unwrap();
    let ends = (s.commit_log_max_offset(), s.max_queue_offset("T", 0), s.max_queue_offset("T", 1));
    // The checkpoint file still names an offset in a deleted segment.
    disk.scribble("checkpoint", 32, &0u64.to_be_bytes());
    drop(s);
    let (s, report) = disk.open(small());
    assert_eq!((report.torn_records, report.truncated_bytes), (0, 0));
    assert_eq!((s.commit_log_max_offset(), s.max_queue_offset("T", 0), s.max_queue_offset("T", 1)), ends);
    s.assert_invariants();
}

fn keyed(i: usize) -> MessageExt {
    let mut m = msg("T", (i % 2) as i32, &format!("{i:0200}"));
    m.properties.insert("KEYS".into(), format!("order-{} all", i % 5));
    m.properties.insert("UNIQ_KEY".into(), format!("U{i:04}"));
    m.store_timestamp = 1_000 + i as i64 * 1_000;
    m
}

fn indexed() -> StoreConfig {
    StoreConfig { index: Some(crate::IndexConfig { hash_slots: 16, max_entries: 64 }), ..small() }
}

#[test]
fn messages_are_found_by_key_and_unique_key_after_reopen_and_after_losing_the_index() {
    let disk = Disk::new();
    let (mut s, _) = disk.open(indexed());
    for i in 0..40 {
        s.put(&mut keyed(i)).unwrap();
    }
    let by_key = |s: &MessageStore<MmapDirectory>, key: &str, unique: bool| -> Vec<String> {
        let found = s.query_by_key("T", key, 100, 0, i64::MAX, unique).unwrap();
        found.iter().map(|m| m.properties["UNIQ_KEY"].clone()).collect()
    };
    assert_eq!(by_key(&s, "order-3", false), ["U0003", "U0008", "U0013", "U0018", "U0023", "U0028", "U0033", "U0038"]);
    assert_eq!(by_key(&s, "U0017", true), ["U0017"]);
    assert!(by_key(&s, "U0017", false).is_empty(), "a unique key is not one of the KEYS");
    assert!(by_key(&s, "order-3", true).is_empty());
    assert_eq!(by_key(&s, "all", false).len(), 40, "many files: 64 entries each, three keys per message");
    let windowed = s.query_by_key("T", "order-3", 100, 9_000, 19_000, false).unwrap();
    assert_eq!(windowed.iter().map(|m| m.store_timestamp).collect::<Vec<_>>(), [9_000, 14_000, 19_000]);
    assert!(s.query_by_key("Other", "order-3", 100, 0, i64::MAX, false).unwrap().is_empty(), "per topic");
    s.checkpoint().unwrap();
    drop(s);
    let (s, report) = disk.open(indexed());
    assert_eq!(report.reindexed, 0, "the index was complete");
    assert_eq!(by_key(&s, "order-3", false).len(), 8);
    drop(s);
    // An index that lost its files is rebuilt from the log.
    std::fs::remove_dir_all(disk.path("index")).unwrap();
    let (s, report) = disk.open(indexed());
    assert_eq!(report.reindexed, 40);
    assert_eq!(by_key(&s, "U0017", true), ["U0017"]);
    assert_eq!(by_key(&s, "order-3", false).len(), 8);
    // Without an index, a query by key is refused, not answered empty.
    drop(s);
    assert!(disk.open(small()).0.query_by_key("T", "order-3", 100, 0, i64::MAX, false).is_err());
}
