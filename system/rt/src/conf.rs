//! RocketMQ-style `.conf` / `.properties` files: `key=value` lines, `#` comments.

use std::collections::BTreeMap;

/// Why a config file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    /// A line is not `key=value`.
    #[error("line {line}: expected key=value, got {text:?}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A key has a value of the wrong type or out of range.
    #[error("{}{key}: invalid value {value:?} ({expected})", at_line(*line))]
    Invalid {
        /// 1-based line number (0 when the value did not come from a file).
        line: usize,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A key given twice (the second would silently win).
    #[error("line {line}: key {key:?} already set on line {first_line}")]
    Duplicate {
        /// 1-based line number of the repeat.
        line: usize,
        /// Key.
        key: String,
        /// 1-based line number of the first setting.
        first_line: usize,
    },
    /// A RocketMQ key this program recognises but does not implement: accepting it would let
    /// the user believe it took effect.
    #[error("{}{key}={value}: not implemented by this build ({why})", at_line(*line))]
    Unimplemented {
        /// 1-based line number (0 when the value did not come from a file).
        line: usize,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// What is missing.
        why: &'static str,
    },
    /// A value naming something that cannot be used, e.g. an ACL file that is missing or
    /// malformed (the reason names the file and its line).
    #[error("{}{key}={value}: {reason}", at_line(*line))]
    Unusable {
        /// 1-based line number (0 when the value did not come from a file).
        line: usize,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Why, naming the file.
        reason: String,
    },
    /// A key this program does not know (a typo would otherwise pass silently).
    #[error("unknown key {key:?}; known keys: {known}")]
    UnknownKey {
        /// Key.
        key: String,
        /// Known keys.
        known: String,
    },
}

/// `"line N: "`, or nothing for line 0 (a value that did not come from a file).
fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

/// Parses `key=value` lines (also `key: value`); blank lines and `#`/`!` comments are skipped.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ConfError> {
    Ok(parse_with_lines(text)?.0)
}

/// Values by key, and the line each key was set on.
type WithLines = (BTreeMap<String, String>, BTreeMap<String, usize>);

/// [`parse_properties`], plus the line each key was set on.
fn parse_with_lines(text: &str) -> Result<WithLines, ConfError> {
    let mut out = BTreeMap::new();
    let mut first_lines: BTreeMap<String, usize> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(pos) = line.find(['=', ':']) else {
            return Err(ConfError::Syntax { line: i + 1, text: raw.to_string() });
        };
        let (k, v) = (line[..pos].trim(), line[pos + 1..].trim());
        if k.is_empty() {
            return Err(ConfError::Syntax { line: i + 1, text: raw.to_string() });
        }
        if let Some(&first_line) = first_lines.get(k) {
            return Err(ConfError::Duplicate { line: i + 1, key: k.to_string(), first_line });
        }
        first_lines.insert(k.to_string(), i + 1);
        out.insert(k.to_string(), v.to_string());
    }
    Ok((out, first_lines))
}

/// Typed access to parsed properties, refusing unknown keys.
#[derive(Debug)]
pub struct Props {
    map: BTreeMap<String, String>,
    /// The line each key was set on, when parsed from a file.
    lines: BTreeMap<String, usize>,
}

impl Props {
    /// Wraps a map after checking every key is in `known`.
    pub fn new(map: BTreeMap<String, String>, known: &[&str]) -> Result<Self, ConfError> {
        for k in map.keys() {
            if !known.contains(&k.as_str()) {
                return Err(ConfError::UnknownKey { key: k.clone(), known: known.join(", ") });
            }
        }
        Ok(Props { map, lines: BTreeMap::new() })
    }

    /// Parses a file's text, remembering lines so that value errors can name them.
    pub fn parse_text(text: &str, known: &[&str]) -> Result<Self, ConfError> {
        let (map, lines) = parse_with_lines(text)?;
        let mut props = Props::new(map, known)?;
        props.lines = lines;
        Ok(props)
    }

    /// The line `key` was set on (0 if unknown).
    pub fn line(&self, key: &str) -> usize {
        self.lines.get(key).copied().unwrap_or(0)
    }

    /// An [`ConfError::Invalid`] for `key`'s value, naming its line.
    pub fn invalid(&self, key: &str, expected: &'static str) -> ConfError {
        ConfError::Invalid {
            line: self.line(key),
            key: key.into(),
            value: self.str(key).unwrap_or_default().into(),
            expected,
        }
    }

    /// An [`ConfError::Unimplemented`] for `key`'s value, naming its line.
    pub fn unimplemented(&self, key: &str, why: &'static str) -> ConfError {
        ConfError::Unimplemented {
            line: self.line(key),
            key: key.into(),
            value: self.str(key).unwrap_or_default().into(),
            why,
        }
    }

    /// An [`ConfError::Unusable`] for `key`'s value, naming its line.
    pub fn unusable(&self, key: &str, reason: String) -> ConfError {
        ConfError::Unusable {
            line: self.line(key),
            key: key.into(),
            value: self.str(key).unwrap_or_default().into(),
            reason,
        }
    }

    /// `key` parsed as `T` and checked against `lo..=hi` (described in `expected`).
    pub fn ranged<T>(&self, key: &str, lo: T, hi: T, expected: &'static str) -> Result<Option<T>, ConfError>
    where
        T: std::str::FromStr + PartialOrd + Copy,
    {
        match self.parse::<T>(key, expected)? {
            Some(v) if v < lo || v > hi => Err(self.invalid(key, expected)),
            other => Ok(other),
        }
    }

    /// A string value.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// A parsed value.
    pub fn parse<T: std::str::FromStr>(&self, key: &str, expected: &'static str) -> Result<Option<T>, ConfError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| self.invalid(key, expected)),
        }
    }
}

/// metricsExporterType=PROM with metricsPromExporterHost (default 127.0.0.1) and
/// metricsPromExporterPort (default 5557, RocketMQ's): where the Prometheus endpoint listens.
/// DISABLE (the default) turns it off; the other exporters RocketMQ has are refused.
pub fn metrics_listen(props: &Props) -> Result<Option<String>, ConfError> {
    let host = props.str("metricsPromExporterHost");
    let port = props.parse::<u16>("metricsPromExporterPort", "a port number")?;
    match props.str("metricsExporterType") {
        None | Some("DISABLE") => {
            for (key, set) in [("metricsPromExporterHost", host.is_some()), ("metricsPromExporterPort", port.is_some())]
            {
                if set {
                    return Err(
                        props.unusable(key, "configures the Prometheus endpoint: set metricsExporterType=PROM".into())
                    );
                }
            }
            Ok(None)
        }
        Some("PROM") => {
            let host = host.unwrap_or("127.0.0.1");
            if host.parse::<std::net::IpAddr>().is_err() {
                return Err(props.invalid("metricsPromExporterHost", "an IP address such as 127.0.0.1"));
            }
            let port = port.unwrap_or(5557);
            Ok(Some(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }))
        }
        Some("OTLP_GRPC" | "LOG") => {
            Err(props.unimplemented("metricsExporterType", "only the PROM exporter exists here"))
        }
        Some(_) => Err(props.invalid("metricsExporterType", "DISABLE or PROM")),
    }
}

/// The keys [`metrics_listen`] reads, for a binary's list of known keys.
pub const METRICS_KEYS: &[&str] = &["metricsExporterType", "metricsPromExporterHost", "metricsPromExporterPort"];

/// The keys [`apply_server_limits`] reads, for a binary's list of known keys.
pub const SERVER_LIMIT_KEYS: &[&str] = &[
    "serverMaxConnections",
    "serverChannelMaxIdleTimeSeconds",
    "serverIncompleteFramesMaxBytes",
    "serverOutboundMaxBytes",
];

/// Reads the connection and memory limits every server binary shares (see CONFIG.md).
pub fn apply_server_limits(props: &Props, limits: &mut crate::server::ServerLimits) -> Result<(), ConfError> {
    if let Some(v) = props.ranged("serverMaxConnections", 1, 1_000_000, "connections in 1..=1000000")? {
        limits.max_connections = v;
    }
    if let Some(v) = props.ranged("serverChannelMaxIdleTimeSeconds", 1, 86_400, "seconds in 1..=86400")? {
        limits.idle_timeout_ms = v * 1000;
    }
    // One largest frame must always fit, or a legitimate 16 MiB request could never arrive.
    let lo = limits.max_frame_bytes + 4;
    if let Some(v) = props.ranged(
        "serverIncompleteFramesMaxBytes",
        lo,
        1 << 40,
        "bytes, at least one largest frame (16777220) and at most 1 TiB",
    )? {
        limits.incomplete_frames_max_bytes = v;
    }
    if let Some(v) = props.ranged("serverOutboundMaxBytes", 65_536, 1 << 40, "bytes in 65536..=1 TiB")? {
        limits.outbound_max_bytes = v;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicated_key_is_refused_with_both_lines() {
        let err = parse_properties("a=1\nb=2\na=3\n").unwrap_err();
        assert_eq!(err, ConfError::Duplicate { line: 3, key: "a".into(), first_line: 1 });
    }

    #[test]
    fn parses_rocketmq_broker_conf() {
        let p = parse_properties("# c\nbrokerClusterName = DefaultCluster\nbrokerId=0\n\nflushDiskType=SYNC_FLUSH\n")
            .unwrap();
        assert_eq!(p["brokerClusterName"], "DefaultCluster");
        assert_eq!(p["flushDiskType"], "SYNC_FLUSH");
        assert!(matches!(parse_properties("novalue"), Err(ConfError::Syntax { line: 1, .. })));
        let props = Props::new(p, &["brokerClusterName", "brokerId", "flushDiskType"]).unwrap();
        assert_eq!(props.parse::<i64>("brokerId", "an integer").unwrap(), Some(0));
        let bad = parse_properties("brokerIdd=1").unwrap();
        assert!(matches!(Props::new(bad, &["brokerId"]), Err(ConfError::UnknownKey { .. })));
    }

    #[test]
    fn a_bad_value_names_its_line() {
        let props = Props::parse_text("# c\n\nbrokerId = x\n", &["brokerId"]).unwrap();
        let err = props.parse::<i64>("brokerId", "an integer").unwrap_err();
        assert_eq!(err.to_string(), "line 3: brokerId: invalid value \"x\" (an integer)");
        let props = Props::parse_text("brokerId=7", &["brokerId"]).unwrap();
        assert_eq!(
            props.ranged("brokerId", 0, 5, "0..=5").unwrap_err().to_string(),
            "line 1: brokerId: invalid value \"7\" (0..=5)"
        );
    }

    #[test]
    fn server_limits_are_read_and_ranged() {
        let mut limits = crate::server::ServerLimits::default();
        let text = "serverMaxConnections=3\nserverChannelMaxIdleTimeSeconds=5\nserverOutboundMaxBytes=1048576\n";
        apply_server_limits(&Props::parse_text(text, SERVER_LIMIT_KEYS).unwrap(), &mut limits).unwrap();
        assert_eq!((limits.max_connections, limits.idle_timeout_ms, limits.outbound_max_bytes), (3, 5_000, 1 << 20));
        for bad in [
            "serverMaxConnections=0",
            "serverChannelMaxIdleTimeSeconds=0",
            "serverChannelMaxIdleTimeSeconds=18446744073709551615",
            "serverIncompleteFramesMaxBytes=1024",
            "serverOutboundMaxBytes=10",
        ] {
            let props = Props::parse_text(bad, SERVER_LIMIT_KEYS).unwrap();
            let err = apply_server_limits(&props, &mut limits).unwrap_err();
            assert!(matches!(err, ConfError::Invalid { line: 1, .. }), "{bad}: {err}");
        }
    }
}
