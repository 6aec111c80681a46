//! Traces: one line per event, `t=<ms>ms <node> <component.object.verb> key=value...`, and a
//! running FNV-1a digest of every line (kept or not).

use rmq_broker_core::Event;

/// Event lines and their digest.
#[derive(Debug, Clone)]
pub struct Trace {
    keep: bool,
    /// Kept lines (only when asked for).
    pub lines: Vec<String>,
    /// FNV-1a 64 over every line and its newline.
    pub digest: u64,
    /// Lines seen.
    pub count: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

impl Trace {
    /// A trace; `keep` stores the lines as well.
    pub fn new(keep: bool) -> Self {
        Trace { keep, lines: Vec::new(), digest: FNV_OFFSET, count: 0 }
    }

    /// Records one event.
    pub fn line(&mut self, t: u64, node: &str, what: &str, fields: &str) {
        let l = if fields.is_empty() {
            format!("t={t}ms {node} {what}")
        } else {
            format!("t={t}ms {node} {what} {fields}")
        };
        for b in l.bytes().chain(std::iter::once(b'\n')) {
            self.digest ^= u64::from(b);
            self.digest = self.digest.wrapping_mul(FNV_PRIME);
        }
        self.count += 1;
        if self.keep {
            self.lines.push(l);
        }
    }

    /// Records a broker core event.
    pub fn broker_event(&mut self, t: u64, node: &str, e: &Event) {
        let (what, fields) = match e {
            Event::MessageStored { topic, queue_id, queue_offset, commit_log_offset, uniq_key } => (
                "broker.message.stored",
                format!(
                    "topic={topic} queue={queue_id} offset={queue_offset} clo={commit_log_offset} key={}",
                    uniq_key.as_deref().unwrap_or("-")
                ),
            ),
            Event::SendAnswered { code, queue_offset } => {
                ("broker.send.answered", format!("code={code} offset={queue_offset}"))
            }
            Event::FlushCompleted { commit_log_offset } => {
                ("broker.flush.completed", format!("clo={commit_log_offset}"))
            }
            Event::ConsumerOffsetCommitted { group, topic, queue_id, offset } => {
                ("broker.offset.committed", format!("group={group} topic={topic} queue={queue_id} offset={offset}"))
            }
            Event::ConsumerOffsetReset { group, topic, queue_id, offset } => {
                ("broker.offset.reset", format!("group={group} topic={topic} queue={queue_id} offset={offset}"))
            }
            Event::TopicUpdated { topic } => ("broker.topic.updated", format!("topic={topic}")),
            Event::GroupMembershipChanged { group, members } => {
                ("broker.group.changed", format!("group={group} members={members}"))
            }
            Event::PullHeld { topic, queue_id } => ("broker.pull.held", format!("topic={topic} queue={queue_id}")),
            Event::DelayedDelivered { topic } => ("broker.delayed.delivered", format!("topic={topic}")),
            Event::TransactionChecked { half_offset, times, asked } => {
                ("broker.transaction.checked", format!("half_offset={half_offset} times={times} asked={asked}"))
            }
            Event::TransactionDiscarded { half_offset } => {
                ("broker.transaction.discarded", format!("half_offset={half_offset}"))
            }
            Event::TransactionRefused { code, reason } => {
                ("broker.transaction.refused", format!("code={code} reason={reason}"))
            }
            Event::TransactionEnded { half_offset, commit } => {
                ("broker.transaction.ended", format!("half_offset={half_offset} commit={commit}"))
            }
            Event::CheckpointBegan { commit_log_offset } => {
                ("broker.checkpoint.began", format!("clo={commit_log_offset}"))
            }
            Event::FilesDeleted { commit_log_segments, queue_segments, commit_log_min_offset, offsets_raised } => (
                "broker.files.deleted",
                format!(
                    "segments={commit_log_segments} queue_files={queue_segments} min_clo={commit_log_min_offset} offsets_raised={offsets_raised}"
                ),
            ),
            Event::CheckpointCompleted { ok } => ("broker.checkpoint.completed", format!("ok={ok}")),
            Event::ReplicaTruncated { from, to } => ("ha.replica.truncated", format!("from={from} to={to}")),
            Event::SlaveAheadOfEmptyMaster { slave_offset } => {
                ("ha.slave.ahead_of_empty_master", format!("slave_offset={slave_offset}"))
            }
        };
        self.line(t, node, what, &fields);
    }
}
