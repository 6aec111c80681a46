//! The madsim lane: the real drivers and client library on madsim nodes. Built only with
//! `--cfg madsim` (its own target directory), as CI does:
//!
//! ```sh
//! RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim cargo test --release -p rmq-sim --test madsim_lane
//! ```
#![cfg(madsim)]

mod common;

use common::small;
use rmq_sim::msim::{run_madsim, run_madsim_checked};
use rmq_sim::scenario::{builtin, parse, resolve, Fault, CATALOGUE};
use rmq_sim::{Lane, Verdict};

#[test]
fn this_build_runs_the_fast_and_madsim_lanes_and_refuses_the_stack_lane_by_name() {
    assert_eq!(Lane::built(), vec![Lane::Fast, Lane::Madsim]);
    let why = Lane::Stack.refusal(&small("steady")).expect("refused");
    assert!(why.contains("normal build"), "{why}");
}

#[test]
fn steady_state_on_the_real_drivers_delivers_everything() {
    let r = common::steady_state_delivers_everything(run_madsim);
    assert_eq!(r.lane, "madsim");
}

#[test]
fn every_catalogue_scenario_runs_in_full_and_passes_madsims_determinism_check() {
    for (name, _) in CATALOGUE {
        let s = builtin(name).unwrap();
        if let Some(why) = Lane::Madsim.refusal(&s) {
            // Every fault runs here; only an application that takes simulated time (the client
            // library's listener cannot wait inside a simulation step) and broadcasting offsets
            // (kept in real files), and an operator's offset reset (no operator process), are
            // refused.
            assert!(
                why.contains("consume_ms") || why.contains("broadcasting") || why.contains("reset-offsets"),
                "{name}: refused for {why}"
            );
            assert!(run_madsim(&s, 1, false).is_err(), "{name}: a refused scenario does not run");
            continue;
        }
        for seed in 1..=2 {
            let plain = run_madsim(&s, seed, true).unwrap();
            // Two more runs, every random draw of the second compared with the first's.
            let checked = run_madsim_checked(&s, seed).unwrap();
            assert_eq!(plain.digest, checked.digest, "{name} seed {seed}: same seed, different digest");
            assert_eq!(plain.trace, checked.trace);
            assert!(plain.trace_lines > 50, "{name}: the trace records the run");
            assert_eq!(plain.findings.verdict, Verdict::Pass, "{name} seed {seed}: {:?}", plain.findings.problems);
        }
    }
}

#[test]
fn a_paused_broker_stops_and_resumes_where_turmoil_can_only_refuse() {
    let s = builtin("cluster-broker-pause").unwrap();
    assert!(s.faults.iter().any(|(_, f)| matches!(f, Fault::Pause(..))));
    let r = run_madsim(&s, 1, true).unwrap();
    let at = |what: &str| r.trace.iter().find(|l| l.contains(" broker1 ") && l.contains(what)).cloned();
    assert_eq!(at("sim.node.paused").as_deref(), Some("t=2000ms broker1 sim.node.paused ms=20000"));
    assert_eq!(at("sim.node.resumed").as_deref(), Some("t=22000ms broker1 sim.node.resumed"));
    // While it is stopped, broker1 stores nothing; producers retry on the other broker.
    let stored_while_paused = r.trace.iter().filter(|l| l.contains(" broker1 broker.message.stored")).any(|l| {
        let t: u64 = l.trim_start_matches("t=").split("ms").next().unwrap().parse().unwrap();
        (2_100..22_000).contains(&t)
    });
    assert!(!stored_while_paused, "a paused broker does nothing");
    assert!(r.failed > 0, "sends to the paused broker time out while it is stopped");
    assert!(r.acked > r.sent / 2, "the other broker takes the load meanwhile");
    assert_eq!(r.findings.verdict, Verdict::Pass, "{:?}", r.findings.problems);
}

#[test]
fn a_run_that_acknowledges_nothing_fails() {
    let text = "name = dead-namesrv\nproducers = 1\nmessages = 20\nconsumers = 1\nduration_ms = 8000\nat 0 crash ns\n";
    let r = run_madsim(&parse(text).unwrap(), 1, false).unwrap();
    assert_eq!(r.acked, 0, "nothing can be routed");
    assert_eq!(r.findings.verdict, Verdict::Liveness, "{:?}", r.findings.problems);
    assert!(r.findings.kinds.contains(&"progress-floor"), "{:?}", r.findings.kinds);
}

#[test]
fn broker_power_loss_under_sync_flush_keeps_every_acknowledged_message() {
    common::sync_flush_power_loss_keeps_every_acked_message(run_madsim);
}

#[test]
fn swarm_mixes_with_pauses_run_here() {
    // The stack lane refuses every swarm draw with a pause; this lane runs them.
    let mut with_pause = 0;
    for seed in 1..=40 {
        let s = resolve("swarm", seed).unwrap();
        if !s.faults.iter().any(|(_, f)| matches!(f, Fault::Pause(..))) {
            continue;
        }
        with_pause += 1;
        let r = run_madsim(&s, seed, false).unwrap();
        assert_eq!(r.findings.verdict, Verdict::Pass, "swarm seed {seed}: {:?}", r.findings.problems);
    }
    assert!(with_pause > 0, "some swarm draws pause a node");
}
