//! The models in bounded configurations small enough for a debug build: the sound variants
//! hold (and reach their `sometimes` properties, so they are not vacuous); the others fail with
//! a counterexample whose steps name the fault that breaks the guarantee. The full default
//! bounds run in release in CI (`scripts/check-models.sh`).

use rmq_models::exactly_once::{self, ExactlyOnce};
use rmq_models::no_loss::{self, NoLoss};
use rmq_models::{run, CheckOptions, Report, Verdict};

fn opts() -> CheckOptions {
    CheckOptions { threads: 2, ..CheckOptions::default() }
}

fn small() -> no_loss::Bounds {
    no_loss::Bounds {
        messages: 1,
        crashes: 2,
        disk_losses: 1,
        ha_breaks: 0,
        duplicates: 0,
        losses: 0,
        horizon_ms: 1_000,
    }
}

fn assert_fails(r: &Report, property: &str, step: &str) {
    assert_eq!(r.verdict, Verdict::Fails, "{}", r.render());
    let c = r.counterexamples.iter().find(|c| c.property == property).unwrap_or_else(|| panic!("{}", r.render()));
    assert!(c.steps.iter().any(|s| s.contains(step)), "expected a step with {step:?}:\n{}", r.render());
}

#[test]
fn no_loss_holds_under_sync_flush_and_sync_master() {
    let r = run("no-loss", "sync", NoLoss::new(no_loss::Variant::Sound, small()), &opts());
    assert_eq!(r.verdict, Verdict::Holds, "{}", r.render());
    assert!(r.reached.iter().any(|p| p == "power cut right after SEND_OK"), "{}", r.render());
    assert!(r.unique_states > 1_000, "{}", r.render());
}

#[test]
fn async_flush_loses_acknowledged_messages() {
    let r = run("no-loss", "async-flush", NoLoss::new(no_loss::Variant::AsyncFlush, small()), &opts());
    assert_fails(&r, "acknowledged messages survive", "loses power");
}

#[test]
fn async_master_loses_acknowledged_messages_with_the_master_disk() {
    let r = run("no-loss", "async-master", NoLoss::new(no_loss::Variant::AsyncMaster, small()), &opts());
    assert_fails(&r, "acknowledged messages survive", "disk is lost");
}

#[test]
fn counterexamples_are_shortest_and_the_same_every_run() {
    let m = || NoLoss::new(no_loss::Variant::AsyncMaster, small());
    let a = run("no-loss", "async-master", m(), &opts());
    let b = run("no-loss", "async-master", m(), &opts());
    assert_eq!(a.counterexamples, b.counterexamples);
    // Send, arrive, flush, answer, power cut, lost disk: a SEND_OK cannot be lost in fewer.
    assert_eq!(a.counterexamples[0].steps.len(), 6, "{}", a.render());
}

#[test]
fn exactly_once_holds_with_the_strong_helper() {
    let r = run(
        "exactly-once",
        "dedup",
        ExactlyOnce::new(exactly_once::Variant::Dedup, exactly_once::Bounds::default()),
        &opts(),
    );
    assert_eq!(r.verdict, Verdict::Holds, "{}", r.render());
    for p in ["a duplicate delivery skipped", "consumer crash before its offset commit", "every effect applied"] {
        assert!(r.reached.iter().any(|x| x == p), "{p} not reached:\n{}", r.render());
    }
}

#[test]
fn without_dedup_or_with_weak_dedup_effects_repeat() {
    let b = exactly_once::Bounds::default();
    let r = run("exactly-once", "no-dedup", ExactlyOnce::new(exactly_once::Variant::NoDedup, b), &opts());
    assert_fails(&r, "each effect applied at most once", "processes m0");
    let r = run("exactly-once", "weak-dedup", ExactlyOnce::new(exactly_once::Variant::WeakDedup, b), &opts());
    assert_fails(&r, "each effect applied at most once", "consumer crashes");
}

#[test]
fn unknown_models_and_variants_are_refused_by_name() {
    let e = rmq_models::check("no-such", "", &opts()).unwrap_err();
    assert!(e.0.contains("no-loss") && e.0.contains("exactly-once"), "{e}");
    let e = rmq_models::check("no-loss", "sometimes-sync", &opts()).unwrap_err();
    assert!(e.0.contains("async-master"), "{e}");
    let e = rmq_models::explore("no-loss", "", "10.0.0.1:3000").unwrap_err();
    assert!(e.0.contains("loopback"), "{e}");
}
