//! Consumer offsets, persisted as `config/consumerOffset.json`
//! (`{"offsetTable":{"topic@group":{"0":5}}}`).

use std::collections::BTreeMap;

use rmq_proto::names;
use rmq_store::Directory;
use serde::{Deserialize, Serialize};

/// Where offsets are persisted.
pub const OFFSETS_PATH: &str = "config/consumerOffset.json";
/// Most (topic, group) pairs tracked.
pub const OFFSET_KEYS_MAX: usize = 1_000_000;

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OffsetFile {
    #[serde(default)]
    offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// (topic, group) → queue id → next queue offset to consume.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ConsumerOffsets {
    table: BTreeMap<(String, String), BTreeMap<i32, u64>>,
    dirty: bool,
}

impl ConsumerOffsets {
    /// Loads persisted offsets.
    pub fn load<D: Directory>(dir: &D) -> Result<Self, String> {
        let mut out = ConsumerOffsets::default();
        if let Some(bytes) = dir.read_file(OFFSETS_PATH).map_err(|e| e.to_string())? {
            let f: OffsetFile = rmq_proto::body::from_json(&bytes).map_err(|e| e.to_string())?;
            for (key, per_queue) in f.offset_table {
                let Some((topic, group)) = key.split_once('@') else { continue };
                let q = per_queue.into_iter().filter(|(_, o)| *o >= 0).map(|(q, o)| (q, o as u64)).collect();
                out.table.insert((topic.to_string(), group.to_string()), q);
            }
        }
        Ok(out)
    }

    /// The committed offset of a queue.
    pub fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<u64> {
        self.table.get(&(topic.to_string(), group.to_string())).and_then(|q| q.get(&queue_id)).copied()
    }

    /// Commits an offset. Offsets only move forward; returns true when it moved. Invalid
    /// names are never stored (entry points refuse them first; `topic@group` keys must parse).
    pub fn commit(&mut self, group: &str, topic: &str, queue_id: i32, offset: u64) -> bool {
        if names::validate_group(group).is_err() || names::validate_topic(topic).is_err() {
            return false;
        }
        let key = (topic.to_string(), group.to_string());
        if !self.table.contains_key(&key) && self.table.len() >= OFFSET_KEYS_MAX {
            return false;
        }
        let slot = self.table.entry(key).or_default().entry(queue_id).or_insert(0);
        if offset > *slot || (offset == 0 && *slot == 0) {
            *slot = offset;
            self.dirty = true;
            return true;
        }
        false
    }

    /// Sets an offset unconditionally (admin reset).
    pub fn reset(&mut self, group: &str, topic: &str, queue_id: i32, offset: u64) {
        self.table.entry((topic.to_string(), group.to_string())).or_default().insert(queue_id, offset);
        self.dirty = true;
    }

    /// Lowers every offset above its queue's max (`max_of(topic, queue)`): after an unclean
    /// recovery lost the tail of a queue, new messages reuse those offsets and a group pointing
    /// past them would skip them. Returns how many offsets were lowered.
    pub fn cap_at(&mut self, max_of: impl Fn(&str, i32) -> u64) -> usize {
        let mut lowered = 0;
        for ((topic, _group), per_queue) in self.table.iter_mut() {
            for (qid, off) in per_queue.iter_mut() {
                let max = max_of(topic, *qid);
                if *off > max {
                    *off = max;
                    lowered += 1;
                }
            }
        }
        if lowered > 0 {
            self.dirty = true;
        }
        lowered
    }

    /// Raises every offset below its queue's min (`min_of(topic, queue)`): retention deleted
    /// the messages it pointed at, so the group resumes at the first one still held (RocketMQ
    /// moves such a consumer on its next pull; this also shows it in consumerProgress). Returns
    /// how many offsets were raised.
    pub fn raise_to(&mut self, min_of: impl Fn(&str, i32) -> u64) -> usize {
        let mut raised = 0;
        for ((topic, _group), per_queue) in self.table.iter_mut() {
            for (qid, off) in per_queue.iter_mut() {
                let min = min_of(topic, *qid);
                if *off < min {
                    *off = min;
                    raised += 1;
                }
            }
        }
        if raised > 0 {
            self.dirty = true;
        }
        raised
    }

    /// Forgets every offset of `group` (deleteSubGroup with offsets removed); how many
    /// (topic, group) entries went.
    pub fn remove_group(&mut self, group: &str) -> usize {
        let before = self.table.len();
        self.table.retain(|(_, g), _| g != group);
        let removed = before - self.table.len();
        if removed > 0 {
            self.dirty = true;
        }
        removed
    }

    /// (topic, group) pairs with their per-queue offsets.
    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &BTreeMap<i32, u64>)> {
        self.table.iter()
    }

    /// Persists if anything changed since the last persist.
    pub fn persist<D: Directory>(&mut self, dir: &mut D) -> Result<(), rmq_store::StoreError> {
        if !self.dirty {
            return Ok(());
        }
        dir.write_file(OFFSETS_PATH, &self.to_body())?;
        self.dirty = false;
        Ok(())
    }

    /// The table as `consumerOffset.json` and GET_ALL_CONSUMER_OFFSET carry it.
    pub fn to_body(&self) -> Vec<u8> {
        let mut f = OffsetFile::default();
        for ((topic, group), q) in &self.table {
            f.offset_table.insert(format!("{topic}@{group}"), q.iter().map(|(k, v)| (*k, *v as i64)).collect());
        }
        rmq_proto::body::to_json(&f)
    }

    /// A slave takes over its master's table (RocketMQ's putAll): every entry the master
    /// has replaces this one's; entries only this slave has stay.
    pub fn take_over(&mut self, body: &[u8]) -> Result<(), String> {
        let f: OffsetFile = rmq_proto::body::from_json(body).map_err(|e| e.to_string())?;
        for (key, per_queue) in f.offset_table {
            let Some((topic, group)) = key.split_once('@') else { continue };
            if names::validate_group(group).is_err() || names::validate_topic(topic).is_err() {
                continue;
            }
            for (q, o) in per_queue.into_iter().filter(|(_, o)| *o >= 0) {
                self.reset(group, topic, q, o as u64);
            }
        }
        Ok(())
    }
}
