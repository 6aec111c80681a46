//! Transactional messages in the simulator: half messages the producer orphaned are resolved
//! by the broker's check-back to another live producer; committed ones are delivered,
//! rolled-back and never-resolved ones are not; and the oracle flags a delivery that no
//! commit preceded.

use std::collections::BTreeSet;

use rmq_sim::oracle::History;
use rmq_sim::scenario::builtin;
use rmq_sim::{run, Verdict};

/// `key=` values of the trace lines containing every one of `what`.
fn keys(trace: &[String], what: &[&str]) -> BTreeSet<String> {
    trace
        .iter()
        .filter(|l| what.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("key=")).map(str::to_string))
        .collect()
}

#[test]
fn orphaned_half_messages_are_resolved_by_the_check_back() {
    let s = builtin("transaction-producer-crash").expect("in the catalogue");
    let r = run(&s, 1, true);
    assert_eq!(r.findings.verdict, Verdict::Pass, "{:?}", r.findings.problems);
    let consumed = keys(&r.trace, &["client.message.consumed"]);
    let committed_by_check = keys(&r.trace, &["client.transaction.checked", "state=CommitMessage"]);
    let checked: Vec<&String> = r.trace.iter().filter(|l| l.contains("client.transaction.checked")).collect();
    assert!(!committed_by_check.is_empty(), "a crash left committed half messages to the check-back: {checked:?}");
    assert!(committed_by_check.is_subset(&consumed), "what the check-back committed is delivered");
    let rolled_back: BTreeSet<String> = keys(&r.trace, &["client.transaction.checked", "state=RollbackMessage"]);
    assert!(!rolled_back.is_empty(), "half messages whose local transaction never ran are rolled back");
    assert!(
        rolled_back.is_disjoint(&consumed),
        "rolled back, yet delivered: {:?}",
        rolled_back.intersection(&consumed)
    );
}

#[test]
fn rolled_back_and_unresolved_transactions_are_never_delivered() {
    let s = builtin("transaction-rollback").expect("in the catalogue");
    let r = run(&s, 2, true);
    assert_eq!(r.findings.verdict, Verdict::Pass, "{:?}", r.findings.problems);
    let consumed = keys(&r.trace, &["client.message.consumed"]);
    let local_rollbacks: BTreeSet<String> = keys(&r.trace, &["client.transaction.local", "state=RollbackMessage"]);
    assert!(local_rollbacks.len() > 20, "{} rollbacks", local_rollbacks.len());
    assert!(local_rollbacks.is_disjoint(&consumed));
    assert!(
        r.trace.iter().any(|l| l.contains("broker.transaction.discarded")),
        "a transaction the checker never resolves is given up after transactionCheckMax checks"
    );
    let unresolved: BTreeSet<String> = keys(&r.trace, &["client.transaction.checked", "state=Unknown"]);
    assert!(!unresolved.is_empty() && unresolved.is_disjoint(&consumed), "unresolved ones are never delivered");
}

#[test]
fn the_oracle_flags_a_delivery_no_commit_preceded() {
    let mut s = builtin("transaction-rollback").expect("in the catalogue");
    s.transactional = true;
    let mut h = History::of(&s);
    h.tx_committed("p0-1", 10);
    h.delivered(0, "p0-1", 0, 0, 20);
    assert!(h.tx_violations.is_empty());
    h.delivered(0, "p0-2", 0, 1, 30);
    assert_eq!(h.tx_violations.len(), 1, "{:?}", h.tx_violations);
}
