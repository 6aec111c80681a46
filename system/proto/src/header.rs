//! Typed custom headers. On the wire every field is a string in `extFields`.
//!
//! [`command_header!`] declares a header struct with its wire key per field; a plain type is
//! required (`@CFNotNull` in Java), an `Option` is optional.

use std::borrow::Cow;

use crate::ext::ExtFields;

/// Why a header could not be decoded from ext fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required field is absent.
    #[error("missing header field `{0}`")]
    Missing(&'static str),
    /// A field does not parse as its type.
    #[error("header field `{key}` has invalid value `{value}`")]
    Invalid {
        /// The wire key.
        key: &'static str,
        /// The offending value.
        value: String,
    },
}

/// A typed header that converts to and from ext fields.
pub trait CommandHeader: Sized {
    /// The ext-field map for this header.
    fn to_ext(&self) -> ExtFields;
    /// Parses the header; missing required fields and bad numbers are errors.
    fn from_ext(ext: &ExtFields) -> Result<Self, HeaderError>;
}

/// One header field type: how it is read from and written to the ext map.
pub trait ExtValue: Sized {
    /// Reads the field from the value found under `key` (`None`: the key is absent).
    fn from_value(key: &'static str, raw: Option<&String>) -> Result<Self, HeaderError>;
    /// Reads the field under `key`.
    fn take(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError> {
        Self::from_value(key, ext.get(key))
    }
    /// Writes the field under `key` (optional fields that are `None` write nothing).
    fn put(&self, key: &'static str, ext: &mut ExtFields);
}

macro_rules! ext_scalar {
    ($($t:ty => $parse:expr),* $(,)?) => {$(
        impl ExtValue for $t {
            fn from_value(key: &'static str, raw: Option<&String>) -> Result<Self, HeaderError> {
                let raw = raw.ok_or(HeaderError::Missing(key))?;
                let parse: fn(&str) -> Option<$t> = $parse;
                parse(raw).ok_or_else(|| HeaderError::Invalid { key, value: raw.clone() })
            }
            fn put(&self, key: &'static str, ext: &mut ExtFields) {
                ext.insert(Cow::Borrowed(key), self.to_string());
            }
        }
        impl ExtValue for Option<$t> {
            fn from_value(key: &'static str, raw: Option<&String>) -> Result<Self, HeaderError> {
                match raw {
                    None => Ok(None),
                    Some(_) => <$t as ExtValue>::from_value(key, raw).map(Some),
                }
            }
            fn put(&self, key: &'static str, ext: &mut ExtFields) {
                if let Some(v) = self { v.put(key, ext) }
            }
        }
    )*};
}

ext_scalar! {
    String => |s| Some(s.to_string()),
    i32 => |s| s.trim().parse().ok(),
    i64 => |s| s.trim().parse().ok(),
    bool => |s| Some(s.trim().eq_ignore_ascii_case("true")),
}

/// Declares a header struct whose fields map to ext keys.
#[macro_export]
macro_rules! command_header {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty = $key:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub struct $name { $($(#[$fm])* pub $field: $ty,)* }
        impl $crate::header::CommandHeader for $name {
            fn to_ext(&self) -> $crate::ext::ExtFields {
                let mut m = $crate::ext::ExtFields::with_capacity([$($key),*].len());
                $( $crate::header::ExtValue::put(&self.$field, $key, &mut m); )*
                m
            }
            fn from_ext(ext: &$crate::ext::ExtFields) -> Result<Self, $crate::header::HeaderError> {
                Ok($name { $($field: $crate::header::ExtValue::take(ext, $key)?,)* })
            }
        }
    };
}

/// SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320) request header.
///
/// Decoding accepts both the long keys (code 10) and the one-letter keys a–n (310/320).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SendMessageRequestHeader {
    /// Producer group.
    pub producer_group: String,
    /// Target topic.
    pub topic: String,
    /// Template topic for auto-create, normally TBW102.
    pub default_topic: String,
    /// Queue count for auto-create.
    pub default_topic_queue_nums: i32,
    /// Target queue; negative lets the broker choose.
    pub queue_id: i32,
    /// Message sysFlag bits.
    pub sys_flag: i32,
    /// Born timestamp in ms.
    pub born_timestamp: i64,
    /// User flag.
    pub flag: i32,
    /// Properties string (name\x01value\x02...).
    pub properties: Option<String>,
    /// Times this message was already reconsumed.
    pub reconsume_times: Option<i32>,
    /// Unit mode.
    pub unit_mode: Option<bool>,
    /// True for SEND_BATCH_MESSAGE bodies.
    pub batch: Option<bool>,
    /// Max reconsume times requested by the client.
    pub max_reconsume_times: Option<i32>,
    /// Target broker name (5.x base field).
    pub broker_name: Option<String>,
}

const SEND_KEYS: [(&str, &str); 14] = [
    ("producerGroup", "a"),
    ("topic", "b"),
    ("defaultTopic", "c"),
    ("defaultTopicQueueNums", "d"),
    ("queueId", "e"),
    ("sysFlag", "f"),
    ("bornTimestamp", "g"),
    ("flag", "h"),
    ("properties", "i"),
    ("reconsumeTimes", "j"),
    ("unitMode", "k"),
    ("maxReconsumeTimes", "l"),
    ("batch", "m"),
    ("bname", "n"),
];

impl SendMessageRequestHeader {
    /// The one-letter (V2) ext map used by SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE.
    pub fn to_ext_v2(&self) -> ExtFields {
        self.to_ext_keyed(1)
    }

    /// The ext map with the long (`which` = 0) or one-letter (1) keys of [`SEND_KEYS`].
    fn to_ext_keyed(&self, which: usize) -> ExtFields {
        let k = |i: usize| if which == 0 { SEND_KEYS[i].0 } else { SEND_KEYS[i].1 };
        let mut m = ExtFields::with_capacity(SEND_KEYS.len());
        self.producer_group.put(k(0), &mut m);
        self.topic.put(k(1), &mut m);
        self.default_topic.put(k(2), &mut m);
        self.default_topic_queue_nums.put(k(3), &mut m);
        self.queue_id.put(k(4), &mut m);
        self.sys_flag.put(k(5), &mut m);
        self.born_timestamp.put(k(6), &mut m);
        self.flag.put(k(7), &mut m);
        self.properties.put(k(8), &mut m);
        self.reconsume_times.put(k(9), &mut m);
        self.unit_mode.put(k(10), &mut m);
        self.max_reconsume_times.put(k(11), &mut m);
        self.batch.put(k(12), &mut m);
        self.broker_name.put(k(13), &mut m);
        m
    }
}

impl CommandHeader for SendMessageRequestHeader {
    fn to_ext(&self) -> ExtFields {
        self.to_ext_keyed(0)
    }

    fn from_ext(ext: &ExtFields) -> Result<Self, HeaderError> {
        // V2 headers carry one-letter keys: read each field under its letter when present,
        // under its long name otherwise. One pass over the map finds both (a lookup per key
        // and name was most of a broker's time spent on this header).
        let (mut short, mut long) = ([None; SEND_KEYS.len()], [None; SEND_KEYS.len()]);
        let mut broker_name_long = None;
        for (key, value) in ext {
            match key.as_bytes() {
                // The letters are a.. in SEND_KEYS order (a test holds them to it).
                [letter @ b'a'..=b'n'] => short[usize::from(letter - b'a')] = Some(value),
                _ if key == "brokerName" => broker_name_long = Some(value),
                _ => {
                    if let Some(i) = SEND_KEYS.iter().position(|(l, _)| *l == key) {
                        long[i] = Some(value);
                    }
                }
            }
        }
        let v2 = short[0].is_some() && long[0].is_none();
        let field = |i: usize| {
            let (long_key, short_key) = SEND_KEYS[i];
            if v2 && short[i].is_some() {
                (short_key, short[i])
            } else {
                (long_key, long[i])
            }
        };
        fn take<T: ExtValue>((key, raw): (&'static str, Option<&String>)) -> Result<T, HeaderError> {
            T::from_value(key, raw)
        }
        let k = field;
        Ok(SendMessageRequestHeader {
            producer_group: take(k(0))?,
            topic: take(k(1))?,
            default_topic: take::<Option<String>>(k(2))?.unwrap_or_default(),
            default_topic_queue_nums: take::<Option<i32>>(k(3))?.unwrap_or(4),
            queue_id: take(k(4))?,
            sys_flag: take::<Option<i32>>(k(5))?.unwrap_or(0),
            born_timestamp: take::<Option<i64>>(k(6))?.unwrap_or(0),
            flag: take::<Option<i32>>(k(7))?.unwrap_or(0),
            properties: take(k(8))?,
            reconsume_times: take(k(9))?,
            unit_mode: take(k(10))?,
            max_reconsume_times: take(k(11))?,
            batch: take(k(12))?,
            broker_name: match take::<Option<String>>(k(13))? {
                Some(b) => Some(b),
                None => take(("brokerName", broker_name_long))?,
            },
        })
    }
}

command_header! {
    /// Send response header.
    pub struct SendMessageResponseHeader {
        /// Broker-side offset message id (comma-separated for a batch).
        msg_id: String = "msgId",
        /// Queue the message went to.
        queue_id: i32 = "queueId",
        /// Queue offset of the (first) message.
        queue_offset: i64 = "queueOffset",
        /// Transaction id (= UNIQ_KEY).
        transaction_id: Option<String> = "transactionId",
    }
}

command_header! {
    /// PULL_MESSAGE (11) request header.
    pub struct PullMessageRequestHeader {
        /// Consumer group.
        consumer_group: String = "consumerGroup",
        /// Topic.
        topic: String = "topic",
        /// Queue id.
        queue_id: i32 = "queueId",
        /// Queue offset to read from.
        queue_offset: i64 = "queueOffset",
        /// Most messages to return.
        max_msg_nums: i32 = "maxMsgNums",
        /// Pull sysFlag bits ([`crate::codes::pull_flag`]).
        sys_flag: i32 = "sysFlag",
        /// Piggy-backed consumer offset commit.
        commit_offset: i64 = "commitOffset",
        /// Longest hold for long polling, ms.
        suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        /// Subscription expression.
        subscription: Option<String> = "subscription",
        /// Subscription version.
        sub_version: i64 = "subVersion",
        /// TAG or SQL92.
        expression_type: Option<String> = "expressionType",
        /// Most bytes to return.
        max_msg_bytes: Option<i32> = "maxMsgBytes",
        /// Target broker name.
        broker_name: Option<String> = "bname",
    }
}

command_header! {
    /// PULL_MESSAGE response header.
    pub struct PullMessageResponseHeader {
        /// Which broker id to pull from next (0 = master).
        suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        /// Queue offset to pull next.
        next_begin_offset: i64 = "nextBeginOffset",
        /// Smallest queue offset held.
        min_offset: i64 = "minOffset",
        /// Next queue offset to be written.
        max_offset: i64 = "maxOffset",
    }
}

command_header! {
    /// Topic + queue id: GET_MAX_OFFSET (30), GET_MIN_OFFSET (31).
    pub struct QueueRequestHeader {
        /// Topic.
        topic: String = "topic",
        /// Queue id.
        queue_id: i32 = "queueId",
    }
}

command_header! {
    /// A single `offset` field: responses to offset queries.
    pub struct OffsetResponseHeader {
        /// The offset.
        offset: i64 = "offset",
    }
}

command_header! {
    /// QUERY_CONSUMER_OFFSET (14) request header.
    pub struct QueryConsumerOffsetRequestHeader {
        /// Consumer group.
        consumer_group: String = "consumerGroup",
        /// Topic.
        topic: String = "topic",
        /// Queue id.
        queue_id: i32 = "queueId",
    }
}

command_header! {
    /// UPDATE_CONSUMER_OFFSET (15) request header.
    pub struct UpdateConsumerOffsetRequestHeader {
        /// Consumer group.
        consumer_group: String = "consumerGroup",
        /// Topic.
        topic: String = "topic",
        /// Queue id.
        queue_id: i32 = "queueId",
        /// New consumer offset (next queue offset to consume).
        commit_offset: i64 = "commitOffset",
    }
}

command_header! {
    /// UPDATE_AND_CREATE_TOPIC (17) request header.
    pub struct CreateTopicRequestHeader {
        /// Topic.
        topic: String = "topic",
        /// Template topic.
        default_topic: String = "defaultTopic",
        /// Read queue count.
        read_queue_nums: i32 = "readQueueNums",
        /// Write queue count.
        write_queue_nums: i32 = "writeQueueNums",
        /// Permission bits.
        perm: i32 = "perm",
        /// Filter type, SINGLE_TAG.
        topic_filter_type: String = "topicFilterType",
        /// Topic sysFlag.
        topic_sys_flag: Option<i32> = "topicSysFlag",
        /// Ordered topic.
        order: bool = "order",
    }
}

command_header! {
    /// A single `topic` field: GET_ROUTEINFO_BY_TOPIC (105), GET_TOPIC_STATS_INFO (202).
    pub struct TopicRequestHeader {
        /// Topic.
        topic: String = "topic",
    }
}

command_header! {
    /// REGISTER_BROKER (103) request header.
    pub struct RegisterBrokerRequestHeader {
        /// Broker name (shared by master and slaves).
        broker_name: String = "brokerName",
        /// Broker address ip:port.
        broker_addr: String = "brokerAddr",
        /// Cluster name.
        cluster_name: String = "clusterName",
        /// HA address ip:port.
        ha_server_addr: String = "haServerAddr",
        /// 0 = master, >= 1 = slave.
        broker_id: i64 = "brokerId",
        /// Body is compressed.
        compressed: Option<bool> = "compressed",
        /// CRC32 of the body.
        body_crc32: Option<i32> = "bodyCrc32",
    }
}

command_header! {
    /// REGISTER_BROKER response header.
    pub struct RegisterBrokerResponseHeader {
        /// Master's HA address.
        ha_server_addr: Option<String> = "haServerAddr",
        /// Master's address.
        master_addr: Option<String> = "masterAddr",
    }
}

command_header! {
    /// UNREGISTER_BROKER (104) request header.
    pub struct UnregisterBrokerRequestHeader {
        /// Broker address.
        broker_addr: String = "brokerAddr",
        /// Broker id.
        broker_id: i64 = "brokerId",
        /// Broker name.
        broker_name: String = "brokerName",
        /// Cluster name.
        cluster_name: String = "clusterName",
    }
}

command_header! {
    /// A single `consumerGroup` field: GET_CONSUMER_LIST_BY_GROUP (38),
    /// NOTIFY_CONSUMER_IDS_CHANGED (40), GET_CONSUMER_CONNECTION_LIST (203).
    pub struct ConsumerGroupRequestHeader {
        /// Consumer group.
        consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// GET_CONSUME_STATS (208) request header.
    pub struct ConsumeStatsRequestHeader {
        /// Consumer group.
        consumer_group: String = "consumerGroup",
        /// Restrict to one topic.
        topic: Option<String> = "topic",
    }
}

command_header! {
    /// UNREGISTER_CLIENT (35) request header.
    pub struct UnregisterClientRequestHeader {
        /// Client id.
        client_id: String = "clientID",
        /// Producer group being unregistered.
        producer_group: Option<String> = "producerGroup",
        /// Consumer group being unregistered.
        consumer_group: Option<String> = "consumerGroup",
    }
}

command_header! {
    /// CONSUMER_SEND_MSG_BACK (36) request header.
    pub struct ConsumerSendMsgBackRequestHeader {
        /// Commit-log offset of the failed message.
        offset: i64 = "offset",
        /// Consumer group.
        group: String = "group",
        /// 0 = broker chooses, < 0 = straight to DLQ.
        delay_level: i32 = "delayLevel",
        /// Original message id.
        origin_msg_id: Option<String> = "originMsgId",
        /// Original topic.
        origin_topic: Option<String> = "originTopic",
        /// Max reconsume times.
        max_reconsume_times: Option<i32> = "maxReconsumeTimes",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29) request header.
    pub struct SearchOffsetRequestHeader {
        /// Topic.
        topic: String = "topic",
        /// Queue id.
        queue_id: i32 = "queueId",
        /// Store timestamp, ms.
        timestamp: i64 = "timestamp",
    }
}

command_header! {
    /// QUERY_MESSAGE (12) request header: messages of a topic by key, stored within a time
    /// range. The ext field `_UNIQUE_KEY_QUERY=true` makes `key` a unique key (message id).
    pub struct QueryMessageRequestHeader {
        /// Topic.
        topic: String = "topic",
        /// The key (one of the messages' KEYS, or a UNIQ_KEY).
        key: String = "key",
        /// Most messages to return.
        max_num: i32 = "maxNum",
        /// Store time range start, ms.
        begin_timestamp: i64 = "beginTimestamp",
        /// Store time range end, ms.
        end_timestamp: i64 = "endTimestamp",
    }
}

command_header! {
    /// QUERY_MESSAGE (12) response header.
    pub struct QueryMessageResponseHeader {
        /// Store time of the last message indexed.
        index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        /// CommitLog offset of the last message indexed.
        index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }
}

command_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222) and RESET_CONSUMER_CLIENT_OFFSET (220) header: move
    /// a group's offsets on a topic to the first message stored at or after `timestamp`
    /// (-1: to the end, skipping the backlog). Without `is_force` an offset only moves back.
    pub struct ResetOffsetRequestHeader {
        /// Topic.
        topic: String = "topic",
        /// Consumer group.
        group: String = "group",
        /// Store time, ms; -1 for the queue's end.
        timestamp: i64 = "timestamp",
        /// Move forward too.
        is_force: bool = "isForce",
    }
}

command_header! {
    /// END_TRANSACTION (37) request header.
    pub struct EndTransactionRequestHeader {
        /// Topic.
        topic: Option<String> = "topic",
        /// Producer group.
        producer_group: String = "producerGroup",
        /// Queue offset of the half message.
        tran_state_table_offset: i64 = "tranStateTableOffset",
        /// Commit-log offset of the half message.
        commit_log_offset: i64 = "commitLogOffset",
        /// 0 unknown, 8 commit, 12 rollback.
        commit_or_rollback: i32 = "commitOrRollback",
        /// Sent in answer to a check-back.
        from_transaction_check: Option<bool> = "fromTransactionCheck",
        /// Message id.
        msg_id: String = "msgId",
        /// Transaction id.
        transaction_id: Option<String> = "transactionId",
    }
}

command_header! {
    /// CHECK_TRANSACTION_STATE (39) request header, broker → producer; the body is the half
    /// message, encoded as stored.
    pub struct CheckTransactionStateRequestHeader {
        /// The real topic.
        topic: Option<String> = "topic",
        /// Queue offset of the half message.
        tran_state_table_offset: i64 = "tranStateTableOffset",
        /// Commit-log offset of the half message.
        commit_log_offset: i64 = "commitLogOffset",
        /// Message id (UNIQ_KEY).
        msg_id: Option<String> = "msgId",
        /// Transaction id.
        transaction_id: Option<String> = "transactionId",
        /// Broker-side offset message id.
        offset_msg_id: Option<String> = "offsetMsgId",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn send_header_round_trips_long_and_v2(
            group in "[A-Za-z_]{1,16}", topic in "[A-Za-z_%]{1,20}", queue_id in -1i32..64,
            sys_flag in 0i32..256, born in any::<i64>(), flag in any::<i32>(),
            props in proptest::option::of("[a-zA-Z0-9]{0,30}"), recon in proptest::option::of(0i32..20),
            batch in proptest::option::of(any::<bool>()),
        ) {
            let h = SendMessageRequestHeader {
                producer_group: group, topic, default_topic: "TBW102".into(), default_topic_queue_nums: 4,
                queue_id, sys_flag, born_timestamp: born, flag, properties: props, reconsume_times: recon,
                unit_mode: Some(false), batch, max_reconsume_times: None, broker_name: Some("b".into()),
            };
            prop_assert_eq!(SendMessageRequestHeader::from_ext(&h.to_ext()).unwrap(), h.clone());
            prop_assert_eq!(SendMessageRequestHeader::from_ext(&h.to_ext_v2()).unwrap(), h);
        }

        #[test]
        fn pull_header_round_trips(q in 0i32..1000, off in any::<i64>(), sub in proptest::option::of("[A-Za-z|* ]{0,12}")) {
            let h = PullMessageRequestHeader {
                consumer_group: "g".into(), topic: "t".into(), queue_id: q, queue_offset: off,
                max_msg_nums: 32, sys_flag: 3, commit_offset: off / 2, suspend_timeout_millis: 15000,
                subscription: sub, sub_version: 1, expression_type: Some("TAG".into()),
                max_msg_bytes: None, broker_name: None,
            };
            prop_assert_eq!(PullMessageRequestHeader::from_ext(&h.to_ext()).unwrap(), h);
        }
    }

    #[test]
    fn send_header_letters_run_from_a_in_field_order() {
        for (i, (_, letter)) in SEND_KEYS.iter().enumerate() {
            assert_eq!(letter.as_bytes(), [b'a' + i as u8]);
        }
    }

    #[test]
    fn a_v2_send_header_falls_back_to_long_names_field_by_field() {
        let h = SendMessageRequestHeader {
            producer_group: "g".into(),
            topic: "t".into(),
            queue_id: 3,
            broker_name: Some("b".into()),
            ..Default::default()
        };
        let mut ext = h.to_ext_v2();
        // The topic under its long name, the broker under 5.x's brokerName: both still read.
        let topic = ext.remove("b").unwrap();
        ext.insert("topic".into(), topic);
        let broker = ext.remove("n").unwrap();
        ext.insert("brokerName".into(), broker);
        assert_eq!(SendMessageRequestHeader::from_ext(&ext).unwrap(), h);
        // Neither letter nor name: the error names the long key.
        ext.remove("topic");
        assert_eq!(SendMessageRequestHeader::from_ext(&ext), Err(HeaderError::Missing("topic")));
        // A bad value under a letter is reported under that letter.
        let mut ext = h.to_ext_v2();
        ext.insert("e".into(), "x".into());
        assert!(matches!(SendMessageRequestHeader::from_ext(&ext), Err(HeaderError::Invalid { key: "e", .. })));
    }

    #[test]
    fn missing_and_invalid_fields_are_errors() {
        let mut ext = ExtFields::new();
        assert_eq!(QueueRequestHeader::from_ext(&ext), Err(HeaderError::Missing("topic")));
        ext.insert("topic".into(), "t".into());
        ext.insert("queueId".into(), "x1".into());
        assert!(matches!(QueueRequestHeader::from_ext(&ext), Err(HeaderError::Invalid { key: "queueId", .. })));
    }
}
