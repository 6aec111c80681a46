//! Crash recovery against a directory that keeps only what was flushed (plus, optionally, a
//! torn prefix of the unflushed tail): every message put before the last completed flush
//! survives with its queue offset, and offsets stay dense.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use proptest::prelude::*;
use rmq_proto::message::{decode_message, MessageExt};
use rmq_store::{Directory, MessageStore, Segment, StoreConfig, StoreError};

#[derive(Debug, Default)]
struct File {
    live: Vec<u8>,
    durable: Vec<u8>,
}

type Files = Rc<RefCell<BTreeMap<String, File>>>;

#[derive(Debug, Clone, Default)]
struct CrashDir {
    files: Files,
    small: Rc<RefCell<BTreeMap<String, Vec<u8>>>>,
}

#[derive(Debug)]
struct Seg {
    files: Files,
    path: String,
    size: u64,
}

impl Segment for Seg {
    fn capacity_bytes(&self) -> u64 {
        self.size
    }
    fn write_at(&mut self, pos: u64, data: &[u8]) -> Result<(), StoreError> {
        let mut files = self.files.borrow_mut();
        let f = files.get_mut(&self.path).unwrap();
        f.live[pos as usize..pos as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let files = self.files.borrow();
        buf.copy_from_slice(&files[&self.path].live[pos as usize..pos as usize + buf.len()]);
        Ok(())
    }
    fn flush_range(&mut self, pos: u64, len: u64) -> Result<(), StoreError> {
        let mut files = self.files.borrow_mut();
        let f = files.get_mut(&self.path).unwrap();
        let (a, b) = (pos as usize, (pos + len) as usize);
        let src = f.live[a..b].to_vec();
        f.durable[a..b].copy_from_slice(&src);
        Ok(())
    }
}

impl Directory for CrashDir {
    type Seg = Seg;
    fn open_segment(&mut self, path: &str, size: u64) -> Result<Seg, StoreError> {
        self.files
            .borrow_mut()
            .entry(path.to_string())
            .or_insert_with(|| File { live: vec![0; size as usize], durable: vec![0; size as usize] });
        Ok(Seg { files: self.files.clone(), path: path.to_string(), size })
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{dir}/");
        let mut v: Vec<String> = self
            .files
            .borrow()
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(|r| r.split('/').next().unwrap().to_string()))
            .collect();
        v.dedup();
        Ok(v)
    }
    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        self.files.borrow_mut().remove(path);
        Ok(())
    }
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.small.borrow().get(path).cloned())
    }
    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.small.borrow_mut().insert(path.to_string(), bytes.to_vec());
        Ok(())
    }
}

impl CrashDir {
    /// What a power cut leaves: durable bytes, plus `torn` bytes of each file's first dirty run.
    fn crash(&self, torn: usize) -> CrashDir {
        let mut out = BTreeMap::new();
        for (path, f) in self.files.borrow().iter() {
            let mut bytes = f.durable.clone();
            if let Some(first_dirty) = (0..bytes.len()).find(|i| f.live[*i] != f.durable[*i]) {
                let end = (first_dirty + torn).min(bytes.len());
                bytes[first_dirty..end].copy_from_slice(&f.live[first_dirty..end]);
            }
            out.insert(path.clone(), File { live: bytes.clone(), durable: bytes });
        }
        CrashDir { files: Rc::new(RefCell::new(out)), small: Rc::new(RefCell::new(self.small.borrow().clone())) }
    }
}

fn config() -> StoreConfig {
    StoreConfig { commit_log_segment_bytes: 2048, consume_queue_segment_entries: 16, ..Default::default() }
}

#[derive(Debug, Clone)]
enum Op {
    Put { queue: i32, len: usize },
    Flush,
    Checkpoint,
    Crash { torn: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0i32..3, 0usize..400).prop_map(|(queue, len)| Op::Put { queue, len }),
        2 => Just(Op::Flush),
        1 => Just(Op::Checkpoint),
        1 => (0usize..300).prop_map(|torn| Op::Crash { torn }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn flushed_messages_survive_any_crash(ops in proptest::collection::vec(op(), 1..80)) {
        let mut dir = CrashDir::default();
        let (mut store, _) = MessageStore::open(dir.clone(), config()).unwrap();
        // (queue, queue offset) → body of every message a completed flush covered.
        let mut durable: BTreeMap<(i32, u64), Vec<u8>> = BTreeMap::new();
        let mut pending: BTreeMap<(i32, u64), Vec<u8>> = BTreeMap::new();
        let mut serial = 0u32;
        for op in ops {
            match op {
                Op::Put { queue, len } => {
                    serial += 1;
                    let body: Vec<u8> = serial.to_be_bytes().iter().cycle().take(len.max(4)).copied().collect();
                    let mut m = MessageExt { topic: "T".into(), queue_id: queue, body: Bytes::from(body.clone()), ..Default::default() };
                    let r = store.put(&mut m).unwrap();
                    prop_assert_eq!(r.queue_offset, store.max_queue_offset("T", queue) - 1);
                    pending.insert((queue, r.queue_offset), body);
                }
                Op::Flush => {
                    store.flush().unwrap();
                    durable.append(&mut pending);
                }
                Op::Checkpoint => {
                    store.checkpoint().unwrap();
                    durable.append(&mut pending);
                }
                Op::Crash { torn } => {
                    drop(store);
                    dir = dir.crash(torn);
                    let (s, _) = MessageStore::open(dir.clone(), config()).unwrap();
                    store = s;
                    store.assert_invariants();
                    // Unflushed messages may or may not survive; what survived is kept.
                    for ((q, off), body) in std::mem::take(&mut pending) {
                        if off < store.max_queue_offset("T", q) {
                            durable.insert((q, off), body);
                        }
                    }
                    for ((q, off), body) in &durable {
                        let got = store.get_messages("T", *q, *off, 1, u32::MAX, &|_| true);
                        prop_assert_eq!(got.messages.len(), 1, "lost queue {} offset {}", q, off);
                        let (m, _) = decode_message(&got.messages[0], true).unwrap();
                        prop_assert_eq!(m.body.as_ref(), body.as_slice());
                        prop_assert_eq!(m.queue_offset as u64, *off);
                    }
                    for q in 0..3 {
                        let max = store.max_queue_offset("T", q);
                        for off in 0..max {
                            prop_assert_eq!(store.get_messages("T", q, off, 1, u32::MAX, &|_| true).messages.len(), 1, "hole at {}", off);
                        }
                    }
                }
            }
        }
    }
}
