//! Deterministic simulation of the real cores.
//!
//! # Layout
//! - [`disk`]: `SimDisk`, the page-cache model behind the store's seam.
//! - [`world`]: the fast lane: event loop, simulated network, nodes, faults.
//! - [`actors`]: producer and consumer actors over the real protocol.
//! - [`oracle`]: history and MQ-semantics checks.
//! - [`scenario`]: the scenario DSL and the built-in catalogue (`sim/scenarios/*.sim`).
//! - [`trace`]: event lines and the run digest.
//! - [`html`]: the trace as a self-contained HTML timeline page (`mqsim run --html`).

pub mod actors;
pub mod disk;
mod host;
pub mod html;
#[cfg(madsim)]
pub mod msim;
pub mod oracle;
pub mod scenario;
pub mod shrink;
#[cfg(not(madsim))]
pub mod stack;
pub mod trace;
pub mod world;

use serde::Serialize;

pub use oracle::{Findings, Verdict};
pub use scenario::Scenario;

/// The outcome of one seeded run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// The simulation lane that ran it (`fast`, `stack`).
    pub lane: String,
    /// FNV-1a digest of the trace, as 16 hex digits.
    pub digest: String,
    /// Trace lines.
    pub trace_lines: u64,
    /// Events processed.
    pub events: u64,
    /// Simulated time, ms.
    pub simulated_ms: u64,
    /// Messages producers tried to send.
    pub sent: u64,
    /// Messages answered SEND_OK.
    pub acked: u64,
    /// Sends that gave up.
    pub failed: u64,
    /// Deliveries in total.
    pub delivered: u64,
    /// Node crashes.
    pub crashes: u64,
    /// The oracle.
    pub findings: Findings,
    /// Kept trace lines (when asked for).
    #[serde(skip)]
    pub trace: Vec<String>,
}

/// A simulation lane: where a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// The discrete-event loop over the cores (thousands of seeds a minute).
    Fast,
    /// The real drivers and client library on turmoil hosts.
    Stack,
    /// The real drivers and client library on madsim nodes (the `--cfg madsim` build).
    Madsim,
}

impl Lane {
    /// Every lane, in the order sweeps run them.
    pub const ALL: [Lane; 3] = [Lane::Fast, Lane::Stack, Lane::Madsim];

    /// The lanes this build of `mqsim` runs: the fast lane and the stack lane in the normal
    /// build, the fast lane and the madsim lane in the `--cfg madsim` build.
    pub fn built() -> Vec<Lane> {
        Lane::ALL.into_iter().filter(|l| l.not_built().is_none()).collect()
    }

    /// Why this build cannot run the lane at all (and which build can).
    pub fn not_built(self) -> Option<&'static str> {
        match self {
            #[cfg(madsim)]
            Lane::Stack => Some(
                "this mqsim is the madsim build (--cfg madsim), whose timers are madsim's; the stack lane runs in the normal build (`cargo run --release --bin mqsim -- …`)",
            ),
            #[cfg(not(madsim))]
            Lane::Madsim => Some(
                "the madsim lane runs in the `--cfg madsim` build of mqsim, in its own target directory: `scripts/madsim-lane.sh …` takes the same arguments",
            ),
            _ => None,
        }
    }

    /// The lane's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Fast => "fast",
            Lane::Stack => "stack",
            Lane::Madsim => "madsim",
        }
    }

    /// A lane by its command-line name.
    pub fn parse(name: &str) -> Option<Lane> {
        Lane::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Why `s` cannot run in this lane, if it cannot: checked before anything runs.
    pub fn refusal(self, s: &Scenario) -> Option<String> {
        if let Some(why) = self.not_built() {
            return Some(why.to_string());
        }
        if let Some(why) = s.unknown_node() {
            return Some(why);
        }
        match self {
            Lane::Fast => None,
            #[cfg(not(madsim))]
            Lane::Stack => stack::refusal(s),
            #[cfg(madsim)]
            Lane::Madsim => msim::refusal(s),
            _ => unreachable!("lanes this build lacks are refused above"),
        }
    }

    /// Runs `s` with `seed` in this lane (`Err` when the lane refuses the scenario or could
    /// not run it).
    pub fn run(self, s: &Scenario, seed: u64, keep_trace: bool) -> Result<RunReport, String> {
        if let Some(why) = self.refusal(s) {
            return Err(why);
        }
        match self {
            Lane::Fast => Ok(run(s, seed, keep_trace)),
            #[cfg(not(madsim))]
            Lane::Stack => stack::run_stack(s, seed, keep_trace),
            #[cfg(madsim)]
            Lane::Madsim => msim::run_madsim(s, seed, keep_trace),
            _ => unreachable!("lanes this build lacks are refused above"),
        }
    }

    /// Runs `s` with `seed` again for a determinism check, keeping the trace. In the madsim
    /// lane this run is itself checked by madsim (two runs, every random draw compared).
    pub fn rerun_checked(self, s: &Scenario, seed: u64) -> Result<RunReport, String> {
        #[cfg(madsim)]
        if self == Lane::Madsim {
            return msim::run_madsim_checked(s, seed);
        }
        self.run(s, seed, true)
    }
}

/// Runs one scenario with one seed in the fast lane.
pub fn run(scenario: &Scenario, seed: u64, keep_trace: bool) -> RunReport {
    let mut w = world::World::new(scenario.clone(), seed, keep_trace);
    let events = w.run();
    let findings = oracle::check(&w);
    let now = w.now;
    RunReport::new(scenario, seed, Lane::Fast, &w.history, &mut w.trace, events, now, findings)
}

impl RunReport {
    /// The report of a finished run of either lane (takes the kept trace lines).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &Scenario,
        seed: u64,
        lane: Lane,
        h: &oracle::History,
        trace: &mut trace::Trace,
        events: u64,
        simulated_ms: u64,
        findings: Findings,
    ) -> Self {
        RunReport {
            scenario: scenario.name.clone(),
            seed,
            lane: lane.name().into(),
            digest: format!("{:016x}", trace.digest),
            trace_lines: trace.count,
            events,
            simulated_ms,
            sent: h.sent.len() as u64,
            acked: h.acked.len() as u64,
            failed: h.failed,
            delivered: h.delivered_total,
            crashes: h.crashes,
            findings,
            trace: std::mem::take(&mut trace.lines),
        }
    }
}
