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
    let (code, out) = mqsim(&["run", "wrong-promise", "--file", file, "--seed", "5"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("verdict=Safety") && out.contains("acknowledged messages lost"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("min.sim");
    let (code, out) =
        mqsim(&["shrink", "wrong-promise", "--file", file, "--seed", "5", "--out", dest.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let (code, _) = mqsim(&["run", "x", "--file", dest.to_str().unwrap(), "--seed", "5"]);
    assert_eq!(code, 1, "the written minimal scenario still fails");
    let (code, _) = mqsim(&["run", "no-such-scenario"]);
    assert_eq!(code, 4, "usage errors are not verdicts");
}
