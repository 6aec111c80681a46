//! What one send costs the broker's core, by topic count: no sockets, no client, one thread.
//!
//! `cargo run --release --example broker_core_probe -- [MESSAGES] [TOPICS...]`
//! (defaults: 200,000 messages; 1, 10,000 and 50,000 topics). For each topic count it opens a
//! `BrokerCore` over real mapped files in a temp dir (ASYNC_FLUSH, default config), then feeds
//! it SEND_MESSAGE_V2 requests as `mqbench` shapes them (1 KiB body, a unique key, topics taken
//! round robin, one queue each), draining its outputs and running its flushes and checkpoints
//! inline, as the driver's loop does. A warm-up sends once to every topic (creating its
//! ConsumeQueue file, as `mqbench`'s route warm-up does), then three rounds of MESSAGES sends.
//! Prints the process's CPU microseconds per send: the best round, and each.
//!
//! The end-to-end figure (`mqbench --processes`) mixes this cost with the loopback, the client
//! and a shared two-core machine; this one isolates what the topic count does to the core.

use std::collections::BTreeMap;

use rmq_broker_core::{BrokerConfig, BrokerCore, FlushDiskType, Output};
use rmq_proto::codes::RequestCode;
use rmq_proto::header::SendMessageRequestHeader;
use rmq_proto::message::{encode_properties, prop};
use rmq_proto::{ConnId, RemotingCommand};
use rmq_store::MmapDirectory;

/// The allocator the broker binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let messages = args.first().copied().unwrap_or(200_000);
    let topic_counts = if args.len() > 1 { args[1..].to_vec() } else { vec![1, 10_000, 50_000] };
    let body = vec![b'x'; 1024];
    println!("{messages} sends of 1 KiB per round, ASYNC_FLUSH, one queue per topic");
    println!("{:>8} {:>14} {:>10} {:>24}", "topics", "µs/new queue", "µs/send", "rounds");
    for &topics in &topic_counts {
        let dir = tempfile::tempdir()?;
        let config = BrokerConfig { flush_disk_type: FlushDiskType::AsyncFlush, ..Default::default() };
        let mut core = BrokerCore::open(MmapDirectory::open_exclusive(dir.path(), "probe")?, config, 0)?;
        let conn = ConnId(1);
        core.on_conn_opened(0, conn, "127.0.0.1:40000".parse()?);
        let names: Vec<String> = (0..topics).map(|i| format!("BenchTopic_{i}")).collect();
        // Warm-up, as mqbench's: one send per topic creates its ConsumeQueue file.
        let mut sent = 0u64;
        let clock = Stopwatch::start();
        for topic in &names {
            sent += 1;
            core.on_request(sent, conn, send_request(topic, sent, &body));
            drain(&mut core, sent)?;
        }
        let per_new_queue = clock.micros() / topics as f64;
        let mut rounds = Vec::new();
        for _round in 0..3 {
            let clock = Stopwatch::start();
            for i in 0..messages {
                sent += 1;
                let topic = &names[(i % topics) as usize];
                core.on_request(sent, conn, send_request(topic, sent, &body));
                drain(&mut core, sent)?;
            }
            rounds.push(clock.micros() / messages as f64);
        }
        let best = rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let rounds: Vec<String> = rounds.iter().map(|r| format!("{r:.2}")).collect();
        println!("{topics:>8} {per_new_queue:>14.1} {best:>10.2} {:>24}", rounds.join(" / "));
    }
    Ok(())
}

/// A send as `mqbench`'s producer makes it: V2 header, unique key, WAIT=true.
fn send_request(topic: &str, n: u64, body: &[u8]) -> RemotingCommand {
    let mut props = BTreeMap::new();
    props.insert(prop::UNIQ_KEY.to_string(), format!("7F000001{n:024X}"));
    props.insert(prop::WAIT.to_string(), "true".to_string());
    let header = SendMessageRequestHeader {
        producer_group: "bench_pg".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 1,
        queue_id: 0,
        born_timestamp: n as i64,
        properties: Some(encode_properties(&props)),
        ..Default::default()
    };
    let mut req = RemotingCommand::request(RequestCode::SendMessageV2, 0).with_body(body.to_vec());
    req.opaque = n as i32;
    req.ext_fields = header.to_ext_v2();
    req
}

/// Runs what the core asks for, inline (the driver offloads flushes and checkpoints).
fn drain<D: rmq_store::Directory>(core: &mut BrokerCore<D>, now_ms: u64) -> anyhow::Result<()> {
    while let Some(out) = core.poll_output() {
        match out {
            Output::Transmit { cmd, .. } => anyhow::ensure!(cmd.code == 0, "send refused: {:?}", cmd.remark),
            Output::Flush => {
                let flushed = core.flush_store()?;
                core.on_flushed(now_ms, flushed);
            }
            Output::Checkpoint => {
                let mut plan = core.begin_checkpoint()?;
                for job in std::mem::take(&mut plan.jobs) {
                    job.run()?;
                }
                core.on_checkpointed(now_ms, &plan, true);
            }
            Output::RegisterBroker(_) => {}
            other => anyhow::bail!("a lone master asked for {other:?}"),
        }
    }
    Ok(())
}

/// The process's CPU time (user + system), so a busy neighbour does not count.
struct Stopwatch(f64);

impl Stopwatch {
    fn start() -> Self {
        Stopwatch(cpu_micros())
    }

    fn micros(&self) -> f64 {
        cpu_micros() - self.0
    }
}

fn cpu_micros() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through the valid pointer we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}
