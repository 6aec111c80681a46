//! A cluster of real processes, as users run it: `mqnamesrv` and `mqbroker` started from the
//! directory the running tool was started from (or `$RMQ_BIN_DIR`), on 127.0.0.1 with
//! ephemeral ports and a temporary store, stopped (SIGKILL) and removed when dropped. `mqbench
//! --processes` measures against it, and reads the broker's memory and descriptors from /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use rmq_broker_core::FlushDiskType;
use rmq_rt::RealEnv;
use serde::Serialize;

/// Where the binaries are looked for when `$RMQ_BIN_DIR` is unset: beside the running tool.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("RMQ_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    Ok(exe.parent().context("the executable has a directory")?.to_path_buf())
}

/// What a process holds, from /proc (Linux).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProcessResources {
    /// The process these figures are of.
    pub pid: u32,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Open file descriptors (sockets, files, the store's lock).
    pub open_fds: u64,
    /// Threads.
    pub threads: u64,
}

impl ProcessResources {
    /// Reads them for `pid`; `None` when /proc has no such process.
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some(ProcessResources { pid, rss_bytes: field("VmRSS:")? * 1024, open_fds, threads: field("Threads:")? })
    }
}

/// A started process whose stdout goes to a log file, polled for its boot line.
#[derive(Debug)]
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `bin args…` and waits (10 s at most) for a stdout line containing `marker`;
    /// returns the process and that line.
    async fn start(dir: &Path, bin: &str, args: &[&str], marker: &str) -> anyhow::Result<(Self, String)> {
        let path = bin_dir()?.join(bin);
        let log = dir.join(format!("{bin}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(&path)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {} (set RMQ_BIN_DIR to the directory holding it)", path.display()))?;
        let mut p = Proc { child, log };
        for _ in 0..500 {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(marker)) {
                return Ok((p, line.to_string()));
            }
            if let Some(status) = p.child.try_wait()? {
                anyhow::bail!("{bin} exited ({status}) before it booted: {}", text.trim());
            }
            rmq_rt::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("{bin} printed no {marker:?} within 10 s (log: {})", p.log.display())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text after `after` on `line`, up to a space, comma or ']'.
fn address_in(line: &str, after: &str) -> anyhow::Result<String> {
    let at = line.find(after).with_context(|| format!("no address in {line:?}"))?;
    Ok(line[at + after.len()..].trim().chars().take_while(|c| !matches!(c, ' ' | ',' | ']')).collect())
}

/// A NameServer and a broker as separate processes.
#[derive(Debug)]
pub struct ProcessCluster {
    /// NameServer address.
    pub namesrv_addr: String,
    /// Broker address.
    pub broker_addr: String,
    broker: Proc,
    /// Kept so the NameServer lives (and is killed) with the cluster.
    _namesrv: Proc,
    /// The broker's store, config and the processes' logs.
    pub dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// Starts both with the same segment sizes as the embedded cluster, `flush` and
    /// warmMapedFileEnable=`warm`; waits until the broker is registered.
    pub async fn start(flush: FlushDiskType, warm: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (namesrv, line) =
            Proc::start(dir.path(), "mqnamesrv", &["--listen", "127.0.0.1:0"], "boot success").await?;
        let namesrv_addr = address_in(&line, "address ")?;
        let conf = dir.path().join("broker.conf");
        let flush_key = match flush {
            FlushDiskType::SyncFlush => "SYNC_FLUSH",
            FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
        };
        std::fs::write(
            &conf,
            format!(
                "brokerName=bench\nflushDiskType={flush_key}\nwarmMapedFileEnable={warm}\nmappedFileSizeCommitLog={}\nmappedFileSizeConsumeQueue={}\n",
                256 * 1024 * 1024,
                100_000 * 20
            ),
        )?;
        let store = dir.path().join("store");
        let (conf_s, store_s) = (conf.to_string_lossy().into_owned(), store.to_string_lossy().into_owned());
        let args = ["-n", &namesrv_addr, "-c", &conf_s, "--listen", "127.0.0.1:0", "--store", &store_s];
        let (broker, line) = Proc::start(dir.path(), "mqbroker", &args, "boot success").await?;
        let broker_addr = address_in(&line, ", ")?;
        let admin = crate::admin::Admin::new(RealEnv::default(), vec![namesrv_addr.clone()]);
        for _ in 0..500 {
            if !admin.masters(None).await.unwrap_or_default().is_empty() {
                return Ok(ProcessCluster { namesrv_addr, broker_addr, broker, _namesrv: namesrv, dir });
            }
            rmq_rt::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("the broker at {broker_addr} never registered with {namesrv_addr}")
    }

    /// The broker process's memory, descriptors and threads now.
    pub fn broker_resources(&self) -> Option<ProcessResources> {
        ProcessResources::of(self.broker_pid())
    }

    /// The broker process's id.
    pub fn broker_pid(&self) -> u32 {
        self.broker.child.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_of_this_process_are_read_from_proc() {
        let r = ProcessResources::of(std::process::id()).expect("Linux /proc");
        assert!(r.pid == std::process::id() && r.rss_bytes > 0 && r.open_fds >= 3 && r.threads >= 1, "{r:?}");
        assert_eq!(ProcessResources::of(u32::MAX), None);
    }

    #[test]
    fn addresses_are_cut_from_boot_lines() {
        let ns = "The Name Server boot success. serializeType=JSON, address 127.0.0.1:40001";
        assert_eq!(address_in(ns, "address ").unwrap(), "127.0.0.1:40001");
        let b = "The broker[bench, 127.0.0.1:40002] boot success. serializeType=JSON";
        assert_eq!(address_in(b, ", ").unwrap(), "127.0.0.1:40002");
        assert!(address_in("nothing", "address ").is_err());
    }
}
