//! Every entry point that takes a topic or a group refuses unsafe names with RocketMQ's code
//! (see `checks`) and changes nothing: no topic config, no ConsumeQueue, no file anywhere under
//! the store's parent directory, no name in a registration.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;
use rmq_proto::body::{MessageQueue, ProducerData};
use rmq_proto::header::{
    ConsumeStatsRequestHeader, ConsumerGroupRequestHeader, CreateTopicRequestHeader, QueryConsumerOffsetRequestHeader,
    QueueRequestHeader, SearchOffsetRequestHeader, TopicRequestHeader, UnregisterClientRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};

/// Where a name sits in a request, and so which code refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Topic,
    ConsumerGroup,
    ProducerGroup,
}

impl Role {
    fn code(self) -> i32 {
        match self {
            Role::Topic | Role::ProducerGroup => ResponseCode::SystemError.code(),
            Role::ConsumerGroup => ResponseCode::SubscriptionGroupNotExist.code(),
        }
    }
}

/// Names with a `/`, `..`, a space, control characters, and one over the length limit.
fn bad_names(role: Role) -> Vec<String> {
    let over_long = match role {
        Role::Topic => "t".repeat(128),
        Role::ConsumerGroup | Role::ProducerGroup => "g".repeat(256),
    };
    vec![
        "has/slash".into(),
        "..".into(),
        "../../../escaped".into(),
        "has space".into(),
        "ctl\u{1}char".into(),
        "nul\0".into(),
        "line\nbreak".into(),
        over_long,
    ]
}

/// One entry point: its name, where the name goes, and the request carrying `name` there.
struct EntryPoint {
    what: &'static str,
    role: Role,
    build: fn(&str) -> RemotingCommand,
}

fn send_v1(topic: &str, group: &str) -> RemotingCommand {
    let mut hdr = send_header(topic, 0);
    hdr.producer_group = group.into();
    RemotingCommand::request_with(RequestCode::SendMessage, 0, &hdr).with_body(&b"x"[..])
}

fn send_v2(topic: &str, group: &str) -> RemotingCommand {
    let mut hdr = send_header(topic, 0);
    hdr.producer_group = group.into();
    let mut req = RemotingCommand::request(RequestCode::SendMessageV2, 0).with_body(&b"x"[..]);
    req.ext_fields = hdr.to_ext_v2();
    req
}

fn send_batch(topic: &str, group: &str) -> RemotingCommand {
    let mut hdr = send_header(topic, 0);
    hdr.producer_group = group.into();
    hdr.batch = Some(true);
    let items = [BatchItem { flag: 0, body: bytes::Bytes::from_static(b"b"), properties: Default::default() }];
    let mut req = RemotingCommand::request(RequestCode::SendBatchMessage, 0).with_body(encode_batch(&items));
    req.ext_fields = hdr.to_ext_v2();
    req
}

fn pull(topic: &str, group: &str) -> RemotingCommand {
    let mut hdr = pull_header(topic, 0, 0, pull_flag::SUSPEND | pull_flag::COMMIT_OFFSET);
    hdr.consumer_group = group.into();
    hdr.commit_offset = 1;
    RemotingCommand::request_with(RequestCode::PullMessage, 0, &hdr)
}

fn send_back(group: &str, origin_topic: &str, delay_level: i32) -> RemotingCommand {
    let hdr = ConsumerSendMsgBackRequestHeader {
        offset: 0, // the message every test stores first
        group: group.into(),
        delay_level,
        origin_msg_id: None,
        origin_topic: Some(origin_topic.into()),
        max_reconsume_times: None,
    };
    RemotingCommand::request_with(RequestCode::ConsumerSendMsgBack, 0, &hdr)
}

fn heartbeat_with(consumer_group: &str, topic: &str, producer_group: &str) -> RemotingCommand {
    let hb = HeartbeatData {
        client_id: "client-1".into(),
        consumer_data_set: vec![ConsumerData {
            group_name: consumer_group.into(),
            consume_type: "CONSUME_PASSIVELY".into(),
            message_model: "CLUSTERING".into(),
            consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
            subscription_data_set: vec![SubscriptionData::tag(topic, "*")],
            unit_mode: false,
        }],
        producer_data_set: vec![ProducerData { group_name: producer_group.into() }],
        ..Default::default()
    };
    RemotingCommand::request(RequestCode::HeartBeat, 0).with_body(to_json(&hb))
}

fn query_offset(group: &str, topic: &str) -> RemotingCommand {
    let hdr = QueryConsumerOffsetRequestHeader { consumer_group: group.into(), topic: topic.into(), queue_id: 0 };
    RemotingCommand::request_with(RequestCode::QueryConsumerOffset, 0, &hdr)
}

fn update_offset(group: &str, topic: &str) -> RemotingCommand {
    let hdr = UpdateConsumerOffsetRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id: 0,
        commit_offset: 1,
    };
    RemotingCommand::request_with(RequestCode::UpdateConsumerOffset, 0, &hdr)
}

fn lock(code: RequestCode, group: &str, topic: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "consumerGroup": group,
        "clientId": "client-1",
        "mqSet": [MessageQueue { topic: topic.into(), broker_name: "broker-a".into(), queue_id: 0 }],
    });
    RemotingCommand::request(code, 0).with_body(serde_json::to_vec(&body).unwrap())
}

pub(super) fn create_topic(topic: &str) -> RemotingCommand {
    let hdr = CreateTopicRequestHeader {
        topic: topic.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: 4,
        write_queue_nums: 4,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: None,
        order: false,
    };
    RemotingCommand::request_with(RequestCode::UpdateAndCreateTopic, 0, &hdr)
}

fn topic_only(code: RequestCode, topic: &str) -> RemotingCommand {
    RemotingCommand::request_with(code, 0, &TopicRequestHeader { topic: topic.into() })
}

fn queue_query(code: RequestCode, topic: &str) -> RemotingCommand {
    RemotingCommand::request_with(code, 0, &QueueRequestHeader { topic: topic.into(), queue_id: 0 })
}

fn group_only(code: RequestCode, group: &str) -> RemotingCommand {
    RemotingCommand::request_with(code, 0, &ConsumerGroupRequestHeader { consumer_group: group.into() })
}

fn consume_stats(group: &str, topic: &str) -> RemotingCommand {
    let hdr = ConsumeStatsRequestHeader { consumer_group: group.into(), topic: Some(topic.into()) };
    RemotingCommand::request_with(RequestCode::GetConsumeStats, 0, &hdr)
}

fn unregister(producer_group: Option<&str>, consumer_group: Option<&str>) -> RemotingCommand {
    let hdr = UnregisterClientRequestHeader {
        client_id: "client-1".into(),
        producer_group: producer_group.map(String::from),
        consumer_group: consumer_group.map(String::from),
    };
    RemotingCommand::request_with(RequestCode::UnregisterClient, 0, &hdr)
}

fn entry_points() -> Vec<EntryPoint> {
    use Role::*;
    let e = |what, role, build| EntryPoint { what, role, build };
    vec![
        e("SEND_MESSAGE topic", Topic, |n| send_v1(n, "pg")),
        e("SEND_MESSAGE producerGroup", ProducerGroup, |n| send_v1("T", n)),
        e("SEND_MESSAGE_V2 topic", Topic, |n| send_v2(n, "pg")),
        e("SEND_MESSAGE_V2 producerGroup", ProducerGroup, |n| send_v2("T", n)),
        e("SEND_BATCH_MESSAGE topic", Topic, |n| send_batch(n, "pg")),
        e("SEND_BATCH_MESSAGE producerGroup", ProducerGroup, |n| send_batch("T", n)),
        e("PULL_MESSAGE topic", Topic, |n| pull(n, "cg")),
        e("PULL_MESSAGE consumerGroup", ConsumerGroup, |n| pull("T", n)),
        e("CONSUMER_SEND_MSG_BACK group (retry)", ConsumerGroup, |n| send_back(n, "T", 0)),
        e("CONSUMER_SEND_MSG_BACK group (DLQ)", ConsumerGroup, |n| send_back(n, "T", -1)),
        e("CONSUMER_SEND_MSG_BACK originTopic", Topic, |n| send_back("cg", n, 0)),
        e("HEART_BEAT consumer group", ConsumerGroup, |n| heartbeat_with(n, "T", "pg")),
        e("HEART_BEAT subscription topic", Topic, |n| heartbeat_with("cg", n, "pg")),
        e("HEART_BEAT producer group", ProducerGroup, |n| heartbeat_with("cg", "T", n)),
        e("UNREGISTER_CLIENT producerGroup", ProducerGroup, |n| unregister(Some(n), None)),
        e("UNREGISTER_CLIENT consumerGroup", ConsumerGroup, |n| unregister(None, Some(n))),
        e("QUERY_CONSUMER_OFFSET consumerGroup", ConsumerGroup, |n| query_offset(n, "T")),
        e("QUERY_CONSUMER_OFFSET topic", Topic, |n| query_offset("cg", n)),
        e("UPDATE_CONSUMER_OFFSET consumerGroup", ConsumerGroup, |n| update_offset(n, "T")),
        e("UPDATE_CONSUMER_OFFSET topic", Topic, |n| update_offset("cg", n)),
        e("LOCK_BATCH_MQ consumerGroup", ConsumerGroup, |n| lock(RequestCode::LockBatchMq, n, "T")),
        e("LOCK_BATCH_MQ topic", Topic, |n| lock(RequestCode::LockBatchMq, "cg", n)),
        e("UNLOCK_BATCH_MQ consumerGroup", ConsumerGroup, |n| lock(RequestCode::UnlockBatchMq, n, "T")),
        e("UNLOCK_BATCH_MQ topic", Topic, |n| lock(RequestCode::UnlockBatchMq, "cg", n)),
        e("GET_CONSUMER_LIST_BY_GROUP", ConsumerGroup, |n| group_only(RequestCode::GetConsumerListByGroup, n)),
        e("GET_CONSUMER_CONNECTION_LIST", ConsumerGroup, |n| group_only(RequestCode::GetConsumerConnectionList, n)),
        e("GET_CONSUME_STATS consumerGroup", ConsumerGroup, |n| consume_stats(n, "T")),
        e("GET_CONSUME_STATS topic", Topic, |n| consume_stats("cg", n)),
        e("UPDATE_AND_CREATE_TOPIC", Topic, create_topic),
        e("DELETE_TOPIC_IN_BROKER", Topic, |n| topic_only(RequestCode::DeleteTopicInBroker, n)),
        e("GET_TOPIC_STATS_INFO", Topic, |n| topic_only(RequestCode::GetTopicStatsInfo, n)),
        e("GET_MAX_OFFSET", Topic, |n| queue_query(RequestCode::GetMaxOffset, n)),
        e("GET_MIN_OFFSET", Topic, |n| queue_query(RequestCode::GetMinOffset, n)),
        e("GET_EARLIEST_MSG_STORETIME", Topic, |n| queue_query(RequestCode::GetEarliestMsgStoretime, n)),
        e("SEARCH_OFFSET_BY_TIMESTAMP", Topic, |n| {
            let hdr = SearchOffsetRequestHeader { topic: n.into(), queue_id: 0, timestamp: 0 };
            RemotingCommand::request_with(RequestCode::SearchOffsetByTimestamp, 0, &hdr)
        }),
    ]
}

/// Every file and directory under `root`, relative to it.
fn listing(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            out.insert(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    out
}

/// What a refused request must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    topics: Vec<String>,
    queues: Vec<(String, i32)>,
    offsets: Vec<(String, String)>,
    consumer_groups: Vec<String>,
    files: BTreeSet<PathBuf>,
}

fn footprint(h: &Harness<MmapDirectory>, parent: &Path) -> Footprint {
    Footprint {
        topics: h.core.topics.iter().map(|(t, _)| t.clone()).collect(),
        queues: h.core.store.queues(),
        offsets: h.core.offsets.iter().map(|(k, _)| k.clone()).collect(),
        consumer_groups: h.core.clients.consumer_groups(),
        files: listing(parent),
    }
}

/// A broker on real files three levels below a temp dir (so even an escaping path would land
/// where the listing sees it), holding one message at CommitLog offset 0 and a consumer group.
fn broker_on_disk() -> (tempfile::TempDir, PathBuf, Harness<MmapDirectory>) {
    let (tmp, config) = small_mmap_store();
    let root = tmp.path().join("a/b/c/store");
    std::fs::create_dir_all(&root).unwrap();
    let mut core = BrokerCore::open(MmapDirectory::new(root.clone()), config, 1_000).unwrap();
    core.on_conn_opened(1_000, ConnId(1), "127.0.0.1:40000".parse().unwrap());
    let mut h = Harness { core, now: 1_000, next_opaque: 1 };
    assert_eq!(h.send("T", 0, "first").code, 0);
    assert_eq!(h.call(1, heartbeat_with("cg", "T", "pg")).code, 0);
    h.advance(1_000); // persist topics.json, register, checkpoint: the steady state
    h.drain();
    (tmp, root, h)
}

#[test]
fn every_entry_point_refuses_unsafe_names_and_creates_nothing() {
    let (tmp, _root, mut h) = broker_on_disk();
    let before = footprint(&h, tmp.path());
    let mut checked = 0;
    for ep in entry_points() {
        for name in bad_names(ep.role) {
            let resp = h.call(1, (ep.build)(&name));
            assert_eq!(resp.code, ep.role.code(), "{}: {name:?} answered {:?}", ep.what, resp.remark);
            let remark = resp.remark.unwrap_or_default();
            assert!(remark.contains("specified"), "{}: the remark says why: {remark}", ep.what);
            assert!(!remark.chars().any(char::is_control), "{}: the remark is escaped: {remark:?}", ep.what);
            assert_eq!(footprint(&h, tmp.path()), before, "{}: {name:?} changed the broker", ep.what);
            checked += 1;
        }
    }
    assert!(checked >= 35 * 7);
    // Timers persist and register the table: still nothing of the refused names.
    h.advance(31_000);
    let regs: Vec<RemotingCommand> = std::iter::from_fn(|| h.core.poll_output())
        .filter_map(|o| match o {
            Output::RegisterBroker(c) => Some(c),
            _ => None,
        })
        .collect();
    assert!(!regs.is_empty());
    for reg in regs {
        let body: rmq_proto::body::RegisterBrokerBody = from_json(&reg.body).unwrap();
        let names: Vec<&String> = body.topic_config_serialize_wrapper.topic_config_table.keys().collect();
        assert_eq!(names, before.topics.iter().collect::<Vec<_>>());
    }
    let topics_json = std::fs::read_to_string(_root.join(topics::TOPICS_PATH)).unwrap();
    assert!(!topics_json.contains("escaped") && !topics_json.contains("slash"), "{topics_json}");
}

#[test]
fn valid_names_still_pass_every_entry_point() {
    // The same requests with good names are not refused on their names, so the test above
    // proves the checks, not a broken request builder.
    let (_tmp, _root, mut h) = broker_on_disk();
    for ep in entry_points() {
        let good = match ep.role {
            Role::Topic => "T",
            Role::ConsumerGroup => "cg",
            Role::ProducerGroup => "pg",
        };
        let resp = h.call(1, (ep.build)(good));
        assert!(
            resp.code != ResponseCode::SubscriptionGroupNotExist.code()
                && !resp.remark.as_deref().unwrap_or_default().contains("specified"),
            "{}: {:?} {:?}",
            ep.what,
            resp.code,
            resp.remark
        );
    }
}

#[test]
fn send_back_for_a_group_whose_retry_topic_would_be_too_long_is_refused() {
    let (tmp, _root, mut h) = broker_on_disk();
    let before = footprint(&h, tmp.path());
    // A legal group (121 <= 255 characters) whose %RETRY% topic would be 128 > 127.
    let resp = h.call(1, send_back(&"g".repeat(121), "T", 0));
    assert_eq!(resp.code, ResponseCode::SystemError.code(), "{:?}", resp.remark);
    assert!(resp.remark.unwrap().contains("topic"), "the derived topic is what is refused");
    assert_eq!(footprint(&h, tmp.path()), before);
    // Its heartbeat is accepted (the group is legal) but creates no retry topic.
    assert_eq!(h.call(1, heartbeat_with(&"g".repeat(121), "T", "pg")).code, 0);
    assert_eq!(footprint(&h, tmp.path()).topics, before.topics);
}

#[test]
fn send_back_with_a_property_separator_in_the_origin_id_is_refused() {
    let (tmp, _root, mut h) = broker_on_disk();
    let before = footprint(&h, tmp.path());
    let mut req = send_back("cg", "T", 0);
    req.ext_fields.insert("originMsgId".into(), "id\u{2}REAL_TOPIC\u{1}../../x".into());
    assert_eq!(h.call(1, req).code, ResponseCode::InvalidParameter.code());
    assert_eq!(footprint(&h, tmp.path()), before);
}

#[test]
fn unsafe_topics_from_an_older_topics_json_are_dropped_at_open_and_never_registered() {
    let mut dir = MemDirectory::default();
    let mut table = TopicTable::default();
    table.upsert(0, rmq_proto::body::TopicConfig::new("Good", 4)).unwrap();
    let mut wrapper = table.wrapper();
    let bad = "%RETRY%../../../escaped_retry";
    wrapper.topic_config_table.insert(bad.into(), rmq_proto::body::TopicConfig::new(bad, 1));
    dir.write_file(topics::TOPICS_PATH, &to_json(&wrapper)).unwrap();
    let mut core = BrokerCore::open(dir, BrokerConfig::default(), 0).unwrap();
    core.assert_invariants();
    assert!(core.topics.get("Good").is_some());
    assert!(core.topics.get(bad).is_none());
    core.on_timer(0);
    let reg = std::iter::from_fn(|| core.poll_output()).find_map(|o| match o {
        Output::RegisterBroker(c) => Some(c),
        _ => None,
    });
    let body: rmq_proto::body::RegisterBrokerBody = from_json(&reg.unwrap().body).unwrap();
    assert!(!body.topic_config_serialize_wrapper.topic_config_table.contains_key(bad));
    let persisted = core.store.directory().read_file(topics::TOPICS_PATH).unwrap().unwrap();
    assert!(!String::from_utf8(persisted).unwrap().contains("escaped"), "topics.json was rewritten");
}

#[test]
fn a_delayed_message_with_an_unsafe_real_topic_is_not_redelivered() {
    let mut h = mem(BrokerConfig::default());
    let mut m =
        MessageExt { topic: topics::SCHEDULE_TOPIC.into(), queue_id: 0, store_timestamp: 1_000, ..Default::default() };
    m.properties.insert("REAL_TOPIC".into(), "../../escaped".into());
    m.properties.insert("REAL_QID".into(), "0".into());
    m.properties.insert("DELAY".into(), "1".into());
    h.core.store.put(&mut m).unwrap();
    h.core.note_delayed(&m);
    let topics_before: Vec<String> = h.core.topics.iter().map(|(t, _)| t.clone()).collect();
    h.advance(5_000);
    h.core.assert_invariants();
    assert_eq!(h.core.topics.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(), topics_before);
    assert!(h.core.store.queues().iter().all(|(t, _)| !t.contains("escaped")));
}

#[test]
fn a_reconsume_count_at_i32_max_saturates_instead_of_overflowing() {
    let mut h = mem(BrokerConfig { max_reconsume_times: i32::MAX, ..Default::default() });
    let mut hdr = send_header("T", 0);
    hdr.reconsume_times = Some(i32::MAX - 1);
    let resp = h.call(1, RemotingCommand::request_with(RequestCode::SendMessage, 0, &hdr).with_body(&b"x"[..]));
    assert_eq!(resp.code, 0);
    assert_eq!(h.call(1, send_back("cg", "T", 0)).code, 0, "retried with a saturated count");
}
