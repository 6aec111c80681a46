//! A model's counterexample, exported as a scenario, replays in the fast lane as the same
//! violation; the same scenario in the sound configuration passes (the violation is the
//! variant's, not the scenario's).

use rmq_models::{check, CheckOptions, Verdict};
use rmq_sim::scenario::parse;

fn exported(model: &str, variant: &str) -> String {
    let r = check(model, variant, &CheckOptions { threads: 2, ..CheckOptions::default() }).unwrap();
    assert_eq!(r.verdict, Verdict::Fails, "{}", r.render());
    r.counterexamples[0].scenario.clone().unwrap_or_else(|why| panic!("not exported: {why}\n{}", r.render()))
}

fn kinds(text: &str, seed: u64) -> (rmq_sim::Verdict, Vec<&'static str>) {
    let s = parse(text).unwrap_or_else(|e| panic!("the export parses: {e}\n{text}"));
    let r = rmq_sim::run(&s, seed, false);
    (r.findings.verdict, r.findings.kinds.clone())
}

#[test]
fn no_loss_counterexamples_lose_acknowledged_messages_in_the_fast_lane() {
    for variant in ["async-master", "async-flush"] {
        let text = exported("no-loss", variant);
        for seed in 1..=2 {
            let (verdict, kinds) = kinds(&text, seed);
            assert_eq!(verdict, rmq_sim::Verdict::Safety, "{variant} seed {seed}:\n{text}");
            assert!(kinds.contains(&"acked-loss"), "{variant} seed {seed}: {kinds:?}");
        }
        let sound = text.replace("flush = async", "flush = sync").replace("replication = async", "replication = sync");
        assert_eq!(
            kinds(&sound, 1).0,
            rmq_sim::Verdict::Pass,
            "the same faults under double sync lose nothing:\n{sound}"
        );
    }
}

#[test]
fn a_no_dedup_counterexample_processes_twice_in_the_fast_lane() {
    let text = exported("exactly-once", "no-dedup");
    let (verdict, k) = kinds(&text, 1);
    assert_eq!(verdict, rmq_sim::Verdict::Safety, "{text}");
    assert!(k.contains(&"processed-twice"), "{k:?}");
    let dedup = text.replace("idempotent = false", "idempotent = true");
    assert_eq!(kinds(&dedup, 1).0, rmq_sim::Verdict::Pass, "with the dedup check:\n{dedup}");
}

#[test]
fn a_weak_dedup_counterexample_is_refused_by_name() {
    let r = check("exactly-once", "weak-dedup", &CheckOptions::default()).unwrap();
    let why = r.counterexamples[0].scenario.clone().unwrap_err();
    assert!(why.contains("expiring-claim"), "{why}");
}
