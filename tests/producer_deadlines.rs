//! A producer keeps its own deadlines: a send whose route never comes fails at the send
//! timeout, not when the route request itself gives up. (Its background task must wake for a
//! new send's deadline; a broken wake shows here as a failure only after the 3 s route RPC.)

// Real-socket tests use the wall clock to bound waits; the determinism rules are for cores
// and drivers.
#![allow(clippy::disallowed_methods)]

use rmq_client::{ClientConfig, Message, Producer, SendError};
use rmq_rt::RealEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_without_a_route_fails_at_its_own_deadline() {
    // A "NameServer" that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let mut cfg = ClientConfig::new(&addr, "deadline_producer");
    cfg.send_timeout_ms = 300;
    cfg.retry_times_when_send_failed = 0;
    let p = Producer::start(RealEnv::default(), cfg);
    // Let the background task settle into a long sleep (no sends, no topics yet).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let r = p.send(Message::new("Nowhere", b"x".to_vec())).await;
    let took = started.elapsed();
    assert!(matches!(r, Err(SendError::NoRoute { .. })), "{r:?}");
    // The route request times out after 3 s; the send's own deadline is 300 ms.
    assert!(took < std::time::Duration::from_millis(2_000), "failed after {took:?}, not at its 300 ms deadline");
    p.shutdown().await;
    drop(silent);
}
