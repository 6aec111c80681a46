//! Half messages: invisible until committed, never visible after a rollback, resolved once,
//! and what was resolved survives a restart.

use super::*;
use bytes::Bytes;
use rmq_proto::codes::sys_flag;
use rmq_proto::header::EndTransactionRequestHeader;
use rmq_proto::message::{parse_offset_msg_id, prop};

use crate::transaction::{HALF_TOPIC, OP_TOPIC, PREPARED_QUEUE_OFFSET};

/// Sends a half message of producer group "pg" to `topic` queue 0; returns the answer's
/// (queue offset, commit-log offset).
fn send_half<D: Directory>(h: &mut Harness<D>, topic: &str, body: &str) -> (i64, i64) {
    let mut header = send_header(topic, 0);
    header.sys_flag = sys_flag::TRANSACTION_PREPARED;
    let props: BTreeMap<String, String> =
        [(prop::TRAN_MSG.to_string(), "true".to_string()), (prop::PGROUP.to_string(), "pg".to_string())].into();
    header.properties = Some(encode_properties(&props));
    let mut req = RemotingCommand::request(RequestCode::SendMessageV2, 0).with_body(body.as_bytes().to_vec());
    req.ext_fields = header.to_ext_v2();
    let resp = h.call(1, req);
    assert_eq!(resp.code, 0, "{:?}", resp.remark);
    let (_, clo) = parse_offset_msg_id(resp.ext("msgId").unwrap()).unwrap();
    (resp.ext("queueOffset").unwrap().parse().unwrap(), clo)
}

fn end(topic: &str, (queue_offset, clo): (i64, i64), outcome: i32, group: &str) -> RemotingCommand {
    let h = EndTransactionRequestHeader {
        topic: Some(topic.into()),
        producer_group: group.into(),
        tran_state_table_offset: queue_offset,
        commit_log_offset: clo,
        commit_or_rollback: outcome,
        from_transaction_check: Some(false),
        msg_id: "x".into(),
        transaction_id: None,
    };
    RemotingCommand::request_with(RequestCode::EndTransaction, 0, &h)
}

fn bodies<D: Directory>(h: &mut Harness<D>, topic: &str, queue_id: i32) -> Vec<String> {
    let resp =
        h.call(2, RemotingCommand::request_with(RequestCode::PullMessage, 0, &pull_header(topic, queue_id, 0, 0)));
    if resp.code != 0 {
        return Vec::new();
    }
    decode_messages(&resp.body).unwrap().iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
}

#[test]
fn a_half_message_is_invisible_until_committed_and_committed_once() {
    let mut h = mem(BrokerConfig::default());
    let half = send_half(&mut h, "Tx", "paid");
    assert!(bodies(&mut h, "Tx", 0).is_empty(), "a half message is not the topic's");
    assert_eq!(bodies(&mut h, HALF_TOPIC, 0), ["paid"]);
    // Unknown: nothing happens (the check-back asks again).
    assert_eq!(h.call(1, end("Tx", half, 0, "pg")).code, 0);
    assert!(bodies(&mut h, "Tx", 0).is_empty());
    // One-way, as RocketMQ's producer sends it: no answer, the message appears.
    h.request(1, end("Tx", half, sys_flag::TRANSACTION_COMMIT, "pg").oneway());
    assert!(h.drain().is_empty(), "a one-way request is not answered");
    let resp = h.call(2, RemotingCommand::request_with(RequestCode::PullMessage, 0, &pull_header("Tx", 0, 0, 0)));
    let msgs = decode_messages(&resp.body).unwrap();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.body.as_ref(), b"paid");
    assert_eq!(m.sys_flag & sys_flag::TRANSACTION_ROLLBACK, sys_flag::TRANSACTION_COMMIT);
    assert_eq!(m.properties.get(PREPARED_QUEUE_OFFSET).map(String::as_str), Some("0"));
    assert!(!m.properties.contains_key(prop::REAL_TOPIC));
    assert_eq!(bodies(&mut h, OP_TOPIC, 0), ["0"], "the op record names the half offset");
    // A second commit (the check-back's answer after the producer's own) changes nothing.
    assert_eq!(h.call(1, end("Tx", half, sys_flag::TRANSACTION_COMMIT, "pg")).code, 0);
    assert_eq!(h.call(1, end("Tx", half, sys_flag::TRANSACTION_ROLLBACK, "pg")).code, 0);
    assert_eq!(bodies(&mut h, "Tx", 0), ["paid"]);
    assert_eq!(bodies(&mut h, OP_TOPIC, 0), ["0"]);
}

#[test]
fn a_rolled_back_half_message_never_appears() {
    let mut h = mem(BrokerConfig::default());
    let half = send_half(&mut h, "Tx", "void");
    assert_eq!(h.call(1, end("Tx", half, sys_flag::TRANSACTION_ROLLBACK, "pg")).code, 0);
    assert_eq!(h.call(1, end("Tx", half, sys_flag::TRANSACTION_COMMIT, "pg")).code, 0, "already resolved");
    assert!(bodies(&mut h, "Tx", 0).is_empty());
    assert_eq!(bodies(&mut h, OP_TOPIC, 0), ["0"]);
}

/// A harness over real files in `dir`, opened at `now`.
fn on_files(dir: &std::path::Path, config: &BrokerConfig, now: u64) -> Harness<MmapDirectory> {
    let mut core = BrokerCore::open(MmapDirectory::new(dir), config.clone(), now).unwrap();
    core.on_conn_opened(now, ConnId(1), "127.0.0.1:40000".parse().unwrap());
    core.on_conn_opened(now, ConnId(2), "127.0.0.1:40001".parse().unwrap());
    Harness { core, now, next_opaque: 1 }
}

#[test]
fn what_was_resolved_survives_a_restart() {
    let (dir, config) = small_mmap_store();
    let mut h = on_files(dir.path(), &config, 0);
    let committed = send_half(&mut h, "Tx", "a");
    let open = send_half(&mut h, "Tx", "b");
    assert_eq!(h.call(1, end("Tx", committed, sys_flag::TRANSACTION_COMMIT, "pg")).code, 0);
    h.core.shutdown(h.now).unwrap();
    drop(h);
    let mut h = on_files(dir.path(), &config, 10);
    let resp = h.call(1, end("Tx", committed, sys_flag::TRANSACTION_COMMIT, "pg"));
    assert_eq!(resp.code, 0, "{:?}", resp.remark);
    assert_eq!(bodies(&mut h, "Tx", 0), ["a"], "committed before the restart, not again after it");
    assert_eq!(h.call(1, end("Tx", open, sys_flag::TRANSACTION_COMMIT, "pg")).code, 0);
    assert_eq!(bodies(&mut h, "Tx", 0), ["a", "b"], "a half message still open is resolved after a restart");
}

#[test]
fn a_wrong_end_transaction_is_refused_and_changes_nothing() {
    let mut h = mem(BrokerConfig { record_events: true, ..Default::default() });
    let half = send_half(&mut h, "Tx", "a");
    let plain = h.send("Plain", 0, "p");
    let (_, plain_clo) = parse_offset_msg_id(plain.ext("msgId").unwrap()).unwrap();
    for (req, why) in [
        (end("Tx", half, sys_flag::TRANSACTION_COMMIT, "other"), "the producer group wrong"),
        (end("Tx", (half.0 + 1, half.1), sys_flag::TRANSACTION_COMMIT, "pg"), "state table offset wrong"),
        (end("Tx", (0, plain_clo), sys_flag::TRANSACTION_COMMIT, "pg"), "no half message there"),
        (end("Tx", (0, 1 << 40), sys_flag::TRANSACTION_COMMIT, "pg"), "find prepared transaction message failed"),
        (end("Tx", half, 5, "pg"), "is not 0, 8 (commit) or 12 (rollback)"),
    ] {
        let resp = h.call(1, req);
        assert_ne!(resp.code, 0, "{why}");
        assert!(resp.remark.as_deref().unwrap_or("").contains(why), "{:?} lacks {why}", resp.remark);
    }
    // One-way refusals are not answered; the event says why.
    h.core.drain_events();
    h.request(1, end("Tx", half, sys_flag::TRANSACTION_COMMIT, "other").oneway());
    assert!(h.drain().is_empty());
    assert!(h
        .core
        .drain_events()
        .iter()
        .any(|e| matches!(e, Event::TransactionRefused { reason, .. } if reason.contains("producer group"))));
    assert!(bodies(&mut h, "Tx", 0).is_empty());
    assert!(bodies(&mut h, OP_TOPIC, 0).is_empty());
}

#[test]
fn a_slave_refuses_end_transaction_and_a_batch_cannot_be_transactional() {
    let mut h = mem(BrokerConfig { broker_role: BrokerRole::Slave, ..Default::default() });
    let resp = h.call(1, end("Tx", (0, 0), sys_flag::TRANSACTION_COMMIT, "pg"));
    assert_eq!(resp.code, ResponseCode::SlaveNotAvailable.code());
    let mut h = mem(BrokerConfig::default());
    let items: Vec<BatchItem> = (0..2)
        .map(|i| BatchItem { flag: 0, body: Bytes::from(format!("b{i}")), properties: BTreeMap::new() })
        .collect();
    let mut header = send_header("Tx", 0);
    header.sys_flag = sys_flag::TRANSACTION_PREPARED;
    header.batch = Some(true);
    let req = RemotingCommand::request_with(RequestCode::SendBatchMessage, 0, &header).with_body(encode_batch(&items));
    let resp = h.call(1, req);
    assert_eq!(resp.code, ResponseCode::MessageIllegal.code(), "{:?}", resp.remark);
    assert!(bodies(&mut h, HALF_TOPIC, 0).is_empty() && bodies(&mut h, "Tx", 0).is_empty());
}

fn producer_heartbeat(client_id: &str) -> RemotingCommand {
    let hb = HeartbeatData {
        client_id: client_id.into(),
        producer_data_set: vec![rmq_proto::body::ProducerData { group_name: "pg".into() }],
        ..Default::default()
    };
    RemotingCommand::request(RequestCode::HeartBeat, 0).with_body(to_json(&hb))
}

/// Advances time by `ms` in one step and returns the CHECK_TRANSACTION_STATE requests sent.
fn checks_after<D: Directory>(h: &mut Harness<D>, ms: u64) -> Vec<(ConnId, RemotingCommand)> {
    h.advance(ms);
    h.drain().into_iter().filter(|(_, c)| c.request_code() == RequestCode::CheckTransactionState).collect()
}

#[test]
fn an_open_half_message_is_checked_back_with_its_producer_and_resolved_by_the_answer() {
    use rmq_proto::header::CheckTransactionStateRequestHeader;
    let interval = BrokerConfig::default().transaction_check_interval_ms;
    let config = BrokerConfig { transaction_timeout_ms: interval + interval / 2, ..Default::default() };
    let mut h = mem(config);
    assert_eq!(h.call(1, producer_heartbeat("p1")).code, 0);
    let half = send_half(&mut h, "Tx", "maybe");
    assert!(h.core.next_deadline_ms() <= h.now + interval, "an open half message asks for a check round");
    // Younger than transactionTimeOut at the first round: not checked yet.
    assert!(checks_after(&mut h, interval).is_empty());
    let asked = checks_after(&mut h, interval);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let (conn, req) = &asked[0];
    assert_eq!(*conn, ConnId(1), "the producer's own connection is asked");
    assert!(req.is_oneway());
    let ch: CheckTransactionStateRequestHeader = req.decode_header().unwrap();
    assert_eq!((ch.tran_state_table_offset, ch.commit_log_offset), half);
    assert_eq!(ch.topic.as_deref(), Some("Tx"));
    let body = decode_messages(&req.body).unwrap();
    assert_eq!(body[0].body.as_ref(), b"maybe");
    // The producer answers from its checker.
    let mut answer = end("Tx", half, sys_flag::TRANSACTION_COMMIT, "pg");
    answer.ext_fields.insert("fromTransactionCheck".into(), "true".into());
    h.request(1, answer.oneway());
    assert_eq!(bodies(&mut h, "Tx", 0), ["maybe"]);
    assert!(checks_after(&mut h, 10 * interval).is_empty(), "resolved: never checked again");
    assert!(h.core.next_deadline_ms() < h.now + interval, "other timers still run");
}

#[test]
fn a_half_message_nobody_resolves_is_discarded_after_the_check_max() {
    use crate::transaction::CHECK_MAX_TIME_TOPIC;
    let config = BrokerConfig { transaction_check_max: 3, record_events: true, ..Default::default() };
    let (timeout, interval) = (config.transaction_timeout_ms, config.transaction_check_interval_ms);
    let mut h = mem(config);
    assert_eq!(h.call(1, producer_heartbeat("p1")).code, 0);
    let half = send_half(&mut h, "Tx", "orphan");
    let mut asked = 0;
    for _ in 0..6 {
        asked += checks_after(&mut h, timeout + interval).len();
        // The producer stays alive (heartbeats) but never knows the answer.
        h.call(1, producer_heartbeat("p1"));
    }
    assert_eq!(asked, 3, "checked transactionCheckMax times, then no more");
    assert!(bodies(&mut h, "Tx", 0).is_empty(), "never delivered");
    assert_eq!(bodies(&mut h, CHECK_MAX_TIME_TOPIC, 0), ["orphan"]);
    assert_eq!(bodies(&mut h, OP_TOPIC, 0), ["0"]);
    assert!(h.core.drain_events().iter().any(|e| matches!(e, Event::TransactionDiscarded { half_offset: 0 })));
    // A late answer changes nothing.
    assert_eq!(h.call(1, end("Tx", half, sys_flag::TRANSACTION_COMMIT, "pg")).code, 0);
    assert!(bodies(&mut h, "Tx", 0).is_empty());
}
