//! Orderly consumption under rebalance: the `orderly-rebalance` scenario holds per-key order
//! with the client's queue lock, and the same scenario with the lock step removed
//! (`queue_lock = false`) breaks it, so the order check and the lock are both shown to matter.

use rmq_sim::scenario::{builtin, Scenario};
use rmq_sim::{run, Verdict};

const SEEDS: u64 = 12;

fn verdicts(s: &Scenario) -> Vec<(u64, Verdict, Vec<&'static str>)> {
    (1..=SEEDS)
        .map(|seed| {
            let r = run(s, seed, false);
            (seed, r.findings.verdict, r.findings.kinds.clone())
        })
        .collect()
}

#[test]
fn orderly_rebalance_holds_order_with_the_lock_and_breaks_it_without() {
    let with_lock = builtin("orderly-rebalance").expect("in the catalogue");
    assert!(with_lock.orderly && with_lock.queue_lock && with_lock.order_keys > 0);
    for (seed, verdict, kinds) in verdicts(&with_lock) {
        assert_eq!(verdict, Verdict::Pass, "seed {seed}: {kinds:?}");
    }
    let without = Scenario { queue_lock: false, ..with_lock };
    let broken: Vec<u64> = verdicts(&without)
        .into_iter()
        .filter(|(_, v, kinds)| *v == Verdict::Safety && kinds.contains(&"order-violation"))
        .map(|(seed, ..)| seed)
        .collect();
    assert!(!broken.is_empty(), "without the queue lock no seed of 1..={SEEDS} broke per-key order");
}

#[test]
fn an_orderly_run_is_refused_where_processing_cannot_take_time() {
    let s = builtin("orderly-rebalance").expect("in the catalogue");
    assert_eq!(rmq_sim::Lane::Fast.refusal(&s), None);
    #[cfg(not(madsim))]
    {
        let why = rmq_sim::Lane::Stack.refusal(&s).expect("the stack lane refuses consume_ms");
        assert!(why.contains("consume_ms"), "{why}");
        let failing = builtin("orderly-consumer-failure").expect("in the catalogue");
        assert_eq!(rmq_sim::Lane::Stack.refusal(&failing), None, "orderly consumption itself runs in every lane");
    }
}
