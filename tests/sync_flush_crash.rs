//! Process-crash durability: a broker killed with SIGKILL in the middle of a send loop and
//! restarted still delivers every message that was answered SEND_OK, under SYNC_FLUSH and under
//! ASYNC_FLUSH too (a SIGKILL is not a power cut: what reached the page cache survives it, and
//! the broker commits staged CommitLog writes to the file before it answers).

// Real-binary tests drive child processes from plain threads; the determinism rules are for
// cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rmq_client::{ClientConfig, Message, Producer, PullConsumer, PullStatus, SendStatus};
use rmq_rt::RealEnv;

const TOPIC: &str = "CrashTopic";

#[test]
fn acknowledged_sync_flush_messages_survive_sigkill() {
    acknowledged_messages_survive_sigkill("SYNC_FLUSH");
}

#[test]
fn acknowledged_async_flush_messages_survive_sigkill() {
    acknowledged_messages_survive_sigkill("ASYNC_FLUSH");
}

/// The restarted broker takes its old port back, and its HA port (the next one) with it: the
/// two tests run one at a time so neither's ephemeral ports can be the other's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn acknowledged_messages_survive_sigkill(flush: &str) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let ns = common::namesrv();
    let store = tempfile::tempdir().unwrap();
    let conf = store.path().join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "brokerName=crash-b\nflushDiskType={flush}\nflushIntervalCommitLog=60000\nmappedFileSizeCommitLog=262144\nmappedFileSizeConsumeQueue=6000\n"
        ),
    )
    .unwrap();
    let data = store.path().join("data");
    let broker = common::broker(&ns.addr, &data, "127.0.0.1:0", Some(&conf));
    let port = broker.addr.rsplit_once(':').unwrap().1.to_string();
    common::mqadmin(&["updateTopic", "-n", &ns.addr, "-t", TOPIC, "-r", "4", "-w", "4"]);
    common::wait_for_route(&ns.addr, TOPIC);

    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sender = {
        let (acked, acked_count, ns_addr) = (acked.clone(), acked_count.clone(), ns.addr.clone());
        std::thread::spawn(move || {
            rt.block_on(async move {
                let mut cfg = ClientConfig::new(&ns_addr, "crash_producer");
                cfg.retry_times_when_send_failed = 0;
                cfg.send_timeout_ms = 1_000;
                let p = Producer::start(RealEnv::default(), cfg);
                let mut failures = 0;
                for i in 0..100_000 {
                    match p.send(Message::new(TOPIC, format!("m{i}").into_bytes())).await {
                        Ok(r) if r.status == SendStatus::SendOk => {
                            acked.lock().unwrap().insert(format!("m{i}"));
                            acked_count.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {
                            failures += 1;
                            if failures > 20 {
                                break;
                            }
                        }
                    }
                }
            })
        })
    };
    while acked_count.load(Ordering::SeqCst) < 300 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    broker.kill9();
    sender.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let _broker2 = common::broker(&ns.addr, &data, &format!("127.0.0.1:{port}"), Some(&conf));
    common::wait_for_route(&ns.addr, TOPIC);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let consumed = rt.block_on(async {
        let c = PullConsumer::new(RealEnv::default(), ClientConfig::new(&ns.addr, "crash_check"));
        let mut got = BTreeSet::new();
        for mq in c.fetch_queues(TOPIC).await.unwrap() {
            let mut offset = 0;
            loop {
                let r = c.pull(&mq, "*", offset, 32, 0).await.unwrap();
                if r.status != PullStatus::Found {
                    break;
                }
                got.extend(r.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
                offset = r.next_begin_offset;
            }
        }
        got
    });
    let lost: Vec<&String> = acked.difference(&consumed).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost after SIGKILL, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!("acked={} stored={}", acked.len(), consumed.len());

    // The simulator's oracle judges the history recorded from the real processes: SEND_OK
    // keys from the producer, deliveries from a real push consumer, and what the broker holds.
    let mut history = rmq_sim::oracle::History::default();
    for k in &acked {
        history.acked.insert(k.clone(), (0, 0));
    }
    let delivered = rt.block_on(async {
        let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let s2 = seen.clone();
        let mut cfg = ClientConfig::new(&ns.addr, "crash_push");
        cfg.consume_from_where = rmq_client::ConsumeFromWhere::FirstOffset;
        cfg.rebalance_interval_ms = 300;
        let c = rmq_client::PushConsumer::start(RealEnv::default(), cfg, &[(TOPIC, "*")], move |msgs| {
            let mut s = s2.lock().unwrap();
            for m in msgs {
                s.insert(String::from_utf8_lossy(&m.body).into_owned());
            }
            rmq_client::ConsumeResult::Success
        })
        .await
        .unwrap();
        for _ in 0..600 {
            if seen.lock().unwrap().len() >= consumed.len() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        c.shutdown().await;
        let got = seen.lock().unwrap().clone();
        got
    });
    for k in &delivered {
        history.delivered(0, k, 0, 0, 0);
    }
    let findings = rmq_sim::oracle::check_history(&history, &consumed, false, false);
    assert_eq!(
        findings.verdict,
        rmq_sim::Verdict::Pass,
        "oracle over the real-binary history: {:?}",
        findings.problems
    );
}
