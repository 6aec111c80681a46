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

/// A consumer of TxT recording the bodies it receives.
async fn recording_consumer(ns: &str) -> (PushConsumer<RealEnv>, Arc<Mutex<BTreeSet<String>>>) {
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let s2 = seen.clone();
    let consumer = PushConsumer::start(RealEnv::default(), consumer_config(ns), &[("TxT", "*")], move |msgs| {
        s2.lock().unwrap().extend(msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
        ConsumeResult::Success
    })
    .await
    .unwrap();
    (consumer, seen)
}

/// A producer of `group` whose checker knows that transaction `committed` (a message id)
/// committed and nothing of the others; it records every message id it is asked about.
fn knowing_producer(
    ns: &str,
    group: &str,
    instance: &str,
    committed: String,
) -> (TransactionProducer<RealEnv>, Arc<Mutex<Vec<String>>>) {
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let a2 = asked.clone();
    let mut cfg = ClientConfig::new(ns, group);
    cfg.instance_name = Some(instance.into());
    cfg.heartbeat_interval_ms = 200;
    let p = TransactionProducer::start(RealEnv::default(), cfg, move |m| {
        let id = m.properties.get("UNIQ_KEY").cloned().unwrap_or_default();
        a2.lock().unwrap().push(id.clone());
        if id == committed {
            LocalTransactionState::CommitMessage
        } else {
            LocalTransactionState::Unknown
        }
    });
    (p, asked)
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
        let (consumer, seen) = recording_consumer(&ns.addr).await;
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
        let (second, asked) = knowing_producer(&ns.addr, "TxP", "second", orphan.send.msg_id.clone());
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

/// The child's environment variable: the NameServer of the producer run as its own process.
const CHILD_NS: &str = "RMQ_TX_CHILD_NS";

/// Run by the test below as a separate process (`--ignored`, with [`CHILD_NS`] set): a
/// transactional producer whose local transaction never returns; it says which half message
/// it is in, and waits to be killed.
#[test]
#[ignore = "a child process of a_producer_killed_inside_its_local_transaction_is_resolved_by_the_check_back"]
fn producer_stuck_in_its_local_transaction() {
    let Ok(ns) = std::env::var(CHILD_NS) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut cfg = ClientConfig::new(&ns, "TxKillP");
        cfg.instance_name = Some("doomed".into());
        let p = TransactionProducer::start(RealEnv::default(), cfg, |_| LocalTransactionState::Unknown);
        let _ = p
            .send_in_transaction(Message::new("TxT", &b"killed-mid-transaction"[..]), |_, send| {
                use std::io::Write;
                println!("IN_LOCAL_TRANSACTION {}", send.msg_id);
                std::io::stdout().flush().unwrap();
                std::thread::sleep(Duration::from_secs(600));
                LocalTransactionState::RollbackMessage
            })
            .await;
    });
}

#[test]
fn a_producer_killed_inside_its_local_transaction_is_resolved_by_the_check_back() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let (ns, _broker) = cluster(&dir);
    let mut child = common::KillOnDrop(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "producer_stuck_in_its_local_transaction",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_NS, &ns.addr)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    // The harness prints the test's name before the child's first line, on the same line.
    const MARK: &str = "IN_LOCAL_TRANSACTION ";
    let msg_id = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.find(MARK).map(|at| l[at + MARK.len()..].trim().to_string()))
        .expect("the child stored its half message and entered its local transaction");
    // SIGKILL in the middle of the local transaction: END_TRANSACTION never leaves.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (consumer, seen) = recording_consumer(&ns.addr).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(!seen.lock().unwrap().contains("killed-mid-transaction"), "the orphaned half message stays invisible");
        // A live producer of the group: its checker knows the transaction committed.
        let (survivor, asked) = knowing_producer(&ns.addr, "TxKillP", "survivor", msg_id.clone());
        // Its first send routes it and registers it with the broker.
        survivor
            .send_in_transaction(Message::new("TxT", &b"survivor"[..]), |_, _| LocalTransactionState::CommitMessage)
            .await
            .unwrap();
        wait_until("the killed producer's message, committed by the check-back", || {
            seen.lock().unwrap().contains("killed-mid-transaction")
        })
        .await;
        assert!(asked.lock().unwrap().contains(&msg_id));
        survivor.shutdown().await;
        consumer.shutdown().await;
    });
}
