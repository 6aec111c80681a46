//! Orderly consumption with real processes: an orderly member in its own process consumes a
//! keyed topic from a real broker; a second member joins (the first drains, commits and
//! unlocks before the second takes its queues), then the first is killed with SIGKILL (its
//! locks expire at the broker after `rebalanceLockMaxLiveTime`, and only then does the
//! survivor consume its queues). Every message of a key is processed in order, by one member
//! at a time, and none is missed.

// Real-binary tests drive child processes from plain threads and read the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rmq_client::{ClientConfig, ConsumeFromWhere, ConsumeResult, Message, MessageExt, Producer, PushConsumer};
use rmq_rt::RealEnv;

const TOPIC: &str = "OrderKill";
const GROUP: &str = "OrderKillG";
const KEYS: u32 = 4;
const STEPS: u32 = 100;
/// The child's environment variable: the NameServer to consume from.
const CHILD_NS: &str = "RMQ_ORDERLY_CHILD_NS";

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

fn config(ns: &str) -> ClientConfig {
    let mut c = ClientConfig::new(ns, GROUP);
    c.rebalance_interval_ms = 300;
    c.heartbeat_interval_ms = 300;
    c.persist_offset_interval_ms = 200;
    c.pull_suspend_ms = 1_000;
    c.consume_from_where = ConsumeFromWhere::FirstOffset;
    // Scaled with the broker's 3 s rebalanceLockMaxLiveTime (RocketMQ: 20 s / 30 s / 60 s).
    c.rebalance_lock_interval_ms = 500;
    c.rebalance_lock_max_live_ms = 2_000;
    c
}

/// The application: 20 ms per message; says when it began and ended each one.
fn process(member: &'static str, msgs: &[MessageExt], out: &(dyn Fn(String) + Send + Sync)) -> ConsumeResult {
    for m in msgs {
        let body = String::from_utf8_lossy(&m.body).into_owned();
        out(format!("BEGIN {member} {body} {}", now_us()));
        std::thread::sleep(Duration::from_millis(20));
        out(format!("END {member} {body} {}", now_us()));
    }
    ConsumeResult::Success
}

/// Run by the test below as a separate process (`--ignored`, with [`CHILD_NS`] set): an
/// orderly member printing its processing to stdout until it is killed.
#[test]
#[ignore = "a child process of an_orderly_group_keeps_per_key_order_across_a_join_and_a_kill"]
fn orderly_member_process() {
    let Ok(ns) = std::env::var(CHILD_NS) else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let print = |line: String| println!("{line}");
        let _c = PushConsumer::start_orderly(RealEnv::default(), config(&ns), &[(TOPIC, "*")], move |msgs| {
            process("A", msgs, &print)
        })
        .await
        .unwrap();
        println!("READY");
        std::future::pending::<()>().await;
    });
}

/// (member, key, step, began µs, ended µs or None).
type Span = (String, String, u32, u128, Option<u128>);

fn spans(lines: &[String]) -> Vec<Span> {
    let mut open: BTreeMap<(String, String), (u32, u128)> = BTreeMap::new();
    let mut out = Vec::new();
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        let [what, member, body, at] = w[..] else { continue };
        let (key, step) = body.split_once(':').unwrap();
        let (step, at): (u32, u128) = (step.parse().unwrap(), at.parse().unwrap());
        match what {
            "BEGIN" => {
                open.insert((member.into(), key.into()), (step, at));
            }
            "END" => {
                let (s, began) = open.remove(&(member.into(), key.into())).expect("an END follows its BEGIN");
                assert_eq!(s, step);
                out.push((member.into(), key.into(), step, began, Some(at)));
            }
            _ => {}
        }
    }
    out.extend(open.into_iter().map(|((m, k), (s, b))| (m, k, s, b, None)));
    out
}

#[test]
fn an_orderly_group_keeps_per_key_order_across_a_join_and_a_kill() {
    let ns = common::namesrv();
    let (store, conf_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let conf = conf_dir.path().join("broker.conf");
    std::fs::write(&conf, "rebalanceLockMaxLiveTime=3000\n").unwrap();
    let _broker = common::broker(&ns.addr, store.path(), "127.0.0.1:0", Some(&conf));
    common::mqadmin(&["updateTopic", "-n", &ns.addr, "-t", TOPIC, "-r", "4", "-w", "4"]);
    common::wait_for_route(&ns.addr, TOPIC);

    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut child = common::KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "orderly_member_process", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_NS, &ns.addr)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let from_child = lines.clone();
    std::thread::spawn(move || {
        // The harness prints the test's name before its first line, on the same line.
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if l.ends_with("READY") {
                let _ = ready_tx.send(());
            } else if let Some(at) = l.find("BEGIN ").or_else(|| l.find("END ")) {
                from_child.lock().unwrap().push(l[at..].to_string());
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).expect("the child member started");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let killed_at = rt.block_on(async {
        let p = Producer::start(RealEnv::default(), ClientConfig::new(&ns.addr, "OrderKillP"));
        for step in 0..STEPS {
            for k in 0..KEYS {
                let key = format!("key{k}");
                p.send_orderly(Message::new(TOPIC, format!("{key}:{step}").into_bytes()), &key).await.unwrap();
            }
        }
        let done = |n: usize| {
            let l = lines.lock().unwrap();
            l.iter().filter(|l| l.starts_with("END ")).count() >= n
        };
        for _ in 0..400 {
            if done(20) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(done(20), "the child consumed");
        // B joins: the queues are split; A hands its share over.
        let to_b = lines.clone();
        let print = move |line: String| to_b.lock().unwrap().push(line);
        let b = PushConsumer::start_orderly(RealEnv::default(), config(&ns.addr), &[(TOPIC, "*")], move |msgs| {
            process("B", msgs, &print)
        })
        .await
        .unwrap();
        for _ in 0..400 {
            let owned = b.owned_queues().await.iter().filter(|q| q.topic == TOPIC).count();
            if owned > 0 && owned < 4 && lines.lock().unwrap().iter().any(|l| l.starts_with("END B")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(lines.lock().unwrap().iter().any(|l| l.starts_with("END B")), "B consumed its share");
        assert!(
            lines.lock().unwrap().iter().any(|l| l.starts_with("BEGIN A")),
            "A still consumed its share when it was killed"
        );
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let killed_at = now_us();
        let finished = |l: &Vec<String>| {
            let mut seen = std::collections::BTreeSet::new();
            for line in l.iter().filter(|l| l.starts_with("END ")) {
                seen.insert(line.split_whitespace().nth(2).unwrap().to_string());
            }
            seen.len() == (KEYS * STEPS) as usize
        };
        for _ in 0..800 {
            if finished(&lines.lock().unwrap()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(finished(&lines.lock().unwrap()), "every message was processed after the kill");
        b.shutdown().await;
        killed_at
    });

    let spans = spans(&lines.lock().unwrap());
    let mut by_key: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for s in &spans {
        by_key.entry(s.1.as_str()).or_default().push(s);
    }
    for (key, mut runs) in by_key {
        runs.sort_by_key(|s| s.3);
        // A's processing cut short by the kill ended then.
        let end = |s: &Span| s.4.unwrap_or(killed_at);
        for w in runs.windows(2) {
            assert!(
                end(w[0]) <= w[1].3,
                "{key}: {} began step {} while {} was still processing step {}",
                w[1].0,
                w[1].2,
                w[0].0,
                w[0].2
            );
        }
        let mut finished: Vec<u32> = Vec::new();
        for s in &runs {
            assert!(
                s.2 == 0 || finished.contains(&(s.2 - 1)),
                "{key}: step {} began before step {} had finished once",
                s.2,
                s.2 - 1
            );
            if s.4.is_some() {
                finished.push(s.2);
            }
        }
    }
    assert!(spans.iter().any(|s| s.0 == "B" && s.3 > killed_at), "B took over the killed member's queues");
}
