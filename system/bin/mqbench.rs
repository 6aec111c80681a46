//! `mqbench`: produce/consume load with throughput and latency percentiles.
//!
//! ```text
//! mqbench                                    # embedded NameServer + broker, default load, figures printed
//! mqbench --flush sync --producers 64        # embedded, SYNC_FLUSH with group commit
//! mqbench --processes --flush sync           # mqnamesrv + mqbroker as separate processes
//! mqbench -n 127.0.0.1:9876 --topics 10000   # against a running cluster
//! ```

/// mimalloc: the broker's per-request allocations cost a third of its CPU under glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, ValueEnum};
use rmq_broker_core::FlushDiskType;
use rmq_tools::bench::{render, run, BenchConfig};
use rmq_tools::embedded::EmbeddedCluster;
use rmq_tools::procs::ProcessCluster;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Flush {
    Sync,
    Async,
}

#[derive(Parser, Debug)]
#[command(name = "mqbench", version, about = "Load generator; without -n it starts an embedded cluster")]
struct Args {
    /// NameServer of a running cluster; omitted: an in-process NameServer + broker is started.
    #[arg(short = 'n', long = "namesrvAddr")]
    namesrv: Option<String>,
    /// Flush mode of the broker this run starts (default async); refused with -n, whose
    /// brokers have their own flushDiskType.
    #[arg(long, value_enum)]
    flush: Option<Flush>,
    /// Start the NameServer and broker as separate `mqnamesrv` and `mqbroker` processes (found
    /// beside mqbench, or in $RMQ_BIN_DIR) instead of inside mqbench, as users run them; the
    /// broker's memory, descriptors and threads are reported after the load.
    #[arg(long, conflicts_with = "namesrv")]
    processes: bool,
    /// Turn on warmMapedFileEnable in the broker this run starts: the first CommitLog segment
    /// is zero-filled before the broker serves and each next one ahead of the rollover, so an
    /// fdatasync writes the data without the inode (SYNC_FLUSH gains most; each segment costs
    /// a segment-sized write, paid during the load from the second on: see BENCHMARKS.md).
    #[arg(long, conflicts_with = "namesrv")]
    warm: bool,
    /// Topics to spread the load over.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Queues per topic.
    #[arg(long, default_value_t = 4)]
    queues: i32,
    /// Concurrent senders (and pullers).
    #[arg(long, default_value_t = 16)]
    producers: usize,
    /// Messages in total.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Messages per send (>1 uses SEND_BATCH_MESSAGE).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Paced load: this many messages per second in total, each send released when it comes
    /// due (checked every 100 µs) and its latency counted from that release, also when it had
    /// to wait for a free sender (no coordinated omission). Default: as fast as the senders
    /// go. Measures latency at a given load, e.g. half the peak.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Skip the consume phase.
    #[arg(long)]
    no_consume: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Worker threads of this process's runtime, which runs the senders and pullers (and an
    /// embedded broker). Default: one per core. On a small machine that also hosts the broker,
    /// one thread can send more than two: a second one costs more in cross-thread wake-ups than
    /// it adds (see BENCHMARKS.md).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    client_threads: Option<u16>,
    /// Skip measuring this machine's disk and CPU limits before the load.
    #[arg(long)]
    no_limits: bool,
    /// ACL access key to sign requests with (default: $ROCKETMQ_ACCESS_KEY).
    #[arg(long = "access-key")]
    access_key: Option<String>,
    /// ACL secret key to sign requests with (default: $ROCKETMQ_SECRET_KEY).
    #[arg(long = "secret-key")]
    secret_key: Option<String>,
}

fn main() -> std::process::ExitCode {
    rmq_tools::exit_status("mqbench", bench())
}

fn bench() -> anyhow::Result<()> {
    rmq_tools::init_tracing("warn");
    let args = Args::parse();
    let client_threads =
        args.client_threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(client_threads).enable_all().build()?;
    let credentials = rmq_tools::credentials(args.access_key.clone(), args.secret_key.clone())?;
    rt.block_on(async move {
        if args.flush.is_some() && args.namesrv.is_some() {
            anyhow::bail!(
                "--flush sets the embedded broker's flushDiskType; with -n the running brokers' broker.conf decides"
            );
        }
        let flush = match args.flush.unwrap_or(Flush::Async) {
            Flush::Sync => FlushDiskType::SyncFlush,
            Flush::Async => FlushDiskType::AsyncFlush,
        };
        let (embedded, procs) = match (&args.namesrv, args.processes) {
            (Some(_), _) => (None, None),
            (None, true) => (None, Some(ProcessCluster::start(flush, args.warm).await?)),
            (None, false) => {
                let warm = args.warm;
                (Some(EmbeddedCluster::start(flush, |c| c.store.warm_log_segments = warm).await?), None)
            }
        };
        let namesrv = args
            .namesrv
            .clone()
            .or_else(|| embedded.as_ref().map(|c| c.namesrv_addr.clone()))
            .or_else(|| procs.as_ref().map(|c| c.namesrv_addr.clone()))
            .expect("one of the three is set");
        if let Some(c) = &embedded {
            eprintln!(
                "embedded cluster: namesrv {} broker {} ({:?}) store {}",
                c.namesrv_addr,
                c.broker_addr,
                flush,
                c.store_dir.path().display()
            );
        }
        if let Some(c) = &procs {
            eprintln!(
                "process cluster: namesrv {} broker {} ({:?}) store and logs {}",
                c.namesrv_addr,
                c.broker_addr,
                flush,
                c.dir.path().display()
            );
        }
        let cfg = BenchConfig {
            namesrv,
            topics: args.topics.max(1),
            queues: args.queues.max(1),
            producers: args.producers.max(1),
            messages: args.messages,
            body_bytes: args.size,
            batch: args.batch.max(1),
            rate: args.rate,
            consume: !args.no_consume,
            topic_prefix: format!("bench{}", std::process::id()),
            credentials,
            broker_pid: procs.as_ref().map(ProcessCluster::broker_pid),
        };
        // The machine's own limits, in the store's file system (a temp dir beside a remote
        // cluster's), before the load so the disk is quiet.
        let limits = if args.no_limits {
            None
        } else {
            let probe_dir = match (&embedded, &procs) {
                (Some(c), _) => c.store_dir.path().join("limits"),
                (_, Some(c)) => c.dir.path().join("limits"),
                _ => std::env::temp_dir().join(format!("mqbench-limits-{}", std::process::id())),
            };
            let l = rmq_tools::limits::measure(&probe_dir, args.size)?;
            let _ = std::fs::remove_dir_all(&probe_dir);
            Some(l)
        };
        let mut report = run(&cfg).await?;
        report.limits = limits;
        // What the runtime has, read back from it (not what was asked for).
        report.client_threads = Some(tokio::runtime::Handle::current().metrics().num_workers());
        if embedded.is_some() {
            report.broker_mode = "embedded".into();
        }
        if let Some(c) = &procs {
            report.broker_mode = "processes".into();
            report.broker_resources = c.broker_resources();
        }
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", render(&report));
        }
        if let Some(c) = embedded {
            c.stop().await;
        }
        let consumed_all = report.consume.as_ref().is_none_or(|c| c.messages >= report.produce.messages);
        anyhow::ensure!(report.produce.errors == 0 && consumed_all, "errors or missing messages in the run");
        Ok(())
    })
}
