//! Compatibility test: an independently written RocketMQ client, the crates.io
//! package `rocketmq-client-rust` 1.0.0, used unmodified against OUR
//! NameServer and broker binaries.
//!
//! The test starts `mqnamesrv` and `mqbroker` as child processes on loopback
//! (ephemeral ports), creates the topic with our `mqadmin`, then uses the
//! independent client's producer to send N messages, its transactional producer
//! to send half messages (committed, rolled back, and left UNKNOW until the
//! broker's check-back asks its listener), and its push consumer (clustering,
//! `*`, consume from first offset) to receive all of them but the rolled-back.
//!
//! Binaries are looked up in `$RMQ_BIN_DIR` (default: `../target/release`
//! relative to this package). Set `RUST_LOG` (e.g. `debug`) to see the
//! client's own tracing output; our servers' output is printed when the test
//! fails (or always with `RMQ_COMPAT_VERBOSE=1`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, LocalTransactionState, MQPushConsumer, SendStatus, TelemetryHandle, TransactionListener,
    TransactionMQProducer,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

const TOPIC: &str = "CompatTopic";
const TAG: &str = "CompatTag";
const N: usize = 100;
/// Transactional messages per outcome (committed, rolled back, left UNKNOW for the check-back).
const TX: usize = 5;
const RECEIVE_DEADLINE: Duration = Duration::from_secs(60);
const BOOT_DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Child processes (our binaries)
// ---------------------------------------------------------------------------

fn bin_dir() -> PathBuf {
    match std::env::var_os("RMQ_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"),
    }
}

fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "binary {} not found; build ours first (`cargo build --release` in the main workspace) or set RMQ_BIN_DIR",
        path.display()
    );
    path
}

/// A running server; killed (and reaped) on drop. Its stdout and stderr are
/// copied into a log file so they can be shown when the test fails.
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Spawns `program args...` and waits until a stdout line contains `marker`;
    /// returns the server and that line.
    fn spawn(name: &'static str, program: &Path, args: &[&str], log_dir: &Path, marker: &str) -> (Server, String) {
        let log = log_dir.join(format!("{name}.log"));
        let log_file = Arc::new(Mutex::new(File::create(&log).expect("creating a server log file")));
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let marker = marker.to_string();
            let log_file = Arc::clone(&log_file);
            std::thread::spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(log_file.lock().unwrap(), "[{name} out] {line}");
                    if !sent && line.contains(&marker) {
                        sent = tx.send(line).is_ok();
                    }
                }
            });
        }
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_file.lock().unwrap(), "[{name} err] {line}");
            }
        });
        let mut server = Server { name, child, log };
        let line = match rx.recv_timeout(BOOT_DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                server.dump_log();
                panic!("{name} did not print {:?} within {BOOT_DEADLINE:?} (exit status: {status:?})", marker);
            }
        };
        (server, line)
    }

    fn dump_log(&self) {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(300)..];
        eprintln!("----- {} log ({} lines, last {}) -----", self.name, lines.len(), tail.len());
        for l in tail {
            eprintln!("{l}");
        }
        eprintln!("----- end of {} log -----", self.name);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || std::env::var_os("RMQ_COMPAT_VERBOSE").is_some() {
            self.dump_log();
        }
    }
}

/// `... address 127.0.0.1:PORT` → `127.0.0.1:PORT`
fn namesrv_addr_from(line: &str) -> String {
    let addr = line.rsplit("address ").next().unwrap_or_default().trim().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "unexpected NameServer boot line: {line}");
    addr
}

/// `The broker[broker-a, 127.0.0.1:PORT] boot success. ...` → `127.0.0.1:PORT`
fn broker_addr_from(line: &str) -> String {
    let inner = line.split_once('[').and_then(|(_, rest)| rest.split_once(']')).map(|(inner, _)| inner);
    let addr = inner.and_then(|s| s.rsplit(", ").next()).unwrap_or_default().trim().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "unexpected broker boot line: {line}");
    addr
}

/// Runs `mqadmin args...` until it exits 0 or `deadline` passes.
fn mqadmin_until_ok(args: &[&str], deadline: Duration) -> String {
    let start = Instant::now();
    loop {
        let out = Command::new(bin("mqadmin")).args(args).stdin(Stdio::null()).output().expect("running mqadmin");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if start.elapsed() > deadline {
            panic!(
                "mqadmin {args:?} kept failing for {deadline:?}; last status {:?}\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

fn init_client_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn elapsed(start: Instant) -> String {
    format!("{:>6.2}s", start.elapsed().as_secs_f64())
}

#[test]
fn independent_client_produces_and_push_consumes_against_our_servers() {
    init_client_tracing();
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).unwrap();

    // --- our servers -------------------------------------------------------
    let (namesrv, ns_line) =
        Server::spawn("namesrv", &bin("mqnamesrv"), &["--listen", "127.0.0.1:0"], tmp.path(), "boot success");
    let ns = namesrv_addr_from(&ns_line);
    eprintln!("[compat {}] NameServer up at {ns}", elapsed(t0));

    let store_str = store.to_str().expect("utf-8 temp path");
    // Half messages left open are checked back after 1 s (RocketMQ: 6 s, every 30 s).
    let conf = tmp.path().join("broker.conf");
    std::fs::write(&conf, "transactionTimeOut=1000\ntransactionCheckInterval=1000\n").unwrap();
    let conf_str = conf.to_str().expect("utf-8 temp path");
    let (broker, broker_line) = Server::spawn(
        "broker",
        &bin("mqbroker"),
        &["-n", &ns, "--listen", "127.0.0.1:0", "--store", store_str, "-c", conf_str],
        tmp.path(),
        "boot success",
    );
    let broker_addr = broker_addr_from(&broker_line);
    eprintln!("[compat {}] broker up at {broker_addr}", elapsed(t0));

    // --- topic via our mqadmin ---------------------------------------------
    let out = mqadmin_until_ok(&["updateTopic", "-n", &ns, "-t", TOPIC, "-r", "4", "-w", "4"], BOOT_DEADLINE);
    eprintln!("[compat {}] mqadmin updateTopic: {}", elapsed(t0), out.trim());
    let route = mqadmin_until_ok(&["topicRoute", "-n", &ns, "-t", TOPIC], BOOT_DEADLINE);
    eprintln!("[compat {}] mqadmin topicRoute ok ({} bytes)", elapsed(t0), route.len());

    // --- the independent client --------------------------------------------
    // rocketmq-client-rust 1.0.0 requires an explicitly owned runtime: the
    // client never uses an ambient Tokio runtime.
    let mut runtime_config = RuntimeConfig { thread_name: "rmq-compat".to_string(), ..Default::default() };
    // The push consumer runs every listener call through the runtime's
    // metadata-io blocking lane. Its default queue depth is 8 x parallelism (16
    // on a 2-core machine), and the ~100 consume requests produced by the first
    // pulls overflow it: the client then fails those consume requests locally
    // ("runtime.capacity.exhausted") and sends the messages back to the broker,
    // which redelivers them via %RETRY% ~10 s later. That path works against our
    // broker too, but it is a client-side resource limit, so give the lane room
    // and keep the main scenario deterministic. RMQ_COMPAT_DEFAULT_LANES=1 keeps
    // the client's defaults (and so usually exercises the retry path).
    if std::env::var_os("RMQ_COMPAT_DEFAULT_LANES").is_none() {
        runtime_config.blocking_lane_policies.metadata_io.max_queue_depth = 1024;
    }
    let owner = RuntimeOwner::plan(runtime_config).expect("valid runtime config").build().expect("runtime owner");
    let client_runtime = ClientRuntime::try_new(
        owner.root_context().component("compat-client"),
        ClientRuntimeConfig::default(),
        TelemetryHandle::noop(),
    )
    .expect("client runtime");

    let outcome = owner.block_on(scenario(Arc::clone(&client_runtime), ns.clone(), t0));

    let report = owner.block_on(async {
        let client_report = client_runtime.shutdown().await;
        let owner_report = owner.shutdown_tasks().await;
        (client_report.is_healthy(), owner_report.is_healthy())
    });
    eprintln!("[compat {}] client runtime shut down (healthy: client={}, tasks={})", elapsed(t0), report.0, report.1);
    drop(client_runtime);
    let _ = owner.shutdown_background();

    if let Err(msg) = outcome {
        // Keep the servers alive until here so their logs are complete, then
        // fail (Server::drop prints their logs while panicking).
        let _keep = (&namesrv, &broker);
        panic!("{msg}");
    }
    eprintln!(
        "[compat {}] PASS: {N} messages and {} committed transactional ones received, {TX} rolled back never",
        elapsed(t0),
        2 * TX
    );
    drop(broker);
    drop(namesrv);
}

/// Producer then push consumer. Returns Err with a description on failure so
/// that the caller can still shut the client runtime down cleanly.
async fn scenario(client_runtime: Arc<ClientRuntime>, ns: String, t0: Instant) -> Result<(), String> {
    let run_id = std::process::id();

    // --- producer --------------------------------------------------------
    let mut producer = DefaultMQProducer::builder(Arc::clone(&client_runtime))
        .producer_group(format!("compat_producer_{run_id}"))
        .name_server_addr(ns.clone())
        .send_msg_timeout(5_000)
        // No silent retries: every single send must succeed on its first attempt.
        .retry_times_when_send_failed(0)
        .build();
    timed("producer.start", producer.start()).await?.map_err(|e| format!("producer.start failed: {e}"))?;
    eprintln!("[compat {}] producer started", elapsed(t0));

    let mut sent: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut per_queue = std::collections::BTreeMap::<i32, usize>::new();
    for i in 0..N {
        let body = format!("compat-{run_id}-message-{i:04}");
        let msg = Message::builder().topic(TOPIC).tags(TAG).body_slice(body.as_bytes()).build_unchecked();
        let result = timed("producer.send", producer.send_with_timeout(msg, 5_000))
            .await?
            .map_err(|e| format!("send #{i} failed: {e} ({e:?})"))?
            .ok_or_else(|| format!("send #{i}: no SendResult returned"))?;
        if result.send_status != SendStatus::SendOk {
            return Err(format!("send #{i}: status {:?}, expected SEND_OK; result {result:?}", result.send_status));
        }
        if i == 0 {
            eprintln!("[compat {}] first SendResult: {result:?}", elapsed(t0));
        }
        if let Some(mq) = &result.message_queue {
            *per_queue.entry(mq.queue_id()).or_default() += 1;
        }
        assert!(sent.insert(body.into_bytes()), "bodies must be distinct");
    }
    eprintln!("[compat {}] producer sent {N} messages, all SEND_OK; per queue: {per_queue:?}", elapsed(t0));
    timed("producer.shutdown", producer.shutdown()).await?;

    // --- transactional producer ---------------------------------------------
    // Half messages whose local transaction commits, rolls back, or answers UNKNOW (the
    // broker's check-back then asks this producer's listener, which commits them).
    let mut tx_producer = TransactionMQProducer::builder(Arc::clone(&client_runtime))
        .producer_group(format!("compat_tx_producer_{run_id}"))
        .name_server_addr(ns.clone())
        .send_msg_timeout(5_000)
        .transaction_listener(ByBody)
        .build();
    timed("tx_producer.start", tx_producer.start()).await?.map_err(|e| format!("tx_producer.start failed: {e}"))?;
    let mut committed: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut rolled_back: BTreeSet<Vec<u8>> = BTreeSet::new();
    for i in 0..TX {
        for outcome in ["commit", "rollback", "unknown"] {
            let body = format!("compat-{run_id}-tx-{outcome}-{i:02}");
            let msg = Message::builder().topic(TOPIC).tags(TAG).body_slice(body.as_bytes()).build_unchecked();
            let r = timed("tx_producer.send_message_in_transaction", tx_producer.send_message_in_transaction(msg, None::<()>))
                .await?
                .map_err(|e| format!("transactional send {body} failed: {e} ({e:?})"))?;
            let status = r.send_result.as_ref().map(|s| s.send_status);
            if status != Some(SendStatus::SendOk) {
                return Err(format!("transactional send {body}: status {status:?}, expected SEND_OK; {r:?}"));
            }
            if outcome == "rollback" {
                rolled_back.insert(body.into_bytes());
            } else {
                committed.insert(body.into_bytes());
            }
        }
    }
    eprintln!(
        "[compat {}] transactional producer sent {} half messages ({TX} each committed, rolled back, unknown)",
        elapsed(t0),
        3 * TX
    );
    let sent: BTreeSet<Vec<u8>> = sent.union(&committed).cloned().collect();

    // --- push consumer -----------------------------------------------------
    let received: Arc<Mutex<BTreeSet<Vec<u8>>>> = Arc::default();
    let deliveries = Arc::new(AtomicUsize::new(0));
    let unexpected_topic = Arc::new(AtomicUsize::new(0));
    let redelivered = Arc::new(AtomicUsize::new(0));
    let mut consumer = DefaultMQPushConsumer::builder(Arc::clone(&client_runtime))
        .consumer_group(format!("compat_consumer_{run_id}"))
        .name_server_addr(ns.clone())
        .message_model(MessageModel::Clustering)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    consumer.subscribe(TOPIC, "*").await.map_err(|e| format!("consumer.subscribe failed: {e}"))?;
    {
        let received = Arc::clone(&received);
        let deliveries = Arc::clone(&deliveries);
        let unexpected_topic = Arc::clone(&unexpected_topic);
        let redelivered = Arc::clone(&redelivered);
        consumer.register_message_listener_concurrently(
            move |msgs: &[&MessageExt], _ctx: &ConsumeConcurrentlyContext| {
                let mut set = received.lock().unwrap();
                for msg in msgs {
                    deliveries.fetch_add(1, Ordering::Relaxed);
                    if msg.reconsume_times() > 0 {
                        redelivered.fetch_add(1, Ordering::Relaxed);
                    }
                    if msg.topic().as_str() != TOPIC {
                        unexpected_topic.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(body) = msg.body() {
                        set.insert(body.to_vec());
                    }
                }
                Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
            },
        );
    }
    timed("consumer.start", consumer.start()).await?.map_err(|e| format!("consumer.start failed: {e}"))?;
    eprintln!("[compat {}] push consumer started", elapsed(t0));

    let wait_start = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let got = received.lock().unwrap().len();
        if got >= sent.len() {
            break;
        }
        if wait_start.elapsed() > RECEIVE_DEADLINE {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("[compat {}] consumer progress: {got}/{N} distinct bodies", elapsed(t0));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got: BTreeSet<Vec<u8>> = received.lock().unwrap().clone();
    // Let any wrongly committed half message arrive before judging.
    tokio::time::sleep(Duration::from_secs(2)).await;
    timed("tx_producer.shutdown", tx_producer.shutdown()).await?;
    let leaked: Vec<String> = received
        .lock()
        .unwrap()
        .intersection(&rolled_back)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    if !leaked.is_empty() {
        return Err(format!("rolled-back transactional messages were delivered: {leaked:?}"));
    }
    eprintln!(
        "[compat {}] consumer done waiting after {:.2}s: {} distinct bodies, {} deliveries ({} with reconsumeTimes > 0)",
        elapsed(t0),
        wait_start.elapsed().as_secs_f64(),
        got.len(),
        deliveries.load(Ordering::Relaxed),
        redelivered.load(Ordering::Relaxed)
    );
    timed("consumer.shutdown", consumer.shutdown()).await?;

    if got != sent {
        let missing: Vec<String> = sent.difference(&got).take(10).map(|b| String::from_utf8_lossy(b).into()).collect();
        let extra: Vec<String> = got.difference(&sent).take(10).map(|b| String::from_utf8_lossy(b).into()).collect();
        return Err(format!(
            "received set != sent set: sent {}, received {} distinct ({} deliveries) within {RECEIVE_DEADLINE:?}; \
             missing (first 10): {missing:?}; unexpected (first 10): {extra:?}",
            sent.len(),
            got.len(),
            deliveries.load(Ordering::Relaxed)
        ));
    }
    let bad_topic = unexpected_topic.load(Ordering::Relaxed);
    if bad_topic != 0 {
        return Err(format!("{bad_topic} delivered messages carried a topic other than {TOPIC}"));
    }
    Ok(())
}

/// The transactional listener: the outcome is in the body (`…-tx-commit-…`, `…-tx-rollback-…`,
/// `…-tx-unknown-…`); a check-back commits what was left unknown.
struct ByBody;

impl TransactionListener for ByBody {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let body = msg.get_body().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        if body.contains("-tx-commit-") {
            LocalTransactionState::CommitMessage
        } else if body.contains("-tx-rollback-") {
            LocalTransactionState::RollbackMessage
        } else {
            LocalTransactionState::Unknown
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let body = msg.body().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        if body.contains("-tx-rollback-") {
            LocalTransactionState::RollbackMessage
        } else {
            LocalTransactionState::CommitMessage
        }
    }
}

/// Bounds a client call so that a hang shows up as a clear failure.
async fn timed<F: std::future::Future>(what: &str, fut: F) -> Result<F::Output, String> {
    tokio::time::timeout(Duration::from_secs(30), fut).await.map_err(|_| format!("{what} did not complete within 30s"))
}
