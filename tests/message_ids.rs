//! Message ids (UNIQ_KEY) as RocketMQ's MessageClientIDSetter makes them: a prefix fixed for
//! the producer (client IP, process id, client hash), then the time and a counter.

// Real-socket tests start processes and read their output on threads; the determinism rules
// are for cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use rmq_client::{ClientConfig, Message, Producer};
use rmq_rt::RealEnv;

#[test]
fn a_producers_message_ids_share_one_prefix_and_differ_after_it() {
    let ns = common::namesrv();
    let dir = tempfile::tempdir().unwrap();
    let _broker = common::broker(&ns.addr, &dir.path().join("store"), "127.0.0.1:0", None);
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
