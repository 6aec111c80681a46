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
    "haListenPort",
    // Accepted for compatibility with stock broker.conf files; they have no effect here.
    "deleteWhen",
    "fileReservedTime",
    "brokerIP2",
    "sendMessageThreadPoolNums",
    "pullMessageThreadPoolNums",
    "autoCreateSubscriptionGroup",
    "enablePropertyFilter",
    "traceTopicEnable",
    "aclEnable",
];

fn invalid(key: &str, value: &str, expected: &'static str) -> ConfError {
    ConfError::Invalid { key: key.into(), value: value.into(), expected }
}

/// Applies broker.conf properties on top of `opts`.
pub fn apply(props: &Props, opts: &mut BrokerOptions) -> Result<(), ConfError> {
    let c: &mut BrokerConfig = &mut opts.core;
    if let Some(v) = props.str("brokerClusterName") {
        c.cluster_name = v.into();
    }
    if let Some(v) = props.str("brokerName") {
        c.broker_name = v.into();
    }
    if let Some(v) = props.parse("brokerId", "an integer")? {
        c.broker_id = v;
    }
    let ip = props.str("brokerIP1").unwrap_or("127.0.0.1").to_string();
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
            "SYNC_MASTER" => BrokerRole::SyncMaster,
            "SLAVE" => BrokerRole::Slave,
            _ => return Err(invalid("brokerRole", v, "ASYNC_MASTER, SYNC_MASTER or SLAVE")),
        };
    }
    if let Some(v) = props.str("namesrvAddr") {
        opts.namesrv_addrs = split_addrs(v);
    }
    if let Some(v) = props.parse("autoCreateTopicEnable", "true or false")? {
        c.auto_create_topic_enable = v;
    }
    if let Some(v) = props.parse::<i32>("defaultTopicQueueNums", "an integer")? {
        c.default_topic_queue_nums = v.clamp(1, 1024);
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
    if let Some(v) = props.parse("flushIntervalCommitLog", "milliseconds")? {
        c.flush_interval_ms = v;
    }
    if let Some(v) = props.parse("syncFlushTimeout", "milliseconds")? {
        c.sync_flush_timeout_ms = v;
    }
    if let Some(v) = props.parse("longPollingEnable", "true or false")? {
        c.long_polling_enable = v;
    }
    if let Some(v) = props.parse("shortPollingTimeMills", "milliseconds")? {
        c.short_polling_ms = v;
    }
    if let Some(v) = props.parse::<usize>("maxMessageSize", "bytes")? {
        c.max_message_bytes = v.min(rmq_proto::message::BODY_MAX_BYTES);
    }
    if let Some(v) = props.str("messageDelayLevel") {
        c.delay_levels_ms =
            parse_delay_levels(v).ok_or_else(|| invalid("messageDelayLevel", v, "levels like \"1s 5s 1m 2h\""))?;
    }
    if let Some(v) = props.parse::<u64>("registerNameServerPeriod", "milliseconds")? {
        c.register_interval_ms = v.clamp(10_000, 60_000);
    }
    if let Some(v) = props.parse("flushConsumerOffsetInterval", "milliseconds")? {
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
        let text = "brokerClusterName=C\nbrokerName=b\nbrokerId=0\ndeleteWhen=04\nfileReservedTime=48\nbrokerRole=SYNC_MASTER\nflushDiskType=SYNC_FLUSH\nlistenPort=10921\nnamesrvAddr=127.0.0.1:9876;127.0.0.1:9877\nmappedFileSizeCommitLog=1048576\nmappedFileSizeConsumeQueue=6000\n";
        let props = Props::new(parse_properties(text).unwrap(), KNOWN_KEYS).unwrap();
        let mut o = opts();
        apply(&props, &mut o).unwrap();
        assert_eq!(o.core.flush_disk_type, FlushDiskType::SyncFlush);
        assert_eq!(o.core.broker_role, BrokerRole::SyncMaster);
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
}
