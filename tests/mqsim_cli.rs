//! `mqsim` as users run it: the default job, determinism check, exit codes, shrink output.

use std::process::Command;

fn mqsim(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mqsim")).args(args).output().expect("running mqsim");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn default_run_is_a_passing_seeded_chaos_scenario_with_a_digest() {
    let (code, out) = mqsim(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("broker-crash-sync seed=42 verdict=Pass"), "{out}");
    assert!(out.contains("crashes=1") && out.contains("digest="), "{out}");
    let (_, again) = mqsim(&["run"]);
    assert_eq!(out, again, "the same seed prints the same digest");
}

#[test]
fn determinism_check_and_listing() {
    let (code, out) = mqsim(&["run", "jitter", "--seed", "3", "--check-determinism"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("deterministic: two runs gave digest"), "{out}");
    let (_, list) = mqsim(&["list"]);
    for name in
        ["steady", "jitter", "broker-crash-sync", "broker-crash-async", "partition-heal", "duplicate-delivery", "swarm"]
    {
        assert!(list.contains(name), "{list}");
    }
}

#[test]
fn a_safety_violation_exits_1_and_shrinks_to_a_file() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/sim/tests/wrong-promise.sim");
    let (code, out) = mqsim(&["run", "wrong-promise", "--file", file, "--seed", "3"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("verdict=Safety") && out.contains("acknowledged messages lost"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("min.sim");
    let (code, out) =
        mqsim(&["shrink", "wrong-promise", "--file", file, "--seed", "3", "--out", dest.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let (code, _) = mqsim(&["run", "x", "--file", dest.to_str().unwrap(), "--seed", "3"]);
    assert_eq!(code, 1, "the written minimal scenario still fails");
    let (code, _) = mqsim(&["run", "no-such-scenario"]);
    assert_eq!(code, 4, "usage errors are not verdicts");
}

#[test]
fn the_main_job_explains_itself() {
    let (_, out) = mqsim(&[]);
    for section in ["What ran", "Faults", "What happened", "Verdict: Pass", "Replay:", "Timeline:", "Shrink:"] {
        assert!(out.contains(section), "{section} missing:\n{out}");
    }
    assert!(out.contains("power loss on broker"), "the fault schedule is spelled out:\n{out}");
    assert!(out.contains("--html"), "{out}");
}

#[test]
fn the_stack_lane_replays_and_refuses_what_it_cannot_express() {
    let (code, out) = mqsim(&["run", "broker-crash-sync", "--lane", "stack", "--seed", "2", "--check-determinism"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("deterministic: two runs gave digest") && out.contains("lane=stack"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let paused = dir.path().join("paused.sim");
    std::fs::write(&paused, "name = paused\nmessages = 10\nat 500 pause broker 300\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mqsim"))
        .args(["run", "x", "--file", paused.to_str().unwrap(), "--lane", "stack"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "a scenario the lane cannot express is refused up front");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused") && err.contains("pause"), "{err}");
    assert!(out.stdout.is_empty(), "nothing ran");
    let (code, _) = mqsim(&["run", "x", "--file", paused.to_str().unwrap()]);
    assert_eq!(code, 0, "the fast lane runs it");
}

#[test]
fn the_madsim_lane_is_refused_by_this_build_with_its_own_exit_code_and_the_way_to_it() {
    for args in [&["run", "steady", "--lane", "madsim"][..], &["sweep", "steady", "--seeds", "1", "--lane", "madsim"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_mqsim")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(6), "{args:?}: a lane this build lacks");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("scripts/madsim-lane.sh"), "{err}");
        assert!(out.stdout.is_empty(), "nothing ran");
    }
    let (code, out) = mqsim(&["sweep", "steady", "--seeds", "1", "--lane", "all"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("lane=fast") && out.contains("lane=stack") && !out.contains("lane=madsim"), "{out}");
}

#[test]
fn a_run_can_be_drawn_as_a_timeline_page() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("t.html");
    let (code, out) =
        mqsim(&["run", "crash-at-flush", "--seed", "1", "--lane", "stack", "--html", page.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("crash-at-flush") && html.contains("stack"), "the page names the run");
    assert!(html.contains("sim.trigger.fired"), "the trace is in the page");
}

#[test]
fn check_exits_0_when_the_properties_hold_1_with_a_counterexample_4_for_usage() {
    let (code, out) = mqsim(&["check", "exactly-once"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verdict: the properties hold") && out.contains("unique"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cx.sim");
    let (code, out) =
        mqsim(&["check", "exactly-once", "--variant", "no-dedup", "--export", dest.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("--json prints one JSON report");
    assert_eq!(report["verdict"], "fails");
    assert!(report["counterexamples"][0]["steps"].as_array().is_some_and(|s| !s.is_empty()), "{out}");
    // The exported counterexample replays as a failing simulation.
    let (code, out) = mqsim(&["run", "x", "--file", dest.to_str().unwrap(), "--seed", "1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("processed") && out.contains("twice"), "{out}");
    for bad in [
        &["check", "exactly-once", "--bound", "bogus=1"][..],
        &["check", "exactly-once", "--threads", "0"],
        &["check", "no-such-model"],
        &["check", "no-loss", "--variant", "maybe"],
        &["check", "no-loss", "--explorer", "192.0.2.1:3000"],
        &["check", "no-loss", "--explorer", "127.0.0.1:0", "--threads", "4"],
        &["check", "--list", "no-loss"],
        &["check", "exactly-once", "--bound", "messages=0"],
    ] {
        let (code, out) = mqsim(bad);
        assert_eq!(code, 4, "{bad:?}: {out}");
    }
    let (code, list) = mqsim(&["check", "--list"]);
    assert_eq!(code, 0);
    for v in ["no-loss", "exactly-once", "async-flush", "async-master", "no-dedup"] {
        assert!(list.contains(v), "{list}");
    }
    let (code, list) = mqsim(&["check", "--list", "--json"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(list.trim()).expect("--list --json prints JSON");
    assert_eq!(list[0]["model"], "no-loss");
    assert_eq!(list[0]["variants"][0], "sync");
}
