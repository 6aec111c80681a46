//! Checks the stack and madsim lanes share: each lane's test file runs them with its own
//! runner (the two lanes live in different builds, so one test file cannot hold both).

use rmq_sim::scenario::builtin;
use rmq_sim::{RunReport, Scenario, Verdict};

/// A lane's runner: scenario, seed, keep the trace.
pub type Runner = fn(&Scenario, u64, bool) -> Result<RunReport, String>;

/// A built-in scenario with one producer of 30 messages and one consumer.
pub fn small(name: &str) -> Scenario {
    let mut s = builtin(name).unwrap();
    s.producers = 1;
    s.messages = 30;
    s.consumers = 1;
    s
}

/// Steady state on the real drivers: every send acknowledged and delivered.
pub fn steady_state_delivers_everything(run: Runner) -> RunReport {
    let r = run(&small("steady"), 1, false).unwrap();
    assert_eq!(r.findings.verdict, Verdict::Pass, "{:?}", r.findings.problems);
    assert_eq!((r.sent, r.acked), (30, 30), "every send acknowledged");
    assert!(r.delivered >= 30);
    r
}

/// A broker power loss under SYNC_FLUSH keeps every acknowledged message (seeds 1–3).
pub fn sync_flush_power_loss_keeps_every_acked_message(run: Runner) {
    for seed in 1..=3 {
        let r = run(&small("broker-crash-sync"), seed, false).unwrap();
        assert_eq!(r.crashes, 1);
        assert!(r.acked > 0, "seed {seed}: some sends acknowledged");
        assert_eq!(r.findings.acked_lost, 0, "seed {seed}: {:?}", r.findings.problems);
        assert_eq!(r.findings.verdict, Verdict::Pass, "seed {seed}: {:?}", r.findings.problems);
    }
}
