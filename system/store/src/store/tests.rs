use super::*;
use crate::{MemDirectory, MmapDirectory};

fn msg(topic: &str, queue_id: i32, body: &str) -> MessageExt {
    MessageExt { topic: topic.into(), queue_id, body: Bytes::from(body.as_bytes().to_vec()), ..Default::default() }
}

fn small() -> StoreConfig {
    StoreConfig { commit_log_segment_bytes: 4096, consume_queue_segment_entries: 8, ..Default::default() }
}

fn bodies(got: &GetResult) -> Vec<String> {
    got.messages.iter().map(|r| String::from_utf8(decode_message(r, true).unwrap().0.body.to_vec()).unwrap()).collect()
}

#[test]
fn queues_share_one_log_with_dense_offsets() {
    let (mut s, _) = MessageStore::open(MemDirectory::default(), small()).unwrap();
    for i in 0..30 {
        let r = s.put(&mut msg(if i % 2 == 0 { "A" } else { "B" }, i % 3, &format!("m{i}"))).unwrap();
        assert!(r.end_offset <= s.commit_log_max_offset());
    }
    let total: u64 = s.queues().iter().map(|(t, q)| s.max_queue_offset(t, *q)).sum();
    assert_eq!(total, 30);
    let got = s.get_messages("A", 0, 0, 32, u32::MAX, &|_| true);
    assert_eq!(bodies(&got), ["m0", "m6", "m12", "m18", "m24"]);
    s.assert_invariants();
}

#[test]
fn records_that_do_not_fit_roll_to_the_next_segment_behind_a_blank() {
    let (mut s, _) = MessageStore::open(MemDirectory::default(), small()).unwrap();
    let big = "x".repeat(1500);
    let offsets: Vec<u64> = (0..5).map(|_| s.put(&mut msg("T", 0, &big)).unwrap().commit_log_offset).collect();
    assert!(offsets.iter().all(|o| o % 4096 + 1600 <= 4096), "no record straddles a segment: {offsets:?}");
    assert_eq!(offsets[2], 4096);
    assert_eq!(bodies(&s.get_messages("T", 0, 0, 32, u32::MAX, &|_| true)).len(), 5);
    assert!(matches!(s.put(&mut msg("T", 0, &"y".repeat(5000))), Err(StoreError::MessageTooLarge { .. })));
}

#[test]
fn get_statuses_follow_rocketmq() {
    let (mut s, _) = MessageStore::open(MemDirectory::default(), small()).unwrap();
    assert_eq!(s.get_messages("T", 0, 0, 1, 1, &|_| true).status, GetStatus::NoMatchedLogicQueue);
    let mut tagged = msg("T", 0, "a");
    tagged.properties.insert("TAGS".into(), "TagA".into());
    s.put(&mut tagged).unwrap();
    s.put(&mut msg("T", 0, "b")).unwrap();
    assert_eq!(s.get_messages("T", 0, 2, 1, 1, &|_| true).status, GetStatus::OffsetOverflowOne);
    let bad = s.get_messages("T", 0, 9, 1, 1, &|_| true);
    assert_eq!((bad.status, bad.next_begin_offset), (GetStatus::OffsetOverflowBadly, 2));
    let none = s.get_messages("T", 0, 0, 8, u32::MAX, &|h| h == 12345);
    assert_eq!((none.status, none.next_begin_offset), (GetStatus::NoMatchedMessage, 2));
    let tag_a = i64::from(rmq_proto::java_string_hash("TagA"));
    assert_eq!(bodies(&s.get_messages("T", 0, 0, 8, u32::MAX, &|h| h == tag_a)), ["a"]);
    let one = s.get_messages("T", 0, 0, 8, 1, &|_| true);
    assert_eq!(one.messages.len(), 1, "the byte limit still returns one message");
}

#[test]
fn mmap_store_recovers_after_reopen_and_truncates_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let root = || MmapDirectory { root: dir.path().to_path_buf() };
    {
        let (mut s, _) = MessageStore::open(root(), small()).unwrap();
        for i in 0..20 {
            s.put(&mut msg("T", i % 2, &format!("m{i}"))).unwrap();
        }
        s.flush().unwrap();
    }
    // Tear the tail: garbage after the last record, as a half-written append would leave.
    let (end, seg) = {
        let (s, _) = MessageStore::open(root(), small()).unwrap();
        (s.commit_log_max_offset(), s.commit_log_max_offset() / 4096 * 4096)
    };
    let path = dir.path().join("commitlog").join(format!("{seg:020}"));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = (end - seg) as usize;
    bytes[at..at + 12].copy_from_slice(&[0, 0, 0, 200, 0xDA, 0xA3, 0x20, 0xA7, 1, 2, 3, 4]);
    std::fs::write(&path, bytes).unwrap();
    let (mut s, report) = MessageStore::open(root(), small()).unwrap();
    assert_eq!(report.commit_log_end, end);
    assert!(report.truncated_bytes > 0);
    assert_eq!(s.max_queue_offset("T", 0) + s.max_queue_offset("T", 1), 20);
    let r = s.put(&mut msg("T", 0, "after")).unwrap();
    assert_eq!(r.queue_offset, 10);
    assert_eq!(r.commit_log_offset, end);
}

#[test]
fn lagging_consume_queues_are_rebuilt_from_the_commit_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = || MmapDirectory { root: dir.path().to_path_buf() };
    {
        let (mut s, _) = MessageStore::open(root(), small()).unwrap();
        for i in 0..12 {
            s.put(&mut msg("T", 0, &format!("m{i}"))).unwrap();
        }
        s.flush().unwrap();
    }
    std::fs::remove_dir_all(dir.path().join("consumequeue")).unwrap();
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let (s, report) = MessageStore::open(root(), small()).unwrap();
    assert_eq!(report.redispatched, 12);
    assert_eq!(bodies(&s.get_messages("T", 0, 0, 32, u32::MAX, &|_| true)).len(), 12);
}

#[test]
fn time_search_finds_the_first_message_at_or_after() {
    let (mut s, _) = MessageStore::open(MemDirectory::default(), small()).unwrap();
    for t in [10, 20, 30, 40] {
        let mut m = msg("T", 0, "x");
        m.store_timestamp = t;
        s.put(&mut m).unwrap();
    }
    assert_eq!(s.queue_offset_by_time("T", 0, 25), 2);
    assert_eq!(s.queue_offset_by_time("T", 0, 5), 0);
    assert_eq!(s.queue_offset_by_time("T", 0, 99), 4);
}
