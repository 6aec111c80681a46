//! The broker's topic table, persisted as `config/topics.json`.

use std::collections::BTreeMap;

use rmq_proto::body::{from_json, to_json, DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use rmq_proto::names::{validate_topic, NameError, NameMap};
use rmq_store::Directory;

use crate::BrokerConfig;

/// Where the topic table is persisted.
pub const TOPICS_PATH: &str = "config/topics.json";
/// The template topic producers name for auto-creation.
pub const TBW102: &str = "TBW102";
pub use rmq_proto::names::{DLQ_PREFIX, RETRY_PREFIX};
/// Topic holding delayed messages; queue = level - 1.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// Most topics a broker holds.
pub const TOPICS_MAX: usize = 1_000_000;

/// Topic name → config, with a version that changes on every update. Every send looks its
/// topic up here: hashed, so 10,000 topics cost what one does (see [`NameMap`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TopicTable {
    table: NameMap<TopicConfig>,
    version: DataVersion,
}

/// Why a topic was not created or updated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicRefused {
    /// The table holds [`TOPICS_MAX`] topics already.
    #[error("topic table is full ({TOPICS_MAX} topics)")]
    TableFull,
    /// The name breaks RocketMQ's rules; entry points check names first, so this is the last
    /// line of defence before a name reaches `topics.json`, a registration or a directory.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl TopicTable {
    /// Loads the persisted table, adding the system topics.
    pub fn load<D: Directory>(dir: &D, config: &BrokerConfig) -> Result<Self, String> {
        let mut t = TopicTable::default();
        if let Some(bytes) = dir.read_file(TOPICS_PATH).map_err(|e| e.to_string())? {
            let w: TopicConfigSerializeWrapper = from_json(&bytes).map_err(|e| e.to_string())?;
            t.table = w.topic_config_table.into_iter().collect();
            t.version = w.data_version;
        }
        let mut tbw = TopicConfig::new(TBW102, config.default_topic_queue_nums);
        tbw.perm = rmq_proto::codes::perm::READ_WRITE | 1;
        t.table.get_or_insert_with(TBW102, || tbw);
        let levels = config.delay_levels_ms.len() as i32;
        t.table.get_or_insert_with(SCHEDULE_TOPIC, || TopicConfig::new(SCHEDULE_TOPIC, levels));
        Ok(t)
    }

    /// Gives every ConsumeQueue a reachable topic config: adds topics that have queues but no
    /// config (queue count = highest queue id + 1), and widens a topic whose config has fewer
    /// queues than its data (a slave that learns topics from replicated data). Returns true
    /// when anything changed.
    pub fn restore_from_queues(&mut self, now_ms: u64, queues: &[(String, i32)]) -> bool {
        let mut wanted: BTreeMap<&str, i32> = BTreeMap::new();
        for (topic, qid) in queues {
            if validate_topic(topic).is_ok() {
                let n = wanted.entry(topic).or_insert(1);
                *n = (*n).max(qid + 1);
            }
        }
        let mut any = false;
        for (topic, n) in wanted {
            let tc = match self.table.get(topic) {
                None => TopicConfig::new(topic, n),
                Some(tc) if tc.read_queue_nums < n || tc.write_queue_nums < n => {
                    let mut wider = tc.clone();
                    wider.read_queue_nums = wider.read_queue_nums.max(n);
                    wider.write_queue_nums = wider.write_queue_nums.max(n);
                    wider
                }
                Some(_) => continue,
            };
            // Names were checked above; a full table leaves the rest without config.
            any |= self.upsert(now_ms, tc).is_ok();
        }
        any
    }

    /// The config of `topic`.
    pub fn get(&self, topic: &str) -> Option<&TopicConfig> {
        self.table.get(topic)
    }

    /// All topics, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &TopicConfig)> {
        self.table.iter()
    }

    /// Number of topics.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The current version.
    pub fn version(&self) -> &DataVersion {
        &self.version
    }

    /// Inserts or replaces a topic; refuses an invalid name or a new topic in a full table.
    pub fn upsert(&mut self, now_ms: u64, tc: TopicConfig) -> Result<(), TopicRefused> {
        validate_topic(&tc.topic_name)?;
        if !self.table.contains_key(&tc.topic_name) && self.table.len() >= TOPICS_MAX {
            return Err(TopicRefused::TableFull);
        }
        self.table.insert(tc.topic_name.clone(), tc);
        self.version.counter += 1;
        self.version.timestamp = now_ms as i64;
        Ok(())
    }

    /// Drops topics whose names break the rules (a `topics.json` written before names were
    /// checked); returns them so the caller can persist the cleaned table.
    pub fn drop_invalid_names(&mut self, now_ms: u64) -> Vec<String> {
        let bad: Vec<String> = self.table.keys().filter(|t| validate_topic(t).is_err()).cloned().collect();
        for t in &bad {
            self.remove(now_ms, t);
        }
        bad
    }

    /// Every topic name in the table is valid.
    pub fn assert_names_valid(&self) {
        for name in self.table.keys() {
            assert!(validate_topic(name).is_ok(), "topic table holds an invalid name {name:?}");
        }
    }

    /// Removes a topic.
    pub fn remove(&mut self, now_ms: u64, topic: &str) -> bool {
        let had = self.table.remove(topic).is_some();
        if had {
            self.version.counter += 1;
            self.version.timestamp = now_ms as i64;
        }
        had
    }

    /// The wrapper sent in registrations and persisted.
    pub fn wrapper(&self) -> TopicConfigSerializeWrapper {
        TopicConfigSerializeWrapper {
            topic_config_table: self.table.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            data_version: self.version.clone(),
        }
    }

    /// Persists the table.
    pub fn persist<D: Directory>(&self, dir: &mut D) -> Result<(), rmq_store::StoreError> {
        dir.write_file(TOPICS_PATH, &to_json(&self.wrapper()))
    }
}
