//! Probes what hostile peers can make a real `mqbroker` hold, printing its RSS (from
//! `/proc/PID/status`) before, during and after each probe. Linux only; loopback only.
//!
//! ```text
//! cargo build --release --bins && cargo run --release --example memory_probe
//! cargo run --release --example memory_probe -- --bin-dir target/release --conns 64 --frame-mib 16
//! ```
//!
//! Probes:
//! - `slow-frames`: `--conns` connections each announce a `--frame-mib` frame and send most of
//!   it slowly (1 MiB per connection every 50 ms), then leave.
//! - `unread`: one connection pipelines `--pulls` PULL_MESSAGE requests for 64 KiB each and
//!   never reads the answers (4,000 ask for 250 MiB, four times the default outbound budget),
//!   then leaves.
//! - `idle`: `--idle-conns` connections open and say nothing for the idle timeout (2 s here).
//!
//! The broker runs with `serverChannelMaxIdleTimeSeconds=2` and, unless `--conf` names another
//! file, its default limits otherwise.

// A measuring tool driving child processes from plain threads; the determinism rules are for
// cores and drivers.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use rmq_proto::frame::encode_to_bytes;
use rmq_proto::header::{PullMessageRequestHeader, SendMessageRequestHeader};
use rmq_proto::{RemotingCommand, RequestCode};

#[derive(Parser, Debug)]
struct Args {
    /// Directory holding the mqnamesrv and mqbroker binaries (default: next to this example).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Extra broker.conf lines, e.g. "serverIncompleteFramesMaxBytes=67108880".
    #[arg(long)]
    conf: Vec<String>,
    /// Start the broker without a config file (for binaries that predate the limit keys).
    #[arg(long)]
    baseline: bool,
    /// Slow-frame connections.
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Announced frame size, MiB (at most 16).
    #[arg(long, default_value_t = 16)]
    frame_mib: u32,
    /// Pipelined pulls for the unread probe.
    #[arg(long, default_value_t = 4000)]
    pulls: i32,
    /// Connections for the idle probe.
    #[arg(long, default_value_t = 1000)]
    idle_conns: usize,
}

struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: PathBuf, args: &[&str], marker: &str, addr_after: &str) -> Proc {
    let mut child = Command::new(&bin)
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let line = lines.by_ref().map_while(Result::ok).find(|l| l.contains(marker)).expect("started");
    let rest = &line[line.find(addr_after).expect("address on the marker line") + addr_after.len()..];
    let addr = rest.trim().chars().take_while(|c| !matches!(c, ' ' | ',' | ']')).collect();
    std::thread::spawn(move || for _ in lines {});
    Proc { child, addr }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn request(code: RequestCode, opaque: i32, h: &impl rmq_proto::header::CommandHeader) -> Vec<u8> {
    encode_to_bytes(&RemotingCommand::request_with(code, opaque, h)).expect("encodes").to_vec()
}

/// True if the peer has closed `s` (EOF or reset) within `wait`.
fn closed(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// Runs `work` while sampling RSS every 10 ms; returns its result and the peak (MiB).
fn with_peak_rss<T>(pid: u32, work: impl FnOnce() -> T) -> (T, f64) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0f64;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                peak = peak.max(rss_mib(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let out = work();
    done.store(true, std::sync::atomic::Ordering::Release);
    (out, sampler.join().expect("sampler"))
}

/// Opens `args.conns` connections, each announcing a `frame_len` frame, and feeds them 1 MiB
/// each every 50 ms, leaving the frames one MiB short. Returns the connections the broker kept.
fn slow_frames(args: &Args, addr: &str, frame_len: u32, chunk: &[u8]) -> Vec<Option<TcpStream>> {
    let mut conns: Vec<Option<TcpStream>> = (0..args.conns)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(&frame_len.to_be_bytes()).expect("prefix");
            Some(s)
        })
        .collect();
    for _round in 0..(args.frame_mib.min(16) - 1) {
        for c in conns.iter_mut() {
            if let Some(s) = c {
                if s.write_all(chunk).is_err() {
                    *c = None;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the last writes land before the peak is read.
    std::thread::sleep(Duration::from_millis(500));
    conns
}

/// Prints RSS 0.5, 1, 2, 4 and 8 s after the peers left.
fn settle(pid: u32, what: &str) {
    let mut line = format!("{what}: after the peers left: RSS");
    let mut slept = 0;
    for at in [500, 1_000, 2_000, 4_000, 8_000] {
        std::thread::sleep(Duration::from_millis(at - slept));
        slept = at;
        line.push_str(&format!(" {:.1} MiB at {:.1} s,", rss_mib(pid), at as f64 / 1000.0));
    }
    println!("{}", line.trim_end_matches(','));
}

fn main() {
    let args = Args::parse();
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("own path");
        exe.parent().and_then(|p| p.parent()).expect("target/<profile>/examples").to_path_buf()
    });
    let store = std::env::temp_dir().join(format!("memory-probe-{}", std::process::id()));
    std::fs::create_dir_all(&store).expect("temp dir");
    let conf = store.join("broker.conf");
    let mut text = String::from("serverChannelMaxIdleTimeSeconds=2\n");
    for line in &args.conf {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&conf, &text).expect("conf");
    let ns = spawn(bin_dir.join("mqnamesrv"), &["--listen", "127.0.0.1:0"], "boot success", "address ");
    let store_s = store.join("store").to_string_lossy().into_owned();
    let conf_s = conf.to_string_lossy().into_owned();
    let mut broker_args = vec!["-n", &ns.addr, "--listen", "127.0.0.1:0", "--store", &store_s];
    if !args.baseline {
        broker_args.extend(["-c", &conf_s]);
    }
    let broker = spawn(bin_dir.join("mqbroker"), &broker_args, "boot success", ", ");
    let pid = broker.child.id();
    let shown = if args.baseline { "none (baseline)".to_string() } else { text.trim().replace('\n', ", ") };
    println!("broker pid {pid}, config: {shown}");
    std::thread::sleep(Duration::from_millis(500));
    println!("idle RSS: {:.1} MiB", rss_mib(pid));

    // Probe 1: slow frames.
    let frame_len = (args.frame_mib.min(16) << 20) - 4;
    let chunk = vec![0u8; 1 << 20];
    let (conns, peak) = with_peak_rss(pid, || slow_frames(&args, &broker.addr, frame_len, &chunk));
    let open = conns.iter().filter(|c| c.is_some()).count();
    println!(
        "slow-frames: {} connections x {} MiB announced: peak RSS {:.1} MiB, {} connections still open (the rest closed by the budget)",
        args.conns,
        args.frame_mib,
        peak,
        open
    );
    drop(conns);
    settle(pid, "slow-frames");

    // Probe 2: pipelined pulls that are never read.
    let body = vec![7u8; 4096];
    let mut p = TcpStream::connect(&broker.addr).expect("connect");
    for i in 0..16 {
        let h = SendMessageRequestHeader {
            producer_group: "probe_p".into(),
            topic: "Probe".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 1,
            queue_id: 0,
            sys_flag: 0,
            born_timestamp: 0,
            flag: 0,
            properties: None,
            reconsume_times: None,
            unit_mode: None,
            batch: None,
            max_reconsume_times: None,
            broker_name: None,
        };
        let mut cmd = RemotingCommand::request_with(RequestCode::SendMessage, i, &h);
        cmd.body = body.clone().into();
        p.write_all(&encode_to_bytes(&cmd).expect("encodes")).expect("send");
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(p);
    let before = rss_mib(pid);
    let mut greedy = TcpStream::connect(&broker.addr).expect("connect");
    let (written, during) = with_peak_rss(pid, || {
        let mut written = 0usize;
        for i in 0..args.pulls {
            let h = PullMessageRequestHeader {
                consumer_group: "probe_c".into(),
                topic: "Probe".into(),
                queue_id: 0,
                queue_offset: 0,
                max_msg_nums: 32,
                sys_flag: 0,
                commit_offset: 0,
                suspend_timeout_millis: 0,
                subscription: Some("*".into()),
                sub_version: 0,
                expression_type: Some("TAG".into()),
                max_msg_bytes: None,
                broker_name: None,
            };
            let frame = request(RequestCode::PullMessage, 1_000 + i, &h);
            if greedy.write_all(&frame).is_err() {
                break;
            }
            written += frame.len();
        }
        std::thread::sleep(Duration::from_secs(1));
        written
    });
    // Within 1 s, before the 2 s idle timeout could be what closed it.
    let was_closed = closed(&mut greedy, Duration::from_millis(500));
    drop(greedy);
    println!(
        "unread: {} pulls ({} KB sent) never read: RSS {:.1} MiB, peak {:.1} MiB, connection closed by the broker within 1 s: {}",
        args.pulls,
        written / 1000,
        before,
        during,
        was_closed,
    );
    settle(pid, "unread");

    // Probe 3: idle connections.
    let mut idle: Vec<TcpStream> =
        (0..args.idle_conns).map(|_| TcpStream::connect(&broker.addr).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let with_idle = rss_mib(pid);
    std::thread::sleep(Duration::from_secs(3));
    let gone = idle.iter_mut().map(|s| closed(s, Duration::from_millis(1))).filter(|c| *c).count();
    println!(
        "idle: {} silent connections: RSS {:.1} MiB; after the 2 s idle timeout {} were closed by the broker",
        args.idle_conns, with_idle, gone
    );
    drop(idle);
    settle(pid, "idle");
    drop(broker);
    drop(ns);
    let _ = std::fs::remove_dir_all(&store);
}
