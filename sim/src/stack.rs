//! The full-stack lane: turmoil hosts run the real drivers (`rmq_namesrv::start`,
//! `rmq_broker::start_observed`) and the real client library (`Producer`, `PushConsumer`) over
//! a [`SimEnv`](crate::host::SimEnv) over [`Turmoil`]: turmoil's simulated TCP, its virtual
//! clock, a `SimDisk` per broker, and the frame-level fault layer of [`crate::host`] for loss and
//! duplication. Same scenario files, hosts and oracle as the madsim lane; same oracle as the
//! fast lane.
//!
//! Determinism: every host runs on turmoil's one thread; drivers poll `select!` in a fixed
//! order; blocking storage work runs inside the simulation through [`Env::offload`] (after the
//! flush lag, which is also when its pages become durable); all randomness comes from the
//! seed. A seed therefore replays bit for bit, and the run prints a trace digest.
//!
//! What this lane cannot express is refused up front by [`refusal`], never downgraded.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::disk::CrashMode;
use crate::host::{lab, Plan, Shared, SimNet, Topology};
use crate::scenario::{Fault, Scenario, Trigger};
use crate::RunReport;

/// Turmoil's step: every host runs once per step, the lane's main cost. 4 ms runs the catalogue
/// at ~300× (2 ms: 165–180×) and keeps every verdict the other lanes give; latencies are
/// rounded up to a step. The coarser step changed timings enough to expose two bugs the 2 ms
/// step never met (a slave's group offsets left pointing into a cut tail; a client frozen by
/// one dead peer's connect), both fixed.
const TICK_MS: u64 = 4;
/// Simulated time the run goes on after the scenario's end while turmoil winds down (unused
/// steps are never taken).
const SIM_SLACK_MS: u64 = 10_000;

/// Why a scenario cannot run in the stack lane.
///
/// - `pause`: turmoil can hold a host's links but cannot stop its runtime, so a paused node's
///   timers would still fire (flush waiters expire, clients time out): that is a network
///   freeze, not a stopped process, and running it would silently test something else.
/// - `crash … on flush|checkpoint` of a node that is not a broker: only brokers flush.
pub fn refusal(s: &Scenario) -> Option<String> {
    if let Some(why) = crate::host::refusal(s) {
        return Some(why);
    }
    for (at, f) in &s.faults {
        match f {
            Fault::Pause(node, _) => {
                return Some(format!(
                "`at {at} pause {node}`: turmoil cannot stop a host's timers, only hold its links (the fast and madsim lanes run it)"
            ))
            }
            Fault::CrashOn(node, Trigger::Flush | Trigger::Checkpoint)
                if !node.starts_with("broker") && !node.starts_with("slave") =>
            {
                return Some(format!("`at {at} crash {node} on …`: only brokers flush or checkpoint"));
            }
            _ => {}
        }
    }
    None
}

/// Owned by each host's main future, which turmoil drops last when the host crashes: closes
/// the sockets its tasks left in the graveyard (in an order that depends on process-wide task
/// ids, so a second run in the same process would differ), in the order they were opened, so
/// peers see the resets in an order the seed decides.
struct Reaper {
    node: String,
    lab: Shared,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let sockets = lab(&self.lab).bury(&self.node);
        for socket in sockets {
            drop(socket);
        }
    }
}

/// turmoil's simulated TCP and clock.
pub(crate) struct Turmoil;

impl SimNet for Turmoil {
    type Tcp = turmoil::net::TcpStream;
    type TcpListener = turmoil::net::TcpListener;
    fn bind(addr: String) -> impl Future<Output = io::Result<Self::TcpListener>> + Send {
        turmoil::net::TcpListener::bind(addr)
    }
    async fn accept(l: &mut Self::TcpListener) -> io::Result<(Self::Tcp, SocketAddr)> {
        l.accept().await
    }
    fn listener_addr(l: &Self::TcpListener) -> io::Result<SocketAddr> {
        l.local_addr()
    }
    fn connect(addr: String) -> impl Future<Output = io::Result<Self::Tcp>> + Send {
        turmoil::net::TcpStream::connect(addr)
    }
    fn addrs(s: &Self::Tcp) -> (io::Result<SocketAddr>, io::Result<SocketAddr>) {
        (s.local_addr(), s.peer_addr())
    }
    fn now_ms() -> u64 {
        turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
    }
}

/// Runs a scenario in the full-stack lane and judges it with the shared oracle.
pub fn run_stack(s: &Scenario, seed: u64, keep_trace: bool) -> Result<RunReport, String> {
    if let Some(why) = s.unknown_node().or_else(|| refusal(s)) {
        return Err(why);
    }
    let topo = Topology::of(s);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_millis(s.duration_ms + SIM_SLACK_MS))
        .min_message_latency(Duration::from_millis(s.latency_ms.max(1)))
        .max_message_latency(Duration::from_millis(s.latency_ms.max(1) + s.jitter_ms))
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(TICK_MS))
        .build();
    let plan = Plan::new(s, &topo, seed, keep_trace);
    let shared = plan.lab.clone();
    for name in topo.hosts() {
        let program = plan.program::<Turmoil>(name);
        let (node, shared) = (name.clone(), shared.clone());
        sim.host(name.as_str(), move || {
            let (program, node, lab) = (program.clone(), node.clone(), shared.clone());
            async move {
                let _reaper = Reaper { node, lab };
                program().await;
                Ok(())
            }
        });
    }
    let mut faults = s.faults.clone().into_iter().peekable();
    let mut crash_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4352_4153_4800_0000);
    let mut partitioned: Vec<(String, String, bool)> = Vec::new();
    let mut armed: BTreeMap<String, (Trigger, u64)> = BTreeMap::new();
    let mut down: BTreeSet<String> = BTreeSet::new();
    let mut events = 0u64;
    let mode = CrashMode { writeback_pct: s.writeback_pct, tear: s.tear };
    loop {
        let now = sim.elapsed().as_millis() as u64;
        if now >= s.duration_ms {
            break;
        }
        // Armed crashes whose moment has come.
        for node in plan.due_triggers(&mut armed, now) {
            crash(&mut sim, &plan, &mut down, &node, mode, &mut crash_rng, now);
        }
        while faults.peek().is_some_and(|(at, _)| *at <= now) {
            let (_, f) = faults.next().expect("peeked");
            events += 1;
            match f {
                Fault::Pause(..) | Fault::ResetOffsets(_) => unreachable!("refused before the run"),
                Fault::Wipe(node) => plan.wipe(&node, &down, now),
                Fault::Crash(node) => crash(&mut sim, &plan, &mut down, &node, mode, &mut crash_rng, now),
                Fault::Restart(node) => {
                    let was_down = down.remove(&node);
                    if was_down {
                        sim.bounce(node.as_str());
                    }
                    plan.on_restart(&mut armed, &node, was_down, now);
                }
                Fault::CrashOn(node, what) => plan.arm_trigger(&mut armed, node, what, now),
                Fault::Partition(a, b) => {
                    sim.partition(a.as_str(), b.as_str());
                    lab(&shared).trace.line(now, "sim", "sim.net.partitioned", &format!("a={a} b={b}"));
                    partitioned.push((a, b, false));
                }
                Fault::PartitionOneWay(a, b) => {
                    sim.partition_oneway(a.as_str(), b.as_str());
                    lab(&shared).trace.line(now, "sim", "sim.net.partitioned", &format!("from={a} to={b} oneway=true"));
                    partitioned.push((a, b, true));
                }
                Fault::Heal => {
                    for (a, b, oneway) in partitioned.drain(..) {
                        if oneway {
                            sim.repair_oneway(a.as_str(), b.as_str());
                        } else {
                            sim.repair(a.as_str(), b.as_str());
                        }
                    }
                    lab(&shared).trace.line(now, "sim", "sim.net.healed", "");
                }
            }
        }
        sim.step().map_err(|e| format!("turmoil: {e}"))?;
        events += 1;
    }
    let simulated_ms = sim.elapsed().as_millis() as u64;
    plan.judge(seed, crate::Lane::Stack, &down, events, simulated_ms)
}

/// Power loss of a host: its software stops, its connections reset, and a broker's disk keeps
/// only what the crash model lets survive.
fn crash(
    sim: &mut turmoil::Sim<'_>,
    plan: &Plan<'_>,
    down: &mut BTreeSet<String>,
    node: &str,
    mode: CrashMode,
    rng: &mut ChaCha8Rng,
    now: u64,
) {
    if !down.insert(node.to_string()) {
        return;
    }
    // The node's sockets go to the graveyard as turmoil drops its tasks; its Reaper, dropped
    // last, closes them in opening order.
    lab(&plan.lab).crashing = Some(node.to_string());
    sim.crash(node);
    lab(&plan.lab).crashing = None;
    let detail = plan.crash_disk(node, mode, rng);
    let mut l = lab(&plan.lab);
    l.history.crashes += 1;
    l.history.member_down(node);
    l.trace.line(now, node, "sim.node.crashed", &detail);
}
