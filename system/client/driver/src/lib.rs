//! RocketMQ-compatible client: a [`Producer`] (sync, async, one-way, ordered by key, batch),
//! a [`PushConsumer`] (long polling, CLUSTERING with rebalance or BROADCASTING, retries via
//! send-back) and a [`PullConsumer`]. Every decision (queue choice, retry, allocation, committable
//! offset) comes from `rmq-client-core`; this crate only moves bytes and timers.
//!
//! Configure with NameServer addresses and a group, in code, from a properties file or from
//! the environment ([`ClientConfig`]), as the Spring Boot starter does. With credentials
//! (`ClientConfig::credentials`, `rocketmq.<role>.access-key`/`secret-key`, or
//! `ROCKETMQ_ACCESS_KEY`/`ROCKETMQ_SECRET_KEY`) every request is signed for brokers and
//! NameServers that run with `aclEnable=true`, as RocketMQ's `AclClientRPCHook` does.
//!
//! # Layout
//! - [`config`]: [`ClientConfig`] and its sources.
//! - [`instance`]: RPC connections and the route cache shared by one producer or consumer.
//! - [`producer`], [`push`], [`pull`]: the three client kinds; [`transaction`]: the
//!   transactional producer (half messages, local transaction, check-back).
//! - [`query`]: [`MessageQuery`], finding messages by key, unique key or offset id.
//! - [`error`]: one error type per operation.

pub mod config;
pub mod error;
pub mod idempotent;
pub mod instance;
pub mod offset_store;
pub mod producer;
pub mod pull;
pub mod push;
pub mod query;
pub mod transaction;

pub use config::{ClientConfig, ConsumeFromWhere, MessageModel};
pub use error::{ClientError, SendError};
pub use instance::signing_hook;
pub use producer::{Message, Producer, SendResult};
pub use pull::{PullConsumer, PullResult, PullStatus};
pub use push::{ConsumeResult, PushConsumer};
pub use query::MessageQuery;
pub use rmq_acl::Credentials;
pub use rmq_client_core::retry::SendStatus;
pub use rmq_proto::body::MessageQueue;
pub use rmq_proto::message::MessageExt;
pub use transaction::{LocalTransactionState, TransactionProducer, TransactionSendResult};
