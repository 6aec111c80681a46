//! Trace snapshots of the hand-written scenarios (under `traces/`), so a behaviour change
//! shows up as a reviewable diff. Each runs with a small workload (1 producer × 4 messages,
//! 1 consumer) and keeps the events a reviewer reads: sends, stores, acks, deliveries,
//! faults, rebalances, drops. CI never writes new snapshots (INSTA_UPDATE=no in .ci/run).

use rmq_sim::scenario::CATALOGUE;
use rmq_sim::{run, scenario::parse};

/// Most lines a snapshot may hold, so a diff stays readable.
const SNAPSHOT_LINES_MAX: usize = 200;

const KEPT: &[&str] = &[
    "client.message.sent",
    "client.send.acked",
    "client.send.failed",
    "client.send.unconfirmed",
    "client.send.timed_out",
    "client.message.consumed",
    "client.queues.rebalanced",
    "broker.message.stored",
    "broker.group.changed",
    "broker.offset.reset",
    "broker.files.deleted",
    "broker.node.started",
    "sim.",
    "net.frame.dropped",
    "ha.",
];

#[test]
fn hand_written_scenarios_match_their_trace_snapshots() {
    for (name, text) in CATALOGUE {
        let mut s = parse(text).unwrap();
        // Snapshots are of the fast lane; a scenario it refuses has none.
        if rmq_sim::Lane::Fast.refusal(&s).is_some() {
            continue;
        }
        s.producers = 1;
        s.messages = 4;
        s.consumers = 1;
        let r = run(&s, 1, true);
        let lines: Vec<&String> =
            r.trace.iter().filter(|l| KEPT.iter().any(|k| l.contains(&format!(" {k}")))).collect();
        assert!(lines.len() <= SNAPSHOT_LINES_MAX, "{name}: {} lines; shrink the snapshot workload", lines.len());
        let body = format!(
            "scenario={name} seed=1 verdict={:?} digest={} acked={} delivered={} lost={}\n{}\n",
            r.findings.verdict,
            r.digest,
            r.acked,
            r.delivered,
            r.findings.acked_lost,
            lines.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n")
        );
        insta::with_settings!({ snapshot_path => "../../traces", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(*name, body);
        });
    }
}
