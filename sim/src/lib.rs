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

/// Runs one scenario with one seed.
pub fn run(scenario: &Scenario, seed: u64, keep_trace: bool) -> RunReport {
    let mut w = world::World::new(scenario.clone(), seed, keep_trace);
    let events = w.run();
    let findings = oracle::check(&w);
    let h = &w.history;
    RunReport {
        scenario: scenario.name.clone(),
        seed,
        digest: format!("{:016x}", w.trace.digest),
        trace_lines: w.trace.count,
        events,
        simulated_ms: w.now,
        sent: h.sent.len() as u64,
        acked: h.acked.len() as u64,
        failed: h.failed,
        delivered: h.delivered_total,
        crashes: h.crashes,
        findings,
        trace: std::mem::take(&mut w.trace.lines),
    }
}
