//! A fast-lane sweep of the whole catalogue (and swarm) as a test: every scenario passes a few
//! seeds. It is the test command of the mutation runs (`cargo mutants … -- --test sweep_gate`,
//! see sim/README.md), so a mutant the simulator cannot tell apart from the real code survives.

use rmq_sim::scenario::{resolve, CATALOGUE};
use rmq_sim::{run, Verdict};

/// Seeds per scenario (`MQSIM_GATE_SEEDS` overrides; the mutation runs use the default).
fn seeds() -> u64 {
    std::env::var("MQSIM_GATE_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

#[test]
fn every_scenario_passes_a_few_seeds_in_the_fast_lane() {
    let names = CATALOGUE.iter().map(|(n, _)| *n).chain(std::iter::once("swarm"));
    let mut failures = Vec::new();
    for name in names {
        for seed in 1..=seeds() {
            let s = resolve(name, seed).expect("catalogue names resolve");
            if rmq_sim::Lane::Fast.refusal(&s).is_some() {
                continue;
            }
            let r = run(&s, seed, false);
            if r.findings.verdict != Verdict::Pass {
                failures.push(format!("{name} seed {seed}: {:?} {:?}", r.findings.verdict, r.findings.problems));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
