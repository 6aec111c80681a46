//! Message ids (UNIQ_KEY) as RocketMQ's MessageClientIDSetter makes them: a prefix fixed for
//! the producer (client IP, process id, client hash), then the time and a counter.

// Real-socket tests start processes and read their output on threads; the determinism rules
// are for cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use rmq_client::{ClientConfig, Message, Producer, PullConsumer, PullStatus};
use rmq_proto::message::prop;
use rmq_rt::RealEnv;

/// A NameServer, a temp dir and one broker storing in it. Bind them in this order: locals drop
/// in reverse, so the broker stops before its store is deleted.
fn cluster() -> (common::Proc, tempfile::TempDir, common::Proc) {
    let ns = common::namesrv();
    let dir = tempfile::tempdir().unwrap();
    let broker = common::broker(&ns.addr, &dir.path().join("store"), "127.0.0.1:0", None);
    (ns, dir, broker)
}

#[test]
fn a_producers_message_ids_share_one_prefix_and_differ_after_it() {
    let (ns, _dir, _broker) = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ids: Vec<String> = rt.block_on(async {
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "ids_producer"));
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(p.send(Message::new("Ids", format!("m{i}").into_bytes())).await.unwrap().msg_id);
            // Milliseconds pass between the sends: only the time and counter fields may change.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        p.shutdown().await;
        ids
    });
    // 16 bytes in hex: IP (8 chars), pid (4), client hash (8), time (8), counter (4).
    assert!(ids.iter().all(|id| id.len() == 32), "{ids:?}");
    assert!(ids.iter().all(|id| id[..20] == ids[0][..20]), "one prefix per producer: {ids:?}");
    assert_eq!(ids[0][8..12], format!("{:04X}", std::process::id() as u16), "the pid field: {ids:?}");
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
}

/// What a send puts in the stored properties: its id under UNIQ_KEY and, for a single message,
/// WAIT=true (RocketMQ's waitStoreMsgOK); the user's own properties pass through; a batch's
/// messages carry no WAIT.
#[test]
fn a_sent_message_is_stored_with_its_id_and_wait_and_a_batch_without_wait() {
    let (ns, _dir, _broker) = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "props_producer"));
        let mut one = Message::new("Props", &b"one"[..]);
        one.properties.insert("KEYS".into(), "k1".into());
        let single = p.send(one).await.unwrap();
        let batch =
            p.send_batch(vec![Message::new("Props", &b"b1"[..]), Message::new("Props", &b"b2"[..])]).await.unwrap();
        p.shutdown().await;
        let ns_addr = ns.addr.clone();
        tokio::task::spawn_blocking(move || common::wait_for_route(&ns_addr, "Props")).await.unwrap();
        let c = PullConsumer::new(RealEnv::default(), ClientConfig::new(&ns.addr, "props_reader"));
        let got = c.pull(&single.queue, "*", single.queue_offset as u64, 1, 0).await.unwrap();
        assert_eq!(got.status, PullStatus::Found);
        let stored = &got.messages[0].properties;
        assert_eq!(stored.get(prop::UNIQ_KEY), Some(&single.msg_id), "{stored:?}");
        assert_eq!(stored.get(prop::WAIT).map(String::as_str), Some("true"), "{stored:?}");
        assert_eq!(stored.get("KEYS").map(String::as_str), Some("k1"), "{stored:?}");
        let got = c.pull(&batch.queue, "*", batch.queue_offset as u64, 2, 0).await.unwrap();
        assert_eq!(got.messages.len(), 2, "{got:?}");
        for m in &got.messages {
            assert!(m.properties.contains_key(prop::UNIQ_KEY) && !m.properties.contains_key(prop::WAIT), "{m:?}");
        }
    });
}
