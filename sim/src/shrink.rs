//! Shrinking: given a scenario and seed that violate a guarantee, greedily drop faults and
//! shrink the workload while the same violation (verdict and kinds) persists. Every candidate is strictly smaller
//! (one fault fewer, a halved count, a disabled network fault), so the loop terminates.

use crate::scenario::Scenario;
use crate::{run, Verdict};

/// The result of shrinking.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The smallest scenario found that still fails the same way.
    pub scenario: Scenario,
    /// Its verdict.
    pub verdict: Verdict,
    /// Candidate runs tried.
    pub runs: u64,
}

fn candidates(s: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    for i in 0..s.faults.len() {
        let mut c = s.clone();
        c.faults.remove(i);
        out.push(c);
    }
    macro_rules! set {
        ($field:ident, $value:expr) => {{
            let mut c = s.clone();
            c.$field = $value;
            if c.$field != s.$field {
                out.push(c);
            }
        }};
    }
    set!(producers, (s.producers / 2).max(1));
    set!(consumers, (s.consumers / 2).max(1));
    set!(messages, (s.messages / 2).max(1));
    set!(queues, (s.queues / 2).max(1));
    set!(jitter_ms, 0);
    set!(drop_pct, 0);
    set!(dup_pct, 0);
    set!(writeback_pct, 0);
    set!(tear, false);
    out
}

/// Shrinks `s` at `seed`; `None` when it does not fail to begin with.
pub fn shrink(s: &Scenario, seed: u64) -> Option<Shrunk> {
    let first = run(s, seed, false).findings;
    let (verdict, kinds) = (first.verdict, first.kinds);
    if verdict == Verdict::Pass {
        return None;
    }
    let mut best = s.clone();
    let mut runs = 1;
    loop {
        let mut improved = false;
        for c in candidates(&best) {
            runs += 1;
            let f = run(&c, seed, false).findings;
            if f.verdict == verdict && f.kinds == kinds {
                best = c;
                improved = true;
                break;
            }
        }
        if !improved {
            break;
        }
    }
    best.name = format!("{}-shrunk-seed{seed}", s.name);
    best.goal = format!("minimal reproduction of a {verdict:?} violation of {} at seed {seed}", s.name);
    Some(Shrunk { scenario: best, verdict, runs })
}
