//! Master/slave replication with the real binaries (issue #8): under SYNC_FLUSH + SYNC_MASTER
//! every message answered SEND_OK survives a SIGKILL of the master, and is consumed from the
//! slave; the restarted master resumes replication with nothing lost or duplicated.

// Real-binary tests drive child processes from plain threads; the determinism rules are for
// cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rmq_client::{ClientConfig, Message, MessageQueue, Producer, PullConsumer, PullStatus, SendStatus};
use rmq_rt::RealEnv;

fn write_conf(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Everything one queue holds, from offset 0, through whatever address the route gives.
async fn drain(namesrv: &str, mq: &MessageQueue) -> Result<Vec<(u64, String)>, String> {
    let c = PullConsumer::new(RealEnv::default(), ClientConfig::new(namesrv, "rep_reader"));
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        let got = c.pull(mq, "*", offset, 32, 0).await.map_err(|e| e.to_string())?;
        match got.status {
            PullStatus::Found => {
                for m in &got.messages {
                    out.push((m.queue_offset as u64, String::from_utf8_lossy(&m.body).into_owned()));
                }
                offset = got.next_begin_offset;
            }
            _ => return Ok(out),
        }
    }
}

#[test]
fn sync_master_send_ok_survives_a_sigkilled_master_and_replication_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::namesrv();
    let master_conf = write_conf(
        dir.path(),
        "master.conf",
        "brokerName=rep\nbrokerId=0\nbrokerRole=SYNC_MASTER\nflushDiskType=SYNC_FLUSH\nhaSendHeartbeatInterval=1000\n",
    );
    let master_store = dir.path().join("master");
    let mut master = common::broker(&ns.addr, &master_store, "127.0.0.1:0", Some(&master_conf));
    let ha = master.line.rsplit("HA listening on ").next().unwrap().trim().to_string();
    assert!(ha.parse::<std::net::SocketAddr>().is_ok(), "master prints its HA address: {}", master.line);
    let slave_conf = write_conf(
        dir.path(),
        "slave.conf",
        // No haMasterAddress: the slave learns it from the NameServer's registration answer.
        "brokerName=rep\nbrokerId=1\nbrokerRole=SLAVE\nflushDiskType=SYNC_FLUSH\nhaSendHeartbeatInterval=1000\n",
    );
    let slave = common::broker(&ns.addr, &dir.path().join("slave"), "127.0.0.1:0", Some(&slave_conf));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // SEND_OK answers by queue, and how many sends were answered otherwise.
    let (acked, others) = rt.block_on(async {
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "rep_p"));
        let sender = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acked: BTreeMap<MessageQueue, Vec<(u64, String)>> = BTreeMap::new();
                let mut others = 0;
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    let body = format!("rep-{i:05}");
                    i += 1;
                    match p.send(Message::new("Rep", body.clone().into_bytes())).await {
                        Ok(r) if r.status == SendStatus::SendOk => {
                            acked.entry(r.queue).or_default().push((r.queue_offset as u64, body))
                        }
                        _ => others += 1,
                    }
                }
                (acked, others)
            })
        };
        // Mid-load: once 300 sends were confirmed by the slave, the master dies.
        let ns_addr = ns.addr.clone();
        tokio::task::spawn_blocking(move || common::wait_for_route(&ns_addr, "Rep")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        master.child.kill().unwrap();
        master.child.wait().unwrap();
        stop.store(true, Ordering::Release);
        sender.await.unwrap()
    });
    let total: usize = acked.values().map(Vec::len).sum();
    assert!(total >= 50, "only {total} sends were confirmed before the kill ({others} were not)");

    // Everything confirmed is on the slave, read through the route (the master is gone).
    let consumed = rt.block_on(async {
        let mut consumed = BTreeMap::new();
        for mq in acked.keys() {
            let mut last = String::new();
            let mut got = None;
            for _ in 0..100 {
                match drain(&ns.addr, mq).await {
                    Ok(v) => {
                        got = Some(v);
                        break;
                    }
                    Err(e) => last = e,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            consumed.insert(mq.clone(), got.unwrap_or_else(|| panic!("cannot read {mq:?} from the slave: {last}")));
        }
        consumed
    });
    for (mq, sent) in &acked {
        let have: BTreeSet<&(u64, String)> = consumed[mq].iter().collect();
        for m in sent {
            assert!(have.contains(m), "SEND_OK message {m:?} of {mq:?} is not on the slave");
        }
    }

    // The slave refuses sends with RocketMQ's code (it serves the reads above).
    let mut raw = std::net::TcpStream::connect(&slave.addr).unwrap();
    let h = rmq_proto::header::SendMessageRequestHeader {
        producer_group: "rep_raw".into(),
        topic: "Rep".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        ..Default::default()
    };
    let mut req = rmq_proto::RemotingCommand::request(rmq_proto::codes::RequestCode::SendMessageV2, 1)
        .with_body(b"to-the-slave".to_vec());
    req.ext_fields = h.to_ext_v2();
    let resp = common::call(&mut raw, &req);
    assert_eq!(resp.code, rmq_proto::ResponseCode::ServiceNotAvailable.code(), "{resp:?}");

    // The master comes back on its store; the slave reconnects and confirms new sends again.
    let master = common::broker(&ns.addr, &master_store, "127.0.0.1:0", Some(&master_conf));
    let ha2 = master.line.rsplit("HA listening on ").next().unwrap().trim().to_string();
    // A new ephemeral HA port: the slave is pointed at the old one, so restart it too.
    drop(slave);
    let slave_conf = write_conf(
        dir.path(),
        "slave.conf",
        &format!(
            "brokerName=rep\nbrokerId=1\nbrokerRole=SLAVE\nflushDiskType=SYNC_FLUSH\nhaMasterAddress={ha2}\nhaSendHeartbeatInterval=1000\n"
        ),
    );
    let _slave = common::broker(&ns.addr, &dir.path().join("slave"), "127.0.0.1:0", Some(&slave_conf));
    rt.block_on(async {
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "rep_p2"));
        let mut confirmed = 0;
        for i in 0..200 {
            if let Ok(r) = p.send(Message::new("Rep", format!("after-{i}").into_bytes())).await {
                if r.status == SendStatus::SendOk {
                    confirmed += 1;
                }
            }
            if confirmed >= 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(confirmed >= 20, "replication did not resume after the master restarted");
        // No queue holds a message twice, and master and slave hold the same sequence.
        for mq in acked.keys() {
            let on_master = drain(&ns.addr, mq).await.unwrap();
            let bodies: BTreeSet<&String> = on_master.iter().map(|(_, b)| b).collect();
            assert_eq!(bodies.len(), on_master.len(), "a duplicate in {mq:?}");
            assert!(on_master.iter().enumerate().all(|(i, (o, _))| *o == i as u64), "offsets of {mq:?} are dense");
        }
    });
    drop(master);
}
