//! Topic and group names: the one place their rules live.
//!
//! Every entry point that takes a topic or a group from a peer checks it here before anything
//! is looked up, created, written to disk or registered. The rules are RocketMQ's:
//!
//! - topics: `TopicValidator.validateTopic` (common/.../topic/TopicValidator.java): not blank,
//!   only `^[%|a-zA-Z0-9_-]+$` (checked with `isTopicOrGroupIllegal`'s character table), at
//!   most 127 characters, checked in that order;
//! - groups: the client's `Validators.checkGroup` and the broker's
//!   `SubscriptionGroupManager.findSubscriptionGroupConfig` (which refuses to auto-create a
//!   group longer than `Validators.CHARACTER_MAX_LENGTH` or with an illegal character): not
//!   blank, at most 255 characters, same character set, checked in that order.
//!
//! The character set has no `/`, `.`, `\`, space or control character, so a valid name is
//! always a single, harmless path component (ConsumeQueue directories are named after topics).
//!
//! Which response code a refusal gets depends on the entry point; the broker core maps these
//! errors to RocketMQ's codes.
//!
//! ```
//! use rmq_proto::names::{validate_group, validate_topic, NameError};
//! assert!(validate_topic("%RETRY%orders-group_1").is_ok());
//! assert!(matches!(validate_topic("../../escaped"), Err(NameError::IllegalCharacters { .. })));
//! assert!(matches!(validate_group(&"g".repeat(256)), Err(NameError::TooLong { .. })));
//! ```

use std::fmt;

mod map;
pub use map::NameMap;

/// Longest topic, in characters (`TopicValidator.TOPIC_MAX_LENGTH`).
pub const TOPIC_MAX_CHARS: usize = 127;
/// Longest group, in characters (`Validators.CHARACTER_MAX_LENGTH`).
pub const GROUP_MAX_CHARS: usize = 255;
/// The allowed characters, as RocketMQ words it in its remarks.
pub const VALID_PATTERN: &str = "^[%|a-zA-Z0-9_-]+$";
/// Prefix of a consumer group's retry topic (`MixAll.RETRY_GROUP_TOPIC_PREFIX`).
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a consumer group's dead-letter topic (`MixAll.DLQ_GROUP_TOPIC_PREFIX`).
pub const DLQ_PREFIX: &str = "%DLQ%";
/// Most characters of an offending name quoted back in a remark.
const QUOTE_MAX_CHARS: usize = 64;

/// What kind of name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NameKind {
    /// A topic.
    Topic,
    /// A producer or consumer group.
    Group,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Topic => "topic",
            NameKind::Group => "group",
        })
    }
}

/// Why a name was refused. The messages follow RocketMQ's remarks; an offending name is quoted
/// escaped and shortened, so a remark never carries control characters or megabytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum NameError {
    /// Empty or only whitespace.
    #[error("The specified {kind} is blank.")]
    Blank {
        /// Topic or group.
        kind: NameKind,
    },
    /// A character outside `^[%|a-zA-Z0-9_-]+$`.
    #[error("The specified {kind}[{quoted}] contains illegal characters, allowing only {VALID_PATTERN}")]
    IllegalCharacters {
        /// Topic or group.
        kind: NameKind,
        /// The name, escaped and shortened for the remark.
        quoted: String,
    },
    /// Longer than the kind's limit.
    #[error("The specified {kind} is longer than {kind} max length {max_chars} ({len_chars} characters).")]
    TooLong {
        /// Topic or group.
        kind: NameKind,
        /// Its length in characters (UTF-16 units, as Java counts).
        len_chars: usize,
        /// The limit.
        max_chars: usize,
    },
}

impl NameError {
    /// Which kind of name was refused.
    pub fn kind(&self) -> NameKind {
        match self {
            NameError::Blank { kind } | NameError::IllegalCharacters { kind, .. } | NameError::TooLong { kind, .. } => {
                *kind
            }
        }
    }
}

/// Checks a topic name (`TopicValidator.validateTopic`: blank, characters, then length).
pub fn validate_topic(name: &str) -> Result<(), NameError> {
    if plainly_valid(name, TOPIC_MAX_CHARS) {
        return Ok(());
    }
    checked_topic(name)
}

/// [`validate_topic`] without its fast path.
fn checked_topic(name: &str) -> Result<(), NameError> {
    let kind = NameKind::Topic;
    check_blank(name, kind)?;
    check_characters(name, kind)?;
    check_length(name, kind, TOPIC_MAX_CHARS)
}

/// Checks a producer or consumer group name (`Validators.checkGroup`: blank, length, then
/// characters).
pub fn validate_group(name: &str) -> Result<(), NameError> {
    if plainly_valid(name, GROUP_MAX_CHARS) {
        return Ok(());
    }
    checked_group(name)
}

/// [`validate_group`] without its fast path.
fn checked_group(name: &str) -> Result<(), NameError> {
    let kind = NameKind::Group;
    check_blank(name, kind)?;
    check_length(name, kind, GROUP_MAX_CHARS)?;
    check_characters(name, kind)
}

/// The retry topic of a consumer group (`MixAll.getRetryTopic`). A valid group over 120
/// characters has no valid retry topic (it would exceed 127): that is a topic error.
pub fn retry_topic(group: &str) -> Result<String, NameError> {
    derived_topic(RETRY_PREFIX, group)
}

/// The dead-letter topic of a consumer group (`MixAll.getDLQTopic`).
pub fn dlq_topic(group: &str) -> Result<String, NameError> {
    derived_topic(DLQ_PREFIX, group)
}

fn derived_topic(prefix: &str, group: &str) -> Result<String, NameError> {
    validate_group(group)?;
    let topic = format!("{prefix}{group}");
    validate_topic(&topic)?;
    Ok(topic)
}

/// True for RocketMQ's legal name characters (`TopicValidator.VALID_CHAR_BIT_MAP`).
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')
}

/// The common case in one pass over the bytes: a non-empty name of legal (all ASCII)
/// characters, whose UTF-16 length is then its byte length. Every name this accepts the full
/// checks accept too; anything else goes through them for its precise error. The broker checks
/// the topic of every message it appends.
fn plainly_valid(name: &str, max_chars: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_chars
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

fn check_blank(name: &str, kind: NameKind) -> Result<(), NameError> {
    // UtilAll.isBlank: empty or only whitespace.
    if name.chars().all(char::is_whitespace) {
        return Err(NameError::Blank { kind });
    }
    Ok(())
}

fn check_characters(name: &str, kind: NameKind) -> Result<(), NameError> {
    if !name.chars().all(is_name_char) {
        return Err(NameError::IllegalCharacters { kind, quoted: quote(name) });
    }
    Ok(())
}

fn check_length(name: &str, kind: NameKind, max_chars: usize) -> Result<(), NameError> {
    // Java's String.length counts UTF-16 units; stop counting once past the limit.
    let len_chars = name.encode_utf16().take(max_chars + 1).count();
    if len_chars > max_chars {
        let len_chars = name.encode_utf16().count();
        return Err(NameError::TooLong { kind, len_chars, max_chars });
    }
    Ok(())
}

fn quote(name: &str) -> String {
    let mut out: String = name.chars().take(QUOTE_MAX_CHARS).flat_map(char::escape_default).collect();
    if name.chars().nth(QUOTE_MAX_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rocketmq_names_pass() {
        for t in ["TopicTest", "%RETRY%group", "%DLQ%group", "a|b", "TBW102", "x-y_z", &"t".repeat(127)] {
            assert_eq!(validate_topic(t), Ok(()), "{t}");
        }
        for g in ["CID_ONS-HTTP-PROXY", "ns%group", &"g".repeat(255)] {
            assert_eq!(validate_group(g), Ok(()), "{g}");
        }
    }

    #[test]
    fn unsafe_names_are_refused_with_the_rocketmq_reason() {
        for bad in ["a/b", "..", "../../../x", "a b", "a\u{1}b", "a\nb", "a.b", "a\\b", "中文", "a\0"] {
            assert!(matches!(validate_topic(bad), Err(NameError::IllegalCharacters { .. })), "{bad:?}");
            assert!(matches!(validate_group(bad), Err(NameError::IllegalCharacters { .. })), "{bad:?}");
        }
        for blank in ["", " ", "\t"] {
            assert_eq!(validate_topic(blank), Err(NameError::Blank { kind: NameKind::Topic }));
            assert_eq!(validate_group(blank), Err(NameError::Blank { kind: NameKind::Group }));
        }
        let long = "t".repeat(128);
        assert_eq!(
            validate_topic(&long),
            Err(NameError::TooLong { kind: NameKind::Topic, len_chars: 128, max_chars: 127 })
        );
        assert!(matches!(validate_group(&"g".repeat(256)), Err(NameError::TooLong { len_chars: 256, .. })));
        assert_eq!(
            NameError::Blank { kind: NameKind::Topic }.to_string(),
            "The specified topic is blank.",
            "TopicValidator's remark"
        );
    }

    #[test]
    fn remarks_quote_names_escaped_and_short() {
        let e = validate_topic(&format!("a\u{7}{}", "x".repeat(1000))).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("a\\u{7}xx"), "{msg}");
        assert!(msg.len() < 300, "{msg}");
        assert!(!msg.chars().any(char::is_control));
    }

    #[test]
    fn derived_topics_must_be_valid_topics() {
        assert_eq!(retry_topic("g").as_deref(), Ok("%RETRY%g"));
        assert_eq!(dlq_topic("g").as_deref(), Ok("%DLQ%g"));
        assert!(matches!(retry_topic("../../../escaped_retry"), Err(NameError::IllegalCharacters { .. })));
        // A valid group whose retry topic would be over 127 characters.
        let e = retry_topic(&"g".repeat(121)).unwrap_err();
        assert_eq!(e.kind(), NameKind::Topic);
        assert!(retry_topic(&"g".repeat(120)).is_ok());
    }

    proptest! {
        #[test]
        fn a_valid_name_is_one_plain_path_component(name in "\\PC{0,140}") {
            if validate_topic(&name).is_ok() {
                prop_assert!(!name.is_empty() && name.len() <= TOPIC_MAX_CHARS);
                prop_assert!(!name.contains(['/', '\\', '.', '\0']) && name.is_ascii());
            }
        }

        /// The one-pass fast path never changes a verdict: every name gets what the full
        /// checks give it (names near both length limits, legal and illegal characters).
        #[test]
        fn the_fast_path_agrees_with_the_full_checks(
            name in prop_oneof!["[a-zA-Z0-9%|_-]{0,260}", "[a-z%. /\t\u{e9}\u{4e2d}-]{0,130}", "\\PC{0,10}"],
        ) {
            prop_assert_eq!(validate_topic(&name), checked_topic(&name));
            prop_assert_eq!(validate_group(&name), checked_group(&name));
        }
    }
}
