//! Issue 7's probe, end to end with the real binaries: CONSUMER_SEND_MSG_BACK with group
//! `../../../escaped_retry` used to be answered SUCCESS and created topic
//! `%RETRY%../../../escaped_retry` in topics.json and on the NameServer. Now it is refused with
//! SUBSCRIPTION_GROUP_NOT_EXIST (RocketMQ's answer for a group it will not create) and nothing
//! appears on disk, in the topic table or in the routes. The same request with a legal group
//! succeeds, so the refusal is about the name.

// Real-binary tests drive child processes from plain threads; the determinism rules are for
// cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rmq_client::{ClientConfig, Message, Producer};
use rmq_proto::codes::RequestCode;
use rmq_proto::header::ConsumerSendMsgBackRequestHeader;
use rmq_proto::message::parse_offset_msg_id;
use rmq_proto::RemotingCommand;
use rmq_rt::RealEnv;

/// Every path under `root` (files and directories), relative, without in-flight `.tmp` files.
fn listing(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            if path.extension().is_none_or(|e| e != "tmp") {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out
}

fn send_back(group: &str, offset: i64, delay_level: i32, opaque: i32) -> RemotingCommand {
    let h = ConsumerSendMsgBackRequestHeader {
        offset,
        group: group.into(),
        delay_level,
        origin_msg_id: None,
        origin_topic: Some("Orders".into()),
        max_reconsume_times: None,
    };
    RemotingCommand::request_with(RequestCode::ConsumerSendMsgBack, opaque, &h)
}

#[test]
fn send_back_with_an_escaping_group_is_refused_and_creates_nothing() {
    let ns = common::namesrv();
    // The store sits three levels below the temp dir: `../../..` from a ConsumeQueue
    // directory would still land inside what the listing covers.
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("a/b/c/store");
    std::fs::create_dir_all(&store).unwrap();
    let broker = common::broker(&ns.addr, &store, "127.0.0.1:0", None);

    // A real message to send back.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent = rt.block_on(async {
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "orders_producer"));
        p.send(Message::new("Orders", &b"to be retried"[..])).await.unwrap()
    });
    let (_, commit_log_offset) = parse_offset_msg_id(&sent.offset_msg_id).expect("an offset message id");
    // Let the auto-created topic's persist, registration and a checkpoint happen first.
    std::thread::sleep(Duration::from_millis(1_500));
    let before = listing(tmp.path());

    let mut conn = TcpStream::connect(&broker.addr).unwrap();
    for (i, delay_level) in [0, -1].into_iter().enumerate() {
        // Level 0: the retry topic; -1: straight to the dead-letter topic.
        let resp =
            common::call(&mut conn, &send_back("../../../escaped_retry", commit_log_offset, delay_level, i as i32));
        assert_eq!(resp.code, 26, "SUBSCRIPTION_GROUP_NOT_EXIST, got {:?}", resp.remark);
        let remark = resp.remark.unwrap_or_default();
        assert!(remark.contains("illegal characters"), "the remark says why: {remark}");
    }
    // Past the coalesced persist and registration window and a checkpoint.
    std::thread::sleep(Duration::from_millis(1_500));

    let after = listing(tmp.path());
    let escaped: Vec<&PathBuf> = after.iter().filter(|p| p.to_string_lossy().contains("escaped")).collect();
    assert!(escaped.is_empty(), "nothing named after the group: {escaped:?}");
    let new: Vec<&PathBuf> = after.difference(&before).collect();
    assert!(new.is_empty(), "no new file or directory anywhere: {new:?}");
    let topics_json = std::fs::read_to_string(store.join("config/topics.json")).unwrap();
    assert!(!topics_json.contains("escaped"), "topics.json: {topics_json}");
    let all = common::call(&mut conn, &RemotingCommand::request(RequestCode::GetAllTopicConfig, 10));
    assert!(!String::from_utf8_lossy(&all.body).contains("escaped"), "the broker's topic table");
    let routes = common::mqadmin(&["topicList", "-n", &ns.addr]);
    assert!(routes.contains("Orders") && !routes.contains("escaped"), "the NameServer's topics: {routes}");

    // The same request with a legal group is accepted: the refusal was about the name.
    let ok = common::call(&mut conn, &send_back("orders_consumer", commit_log_offset, 0, 20));
    assert_eq!(ok.code, 0, "{:?}", ok.remark);
    common::wait_for_route(&ns.addr, "%RETRY%orders_consumer");
    drop(broker);
}
