//! A BROADCASTING group in the simulator: every member receives every message, and members
//! that crash resume from their own saved offsets.

use rmq_sim::scenario::builtin;
use rmq_sim::{run, Lane, Verdict};

#[test]
fn restarted_broadcasting_members_resume_from_their_saved_offsets() {
    let s = builtin("broadcasting-restart").expect("in the catalogue");
    assert!(s.broadcasting);
    for seed in 1..=5 {
        let r = run(&s, seed, true);
        assert_eq!(r.findings.verdict, Verdict::Pass, "seed {seed}: {:?}", r.findings.problems);
        // Each of the three members got every message; the restarted ones read some again
        // (what they consumed after their last save), not everything.
        assert!(r.delivered >= 3 * r.acked, "seed {seed}: {} deliveries of {} messages", r.delivered, r.acked);
        assert!(r.delivered < 4 * r.acked, "seed {seed}: {} deliveries: a member started over", r.delivered);
        let restarted = r.trace.iter().filter(|l| l.contains("sim.node.restarted")).count();
        assert_eq!(restarted, 2);
    }
}

#[test]
fn the_host_lanes_refuse_broadcasting_by_name() {
    let s = builtin("broadcasting-restart").expect("in the catalogue");
    assert_eq!(Lane::Fast.refusal(&s), None);
    #[cfg(not(madsim))]
    assert!(Lane::Stack.refusal(&s).is_some_and(|why| why.contains("broadcasting")));
}
