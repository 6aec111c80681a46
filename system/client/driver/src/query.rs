//! Finding messages (RocketMQ's `queryMessage` / `viewMessage`): by key or unique key through
//! every broker's index, by offset message id straight from the broker that stored it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rmq_client::ClientError> {
//! use rmq_client::{ClientConfig, MessageQuery};
//! let q = MessageQuery::new(rmq_rt::RealEnv::default(), ClientConfig::new("127.0.0.1:9876", "ops"));
//! for m in q.by_key("Orders", "order-42", 32, 0, i64::MAX).await? {
//!     println!("{} {}", m.msg_id(), String::from_utf8_lossy(&m.body));
//! }
//! # Ok(()) }
//! ```

use rmq_proto::codes::RequestCode;
use rmq_proto::header::QueryMessageRequestHeader;
use rmq_proto::message::{decode_messages, parse_offset_msg_id, MessageExt};
use rmq_proto::{RemotingCommand, ResponseCode};
use rmq_rt::Env;

use crate::instance::ClientInstance;
use crate::{ClientConfig, ClientError};

/// Looks messages up by key, unique key or id.
#[derive(Debug)]
pub struct MessageQuery<E: Env> {
    inst: ClientInstance<E>,
}

impl<E: Env> MessageQuery<E> {
    /// A query client for the NameServers in `config` (the group is unused).
    pub fn new(env: E, config: ClientConfig) -> Self {
        MessageQuery { inst: ClientInstance::new(env, config).0 }
    }

    /// Messages of `topic` sent with `key` among their KEYS and stored within
    /// `[begin_ms, end_ms]`, from every broker of the topic, oldest first, at most `max`.
    pub async fn by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<MessageExt>, ClientError> {
        self.query(topic, key, max, begin_ms, end_ms, false).await
    }

    /// The message of `topic` whose unique key (the msgId a producer reports) is `id`.
    pub async fn by_unique_key(&self, topic: &str, id: &str) -> Result<Option<MessageExt>, ClientError> {
        Ok(self.query(topic, id, 1, 0, i64::MAX, true).await?.into_iter().next())
    }

    /// The message an offset message id (broker address and CommitLog offset, what
    /// `SendResult::offset_msg_id` reports) names, read from that broker.
    pub async fn by_offset_id(&self, offset_msg_id: &str) -> Result<MessageExt, ClientError> {
        let (addr, offset) = parse_offset_msg_id(offset_msg_id)
            .ok_or_else(|| ClientError::Config(format!("{offset_msg_id} is not an offset message id")))?;
        let req = RemotingCommand::request(RequestCode::ViewMessageById, 0).with_ext("offset", offset);
        let resp = self.inst.call(&addr.to_string(), req).await?;
        decode_messages(&resp.body)
            .map_err(|e| ClientError::Malformed(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Malformed("VIEW_MESSAGE_BY_ID answered no message".into()))
    }

    async fn query(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin_ms: i64,
        end_ms: i64,
        unique: bool,
    ) -> Result<Vec<MessageExt>, ClientError> {
        let route = self.inst.fetch_route(topic).await?;
        let h = QueryMessageRequestHeader {
            topic: topic.into(),
            key: key.into(),
            max_num: i32::try_from(max).unwrap_or(i32::MAX),
            begin_timestamp: begin_ms,
            end_timestamp: end_ms,
        };
        let mut found = Vec::new();
        for b in &route.broker_datas {
            let Some(addr) = b.master_addr().or_else(|| b.broker_addrs.values().next().map(String::as_str)) else {
                continue;
            };
            let mut req = RemotingCommand::request_with(RequestCode::QueryMessage, 0, &h);
            if unique {
                req = req.with_ext("_UNIQUE_KEY_QUERY", "true");
            }
            match self.inst.call(addr, req).await {
                Ok(resp) => {
                    found.extend(decode_messages(&resp.body).map_err(|e| ClientError::Malformed(e.to_string()))?)
                }
                Err(ClientError::Server { code, .. }) if code == ResponseCode::QueryNotFound.code() => {}
                Err(e) => return Err(e),
            }
        }
        found.sort_by_key(|m| (m.store_timestamp, m.commit_log_offset));
        found.truncate(max);
        Ok(found)
    }
}
