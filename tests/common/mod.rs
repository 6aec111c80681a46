//! Starting and stopping the real binaries on 127.0.0.1 with ephemeral ports.

#![allow(dead_code)] // Each test file uses a different subset.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process (this test binary run again as a client process) killed on drop, so a
/// failing test never leaves it behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    /// The address it printed at boot.
    pub addr: String,
    /// The whole line it printed at boot.
    pub line: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..500 {
            if let Some(status) = self.child.try_wait().expect("waiting on a child") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("process did not exit within 5 s of SIGTERM");
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` with `args`, waiting for a stdout line containing `marker`; the address is the
/// text after `addr_after` up to the next space, comma or ']' on that line.
pub fn spawn(bin: &str, args: &[&str], marker: &str, addr_after: &str) -> Proc {
    let mut child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(marker) => break l,
            Some(Ok(_)) => continue,
            _ => panic!("{bin} exited before printing {marker:?}"),
        }
    };
    let rest = &line[line.find(addr_after).expect("marker line holds the address") + addr_after.len()..];
    let addr: String = rest.trim().chars().take_while(|c| !matches!(c, ' ' | ',' | ']')).collect();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc { child, addr, line }
}

pub fn namesrv() -> Proc {
    spawn(env!("CARGO_BIN_EXE_mqnamesrv"), &["--listen", "127.0.0.1:0"], "boot success", "address ")
}

/// Keys every test broker gets unless its own conf sets them. The disk a test's temp dir lives
/// on is the whole machine's: by default a broker refuses sends above 90% used and deletes its
/// oldest segments above 85%, so a test about something else would fail, or lose acknowledged
/// messages, whenever the host's disk happens to be that full. tests/disk_full.rs, which is
/// about exactly that, sets its own.
pub const HOST_DISK_INDEPENDENT: &[(&str, &str)] =
    &[("diskSpaceWarningLevelRatio", "100"), ("diskSpaceCleanForciblyRatio", "100")];

/// The conf a test broker starts with: the test's own (if any) plus the
/// [`HOST_DISK_INDEPENDENT`] keys it does not set, written beside the store.
pub fn test_broker_conf(store: &Path, conf: Option<&Path>) -> PathBuf {
    let mut text = conf.map(|c| std::fs::read_to_string(c).unwrap()).unwrap_or_default();
    for (key, value) in HOST_DISK_INDEPENDENT {
        let set = text.lines().any(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == *key));
        if !set {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("{key}={value}\n"));
        }
    }
    let path = store.with_extension("test-broker.conf");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn broker(namesrv: &str, store: &Path, listen: &str, conf: Option<&Path>) -> Proc {
    let conf = test_broker_conf(store, conf).to_string_lossy().into_owned();
    let store = store.to_string_lossy().into_owned();
    let args = vec!["-n", namesrv, "--listen", listen, "--store", &store, "-c", &conf];
    let p = spawn(env!("CARGO_BIN_EXE_mqbroker"), &args, "boot success", ", ");
    wait_for_broker(namesrv, &p.addr);
    p
}

/// Waits until the NameServer lists the broker (its first registration is asynchronous).
pub fn wait_for_broker(namesrv: &str, broker_addr: &str) {
    for _ in 0..300 {
        let out = Command::new(env!("CARGO_BIN_EXE_mqadmin"))
            .args(["clusterList", "-n", namesrv])
            .output()
            .expect("running mqadmin");
        if String::from_utf8_lossy(&out.stdout).contains(broker_addr) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("broker {broker_addr} never registered with {namesrv}");
}

/// Runs mqadmin and returns its stdout; panics on failure.
pub fn mqadmin(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mqadmin")).args(args).output().expect("running mqadmin");
    assert!(out.status.success(), "mqadmin {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("mqadmin prints UTF-8")
}

/// Waits until the NameServer routes `topic`.
pub fn wait_for_route(namesrv: &str, topic: &str) {
    for _ in 0..300 {
        let out = Command::new(env!("CARGO_BIN_EXE_mqadmin"))
            .args(["topicRoute", "-n", namesrv, "-t", topic])
            .output()
            .expect("running mqadmin");
        if out.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("topic {topic} never became routable");
}

/// Sends one request on a blocking connection and reads its one response (5 s at most); the
/// peer must keep the connection open.
pub fn call(s: &mut std::net::TcpStream, req: &rmq_proto::RemotingCommand) -> rmq_proto::RemotingCommand {
    use std::io::{Read, Write};
    s.write_all(&rmq_proto::frame::encode_to_bytes(req).unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = bytes::BytesMut::new();
    loop {
        let mut chunk = [0u8; 64 * 1024];
        let n = s.read(&mut chunk).expect("the server answers");
        assert!(n > 0, "the server keeps the connection open");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(c) = rmq_proto::frame::FrameDecoder::default().decode(&mut buf).unwrap() {
            return c;
        }
    }
}

/// True if the peer closes `s` within 10 s (EOF or reset), reading and discarding any data.
pub fn closed_by_peer(s: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// The metrics URL a server printed on its boot line ("metrics at http://…/metrics").
pub fn metrics_url(boot_line: &str) -> String {
    let at = boot_line.find("metrics at ").expect("the boot line names the metrics endpoint") + "metrics at ".len();
    boot_line[at..].split_whitespace().next().expect("a URL").to_string()
}

/// GETs a URL's body over plain HTTP/1.1 (loopback metrics endpoints), as curl would.
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).expect("connecting to the metrics endpoint");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// The value of the first sample line of `metric` whose labels contain every one of `labels`.
pub fn metric_value(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Options for a broker started in this process ([`rmq_broker::start`]) on 127.0.0.1 with
/// ephemeral ports over `store`, registering with no NameServer; like the binaries' brokers
/// above, not at the mercy of how full the host's disk is.
pub fn in_process_broker(store: &Path) -> rmq_broker::BrokerOptions {
    rmq_broker::BrokerOptions {
        listen: "127.0.0.1:0".into(),
        namesrv_addrs: vec![],
        store_root: store.to_string_lossy().into_owned(),
        core: rmq_broker_core::BrokerConfig {
            broker_addr: "127.0.0.1:0".into(),
            disk_warning_level_ratio: 100,
            disk_clean_forcibly_ratio: 100,
            ..rmq_broker_core::BrokerConfig::default()
        },
        limits: Default::default(),
        ha_listen: None,
        metrics_listen: None,
    }
}
