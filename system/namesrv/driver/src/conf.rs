//! RocketMQ namesrv.conf keys → [`NamesrvOptions`].

use rmq_namesrv_core::NamesrvConfig;
use rmq_rt::conf::{apply_server_limits, ConfError, Props, SERVER_LIMIT_KEYS};
use rmq_rt::server::ServerLimits;

/// Keys mqnamesrv acts on (each listed in CONFIG.md).
pub const KNOWN_KEYS: &[&str] = &[
    "listenPort",
    "scanNotActiveBrokerInterval",
    "brokerExpiredMillis",
    // Access control: the ACL this NameServer enforces.
    "aclEnable",
    "aclFile",
    // Recognised but not implemented: refused by name (see `UNIMPLEMENTED`).
    "rocketmqHome",
    "kvConfigPath",
    "serverMaxConnections",
    "serverChannelMaxIdleTimeSeconds",
    "serverIncompleteFramesMaxBytes",
    "serverOutboundMaxBytes",
    "metricsExporterType",
    "metricsPromExporterHost",
    "metricsPromExporterPort",
];

/// Keys refused whenever they are set.
const UNIMPLEMENTED: &[(&str, &str)] = &[
    ("rocketmqHome", "this NameServer reads nothing from a RocketMQ home directory"),
    ("kvConfigPath", "KV config is kept in memory only and never written to a file"),
];

/// How to run one NameServer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesrvOptions {
    /// Address to listen on.
    pub listen: String,
    /// Core settings.
    pub core: NamesrvConfig,
    /// What peers may make the NameServer hold.
    pub limits: ServerLimits,
    /// Where the Prometheus endpoint listens (metricsExporterType=PROM); `None`: off.
    pub metrics_listen: Option<String>,
}

impl Default for NamesrvOptions {
    fn default() -> Self {
        NamesrvOptions {
            listen: "0.0.0.0:9876".into(),
            core: NamesrvConfig::default(),
            limits: ServerLimits::default(),
            metrics_listen: None,
        }
    }
}

/// Applies namesrv.conf properties on top of `opts`; a relative `aclFile` is taken from the
/// working directory (see [`apply_in`]).
pub fn apply(props: &Props, opts: &mut NamesrvOptions) -> Result<(), ConfError> {
    apply_in(props, None, opts)
}

/// Applies namesrv.conf properties on top of `opts`; `conf_dir` is the directory of the file
/// they came from, where a relative `aclFile` (default `plain_acl.yml`) is looked up.
pub fn apply_in(props: &Props, conf_dir: Option<&std::path::Path>, opts: &mut NamesrvOptions) -> Result<(), ConfError> {
    debug_assert!(SERVER_LIMIT_KEYS.iter().all(|k| KNOWN_KEYS.contains(k)));
    for (key, why) in UNIMPLEMENTED {
        if props.str(key).is_some() {
            return Err(props.unimplemented(key, why));
        }
    }
    if let Some(port) = props.parse::<u16>("listenPort", "a port number")? {
        opts.listen = format!("0.0.0.0:{port}");
    }
    if let Some(ms) = props.ranged("scanNotActiveBrokerInterval", 100, 600_000, "milliseconds in 100..=600000")? {
        opts.core.scan_interval_ms = ms;
    }
    if let Some(ms) = props.ranged("brokerExpiredMillis", 1_000, 86_400_000, "milliseconds in 1000..=86400000")? {
        opts.core.broker_expiry_ms = ms;
    }
    let acl = rmq_acl::from_settings(props.str("aclEnable"), props.str("aclFile"), conf_dir)
        .map_err(|e| props.unusable(e.key, e.reason))?;
    opts.core.acl = acl.map(std::sync::Arc::new);
    opts.metrics_listen = rmq_rt::conf::metrics_listen(props)?;
    apply_server_limits(props, &mut opts.limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_text(text: &str) -> Result<NamesrvOptions, ConfError> {
        let mut opts = NamesrvOptions::default();
        apply(&Props::parse_text(text, KNOWN_KEYS)?, &mut opts)?;
        Ok(opts)
    }

    #[test]
    fn stock_keys_apply() {
        let o = apply_text(
            "listenPort=9877\nscanNotActiveBrokerInterval=1000\nbrokerExpiredMillis=30000\nserverMaxConnections=50\n",
        )
        .unwrap();
        assert_eq!(o.listen, "0.0.0.0:9877");
        assert_eq!((o.core.scan_interval_ms, o.core.broker_expiry_ms), (1_000, 30_000));
        assert_eq!(o.limits.max_connections, 50);
    }

    #[test]
    fn out_of_range_and_unimplemented_keys_are_refused_with_their_line() {
        for (text, expect) in [
            ("listenPort=1\nscanNotActiveBrokerInterval=0", "line 2: scanNotActiveBrokerInterval"),
            ("brokerExpiredMillis=18446744073709551616", "line 1: brokerExpiredMillis"),
            ("brokerExpiredMillis=5", "1000..=86400000"),
            ("serverChannelMaxIdleTimeSeconds=0", "1..=86400"),
            ("kvConfigPath=/tmp/kv.json", "not implemented"),
            ("rocketmqHome=/opt/rocketmq", "not implemented"),
            ("aclEnable=true\naclFile=/nonexistent/plain_acl.yml", "line 2: aclFile=/nonexistent/plain_acl.yml"),
            ("aclFile=/etc/plain_acl.yml", "unless aclEnable=true"),
        ] {
            let err = apply_text(text).unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }
}
