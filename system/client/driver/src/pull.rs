//! The pull consumer: the caller chooses queues and offsets; offsets are committed on request.
//! The push consumer is built on the same [`pull_once`].

use rmq_client_core::PublishInfo;
use rmq_proto::body::MessageQueue;
use rmq_proto::codes::{pull_flag, RequestCode};
use rmq_proto::header::{
    OffsetResponseHeader, PullMessageRequestHeader, QueryConsumerOffsetRequestHeader, QueueRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use rmq_proto::message::{decode_messages, MessageExt};
use rmq_proto::{RemotingCommand, ResponseCode};
use rmq_rt::Env;

use crate::instance::{ClientInstance, RPC_TIMEOUT_MS};
use crate::{ClientConfig, ClientError};

/// What a pull found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullStatus {
    /// Messages returned.
    Found,
    /// Nothing new (after any hold).
    NoNewMsg,
    /// Messages exist but none matched the subscription.
    NoMatchedMsg,
    /// The offset was out of range; continue from `next_begin_offset`.
    OffsetIllegal,
}

/// The answer to one pull.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PullResult {
    /// Status.
    pub status: PullStatus,
    /// Offset to pull next.
    pub next_begin_offset: u64,
    /// Smallest offset held.
    pub min_offset: u64,
    /// Next offset to be written.
    pub max_offset: u64,
    /// Messages (empty unless Found).
    pub messages: Vec<MessageExt>,
}

/// One PULL_MESSAGE round trip (with optional hold and piggy-backed commit) to the replica the
/// route and the last pull answer point at.
#[allow(clippy::too_many_arguments)]
pub async fn pull_once<E: Env>(
    inst: &ClientInstance<E>,
    mq: &MessageQueue,
    offset: u64,
    max_nums: i32,
    subscription: &str,
    commit_offset: Option<u64>,
    suspend_ms: u64,
) -> Result<PullResult, ClientError> {
    let addr = inst.resolve(mq, false).await?;
    let timeout_ms = suspend_ms + RPC_TIMEOUT_MS + 5_000;
    let ask = PullAsk { offset, max_nums, subscription, commit_offset, suspend_ms, timeout_ms };
    let (r, suggested) = pull_at(inst, &addr, mq, &ask).await?;
    if let Some(id) = suggested {
        inst.suggest(&mq.broker_name, id);
    }
    Ok(r)
}

/// What one pull asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PullAsk<'a> {
    /// Offset to pull from.
    pub offset: u64,
    /// Most messages.
    pub max_nums: i32,
    /// Tag expression.
    pub subscription: &'a str,
    /// Offset to commit on the way (COMMIT_OFFSET flag).
    pub commit_offset: Option<u64>,
    /// Long-poll hold asked of the broker (0: none).
    pub suspend_ms: u64,
    /// Give up after this long.
    pub timeout_ms: u64,
}

/// One PULL_MESSAGE round trip to `addr`; also returns the broker id the broker suggested
/// reading from next (suggestWhichBrokerId).
pub async fn pull_at<E: Env>(
    inst: &ClientInstance<E>,
    addr: &str,
    mq: &MessageQueue,
    ask: &PullAsk<'_>,
) -> Result<(PullResult, Option<i64>), ClientError> {
    let mut sys_flag = pull_flag::SUBSCRIPTION;
    if ask.suspend_ms > 0 {
        sys_flag |= pull_flag::SUSPEND;
    }
    if ask.commit_offset.is_some() {
        sys_flag |= pull_flag::COMMIT_OFFSET;
    }
    let h = PullMessageRequestHeader {
        consumer_group: inst.config.group.clone(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        queue_offset: ask.offset as i64,
        max_msg_nums: ask.max_nums,
        sys_flag,
        commit_offset: ask.commit_offset.map_or(0, |o| o as i64),
        suspend_timeout_millis: ask.suspend_ms as i64,
        subscription: Some(ask.subscription.to_string()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        broker_name: Some(mq.broker_name.clone()),
    };
    let req = RemotingCommand::request_with(RequestCode::PullMessage, 0, &h);
    let resp = inst.rpc.invoke(addr, req, ask.timeout_ms).await?;
    let num = |k: &str| resp.ext(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0).max(0) as u64;
    let suggested = resp.ext("suggestWhichBrokerId").and_then(|v| v.parse::<i64>().ok());
    let status = match ResponseCode::from_code(resp.code) {
        ResponseCode::Success => PullStatus::Found,
        ResponseCode::PullNotFound => PullStatus::NoNewMsg,
        ResponseCode::PullRetryImmediately => PullStatus::NoMatchedMsg,
        ResponseCode::PullOffsetMoved => PullStatus::OffsetIllegal,
        _ => return Err(ClientError::Server { code: resp.code, remark: resp.remark.unwrap_or_default() }),
    };
    let mut messages = if status == PullStatus::Found {
        decode_messages(&resp.body).map_err(|e| ClientError::Malformed(e.to_string()))?
    } else {
        Vec::new()
    };
    // The broker filters by tag hash; collisions are re-checked here by the tag string.
    let sub = rmq_proto::body::SubscriptionData::tag(&mq.topic, ask.subscription);
    messages.retain(|m| sub.matches(m.tags()));
    let result = PullResult {
        status: if status == PullStatus::Found && messages.is_empty() { PullStatus::NoMatchedMsg } else { status },
        next_begin_offset: num("nextBeginOffset"),
        min_offset: num("minOffset"),
        max_offset: num("maxOffset"),
        messages,
    };
    Ok((result, suggested))
}

/// A consumer that pulls explicitly.
#[derive(Debug, Clone)]
pub struct PullConsumer<E: Env> {
    inst: ClientInstance<E>,
}

impl<E: Env> PullConsumer<E> {
    /// A pull consumer for `config.group`.
    pub fn new(env: E, config: ClientConfig) -> Self {
        PullConsumer { inst: ClientInstance::new(env, config).0 }
    }

    /// The readable queues of a topic.
    pub async fn fetch_queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        let route = self.inst.fetch_route(topic).await?;
        Ok(PublishInfo::readable_queues(topic, &route))
    }

    /// Pulls up to `max_nums` messages from `offset`, holding up to `suspend_ms` if none.
    pub async fn pull(
        &self,
        mq: &MessageQueue,
        subscription: &str,
        offset: u64,
        max_nums: i32,
        suspend_ms: u64,
    ) -> Result<PullResult, ClientError> {
        pull_once(&self.inst, mq, offset, max_nums, subscription, None, suspend_ms).await
    }

    /// The group's committed offset of a queue, if any.
    pub async fn committed(&self, mq: &MessageQueue) -> Result<Option<u64>, ClientError> {
        committed_offset(&self.inst, mq).await
    }

    /// Commits the group's offset of a queue.
    pub async fn commit(&self, mq: &MessageQueue, offset: u64) -> Result<(), ClientError> {
        commit_offset(&self.inst, mq, offset, false).await
    }

    /// The next offset to be written to a queue.
    pub async fn max_offset(&self, mq: &MessageQueue) -> Result<u64, ClientError> {
        queue_offset(&self.inst, mq, RequestCode::GetMaxOffset).await
    }

    /// The smallest offset held by a queue.
    pub async fn min_offset(&self, mq: &MessageQueue) -> Result<u64, ClientError> {
        queue_offset(&self.inst, mq, RequestCode::GetMinOffset).await
    }
}

/// QUERY_CONSUMER_OFFSET; `None` when the group has none.
pub async fn committed_offset<E: Env>(inst: &ClientInstance<E>, mq: &MessageQueue) -> Result<Option<u64>, ClientError> {
    let addr = inst.resolve(mq, false).await?;
    committed_offset_at(inst, &addr, mq).await
}

/// QUERY_CONSUMER_OFFSET to `addr`; `None` when the group has none.
pub async fn committed_offset_at<E: Env>(
    inst: &ClientInstance<E>,
    addr: &str,
    mq: &MessageQueue,
) -> Result<Option<u64>, ClientError> {
    let h = QueryConsumerOffsetRequestHeader {
        consumer_group: inst.config.group.clone(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
    };
    let resp = inst
        .rpc
        .invoke(addr, RemotingCommand::request_with(RequestCode::QueryConsumerOffset, 0, &h), RPC_TIMEOUT_MS)
        .await?;
    match ResponseCode::from_code(resp.code) {
        ResponseCode::Success => {
            let o: OffsetResponseHeader = resp.decode_header().map_err(|e| ClientError::Malformed(e.to_string()))?;
            Ok(Some(o.offset.max(0) as u64))
        }
        ResponseCode::QueryNotFound => Ok(None),
        _ => Err(ClientError::Server { code: resp.code, remark: resp.remark.unwrap_or_default() }),
    }
}

/// UPDATE_CONSUMER_OFFSET (one-way when `oneway`).
pub async fn commit_offset<E: Env>(
    inst: &ClientInstance<E>,
    mq: &MessageQueue,
    offset: u64,
    oneway: bool,
) -> Result<(), ClientError> {
    let addr = inst.resolve(mq, false).await?;
    commit_offset_at(inst, &addr, mq, offset, oneway).await
}

/// UPDATE_CONSUMER_OFFSET to `addr` (one-way when `oneway`).
pub async fn commit_offset_at<E: Env>(
    inst: &ClientInstance<E>,
    addr: &str,
    mq: &MessageQueue,
    offset: u64,
    oneway: bool,
) -> Result<(), ClientError> {
    let h = UpdateConsumerOffsetRequestHeader {
        consumer_group: inst.config.group.clone(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        commit_offset: offset as i64,
    };
    let req = RemotingCommand::request_with(RequestCode::UpdateConsumerOffset, 0, &h);
    if oneway {
        inst.rpc.invoke_oneway(addr, req).await?;
    } else {
        inst.call(addr, req).await?;
    }
    Ok(())
}

/// GET_MAX_OFFSET or GET_MIN_OFFSET.
pub async fn queue_offset<E: Env>(
    inst: &ClientInstance<E>,
    mq: &MessageQueue,
    code: RequestCode,
) -> Result<u64, ClientError> {
    let addr = inst.resolve(mq, false).await?;
    queue_offset_at(inst, &addr, mq, code).await
}

/// GET_MAX_OFFSET or GET_MIN_OFFSET to `addr`.
pub async fn queue_offset_at<E: Env>(
    inst: &ClientInstance<E>,
    addr: &str,
    mq: &MessageQueue,
    code: RequestCode,
) -> Result<u64, ClientError> {
    let h = QueueRequestHeader { topic: mq.topic.clone(), queue_id: mq.queue_id };
    let resp = inst.call(addr, RemotingCommand::request_with(code, 0, &h)).await?;
    let o: OffsetResponseHeader = resp.decode_header().map_err(|e| ClientError::Malformed(e.to_string()))?;
    Ok(o.offset.max(0) as u64)
}
