//! Operator tools shared code: admin RPCs against NameServers and brokers, an embedded
//! single-node cluster for demos and benchmarks, and the load generator behind `mqbench`.
//!
//! # Layout
//! - [`admin`]: the requests `mqadmin` sends.
//! - [`embedded`]: an in-process NameServer + broker on 127.0.0.1 with a temp store.
//! - [`bench`](mod@bench): produce and consume load with throughput and latency percentiles.
//! - [`clock`]: times as RocketMQ's tools read and print them.
//! - [`limits`]: this machine's disk and CPU limits, printed beside a benchmark's figures.
//! - [`procs`]: a NameServer and a broker as separate processes (`mqbench --processes`).

pub mod admin;
pub mod bench;
pub mod clock;
pub mod embedded;
pub mod limits;
pub mod procs;

/// Environment variable with the ACL access key the tools sign with (when no flag is given).
pub const ACCESS_KEY_ENV: &str = "ROCKETMQ_ACCESS_KEY";
/// Environment variable with the ACL secret key the tools sign with (when no flag is given).
pub const SECRET_KEY_ENV: &str = "ROCKETMQ_SECRET_KEY";

/// The ACL credentials a tool signs with: `--access-key`/`--secret-key` if given, else
/// `ROCKETMQ_ACCESS_KEY`/`ROCKETMQ_SECRET_KEY`; none: requests are not signed. A key without
/// its partner is an error.
pub fn credentials(
    access_key: Option<String>,
    secret_key: Option<String>,
) -> anyhow::Result<Option<rmq_client::Credentials>> {
    let (ak, sk, ak_name, sk_name) = if access_key.is_some() || secret_key.is_some() {
        (access_key, secret_key, "--access-key", "--secret-key")
    } else {
        (std::env::var(ACCESS_KEY_ENV).ok(), std::env::var(SECRET_KEY_ENV).ok(), ACCESS_KEY_ENV, SECRET_KEY_ENV)
    };
    Ok(rmq_client::config::credentials(ak.as_deref(), sk.as_deref(), ak_name, sk_name)?)
}

/// Ends a tool: an error is one line on stderr, `<tool>: <error>: <cause>: …`, and exit status
/// 1, whatever `RUST_BACKTRACE` says (anyhow's default report adds a backtrace when it is set,
/// as some environments do).
pub fn exit_status(tool: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("{tool}: {line}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Environment variable selecting the log format: `json` for one JSON object per line (for
/// log shippers); anything else, or unset, for text.
pub const LOG_FORMAT_ENV: &str = "RMQ_LOG_FORMAT";

/// Installs the tracing subscriber (stderr; `RUST_LOG` overrides `default`; `RMQ_LOG_FORMAT=json`
/// for JSON lines).
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var(LOG_FORMAT_ENV).is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        let _ = builder.json().flatten_event(true).try_init();
    } else {
        // Colour codes only for a person at a terminal, never in redirected log files.
        let _ = builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init();
    }
}

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_t`, mimalloc.h, v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes the servers' allocator (mimalloc) hand freed memory back to the OS at once.
///
/// By default mimalloc delays purging by 10 ms, and only purges while the thread that owns the
/// memory keeps allocating: a broker that served 16 large frames and then fell quiet kept
/// 270 MiB resident until its next burst of work. Purging at once returns it within
/// milliseconds (see BENCHMARKS.md, "Bounded resources"); mqbench showed no throughput cost.
/// `MIMALLOC_PURGE_DELAY` in the environment still overrides this.
pub fn release_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically and allows
        // changing them at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
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
