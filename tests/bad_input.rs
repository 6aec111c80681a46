//! Garbage, truncated and oversized frames get their connection closed while the broker keeps
//! serving everyone else; unknown codes get REQUEST_CODE_NOT_SUPPORTED.

// Real-binary tests drive child processes from plain threads; the determinism rules are for
// cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rmq_client::{ClientConfig, Message, Producer, PullConsumer, PullStatus};
use rmq_proto::frame::{encode_to_bytes, FrameDecoder};
use rmq_proto::RemotingCommand;
use rmq_rt::RealEnv;

#[test]
fn malformed_frames_close_only_their_connection() {
    let ns = common::namesrv();
    let store = tempfile::tempdir().unwrap();
    let broker = common::broker(&ns.addr, store.path(), "127.0.0.1:0", None);

    // A healthy connection opened first must keep working throughout.
    let mut healthy = TcpStream::connect(&broker.addr).unwrap();

    let mut oversized = TcpStream::connect(&broker.addr).unwrap();
    oversized.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]).unwrap();
    assert!(common::closed_by_peer(&mut oversized), "oversized frame closes the connection");

    let mut junk_header = TcpStream::connect(&broker.addr).unwrap();
    junk_header.write_all(&[0, 0, 0, 9, 0, 0, 0, 5, b'{', b'n', b'o', b'p', b'e']).unwrap();
    assert!(common::closed_by_peer(&mut junk_header), "undecodable header closes the connection");

    let mut garbage = TcpStream::connect(&broker.addr).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(common::closed_by_peer(&mut garbage), "non-RocketMQ bytes close the connection");

    let mut truncated = TcpStream::connect(&broker.addr).unwrap();
    truncated.write_all(&[0, 0, 0, 100, 0, 0, 0, 2, b'{']).unwrap();
    drop(truncated);

    // Unknown request code on the healthy connection: a clear response code, not a close.
    let req = RemotingCommand::request(4242, 77);
    healthy.write_all(&encode_to_bytes(&req).unwrap()).unwrap();
    healthy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = bytes::BytesMut::new();
    let resp = loop {
        let mut chunk = [0u8; 4096];
        let n = healthy.read(&mut chunk).unwrap();
        assert!(n > 0, "healthy connection stays open");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(c) = FrameDecoder::default().decode(&mut buf).unwrap() {
            break c;
        }
    };
    assert_eq!(resp.opaque, 77);
    assert_eq!(resp.code, 3, "REQUEST_CODE_NOT_SUPPORTED");

    // And the broker still stores and serves messages.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "after_garbage"));
        let r = p.send(Message::new("AfterGarbage", &b"still alive"[..])).await.unwrap();
        // The auto-created topic reaches the NameServer with the broker's next registration.
        let ns_addr = ns.addr.clone();
        tokio::task::spawn_blocking(move || common::wait_for_route(&ns_addr, "AfterGarbage")).await.unwrap();
        let c = PullConsumer::new(RealEnv::default(), ClientConfig::new(&ns.addr, "after_garbage_c"));
        let got = c.pull(&r.queue, "*", r.queue_offset as u64, 1, 0).await.unwrap();
        assert_eq!(got.status, PullStatus::Found);
        assert_eq!(got.messages[0].body.as_ref(), b"still alive");
    });
    drop(broker);
}
