//! JSON bodies: route data, topic config, broker registration, heartbeats, consumer lists.
//!
//! We always emit standard JSON. [`from_json`] also accepts fastjson's unquoted integer map keys
//! (`{0:"10.0.0.1:10911"}`), which old Java servers send.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codes::perm;

/// Parses a JSON body, tolerating fastjson's unquoted integer keys.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(e) => {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Err(e);
            };
            serde_json::from_str(&quote_numeric_keys(text))
        }
    }
}

/// Serializes a body as standard JSON.
pub fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("body types hold only strings, numbers, maps and lists")
}

/// Rewrites `{0:"a",-1:"b"}` into `{"0":"a","-1":"b"}` outside string literals.
pub fn quote_numeric_keys(text: &str) -> String {
    let b = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + 8);
    let mut i = 0;
    let mut in_str = false;
    let mut after_open = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if after_open && (c.is_ascii_digit() || c == b'-') {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let mut k = j;
            while k < b.len() && b[k].is_ascii_whitespace() {
                k += 1;
            }
            if k < b.len() && b[k] == b':' {
                out.push(b'"');
                out.extend_from_slice(&b[i..j]);
                out.push(b'"');
                i = j;
                after_open = false;
                continue;
            }
        }
        match c {
            b'"' => in_str = true,
            b'{' | b',' => after_open = true,
            c if c.is_ascii_whitespace() => {}
            _ => after_open = false,
        }
        out.push(c);
        i += 1;
    }
    // Only ASCII quotes were inserted between whole UTF-8 sequences.
    String::from_utf8(out).expect("inserting ASCII quotes keeps UTF-8 valid")
}

/// Queues of one topic on one broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    /// Broker name.
    pub broker_name: String,
    /// Read queue count.
    pub read_queue_nums: i32,
    /// Write queue count.
    pub write_queue_nums: i32,
    /// Permission bits.
    pub perm: i32,
    /// Topic sysFlag.
    #[serde(default)]
    pub topic_sys_flag: i32,
}

/// Addresses of one broker name: broker id (0 = master) to ip:port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// Cluster name.
    pub cluster: String,
    /// Broker name.
    pub broker_name: String,
    /// Broker id to address.
    pub broker_addrs: BTreeMap<i64, String>,
    /// Zone name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    /// Acting master mode.
    #[serde(default)]
    pub enable_acting_master: bool,
}

impl BrokerData {
    /// The master's address, if registered.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&0).map(String::as_str)
    }
}

/// Route of one topic (GET_ROUTEINFO_BY_TOPIC body).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// Order topic config, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// Queues per broker.
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
    /// Brokers.
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers per broker address.
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
}

/// A topic's configuration on a broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// Topic name.
    pub topic_name: String,
    /// Read queue count.
    pub read_queue_nums: i32,
    /// Write queue count.
    pub write_queue_nums: i32,
    /// Permission bits.
    pub perm: i32,
    /// Filter type.
    #[serde(default = "single_tag")]
    pub topic_filter_type: String,
    /// Topic sysFlag.
    #[serde(default)]
    pub topic_sys_flag: i32,
    /// Ordered topic.
    #[serde(default)]
    pub order: bool,
    /// Extra attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

fn single_tag() -> String {
    "SINGLE_TAG".to_string()
}

impl TopicConfig {
    /// A read-write topic with `queues` read and write queues.
    pub fn new(name: &str, queues: i32) -> Self {
        TopicConfig {
            topic_name: name.to_string(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: perm::READ_WRITE,
            topic_filter_type: single_tag(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        }
    }
}

/// Version of a broker's topic config table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    /// Timestamp of the last change, ms.
    #[serde(default)]
    pub timestamp: i64,
    /// Change counter.
    #[serde(default)]
    pub counter: i64,
    /// State version.
    #[serde(default)]
    pub state_version: i64,
}

/// Topic configs plus their version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    /// Topic name to config.
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// Version.
    #[serde(default)]
    pub data_version: DataVersion,
}

/// REGISTER_BROKER body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    /// Topic configs.
    #[serde(default)]
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
    /// Filter servers.
    #[serde(default)]
    pub filter_server_list: Vec<String>,
}

/// GET_BROKER_CLUSTER_INFO body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker name to its data.
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name to broker names.
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, Vec<String>>,
}

/// A list of topic names (GET_ALL_TOPIC_LIST_FROM_NAMESERVER body).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    /// Topic names.
    #[serde(default)]
    pub topic_list: Vec<String>,
}

/// A producer group in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    /// Group name.
    pub group_name: String,
}

/// A subscription in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    /// Class filter mode.
    #[serde(default)]
    pub class_filter_mode: bool,
    /// Topic.
    pub topic: String,
    /// Expression, e.g. "*" or "TagA || TagB".
    #[serde(default)]
    pub sub_string: String,
    /// Tags.
    #[serde(default)]
    pub tags_set: Vec<String>,
    /// Java hash codes of the tags.
    #[serde(default)]
    pub code_set: Vec<i32>,
    /// Version.
    #[serde(default)]
    pub sub_version: i64,
    /// TAG or SQL92.
    #[serde(default)]
    pub expression_type: Option<String>,
}

impl SubscriptionData {
    /// A TAG subscription parsed from an expression ("*" or "a || b").
    pub fn tag(topic: &str, expression: &str) -> Self {
        let tags = parse_tags(expression);
        SubscriptionData {
            class_filter_mode: false,
            topic: topic.to_string(),
            sub_string: if tags.is_empty() { "*".into() } else { expression.to_string() },
            code_set: tags.iter().map(|t| crate::java_string_hash(t)).collect(),
            tags_set: tags,
            sub_version: 0,
            expression_type: Some("TAG".into()),
        }
    }

    /// True when `tag` passes this subscription.
    pub fn matches(&self, tag: Option<&str>) -> bool {
        self.tags_set.is_empty() || tag.is_some_and(|t| self.tags_set.iter().any(|s| s == t))
    }
}

/// Splits a tag expression on `||`; "*" or empty means all (an empty list).
pub fn parse_tags(expression: &str) -> Vec<String> {
    let e = expression.trim();
    if e.is_empty() || e == "*" {
        return Vec::new();
    }
    e.split("||").map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()
}

/// A consumer group in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    /// Group name.
    pub group_name: String,
    /// CONSUME_ACTIVELY (pull) or CONSUME_PASSIVELY (push).
    #[serde(default)]
    pub consume_type: String,
    /// CLUSTERING or BROADCASTING.
    #[serde(default)]
    pub message_model: String,
    /// Where a new group starts.
    #[serde(default)]
    pub consume_from_where: String,
    /// Subscriptions.
    #[serde(default)]
    pub subscription_data_set: Vec<SubscriptionData>,
    /// Unit mode.
    #[serde(default)]
    pub unit_mode: bool,
}

/// HEART_BEAT body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    /// Client id.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Producer groups.
    #[serde(default)]
    pub producer_data_set: Vec<ProducerData>,
    /// Consumer groups.
    #[serde(default)]
    pub consumer_data_set: Vec<ConsumerData>,
    /// Fingerprint of the heartbeat contents.
    #[serde(default)]
    pub heartbeat_fingerprint: i64,
    /// Heartbeat without subscriptions.
    #[serde(default, alias = "isWithoutSub")]
    pub without_sub: bool,
}

/// GET_CONSUMER_LIST_BY_GROUP response body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerIdList {
    /// Client ids of the group's live members.
    #[serde(default)]
    pub consumer_id_list: Vec<String>,
}

/// LOCK_BATCH_MQ / UNLOCK_BATCH_MQ request body (RocketMQ's LockBatchRequestBody and
/// UnlockBatchRequestBody share these fields).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchBody {
    /// Consumer group.
    pub consumer_group: String,
    /// The member asking.
    pub client_id: String,
    /// Lock at this broker only (no forwarding to its peers).
    #[serde(default)]
    pub only_this_broker: bool,
    /// Queues.
    #[serde(default)]
    pub mq_set: Vec<MessageQueue>,
}

/// LOCK_BATCH_MQ response body: the queues now locked for the member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct LockBatchResult {
    /// Locked queues.
    #[serde(rename = "lockOKMQSet", default)]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// A message queue: topic, broker name and queue id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    /// Topic.
    pub topic: String,
    /// Broker name.
    pub broker_name: String,
    /// Queue id.
    pub queue_id: i32,
}

/// Progress of one queue of a group (GET_CONSUME_STATS, our JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueProgress {
    /// The queue.
    pub queue: MessageQueue,
    /// Next queue offset to be written.
    pub broker_offset: i64,
    /// The group's committed offset.
    pub consumer_offset: i64,
}

/// GET_CONSUME_STATS body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeStats {
    /// Per queue progress.
    #[serde(default)]
    pub queues: Vec<QueueProgress>,
}

impl ConsumeStats {
    /// Total messages written but not consumed.
    pub fn diff_total(&self) -> i64 {
        self.queues.iter().map(|q| (q.broker_offset - q.consumer_offset).max(0)).sum()
    }
}

/// ResetOffsetBody: new offsets per queue (INVOKE_BROKER_TO_RESET_OFFSET's answer and
/// RESET_CONSUMER_CLIENT_OFFSET's body). On the wire it is fastjson's rendering of a map keyed
/// by MessageQueue objects, which is not JSON: `{"offsetTable":{{"brokerName":"b","queueId":0,
/// "topic":"T"}:5}}`. [`Self::to_fastjson`] writes that; [`Self::parse`] reads it (and the
/// list form `[{"brokerName":..,"queueId":..,"topic":..,"offset":5}]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ResetOffsetBody {
    /// New offset per queue.
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

impl ResetOffsetBody {
    /// The fastjson wire form.
    pub fn to_fastjson(&self) -> Vec<u8> {
        let entries: Vec<String> = self
            .offset_table
            .iter()
            .map(|(mq, off)| {
                let key =
                    serde_json::json!({ "brokerName": mq.broker_name, "queueId": mq.queue_id, "topic": mq.topic });
                format!("{key}:{off}")
            })
            .collect();
        format!("{{\"offsetTable\":{{{}}}}}", entries.join(",")).into_bytes()
    }

    /// Reads the fastjson form (or the list form).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
        let start = text.find("\"offsetTable\"").ok_or("no offsetTable")? + "\"offsetTable\"".len();
        let rest = text[start..].trim_start().strip_prefix(':').ok_or("offsetTable: expected ':'")?.trim_start();
        let mut table = BTreeMap::new();
        if rest.starts_with('[') {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Row {
                #[serde(flatten)]
                mq: MessageQueue,
                offset: i64,
            }
            let mut de = serde_json::Deserializer::from_str(rest);
            let rows = <Vec<Row> as Deserialize>::deserialize(&mut de).map_err(|e| e.to_string())?;
            table.extend(rows.into_iter().map(|r| (r.mq, r.offset)));
            return Ok(ResetOffsetBody { offset_table: table });
        }
        let mut rest = rest.strip_prefix('{').ok_or("offsetTable: expected '{'")?.trim_start();
        while !rest.starts_with('}') {
            // A key is a flat object: queue names and topics cannot hold braces.
            let end = rest.find('}').ok_or("offsetTable: unterminated key")? + 1;
            let mq: MessageQueue = serde_json::from_str(&rest[..end]).map_err(|e| e.to_string())?;
            rest = rest[end..].trim_start().strip_prefix(':').ok_or("offsetTable: expected ':'")?.trim_start();
            let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(rest.len());
            let off: i64 = rest[..digits].parse().map_err(|_| "offsetTable: bad offset".to_string())?;
            table.insert(mq, off);
            rest = rest[digits..].trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
            if rest.is_empty() {
                return Err("offsetTable: unterminated".into());
            }
        }
        Ok(ResetOffsetBody { offset_table: table })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastjson_integer_keys_parse() {
        let raw = br#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"b","cluster":"c"}],"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":4,"writeQueueNums":4}]}"#;
        let route: TopicRouteData = from_json(raw).unwrap();
        assert_eq!(route.broker_datas[0].master_addr(), Some("10.0.0.1:10911"));
        assert_eq!(route.broker_datas[0].broker_addrs[&1], "10.0.0.2:10911");
    }

    #[test]
    fn reset_offset_body_round_trips_fastjson_and_reads_the_list_form() {
        let mq = |q| MessageQueue { topic: "T".into(), broker_name: "b".into(), queue_id: q };
        let body = ResetOffsetBody { offset_table: [(mq(0), 5), (mq(1), 0)].into_iter().collect() };
        let wire = body.to_fastjson();
        assert_eq!(
            String::from_utf8_lossy(&wire),
            r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:5,{"brokerName":"b","queueId":1,"topic":"T"}:0}}"#
        );
        assert_eq!(ResetOffsetBody::parse(&wire).unwrap(), body);
        let list = br#"{"offsetTable":[{"brokerName":"b","queueId":0,"topic":"T","offset":5},{"brokerName":"b","queueId":1,"topic":"T","offset":0}]}"#;
        assert_eq!(ResetOffsetBody::parse(list).unwrap(), body);
        assert_eq!(ResetOffsetBody::parse(br#"{"offsetTable":{}}"#).unwrap(), ResetOffsetBody::default());
        for bad in [&b"{}"[..], br#"{"offsetTable":{{"brokerName":"b"}:1}}"#, br#"{"offsetTable":{"#, b"\xff"] {
            assert!(ResetOffsetBody::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn quoting_leaves_strings_alone() {
        let s = r#"{"a":"{0:1}", 5 : "x,7:y", "é":1}"#;
        assert_eq!(quote_numeric_keys(s), r#"{"a":"{0:1}", "5" : "x,7:y", "é":1}"#);
    }

    #[test]
    fn route_round_trips_with_quoted_keys() {
        let mut addrs = BTreeMap::new();
        addrs.insert(0, "127.0.0.1:10911".to_string());
        let route = TopicRouteData {
            broker_datas: vec![BrokerData {
                cluster: "c".into(),
                broker_name: "b".into(),
                broker_addrs: addrs,
                zone_name: None,
                enable_acting_master: false,
            }],
            queue_datas: vec![QueueData {
                broker_name: "b".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                topic_sys_flag: 0,
            }],
            ..Default::default()
        };
        let json = to_json(&route);
        assert!(String::from_utf8_lossy(&json).contains(r#""0":"127.0.0.1:10911""#));
        assert_eq!(from_json::<TopicRouteData>(&json).unwrap(), route);
    }

    #[test]
    fn heartbeat_parses_observed_client_shape() {
        let raw = br#"{"clientID":"127.0.0.1@1#2","producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}],"consumerDataSet":[{"groupName":"g","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{"topic":"T","subString":"*","tagsSet":[],"codeSet":[],"subVersion":1,"expressionType":"TAG","classFilterMode":false}],"unitMode":false}],"heartbeatFingerprint":0,"withoutSub":false}"#;
        let hb: HeartbeatData = from_json(raw).unwrap();
        assert_eq!(hb.consumer_data_set[0].subscription_data_set[0].topic, "T");
    }

    #[test]
    fn tag_subscriptions_match() {
        let s = SubscriptionData::tag("t", "A || B");
        assert!(s.matches(Some("A")) && s.matches(Some("B")) && !s.matches(Some("C")) && !s.matches(None));
        assert!(SubscriptionData::tag("t", "*").matches(None));
    }
}
