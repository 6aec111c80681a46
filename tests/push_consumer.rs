//! Push consumers against a real broker: CLUSTERING splits queues and a surviving member takes
//! over a departed member's queues; RECONSUME_LATER redelivers through the retry topic;
//! BROADCASTING gives every member every message; key-ordered sends arrive in order.

// Real-binary tests drive child processes from plain threads.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmq_client::{ClientConfig, ConsumeFromWhere, ConsumeResult, Message, MessageModel, Producer, PushConsumer};
use rmq_rt::RealEnv;

fn fast(ns: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new(ns, group);
    c.rebalance_interval_ms = 300;
    c.heartbeat_interval_ms = 300;
    c.persist_offset_interval_ms = 200;
    c.pull_suspend_ms = 1_000;
    c.consume_from_where = ConsumeFromWhere::FirstOffset;
    c
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    wait_for(what, || std::future::ready(ok())).await
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut ok: impl FnMut() -> F) {
    for _ in 0..400 {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn owned(c: &PushConsumer<RealEnv>, topic: &str) -> usize {
    c.owned_queues().await.iter().filter(|q| q.topic == topic).count()
}

fn cluster(topic: &str) -> (common::Proc, common::Proc, tempfile::TempDir) {
    let ns = common::namesrv();
    let store = tempfile::tempdir().unwrap();
    let broker = common::broker(&ns.addr, store.path(), "127.0.0.1:0", None);
    common::mqadmin(&["updateTopic", "-n", &ns.addr, "-t", topic, "-r", "4", "-w", "4"]);
    common::wait_for_route(&ns.addr, topic);
    (ns, broker, store)
}

#[test]
fn clustering_splits_queues_and_takes_over_a_departed_member() {
    let (ns, _broker, _store) = cluster("PushT");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let seen: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
        let listener = |name: &'static str, seen: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>| {
            move |msgs: &[rmq_client::MessageExt]| {
                let mut s = seen.lock().unwrap();
                for m in msgs {
                    s.entry(name.to_string()).or_default().insert(String::from_utf8_lossy(&m.body).into_owned());
                }
                ConsumeResult::Success
            }
        };
        let mut c1cfg = fast(&ns.addr, "PushG");
        c1cfg.instance_name = Some("c1".into());
        let mut c2cfg = fast(&ns.addr, "PushG");
        c2cfg.instance_name = Some("c2".into());
        let c1 = PushConsumer::start(RealEnv::default(), c1cfg, &[("PushT", "*")], listener("c1", seen.clone()))
            .await
            .unwrap();
        let c2 = PushConsumer::start(RealEnv::default(), c2cfg, &[("PushT", "*")], listener("c2", seen.clone()))
            .await
            .unwrap();
        wait_for("a 2-2 queue split", || async { owned(&c1, "PushT").await == 2 && owned(&c2, "PushT").await == 2 })
            .await;

        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "PushP"));
        for i in 0..40 {
            p.send(Message::new("PushT", format!("a{i}").into_bytes())).await.unwrap();
        }
        wait_until("first 40 consumed", || seen.lock().unwrap().values().map(BTreeSet::len).sum::<usize>() == 40).await;
        assert_eq!(seen.lock().unwrap().len(), 2, "both members consumed");

        c2.shutdown().await;
        wait_for("c1 owns all 4 queues", || async { owned(&c1, "PushT").await == 4 }).await;
        for i in 0..40 {
            p.send(Message::new("PushT", format!("b{i}").into_bytes())).await.unwrap();
        }
        wait_until("c1 consumed every later message", || {
            seen.lock().unwrap().get("c1").is_some_and(|s| s.iter().filter(|b| b.starts_with('b')).count() == 40)
        })
        .await;
        let all: BTreeSet<String> = seen.lock().unwrap().values().flatten().cloned().collect();
        assert_eq!(all.len(), 80);
        c1.shutdown().await;
        p.shutdown().await;
    });
}

#[test]
fn reconsume_later_redelivers_through_the_retry_topic() {
    let (ns, _broker, _store) = cluster("RetryT");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let attempts: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
        let a2 = attempts.clone();
        let c = PushConsumer::start(RealEnv::default(), fast(&ns.addr, "RetryG"), &[("RetryT", "*")], move |msgs| {
            let mut a = a2.lock().unwrap();
            for m in msgs {
                a.push((m.topic.clone(), m.reconsume_times));
            }
            if msgs.iter().all(|m| m.reconsume_times == 0) {
                ConsumeResult::ReconsumeLater
            } else {
                ConsumeResult::Success
            }
        })
        .await
        .unwrap();
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "RetryP"));
        p.send(Message::new("RetryT", &b"fail once"[..])).await.unwrap();
        // First retry waits delay level 3 (10 s) in the broker's schedule topic.
        for _ in 0..300 {
            if attempts.lock().unwrap().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let a = attempts.lock().unwrap().clone();
        assert_eq!(
            a,
            vec![("RetryT".to_string(), 0), ("RetryT".to_string(), 1)],
            "delivered, failed, redelivered with the original topic"
        );
        c.shutdown().await;
        p.shutdown().await;
    });
}

#[test]
fn broadcasting_gives_every_member_every_message() {
    let (ns, _broker, _store) = cluster("BcastT");
    let offsets = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let counts: Arc<Mutex<BTreeMap<&'static str, usize>>> = Arc::default();
        let mut members = Vec::new();
        for name in ["m1", "m2"] {
            let mut cfg = fast(&ns.addr, "BcastG");
            cfg.message_model = MessageModel::Broadcasting;
            cfg.instance_name = Some(name.into());
            cfg.local_offset_store_dir = Some(offsets.path().into());
            let counts = counts.clone();
            members.push(
                PushConsumer::start(RealEnv::default(), cfg, &[("BcastT", "*")], move |msgs| {
                    *counts.lock().unwrap().entry(name).or_default() += msgs.len();
                    ConsumeResult::Success
                })
                .await
                .unwrap(),
            );
        }
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "BcastP"));
        for i in 0..20 {
            p.send(Message::new("BcastT", format!("{i}").into_bytes())).await.unwrap();
        }
        wait_until("both members saw all 20", || {
            let c = counts.lock().unwrap();
            c.get("m1") == Some(&20) && c.get("m2") == Some(&20)
        })
        .await;
        for m in members {
            m.shutdown().await;
        }
    });
}

#[test]
fn a_restarted_broadcasting_member_resumes_from_its_saved_offsets() {
    let (ns, _broker, _store) = cluster("BcastR");
    let offsets = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut cfg = fast(&ns.addr, "BcastRG");
        cfg.message_model = MessageModel::Broadcasting;
        cfg.local_offset_store_dir = Some(offsets.path().into());
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let start = |seen: Arc<Mutex<Vec<String>>>| {
            PushConsumer::start(RealEnv::default(), cfg.clone(), &[("BcastR", "*")], move |msgs| {
                seen.lock().unwrap().extend(msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
                ConsumeResult::Success
            })
        };
        let mut clustering = cfg.clone();
        clustering.message_model = MessageModel::Clustering;
        let refused =
            PushConsumer::start(RealEnv::default(), clustering, &[("BcastR", "*")], |_| ConsumeResult::Success)
                .await
                .expect_err("a clustering consumer has no local offsets: the setting is refused, not ignored");
        assert!(refused.to_string().contains("local_offset_store_dir"), "{refused}");
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "BcastRP"));
        let c = start(seen.clone()).await.unwrap();
        assert_eq!(c.client_id(), "127.0.0.1@DEFAULT", "a broadcasting member keeps its client id across restarts");
        for i in 0..10 {
            p.send(Message::new("BcastR", format!("{i}").into_bytes())).await.unwrap();
        }
        wait_until("the first 10", || seen.lock().unwrap().len() == 10).await;
        c.shutdown().await;
        let file = offsets.path().join("127.0.0.1@DEFAULT").join("BcastRG").join("offsets.json");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("offsetTable") && text.contains("BcastR"), "{text}");
        // Sent while the member is down; it starts from the first offset of a queue it has no
        // saved offset for, so without the file it would read all 20 again.
        for i in 10..20 {
            p.send(Message::new("BcastR", format!("{i}").into_bytes())).await.unwrap();
        }
        let again: Arc<Mutex<Vec<String>>> = Arc::default();
        let c = start(again.clone()).await.unwrap();
        wait_until("the 10 sent while down", || again.lock().unwrap().len() >= 10).await;
        c.shutdown().await;
        let mut got: Vec<u32> = again.lock().unwrap().iter().map(|b| b.parse().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (10..20).collect::<Vec<_>>(), "resumes where it stopped, nothing read twice");
        p.shutdown().await;
    });
}

#[test]
fn key_ordered_sends_arrive_in_order_per_key() {
    let (ns, _broker, _store) = cluster("OrderT");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let got: Arc<Mutex<BTreeMap<String, Vec<u32>>>> = Arc::default();
        let g2 = got.clone();
        let c = PushConsumer::start(RealEnv::default(), fast(&ns.addr, "OrderG"), &[("OrderT", "*")], move |msgs| {
            for m in msgs {
                let body = String::from_utf8_lossy(&m.body).into_owned();
                let (key, step) = body.split_once(':').unwrap();
                g2.lock().unwrap().entry(key.to_string()).or_default().push(step.parse().unwrap());
            }
            ConsumeResult::Success
        })
        .await
        .unwrap();
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "OrderP"));
        for step in 0..10u32 {
            for key in ["order-1", "order-2", "order-3", "order-4", "order-5"] {
                p.send_orderly(Message::new("OrderT", format!("{key}:{step}").into_bytes()), key).await.unwrap();
            }
        }
        wait_until("50 consumed", || got.lock().unwrap().values().map(Vec::len).sum::<usize>() == 50).await;
        for (key, steps) in got.lock().unwrap().iter() {
            assert_eq!(steps, &(0..10).collect::<Vec<_>>(), "{key} out of order");
        }
        c.shutdown().await;
    });
}
