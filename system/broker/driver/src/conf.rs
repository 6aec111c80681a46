//! RocketMQ broker.conf keys → [`BrokerOptions`].

use rmq_broker_core::config::parse_delay_levels;
use rmq_broker_core::{BrokerConfig, BrokerRole, FlushDiskType};
use rmq_rt::conf::{ConfError, Props};

use crate::BrokerOptions;

/// Keys this broker acts on.
pub const KNOWN_KEYS: &[&str] = &[
    "brokerClusterName",
    "brokerName",
    "brokerId",
    "listenPort",
    "brokerIP1",
    "storePathRootDir",
    "storePathCommitLog",
    "flushDiskType",
    "brokerRole",
    "namesrvAddr",
    "autoCreateTopicEnable",
    "defaultTopicQueueNums",
    "mappedFileSizeCommitLog",
    "mappedFileSizeConsumeQueue",
    "flushIntervalCommitLog",
    "syncFlushTimeout",
    "longPollingEnable",
    "shortPollingTimeMills",
    "maxMessageSize",
    "messageDelayLevel",
    "registerNameServerPeriod",
    "flushConsumerOffsetInterval",
    // Recognised but not implemented: refused with their own error by `apply` (see
    // `UNIMPLEMENTED`) rather than as unknown keys.
    "haListenPort",
    "deleteWhen",
    "fileReservedTime",
    "diskMaxUsedSpaceRatio",
    "brokerIP2",
    "aclEnable",
    // Tuning knobs with no counterpart here (one event loop, no thread pools): accepted so stock
    // files start, listed in CONFIG.md as having no effect.
    "sendMessageThreadPoolNums",
    "pullMessageThreadPoolNums",
    "autoCreateSubscriptionGroup",
    "enablePropertyFilter",
    "traceTopicEnable",
];

/// Keys refused whenever they are set (any value would be a promise this broker does not keep).
const UNIMPLEMENTED: &[(&str, &str)] = &[
    ("haListenPort", "no replication yet"),
    ("brokerIP2", "no replication yet"),
    ("deleteWhen", "no CommitLog retention yet: files are never deleted"),
    ("fileReservedTime", "no CommitLog retention yet: files are never deleted"),
    ("diskMaxUsedSpaceRatio", "writes are refused only when a segment cannot be allocated"),
];

fn range(key: &str, value: &str, expected: &'static str) -> ConfError {
    ConfError::Invalid { key: key.into(), value: value.into(), expected }
}

/// `key` parsed as `T` and checked against `lo..=hi` (named in `expected`).
fn ranged<T>(props: &Props, key: &str, lo: T, hi: T, expected: &'static str) -> Result<Option<T>, ConfError>
where
    T: std::str::FromStr + PartialOrd + Copy,
{
    match props.parse::<T>(key, expected)? {
        Some(v) if v < lo || v > hi => Err(range(key, props.str(key).unwrap_or_default(), expected)),
        other => Ok(other),
    }
}

fn invalid(key: &str, value: &str, expected: &'static str) -> ConfError {
    ConfError::Invalid { key: key.into(), value: value.into(), expected }
}

/// Applies broker.conf properties on top of `opts`.
pub fn apply(props: &Props, opts: &mut BrokerOptions) -> Result<(), ConfError> {
    for (key, why) in UNIMPLEMENTED {
        if let Some(v) = props.str(key) {
            return Err(ConfError::Unimplemented { key: (*key).into(), value: v.into(), why });
        }
    }
    if let Some(v) = props.str("aclEnable") {
        match v {
            "false" => {}
            "true" => {
                return Err(ConfError::Unimplemented { key: "aclEnable".into(), value: v.into(), why: "no ACL yet" })
            }
            _ => return Err(invalid("aclEnable", v, "true or false")),
        }
    }
    if let Some(v) = props.str("storePathCommitLog") {
        let root = props.str("storePathRootDir").unwrap_or("");
        if std::path::Path::new(v) != std::path::Path::new(root).join("commitlog") {
            return Err(ConfError::Unimplemented {
                key: "storePathCommitLog".into(),
                value: v.into(),
                why: "the CommitLog is always storePathRootDir/commitlog",
            });
        }
    }
    let c: &mut BrokerConfig = &mut opts.core;
    if let Some(v) = props.str("brokerClusterName") {
        c.cluster_name = v.into();
    }
    if let Some(v) = props.str("brokerName") {
        c.broker_name = v.into();
    }
    if let Some(v) = ranged(props, "brokerId", 0, i64::MAX, "an integer >= 0 (0 is the master)")? {
        if v != 0 {
            return Err(ConfError::Unimplemented {
                key: "brokerId".into(),
                value: v.to_string(),
                why: "no slaves yet: brokerId must be 0",
            });
        }
        c.broker_id = v;
    }
    let ip = props.str("brokerIP1").unwrap_or("127.0.0.1").to_string();
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid("brokerIP1", &ip, "an IPv4 or IPv6 address like 192.168.0.10"));
    }
    if let Some(port) = props.parse::<u16>("listenPort", "a port number")? {
        opts.listen = format!("0.0.0.0:{port}");
        c.broker_addr = format!("{ip}:{port}");
        c.ha_addr = format!("{ip}:{}", port.saturating_add(1));
    } else if props.str("brokerIP1").is_some() {
        c.broker_addr = format!("{ip}:0");
    }
    if let Some(v) = props.str("storePathRootDir") {
        opts.store_root = v.into();
    }
    if let Some(v) = props.str("flushDiskType") {
        c.flush_disk_type = match v {
            "SYNC_FLUSH" => FlushDiskType::SyncFlush,
            "ASYNC_FLUSH" => FlushDiskType::AsyncFlush,
            _ => return Err(invalid("flushDiskType", v, "SYNC_FLUSH or ASYNC_FLUSH")),
        };
    }
    if let Some(v) = props.str("brokerRole") {
        c.broker_role = match v {
            "ASYNC_MASTER" => BrokerRole::AsyncMaster,
            "SYNC_MASTER" | "SLAVE" => {
                return Err(ConfError::Unimplemented {
                    key: "brokerRole".into(),
                    value: v.into(),
                    why: "no replication yet: ASYNC_MASTER is the only role",
                })
            }
            _ => return Err(invalid("brokerRole", v, "ASYNC_MASTER, SYNC_MASTER or SLAVE")),
        };
    }
    if let Some(v) = props.str("namesrvAddr") {
        opts.namesrv_addrs = split_addrs(v);
    }
    if let Some(v) = props.parse("autoCreateTopicEnable", "true or false")? {
        c.auto_create_topic_enable = v;
    }
    if let Some(v) = ranged(props, "defaultTopicQueueNums", 1, 1024, "an integer in 1..=1024")? {
        c.default_topic_queue_nums = v;
    }
    if let Some(v) = props.parse::<u64>("mappedFileSizeCommitLog", "bytes")? {
        if v < 64 * 1024 {
            return Err(invalid("mappedFileSizeCommitLog", &v.to_string(), "at least 65536 bytes"));
        }
        c.store.commit_log_segment_bytes = v;
    }
    if let Some(v) = props.parse::<u64>("mappedFileSizeConsumeQueue", "bytes")? {
        if v < 20 {
            return Err(invalid("mappedFileSizeConsumeQueue", &v.to_string(), "at least 20 bytes"));
        }
        c.store.consume_queue_segment_entries = v / 20;
    }
    if let Some(v) = ranged(props, "flushIntervalCommitLog", 1, 60_000, "milliseconds in 1..=60000")? {
        c.flush_interval_ms = v;
    }
    if let Some(v) = ranged(props, "syncFlushTimeout", 1, 600_000, "milliseconds in 1..=600000")? {
        c.sync_flush_timeout_ms = v;
    }
    if let Some(v) = props.parse("longPollingEnable", "true or false")? {
        c.long_polling_enable = v;
    }
    if let Some(v) = ranged(props, "shortPollingTimeMills", 1, 60_000, "milliseconds in 1..=60000")? {
        c.short_polling_ms = v;
    }
    if let Some(v) = ranged(props, "maxMessageSize", 1, rmq_proto::message::BODY_MAX_BYTES, "bytes in 1..=4194304")? {
        c.max_message_bytes = v;
    }
    if let Some(v) = props.str("messageDelayLevel") {
        c.delay_levels_ms =
            parse_delay_levels(v).ok_or_else(|| invalid("messageDelayLevel", v, "levels like \"1s 5s 1m 2h\""))?;
    }
    if let Some(v) = ranged(props, "registerNameServerPeriod", 10_000, 60_000, "milliseconds in 10000..=60000")? {
        c.register_interval_ms = v;
    }
    if let Some(v) = ranged(props, "flushConsumerOffsetInterval", 1, 3_600_000, "milliseconds in 1..=3600000")? {
        c.offset_persist_interval_ms = v;
    }
    Ok(())
}

/// Splits a `host:port;host:port` NameServer list.
pub fn split_addrs(s: &str) -> Vec<String> {
    s.split([';', ',']).map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmq_rt::conf::parse_properties;

    fn opts() -> BrokerOptions {
        BrokerOptions {
            listen: "0.0.0.0:10911".into(),
            namesrv_addrs: vec![],
            store_root: "store".into(),
            core: BrokerConfig::default(),
        }
    }

    #[test]
    fn stock_broker_conf_applies() {
        let text = "brokerClusterName=C\nbrokerName=b\nbrokerId=0\nbrokerRole=ASYNC_MASTER\nflushDiskType=SYNC_FLUSH\nlistenPort=10921\nnamesrvAddr=127.0.0.1:9876;127.0.0.1:9877\nmappedFileSizeCommitLog=1048576\nmappedFileSizeConsumeQueue=6000\n";
        let props = Props::new(parse_properties(text).unwrap(), KNOWN_KEYS).unwrap();
        let mut o = opts();
        apply(&props, &mut o).unwrap();
        assert_eq!(o.core.flush_disk_type, FlushDiskType::SyncFlush);
        assert_eq!(o.core.broker_role, BrokerRole::AsyncMaster);
        assert_eq!(o.core.broker_addr, "127.0.0.1:10921");
        assert_eq!(o.namesrv_addrs.len(), 2);
        assert_eq!(o.core.store.consume_queue_segment_entries, 300);
    }

    #[test]
    fn wrong_values_are_named() {
        let props = Props::new(parse_properties("flushDiskType=SOMETIMES").unwrap(), KNOWN_KEYS).unwrap();
        let err = apply(&props, &mut opts()).unwrap_err().to_string();
        assert!(err.contains("flushDiskType") && err.contains("SYNC_FLUSH"), "{err}");
        assert!(Props::new(parse_properties("flushDiskTyp=SYNC_FLUSH").unwrap(), KNOWN_KEYS).is_err());
    }

    fn refused(text: &str) -> String {
        let props = Props::new(parse_properties(text).unwrap(), KNOWN_KEYS).unwrap();
        apply(&props, &mut opts()).unwrap_err().to_string()
    }

    #[test]
    fn unimplemented_keys_are_refused_by_name() {
        for text in [
            "brokerRole=SYNC_MASTER",
            "brokerRole=SLAVE",
            "aclEnable=true",
            "fileReservedTime=48",
            "deleteWhen=04",
            "haListenPort=10912",
            "diskMaxUsedSpaceRatio=75",
            "storePathCommitLog=/elsewhere/commitlog",
            "brokerId=1",
        ] {
            let err = refused(text);
            let key = text.split('=').next().unwrap();
            assert!(err.contains(key) && err.contains("not implemented"), "{text}: {err}");
        }
    }

    #[test]
    fn out_of_range_overflowing_zero_and_bad_ip_are_refused_with_the_range() {
        for (text, range) in [
            ("syncFlushTimeout=18446744073709551615", "1..=600000"),
            ("syncFlushTimeout=18446744073709551616", "1..=600000"),
            ("flushIntervalCommitLog=0", "1..=60000"),
            ("defaultTopicQueueNums=5000", "1..=1024"),
            ("maxMessageSize=999999999", "1..=4194304"),
            ("registerNameServerPeriod=1000", "10000..=60000"),
            ("brokerId=-1", ">= 0"),
            ("brokerIP1=999.1.1.1", "IPv4"),
            ("listenPort=70000", "port"),
        ] {
            let err = refused(text);
            let key = text.split('=').next().unwrap();
            assert!(err.contains(key) && err.contains(range), "{text}: {err}");
        }
    }
}
