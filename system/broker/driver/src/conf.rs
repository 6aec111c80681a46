//! RocketMQ broker.conf keys → [`BrokerOptions`].

use rmq_acl::Credentials;
use rmq_broker_core::config::{parse_delay_levels, LIVE_KEYS};
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
    "transactionTimeOut",
    "transactionCheckInterval",
    "transactionCheckMax",
    "rebalanceLockMaxLiveTime",
    "deleteWhen",
    "fileReservedTime",
    "diskMaxUsedSpaceRatio",
    "cleanResourceInterval",
    "diskSpaceCleanForciblyRatio",
    "diskSpaceWarningLevelRatio",
    "messageIndexEnable",
    "warmMapedFileEnable",
    "metricsExporterType",
    "metricsPromExporterHost",
    "metricsPromExporterPort",
    "maxHashSlotNum",
    "maxIndexNum",
    // Access control: aclEnable + aclFile (the ACL this broker enforces), accessKey + secretKey
    // (the account this broker signs its own requests with).
    "aclEnable",
    "aclFile",
    "accessKey",
    "secretKey",
    // Recognised but not implemented: refused with their own error by `apply` (see
    // `UNIMPLEMENTED`) rather than as unknown keys.
    "haListenPort",
    "haMasterAddress",
    "haSendHeartbeatInterval",
    "haHousekeepingInterval",
    "haSlaveFallbehindMax",
    "brokerIP2",
    // Switches with one behaviour here: the value this broker has is accepted, the other is
    // refused (see `FIXED`). Thread-pool sizes are refused outright (see `UNIMPLEMENTED`).
    "autoCreateSubscriptionGroup",
    "enablePropertyFilter",
    "traceTopicEnable",
    "sendMessageThreadPoolNums",
    "pullMessageThreadPoolNums",
    // Connection and memory limits shared with the NameServer (`rmq_rt::conf`).
    "serverMaxConnections",
    "serverChannelMaxIdleTimeSeconds",
    "serverIncompleteFramesMaxBytes",
    "serverOutboundMaxBytes",
];

/// Boolean switches this broker has one behaviour for: (key, the value it honours, why the
/// other value is refused).
const FIXED: &[(&str, &str, &str)] = &[
    ("autoCreateSubscriptionGroup", "true", "consumer groups are always created on first use"),
    ("enablePropertyFilter", "false", "no SQL92 property filtering; subscriptions filter by tag"),
    ("traceTopicEnable", "false", "no message trace topic"),
];

/// Keys refused whenever they are set (any value would be a promise this broker does not keep).
const UNIMPLEMENTED: &[(&str, &str)] = &[
    ("brokerIP2", "the HA address is advertised with brokerIP1"),
    ("sendMessageThreadPoolNums", "no thread pools: one event loop serves every request"),
    ("pullMessageThreadPoolNums", "no thread pools: one event loop serves every request"),
];

/// Applies broker.conf properties on top of `opts`; a relative `aclFile` is taken from the
/// working directory (see [`apply_in`]).
pub fn apply(props: &Props, opts: &mut BrokerOptions) -> Result<(), ConfError> {
    apply_in(props, None, opts)
}

/// Applies broker.conf properties on top of `opts`; `conf_dir` is the directory of the file
/// they came from, where a relative `aclFile` (default `plain_acl.yml`) is looked up.
pub fn apply_in(props: &Props, conf_dir: Option<&std::path::Path>, opts: &mut BrokerOptions) -> Result<(), ConfError> {
    for (key, why) in UNIMPLEMENTED {
        if props.str(key).is_some() {
            return Err(props.unimplemented(key, why));
        }
    }
    for (key, honoured, why) in FIXED {
        match props.str(key) {
            None => {}
            Some(v) if v == *honoured => {}
            Some("true" | "false") => return Err(props.unimplemented(key, why)),
            Some(_) => return Err(props.invalid(key, "true or false")),
        }
    }
    rmq_rt::conf::apply_server_limits(props, &mut opts.limits)?;
    opts.metrics_listen = rmq_rt::conf::metrics_listen(props)?;
    apply_acl(props, conf_dir, &mut opts.core)?;
    if let Some(v) = props.str("storePathCommitLog") {
        let root = props.str("storePathRootDir").unwrap_or("");
        if std::path::Path::new(v) != std::path::Path::new(root).join("commitlog") {
            return Err(props.unimplemented("storePathCommitLog", "the CommitLog is always storePathRootDir/commitlog"));
        }
    }
    let c: &mut BrokerConfig = &mut opts.core;
    if let Some(v) = props.str("brokerClusterName") {
        c.cluster_name = v.into();
    }
    if let Some(v) = props.str("brokerName") {
        c.broker_name = v.into();
    }
    if let Some(v) = props.ranged("brokerId", 0, i64::MAX, "an integer >= 0 (0 is the master)")? {
        c.broker_id = v;
    }
    let ip = props.str("brokerIP1").unwrap_or("127.0.0.1").to_string();
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(props.invalid("brokerIP1", "an IPv4 or IPv6 address like 192.168.0.10"));
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
            _ => return Err(props.invalid("flushDiskType", "SYNC_FLUSH or ASYNC_FLUSH")),
        };
    }
    if props.str("brokerRole").is_some() {
        c.broker_role = match props.str("brokerRole") {
            Some("ASYNC_MASTER") => BrokerRole::AsyncMaster,
            Some("SYNC_MASTER") => BrokerRole::SyncMaster,
            Some("SLAVE") => BrokerRole::Slave,
            _ => return Err(props.invalid("brokerRole", "ASYNC_MASTER, SYNC_MASTER or SLAVE")),
        };
    }
    apply_ha(props, opts)?;
    let c: &mut BrokerConfig = &mut opts.core;
    if let Some(v) = props.str("namesrvAddr") {
        opts.namesrv_addrs = split_addrs(v);
    }
    if let Some(v) =
        props.ranged("mappedFileSizeCommitLog", 65_536, 1 << 34, "bytes in 65536..=17179869184 (16 GiB)")?
    {
        c.store.commit_log_segment_bytes = v;
    }
    if let Some(v) = props.ranged(
        "mappedFileSizeConsumeQueue",
        20,
        20 << 26,
        "bytes in 20..=1342177280, a multiple of 20 (one entry)",
    )? {
        if v % 20 != 0 {
            // RocketMQ rounds this silently; a rounded size is not the size that was asked for.
            return Err(props.invalid("mappedFileSizeConsumeQueue", "a multiple of 20 bytes (one entry)"));
        }
        c.store.consume_queue_segment_entries = v / 20;
    }
    if let Some(v) = props.ranged("maxMessageSize", 1, rmq_proto::message::BODY_MAX_BYTES, "bytes in 1..=4194304")? {
        c.max_message_bytes = v;
    }
    if let Some(v) = props.str("messageDelayLevel") {
        c.delay_levels_ms =
            parse_delay_levels(v).ok_or_else(|| props.invalid("messageDelayLevel", "levels like \"1s 5s 1m 2h\""))?;
    }
    if let Some(v) = props.ranged("registerNameServerPeriod", 10_000, 60_000, "milliseconds in 10000..=60000")? {
        c.register_interval_ms = v;
    }
    if let Some(v) = props.ranged("flushConsumerOffsetInterval", 1, 3_600_000, "milliseconds in 1..=3600000")? {
        c.offset_persist_interval_ms = v;
    }
    for key in LIVE_KEYS {
        if let Some(v) = props.str(key) {
            c.set_live(key, v).map_err(|expected| props.invalid(key, expected))?;
        }
    }
    apply_index(props, c)?;
    if let Some(v) = props.parse::<bool>("warmMapedFileEnable", "true or false")? {
        c.store.warm_log_segments = v;
    }
    Ok(())
}

/// messageIndexEnable, maxHashSlotNum, maxIndexNum: the key index behind queries by key.
fn apply_index(props: &Props, c: &mut BrokerConfig) -> Result<(), ConfError> {
    let slots = props.ranged("maxHashSlotNum", 1, 50_000_000, "an integer in 1..=50000000")?;
    let entries = props.ranged("maxIndexNum", 2, 100_000_000, "an integer in 2..=100000000")?;
    match props.parse::<bool>("messageIndexEnable", "true or false")? {
        Some(false) => {
            for (key, set) in [("maxHashSlotNum", slots.is_some()), ("maxIndexNum", entries.is_some())] {
                if set {
                    return Err(props.unusable(key, "sizes the index, which messageIndexEnable=false turns off".into()));
                }
            }
            c.store.index = None;
        }
        enable => {
            if enable == Some(true) || slots.is_some() || entries.is_some() {
                let mut index = c.store.index.unwrap_or_default();
                index.hash_slots = slots.unwrap_or(index.hash_slots);
                index.max_entries = entries.unwrap_or(index.max_entries);
                c.store.index = Some(index);
            }
        }
    }
    Ok(())
}

/// aclEnable/aclFile (the ACL enforced) and accessKey/secretKey (this broker's own account).
fn apply_acl(props: &Props, conf_dir: Option<&std::path::Path>, c: &mut BrokerConfig) -> Result<(), ConfError> {
    let acl = rmq_acl::from_settings(props.str("aclEnable"), props.str("aclFile"), conf_dir)
        .map_err(|e| props.unusable(e.key, e.reason))?;
    c.acl = acl.map(std::sync::Arc::new);
    match (props.str("accessKey"), props.str("secretKey")) {
        (None, None) => {}
        (Some(ak), Some(sk)) if !ak.is_empty() && !sk.is_empty() => c.credentials = Some(Credentials::new(ak, sk)),
        (Some(""), _) => return Err(props.invalid("accessKey", "a non-empty access key")),
        (_, Some("")) => return Err(props.invalid("secretKey", "a non-empty secret key")),
        (Some(_), _) => return Err(props.invalid("accessKey", "set together with secretKey")),
        (_, Some(_)) => return Err(props.invalid("secretKey", "set together with accessKey")),
    }
    Ok(())
}

/// Replication keys, checked against the role: a key the role does not use is refused.
fn apply_ha(props: &Props, opts: &mut BrokerOptions) -> Result<(), ConfError> {
    let c = &mut opts.core;
    let slave = c.broker_role == BrokerRole::Slave;
    match (slave, c.broker_id) {
        (true, 0) => return Err(props.invalid("brokerId", "an integer >= 1 for a SLAVE (0 is the master)")),
        (false, id) if id != 0 => {
            return Err(props.invalid("brokerId", "0 for a master (ASYNC_MASTER or SYNC_MASTER); slaves use >= 1"))
        }
        _ => {}
    }
    if let Some(port) = props.parse::<u16>("haListenPort", "a port number")? {
        if slave {
            return Err(props.unimplemented("haListenPort", "a SLAVE does not listen for slaves"));
        }
        opts.ha_listen = Some(format!("0.0.0.0:{port}"));
    }
    match props.str("haMasterAddress") {
        Some(addr) if slave => {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(props.invalid("haMasterAddress", "the master's HA address, ip:port (its haListenPort)"));
            }
            c.ha_master_addr = Some(addr.to_string());
        }
        Some(_) => return Err(props.unimplemented("haMasterAddress", "only a SLAVE connects to a master")),
        // Unset on a SLAVE: learned from the NameServer's answer to its registration (the
        // master of its brokerName registers its HA address), as RocketMQ does.
        None => {}
    }
    if let Some(v) = props.ranged("haSendHeartbeatInterval", 100, 60_000, "milliseconds in 100..=60000")? {
        c.ha_heartbeat_interval_ms = v;
    }
    if let Some(v) = props.ranged("haHousekeepingInterval", 1_000, 600_000, "milliseconds in 1000..=600000")? {
        c.ha_housekeeping_ms = v;
    }
    if c.ha_housekeeping_ms <= c.ha_heartbeat_interval_ms {
        return Err(props.invalid(
            "haHousekeepingInterval",
            "longer than haSendHeartbeatInterval, or every HA connection would be closed as silent",
        ));
    }
    if let Some(v) = props.ranged("haSlaveFallbehindMax", 1, 1 << 40, "bytes in 1..=1 TiB")? {
        c.ha_slave_fallbehind_max = v;
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
            limits: Default::default(),
            ha_listen: None,
            metrics_listen: None,
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

    #[test]
    fn replication_roles_apply() {
        let props = Props::parse_text(
            "brokerRole=SLAVE\nbrokerId=1\nhaMasterAddress=127.0.0.1:10912\nhaSendHeartbeatInterval=1000\n",
            KNOWN_KEYS,
        )
        .unwrap();
        let mut o = opts();
        apply(&props, &mut o).unwrap();
        assert_eq!(o.core.broker_role, BrokerRole::Slave);
        assert_eq!(o.core.ha_master_addr.as_deref(), Some("127.0.0.1:10912"));
        assert_eq!(o.core.ha_heartbeat_interval_ms, 1_000);
        let props = Props::parse_text("brokerRole=SYNC_MASTER\nhaListenPort=20912\n", KNOWN_KEYS).unwrap();
        let mut o = opts();
        apply(&props, &mut o).unwrap();
        assert_eq!((o.core.broker_role, o.ha_listen.as_deref()), (BrokerRole::SyncMaster, Some("0.0.0.0:20912")));
    }

    #[test]
    fn honoured_switch_values_and_limits_are_accepted() {
        let text = "autoCreateSubscriptionGroup=true\nenablePropertyFilter=false\ntraceTopicEnable=false\nserverMaxConnections=100\nserverChannelMaxIdleTimeSeconds=30\n";
        let props = Props::parse_text(text, KNOWN_KEYS).unwrap();
        let mut o = opts();
        apply(&props, &mut o).unwrap();
        assert_eq!((o.limits.max_connections, o.limits.idle_timeout_ms), (100, 30_000));
        let props = Props::parse_text("brokerName=b\nsyncFlushTimeout=0\n", KNOWN_KEYS).unwrap();
        assert!(apply(&props, &mut o).unwrap_err().to_string().starts_with("line 2: syncFlushTimeout"));
    }

    fn refused(text: &str) -> String {
        let props = Props::new(parse_properties(text).unwrap(), KNOWN_KEYS).unwrap();
        apply(&props, &mut opts()).unwrap_err().to_string()
    }

    #[test]
    fn unimplemented_keys_are_refused_by_name() {
        for text in [
            "brokerRole=SLAVE\nbrokerId=1\nhaMasterAddress=127.0.0.1:10912\nhaListenPort=10912",
            "haMasterAddress=127.0.0.1:10912",
            "brokerIP2=10.0.0.1",
            "storePathCommitLog=/elsewhere/commitlog",
            "sendMessageThreadPoolNums=16",
            "pullMessageThreadPoolNums=16",
            "enablePropertyFilter=true",
            "traceTopicEnable=true",
            "autoCreateSubscriptionGroup=false",
        ] {
            let err = refused(text);
            let key = text.lines().last().unwrap().split('=').next().unwrap();
            assert!(err.contains(key) && err.contains("not implemented"), "{text}: {err}");
        }
    }

    #[test]
    fn retention_keys_are_honoured_and_checked() {
        let text = "fileReservedTime=0.5\ndeleteWhen=16;04\ndiskMaxUsedSpaceRatio=60\ncleanResourceInterval=500\nmaxIndexNum=1000\n";
        let props = Props::parse_text(text, KNOWN_KEYS).unwrap();
        let mut o = opts();
        apply(&props, &mut o).unwrap();
        let c = &o.core;
        assert_eq!(
            (
                c.file_reserved_ms,
                c.delete_when_hours.clone(),
                c.disk_max_used_space_ratio,
                c.clean_resource_interval_ms
            ),
            (1_800_000, vec![4, 16], 60, 500)
        );
        assert_eq!(c.store.index, Some(rmq_store::IndexConfig { hash_slots: 5_000_000, max_entries: 1000 }));
        let props = Props::parse_text("metricsExporterType=PROM\nmetricsPromExporterPort=0\n", KNOWN_KEYS).unwrap();
        apply(&props, &mut o).unwrap();
        assert_eq!(o.metrics_listen.as_deref(), Some("127.0.0.1:0"));
        for (text, expect) in [
            ("fileReservedTime=0", "hours in (0, 87600]"),
            ("fileReservedTime=abc", "hours in (0, 87600]"),
            ("deleteWhen=24", "hours of the day"),
            ("deleteWhen=04;x", "hours of the day"),
            ("diskMaxUsedSpaceRatio=99", "10..=95"),
            ("cleanResourceInterval=0", "100..=3600000"),
            ("diskSpaceCleanForciblyRatio=5", "10..=100"),
            ("metricsPromExporterPort=5557", "metricsExporterType=PROM"),
            ("metricsExporterType=OTLP_GRPC", "not implemented"),
            ("metricsExporterType=PROM\nmetricsPromExporterHost=localhost", "IP address"),
            ("maxIndexNum=1", "2..=100000000"),
            ("messageIndexEnable=false\nmaxHashSlotNum=100", "messageIndexEnable=false"),
        ] {
            let err = refused(text);
            let key = text.lines().last().unwrap().split('=').next().unwrap();
            assert!(err.contains(key) && err.contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn acl_keys_load_the_file_or_refuse_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let acl = "accounts:\n  - accessKey: producer1\n    secretKey: producer-secret\n    defaultTopicPerm: PUB\n";
        std::fs::write(dir.path().join("plain_acl.yml"), acl).unwrap();
        std::fs::write(dir.path().join("bad.yml"), "accounts:\n  - accessKey: producer1\n    topicPerms: [x]\n")
            .unwrap();
        let apply_text = |text: &str| {
            let props = Props::parse_text(text, KNOWN_KEYS).unwrap();
            let mut o = opts();
            apply_in(&props, Some(dir.path()), &mut o).map(|_| o)
        };
        let o = apply_text("aclEnable=true\naccessKey=broker-a\nsecretKey=broker-secret\n").unwrap();
        assert!(
            o.core.acl.as_ref().unwrap().accounts.contains_key("producer1"),
            "default plain_acl.yml next to the conf"
        );
        assert_eq!(o.core.credentials.as_ref().unwrap().access_key, "broker-a");
        assert!(apply_text("aclEnable=false\n").unwrap().core.acl.is_none());
        let err = apply_text("brokerName=b\naclEnable=true\naclFile=bad.yml\n").unwrap_err().to_string();
        assert!(err.starts_with("line 3: aclFile=bad.yml:") && err.contains("bad.yml: "), "{err}");
        for (text, expect) in [
            ("aclEnable=true\naclFile=missing.yml", "missing.yml"),
            ("aclFile=plain_acl.yml", "unless aclEnable=true"),
            ("aclEnable=yes", "aclEnable"),
            ("accessKey=broker-a", "together with secretKey"),
            ("secretKey=s3cret-key", "together with accessKey"),
        ] {
            let err = apply_text(text).unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
        let other = tempfile::tempdir().unwrap();
        let props = Props::parse_text("aclEnable=true\n", KNOWN_KEYS).unwrap();
        let err = apply_in(&props, Some(other.path()), &mut opts()).unwrap_err().to_string();
        assert!(err.contains("line 1: aclEnable=true") && err.contains("plain_acl.yml"), "{err}");
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
            ("brokerId=1", "0 for a master"),
            ("brokerRole=SLAVE\nhaMasterAddress=127.0.0.1:1\nbrokerId=0", ">= 1 for a SLAVE"),
            ("brokerRole=SLAVE\nbrokerId=1\nhaMasterAddress=master", "ip:port"),
            ("haSendHeartbeatInterval=0", "100..=60000"),
            ("haSendHeartbeatInterval=5000\nhaHousekeepingInterval=2000", "longer than haSendHeartbeatInterval"),
            ("brokerIP1=999.1.1.1", "IPv4"),
            ("listenPort=70000", "port"),
            ("mappedFileSizeConsumeQueue=6001", "multiple of 20"),
            ("mappedFileSizeCommitLog=18446744073709551615", "16 GiB"),
            ("serverMaxConnections=0", "1..=1000000"),
            ("serverIncompleteFramesMaxBytes=1000", "largest frame"),
            ("enablePropertyFilter=maybe", "true or false"),
        ] {
            let err = refused(text);
            let key = text.lines().last().unwrap().split('=').next().unwrap();
            assert!(err.contains(key) && err.contains(range), "{text}: {err}");
        }
    }
}
