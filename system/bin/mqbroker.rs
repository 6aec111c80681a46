//! `mqbroker`: the broker.
//!
//! ```text
//! mqbroker -n 127.0.0.1:9876 -c broker.conf
//! mqbroker -n 127.0.0.1:9876 --listen 127.0.0.1:0 --store /tmp/store   # ephemeral port
//! ```
//! SIGTERM (or Ctrl-C) flushes the store, persists offsets and unregisters before exiting.

/// mimalloc: the broker's per-request allocations cost a third of its CPU under glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use rmq_broker::conf::{apply_in, split_addrs, KNOWN_KEYS};
use rmq_broker::BrokerOptions;
use rmq_broker_core::BrokerConfig;
use rmq_rt::conf::Props;
use rmq_rt::RealEnv;
use rmq_store::{IndexConfig, StoreConfig};

#[derive(Parser, Debug)]
#[command(name = "mqbroker", version, about = "RocketMQ-compatible broker")]
struct Args {
    /// NameServer addresses, `host:port;host:port` (overrides namesrvAddr).
    #[arg(short = 'n', long = "namesrv-addr")]
    namesrv: Option<String>,
    /// broker.conf with RocketMQ keys.
    #[arg(short = 'c', long = "config")]
    config: Option<std::path::PathBuf>,
    /// Address to listen on (overrides listenPort); port 0 picks a free port.
    #[arg(long)]
    listen: Option<String>,
    /// Store root directory (overrides storePathRootDir).
    #[arg(long)]
    store: Option<String>,
    /// Print the effective configuration and exit.
    #[arg(short = 'p', long = "print-config")]
    print_config: bool,
}

fn main() -> std::process::ExitCode {
    rmq_tools::exit_status("mqbroker", serve())
}

fn serve() -> anyhow::Result<()> {
    let args = Args::parse();
    rmq_tools::init_tracing("info");
    // A panic is a bug: log it and abort so a supervisor restarts us (see the driver docs).
    rmq_rt::abort_on_panic();
    rmq_tools::release_freed_memory_promptly();
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    let mut opts = BrokerOptions {
        listen: "0.0.0.0:10911".into(),
        namesrv_addrs: std::env::var("NAMESRV_ADDR").map(|v| split_addrs(&v)).unwrap_or_default(),
        store_root: format!("{home}/store"),
        // messageIndexEnable defaults to true, as in RocketMQ: queries by key work out of the box.
        core: BrokerConfig {
            store: StoreConfig { index: Some(IndexConfig::default()), ..StoreConfig::default() },
            ..BrokerConfig::default()
        },
        limits: Default::default(),
        ha_listen: None,
        metrics_listen: None,
    };
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let props = Props::parse_text(&text, KNOWN_KEYS).with_context(|| format!("in {}", path.display()))?;
        apply_in(&props, path.parent(), &mut opts).with_context(|| format!("in {}", path.display()))?;
    }
    if let Some(n) = &args.namesrv {
        opts.namesrv_addrs = split_addrs(n);
    }
    if let Some(l) = &args.listen {
        opts.listen = l.clone();
        let port = l.rsplit_once(':').map_or("0", |(_, p)| p);
        let ip = opts.core.broker_addr.rsplit_once(':').map_or("127.0.0.1", |(ip, _)| ip).to_string();
        opts.core.broker_addr = format!("{ip}:{port}");
    }
    if let Some(s) = &args.store {
        opts.store_root = s.clone();
    }
    if args.print_config {
        println!("{opts:#?}");
        return Ok(());
    }
    if opts.namesrv_addrs.is_empty() {
        tracing::warn!("no name server configured (-n or namesrvAddr): clients will not find this broker");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let names = opts.namesrv_addrs.join(";");
        let name = opts.core.broker_name.clone();
        let handle = rmq_broker::start(RealEnv::default(), opts).await.context("starting the broker")?;
        let ha = handle.ha_addr.as_ref().map(|a| format!("; HA listening on {a}")).unwrap_or_default();
        let metrics = handle.metrics_addr.map(|a| format!("; metrics at http://{a}/metrics")).unwrap_or_default();
        println!(
            "The broker[{name}, {}] boot success. serializeType=JSON and name server is {names}{ha}{metrics}",
            handle.advertised_addr
        );
        rmq_tools::wait_for_signal().await;
        tracing::info!("shutting down");
        handle.shutdown().await;
        Ok(())
    })
}
