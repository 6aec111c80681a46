//! A BROADCASTING consumer's offsets, kept on the client's own disk (RocketMQ's
//! `LocalFileOffsetStore`): `<dir>/<client id>/<group>/offsets.json`, where `<dir>` is
//! [`ClientConfig::local_offset_store_dir`](crate::config::ClientConfig) or
//! `$HOME/.rocketmq_offsets`. Each member of a broadcasting group reads every message, so the
//! broker keeps no offsets for it; without this file a restarted member would start over.
//!
//! A save writes a temporary file, syncs it, keeps the previous file as `offsets.json.bak` and
//! renames the new one into place, so a crash leaves the old or the new table, never half of
//! one. The file is standard JSON (RocketMQ's fastjson writes objects as map keys, which no
//! JSON parser reads): `{"offsetTable":[{"topic":…,"brokerName":…,"queueId":…,"offset":…}]}`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rmq_proto::body::MessageQueue;
use serde::{Deserialize, Serialize};

use crate::ClientError;

/// The file's name in its group directory.
pub const FILE_NAME: &str = "offsets.json";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    topic: String,
    broker_name: String,
    queue_id: i32,
    offset: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Table {
    offset_table: Vec<Entry>,
}

/// One client's offsets for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOffsetStore {
    path: PathBuf,
}

impl LocalOffsetStore {
    /// The store of `client_id` in `group` under `dir` (`None`: `$HOME/.rocketmq_offsets`).
    /// Names that would leave the directory (empty, `.`, `..`, a path separator) are refused.
    pub fn new(dir: Option<&Path>, client_id: &str, group: &str) -> Result<Self, ClientError> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => match std::env::var_os("HOME") {
                Some(home) => Path::new(&home).join(".rocketmq_offsets"),
                None => {
                    return Err(ClientError::Config(
                        "BROADCASTING needs a local offset store: HOME is not set and \
                         rocketmq.consumer.local-offset-store-dir is not given"
                            .into(),
                    ))
                }
            },
        };
        for (what, name) in [("client id", client_id), ("group", group)] {
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
                return Err(ClientError::Config(format!("{what} {name:?} cannot name an offset store directory")));
            }
        }
        Ok(LocalOffsetStore { path: dir.join(client_id).join(group).join(FILE_NAME) })
    }

    /// The offsets file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn backup(&self) -> PathBuf {
        self.path.with_extension("json.bak")
    }

    /// The saved offsets: empty when nothing was saved yet; the backup when the file is
    /// unreadable; an error naming both files when neither can be read.
    pub fn load(&self) -> Result<BTreeMap<MessageQueue, u64>, ClientError> {
        let read = |p: &Path| -> Result<Option<BTreeMap<MessageQueue, u64>>, String> {
            let text = match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(format!("{}: {e}", p.display())),
            };
            let table: Table = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(Some(
                table
                    .offset_table
                    .into_iter()
                    .map(|e| {
                        let mq = MessageQueue { topic: e.topic, broker_name: e.broker_name, queue_id: e.queue_id };
                        (mq, e.offset)
                    })
                    .collect(),
            ))
        };
        let main = match read(&self.path) {
            Ok(Some(t)) => return Ok(t),
            other => other,
        };
        match (main, read(&self.backup())) {
            (_, Ok(Some(t))) => {
                tracing::warn!(path = %self.path.display(), "offset file unreadable or missing; read the backup");
                Ok(t)
            }
            (Ok(_), Ok(None)) => Ok(BTreeMap::new()),
            (Err(e), Ok(None)) | (Ok(_), Err(e)) => Err(ClientError::Config(e)),
            (Err(e), Err(bak)) => Err(ClientError::Config(format!("{e}; backup: {bak}"))),
        }
    }

    /// Replaces the saved offsets with `offsets`.
    pub fn save(&self, offsets: &BTreeMap<MessageQueue, u64>) -> Result<(), ClientError> {
        let table = Table {
            offset_table: offsets
                .iter()
                .map(|(mq, o)| Entry {
                    topic: mq.topic.clone(),
                    broker_name: mq.broker_name.clone(),
                    queue_id: mq.queue_id,
                    offset: *o,
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&table).expect("offsets serialize");
        let io = |e: std::io::Error| ClientError::Config(format!("{}: {e}", self.path.display()));
        let dir = self.path.parent().expect("the path has a group directory");
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        if self.path.exists() {
            std::fs::copy(&self.path, self.backup()).map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(q: i32) -> MessageQueue {
        MessageQueue { topic: "T".into(), broker_name: "b".into(), queue_id: q }
    }

    #[test]
    fn saved_offsets_read_back_and_a_torn_file_falls_back_to_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalOffsetStore::new(Some(dir.path()), "127.0.0.1@1", "G").unwrap();
        assert!(store.load().unwrap().is_empty(), "nothing saved yet");
        let first: BTreeMap<MessageQueue, u64> = [(mq(0), 3), (mq(1), 9)].into();
        store.save(&first).unwrap();
        assert_eq!(store.load().unwrap(), first);
        let second: BTreeMap<MessageQueue, u64> = [(mq(0), 4), (mq(1), 9)].into();
        store.save(&second).unwrap();
        assert_eq!(store.load().unwrap(), second);
        std::fs::write(store.path(), "{\"offsetTa").unwrap();
        assert_eq!(store.load().unwrap(), first, "the backup holds the save before");
        std::fs::write(store.path().with_extension("json.bak"), "garbage").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("offsets.json") && err.contains("backup"), "{err}");
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (client, group) in [("a/b", "G"), ("c", ".."), ("", "G"), ("c", "x\\y")] {
            assert!(LocalOffsetStore::new(Some(dir.path()), client, group).is_err(), "{client:?} {group:?}");
        }
    }
}
