use super::*;
use rmq_proto::body::{from_json, to_json, ConsumerData, ConsumerIdList, HeartbeatData, SubscriptionData};
use rmq_proto::codes::pull_flag;
use rmq_proto::header::{ConsumerSendMsgBackRequestHeader, PullMessageRequestHeader, SendMessageRequestHeader};
use rmq_proto::message::{decode_messages, encode_batch, encode_properties, BatchItem, MessageExt};
use rmq_store::{MemDirectory, MmapDirectory};

struct Harness<D: Directory> {
    core: BrokerCore<D>,
    now: u64,
    next_opaque: i32,
}

fn mem(config: BrokerConfig) -> Harness<MemDirectory> {
    let mut core = BrokerCore::open(MemDirectory::default(), config, 1_000).unwrap();
    core.on_conn_opened(1_000, ConnId(1), "127.0.0.1:40000".parse().unwrap());
    core.on_conn_opened(1_000, ConnId(2), "127.0.0.1:40001".parse().unwrap());
    Harness { core, now: 1_000, next_opaque: 1 }
}

fn send_header(topic: &str, queue_id: i32) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        ..Default::default()
    }
}

fn pull_header(topic: &str, queue_id: i32, offset: i64, sys_flag: i32) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "cg".into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag,
        commit_offset: 0,
        suspend_timeout_millis: 15_000,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        broker_name: None,
    }
}

impl<D: Directory> Harness<D> {
    fn request(&mut self, conn: u64, mut req: RemotingCommand) -> i32 {
        let opaque = self.next_opaque;
        req.opaque = opaque;
        self.next_opaque += 1;
        self.core.on_request(self.now, ConnId(conn), req);
        self.core.assert_invariants();
        opaque
    }

    /// Drains outputs, performing flushes at once (a real disk).
    fn drain(&mut self) -> Vec<(ConnId, RemotingCommand)> {
        let mut sent = Vec::new();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Transmit { conn, cmd } => sent.push((conn, cmd)),
                Output::Flush => {
                    let off = self.core.flush_store().unwrap();
                    self.core.on_flushed(self.now, off);
                }
                Output::Checkpoint => {
                    let mut p = self.core.begin_checkpoint().unwrap();
                    for job in std::mem::take(&mut p.jobs) {
                        job.run().unwrap();
                    }
                    self.core.on_checkpointed(self.now, &p, true);
                }
                Output::RegisterBroker(_) => {}
                other => panic!("a broker without slaves asked for {other:?}"),
            }
        }
        sent
    }

    fn call(&mut self, conn: u64, req: RemotingCommand) -> RemotingCommand {
        let opaque = self.request(conn, req);
        let out = self.drain();
        out.into_iter().map(|(_, c)| c).find(|c| c.opaque == opaque && c.is_response()).expect("a response")
    }

    fn send(&mut self, topic: &str, queue_id: i32, body: &str) -> RemotingCommand {
        let mut req = RemotingCommand::request(RequestCode::SendMessageV2, 0).with_body(body.as_bytes().to_vec());
        req.ext_fields = send_header(topic, queue_id).to_ext_v2();
        self.call(1, req)
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.core.on_timer(self.now);
    }
}

/// A temp dir and a config with small segments, for restart tests on real files.
fn small_mmap_store() -> (tempfile::TempDir, BrokerConfig) {
    let mut config = BrokerConfig::default();
    config.store.commit_log_segment_bytes = 1 << 20;
    config.store.consume_queue_segment_entries = 1_000;
    // The temp dir is on the host's disk: how full that is must not refuse sends or delete
    // segments here (tests of that policy set their own ratios).
    (config.disk_warning_level_ratio, config.disk_clean_forcibly_ratio) = (100, 100);
    (tempfile::tempdir().unwrap(), config)
}

#[test]
fn sync_flush_answers_only_after_the_reported_flush() {
    let mut h = mem(BrokerConfig { flush_disk_type: FlushDiskType::SyncFlush, ..Default::default() });
    let req = RemotingCommand::request_with(RequestCode::SendMessage, 7, &send_header("T", 0)).with_body(&b"x"[..]);
    h.core.on_request(h.now, ConnId(1), req);
    let mut flushes = 0;
    while let Some(o) = h.core.poll_output() {
        match o {
            Output::Flush => flushes += 1,
            Output::Transmit { .. } => panic!("SYNC_FLUSH answered before any flush was reported"),
            _ => {}
        }
    }
    assert_eq!(flushes, 1);
    // A flush report that does not cover the message releases nothing.
    h.core.on_flushed(h.now, 0);
    assert!(!std::iter::from_fn(|| h.core.poll_output()).any(|o| matches!(o, Output::Transmit { .. })));
    let off = h.core.flush_store().unwrap();
    h.core.on_flushed(h.now, off);
    let resp = h.drain().into_iter().find(|(_, c)| c.opaque == 7).unwrap().1;
    assert_eq!(resp.code, 0);
    assert_eq!(resp.ext("queueOffset"), Some("0"));
}

#[test]
fn unflushed_sync_send_times_out_as_flush_disk_timeout() {
    let mut h = mem(BrokerConfig { flush_disk_type: FlushDiskType::SyncFlush, ..Default::default() });
    let req = RemotingCommand::request_with(RequestCode::SendMessage, 9, &send_header("T", 0)).with_body(&b"x"[..]);
    h.core.on_request(h.now, ConnId(1), req);
    while h.core.poll_output().is_some() {} // the flush is never performed
    h.now += 5_001;
    h.core.on_timer(h.now);
    let outs: Vec<Output> = std::iter::from_fn(|| h.core.poll_output()).collect();
    let resp = outs.iter().find_map(|o| match o {
        Output::Transmit { cmd, .. } if cmd.opaque == 9 => Some(cmd),
        _ => None,
    });
    assert_eq!(resp.unwrap().code, ResponseCode::FlushDiskTimeout.code());
}

#[test]
fn async_flush_answers_at_once_and_flushes_on_the_interval() {
    let mut h = mem(BrokerConfig::default());
    assert_eq!(h.send("T", 1, "a").code, 0);
    h.now += 600;
    h.core.on_timer(h.now);
    assert!(std::iter::from_fn(|| h.core.poll_output()).any(|o| o == Output::Flush));
}

#[test]
fn sent_messages_are_pulled_in_order_with_dense_offsets() {
    let mut h = mem(BrokerConfig::default());
    for i in 0..5 {
        let r = h.send("T", 2, &format!("m{i}"));
        assert_eq!(r.ext("queueOffset"), Some(i.to_string().as_str()));
        assert_eq!(r.ext("queueId"), Some("2"));
    }
    let resp = h.call(2, RemotingCommand::request_with(RequestCode::PullMessage, 0, &pull_header("T", 2, 0, 0)));
    assert_eq!(resp.code, 0);
    let msgs = decode_messages(&resp.body).unwrap();
    assert_eq!(
        msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3", "m4"]
    );
    assert!(msgs.iter().enumerate().all(|(i, m)| m.queue_offset == i as i64));
    assert_eq!(resp.ext("nextBeginOffset"), Some("5"));
}

#[test]
fn long_poll_is_held_then_woken_by_a_send() {
    let mut h = mem(BrokerConfig::default());
    h.send("T", 0, "first");
    let pull = RemotingCommand::request_with(RequestCode::PullMessage, 0, &pull_header("T", 0, 1, pull_flag::SUSPEND));
    let opaque = h.request(2, pull);
    assert!(h.drain().iter().all(|(_, c)| c.opaque != opaque), "nothing to return yet: the pull is held");
    let req =
        RemotingCommand::request_with(RequestCode::SendMessage, 0, &send_header("T", 0)).with_body(&b"second"[..]);
    h.core.on_request(h.now, ConnId(1), req);
    let out = h.drain();
    let (_, resp) =
        out.iter().find(|(c, r)| *c == ConnId(2) && r.opaque == opaque).expect("held pull answered on arrival");
    assert_eq!(decode_messages(&resp.body).unwrap()[0].body.as_ref(), b"second");
}

#[test]
fn held_pull_expires_with_pull_not_found() {
    let mut h = mem(BrokerConfig::default());
    h.send("T", 0, "only");
    let mut hdr = pull_header("T", 0, 1, pull_flag::SUSPEND);
    hdr.suspend_timeout_millis = 2_000;
    let opaque = h.request(2, RemotingCommand::request_with(RequestCode::PullMessage, 0, &hdr));
    h.advance(1_000);
    assert!(h.drain().iter().all(|(_, c)| c.opaque != opaque));
    h.advance(1_001);
    let out = h.drain();
    let resp = out.iter().find(|(_, c)| c.opaque == opaque).expect("answered at the deadline");
    assert_eq!(resp.1.code, ResponseCode::PullNotFound.code());
}

#[test]
fn topics_need_creating_when_auto_create_is_off() {
    let mut h = mem(BrokerConfig { auto_create_topic_enable: false, ..Default::default() });
    assert_eq!(h.send("Nope", 0, "x").code, ResponseCode::TopicNotExist.code());
    let create = rmq_proto::header::CreateTopicRequestHeader {
        topic: "Yes".into(),
        default_topic: "TBW102".into(),
        read_queue_nums: 2,
        write_queue_nums: 2,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: None,
        order: false,
    };
    assert_eq!(h.call(1, RemotingCommand::request_with(RequestCode::UpdateAndCreateTopic, 0, &create)).code, 0);
    assert_eq!(h.send("Yes", 1, "x").code, 0);
    // TopicValidator.validateTopic answers SYSTEM_ERROR.
    assert_eq!(h.send("bad topic!", 0, "x").code, ResponseCode::SystemError.code());
}

fn heartbeat(client: &str, group: &str) -> RemotingCommand {
    let hb = HeartbeatData {
        client_id: client.into(),
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            consume_type: "CONSUME_PASSIVELY".into(),
            message_model: "CLUSTERING".into(),
            consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
            subscription_data_set: vec![SubscriptionData::tag("T", "*")],
            unit_mode: false,
        }],
        ..Default::default()
    };
    RemotingCommand::request(RequestCode::HeartBeat, 0).with_body(to_json(&hb))
}

#[test]
fn group_membership_is_tracked_and_members_are_notified() {
    let mut h = mem(BrokerConfig::default());
    assert_eq!(h.call(1, heartbeat("c1", "G")).code, 0);
    assert!(h.core.topics.get("%RETRY%G").is_some(), "retry topic auto-created");
    h.request(2, heartbeat("c2", "G"));
    let out = h.drain();
    let notified: Vec<ConnId> =
        out.iter().filter(|(_, c)| c.code == RequestCode::NotifyConsumerIdsChanged.code()).map(|(c, _)| *c).collect();
    assert_eq!(notified, vec![ConnId(1), ConnId(2)]);
    let req = RemotingCommand::request(RequestCode::GetConsumerListByGroup, 0).with_ext("consumerGroup", "G");
    let list: ConsumerIdList = from_json(&h.call(1, req.clone()).body).unwrap();
    assert_eq!(list.consumer_id_list, vec!["c1", "c2"]);
    h.core.on_conn_closed(h.now, ConnId(2));
    let list: ConsumerIdList = from_json(&h.call(1, req).body).unwrap();
    assert_eq!(list.consumer_id_list, vec!["c1"], "a closed connection leaves the group");
}

#[test]
fn consumer_offsets_start_at_zero_and_only_move_forward() {
    let mut h = mem(BrokerConfig::default());
    for i in 0..3 {
        h.send("T", 0, &format!("{i}"));
    }
    let q = RemotingCommand::request(RequestCode::QueryConsumerOffset, 0)
        .with_ext("consumerGroup", "G")
        .with_ext("topic", "T")
        .with_ext("queueId", 0);
    assert_eq!(h.call(1, q.clone()).ext("offset"), Some("0"), "a new group starts at 0 on a queue that starts at 0");
    let upd = |o: i64| {
        RemotingCommand::request(RequestCode::UpdateConsumerOffset, 0)
            .with_ext("consumerGroup", "G")
            .with_ext("topic", "T")
            .with_ext("queueId", 0)
            .with_ext("commitOffset", o)
    };
    assert_eq!(h.call(1, upd(2)).code, 0);
    assert_eq!(h.call(1, upd(2)).code, 0, "committing the same offset again is fine");
    let back = h.call(1, upd(1));
    assert_eq!(back.code, 1, "a backward commit is refused, not answered SUCCESS and dropped");
    assert!(back.remark.as_deref().unwrap_or_default().contains("behind"), "{:?}", back.remark);
    assert_eq!(h.call(1, q.clone()).ext("offset"), Some("2"));
    let beyond = h.call(1, upd(99));
    assert_eq!(beyond.code, 1, "a commit past the queue's end comes from a stale position");
    assert_eq!(h.call(1, q.clone()).ext("offset"), Some("2"), "neither capped nor applied");
    assert_eq!(h.call(1, upd(3)).code, 0, "committing up to the queue's end is fine");
    assert_eq!(h.call(1, q).ext("offset"), Some("3"));
}

#[test]
fn failed_messages_retry_with_delay_then_dead_letter() {
    let mut h = mem(BrokerConfig { max_reconsume_times: 1, ..Default::default() });
    h.send("T", 0, "payload");
    let stored: MessageExt = h.core.store.read_message(0).unwrap();
    let back = |offset: i64| {
        let hdr = ConsumerSendMsgBackRequestHeader {
            offset,
            group: "G".into(),
            delay_level: 0,
            origin_msg_id: None,
            origin_topic: Some("T".into()),
            max_reconsume_times: None,
        };
        RemotingCommand::request_with(RequestCode::ConsumerSendMsgBack, 0, &hdr)
    };
    assert_eq!(h.call(1, back(stored.commit_log_offset)).code, 0);
    assert_eq!(h.core.store.max_queue_offset("%RETRY%G", 0), 0, "delayed, not yet visible");
    h.advance(9_000);
    assert_eq!(h.core.store.max_queue_offset("%RETRY%G", 0), 0, "level 3 waits 10 s");
    h.advance(1_100);
    assert_eq!(h.core.store.max_queue_offset("%RETRY%G", 0), 1, "delivered after 10 s");
    let retry = h.core.store.get_messages("%RETRY%G", 0, 0, 1, u32::MAX, &|_| true);
    let (m, _) = rmq_proto::message::decode_message(&retry.messages[0], true).unwrap();
    assert_eq!(m.reconsume_times, 1);
    assert_eq!(m.properties.get("RETRY_TOPIC").map(String::as_str), Some("T"));
    assert_eq!(h.call(1, back(m.commit_log_offset)).code, 0);
    assert_eq!(h.core.store.max_queue_offset("%DLQ%G", 0), 1, "spent retries go to the DLQ at once");
}

#[test]
fn batches_store_every_message() {
    let mut h = mem(BrokerConfig::default());
    let items: Vec<BatchItem> = (0..10)
        .map(|i| BatchItem { flag: 0, body: format!("b{i}").into_bytes().into(), properties: Default::default() })
        .collect();
    let mut hdr = send_header("T", 3);
    hdr.batch = Some(true);
    let mut req = RemotingCommand::request(RequestCode::SendBatchMessage, 0).with_body(encode_batch(&items));
    req.ext_fields = hdr.to_ext_v2();
    let resp = h.call(1, req);
    assert_eq!(resp.code, 0);
    assert_eq!(resp.ext("msgId").unwrap().split(',').count(), 10);
    assert_eq!(h.core.store.max_queue_offset("T", 3), 10);
}

#[test]
fn bad_requests_get_error_codes() {
    let mut h = mem(BrokerConfig::default());
    let missing = RemotingCommand::request(RequestCode::SendMessage, 0).with_ext("topic", "T");
    assert_eq!(h.call(1, missing).code, ResponseCode::InvalidParameter.code());
    assert_eq!(h.call(1, RemotingCommand::request(12345, 0)).code, ResponseCode::RequestCodeNotSupported.code());
    let big = RemotingCommand::request_with(RequestCode::SendMessage, 0, &send_header("T", 0)).with_body(vec![
        0u8;
        4 * 1024 * 1024
            + 1
    ]);
    assert_eq!(h.call(1, big).code, ResponseCode::MessageIllegal.code());
    let hb = RemotingCommand::request(RequestCode::HeartBeat, 0).with_body(&b"{{{"[..]);
    assert_eq!(h.call(1, hb).code, ResponseCode::InvalidParameter.code());
    let mut bad_batch =
        RemotingCommand::request(RequestCode::SendBatchMessage, 0).with_body(&b"\x00\x00\x00\x05zz"[..]);
    bad_batch.ext_fields = send_header("T", 0).to_ext_v2();
    assert_eq!(h.call(1, bad_batch).code, ResponseCode::MessageIllegal.code());
    let props = encode_properties(&[("TAGS".to_string(), "x".repeat(40_000))].into_iter().collect());
    let mut hdr = send_header("T", 0);
    hdr.properties = Some(props);
    assert_eq!(
        h.call(1, RemotingCommand::request_with(RequestCode::SendMessage, 0, &hdr)).code,
        ResponseCode::MessageIllegal.code()
    );
}

#[test]
fn slaves_refuse_writes() {
    let mut h = mem(BrokerConfig { broker_role: BrokerRole::Slave, broker_id: 1, ..Default::default() });
    assert_eq!(h.send("T", 0, "x").code, ResponseCode::ServiceNotAvailable.code());
}

#[test]
fn topics_offsets_and_messages_survive_a_clean_restart() {
    let (dir, config) = small_mmap_store();
    let root = || MmapDirectory::new(dir.path());
    {
        let mut core = BrokerCore::open(root(), config.clone(), 0).unwrap();
        let mut h = Harness {
            core: {
                core.on_conn_opened(0, ConnId(1), "127.0.0.1:1".parse().unwrap());
                core
            },
            now: 0,
            next_opaque: 1,
        };
        for i in 0..20 {
            h.send("Persist", 1, &format!("m{i}"));
        }
        h.call(
            1,
            RemotingCommand::request(RequestCode::UpdateConsumerOffset, 0)
                .with_ext("consumerGroup", "G")
                .with_ext("topic", "Persist")
                .with_ext("queueId", 1)
                .with_ext("commitOffset", 7),
        );
        h.core.shutdown(h.now).unwrap();
    }
    let core = BrokerCore::open(root(), config, 10).unwrap();
    assert!(core.topics.get("Persist").is_some());
    assert_eq!(core.offsets.get("G", "Persist", 1), Some(7));
    assert_eq!(core.store.max_queue_offset("Persist", 1), 20);
}

#[test]
fn registration_carries_the_topic_table() {
    let mut h = mem(BrokerConfig::default());
    h.send("Reg", 0, "x");
    h.advance(200);
    let reg = std::iter::from_fn(|| h.core.poll_output()).find_map(|o| match o {
        Output::RegisterBroker(c) => Some(c),
        _ => None,
    });
    let reg = reg.expect("a registration follows topic creation");
    let body: rmq_proto::body::RegisterBrokerBody = from_json(&reg.body).unwrap();
    assert!(body.topic_config_serialize_wrapper.topic_config_table.contains_key("Reg"));
    assert_eq!(reg.ext("bodyCrc32"), Some((crc32fast::hash(&reg.body) as i32).to_string().as_str()));
}

#[test]
fn topics_with_data_but_no_persisted_config_are_restored() {
    let (dir, config) = small_mmap_store();
    let root = || MmapDirectory::new(dir.path());
    {
        let mut core = BrokerCore::open(root(), config.clone(), 0).unwrap();
        core.on_conn_opened(0, ConnId(1), "127.0.0.1:1".parse().unwrap());
        let mut h = Harness { core, now: 0, next_opaque: 1 };
        h.send("Unpersisted", 2, "m");
        // Crash before the coalesced topic persist: only the store is flushed.
        h.core.flush_store().unwrap();
    }
    let core = BrokerCore::open(root(), config, 10).unwrap();
    let tc = core.topics.get("Unpersisted").expect("restored from its ConsumeQueue");
    assert_eq!(tc.read_queue_nums, 3);
    assert_eq!(core.store.max_queue_offset("Unpersisted", 2), 1);
}

#[test]
fn persisted_consumer_offsets_are_capped_at_the_recovered_queue_end() {
    let (dir, config) = small_mmap_store();
    let root = || MmapDirectory::new(dir.path());
    {
        let mut core = BrokerCore::open(root(), config.clone(), 0).unwrap();
        core.on_conn_opened(0, ConnId(1), "127.0.0.1:1".parse().unwrap());
        let mut h = Harness { core, now: 0, next_opaque: 1 };
        for i in 0..5 {
            h.send("Cap", 0, &format!("m{i}"));
        }
        h.core.shutdown(0).unwrap();
    }
    // The group's file says 40: more than the queue holds (as after losing an unflushed tail).
    let mut offsets = ConsumerOffsets::default();
    offsets.reset("G", "Cap", 0, 40);
    offsets.persist(&mut root()).unwrap();
    let core = BrokerCore::open(root(), config, 10).unwrap();
    assert_eq!(core.offsets.get("G", "Cap", 0), Some(5), "a group never points past the queue end");
}

#[test]
fn a_second_flush_overlaps_the_first_and_acks_wait_for_a_covering_report() {
    let mut h = mem(BrokerConfig { flush_disk_type: FlushDiskType::SyncFlush, ..Default::default() });
    let send = |h: &mut Harness<MemDirectory>, opaque: i32, body: &'static [u8]| {
        let req = RemotingCommand::request_with(RequestCode::SendMessage, opaque, &send_header("T", 0)).with_body(body);
        h.core.on_request(h.now, ConnId(1), req);
        let outs: Vec<Output> = std::iter::from_fn(|| h.core.poll_output()).collect();
        assert!(outs.iter().all(|o| !matches!(o, Output::Transmit { .. })), "no answer before a covering flush");
        outs.iter().filter(|o| **o == Output::Flush).count()
    };
    assert_eq!(send(&mut h, 1, b"a"), 1);
    let first = h.core.begin_flush().unwrap().target;
    assert_eq!(send(&mut h, 2, b"b"), 1, "new data while a flush runs starts a second one");
    let second = h.core.begin_flush().unwrap().target;
    assert_eq!(send(&mut h, 3, b"c"), 0, "at most two flushes in flight");
    // The second flush reports first: it covers a and b, not c.
    h.core.on_flushed(h.now, second);
    let outs: Vec<Output> = std::iter::from_fn(|| h.core.poll_output()).collect();
    let answered: Vec<i32> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { cmd, .. } => Some(cmd.opaque),
            _ => None,
        })
        .collect();
    assert_eq!(answered, vec![1, 2]);
    assert!(outs.contains(&Output::Flush), "c's data gets its own flush");
    // The stale first report changes nothing.
    h.core.on_flushed(h.now, first);
    assert!(std::iter::from_fn(|| h.core.poll_output()).all(|o| !matches!(o, Output::Transmit { .. })));
    let third = h.core.flush_store().unwrap();
    h.core.on_flushed(h.now, third);
    let last: Vec<i32> = std::iter::from_fn(|| h.core.poll_output())
        .filter_map(|o| match o {
            Output::Transmit { cmd, .. } => Some(cmd.opaque),
            _ => None,
        })
        .collect();
    assert_eq!(last, vec![3]);
    h.core.assert_invariants();
}

mod acl;
mod names;
mod transaction;

// ---- replication ----

/// The slave's HA connection as the master numbers it.
const HA_CONN: ConnId = ConnId(77);

/// A master and a slave core wired through their HA outputs, as the drivers would.
struct Replica {
    master: BrokerCore<MemDirectory>,
    slave: BrokerCore<MemDirectory>,
    now: u64,
    /// The HA link carries bytes (cutting it models a partition or a dead slave).
    linked: bool,
    /// Answers the master sent to clients.
    answers: Vec<RemotingCommand>,
}

fn replica(role: BrokerRole, master_flush: FlushDiskType, slave_flush: FlushDiskType) -> Replica {
    let master = BrokerCore::open(
        MemDirectory::default(),
        BrokerConfig { broker_role: role, flush_disk_type: master_flush, ..Default::default() },
        1_000,
    )
    .unwrap();
    let slave_config = BrokerConfig {
        broker_role: BrokerRole::Slave,
        broker_id: 1,
        flush_disk_type: slave_flush,
        ha_master_addr: Some("127.0.0.1:10912".into()),
        ..Default::default()
    };
    let slave = BrokerCore::open(MemDirectory::default(), slave_config, 1_000).unwrap();
    let mut r = Replica { master, slave, now: 1_000, linked: false, answers: Vec::new() };
    r.master.on_conn_opened(r.now, ConnId(1), "127.0.0.1:40000".parse().unwrap());
    r.slave.on_conn_opened(r.now, ConnId(1), "127.0.0.1:40000".parse().unwrap());
    r
}

impl Replica {
    /// The slave's timer asks to connect; the link comes up.
    fn attach(&mut self) {
        self.slave.on_timer(self.now);
        self.linked = true;
        self.settle();
    }

    /// Moves outputs between the two until neither has any.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(o) = self.master.poll_output() {
                moved = true;
                match o {
                    Output::Transmit { cmd, .. } => self.answers.push(cmd),
                    Output::Flush => {
                        let off = self.master.flush_store().unwrap();
                        self.master.on_flushed(self.now, off);
                    }
                    Output::HaTransmit { conn, offset, bytes } if self.linked => {
                        assert_eq!(conn, HA_CONN);
                        self.slave.on_ha_master_data(self.now, offset, &bytes);
                    }
                    Output::HaClose { .. } => {
                        self.linked = false;
                        self.master.on_ha_slave_closed(self.now, HA_CONN);
                        self.slave.on_ha_master_closed(self.now);
                    }
                    _ => {}
                }
            }
            while let Some(o) = self.slave.poll_output() {
                moved = true;
                match o {
                    Output::HaConnect { .. } => {
                        self.master.on_ha_slave_opened(self.now, HA_CONN);
                        self.slave.on_ha_master_connected(self.now);
                    }
                    Output::HaReport { offset } if self.linked => {
                        self.master.on_ha_slave_report(self.now, HA_CONN, offset)
                    }
                    Output::Flush => {
                        let off = self.slave.flush_store().unwrap();
                        self.slave.on_flushed(self.now, off);
                    }
                    _ => {}
                }
            }
            self.master.assert_invariants();
            self.slave.assert_invariants();
            if !moved {
                return;
            }
        }
        panic!("the pair never settled");
    }

    fn send(&mut self, opaque: i32, body: &str) {
        let mut req = RemotingCommand::request(RequestCode::SendMessageV2, opaque).with_body(body.as_bytes().to_vec());
        req.ext_fields = send_header("T", 0).to_ext_v2();
        self.master.on_request(self.now, ConnId(1), req);
    }

    fn answer(&self, opaque: i32) -> Option<&RemotingCommand> {
        self.answers.iter().find(|c| c.opaque == opaque)
    }

    fn slave_bodies(&mut self) -> Vec<String> {
        let req = RemotingCommand::request_with(RequestCode::PullMessage, 999, &pull_header("T", 0, 0, 0));
        self.slave.on_request(self.now, ConnId(1), req);
        let resp = std::iter::from_fn(|| self.slave.poll_output())
            .find_map(|o| match o {
                Output::Transmit { cmd, .. } if cmd.opaque == 999 => Some(cmd),
                _ => None,
            })
            .expect("the slave answers pulls");
        if resp.code != 0 {
            return Vec::new();
        }
        decode_messages(&resp.body).unwrap().iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
    }
}

#[test]
fn sync_master_answers_only_once_the_slave_reported_the_message() {
    let mut r = replica(BrokerRole::SyncMaster, FlushDiskType::AsyncFlush, FlushDiskType::AsyncFlush);
    r.attach();
    r.linked = false; // Hold the bytes back: the answer must wait.
    r.send(1, "m0");
    r.settle();
    assert!(r.answer(1).is_none(), "SYNC_MASTER answered before any slave had the message");
    r.linked = true;
    r.master.on_timer(r.now); // the master re-streams what the slave has not acknowledged
    r.settle();
    assert!(r.answer(1).is_none(), "bytes streamed while the link was down were lost, not re-sent");
    // The lost transfer is noticed on the next report (heartbeat) and streaming resumes there.
    r.now += 5_000;
    r.master.on_ha_slave_closed(r.now, HA_CONN);
    r.slave.on_ha_master_closed(r.now);
    r.now += 1_000;
    r.slave.on_timer(r.now);
    r.settle();
    assert_eq!(r.answer(1).map(|a| a.code), Some(0));
    for i in 2..20 {
        r.send(i, &format!("m{i}"));
        r.settle();
        assert_eq!(r.answer(i).map(|a| a.code), Some(0), "send {i}");
    }
    assert_eq!(r.slave_bodies().len(), 19, "every acknowledged message is on the slave");
}

#[test]
fn sync_master_without_a_slave_stores_and_answers_slave_not_available() {
    let mut r = replica(BrokerRole::SyncMaster, FlushDiskType::SyncFlush, FlushDiskType::AsyncFlush);
    r.send(1, "alone");
    r.settle();
    let a = r.answer(1).expect("answered at once");
    assert_eq!(a.code, ResponseCode::SlaveNotAvailable.code(), "{:?}", a.remark);
    assert!(r.master.store().commit_log_max_offset() > 0, "the message is stored on the master");
}

#[test]
fn sync_master_whose_slave_stops_answering_times_out_as_flush_slave_timeout() {
    let mut r = replica(BrokerRole::SyncMaster, FlushDiskType::AsyncFlush, FlushDiskType::AsyncFlush);
    r.attach();
    r.linked = false;
    r.send(1, "m");
    r.settle();
    r.now += 4_999;
    r.master.on_timer(r.now);
    r.settle();
    assert!(r.answer(1).is_none());
    r.now += 1;
    r.master.on_timer(r.now);
    r.settle();
    assert_eq!(r.answer(1).map(|a| a.code), Some(ResponseCode::FlushSlaveTimeout.code()));
}

#[test]
fn a_sync_flush_slave_reports_only_what_it_flushed() {
    let mut r = replica(BrokerRole::SyncMaster, FlushDiskType::SyncFlush, FlushDiskType::SyncFlush);
    r.attach();
    r.send(1, "m");
    // Step by hand: the master's transfer reaches the slave, which asks for a flush before it
    // reports anything.
    let mut transfers = Vec::new();
    while let Some(o) = r.master.poll_output() {
        match o {
            Output::Flush => {
                let off = r.master.flush_store().unwrap();
                r.master.on_flushed(r.now, off);
            }
            Output::HaTransmit { offset, bytes, .. } => transfers.push((offset, bytes)),
            _ => {}
        }
    }
    assert!(!transfers.is_empty());
    for (offset, bytes) in transfers {
        r.slave.on_ha_master_data(r.now, offset, &bytes);
    }
    let outs: Vec<Output> = std::iter::from_fn(|| r.slave.poll_output()).collect();
    assert!(outs.contains(&Output::Flush), "{outs:?}");
    assert!(!outs.iter().any(|o| matches!(o, Output::HaReport { offset } if *offset > 0)), "reported before flushing");
    let off = r.slave.flush_store().unwrap();
    r.slave.on_flushed(r.now, off);
    assert!(std::iter::from_fn(|| r.slave.poll_output()).any(|o| o == Output::HaReport { offset: off }));
}

/// Opens a master over `root`, sends `bodies` to topic T queue 0, lets a slave catch up, and
/// shuts it down cleanly; returns the CommitLog end.
fn master_with(root: MmapDirectory, config: &BrokerConfig, bodies: &[&str]) -> u64 {
    let mut core = BrokerCore::open(root, config.clone(), 0).unwrap();
    core.on_conn_opened(0, ConnId(1), "127.0.0.1:1".parse().unwrap());
    for (i, b) in bodies.iter().enumerate() {
        let mut req = RemotingCommand::request(RequestCode::SendMessageV2, i as i32).with_body(b.as_bytes().to_vec());
        req.ext_fields = send_header("T", 0).to_ext_v2();
        core.on_request(0, ConnId(1), req);
        while core.poll_output().is_some() {}
    }
    // A slave caught up in this life: the next life's history floor is its end at open.
    let end = core.store().commit_log_max_offset();
    core.on_ha_slave_opened(0, HA_CONN);
    core.on_ha_slave_report(0, HA_CONN, 0);
    core.on_ha_slave_report(0, HA_CONN, end);
    core.on_ha_slave_closed(0, HA_CONN);
    core.shutdown(0).unwrap()
}

/// Every output, with flushes run and reported in place.
fn drain(core: &mut BrokerCore<MmapDirectory>) -> Vec<Output> {
    let mut outs = Vec::new();
    while let Some(o) = core.poll_output() {
        if o == Output::Flush {
            let off = core.flush_store().unwrap();
            core.on_flushed(0, off);
        }
        outs.push(o);
    }
    outs
}

fn send_to(core: &mut BrokerCore<MmapDirectory>, now: u64, opaque: i32, body: &str) {
    let mut req = RemotingCommand::request(RequestCode::SendMessageV2, opaque).with_body(body.as_bytes().to_vec());
    req.ext_fields = send_header("T", 0).to_ext_v2();
    core.on_request(now, ConnId(1), req);
}

fn answered(outs: &[Output], opaque: i32) -> Option<i32> {
    outs.iter().find_map(|o| match o {
        Output::Transmit { cmd, .. } if cmd.opaque == opaque && cmd.is_response() => Some(cmd.code),
        _ => None,
    })
}

#[test]
fn a_restarted_master_cuts_back_a_slave_holding_its_lost_tail_and_ignores_stale_reports() {
    let (dir, mut config) = small_mmap_store();
    config.broker_role = BrokerRole::SyncMaster;
    config.flush_disk_type = FlushDiskType::SyncFlush;
    let end = master_with(MmapDirectory::new(dir.path()), &config, &["a0", "a1"]);
    let mut m = BrokerCore::open(MmapDirectory::new(dir.path()), config, 10).unwrap();
    m.on_conn_opened(10, ConnId(1), "127.0.0.1:1".parse().unwrap());
    m.on_ha_slave_opened(10, HA_CONN);
    // The slave received 500 bytes this master lost: it is told to cut back to the end at open.
    m.on_ha_slave_report(10, HA_CONN, end + 500);
    let outs = drain(&mut m);
    assert!(
        outs.iter().any(|o| matches!(o, Output::HaTransmit { conn, offset, bytes } if *conn == HA_CONN && *offset == end && bytes.is_empty())),
        "{outs:?}"
    );
    send_to(&mut m, 11, 7, "new");
    let outs = drain(&mut m);
    assert_eq!(answered(&outs, 7), None, "held for the slave");
    // A report the slave sent before it cut its log acknowledges nothing of the new history.
    m.on_ha_slave_report(12, HA_CONN, end + 500);
    assert_eq!(answered(&drain(&mut m), 7), None, "a stale report released a SYNC_MASTER send");
    m.on_ha_slave_report(13, HA_CONN, end);
    let written = m.store().commit_log_max_offset();
    m.on_ha_slave_report(14, HA_CONN, written);
    assert_eq!(answered(&drain(&mut m), 7), Some(0));
}

#[test]
fn a_slave_cuts_its_log_back_to_the_masters_end_and_answers_parked_readers() {
    let mut r = replica(BrokerRole::AsyncMaster, FlushDiskType::AsyncFlush, FlushDiskType::AsyncFlush);
    for i in 0..4 {
        r.send(i, &format!("m{i}"));
    }
    r.attach();
    assert_eq!(r.slave_bodies().len(), 4);
    // A consumer parks at the slave's queue end.
    let req = RemotingCommand::request_with(
        RequestCode::PullMessage,
        500,
        &pull_header("T", 0, 4, rmq_proto::codes::pull_flag::SUSPEND),
    );
    r.slave.on_request(r.now, ConnId(1), req);
    assert!(!std::iter::from_fn(|| r.slave.poll_output())
        .any(|o| matches!(o, Output::Transmit { cmd, .. } if cmd.opaque == 500)));
    // The master's log ended two records earlier: a heartbeat there cuts the slave back.
    let third = r.master.store().get_messages("T", 0, 2, 1, u32::MAX, &|_| true);
    let cut = rmq_proto::message::decode_message(&third.messages[0], true).unwrap().0.commit_log_offset as u64;
    r.slave.on_ha_master_data(r.now, cut, &[]);
    assert_eq!(r.slave.store().commit_log_max_offset(), cut);
    assert_eq!(r.slave.store().max_queue_offset("T", 0), 2);
    let outs: Vec<Output> = std::iter::from_fn(|| r.slave.poll_output()).collect();
    let parked = outs.iter().find_map(|o| match o {
        Output::Transmit { cmd, .. } if cmd.opaque == 500 => Some(cmd.clone()),
        _ => None,
    });
    let parked = parked.expect("the parked reader is answered at once");
    assert_eq!(parked.code, ResponseCode::PullOffsetMoved.code(), "{parked:?}");
    let next: u64 = parked.ext("nextBeginOffset").unwrap().parse().unwrap();
    assert!(next <= 2, "the reader is moved back inside the cut log (redelivery, never a skip): {parked:?}");
    assert!(outs.contains(&Output::HaReport { offset: cut }), "{outs:?}");
    assert_eq!(r.slave_bodies(), ["m0", "m1"]);
}

#[test]
fn a_slave_cut_back_lowers_group_offsets_that_pointed_into_the_cut_tail() {
    // Found by the madsim lane (replica-crash-churn seed 6): a group committed offset 5 on the
    // slave while the master was down; the master came back without that tail, the slave was
    // cut back to it, new messages reused offset 4, and a consumer resuming from 5 skipped it.
    let mut r = replica(BrokerRole::AsyncMaster, FlushDiskType::AsyncFlush, FlushDiskType::AsyncFlush);
    for i in 0..4 {
        r.send(i, &format!("m{i}"));
    }
    r.attach();
    let commit = RemotingCommand::request(RequestCode::UpdateConsumerOffset, 700)
        .with_ext("consumerGroup", "G")
        .with_ext("topic", "T")
        .with_ext("queueId", 0)
        .with_ext("commitOffset", 4);
    r.slave.on_request(r.now, ConnId(1), commit);
    let query = || {
        RemotingCommand::request(RequestCode::QueryConsumerOffset, 701)
            .with_ext("consumerGroup", "G")
            .with_ext("topic", "T")
            .with_ext("queueId", 0)
    };
    let offset_now = |r: &mut Replica| {
        r.slave.on_request(r.now, ConnId(1), query());
        std::iter::from_fn(|| r.slave.poll_output())
            .find_map(|o| match o {
                Output::Transmit { cmd, .. } if cmd.opaque == 701 => cmd.ext("offset").map(str::to_string),
                _ => None,
            })
            .expect("the query is answered")
    };
    assert_eq!(offset_now(&mut r), "4");
    let third = r.master.store().get_messages("T", 0, 2, 1, u32::MAX, &|_| true);
    let cut = rmq_proto::message::decode_message(&third.messages[0], true).unwrap().0.commit_log_offset as u64;
    r.slave.on_ha_master_data(r.now, cut, &[]);
    assert_eq!(r.slave.store().max_queue_offset("T", 0), 2);
    assert_eq!(offset_now(&mut r), "2", "lowered to the queue's new end: redelivery, never a skip");
}

#[test]
fn an_empty_master_fences_itself_against_a_slave_that_holds_more() {
    let (dir, mut config) = small_mmap_store();
    config.broker_role = BrokerRole::SyncMaster;
    let mut m = BrokerCore::open(MmapDirectory::new(dir.path()), config.clone(), 10).unwrap();
    m.on_conn_opened(10, ConnId(1), "127.0.0.1:1".parse().unwrap());
    m.on_ha_slave_opened(10, HA_CONN);
    m.on_ha_slave_report(10, HA_CONN, 4_096);
    let outs = drain(&mut m);
    assert!(outs.iter().any(|o| matches!(o, Output::HaClose { conn, .. } if *conn == HA_CONN)), "{outs:?}");
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::RegisterBroker(c) if c.request_code() == RequestCode::UnregisterBroker)),
        "a fenced master leaves the routes: {outs:?}"
    );
    send_to(&mut m, 11, 1, "m");
    assert_eq!(answered(&drain(&mut m), 1), Some(ResponseCode::ServiceNotAvailable.code()));
    assert_eq!(m.store().commit_log_max_offset(), 0, "a fenced master stores nothing");
    let req = RemotingCommand::request_with(RequestCode::PullMessage, 2, &pull_header("T", 0, 3, 0));
    m.on_request(12, ConnId(1), req);
    let pull = drain(&mut m).into_iter().find_map(|o| match o {
        Output::Transmit { cmd, .. } if cmd.opaque == 2 => Some(cmd),
        _ => None,
    });
    let pull = pull.unwrap();
    assert_eq!(pull.ext("suggestWhichBrokerId"), Some("1"), "readers are sent to the slave");
    assert_eq!(pull.ext("nextBeginOffset"), Some("3"), "their position is untouched");
    m.shutdown(13).unwrap();
    // The fence survives a restart: the store is still empty, the slave still refused.
    let mut m = BrokerCore::open(MmapDirectory::new(dir.path()), config, 20).unwrap();
    m.on_conn_opened(20, ConnId(1), "127.0.0.1:1".parse().unwrap());
    send_to(&mut m, 21, 3, "m");
    assert_eq!(answered(&drain(&mut m), 3), Some(ResponseCode::ServiceNotAvailable.code()));
    m.on_ha_slave_opened(22, HA_CONN);
    m.on_ha_slave_report(22, HA_CONN, 0);
    assert!(drain(&mut m).iter().any(|o| matches!(o, Output::HaClose { .. })));
}

#[test]
fn an_empty_master_that_crashed_before_its_slave_returned_still_fences_itself() {
    // Found by the no-loss model (models/): the master's disk is lost; it restarts empty,
    // stores a send (no slave yet: SLAVE_NOT_AVAILABLE), loses power before flushing it, and
    // restarts over a segment file that holds nothing. That open is not "fresh" any more, so
    // the slave, which holds the only copy of acknowledged messages, used to be cut to zero.
    let (dir, mut config) = small_mmap_store();
    config.broker_role = BrokerRole::SyncMaster;
    config.flush_disk_type = FlushDiskType::SyncFlush;
    let mut m = BrokerCore::open(MmapDirectory::new(dir.path()), config.clone(), 10).unwrap();
    m.on_conn_opened(10, ConnId(1), "127.0.0.1:1".parse().unwrap());
    send_to(&mut m, 11, 1, "m");
    assert_eq!(answered(&drain(&mut m), 1), Some(ResponseCode::SlaveNotAvailable.code()));
    drop(m); // A power cut: nothing was flushed, the segment file stays.
    let mut m = BrokerCore::open(MmapDirectory::new(dir.path()), config, 20).unwrap();
    m.on_ha_slave_opened(20, HA_CONN);
    m.on_ha_slave_report(20, HA_CONN, 4_096);
    let outs = drain(&mut m);
    assert!(
        !outs.iter().any(
            |o| matches!(o, Output::HaTransmit { conn, offset: 0, bytes } if *conn == HA_CONN && bytes.is_empty())
        ),
        "the slave must not be cut back: {outs:?}"
    );
    assert!(outs.iter().any(|o| matches!(o, Output::HaClose { conn, .. } if *conn == HA_CONN)), "{outs:?}");
}

#[test]
fn a_slave_refuses_sends_and_serves_what_it_replicated() {
    let mut r = replica(BrokerRole::AsyncMaster, FlushDiskType::AsyncFlush, FlushDiskType::AsyncFlush);
    for i in 0..5 {
        r.send(i, &format!("m{i}"));
    }
    r.settle();
    assert!((0..5).all(|i| r.answer(i).is_some_and(|a| a.code == 0)), "ASYNC_MASTER answers at once");
    r.attach();
    assert_eq!(r.slave_bodies(), ["m0", "m1", "m2", "m3", "m4"], "a new slave copies the retained log");
    let mut req = RemotingCommand::request(RequestCode::SendMessageV2, 50).with_body(&b"x"[..]);
    req.ext_fields = send_header("T", 0).to_ext_v2();
    r.slave.on_request(r.now, ConnId(1), req);
    let resp = std::iter::from_fn(|| r.slave.poll_output())
        .find_map(|o| match o {
            Output::Transmit { cmd, .. } => Some(cmd),
            _ => None,
        })
        .unwrap();
    assert_eq!(resp.code, ResponseCode::ServiceNotAvailable.code());
}

#[test]
fn a_slave_learns_its_master_from_the_registration_answer_and_copies_its_metadata() {
    let mut r = replica(BrokerRole::AsyncMaster, FlushDiskType::AsyncFlush, FlushDiskType::AsyncFlush);
    r.send(1, "m");
    r.settle();
    assert!(r.master.offsets.commit("cg", "T", 0, 1));
    let off = crate::groups::SubscriptionGroupConfig {
        consume_enable: false,
        ..crate::groups::SubscriptionGroupConfig::defaults("Off")
    };
    assert!(r.master.groups.upsert(off));
    // Nothing to ask before the NameServer said who the master is.
    r.slave.on_timer(r.now);
    assert!(!std::iter::from_fn(|| r.slave.poll_output()).any(|o| matches!(o, Output::MasterRequest { .. })));
    let mut answer =
        RemotingCommand::response_to(&RemotingCommand::request(RequestCode::RegisterBroker, -1), ResponseCode::Success);
    answer.ext_fields.insert("masterAddr".into(), "10.0.0.1:10911".into());
    answer.ext_fields.insert("haServerAddr".into(), "10.0.0.1:10912".into());
    r.slave.on_response(r.now, &answer);
    assert_eq!(r.slave.sync.master_ha_addr.as_deref(), Some("10.0.0.1:10912"));
    r.slave.on_timer(r.now);
    let asks: Vec<RemotingCommand> = std::iter::from_fn(|| r.slave.poll_output())
        .filter_map(|o| match o {
            Output::MasterRequest { addr, cmd } => {
                assert_eq!(addr, "10.0.0.1:10911");
                Some(cmd)
            }
            _ => None,
        })
        .collect();
    let codes: Vec<RequestCode> = asks.iter().map(|c| c.request_code()).collect();
    assert_eq!(
        codes,
        [
            RequestCode::GetAllTopicConfig,
            RequestCode::GetAllConsumerOffset,
            RequestCode::GetAllDelayOffset,
            RequestCode::GetAllSubscriptionGroupConfig
        ]
    );
    assert_eq!(r.slave.offsets.get("cg", "T", 0), None);
    for ask in asks {
        r.master.on_request(r.now, ConnId(9), ask.clone());
        let resp = std::iter::from_fn(|| r.master.poll_output())
            .find_map(|o| match o {
                Output::Transmit { cmd, .. } if cmd.opaque == ask.opaque => Some(cmd),
                _ => None,
            })
            .expect("the master answers metadata requests");
        assert_eq!(resp.code, 0, "{resp:?}");
        r.slave.on_response(r.now, &resp);
    }
    assert_eq!(r.slave.offsets.get("cg", "T", 0), Some(1), "consumer offsets reach the slave");
    assert!(r.slave.topics.get("T").is_some(), "topic config reaches the slave");
    assert!(!r.slave.groups.get("Off").consume_enable, "subscription groups reach the slave");
}

#[test]
fn replication_timers_never_leave_a_deadline_in_the_past() {
    // A slave whose connect hangs (a blackholed master) past the heartbeat interval, and a
    // master whose new slave has not reported yet: after a timer, the next deadline is ahead
    // (a deadline left behind spins a driver's node loop).
    let mut r = replica(BrokerRole::SyncMaster, FlushDiskType::AsyncFlush, FlushDiskType::AsyncFlush);
    r.slave.on_timer(r.now);
    assert!(std::iter::from_fn(|| r.slave.poll_output()).any(|o| matches!(o, Output::HaConnect { .. })));
    let late = r.now + 60_000;
    r.slave.on_timer(late);
    assert!(r.slave.next_deadline_ms() > late, "slave deadline {} at {late}", r.slave.next_deadline_ms());
    r.master.on_ha_slave_opened(r.now, HA_CONN);
    let later = r.now + 6_000;
    r.master.on_timer(later);
    assert!(r.master.next_deadline_ms() > later, "master deadline {} at {later}", r.master.next_deadline_ms());
}

/// A memory directory on a disk whose fullness the test sets.
#[derive(Debug)]
struct FillingDisk {
    inner: MemDirectory,
    used: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Directory for FillingDisk {
    type Seg = rmq_store::MemSegment;
    fn open_segment(&mut self, path: &str, size: u64) -> Result<Self::Seg, rmq_store::StoreError> {
        self.inner.open_segment(path, size)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, rmq_store::StoreError> {
        self.inner.list(dir)
    }
    fn remove(&mut self, path: &str) -> Result<(), rmq_store::StoreError> {
        self.inner.remove(path)
    }
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, rmq_store::StoreError> {
        self.inner.read_file(path)
    }
    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), rmq_store::StoreError> {
        self.inner.write_file(path, bytes)
    }
    fn used_space_ratio(&self) -> Option<f64> {
        Some(f64::from_bits(self.used.load(std::sync::atomic::Ordering::Relaxed)))
    }
}

#[test]
fn retention_deletes_expired_segments_moves_lagging_groups_and_a_full_disk_refuses_sends() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let used = std::sync::Arc::new(AtomicU64::new(0.5f64.to_bits()));
    let mut config = BrokerConfig {
        file_reserved_ms: 60_000,
        delete_when_hours: (0..24).collect(),
        clean_resource_interval_ms: 1_000,
        record_events: true,
        ..Default::default()
    };
    config.store.commit_log_segment_bytes = 4096;
    config.store.consume_queue_segment_entries = 8;
    let dir = FillingDisk { inner: MemDirectory::default(), used: used.clone() };
    let mut h = Harness { core: BrokerCore::open(dir, config, 1_000).unwrap(), now: 1_000, next_opaque: 1 };
    h.core.on_conn_opened(1_000, ConnId(1), "127.0.0.1:40000".parse().unwrap());
    for i in 0..60 {
        assert_eq!(h.send("T", 0, &format!("{i:0100}")).code, 0);
    }
    let commit = RemotingCommand::request(RequestCode::UpdateConsumerOffset, 0)
        .with_ext("consumerGroup", "Lagging")
        .with_ext("topic", "T")
        .with_ext("queueId", 0)
        .with_ext("commitOffset", 1);
    assert_eq!(h.call(1, commit).code, 0);
    // Young messages stay, whatever the hour.
    for _ in 0..3 {
        h.advance(1_000);
        h.drain();
    }
    assert_eq!(h.core.store.commit_log_min_offset(), 0);
    // Past fileReservedTime every segment but the one being written goes.
    h.advance(60_000);
    h.drain();
    let min = h.core.store.min_queue_offset("T", 0);
    assert!(h.core.store.commit_log_min_offset() > 0 && min > 1, "deleted up to the last segment");
    assert!(h.core.drain_events().iter().any(|e| matches!(e, Event::FilesDeleted { offsets_raised: 1, .. })));
    let query = RemotingCommand::request(RequestCode::QueryConsumerOffset, 0)
        .with_ext("consumerGroup", "Lagging")
        .with_ext("topic", "T")
        .with_ext("queueId", 0);
    assert_eq!(h.call(1, query).ext("offset"), Some(min.to_string().as_str()), "the lagging group moved to the min");
    let pull = h.call(1, RemotingCommand::request_with(RequestCode::PullMessage, 0, &pull_header("T", 0, 0, 0)));
    assert_eq!(pull.code, ResponseCode::PullOffsetMoved.code(), "OFFSET_TOO_SMALL");
    assert_eq!(pull.ext("nextBeginOffset"), Some(min.to_string().as_str()));
    let from_min =
        h.call(1, RemotingCommand::request_with(RequestCode::PullMessage, 0, &pull_header("T", 0, min as i64, 0)));
    assert_eq!(from_min.code, 0, "what is kept is still served");
    // A disk past 90% refuses sends with RocketMQ's code, and takes them again once space returns.
    used.store(0.95f64.to_bits(), Ordering::Relaxed);
    h.advance(1_000);
    h.drain();
    let refused = h.send("T", 0, "x");
    assert_eq!(refused.code, ResponseCode::ServiceNotAvailable.code());
    assert!(refused.remark.as_deref().unwrap_or_default().contains("disk is full"), "{:?}", refused.remark);
    used.store(0.5f64.to_bits(), Ordering::Relaxed);
    h.advance(1_000);
    h.drain();
    assert_eq!(h.send("T", 0, "x").code, 0);
}

#[test]
fn small_sync_group_commits_are_flushed_inline_and_the_rest_detached() {
    let flush_of = |flush_disk_type: FlushDiskType, body: &str| {
        let mut h = mem(BrokerConfig { flush_disk_type, ..Default::default() });
        let req = RemotingCommand::request_with(RequestCode::SendMessage, 1, &send_header("T", 0))
            .with_body(body.as_bytes().to_vec());
        h.core.on_request(h.now, ConnId(1), req);
        while h.core.poll_output().is_some() {}
        h.core.begin_flush().unwrap()
    };
    assert!(flush_of(FlushDiskType::SyncFlush, "a").inline, "a group commit the senders wait for");
    assert!(!flush_of(FlushDiskType::AsyncFlush, "a").inline, "nobody waits on an ASYNC flush");
    let big = "x".repeat(INLINE_FLUSH_MAX_BYTES as usize);
    assert!(!flush_of(FlushDiskType::SyncFlush, &big).inline, "a backlog beyond the bound syncs elsewhere");
}
