//! What a peer can make a server hold is bounded (issue #7, item 3): a connection cap that
//! refuses politely, an idle timeout, a global budget for bytes of frames still arriving, and a
//! per-connection budget for responses the peer does not read. Each test runs the real
//! `mqbroker` (or `mqnamesrv`) binary with the limit set in its config file.

// Real-binary tests drive child processes from plain threads; the determinism rules are for
// cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use rmq_client::{ClientConfig, Message, Producer};
use rmq_proto::frame::encode_to_bytes;
use rmq_proto::header::PullMessageRequestHeader;
use rmq_proto::{RemotingCommand, RequestCode};
use rmq_rt::RealEnv;

/// GET_BROKER_RUNTIME_INFO: a request every broker answers without arguments.
const RUNTIME_INFO: i32 = 28;

fn conf(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("broker.conf");
    std::fs::write(&path, text).unwrap();
    path
}

/// True if `s` is still open after `wait` (nothing arrives and no EOF).
fn still_open(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1];
    matches!(s.read(&mut buf), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

fn runtime_info_ok(addr: &str) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    common::call(&mut s, &RemotingCommand::request(RUNTIME_INFO, 5)).code == 0
}

#[test]
fn connections_beyond_the_cap_are_refused_with_system_busy_and_slots_come_back() {
    let ns = common::namesrv();
    let store = tempfile::tempdir().unwrap();
    let c = conf(&store, "serverMaxConnections=3\n");
    let broker = common::broker(&ns.addr, &store.path().join("s"), "127.0.0.1:0", Some(&c));

    let mut held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&broker.addr).unwrap()).collect();
    for s in &mut held {
        assert_eq!(common::call(s, &RemotingCommand::request(RUNTIME_INFO, 1)).code, 0);
    }
    // The fourth is answered SYSTEM_BUSY, naming the limit, and closed.
    let mut extra = TcpStream::connect(&broker.addr).unwrap();
    extra.write_all(&encode_to_bytes(&RemotingCommand::request(RUNTIME_INFO, 9)).unwrap()).unwrap();
    let resp = read_one(&mut extra);
    assert_eq!((resp.opaque, resp.code), (9, 2), "SYSTEM_BUSY: {:?}", resp.remark);
    assert!(resp.remark.as_deref().unwrap_or("").contains("at most 3 connections"), "{:?}", resp.remark);
    assert!(common::closed_by_peer(&mut extra));

    // Closing one frees its slot (the broker notices the close asynchronously).
    drop(held.pop());
    let served = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        let mut s = TcpStream::connect(&broker.addr).unwrap();
        s.write_all(&encode_to_bytes(&RemotingCommand::request(RUNTIME_INFO, 3)).unwrap()).unwrap();
        read_one(&mut s).code == 0
    });
    assert!(served, "a freed slot is reused");
    drop(broker);
}

#[test]
fn idle_connections_are_closed_and_busy_ones_are_not() {
    let ns = common::namesrv();
    let store = tempfile::tempdir().unwrap();
    let c = conf(&store, "serverChannelMaxIdleTimeSeconds=1\n");
    let broker = common::broker(&ns.addr, &store.path().join("s"), "127.0.0.1:0", Some(&c));

    let mut idle = TcpStream::connect(&broker.addr).unwrap();
    let mut busy = TcpStream::connect(&broker.addr).unwrap();
    // Half a frame, then silence: a slow-loris peer is idle too.
    let mut half = TcpStream::connect(&broker.addr).unwrap();
    half.write_all(&[0, 0, 0, 100, 0, 0]).unwrap();
    for i in 0..12 {
        assert_eq!(common::call(&mut busy, &RemotingCommand::request(RUNTIME_INFO, i)).code, 0, "request {i}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(common::closed_by_peer(&mut idle), "an idle connection is closed");
    assert!(common::closed_by_peer(&mut half), "a connection stalled mid-frame is closed");
    assert!(runtime_info_ok(&broker.addr), "the broker keeps serving");
    drop(broker);
}

#[test]
fn frames_beyond_the_incomplete_frame_budget_close_their_connections() {
    let ns = common::namesrv();
    let store = tempfile::tempdir().unwrap();
    // Room for two 16 MiB frames in flight, not three.
    let c = conf(&store, "serverIncompleteFramesMaxBytes=33554440\n");
    let broker = common::broker(&ns.addr, &store.path().join("s"), "127.0.0.1:0", Some(&c));

    let frame_len: u32 = 16 << 20;
    let mut slow: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut s = TcpStream::connect(&broker.addr).unwrap();
            s.write_all(&frame_len.to_be_bytes()).unwrap();
            s.write_all(&[0u8; 4096]).unwrap();
            s
        })
        .collect();
    let closed = slow.iter_mut().map(|s| still_open(s, Duration::from_secs(2))).filter(|open| !open).count();
    assert_eq!(closed, 4, "two 16 MiB frames fit the budget; the other four connections are closed");
    assert!(runtime_info_ok(&broker.addr), "small requests are served meanwhile");

    // The budget comes back when the slow peers leave: a new large frame is accepted.
    drop(slow);
    let accepted = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        let mut s = TcpStream::connect(&broker.addr).unwrap();
        s.write_all(&frame_len.to_be_bytes()).unwrap();
        s.write_all(&[0u8; 4096]).unwrap();
        still_open(&mut s, Duration::from_millis(300))
    });
    assert!(accepted, "the budget is released by closed connections");
    drop(broker);
}

#[test]
fn a_peer_that_does_not_read_its_responses_is_closed() {
    let ns = common::namesrv();
    let store = tempfile::tempdir().unwrap();
    let c = conf(&store, "serverOutboundMaxBytes=1048576\n");
    let broker = common::broker(&ns.addr, &store.path().join("s"), "127.0.0.1:0", Some(&c));

    // 64 messages of 4 KiB over the topic's queues: every pull below returns a queue's share.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let queue = rt.block_on(async {
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "unread_p"));
        let mut first = None;
        for _ in 0..64 {
            let r = p.send(Message::new("Unread", vec![7u8; 4096])).await.unwrap();
            first.get_or_insert(r.queue);
        }
        first.unwrap()
    });
    let pull = |opaque: i32| {
        let h = PullMessageRequestHeader {
            consumer_group: "unread_c".into(),
            topic: "Unread".into(),
            queue_id: queue.queue_id,
            queue_offset: 0,
            max_msg_nums: 32,
            sys_flag: 0,
            commit_offset: 0,
            suspend_timeout_millis: 0,
            subscription: Some("*".into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            max_msg_bytes: None,
            broker_name: None,
        };
        encode_to_bytes(&RemotingCommand::request_with(RequestCode::PullMessage, opaque, &h)).unwrap()
    };
    // 1,000 pipelined pulls (about 40 KB sent) ask for far more than the kernel's socket
    // buffers plus the 1 MiB budget can hold while nobody reads.
    let mut greedy = TcpStream::connect(&broker.addr).unwrap();
    greedy.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sent = 0;
    for i in 0..1000 {
        if greedy.write_all(&pull(i)).is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > 0);
    std::thread::sleep(Duration::from_millis(500));
    // Draining now reaches EOF: the broker closed the socket instead of queueing 128 MB.
    let mut got = 0usize;
    greedy.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let eof = loop {
        match greedy.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(eof, "the broker closed the connection of a peer that does not read ({got} bytes arrived)");
    assert!(got < 64 << 20, "far fewer bytes than the 1,000 responses would take: {got}");
    // Closed for real, not just shut for writing: requests sent now meet a reset.
    let refused = (0..100).any(|i| {
        std::thread::sleep(Duration::from_millis(20));
        greedy.write_all(&pull(2000 + i)).is_err()
    });
    assert!(refused, "the broker still reads from a connection it gave up on");
    assert!(runtime_info_ok(&broker.addr), "the broker keeps serving");
    drop(broker);
}

#[test]
fn the_name_server_takes_the_same_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("namesrv.conf");
    std::fs::write(&path, "serverMaxConnections=1\n").unwrap();
    let path_s = path.to_string_lossy().into_owned();
    let ns = common::spawn(
        env!("CARGO_BIN_EXE_mqnamesrv"),
        &["--listen", "127.0.0.1:0", "-c", &path_s],
        "boot success",
        "address ",
    );
    let mut first = TcpStream::connect(&ns.addr).unwrap();
    // GET_ALL_TOPIC_LIST_FROM_NAMESERVER (206).
    assert_eq!(common::call(&mut first, &RemotingCommand::request(206, 1)).code, 0);
    let mut second = TcpStream::connect(&ns.addr).unwrap();
    second.write_all(&encode_to_bytes(&RemotingCommand::request(206, 2)).unwrap()).unwrap();
    assert_eq!(read_one(&mut second).code, 2, "SYSTEM_BUSY beyond one connection");
}

/// Reads one response frame (5 s at most).
fn read_one(s: &mut TcpStream) -> RemotingCommand {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut dec = rmq_proto::frame::FrameDecoder::default();
    let mut buf = bytes::BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(cmd) = dec.decode(&mut buf).unwrap() {
            return cmd;
        }
        let n = s.read(&mut chunk).expect("a response within 5 s");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}
