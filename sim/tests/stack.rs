//! The full-stack lane: the real drivers and client library on turmoil hosts, over turmoil's
//! network and the page-cache disk model. CI runs a steady-state, a broker-crash and a
//! partition scenario here.

use rmq_sim::scenario::builtin;
use rmq_sim::stack::run_stack;

fn small(name: &str) -> rmq_sim::Scenario {
    let mut s = builtin(name).unwrap();
    s.producers = 1;
    s.messages = 30;
    s.consumers = 1;
    s
}

#[test]
fn steady_state_on_the_real_drivers_delivers_everything() {
    let r = run_stack(&small("steady"), 1).unwrap();
    assert_eq!(r.acked.len(), 30, "every send acknowledged: {r:?}");
    assert!(r.lost.is_empty(), "acknowledged but never delivered: {:?}", r.lost);
}

#[test]
fn broker_power_loss_under_sync_flush_keeps_every_acknowledged_message() {
    for seed in 1..=3 {
        let r = run_stack(&small("broker-crash-sync"), seed).unwrap();
        assert!(!r.acked.is_empty(), "seed {seed}: some sends acknowledged");
        assert!(r.lost.is_empty(), "seed {seed}: acknowledged but never delivered: {:?}", r.lost);
    }
}

#[test]
fn a_partitioned_consumer_catches_up_after_the_heal() {
    let r = run_stack(&small("partition-heal"), 1).unwrap();
    assert_eq!(r.acked.len(), 30);
    assert!(r.lost.is_empty(), "acknowledged but never delivered: {:?}", r.lost);
}
