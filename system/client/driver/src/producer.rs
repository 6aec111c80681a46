//! The producer: synchronous, asynchronous (future or callback), one-way, key-ordered and batch
//! sends, with retry on another broker and periodic route refresh.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rmq_client_core::retry::{is_retryable, stored_status, SendStatus};
use rmq_client_core::PublishInfo;
use rmq_proto::body::{HeartbeatData, MessageQueue, ProducerData};
use rmq_proto::codes::RequestCode;
use rmq_proto::header::SendMessageRequestHeader;
use rmq_proto::message::{encode_batch, encode_properties, prop, uniq_msg_id, BatchItem};
use rmq_proto::{RemotingCommand, ResponseCode};
use rmq_rt::{spawn, Env};
use tokio::sync::watch;

use crate::instance::ClientInstance;
use crate::{ClientConfig, ClientError, SendError};

/// Queues per topic asked for when a topic is auto-created.
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Body.
    pub body: Bytes,
    /// User properties; TAGS and KEYS live here too.
    pub properties: BTreeMap<String, String>,
    /// User flag.
    pub flag: i32,
}

impl Message {
    /// A message with a body.
    pub fn new(topic: &str, body: impl Into<Bytes>) -> Self {
        Message { topic: topic.into(), body: body.into(), ..Default::default() }
    }

    /// Sets the tag.
    pub fn with_tags(mut self, tags: &str) -> Self {
        self.properties.insert(prop::TAGS.into(), tags.into());
        self
    }

    /// Sets the keys (space separated).
    pub fn with_keys(mut self, keys: &str) -> Self {
        self.properties.insert(prop::KEYS.into(), keys.into());
        self
    }

    /// Asks for delivery after delay level `level` (1 = 1 s, 2 = 5 s, 3 = 10 s, ...).
    pub fn with_delay_level(mut self, level: i32) -> Self {
        self.properties.insert(prop::DELAY.into(), level.to_string());
        self
    }
}

/// The result of a stored send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SendResult {
    /// Stored status.
    pub status: SendStatus,
    /// Client message id (UNIQ_KEY).
    pub msg_id: String,
    /// Broker offset message id.
    pub offset_msg_id: String,
    /// Queue the message went to.
    pub queue: MessageQueue,
    /// Queue offset.
    pub queue_offset: i64,
}

struct Inner<E: Env> {
    inst: ClientInstance<E>,
    publish: Mutex<BTreeMap<String, PublishInfo>>,
    counter: AtomicU16,
    stop: watch::Sender<bool>,
}

/// A producer. Cheap to clone; clones share connections and routes.
#[derive(Clone)]
pub struct Producer<E: Env> {
    inner: Arc<Inner<E>>,
}

impl<E: Env> std::fmt::Debug for Producer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("group", &self.inner.inst.config.group).finish()
    }
}

impl<E: Env> Producer<E> {
    /// Starts a producer: route refresh and broker heartbeats run in the background.
    pub fn start(env: E, config: ClientConfig) -> Self {
        let (inst, _incoming) = ClientInstance::new(env, config);
        let (stop, _) = watch::channel(false);
        let p =
            Producer { inner: Arc::new(Inner { inst, publish: Mutex::default(), counter: AtomicU16::new(0), stop }) };
        let bg = p.clone();
        spawn(async move { bg.background().await });
        p
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.inner.inst.client_id
    }

    /// Stops background work and unregisters from brokers.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let inst = &self.inner.inst;
        for addr in inst.all_broker_addrs() {
            let req = RemotingCommand::request(RequestCode::UnregisterClient, 0)
                .with_ext("clientID", &inst.client_id)
                .with_ext("producerGroup", &inst.config.group);
            let _ = inst.rpc.invoke(&addr, req, 1_000).await;
        }
        inst.rpc.close_all().await;
    }

    async fn background(&self) {
        let mut stop = self.inner.stop.subscribe();
        let cfg = &self.inner.inst.config;
        let period = cfg.poll_namesrv_interval_ms.min(cfg.heartbeat_interval_ms).max(100);
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                _ = rmq_rt::time::sleep(Duration::from_millis(period)) => {}
            }
            let topics: Vec<String> =
                self.inner.publish.lock().expect("publish lock is never poisoned").keys().cloned().collect();
            for t in topics {
                let _ = self.refresh(&t).await;
            }
            self.inner.inst.heartbeat_all(&self.heartbeat_data()).await;
        }
    }

    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.inner.inst.client_id.clone(),
            producer_data_set: vec![ProducerData { group_name: self.inner.inst.config.group.clone() }],
            ..Default::default()
        }
    }

    /// Refreshes a topic's route; an unknown topic falls back to TBW102 for auto-creation.
    async fn refresh(&self, topic: &str) -> Result<PublishInfo, ClientError> {
        let route = match self.inner.inst.fetch_route(topic).await {
            Ok(r) => r,
            Err(ClientError::NoRoute { .. }) => {
                let mut r = self.inner.inst.fetch_route("TBW102").await?;
                for qd in r.queue_datas.iter_mut() {
                    qd.write_queue_nums = qd.write_queue_nums.min(DEFAULT_TOPIC_QUEUE_NUMS);
                    qd.read_queue_nums = qd.read_queue_nums.min(DEFAULT_TOPIC_QUEUE_NUMS);
                }
                r
            }
            Err(e) => return Err(e),
        };
        let mut info = PublishInfo::from_route(topic, &route);
        let mut table = self.inner.publish.lock().expect("publish lock is never poisoned");
        if let Some(old) = table.get(topic) {
            info.rotor = old.rotor;
        }
        table.insert(topic.to_string(), info.clone());
        Ok(info)
    }

    async fn publish_info(&self, topic: &str) -> Result<PublishInfo, SendError> {
        let cached = self.inner.publish.lock().expect("publish lock is never poisoned").get(topic).cloned();
        match cached {
            Some(i) if !i.queues.is_empty() => Ok(i),
            _ => {
                self.refresh(topic).await.map_err(|e| SendError::NoRoute { topic: topic.into(), cause: e.to_string() })
            }
        }
    }

    fn select(&self, topic: &str, avoid: Option<&str>) -> Option<(MessageQueue, String)> {
        let mut table = self.inner.publish.lock().expect("publish lock is never poisoned");
        let info = table.get_mut(topic)?;
        let mq = info.select(avoid)?.clone();
        let addr = info.masters.get(&mq.broker_name)?.clone();
        Some((mq, addr))
    }

    /// Sends and waits for the broker's answer, retrying another broker on failure.
    pub async fn send(&self, msg: Message) -> Result<SendResult, SendError> {
        self.send_inner(msg, None).await
    }

    /// Sends without waiting: the returned task resolves to the result.
    pub fn send_async(&self, msg: Message) -> rmq_rt::task::JoinHandle<Result<SendResult, SendError>> {
        let p = self.clone();
        spawn(async move { p.send(msg).await })
    }

    /// Sends and calls `callback` with the result.
    pub fn send_with_callback<F>(&self, msg: Message, callback: F)
    where
        F: FnOnce(Result<SendResult, SendError>) + Send + 'static,
    {
        let p = self.clone();
        spawn(async move { callback(p.send(msg).await) });
    }

    /// Sends one-way: no answer, no retry.
    pub async fn send_oneway(&self, msg: Message) -> Result<(), SendError> {
        validate(&msg)?;
        self.publish_info(&msg.topic).await?;
        let (mq, addr) = self.select(&msg.topic, None).ok_or_else(|| no_queue(&msg.topic))?;
        let req = self.request(&msg, &mq, None);
        self.inner
            .inst
            .rpc
            .invoke_oneway(&addr, req)
            .await
            .map_err(|e| SendError::Exhausted { attempts: 1, last: e.to_string() })
    }

    /// Sends to the queue `hash(key) mod queues`: same key, same queue, in send order. One
    /// attempt, no retry on another queue (that would break the order).
    pub async fn send_orderly(&self, msg: Message, key: &str) -> Result<SendResult, SendError> {
        let info = self.publish_info(&msg.topic).await?;
        let mq = info.select_by_key(key).cloned().ok_or_else(|| no_queue(&msg.topic))?;
        self.send_to(msg, mq).await
    }

    /// Sends to a queue chosen by `selector` from the topic's writable queues. One attempt.
    pub async fn send_with_selector<F>(&self, msg: Message, selector: F) -> Result<SendResult, SendError>
    where
        F: FnOnce(&[MessageQueue], &Message) -> usize,
    {
        let info = self.publish_info(&msg.topic).await?;
        if info.queues.is_empty() {
            return Err(no_queue(&msg.topic));
        }
        let i = selector(&info.queues, &msg) % info.queues.len();
        self.send_to(msg, info.queues[i].clone()).await
    }

    /// Sends to one given queue, once.
    pub async fn send_to(&self, msg: Message, mq: MessageQueue) -> Result<SendResult, SendError> {
        validate(&msg)?;
        let addr = self
            .inner
            .inst
            .resolve(&mq, true)
            .await
            .map_err(|e| SendError::NoRoute { topic: msg.topic.clone(), cause: e.to_string() })?;
        let req = self.request(&msg, &mq, None);
        self.attempt(&addr, &mq, req, self.inner.inst.config.send_timeout_ms).await.map_err(|(e, _)| e)
    }

    /// Sends several messages of one topic as one SEND_BATCH_MESSAGE.
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Result<SendResult, SendError> {
        let Some(first) = msgs.first().cloned() else { return Err(SendError::InvalidMessage("empty batch".into())) };
        if msgs.iter().any(|m| m.topic != first.topic) {
            return Err(SendError::InvalidMessage("a batch holds one topic".into()));
        }
        for m in &msgs {
            validate(m)?;
        }
        let items: Vec<BatchItem> = msgs
            .iter()
            .map(|m| {
                let mut properties = m.properties.clone();
                properties.insert(prop::UNIQ_KEY.into(), self.next_uniq_id());
                BatchItem { flag: m.flag, body: m.body.clone(), properties }
            })
            .collect();
        let batch =
            Message { topic: first.topic.clone(), body: Bytes::from(encode_batch(&items)), ..Default::default() };
        self.send_inner(batch, Some(())).await
    }

    async fn send_inner(&self, mut msg: Message, batch: Option<()>) -> Result<SendResult, SendError> {
        validate(&msg)?;
        if batch.is_none() {
            // One UNIQ_KEY for every attempt, so a retried duplicate is recognisable.
            msg.properties.entry(prop::UNIQ_KEY.into()).or_insert_with(|| self.next_uniq_id());
        }
        self.publish_info(&msg.topic).await?;
        let cfg = &self.inner.inst.config;
        let env = self.inner.inst.env().clone();
        let deadline = env.now_ms() + cfg.send_timeout_ms;
        let attempts = 1 + cfg.retry_times_when_send_failed;
        let mut avoid: Option<String> = None;
        let mut last = String::new();
        for n in 1..=attempts {
            let now = env.now_ms();
            if now >= deadline {
                return Err(SendError::Exhausted {
                    attempts: n - 1,
                    last: format!("send timeout of {} ms spent; {last}", cfg.send_timeout_ms),
                });
            }
            let (mq, addr) = self.select(&msg.topic, avoid.as_deref()).ok_or_else(|| no_queue(&msg.topic))?;
            let req = self.request(&msg, &mq, batch);
            match self.attempt(&addr, &mq, req, deadline - now).await {
                Ok(r) => return Ok(r),
                Err((e, retry)) => {
                    if !retry {
                        return Err(e);
                    }
                    last = e.to_string();
                    avoid = Some(mq.broker_name.clone());
                    let _ = self.refresh(&msg.topic).await;
                }
            }
        }
        Err(SendError::Exhausted { attempts, last })
    }

    /// One attempt; the bool says whether the failure is worth retrying elsewhere.
    async fn attempt(
        &self,
        addr: &str,
        mq: &MessageQueue,
        req: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<SendResult, (SendError, bool)> {
        let uniq = req.ext("i").map(rmq_proto::message::decode_properties).and_then(|p| p.get(prop::UNIQ_KEY).cloned());
        let resp = match self.inner.inst.rpc.invoke(addr, req, timeout_ms).await {
            Ok(r) => r,
            Err(e) => return Err((SendError::Exhausted { attempts: 1, last: e.to_string() }, true)),
        };
        let code = ResponseCode::from_code(resp.code);
        if let Some(status) = stored_status(code) {
            let offset_msg_id = resp.ext("msgId").unwrap_or_default().to_string();
            return Ok(SendResult {
                status,
                msg_id: uniq.unwrap_or_else(|| offset_msg_id.clone()),
                offset_msg_id,
                queue: MessageQueue {
                    queue_id: resp.ext("queueId").and_then(|q| q.parse().ok()).unwrap_or(mq.queue_id),
                    ..mq.clone()
                },
                queue_offset: resp.ext("queueOffset").and_then(|q| q.parse().ok()).unwrap_or(-1),
            });
        }
        let err = SendError::Broker {
            broker: mq.broker_name.clone(),
            code: resp.code,
            remark: resp.remark.unwrap_or_default(),
        };
        Err((err, is_retryable(code)))
    }

    fn next_uniq_id(&self) -> String {
        let env = self.inner.inst.env();
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let ip = self.inner.inst.config.client_ip.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        uniq_msg_id(ip, env.process_id() as u16, env.seed() as i32, env.now_ms() as i64, n)
    }

    fn request(&self, msg: &Message, mq: &MessageQueue, batch: Option<()>) -> RemotingCommand {
        let mut props = msg.properties.clone();
        if batch.is_none() {
            props.entry(prop::UNIQ_KEY.into()).or_insert_with(|| self.next_uniq_id());
            props.entry(prop::WAIT.into()).or_insert_with(|| "true".into());
        }
        let h = SendMessageRequestHeader {
            producer_group: self.inner.inst.config.group.clone(),
            topic: msg.topic.clone(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
            queue_id: mq.queue_id,
            sys_flag: 0,
            born_timestamp: self.inner.inst.env().now_ms() as i64,
            flag: msg.flag,
            properties: Some(encode_properties(&props)),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: Some(batch.is_some()),
            max_reconsume_times: None,
            broker_name: Some(mq.broker_name.clone()),
        };
        let code = if batch.is_some() { RequestCode::SendBatchMessage } else { RequestCode::SendMessageV2 };
        let mut cmd = RemotingCommand::request(code, 0).with_body(msg.body.clone());
        cmd.ext_fields = h.to_ext_v2();
        // The compact ROCKETMQ header costs both sides less than JSON; the broker answers in kind.
        cmd.serialize_type = rmq_proto::SerializeType::RocketMq;
        cmd
    }
}

fn validate(msg: &Message) -> Result<(), SendError> {
    if msg.topic.is_empty() {
        return Err(SendError::InvalidMessage("topic is empty".into()));
    }
    if msg.body.len() > rmq_proto::message::BODY_MAX_BYTES {
        return Err(SendError::InvalidMessage(format!("body of {} bytes exceeds 4 MiB", msg.body.len())));
    }
    Ok(())
}

fn no_queue(topic: &str) -> SendError {
    SendError::NoRoute { topic: topic.into(), cause: "no writable queue on a broker with a live master".into() }
}
