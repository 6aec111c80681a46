//! `mqnamesrv`: the NameServer.
//!
//! ```text
//! mqnamesrv                       # listens on 0.0.0.0:9876
//! mqnamesrv -c namesrv.conf       # listenPort=9876
//! mqnamesrv --listen 127.0.0.1:0  # ephemeral port; the bound address is printed
//! ```

/// mimalloc: the broker's per-request allocations cost a third of its CPU under glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use rmq_namesrv::conf::{apply_in, NamesrvOptions, KNOWN_KEYS};
use rmq_rt::conf::Props;
use rmq_rt::RealEnv;

#[derive(Parser, Debug)]
#[command(name = "mqnamesrv", version, about = "RocketMQ-compatible NameServer")]
struct Args {
    /// Config file with namesrv.conf keys (see CONFIG.md).
    #[arg(short = 'c', long = "config")]
    config: Option<std::path::PathBuf>,
    /// Address to listen on; overrides listenPort.
    #[arg(long)]
    listen: Option<String>,
    /// Print the effective configuration and exit.
    #[arg(short = 'p', long = "print-config")]
    print_config: bool,
}

fn main() -> std::process::ExitCode {
    rmq_tools::exit_status("mqnamesrv", serve())
}

fn serve() -> anyhow::Result<()> {
    let args = Args::parse();
    rmq_tools::init_tracing("info");
    // A panic is a bug: log it and abort so a supervisor restarts us (see the driver docs).
    rmq_rt::abort_on_panic();
    rmq_tools::release_freed_memory_promptly();
    let mut opts = NamesrvOptions::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let props = Props::parse_text(&text, KNOWN_KEYS).with_context(|| format!("in {}", path.display()))?;
        apply_in(&props, path.parent(), &mut opts).with_context(|| format!("in {}", path.display()))?;
    }
    if let Some(l) = args.listen {
        opts.listen = l;
    }
    let listen = opts.listen.clone();
    if args.print_config {
        println!("{opts:#?}");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let handle = rmq_namesrv::start_with_limits(
            RealEnv::default(),
            &listen,
            opts.core,
            opts.limits,
            opts.metrics_listen.as_deref(),
        )
        .await
        .with_context(|| format!("binding {listen}"))?;
        let metrics = handle.metrics_addr.map(|a| format!(", metrics at http://{a}/metrics")).unwrap_or_default();
        println!("The Name Server boot success. serializeType=JSON, address {}{metrics}", handle.local_addr);
        rmq_tools::wait_for_signal().await;
        tracing::info!("shutting down");
        handle.shutdown().await;
        Ok(())
    })
}
