//! Broker settings, named after RocketMQ's broker.conf keys where one exists.

use std::sync::Arc;

use rmq_acl::{Credentials, PlainAcl};
use rmq_store::StoreConfig;

/// When a SYNC_FLUSH send is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlushDiskType {
    /// Answer only after the flush covering the message is reported.
    SyncFlush,
    /// Answer at once; flush on an interval.
    AsyncFlush,
}

/// Replication role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BrokerRole {
    /// Master, replicating asynchronously.
    AsyncMaster,
    /// Master, answering only after a slave acknowledged.
    SyncMaster,
    /// Read-only replica.
    Slave,
}

/// Everything the broker core needs to know about itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerConfig {
    /// brokerClusterName.
    pub cluster_name: String,
    /// brokerName.
    pub broker_name: String,
    /// brokerId: 0 master, >= 1 slave.
    pub broker_id: i64,
    /// Advertised address, ip:port (brokerIP1 + listenPort).
    pub broker_addr: String,
    /// HA address, ip:port.
    pub ha_addr: String,
    /// flushDiskType.
    pub flush_disk_type: FlushDiskType,
    /// brokerRole.
    pub broker_role: BrokerRole,
    /// flushIntervalCommitLog: ASYNC_FLUSH interval.
    pub flush_interval_ms: u64,
    /// syncFlushTimeout: a SYNC_FLUSH send not flushed by then gets FLUSH_DISK_TIMEOUT; a
    /// SYNC_MASTER send no slave confirmed by then (from its flush) gets FLUSH_SLAVE_TIMEOUT, as
    /// RocketMQ 4.x uses this one timeout for both waits.
    pub sync_flush_timeout_ms: u64,
    /// autoCreateTopicEnable.
    pub auto_create_topic_enable: bool,
    /// defaultTopicQueueNums: queues of auto-created topics (capped by the producer's ask).
    pub default_topic_queue_nums: i32,
    /// longPollingEnable.
    pub long_polling_enable: bool,
    /// shortPollingTimeMills: hold time when long polling is off.
    pub short_polling_ms: u64,
    /// Longest hold a pull may ask for.
    pub pull_hold_max_ms: u64,
    /// Most pulls held at once; beyond it pulls are answered at once.
    pub pull_holds_max: usize,
    /// registerNameServerPeriod.
    pub register_interval_ms: u64,
    /// flushConsumerOffsetInterval.
    pub offset_persist_interval_ms: u64,
    /// Client channels silent this long are dropped.
    pub client_expiry_ms: u64,
    /// Largest message body accepted (maxMessageSize).
    pub max_message_bytes: usize,
    /// Max reconsume times before a message goes to the DLQ.
    pub max_reconsume_times: i32,
    /// messageDelayLevel, in ms per level (level 1 first).
    pub delay_levels_ms: Vec<u64>,
    /// How often the delay service checks its queues.
    pub delay_poll_interval_ms: u64,
    /// transactionTimeOut: a half message this old with no outcome is checked back.
    pub transaction_timeout_ms: u64,
    /// transactionCheckInterval: how often half messages are checked.
    pub transaction_check_interval_ms: u64,
    /// transactionCheckMax: checks before a half message is discarded to
    /// TRANS_CHECK_MAX_TIME_TOPIC.
    pub transaction_check_max: u32,
    /// rebalanceLockMaxLiveTime (RocketMQ's `rocketmq.broker.rebalance.lockMaxLiveTime`): a
    /// queue lock its orderly consumer has not renewed for this long may be taken by another.
    pub rebalance_lock_max_live_ms: u64,
    /// fileReservedTime: a CommitLog segment whose messages are all older than this is deleted
    /// at `deleteWhen` (or at once when the disk is too full).
    pub file_reserved_ms: u64,
    /// deleteWhen: the hours of the day (UTC) at which expired segments are deleted.
    pub delete_when_hours: Vec<u8>,
    /// diskMaxUsedSpaceRatio, percent: above it, expired segments are deleted at any hour.
    pub disk_max_used_space_ratio: u8,
    /// cleanResourceInterval: how often retention runs.
    pub clean_resource_interval_ms: u64,
    /// diskSpaceCleanForciblyRatio, percent: above it the oldest segments are deleted whatever
    /// their age (100: never).
    pub disk_clean_forcibly_ratio: u8,
    /// diskSpaceWarningLevelRatio, percent: above it sends are refused (100: never).
    pub disk_warning_level_ratio: u8,
    /// Slave: the master's HA address (haMasterAddress), ip:port.
    pub ha_master_addr: Option<String>,
    /// haSendHeartbeatInterval: slave reports and master heartbeats at least this often.
    pub ha_heartbeat_interval_ms: u64,
    /// haHousekeepingInterval: an HA connection silent this long is closed.
    pub ha_housekeeping_ms: u64,
    /// haSlaveFallbehindMax: a SYNC_MASTER send gets SLAVE_NOT_AVAILABLE when the best slave is
    /// further behind than this (bytes).
    pub ha_slave_fallbehind_max: u64,
    /// Record trace events (the simulator sets this; production leaves it off).
    pub record_events: bool,
    /// aclEnable + aclFile: every request is checked against this ACL first (a refused one is
    /// answered NO_PERMISSION); `None`: no access control.
    pub acl: Option<Arc<PlainAcl>>,
    /// accessKey + secretKey: this broker signs its own requests with them (registration with
    /// NameServers, a slave's metadata copy from its master).
    pub credentials: Option<Credentials>,
    /// The store.
    pub store: StoreConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            broker_addr: "127.0.0.1:10911".into(),
            ha_addr: "127.0.0.1:10912".into(),
            flush_disk_type: FlushDiskType::AsyncFlush,
            broker_role: BrokerRole::AsyncMaster,
            flush_interval_ms: 500,
            sync_flush_timeout_ms: 5_000,
            auto_create_topic_enable: true,
            default_topic_queue_nums: 8,
            long_polling_enable: true,
            short_polling_ms: 1_000,
            pull_hold_max_ms: 30_000,
            pull_holds_max: 100_000,
            register_interval_ms: 30_000,
            offset_persist_interval_ms: 5_000,
            client_expiry_ms: 120_000,
            max_message_bytes: 4 * 1024 * 1024,
            max_reconsume_times: 16,
            delay_levels_ms: parse_delay_levels("1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h")
                .expect("the default delay table parses"),
            delay_poll_interval_ms: 100,
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 30_000,
            transaction_check_max: 15,
            rebalance_lock_max_live_ms: crate::clients::LOCK_MAX_LIVE_MS,
            file_reserved_ms: 72 * 3_600_000,
            delete_when_hours: vec![4],
            disk_max_used_space_ratio: 75,
            clean_resource_interval_ms: 10_000,
            disk_clean_forcibly_ratio: 85,
            disk_warning_level_ratio: 90,
            ha_master_addr: None,
            ha_heartbeat_interval_ms: 5_000,
            ha_housekeeping_ms: 20_000,
            ha_slave_fallbehind_max: 256 * 1024 * 1024,
            record_events: false,
            acl: None,
            credentials: None,
            store: StoreConfig::default(),
        }
    }
}

/// broker.conf keys a running broker can change (UPDATE_BROKER_CONFIG, `mqadmin
/// updateBrokerConfig`), and which broker.conf sets the same way at start.
pub const LIVE_KEYS: &[&str] = &[
    "autoCreateTopicEnable",
    "defaultTopicQueueNums",
    "flushIntervalCommitLog",
    "syncFlushTimeout",
    "longPollingEnable",
    "shortPollingTimeMills",
    "transactionTimeOut",
    "transactionCheckInterval",
    "transactionCheckMax",
    "rebalanceLockMaxLiveTime",
    "fileReservedTime",
    "deleteWhen",
    "diskMaxUsedSpaceRatio",
    "cleanResourceInterval",
    "diskSpaceCleanForciblyRatio",
    "diskSpaceWarningLevelRatio",
];

fn ranged<T: std::str::FromStr + PartialOrd>(v: &str, lo: T, hi: T, expected: &'static str) -> Result<T, &'static str> {
    v.trim().parse::<T>().ok().filter(|n| *n >= lo && *n <= hi).ok_or(expected)
}

fn boolean(v: &str) -> Result<bool, &'static str> {
    v.trim().parse().map_err(|_| "true or false")
}

impl BrokerConfig {
    /// Sets one of the [`LIVE_KEYS`] from its broker.conf text. `Err` says what the value
    /// should be; a key not in [`LIVE_KEYS`] is `Err` too.
    pub fn set_live(&mut self, key: &str, v: &str) -> Result<(), &'static str> {
        match key {
            "autoCreateTopicEnable" => self.auto_create_topic_enable = boolean(v)?,
            "defaultTopicQueueNums" => self.default_topic_queue_nums = ranged(v, 1, 1024, "an integer in 1..=1024")?,
            "flushIntervalCommitLog" => self.flush_interval_ms = ranged(v, 1, 60_000, "milliseconds in 1..=60000")?,
            "syncFlushTimeout" => self.sync_flush_timeout_ms = ranged(v, 1, 600_000, "milliseconds in 1..=600000")?,
            "longPollingEnable" => self.long_polling_enable = boolean(v)?,
            "shortPollingTimeMills" => self.short_polling_ms = ranged(v, 1, 60_000, "milliseconds in 1..=60000")?,
            "transactionTimeOut" => {
                self.transaction_timeout_ms = ranged(v, 1, 86_400_000, "milliseconds in 1..=86400000")?
            }
            "transactionCheckInterval" => {
                self.transaction_check_interval_ms = ranged(v, 1, 86_400_000, "milliseconds in 1..=86400000")?
            }
            "transactionCheckMax" => self.transaction_check_max = ranged(v, 1, 1_000, "an integer in 1..=1000")?,
            "rebalanceLockMaxLiveTime" => {
                self.rebalance_lock_max_live_ms = ranged(v, 1_000, 600_000, "milliseconds in 1000..=600000")?
            }
            "fileReservedTime" => {
                // Hours, as RocketMQ; a fraction of an hour is accepted too (short-lived brokers).
                let hours: f64 = ranged(v, f64::MIN_POSITIVE, 87_600.0, "hours in (0, 87600], such as 72 or 0.01")?;
                self.file_reserved_ms = ((hours * 3_600_000.0) as u64).max(1);
            }
            "deleteWhen" => {
                self.delete_when_hours =
                    parse_delete_when(v).ok_or("hours of the day 00..23, `;`-separated, such as 04 or 04;16")?
            }
            "diskMaxUsedSpaceRatio" => self.disk_max_used_space_ratio = ranged(v, 10, 95, "a percentage in 10..=95")?,
            "cleanResourceInterval" => {
                self.clean_resource_interval_ms = ranged(v, 100, 3_600_000, "milliseconds in 100..=3600000")?
            }
            "diskSpaceCleanForciblyRatio" => {
                self.disk_clean_forcibly_ratio = ranged(v, 10, 100, "a percentage in 10..=100 (100: never)")?
            }
            "diskSpaceWarningLevelRatio" => {
                self.disk_warning_level_ratio = ranged(v, 10, 100, "a percentage in 10..=100 (100: never)")?
            }
            _ => return Err("a key a running broker can change (see LIVE_KEYS)"),
        }
        Ok(())
    }

    /// The settings in broker.conf terms (GET_BROKER_CONFIG, `mqadmin getBrokerConfig`).
    pub fn to_properties(&self) -> Vec<(&'static str, String)> {
        let hours = |ms: u64| {
            let h = ms as f64 / 3_600_000.0;
            if h.fract() == 0.0 {
                format!("{h:.0}")
            } else {
                format!("{h}")
            }
        };
        let delete_when: Vec<String> = self.delete_when_hours.iter().map(|h| format!("{h:02}")).collect();
        vec![
            ("brokerClusterName", self.cluster_name.clone()),
            ("brokerName", self.broker_name.clone()),
            ("brokerId", self.broker_id.to_string()),
            ("brokerAddr", self.broker_addr.clone()),
            (
                "brokerRole",
                match self.broker_role {
                    BrokerRole::AsyncMaster => "ASYNC_MASTER",
                    BrokerRole::SyncMaster => "SYNC_MASTER",
                    BrokerRole::Slave => "SLAVE",
                }
                .into(),
            ),
            (
                "flushDiskType",
                match self.flush_disk_type {
                    FlushDiskType::SyncFlush => "SYNC_FLUSH",
                    FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
                }
                .into(),
            ),
            ("autoCreateTopicEnable", self.auto_create_topic_enable.to_string()),
            ("defaultTopicQueueNums", self.default_topic_queue_nums.to_string()),
            ("flushIntervalCommitLog", self.flush_interval_ms.to_string()),
            ("syncFlushTimeout", self.sync_flush_timeout_ms.to_string()),
            ("longPollingEnable", self.long_polling_enable.to_string()),
            ("shortPollingTimeMills", self.short_polling_ms.to_string()),
            ("registerNameServerPeriod", self.register_interval_ms.to_string()),
            ("flushConsumerOffsetInterval", self.offset_persist_interval_ms.to_string()),
            ("maxMessageSize", self.max_message_bytes.to_string()),
            ("transactionTimeOut", self.transaction_timeout_ms.to_string()),
            ("transactionCheckInterval", self.transaction_check_interval_ms.to_string()),
            ("transactionCheckMax", self.transaction_check_max.to_string()),
            ("rebalanceLockMaxLiveTime", self.rebalance_lock_max_live_ms.to_string()),
            ("fileReservedTime", hours(self.file_reserved_ms)),
            ("deleteWhen", delete_when.join(";")),
            ("diskMaxUsedSpaceRatio", self.disk_max_used_space_ratio.to_string()),
            ("cleanResourceInterval", self.clean_resource_interval_ms.to_string()),
            ("diskSpaceCleanForciblyRatio", self.disk_clean_forcibly_ratio.to_string()),
            ("diskSpaceWarningLevelRatio", self.disk_warning_level_ratio.to_string()),
            ("mappedFileSizeCommitLog", self.store.commit_log_segment_bytes.to_string()),
            ("mappedFileSizeConsumeQueue", (self.store.consume_queue_segment_entries * 20).to_string()),
            ("messageIndexEnable", self.store.index.is_some().to_string()),
            ("maxHashSlotNum", self.store.index.map_or(0, |i| i.hash_slots).to_string()),
            ("maxIndexNum", self.store.index.map_or(0, |i| i.max_entries).to_string()),
            ("aclEnable", self.acl.is_some().to_string()),
        ]
    }
}

/// Parses a deleteWhen string: hours of the day, `;`-separated, such as "04" or "04;16".
pub fn parse_delete_when(s: &str) -> Option<Vec<u8>> {
    let mut hours: Vec<u8> =
        s.split(';').map(|h| h.trim().parse::<u8>().ok().filter(|h| *h < 24)).collect::<Option<_>>()?;
    hours.sort_unstable();
    hours.dedup();
    Some(hours)
}

/// Parses a messageDelayLevel string such as "1s 5s 1m 2h".
pub fn parse_delay_levels(s: &str) -> Option<Vec<u64>> {
    s.split_whitespace()
        .map(|item| {
            let (num, unit) = item.split_at(item.find(|c: char| !c.is_ascii_digit())?);
            let n: u64 = num.parse().ok()?;
            let mult = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return None,
            };
            Some(n * mult)
        })
        .collect()
}
