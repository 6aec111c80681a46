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
    /// A key has a value of the wrong type.
    #[error("{key}: invalid value {value:?} ({expected})")]
    Invalid {
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
    #[error("{key}={value}: not implemented by this broker ({why})")]
    Unimplemented {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// What is missing.
        why: &'static str,
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

/// Parses `key=value` lines (also `key: value`); blank lines and `#`/`!` comments are skipped.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ConfError> {
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
    Ok(out)
}

/// Typed access to parsed properties, refusing unknown keys.
#[derive(Debug)]
pub struct Props {
    map: BTreeMap<String, String>,
}

impl Props {
    /// Wraps a map after checking every key is in `known`.
    pub fn new(map: BTreeMap<String, String>, known: &[&str]) -> Result<Self, ConfError> {
        for k in map.keys() {
            if !known.contains(&k.as_str()) {
                return Err(ConfError::UnknownKey { key: k.clone(), known: known.join(", ") });
            }
        }
        Ok(Props { map })
    }

    /// A string value.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// A parsed value.
    pub fn parse<T: std::str::FromStr>(&self, key: &str, expected: &'static str) -> Result<Option<T>, ConfError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => {
                v.parse().map(Some).map_err(|_| ConfError::Invalid { key: key.into(), value: v.clone(), expected })
            }
        }
    }
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
}
