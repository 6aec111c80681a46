//! A seed reproduces a run bit for bit, and the catalogue's guarantees hold over many seeds.

use rmq_sim::scenario::builtin;
use rmq_sim::{run, Verdict};

#[test]
fn same_seed_same_digest_different_seed_different_run() {
    for name in ["steady", "jitter", "broker-crash-sync", "partition-heal", "duplicate-delivery"] {
        let s = builtin(name).unwrap();
        let a = run(&s, 7, true);
        let b = run(&s, 7, true);
        assert_eq!(a.digest, b.digest, "{name}: same seed, different digest");
        assert_eq!(a.trace, b.trace);
        let c = run(&s, 8, false);
        assert_ne!(a.digest, c.digest, "{name}: the seed must matter");
    }
}

#[test]
fn sync_flush_crash_never_loses_an_acknowledged_message() {
    let s = builtin("broker-crash-sync").unwrap();
    for seed in 1..=12 {
        let r = run(&s, seed, false);
        assert_eq!(r.crashes, 1);
        assert!(r.acked > 0, "seed {seed}: some sends were acknowledged");
        assert_eq!(r.findings.acked_lost, 0, "seed {seed}: {:?}", r.findings.problems);
        assert_eq!(r.findings.verdict, Verdict::Pass, "seed {seed}: {:?}", r.findings.problems);
    }
}

#[test]
fn healthy_and_partitioned_runs_deliver_everything() {
    for name in ["steady", "jitter", "partition-heal", "duplicate-delivery", "cluster"] {
        let s = builtin(name).unwrap();
        for seed in 1..=4 {
            let r = run(&s, seed, false);
            assert_eq!(r.findings.verdict, Verdict::Pass, "{name} seed {seed}: {:?}", r.findings.problems);
            assert_eq!(r.acked, r.sent, "{name} seed {seed}: every send acknowledged");
        }
    }
}

#[test]
fn duplicate_frames_show_up_as_duplicate_deliveries_not_loss() {
    let r = run(&builtin("duplicate-delivery").unwrap(), 1, false);
    assert!(r.findings.duplicates > 0, "10 % duplicated frames produce duplicate deliveries");
    assert_eq!(r.findings.acked_lost, 0);
}

#[test]
fn async_flush_crash_loses_acknowledged_messages_and_says_how_many() {
    let s = builtin("broker-crash-async").unwrap();
    let lost: u64 = (1..=4).map(|seed| run(&s, seed, false).findings.acked_lost).sum();
    assert!(lost > 0, "an ASYNC_FLUSH power loss drops page-cache data that was acknowledged");
}

#[test]
fn messages_sent_after_an_async_crash_are_not_skipped() {
    // Regression: recovery reuses the queue offsets of lost ASYNC_FLUSH messages; consumers
    // that kept their old position skipped the new messages stored there (liveness).
    let s = builtin("broker-crash-async").unwrap();
    for seed in 1..=8 {
        let r = run(&s, seed, false);
        assert_eq!(r.findings.undelivered, 0, "seed {seed}: {:?}", r.findings.problems);
        assert_eq!(r.findings.verdict, Verdict::Pass, "seed {seed}: {:?}", r.findings.problems);
    }
}

#[test]
fn shrink_keeps_the_violation_and_drops_what_does_not_matter() {
    // ASYNC_FLUSH with a power loss while promising no acknowledged loss: a real violation.
    let s = rmq_sim::scenario::parse(include_str!("wrong-promise.sim")).unwrap();
    let before = run(&s, 3, false);
    assert_eq!(before.findings.verdict, Verdict::Safety);
    let shrunk = rmq_sim::shrink::shrink(&s, 3).expect("the scenario fails, so it shrinks");
    let m = &shrunk.scenario;
    assert_eq!(shrunk.verdict, Verdict::Safety);
    assert_eq!(run(m, 3, false).findings.kinds, before.findings.kinds, "the same violation persists");
    assert!(m.faults.len() < s.faults.len(), "the partition is irrelevant and dropped: {:?}", m.faults);
    assert!(m.faults.iter().any(|(_, f)| matches!(f, rmq_sim::scenario::Fault::Crash(_))));
    assert!(m.producers <= s.producers && m.consumers < s.consumers && m.queues < s.queues);
    // The written file reproduces it.
    let reparsed = rmq_sim::scenario::parse(&m.to_dsl()).unwrap();
    assert_eq!(run(&reparsed, 3, false).findings.verdict, Verdict::Safety);
}

#[test]
fn swarm_seeds_draw_different_mixes_and_replay_exactly() {
    use rmq_sim::scenario::swarm;
    assert_eq!(swarm(3), swarm(3));
    assert_ne!(swarm(3).faults, swarm(4).faults);
    for seed in 1..=20 {
        let s = swarm(seed);
        let a = run(&s, seed, false);
        assert_eq!(a.digest, run(&s, seed, false).digest, "swarm seed {seed} replays");
        assert_eq!(a.findings.verdict, Verdict::Pass, "swarm seed {seed}: {:?}", a.findings.problems);
    }
}

#[test]
fn losing_one_of_three_brokers_loses_nothing_acknowledged() {
    let s = builtin("cluster-broker-crash").unwrap();
    for seed in 1..=6 {
        let r = run(&s, seed, false);
        assert_eq!(r.crashes, 2);
        assert_eq!(r.findings.verdict, Verdict::Pass, "seed {seed}: {:?}", r.findings.problems);
        assert_eq!(r.acked, r.sent, "seed {seed}: producers route around the dead broker");
    }
}

#[test]
fn idempotent_consumers_process_each_message_once_despite_duplicates() {
    for seed in 1..=4 {
        let plain = run(&builtin("duplicate-delivery").unwrap(), seed, false);
        let idem = run(&builtin("duplicate-delivery-idempotent").unwrap(), seed, false);
        assert!(plain.findings.processed_duplicates > 0, "seed {seed}: a plain consumer processes duplicates");
        assert!(idem.findings.duplicates > 0, "seed {seed}: duplicates are still delivered");
        assert_eq!(idem.findings.processed_duplicates, 0, "seed {seed}: an idempotent group processes each once");
    }
}

#[test]
fn processed_twice_is_judged_when_the_scenario_expects_once_and_a_contradiction_is_refused() {
    let plain = builtin("duplicate-delivery").unwrap();
    let expecting = rmq_sim::scenario::parse(&format!("{}expect processed_twice = none\n", plain.to_dsl())).unwrap();
    let r = run(&expecting, 1, false);
    assert!(r.findings.processed_duplicates > 0);
    assert_eq!(r.findings.verdict, rmq_sim::Verdict::Safety, "{:?}", r.findings.problems);
    assert!(r.findings.kinds.contains(&"processed-twice"), "{:?}", r.findings.kinds);
    assert_eq!(run(&plain, 1, false).findings.verdict, rmq_sim::Verdict::Pass, "duplicates alone are allowed");
    let idem = builtin("duplicate-delivery-idempotent").unwrap().to_dsl();
    let e = rmq_sim::scenario::parse(&format!("{idem}expect processed_twice = allowed\n")).unwrap_err();
    assert!(e.contains("contradicts idempotent"), "{e}");
}

#[test]
fn the_timing_property_checks_real_deliveries_in_quiet_stretches() {
    // Held pulls are answered when a message arrives, not at their deadline: on a healthy
    // network a message reaches a consumer within two round trips, a flush and 500 ms. A broker
    // that answered holds only at expiry fails this (see sim/README.md, "Teeth").
    for name in ["steady", "jitter", "cluster"] {
        let s = builtin(name).unwrap();
        let r = run(&s, 2, false);
        assert!(r.findings.timely_checked > 20, "{name}: the window holds deliveries to judge");
        assert_eq!(r.findings.verdict, Verdict::Pass, "{name}: {:?}", r.findings.problems);
    }
    let mut strict = builtin("steady").unwrap();
    strict.delivery_within_ms = Some(0);
    strict.latency_ms = 5;
    let r = run(&strict, 2, false);
    assert_eq!(r.findings.verdict, Verdict::Liveness, "a bound no network meets fails");
    assert!(r.findings.kinds.contains(&"slow-delivery"), "{:?}", r.findings.kinds);
}

#[test]
fn a_wipe_of_a_node_that_is_not_down_is_refused_not_skipped() {
    let ok = rmq_sim::scenario::parse(
        "replication = sync\nat 100 crash broker\nat 100 wipe broker\nat 900 restart broker\n",
    )
    .unwrap();
    assert_eq!(ok.unknown_node(), None);
    for text in
        ["replication = sync\nat 100 wipe broker\n", "at 100 crash broker\nat 200 restart broker\nat 300 wipe broker\n"]
    {
        let s = rmq_sim::scenario::parse(text).unwrap();
        let why = s.unknown_node().expect("refused");
        assert!(why.contains("is not down"), "{why}");
        for lane in rmq_sim::Lane::ALL {
            assert!(lane.refusal(&s).is_some(), "{}: {why}", lane.name());
        }
    }
}
