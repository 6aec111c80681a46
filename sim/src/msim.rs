//! The madsim lane: the same hosts as the stack lane (the real NameServer, broker and client
//! library, [`crate::host`]) on madsim nodes: madsim's simulated TCP, its virtual clock and its
//! seeded scheduler, which also polls tasks in a seeded order. The drivers are built with
//! `--cfg madsim` (scripts/madsim-lane.sh, its own target directory), so the runtime facade's
//! timers and spawns are madsim's; nothing else in the production code knows.
//!
//! Unlike turmoil, madsim can stop a node's tasks while its timers and sockets go on (a
//! SIGSTOP), so this lane runs `pause` faults. madsim's own determinism check (it logs every
//! random draw of one run and compares the next against it) backs `--check-determinism`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::disk::CrashMode;
use crate::host::{lab, Plan, SimNet, Topology};
use crate::scenario::{Fault, Scenario, Trigger};
use crate::{Lane, RunReport};

/// How often the supervisor looks for due faults and armed crashes (simulated ms).
const TICK_MS: u64 = 1;

/// Why a scenario cannot run in the madsim lane: nothing in the scenario language is beyond it
/// (it pauses nodes, which turmoil cannot), except an aimed crash of a node that never flushes.
pub fn refusal(s: &Scenario) -> Option<String> {
    if let Some(why) = crate::host::refusal(s) {
        return Some(why);
    }
    for (at, f) in &s.faults {
        if let Fault::CrashOn(node, Trigger::Flush | Trigger::Checkpoint) = f {
            if !node.starts_with("broker") && !node.starts_with("slave") {
                return Some(format!("`at {at} crash {node} on …`: only brokers flush or checkpoint"));
            }
        }
    }
    None
}

/// madsim's simulated TCP and clock.
pub(crate) struct Madsim;

impl SimNet for Madsim {
    type Tcp = madsim::net::TcpStream;
    type TcpListener = madsim::net::TcpListener;
    async fn bind(addr: String) -> io::Result<Self::TcpListener> {
        madsim::net::TcpListener::bind(addr.as_str()).await
    }
    async fn accept(l: &mut Self::TcpListener) -> io::Result<(Self::Tcp, SocketAddr)> {
        l.accept().await
    }
    fn listener_addr(l: &Self::TcpListener) -> io::Result<SocketAddr> {
        l.local_addr()
    }
    async fn connect(addr: String) -> io::Result<Self::Tcp> {
        madsim::net::TcpStream::connect(addr.as_str()).await
    }
    fn addrs(s: &Self::Tcp) -> (io::Result<SocketAddr>, io::Result<SocketAddr>) {
        (s.local_addr(), s.peer_addr())
    }
    fn now_ms() -> u64 {
        madsim::time::TimeHandle::try_current().map_or(0, |t| t.elapsed().as_millis() as u64)
    }
}

fn config(s: &Scenario) -> madsim::Config {
    let mut c = madsim::Config::default();
    let lo = Duration::from_millis(s.latency_ms.max(1));
    c.net.send_latency = lo..lo + Duration::from_millis(s.jitter_ms) + Duration::from_micros(1);
    c
}

/// Runs a scenario in the madsim lane and judges it with the shared oracle.
pub fn run_madsim(s: &Scenario, seed: u64, keep_trace: bool) -> Result<RunReport, String> {
    if let Some(why) = s.unknown_node().or_else(|| refusal(s)) {
        return Err(why);
    }
    let rt = Runtime::with_seed_and_config(seed, config(s));
    rt.block_on(supervise(s.clone(), seed, keep_trace))
}

/// The run madsim's determinism check replays: its API takes a plain `fn`, so the scenario
/// reaches it through this slot, filled and emptied around the check by one caller at a time.
static CHECKED: Mutex<Option<(Scenario, u64)>> = Mutex::new(None);

fn checked_run() -> impl Future<Output = Result<RunReport, String>> {
    let (s, seed) = CHECKED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone().expect("a checked run");
    supervise(s, seed, true)
}

/// Runs a scenario twice under madsim's determinism check (every random draw of the second
/// run is compared with the first's) and returns the second run's report; a divergence is an
/// `Err` naming the check.
pub fn run_madsim_checked(s: &Scenario, seed: u64) -> Result<RunReport, String> {
    if let Some(why) = s.unknown_node().or_else(|| refusal(s)) {
        return Err(why);
    }
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    *CHECKED.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((s.clone(), seed));
    let config = config(s);
    let outcome = std::panic::catch_unwind(move || Runtime::check_determinism(seed, config, checked_run));
    *CHECKED.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    match outcome {
        Ok(report) => report,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("madsim's determinism check failed: {why}"))
        }
    }
}

/// The supervisor: builds the hosts as madsim nodes, applies the fault schedule and aimed
/// crashes, and judges the run at its end.
async fn supervise(s: Scenario, seed: u64, keep_trace: bool) -> Result<RunReport, String> {
    let topo = Topology::of(&s);
    let plan = Plan::new(&s, &topo, seed, keep_trace);
    let shared = plan.lab.clone();
    let handle = Handle::current();
    let net = NetSim::current();
    let mut nodes: BTreeMap<String, NodeHandle> = BTreeMap::new();
    for (k, name) in topo.hosts().enumerate() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, (k / 250) as u8, (k % 250) as u8 + 1));
        net.add_dns_record(name, ip);
        let program = plan.program::<Madsim>(name);
        let node = handle.create_node().name(name.as_str()).ip(ip).init(move || program()).build();
        nodes.insert(name.clone(), node);
    }
    let id = |name: &str| nodes.get(name).map(NodeHandle::id);
    let mut faults = s.faults.clone().into_iter().peekable();
    let mut crash_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4352_4153_4800_0000);
    let mut partitioned: Vec<(String, String, bool)> = Vec::new();
    let mut armed: BTreeMap<String, (Trigger, u64)> = BTreeMap::new();
    let mut paused: BTreeMap<String, u64> = BTreeMap::new();
    let mut down: BTreeSet<String> = BTreeSet::new();
    let mut events = 0u64;
    let mode = CrashMode { writeback_pct: s.writeback_pct, tear: s.tear };
    let crash = |node: &str, down: &mut BTreeSet<String>, rng: &mut ChaCha8Rng, now: u64| {
        let Some(node_id) = id(node) else { return };
        if !down.insert(node.to_string()) {
            return;
        }
        // madsim resets the node's sockets at once and drops its tasks as its scheduler
        // reaches them, in the seed's order.
        handle.kill(node_id);
        let detail = plan.crash_disk(node, mode, rng);
        let mut l = lab(&plan.lab);
        l.history.crashes += 1;
        l.history.member_down(node);
        l.trace.line(now, node, "sim.node.crashed", &detail);
    };
    loop {
        let now = Madsim::now_ms();
        if now >= s.duration_ms {
            break;
        }
        // Paused nodes whose pause is over.
        let resumed: Vec<String> = paused.iter().filter(|(_, until)| **until <= now).map(|(n, _)| n.clone()).collect();
        for node in resumed {
            paused.remove(&node);
            if let Some(node_id) = id(&node) {
                handle.resume(node_id);
                lab(&shared).trace.line(now, &node, "sim.node.resumed", "");
            }
        }
        // Armed crashes whose moment has come.
        for node in plan.due_triggers(&mut armed, now) {
            crash(&node, &mut down, &mut crash_rng, now);
        }
        while faults.peek().is_some_and(|(at, _)| *at <= now) {
            let (_, f) = faults.next().expect("peeked");
            events += 1;
            match f {
                Fault::Wipe(node) => plan.wipe(&node, &down, now),
                Fault::Crash(node) => crash(&node, &mut down, &mut crash_rng, now),
                Fault::Restart(node) => {
                    let was_down = down.remove(&node);
                    if let Some(node_id) = id(&node).filter(|_| was_down) {
                        handle.restart(node_id);
                    }
                    plan.on_restart(&mut armed, &node, was_down, now);
                }
                Fault::CrashOn(node, what) => plan.arm_trigger(&mut armed, node, what, now),
                Fault::ResetOffsets(_) => unreachable!("refused before the run"),
                Fault::Pause(node, ms) => {
                    if let Some(node_id) = id(&node) {
                        handle.pause(node_id);
                        let until = paused.entry(node.clone()).or_insert(0);
                        *until = (*until).max(now + ms);
                        lab(&shared).trace.line(now, &node, "sim.node.paused", &format!("ms={ms}"));
                    }
                }
                Fault::Partition(a, b) => {
                    if let (Some(x), Some(y)) = (id(&a), id(&b)) {
                        net.clog_link(x, y);
                        net.clog_link(y, x);
                    }
                    lab(&shared).trace.line(now, "sim", "sim.net.partitioned", &format!("a={a} b={b}"));
                    partitioned.push((a, b, false));
                }
                Fault::PartitionOneWay(a, b) => {
                    if let (Some(x), Some(y)) = (id(&a), id(&b)) {
                        net.clog_link(x, y);
                    }
                    lab(&shared).trace.line(now, "sim", "sim.net.partitioned", &format!("from={a} to={b} oneway=true"));
                    partitioned.push((a, b, true));
                }
                Fault::Heal => {
                    for (a, b, oneway) in partitioned.drain(..) {
                        if let (Some(x), Some(y)) = (id(&a), id(&b)) {
                            net.unclog_link(x, y);
                            if !oneway {
                                net.unclog_link(y, x);
                            }
                        }
                    }
                    lab(&shared).trace.line(now, "sim", "sim.net.healed", "");
                }
            }
        }
        madsim::time::sleep(Duration::from_millis(TICK_MS)).await;
        events += 1;
    }
    // No await from here on: no node runs again before the stores are read.
    let simulated_ms = Madsim::now_ms();
    plan.judge(seed, Lane::Madsim, &down, events, simulated_ms)
}
