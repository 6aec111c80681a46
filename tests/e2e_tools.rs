//! The product's first promise: real binaries on loopback; a topic created, N messages sent and
//! all N consumed with the shipped tools; SIGTERM shuts down cleanly.

// Real-binary tests drive child processes from plain threads; the determinism rules are for
// cores and drivers.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;

#[test]
fn create_send_and_consume_with_the_shipped_tools() {
    let ns = common::namesrv();
    let store = tempfile::tempdir().unwrap();
    let broker = common::broker(&ns.addr, store.path(), "127.0.0.1:0", None);
    let out = common::mqadmin(&["updateTopic", "-n", &ns.addr, "-t", "ToolsTopic", "-r", "4", "-w", "4"]);
    assert!(out.contains("success"), "{out}");
    common::wait_for_route(&ns.addr, "ToolsTopic");
    let listed = common::mqadmin(&["topicList", "-n", &ns.addr, "--json"]);
    assert!(listed.contains("ToolsTopic"), "{listed}");
    let clusters = common::mqadmin(&["clusterList", "-n", &ns.addr]);
    assert!(clusters.contains(&broker.addr), "{clusters}");

    const N: usize = 60;
    let sent = common::mqadmin(&[
        "sendMessage",
        "-n",
        &ns.addr,
        "-t",
        "ToolsTopic",
        "-p",
        "hello",
        "--count",
        &N.to_string(),
        "--json",
    ]);
    // RocketMQ's spelling of the status, in JSON and in the table.
    assert_eq!(sent.lines().filter(|l| l.contains("\"SEND_OK\"")).count(), N, "{sent}");

    let consumed = common::mqadmin(&[
        "consumeMessage",
        "-n",
        &ns.addr,
        "-t",
        "ToolsTopic",
        "-g",
        "G1",
        "--count",
        &N.to_string(),
        "--json",
    ]);
    let bodies: BTreeSet<String> = consumed
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["body"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = (0..N).map(|i| format!("hello-{i}")).collect();
    assert_eq!(bodies, expected);

    let progress = common::mqadmin(&["consumerProgress", "-n", &ns.addr, "-g", "G1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&progress).unwrap();
    assert_eq!(v["diffTotal"], 0, "the group consumed everything: {progress}");
    let table = common::mqadmin(&["sendMessage", "-n", &ns.addr, "-t", "ToolsTopic", "-p", "again"]);
    assert!(table.contains(" SEND_OK "), "{table}");

    assert!(broker.terminate().success(), "broker exits cleanly on SIGTERM");
    assert!(ns.terminate().success(), "name server exits cleanly on SIGTERM");
}

#[test]
fn every_tool_has_help() {
    for bin in [
        env!("CARGO_BIN_EXE_mqnamesrv"),
        env!("CARGO_BIN_EXE_mqbroker"),
        env!("CARGO_BIN_EXE_mqadmin"),
        env!("CARGO_BIN_EXE_mqbench"),
    ] {
        let out = std::process::Command::new(bin).arg("--help").output().unwrap();
        assert!(out.status.success(), "{bin} --help");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{bin} --help prints usage");
    }
}

#[test]
fn a_wrong_config_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("broker.conf");
    std::fs::write(&conf, "brokerName=b\nflushDiskTyp=SYNC_FLUSH\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mqbroker"))
        .args(["-c", conf.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flushDiskTyp"), "names the bad key: {err}");
    assert!(err.contains("mqbroker: ") && !err.contains("acktrace"), "one line, no backtrace: {err}");
}

#[test]
fn a_failing_tool_says_why_in_one_line_without_a_backtrace() {
    // Nothing listens on port 1: the route query fails.
    for (bin, args) in [
        (env!("CARGO_BIN_EXE_mqadmin"), vec!["topicRoute", "-n", "127.0.0.1:1", "-t", "Nowhere"]),
        (env!("CARGO_BIN_EXE_mqbench"), vec!["-n", "127.0.0.1:1", "--flush", "sync"]),
    ] {
        let out = std::process::Command::new(bin)
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bin} {args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{bin}: one line, got {err}");
        assert!(lines[0].starts_with("mq"), "{bin}: the line names the tool: {err}");
        assert!(!err.contains("backtrace") && !err.contains("Backtrace"), "{bin}: {err}");
    }
}

#[test]
fn mqbench_measures_a_broker_running_as_its_own_process() {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mqbench"))
        .args(["--processes", "--flush", "sync", "--messages", "2000", "--producers", "8", "--topics", "3"])
        .args(["--json", "--no-limits", "--client-threads", "1"])
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bench_pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["broker_mode"], "processes");
    assert_eq!(r["client_threads"], 1, "the runtime it was asked for, reported");
    assert_eq!((r["produce"]["messages"].as_u64(), r["produce"]["errors"].as_u64()), (Some(2000), Some(0)));
    // Read back from the broker process: the 2000 and one route-warming send per topic.
    assert_eq!(r["consume"]["messages"].as_u64(), Some(2003));
    // CPU per message, this process's and the broker process's, both measured: storing 2000
    // messages and flushing them costs the broker more than one clock tick.
    for key in ["cpu_us_per_msg", "broker_cpu_us_per_msg"] {
        assert!(r["produce"][key].as_f64() > Some(0.0), "produce {key}: {}", r["produce"]);
        assert!(r["consume"][key].as_f64() >= Some(0.0), "consume {key}: {}", r["consume"]);
    }
    let b = &r["broker_resources"];
    assert!(b["rss_bytes"].as_u64() > Some(1 << 20) && b["open_fds"].as_u64() > Some(3), "{b}");
    assert!(b["threads"].as_u64() >= Some(2), "{b}");
    // The figures are another process's (the broker's), and mqbench stopped it on exit.
    let broker_pid = b["pid"].as_u64().expect("the broker's pid");
    assert_ne!(broker_pid, u64::from(bench_pid), "{b}");
    assert!(!std::path::Path::new(&format!("/proc/{broker_pid}")).exists(), "the broker outlived mqbench");
}

#[test]
fn mqbench_refuses_a_client_runtime_without_threads_and_a_zero_rate() {
    for flag in ["--client-threads", "--rate"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mqbench"))
            .args([flag, "0", "--no-limits"])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} 0 accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "names the flag: {err}");
    }
}

#[test]
fn mqbench_paces_a_run_at_the_rate_asked() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mqbench"))
        .args(["--rate", "2000", "--messages", "600", "--producers", "4", "--no-consume", "--no-limits", "--json"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["rate"], 2000, "the target, reported");
    assert_eq!((r["produce"]["messages"].as_u64(), r["produce"]["errors"].as_u64()), (Some(600), Some(0)));
    // The last of the 600 sends is due 599 / 2000 s after the start: no send goes early, so
    // the run cannot end sooner (unpaced, 600 sends take a few ms).
    let elapsed_ms = r["produce"]["elapsed_ms"].as_f64().expect("elapsed");
    assert!(elapsed_ms >= 299.0, "paced at 2000 msg/s, 600 messages took {elapsed_ms} ms");
}
