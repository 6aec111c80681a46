//! Transactional messages, the producer's decisions: whether the local transaction runs, and
//! what END_TRANSACTION tells the broker (after a send, or in answer to a check-back).

use rmq_proto::codes::{sys_flag, RequestCode};
use rmq_proto::header::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use rmq_proto::message::{parse_offset_msg_id, prop, MessageExt};
use rmq_proto::RemotingCommand;

use crate::retry::SendStatus;

/// What the local transaction (or the checker) decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalTransactionState {
    /// Deliver the message.
    CommitMessage,
    /// Drop it.
    RollbackMessage,
    /// Not known yet: the broker checks back later.
    Unknown,
}

impl LocalTransactionState {
    /// END_TRANSACTION's commitOrRollback value.
    pub fn code(self) -> i32 {
        match self {
            LocalTransactionState::CommitMessage => sys_flag::TRANSACTION_COMMIT,
            LocalTransactionState::RollbackMessage => sys_flag::TRANSACTION_ROLLBACK,
            LocalTransactionState::Unknown => 0,
        }
    }
}

/// The outcome to report for a half message stored with `status`: the local transaction
/// runs only when the half message is stored SEND_OK; otherwise it is rolled back unrun (a
/// half message whose durability is unconfirmed must not carry a business effect).
pub fn outcome(status: SendStatus, execute: impl FnOnce() -> LocalTransactionState) -> LocalTransactionState {
    if status == SendStatus::SendOk {
        execute()
    } else {
        LocalTransactionState::RollbackMessage
    }
}

/// One-way END_TRANSACTION after a send of `topic` by `group`, from the send's answer (queue
/// offset, offset message id, UNIQ_KEY). `None` when the offset message id is unreadable:
/// the check-back ends the transaction instead.
pub fn end_after_send(
    group: &str,
    topic: &str,
    queue_offset: i64,
    offset_msg_id: &str,
    msg_id: &str,
    state: LocalTransactionState,
) -> Option<RemotingCommand> {
    let (_, commit_log_offset) = parse_offset_msg_id(offset_msg_id)?;
    let h = EndTransactionRequestHeader {
        topic: Some(topic.into()),
        producer_group: group.into(),
        tran_state_table_offset: queue_offset,
        commit_log_offset,
        commit_or_rollback: state.code(),
        from_transaction_check: Some(false),
        msg_id: msg_id.into(),
        transaction_id: Some(msg_id.into()),
    };
    Some(RemotingCommand::request_with(RequestCode::EndTransaction, 0, &h).oneway())
}

/// One-way END_TRANSACTION answering the check-back `check` about `half` with `state`.
pub fn end_after_check(
    group: &str,
    check: &CheckTransactionStateRequestHeader,
    half: &MessageExt,
    state: LocalTransactionState,
) -> RemotingCommand {
    let uniq = half.properties.get(prop::UNIQ_KEY).cloned().unwrap_or_default();
    let h = EndTransactionRequestHeader {
        topic: check.topic.clone(),
        producer_group: group.into(),
        tran_state_table_offset: check.tran_state_table_offset,
        commit_log_offset: check.commit_log_offset,
        commit_or_rollback: state.code(),
        from_transaction_check: Some(true),
        msg_id: uniq.clone(),
        transaction_id: check.transaction_id.clone().or(Some(uniq)),
    };
    RemotingCommand::request_with(RequestCode::EndTransaction, 0, &h).oneway()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_half_message_stored_send_ok_runs_the_local_transaction() {
        let mut ran = 0;
        let mut run = || {
            ran += 1;
            LocalTransactionState::CommitMessage
        };
        assert_eq!(outcome(SendStatus::SendOk, &mut run), LocalTransactionState::CommitMessage);
        for status in [SendStatus::FlushDiskTimeout, SendStatus::FlushSlaveTimeout, SendStatus::SlaveNotAvailable] {
            assert_eq!(outcome(status, &mut run), LocalTransactionState::RollbackMessage, "{status:?}");
        }
        assert_eq!(ran, 1);
    }

    #[test]
    fn end_transaction_names_the_half_message_it_resolves() {
        let id = rmq_proto::message::offset_msg_id("127.0.0.1:10911".parse().unwrap(), 4_242);
        let cmd = end_after_send("pg", "T", 7, &id, "U1", LocalTransactionState::RollbackMessage).unwrap();
        assert!(cmd.is_oneway());
        let h: EndTransactionRequestHeader = cmd.decode_header().unwrap();
        assert_eq!((h.tran_state_table_offset, h.commit_log_offset, h.commit_or_rollback), (7, 4_242, 12));
        assert_eq!(h.from_transaction_check, Some(false));
        assert!(end_after_send("pg", "T", 7, "not-an-id", "U1", LocalTransactionState::Unknown).is_none());
        let check = CheckTransactionStateRequestHeader {
            topic: Some("T".into()),
            tran_state_table_offset: 3,
            commit_log_offset: 99,
            msg_id: None,
            transaction_id: None,
            offset_msg_id: None,
        };
        let mut half = MessageExt::default();
        half.properties.insert(prop::UNIQ_KEY.into(), "U2".into());
        let h: EndTransactionRequestHeader =
            end_after_check("pg", &check, &half, LocalTransactionState::CommitMessage).decode_header().unwrap();
        assert_eq!((h.tran_state_table_offset, h.commit_log_offset, h.commit_or_rollback), (3, 99, 8));
        assert_eq!((h.from_transaction_check, h.transaction_id.as_deref()), (Some(true), Some("U2")));
    }
}
