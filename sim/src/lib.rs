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
pub mod oracle;
pub mod scenario;
pub mod shrink;
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
}

impl Lane {
    /// Every lane, in the order sweeps run them.
    pub const ALL: [Lane; 2] = [Lane::Fast, Lane::Stack];

    /// The lane's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Fast => "fast",
            Lane::Stack => "stack",
        }
    }

    /// A lane by its command-line name.
    pub fn parse(name: &str) -> Option<Lane> {
        Lane::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Why `s` cannot run in this lane, if it cannot: checked before anything runs.
    pub fn refusal(self, s: &Scenario) -> Option<String> {
        if let Some(why) = s.unknown_node() {
            return Some(why);
        }
        match self {
            Lane::Fast => None,
            Lane::Stack => stack::refusal(s),
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
            Lane::Stack => stack::run_stack(s, seed, keep_trace),
        }
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
