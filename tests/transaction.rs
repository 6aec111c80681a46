//! Transactional messages against real binaries: a committed half message is delivered, a
//! rolled-back one never is, and one whose producer went away before ending it is resolved by
//! the broker's check-back to another producer of the same group.

// Real-binary tests drive child processes from plain threads.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmq_client::{
    ClientConfig, ConsumeFromWhere, ConsumeResult, LocalTransactionState, Message, PushConsumer, TransactionProducer,
};
use rmq_rt::RealEnv;

/// A NameServer and a broker that checks open half messages every 300 ms once 500 ms old.
fn cluster(dir: &tempfile::TempDir) -> (common::Proc, common::Proc) {
    let ns = common::namesrv();
    let conf = dir.path().join("broker.conf");
    std::fs::write(&conf, "transactionTimeOut=500\ntransactionCheckInterval=300\n").unwrap();
    let store = dir.path().join("store");
    let broker = common::broker(&ns.addr, &store, "127.0.0.1:0", Some(&conf));
    common::mqadmin(&["updateTopic", "-n", &ns.addr, "-t", "TxT", "-r", "2", "-w", "2"]);
    common::wait_for_route(&ns.addr, "TxT");
    (ns, broker)
}

fn consumer_config(ns: &str) -> ClientConfig {
    let mut c = ClientConfig::new(ns, "TxG");
    c.rebalance_interval_ms = 300;
    c.heartbeat_interval_ms = 300;
    c.pull_suspend_ms = 1_000;
    c.consume_from_where = ConsumeFromWhere::FirstOffset;
    c
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn committed_is_delivered_rolled_back_never_and_an_orphan_is_resolved_by_the_check_back() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, _broker) = cluster(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let s2 = seen.clone();
        let consumer =
            PushConsumer::start(RealEnv::default(), consumer_config(&ns.addr), &[("TxT", "*")], move |msgs| {
                s2.lock().unwrap().extend(msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
                ConsumeResult::Success
            })
            .await
            .unwrap();
        // The first producer: commits one, rolls one back, and leaves one open (as if it died
        // between the half message and END_TRANSACTION); its checker never learns the answer.
        let mut cfg = ClientConfig::new(&ns.addr, "TxP");
        cfg.instance_name = Some("first".into());
        let first = TransactionProducer::start(RealEnv::default(), cfg, |_| LocalTransactionState::Unknown);
        let r = first
            .send_in_transaction(Message::new("TxT", &b"committed"[..]), |_, _| LocalTransactionState::CommitMessage)
            .await
            .unwrap();
        assert_eq!(r.state, LocalTransactionState::CommitMessage);
        first
            .send_in_transaction(Message::new("TxT", &b"rolled-back"[..]), |_, _| {
                LocalTransactionState::RollbackMessage
            })
            .await
            .unwrap();
        let orphan = first
            .send_in_transaction(Message::new("TxT", &b"orphan"[..]), |_, _| LocalTransactionState::Unknown)
            .await
            .unwrap();
        wait_until("the committed message", || seen.lock().unwrap().contains("committed")).await;
        first.shutdown().await;
        assert!(!seen.lock().unwrap().contains("orphan"), "an open half message is not delivered");
        // Another producer of the group: the broker's check-back asks it, and it knows.
        let orphan_id = orphan.send.msg_id.clone();
        let asked: Arc<Mutex<Vec<String>>> = Arc::default();
        let a2 = asked.clone();
        let mut cfg = ClientConfig::new(&ns.addr, "TxP");
        cfg.instance_name = Some("second".into());
        cfg.heartbeat_interval_ms = 200;
        let second = TransactionProducer::start(RealEnv::default(), cfg, move |m| {
            let id = m.properties.get("UNIQ_KEY").cloned().unwrap_or_default();
            a2.lock().unwrap().push(id.clone());
            if id == orphan_id {
                LocalTransactionState::CommitMessage
            } else {
                LocalTransactionState::Unknown
            }
        });
        // Its first send connects it, and its heartbeats register it with the broker.
        second
            .send_in_transaction(Message::new("TxT", &b"second-committed"[..]), |_, _| {
                LocalTransactionState::CommitMessage
            })
            .await
            .unwrap();
        wait_until("the orphan, committed by the check-back", || seen.lock().unwrap().contains("orphan")).await;
        assert!(asked.lock().unwrap().contains(&orphan.send.msg_id));
        // Everything resolved has arrived; the rolled-back message never does.
        wait_until("the second producer's message", || seen.lock().unwrap().contains("second-committed")).await;
        assert!(!seen.lock().unwrap().contains("rolled-back"));
        second.shutdown().await;
        consumer.shutdown().await;
    });
}
