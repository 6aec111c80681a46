//! Subscription groups (`mqadmin updateSubGroup` / `deleteSubGroup`), persisted as
//! `config/subscriptionGroup.json` (`{"subscriptionGroupTable":{"G":{...}}}`). A group used
//! without a configuration gets the defaults (autoCreateSubscriptionGroup is always on).
//!
//! Honoured: consumeEnable (pulls refused with NO_PERMISSION when false),
//! consumeBroadcastEnable (BROADCASTING pulls refused when false), retryMaxTimes (the DLQ
//! threshold for clients that do not send their own), notifyConsumerIdsChangedEnable (no
//! rebalance pushes when false). Fields this broker has one behaviour for (one retry queue,
//! reads from the master, consumeFromMinEnable, no broker-side orderly flag) accept only that
//! value; anything else is refused by name.

use std::collections::BTreeMap;

use rmq_proto::names;
use rmq_store::Directory;
use serde::{Deserialize, Serialize};

/// Where subscription groups are persisted.
pub const GROUPS_PATH: &str = "config/subscriptionGroup.json";
/// Most groups configured.
pub const GROUPS_MAX: usize = 100_000;

/// One group's configuration (RocketMQ's SubscriptionGroupConfig, the fields it honours).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    /// groupName.
    pub group_name: String,
    /// consumeEnable: the group may pull.
    pub consume_enable: bool,
    /// consumeBroadcastEnable: the group may pull in BROADCASTING mode.
    pub consume_broadcast_enable: bool,
    /// retryMaxTimes: deliveries before the DLQ (when the client does not say).
    pub retry_max_times: i32,
    /// notifyConsumerIdsChangedEnable: push membership changes to the members.
    pub notify_consumer_ids_changed_enable: bool,
    /// retryQueueNums: always 1 here.
    pub retry_queue_nums: i32,
    /// brokerId: always 0 (the master) here.
    pub broker_id: i64,
    /// whichBrokerWhenConsumeSlowly: always 1 here.
    pub which_broker_when_consume_slowly: i64,
    /// consumeFromMinEnable: always true here.
    pub consume_from_min_enable: bool,
    /// consumeMessageOrderly: always false here (orderly is the client's choice).
    pub consume_message_orderly: bool,
}

impl SubscriptionGroupConfig {
    /// The defaults a group gets on first use.
    pub fn defaults(group: &str) -> Self {
        SubscriptionGroupConfig {
            group_name: group.to_string(),
            consume_enable: true,
            consume_broadcast_enable: true,
            retry_max_times: 16,
            notify_consumer_ids_changed_enable: true,
            retry_queue_nums: 1,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            consume_from_min_enable: true,
            consume_message_orderly: false,
        }
    }

    /// Reads an UPDATE_AND_CREATE_SUBSCRIPTIONGROUP body: fields absent keep their defaults;
    /// a field with a value this broker does not carry out is refused by name.
    pub fn from_body(body: &[u8]) -> Result<Self, String> {
        let raw: serde_json::Map<String, serde_json::Value> =
            rmq_proto::body::from_json(body).map_err(|e| format!("bad subscription group body: {e}"))?;
        let name = raw.get("groupName").and_then(|v| v.as_str()).ok_or("groupName is required")?;
        names::validate_group(name).map_err(|e| e.to_string())?;
        let mut c = SubscriptionGroupConfig::defaults(name);
        for (key, v) in &raw {
            let wrong = |want: &str| format!("{key}={v}: expected {want}");
            let as_bool = || v.as_bool().ok_or_else(|| wrong("true or false"));
            let as_int = || v.as_i64().ok_or_else(|| wrong("an integer"));
            match key.as_str() {
                "groupName" => {}
                "consumeEnable" => c.consume_enable = as_bool()?,
                "consumeBroadcastEnable" => c.consume_broadcast_enable = as_bool()?,
                "notifyConsumerIdsChangedEnable" => c.notify_consumer_ids_changed_enable = as_bool()?,
                "retryMaxTimes" => {
                    c.retry_max_times = i32::try_from(as_int()?)
                        .ok()
                        .filter(|n| (-1..=1000).contains(n))
                        .ok_or_else(|| wrong("an integer in -1..=1000 (-1: straight to the DLQ)"))?
                }
                "retryQueueNums" if as_int()? == 1 => {}
                "brokerId" if as_int()? == 0 => {}
                "whichBrokerWhenConsumeSlowly" if as_int()? == 1 => {}
                "consumeFromMinEnable" if as_bool()? => {}
                "consumeMessageOrderly" if !as_bool()? => {}
                // Descriptive fields with no behaviour attached.
                "groupSysFlag" | "consumeTimeoutMinute" | "groupRetryPolicy" | "attributes" | "subscriptionDataSet" => {
                }
                "retryQueueNums"
                | "brokerId"
                | "whichBrokerWhenConsumeSlowly"
                | "consumeFromMinEnable"
                | "consumeMessageOrderly" => {
                    return Err(format!("{key}={v} is not implemented: this broker has one behaviour for it"))
                }
                other => return Err(format!("{other} is not a subscription group setting this broker knows")),
            }
        }
        Ok(c)
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GroupsFile {
    #[serde(default)]
    subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

/// Configured groups.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionGroups {
    table: BTreeMap<String, SubscriptionGroupConfig>,
}

impl SubscriptionGroups {
    /// Loads the persisted groups.
    pub fn load<D: Directory>(dir: &D) -> Result<Self, String> {
        let Some(bytes) = dir.read_file(GROUPS_PATH).map_err(|e| e.to_string())? else {
            return Ok(Self::default());
        };
        let f: GroupsFile = rmq_proto::body::from_json(&bytes).map_err(|e| e.to_string())?;
        Ok(SubscriptionGroups { table: f.subscription_group_table })
    }

    /// Writes the table.
    pub fn persist<D: Directory>(&self, dir: &mut D) -> Result<(), rmq_store::StoreError> {
        let f = GroupsFile { subscription_group_table: self.table.clone() };
        dir.write_file(GROUPS_PATH, &serde_json::to_vec_pretty(&f).expect("groups serialize"))
    }

    /// A group's configuration (the defaults when it has none).
    pub fn get(&self, group: &str) -> SubscriptionGroupConfig {
        self.table.get(group).cloned().unwrap_or_else(|| SubscriptionGroupConfig::defaults(group))
    }

    /// Creates or replaces a group's configuration; false when the table is full.
    pub fn upsert(&mut self, c: SubscriptionGroupConfig) -> bool {
        if !self.table.contains_key(&c.group_name) && self.table.len() >= GROUPS_MAX {
            return false;
        }
        self.table.insert(c.group_name.clone(), c);
        true
    }

    /// A group's configuration, if one was set.
    pub fn configured(&self, group: &str) -> Option<&SubscriptionGroupConfig> {
        self.table.get(group)
    }

    /// Removes a group's configuration; whether it had one.
    pub fn remove(&mut self, group: &str) -> bool {
        self.table.remove(group).is_some()
    }

    /// Replaces the table with a master's (GET_ALL_SUBSCRIPTIONGROUP_CONFIG's answer).
    pub fn take_over(&mut self, body: &[u8]) -> Result<(), String> {
        let f: GroupsFile = rmq_proto::body::from_json(body).map_err(|e| e.to_string())?;
        self.table = f.subscription_group_table;
        Ok(())
    }

    /// Every configured group.
    pub fn all(&self) -> impl Iterator<Item = &SubscriptionGroupConfig> {
        self.table.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_keep_defaults_honour_known_fields_and_refuse_the_rest() {
        let c = SubscriptionGroupConfig::from_body(
            br#"{"groupName":"G","consumeEnable":false,"retryMaxTimes":3,"retryQueueNums":1,"groupSysFlag":0}"#,
        )
        .unwrap();
        assert_eq!((c.consume_enable, c.retry_max_times, c.consume_broadcast_enable), (false, 3, true));
        for (body, says) in [
            (&br#"{"consumeEnable":true}"#[..], "groupName"),
            (br#"{"groupName":"G","retryQueueNums":2}"#, "retryQueueNums=2 is not implemented"),
            (br#"{"groupName":"G","brokerId":1}"#, "brokerId=1"),
            (br#"{"groupName":"G","consumeEnable":"no"}"#, "true or false"),
            (br#"{"groupName":"G","retryMaxTimes":5000}"#, "-1..=1000"),
            (br#"{"groupName":"G","fancy":1}"#, "fancy"),
            (br#"{"groupName":"bad group"}"#, "bad group"),
        ] {
            let err = SubscriptionGroupConfig::from_body(body).unwrap_err();
            assert!(err.contains(says), "{}: {err}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn the_table_persists() {
        let mut dir = rmq_store::MemDirectory::default();
        let mut t = SubscriptionGroups::default();
        assert!(t.get("G").consume_enable, "defaults");
        t.upsert(SubscriptionGroupConfig { consume_enable: false, ..SubscriptionGroupConfig::defaults("G") });
        t.persist(&mut dir).unwrap();
        let back = SubscriptionGroups::load(&dir).unwrap();
        assert!(!back.get("G").consume_enable);
        assert_eq!(back, t);
        // A slave takes a master's table over from GET_ALL_SUBSCRIPTIONGROUP_CONFIG's body.
        let body = serde_json::to_vec(&serde_json::json!({ "subscriptionGroupTable": { "G": t.get("G") } })).unwrap();
        let mut slave = SubscriptionGroups::default();
        slave.take_over(&body).unwrap();
        assert_eq!(slave, t);
        assert!(slave.take_over(b"{").is_err());
    }
}
