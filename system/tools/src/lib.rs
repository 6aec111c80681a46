//! Operator tools shared code: admin RPCs against NameServers and brokers, an embedded
//! single-node cluster for demos and benchmarks, and the load generator behind `mqbench`.
//!
//! # Layout
//! - [`admin`]: the requests `mqadmin` sends.
//! - [`embedded`]: an in-process NameServer + broker on 127.0.0.1 with a temp store.
//! - [`bench`]: produce and consume load with throughput and latency percentiles.

pub mod admin;
pub mod bench;
pub mod embedded;

/// Installs the tracing subscriber (stderr; `RUST_LOG` overrides `default`).
pub fn init_tracing(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in redirected log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Waits for SIGTERM or Ctrl-C: the servers' clean-shutdown trigger.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
