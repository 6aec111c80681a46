//! Transactional messages, producer side (RocketMQ's `TransactionMQProducer`).
//!
//! [`TransactionProducer::send_in_transaction`] sends a half message (TRAN_MSG, so the broker
//! keeps it out of its topic), runs the local transaction, and tells the broker the outcome
//! with a one-way END_TRANSACTION: commit delivers the message, rollback drops it, unknown
//! leaves it to the check-back. When the outcome never arrives (the producer died, the
//! one-way request was lost, or the local transaction said unknown) the broker asks a live
//! producer of the same group with CHECK_TRANSACTION_STATE; the checker given at start
//! answers from the application's own records.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use rmq_client_core::transaction;
use rmq_proto::codes::RequestCode;
use rmq_proto::header::CheckTransactionStateRequestHeader;
use rmq_proto::message::{decode_message, prop, MessageExt};
use rmq_rt::client::Incoming;
use rmq_rt::Env;
use tokio::sync::mpsc;

use crate::producer::{Message, Producer, SendResult};
use crate::{ClientConfig, SendError};

pub use rmq_client_core::transaction::LocalTransactionState;

/// Answers a check-back for a half message (the message as stored: its UNIQ_KEY is the
/// transaction id, its properties are the application's).
pub(crate) type Checker = Arc<dyn Fn(&MessageExt) -> LocalTransactionState + Send + Sync>;

/// The outcome of [`TransactionProducer::send_in_transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSendResult {
    /// The half message's send.
    pub send: SendResult,
    /// What was reported to the broker.
    pub state: LocalTransactionState,
}

/// A producer of transactional messages. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TransactionProducer<E: Env> {
    producer: Producer<E>,
}

impl<E: Env> TransactionProducer<E> {
    /// Starts a producer of `config.group` whose `checker` answers the brokers' check-backs.
    pub fn start<F>(env: E, config: ClientConfig, checker: F) -> Self
    where
        F: Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static,
    {
        TransactionProducer { producer: Producer::start_with(env, config, Some(Arc::new(checker))) }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.producer.client_id()
    }

    /// Sends `msg` as a half message, runs `execute` (the local transaction) once the broker
    /// stored it, and reports the outcome. A half message that was not stored SEND_OK is
    /// rolled back without running `execute`; a panicking `execute` reports unknown (the
    /// check-back decides). Delayed transactional messages are refused, as RocketMQ 5
    /// does (the half log is not a delay queue).
    pub async fn send_in_transaction<F>(&self, mut msg: Message, execute: F) -> Result<TransactionSendResult, SendError>
    where
        F: FnOnce(&Message, &SendResult) -> LocalTransactionState,
    {
        if msg.properties.contains_key(prop::DELAY) {
            return Err(SendError::InvalidMessage("a transactional message cannot be delayed".into()));
        }
        let group = self.producer.instance().config.group.clone();
        msg.properties.insert(prop::TRAN_MSG.into(), "true".into());
        msg.properties.insert(prop::PGROUP.into(), group.clone());
        let send = self.producer.send(msg.clone()).await?;
        let state = transaction::outcome(send.status, || {
            std::panic::catch_unwind(AssertUnwindSafe(|| execute(&msg, &send))).unwrap_or_else(|_| {
                tracing::warn!(msg_id = %send.msg_id, "the local transaction panicked; reported unknown");
                LocalTransactionState::Unknown
            })
        });
        self.end(&group, &msg.topic, &send, state).await;
        Ok(TransactionSendResult { send, state })
    }

    /// END_TRANSACTION, one-way, to the master that holds the half message. A lost one is
    /// made good by the check-back.
    async fn end(&self, group: &str, topic: &str, send: &SendResult, state: LocalTransactionState) {
        let inst = self.producer.instance();
        let Some(addr) = inst.master_addr(&send.queue.broker_name) else {
            tracing::warn!(broker = %send.queue.broker_name, "no master to end the transaction with; the check-back will");
            return;
        };
        let end =
            transaction::end_after_send(group, topic, send.queue_offset, &send.offset_msg_id, &send.msg_id, state);
        let Some(req) = end else {
            tracing::warn!(offset_msg_id = %send.offset_msg_id, "unreadable offset message id; the check-back will end it");
            return;
        };
        if let Err(e) = inst.rpc.invoke_oneway(&addr, req).await {
            tracing::warn!(%addr, error = %e, "END_TRANSACTION not sent; the check-back will end it");
        }
    }

    /// Stops and unregisters from brokers.
    pub async fn shutdown(&self) {
        self.producer.shutdown().await
    }
}

/// Answers CHECK_TRANSACTION_STATE requests with `checker`'s verdict (one-way
/// END_TRANSACTION marked fromTransactionCheck, to the broker that asked).
pub(crate) async fn answer_checks<E: Env>(
    producer: Producer<E>,
    mut incoming: mpsc::UnboundedReceiver<Incoming>,
    checker: Checker,
) {
    while let Some(inc) = incoming.recv().await {
        if inc.cmd.request_code() != RequestCode::CheckTransactionState {
            tracing::debug!(code = inc.cmd.code, "a producer serves only CHECK_TRANSACTION_STATE; ignored");
            continue;
        }
        let h: CheckTransactionStateRequestHeader = match inc.cmd.decode_header() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable check-back");
                continue;
            }
        };
        let msg = match decode_message(&inc.cmd.body, true) {
            Ok((m, _)) => m,
            Err(e) => {
                tracing::warn!(error = %e, "check-back without a readable message");
                continue;
            }
        };
        let state = std::panic::catch_unwind(AssertUnwindSafe(|| checker(&msg))).unwrap_or_else(|_| {
            tracing::warn!("the transaction checker panicked; reported unknown");
            LocalTransactionState::Unknown
        });
        let req = transaction::end_after_check(&producer.instance().config.group, &h, &msg, state);
        if let Err(e) = producer.instance().rpc.invoke_oneway(&inc.addr, req).await {
            tracing::debug!(addr = %inc.addr, error = %e, "check-back answer not sent; the broker asks again");
        }
    }
}
