//! Load generation: N producers sending fixed-size messages over K topics, then draining them
//! with pull consumers; reports throughput and latency percentiles.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use rmq_client::{ClientConfig, Message, Producer, PullConsumer, PullStatus};
use rmq_rt::{Env, RealEnv};
use serde::Serialize;
use tokio::sync::Mutex;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// NameServer address.
    pub namesrv: String,
    /// Topics to spread messages over.
    pub topics: usize,
    /// Queues per topic.
    pub queues: i32,
    /// Concurrent senders.
    pub producers: usize,
    /// Messages in total.
    pub messages: u64,
    /// Body size.
    pub body_bytes: usize,
    /// Messages per send (1 = plain sends, more = SEND_BATCH_MESSAGE).
    pub batch: usize,
    /// Target rate in messages per second (at least 1); `None`: as fast as the senders go. In
    /// a paced run a pacer releases each send when it comes due and its latency counts from
    /// that release, also when no sender was free to take it at once, so a broker that falls
    /// behind shows in the percentiles instead of slowing the load down (no coordinated
    /// omission). See [`pace`].
    pub rate: Option<u64>,
    /// Drain the messages afterwards.
    pub consume: bool,
    /// Topic name prefix (unique per run so reruns start empty).
    pub topic_prefix: String,
    /// ACL account to sign with (`--access-key`/`--secret-key`); `None`: unsigned.
    pub credentials: Option<rmq_client::Credentials>,
    /// The broker's process, when it runs on this machine as its own process: its CPU time
    /// per message is reported beside this process's.
    pub broker_pid: Option<u32>,
}

fn client_config(cfg: &BenchConfig, group: &str) -> ClientConfig {
    ClientConfig { credentials: cfg.credentials.clone(), ..ClientConfig::new(&cfg.namesrv, group) }
}

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// Messages done.
    pub messages: u64,
    /// Failed operations.
    pub errors: u64,
    /// Wall time.
    pub elapsed_ms: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Body MiB per second.
    pub mib_per_sec: f64,
    /// Latency percentiles per request, microseconds (produce only).
    pub p50_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// 99.9th percentile.
    pub p999_us: Option<u64>,
    /// Maximum.
    pub max_us: Option<u64>,
    /// CPU time (user + system, all threads) this process spent per message over the phase,
    /// microseconds: the client's, plus the broker's when it is embedded. Less sensitive to
    /// neighbours on a shared machine than the rate, which also counts time spent waiting.
    pub cpu_us_per_msg: Option<f64>,
    /// The broker process's CPU time per message over the phase (`processes` mode).
    pub broker_cpu_us_per_msg: Option<f64>,
}

/// CPU time a process has used so far (user + system, all its threads), from /proc/PID/stat
/// (Linux); `None` for this process means /proc/self.
pub fn cpu_time(pid: Option<u32>) -> Option<std::time::Duration> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'; utime is 14.
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_sec = u64::try_from(ticks_per_sec).ok().filter(|t| *t > 0)?;
    Some(std::time::Duration::from_micros((utime + stime) * 1_000_000 / ticks_per_sec))
}

/// CPU time of this process and of the broker's (if it has its own), taken at the start and
/// end of a phase.
#[derive(Debug, Clone, Copy)]
struct CpuMark {
    this: Option<std::time::Duration>,
    broker: Option<std::time::Duration>,
}

impl CpuMark {
    fn now(cfg: &BenchConfig) -> Self {
        CpuMark { this: cpu_time(None), broker: cfg.broker_pid.and_then(|p| cpu_time(Some(p))) }
    }

    /// Microseconds per message since `self`, for this process and the broker's.
    fn per_msg(self, cfg: &BenchConfig, messages: u64) -> (Option<f64>, Option<f64>) {
        let end = CpuMark::now(cfg);
        let per = |a: Option<std::time::Duration>, b: Option<std::time::Duration>| {
            let used = b?.checked_sub(a?)?;
            (messages > 0).then(|| used.as_secs_f64() * 1e6 / messages as f64)
        };
        (per(self.this, end.this), per(self.broker, end.broker))
    }
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Topics used.
    pub topics: usize,
    /// Concurrent senders.
    pub producers: usize,
    /// Body size.
    pub body_bytes: usize,
    /// Messages per send.
    pub batch: usize,
    /// Target rate (msg/s) of a paced run; `None`: unpaced.
    pub rate: Option<u64>,
    /// Worker threads of the runtime the client (and an embedded broker) ran on; `None` when
    /// the caller did not say.
    pub client_threads: Option<usize>,
    /// Produce phase.
    pub produce: PhaseReport,
    /// Consume phase.
    pub consume: Option<PhaseReport>,
    /// Where the broker ran: `embedded` (in this process, sharing its runtime with the
    /// client), `processes` (separate mqnamesrv/mqbroker processes started for the run) or
    /// `remote` (a running cluster given with -n).
    pub broker_mode: String,
    /// Resident memory of this process at the end (with an embedded broker: broker + client),
    /// bytes.
    pub process_rss_bytes: Option<u64>,
    /// The broker process's memory, descriptors and threads after the load (`processes` mode).
    pub broker_resources: Option<crate::procs::ProcessResources>,
    /// This machine's disk and CPU limits, measured before the load (`None` with --no-limits).
    pub limits: Option<crate::limits::MachineLimits>,
}

/// A monotonic stopwatch (the runtime facade's; benchmarks measure wall time by design).
pub fn stopwatch() -> Instant {
    RealEnv::stopwatch()
}

/// Resident set size of a process from /proc (Linux), in bytes.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(|| "/proc/self/status".to_string(), |p| format!("/proc/{p}/status"));
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn phase(messages: u64, errors: u64, elapsed_ms: f64, body_bytes: usize, hist: Option<&Histogram<u64>>) -> PhaseReport {
    let secs = (elapsed_ms / 1000.0).max(1e-9);
    PhaseReport {
        messages,
        errors,
        elapsed_ms,
        msgs_per_sec: messages as f64 / secs,
        mib_per_sec: messages as f64 * body_bytes as f64 / secs / (1024.0 * 1024.0),
        p50_us: hist.map(|h| h.value_at_quantile(0.50)),
        p99_us: hist.map(|h| h.value_at_quantile(0.99)),
        p999_us: hist.map(|h| h.value_at_quantile(0.999)),
        max_us: hist.map(|h| h.max()),
        cpu_us_per_msg: None,
        broker_cpu_us_per_msg: None,
    }
}

/// The topic names of a run.
pub fn topic_names(cfg: &BenchConfig) -> Vec<String> {
    (0..cfg.topics).map(|i| format!("{}_{i}", cfg.topic_prefix)).collect()
}

/// Creates the topics on every master.
pub async fn create_topics(cfg: &BenchConfig) -> anyhow::Result<()> {
    let admin = crate::admin::Admin::new(RealEnv::default(), vec![cfg.namesrv.clone()])
        .with_credentials(cfg.credentials.clone());
    let masters = admin.masters(None).await?;
    for t in topic_names(cfg) {
        admin.update_topic(&masters, &t, cfg.queues, cfg.queues, false).await?;
    }
    // Wait until the NameServer routes the last topic (registration is asynchronous).
    let last = topic_names(cfg).pop().unwrap_or_default();
    for _ in 0..500 {
        if admin.topic_route(&last).await.is_ok() {
            break;
        }
        rmq_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

/// How often the pacer of a `--rate` run releases the sends that have come due. The runtime's
/// timers tick every millisecond, which would release a millisecond's sends (about 50 at
/// 50,000 msg/s) in one burst; a thread of the blocking pool sleeping this long releases them
/// a few at a time.
const PACER_STEP: std::time::Duration = std::time::Duration::from_micros(100);

/// Releases send k (of `total`, `batch` messages each) at `started + k × batch / rate`, as
/// (k, the instant it was released): a sender that picks it up at once counts latency from
/// there, and one that was still waiting on its previous send counts it from there too, so
/// time a send spent waiting for a free sender shows in the percentiles (no coordinated
/// omission) while the pacer's own lateness (under one step) does not.
fn pace(rate: u64, batch: usize, total: u64, started: Instant) -> async_channel::Receiver<(u64, Instant)> {
    // Many receivers, one woken per send released (a shared receiver behind a lock woke two).
    let (tx, rx) = async_channel::unbounded();
    let spacing_s = batch as f64 / rate as f64;
    let release = move || {
        let mut released = 0;
        while released < total {
            let now = stopwatch();
            let due = ((now - started).as_secs_f64() / spacing_s) as u64 + 1;
            while released < due.min(total) {
                if tx.send_blocking((released, now)).is_err() {
                    return;
                }
                released += 1;
            }
            std::thread::sleep(PACER_STEP);
        }
    };
    // Detached: it ends once every send is released, or when the senders are gone.
    let _detached = rmq_rt::spawn(async move { RealEnv::default().offload(release).await });
    rx
}

/// Sends `cfg.messages` messages with `cfg.producers` concurrent senders.
pub async fn produce(cfg: &BenchConfig) -> anyhow::Result<PhaseReport> {
    anyhow::ensure!(cfg.rate != Some(0), "a paced run needs a rate of at least 1 msg/s");
    let producer = Producer::start(RealEnv::default(), client_config(cfg, "bench_producer"));
    let topics = Arc::new(topic_names(cfg));
    let body = Bytes::from(vec![b'x'; cfg.body_bytes]);
    // Warm routes so the measurement excludes first-send route lookups.
    for t in topics.iter() {
        let _ = producer.send(Message::new(t, body.clone())).await;
    }
    let sends_total = cfg.messages.div_ceil(cfg.batch as u64);
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("3 significant digits is a valid histogram")));
    let cpu = CpuMark::now(cfg);
    let started = stopwatch();
    // Unpaced, sender p makes sends p, p + producers, …; paced, the senders share the sends a
    // pacer releases on schedule.
    let paced = cfg.rate.map(|rate| pace(rate, cfg.batch, sends_total, started));
    let mut tasks = Vec::new();
    for p in 0..cfg.producers {
        let (producer, topics, body, hist) = (producer.clone(), topics.clone(), body.clone(), hist.clone());
        let (producers, batch, paced) = (cfg.producers as u64, cfg.batch, paced.clone());
        tasks.push(rmq_rt::spawn(async move {
            let mut local = Histogram::<u64>::new(3).expect("3 significant digits is a valid histogram");
            let (mut done, mut errors) = (0u64, 0u64);
            let mut next = p as u64;
            loop {
                // (send number, when its latency starts)
                let (i, t0) = match &paced {
                    None if next < sends_total => {
                        next += producers;
                        (next - producers, stopwatch())
                    }
                    None => break,
                    Some(released) => match released.recv().await {
                        Ok(send) => send,
                        Err(_) => break,
                    },
                };
                let topic = &topics[(i as usize) % topics.len()];
                let r = if batch == 1 {
                    producer.send(Message::new(topic, body.clone())).await.map(|_| ())
                } else {
                    let msgs = (0..batch).map(|_| Message::new(topic, body.clone())).collect();
                    producer.send_batch(msgs).await.map(|_| ())
                };
                let _ = local.record(t0.elapsed().as_micros() as u64);
                match r {
                    Ok(()) => done += batch as u64,
                    Err(_) => errors += 1,
                }
            }
            hist.lock().await.add(&local).expect("histograms share bounds");
            (done, errors)
        }));
    }
    let (mut done, mut errors) = (0, 0);
    for t in tasks {
        let (d, e) = t.await?;
        done += d;
        errors += e;
    }
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (cpu_us, broker_cpu_us) = cpu.per_msg(cfg, done);
    producer.shutdown().await;
    let h = hist.lock().await;
    let mut report = phase(done, errors, elapsed_ms, cfg.body_bytes, Some(&h));
    (report.cpu_us_per_msg, report.broker_cpu_us_per_msg) = (cpu_us, broker_cpu_us);
    Ok(report)
}

/// Reads every message of the run's topics from offset 0 with `cfg.producers` pullers.
pub async fn consume(cfg: &BenchConfig) -> anyhow::Result<PhaseReport> {
    let consumer = PullConsumer::new(RealEnv::default(), client_config(cfg, "bench_consumer"));
    let mut queues = Vec::new();
    for t in topic_names(cfg) {
        queues.extend(consumer.fetch_queues(&t).await?);
    }
    let work = Arc::new(Mutex::new(queues));
    let cpu = CpuMark::now(cfg);
    let started = stopwatch();
    let mut tasks = Vec::new();
    for _ in 0..cfg.producers.max(1) {
        let (consumer, work) = (consumer.clone(), work.clone());
        tasks.push(rmq_rt::spawn(async move {
            let (mut got, mut errors) = (0u64, 0u64);
            loop {
                let Some(mq) = work.lock().await.pop() else { break };
                let max = match consumer.max_offset(&mq).await {
                    Ok(m) => m,
                    Err(_) => {
                        errors += 1;
                        continue;
                    }
                };
                let mut offset = 0;
                while offset < max {
                    match consumer.pull(&mq, "*", offset, 32, 0).await {
                        Ok(r) if r.status == PullStatus::Found => {
                            got += r.messages.len() as u64;
                            offset = r.next_begin_offset;
                        }
                        Ok(r) => offset = r.next_begin_offset.max(offset + 1),
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                let _ = consumer.commit(&mq, offset).await;
            }
            (got, errors)
        }));
    }
    let (mut got, mut errors) = (0, 0);
    for t in tasks {
        let (g, e) = t.await?;
        got += g;
        errors += e;
    }
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut report = phase(got, errors, elapsed_ms, cfg.body_bytes, None);
    (report.cpu_us_per_msg, report.broker_cpu_us_per_msg) = cpu.per_msg(cfg, got);
    Ok(report)
}

/// Runs the whole benchmark.
pub async fn run(cfg: &BenchConfig) -> anyhow::Result<BenchReport> {
    create_topics(cfg).await?;
    let produce = produce(cfg).await?;
    let consume = if cfg.consume { Some(consume(cfg).await?) } else { None };
    Ok(BenchReport {
        topics: cfg.topics,
        producers: cfg.producers,
        body_bytes: cfg.body_bytes,
        batch: cfg.batch,
        rate: cfg.rate,
        client_threads: None,
        produce,
        consume,
        broker_mode: "remote".into(),
        process_rss_bytes: rss_bytes(None),
        broker_resources: None,
        limits: None,
    })
}

/// Human-readable report.
pub fn render(r: &BenchReport) -> String {
    let threads = r.client_threads.map(|n| format!(" client_threads={n}")).unwrap_or_default();
    let rate = r.rate.map(|n| format!(" rate={n}msg/s")).unwrap_or_default();
    let mut s = format!(
        "topics={} producers={} body={}B batch={} broker={}{threads}{rate}\n",
        r.topics, r.producers, r.body_bytes, r.batch, r.broker_mode
    );
    let line = |name: &str, p: &PhaseReport| {
        let lat = match (p.p50_us, p.p99_us, p.p999_us) {
            (Some(a), Some(b), Some(c)) => format!("  latency p50={a}us p99={b}us p999={c}us"),
            _ => String::new(),
        };
        let cpu = match (p.cpu_us_per_msg, p.broker_cpu_us_per_msg, r.broker_mode.as_str()) {
            (Some(c), Some(b), _) => format!("  cpu/msg client={c:.1}us broker={b:.1}us"),
            (Some(c), None, "embedded") => format!("  cpu/msg client+broker={c:.1}us"),
            (Some(c), None, _) => format!("  cpu/msg client={c:.1}us"),
            _ => String::new(),
        };
        format!(
            "{name:<8} {:>10} msgs in {:>9.1} ms = {:>10.0} msg/s ({:.1} MiB/s), errors={}{lat}{cpu}\n",
            p.messages, p.elapsed_ms, p.msgs_per_sec, p.mib_per_sec, p.errors
        )
    };
    s.push_str(&line("produce", &r.produce));
    if let Some(c) = &r.consume {
        s.push_str(&line("consume", c));
    }
    if let Some(rss) = r.process_rss_bytes {
        s.push_str(&format!("process RSS {:.1} MiB\n", rss as f64 / (1024.0 * 1024.0)));
    }
    if let Some(b) = &r.broker_resources {
        s.push_str(&format!(
            "broker process: RSS {:.1} MiB, {} open file descriptors, {} threads\n",
            b.rss_bytes as f64 / (1024.0 * 1024.0),
            b.open_fds,
            b.threads
        ));
    }
    if let Some(l) = &r.limits {
        s.push_str(&crate::limits::render(l, r.produce.msgs_per_sec, r.body_bytes));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_the_cpu_this_process_burns() {
        let start = cpu_time(None).expect("Linux /proc/self/stat");
        let wall = stopwatch();
        let mut x = 0u64;
        // Spin until the kernel has charged 50 ms of CPU to this process (a clock tick is 10 ms);
        // the wall-clock bound only stops a broken reader from hanging the suite.
        while cpu_time(None).unwrap() < start + std::time::Duration::from_millis(50) {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            assert!(wall.elapsed() < std::time::Duration::from_secs(60), "CPU time never advanced");
        }
        assert_eq!(cpu_time(Some(u32::MAX)), None);
    }
}
