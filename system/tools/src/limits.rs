//! This machine's own limits, measured in the same run as a benchmark so its figures travel:
//! a throughput means little on another box unless it is set beside what that box's disk and
//! CPU can do. Measured before the load, in the file system the store uses:
//! - appending blocks and `fdatasync`-ing each (4 KiB, 64 KiB, 256 KiB: group commit sizes);
//! - writing 64 KiB into a store segment and flushing it, through the store's own
//!   [`rmq_store::Segment`] seam, both ways the store writes: a CommitLog segment (write
//!   through the file + fdatasync: what SYNC_FLUSH waits for) and a queue segment (copy into
//!   the mapping + msync);
//! - encoding and decoding stored messages of the run's body size on one core (the codec every
//!   send and pull goes through).

use std::io::Write;
use std::path::Path;

use rmq_proto::message::{decode_message, encode_message, MessageExt};
use rmq_store::{Directory, MmapDirectory, Segment};
use serde::Serialize;

use crate::bench::stopwatch;

/// One `write` + `fdatasync` size.
#[derive(Debug, Clone, Serialize)]
pub struct DiskProbe {
    /// Bytes appended before each sync.
    pub block_bytes: u64,
    /// Syncs timed.
    pub syncs: u32,
    /// Milliseconds per append + sync.
    pub ms_per_sync: f64,
    /// Syncs per second.
    pub syncs_per_sec: f64,
    /// MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
}

/// What this machine allows.
#[derive(Debug, Clone, Serialize)]
pub struct MachineLimits {
    /// Where the disk was probed.
    pub dir: String,
    /// Append + fdatasync, per block size.
    pub disk: Vec<DiskProbe>,
    /// Write 64 KiB into a CommitLog segment and flush it (pwrite + fdatasync), milliseconds.
    pub log_flush_64k_ms: f64,
    /// Write 64 KiB into a mapped queue segment and flush it (copy + msync), milliseconds.
    pub mmap_flush_64k_ms: f64,
    /// Stored-message encode + decode round trips per second on one core.
    pub codec_msgs_per_sec: f64,
}

impl MachineLimits {
    /// The probe for `block_bytes`, if measured.
    pub fn disk_at(&self, block_bytes: u64) -> Option<&DiskProbe> {
        self.disk.iter().find(|d| d.block_bytes == block_bytes)
    }
}

fn probe_fdatasync(dir: &Path, block_bytes: u64, syncs: u32) -> std::io::Result<DiskProbe> {
    let path = dir.join(format!("limits-probe-{block_bytes}"));
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let block = vec![0x5au8; block_bytes as usize];
    let started = stopwatch();
    for _ in 0..syncs {
        f.write_all(&block)?;
        f.sync_data()?;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(DiskProbe {
        block_bytes,
        syncs,
        ms_per_sync: secs * 1000.0 / f64::from(syncs),
        syncs_per_sec: f64::from(syncs) / secs,
        mb_per_sec: (block_bytes * u64::from(syncs)) as f64 / secs / 1e6,
    })
}

/// 64 KiB write + flush rounds through a fresh segment; `log` picks the CommitLog's path.
fn probe_segment_flush(dir: &Path, rounds: u32, log: bool) -> anyhow::Result<f64> {
    let mut d = MmapDirectory::new(dir.join("limits-probe-mmap"));
    let size = 64 * 1024 * u64::from(rounds);
    let path = "probe/00000000000000000000";
    let mut seg = if log { d.open_log_segment(path, size)? } else { d.open_queue_segment(path, size)? };
    let block = vec![0xa5u8; 64 * 1024];
    let started = stopwatch();
    for i in 0..u64::from(rounds) {
        seg.write_at(i * 65_536, &block)?;
        seg.flush_range(i * 65_536, 65_536)?;
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);
    drop(seg);
    std::fs::remove_dir_all(dir.join("limits-probe-mmap"))?;
    Ok(ms)
}

fn probe_codec(body_bytes: usize) -> anyhow::Result<f64> {
    let mut m = MessageExt { topic: "LimitsProbe".into(), body: vec![7u8; body_bytes].into(), ..Default::default() };
    m.properties.insert("UNIQ_KEY".into(), "7F0000010001000000000000000000AB".into());
    m.properties.insert("TAGS".into(), "probe".into());
    let mut buf = Vec::with_capacity(body_bytes + 256);
    let (mut n, started) = (0u64, stopwatch());
    while started.elapsed().as_millis() < 300 {
        for _ in 0..256 {
            buf.clear();
            encode_message(&m, &mut buf)?;
            let (back, _) = decode_message(&bytes::Bytes::copy_from_slice(&buf), true)?;
            std::hint::black_box(back);
            n += 1;
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Measures the limits, probing the disk under `dir` (the store's file system).
pub fn measure(dir: &Path, body_bytes: usize) -> anyhow::Result<MachineLimits> {
    std::fs::create_dir_all(dir)?;
    let disk = vec![
        probe_fdatasync(dir, 4 * 1024, 200)?,
        probe_fdatasync(dir, 64 * 1024, 200)?,
        probe_fdatasync(dir, 256 * 1024, 100)?,
    ];
    Ok(MachineLimits {
        dir: dir.display().to_string(),
        disk,
        log_flush_64k_ms: probe_segment_flush(dir, 100, true)?,
        mmap_flush_64k_ms: probe_segment_flush(dir, 100, false)?,
        codec_msgs_per_sec: probe_codec(body_bytes)?,
    })
}

/// The limits, one line each, with a run's figures as ratios of them.
pub fn render(l: &MachineLimits, produce_msgs_per_sec: f64, body_bytes: usize) -> String {
    let mut s = format!("machine limits (measured in {} before the load):\n", l.dir);
    for d in &l.disk {
        s.push_str(&format!(
            "  write+fdatasync {:>3} KiB: {:.2} ms ({:.0}/s, {:.0} MB/s)\n",
            d.block_bytes / 1024,
            d.ms_per_sync,
            d.syncs_per_sec,
            d.mb_per_sec
        ));
    }
    s.push_str(&format!("  CommitLog segment write+fdatasync 64 KiB: {:.2} ms\n", l.log_flush_64k_ms));
    s.push_str(&format!("  mapped queue segment copy+msync 64 KiB: {:.2} ms\n", l.mmap_flush_64k_ms));
    s.push_str(&format!("  codec (encode+decode, {body_bytes} B body, one core): {:.0} msg/s\n", l.codec_msgs_per_sec));
    let produce_mb = produce_msgs_per_sec * body_bytes as f64 / 1e6;
    s.push_str(&format!(
        "  produce = {:.1}% of the codec's one-core rate",
        100.0 * produce_msgs_per_sec / l.codec_msgs_per_sec
    ));
    if let Some(big) = l.disk_at(256 * 1024) {
        s.push_str(&format!(
            "; {produce_mb:.0} MB/s = {:.1}% of 256 KiB fdatasync bandwidth",
            100.0 * produce_mb / big.mb_per_sec
        ));
    }
    if let Some(small) = l.disk_at(4 * 1024) {
        s.push_str(&format!("; {:.1}x one fdatasync per message", produce_msgs_per_sec / small.syncs_per_sec));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_measured_and_rendered_as_ratios() {
        let tmp = tempfile::tempdir().unwrap();
        let l = measure(tmp.path(), 1024).unwrap();
        assert_eq!(l.disk.len(), 3);
        assert!(l.disk.iter().all(|d| d.ms_per_sync > 0.0 && d.mb_per_sec > 0.0));
        assert!(l.log_flush_64k_ms > 0.0 && l.mmap_flush_64k_ms > 0.0 && l.codec_msgs_per_sec > 1_000.0, "{l:?}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "the probes clean up");
        let text = render(&l, l.codec_msgs_per_sec / 2.0, 1024);
        assert!(text.contains("produce = 50.0% of the codec's one-core rate"), "{text}");
    }
}
