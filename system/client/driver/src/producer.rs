//! The producer: synchronous, asynchronous (future or callback), one-way, key-ordered and batch
//! sends. Every decision (route requests and refreshes, queue selection, attempt deadlines, retry
//! on another broker, heartbeats) is the client core's [`ProducerCore`]; this driver carries
//! its outputs out over the network and hands each send's outcome to its caller.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rmq_client_core::producer::{
    ProducerCore, ProducerOutput, ProducerSettings, RouteAnswer, Selection, SendFailure, SendId, SendRequest,
};
use rmq_client_core::retry::SendStatus;
use rmq_proto::body::{HeartbeatData, MessageQueue, ProducerData};
use rmq_proto::codes::RequestCode;
use rmq_proto::message::{encode_batch, prop, uniq_msg_id, BatchItem};
use rmq_proto::RemotingCommand;
use rmq_rt::{spawn, Env};
use tokio::sync::{oneshot, watch, Notify};

use crate::instance::ClientInstance;
use crate::{ClientConfig, ClientError, SendError};

pub use rmq_client_core::producer::DEFAULT_TOPIC_QUEUE_NUMS;

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

/// A send the core holds: what to put on the wire for each attempt, and who waits.
struct Waiter {
    msg: Message,
    batch: bool,
    reply: oneshot::Sender<Result<Option<SendResult>, SendError>>,
}

struct Inner<E: Env> {
    inst: ClientInstance<E>,
    core: Mutex<ProducerCore>,
    waiters: Mutex<BTreeMap<SendId, Waiter>>,
    counter: AtomicU16,
    /// The fixed part of every UNIQ_KEY this producer makes (client IP, process id, client
    /// hash), worked out once: RocketMQ's MessageClientIDSetter keeps it per process too.
    uniq_prefix: (std::net::Ipv4Addr, u16, i32),
    /// Rings when the core's next deadline may have moved earlier (a new send).
    wake: Notify,
    /// When the background task next ticks the core; read and written under the core lock.
    sleeping_until: AtomicU64,
    /// Rings when a route answer reached the core.
    routed: Notify,
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
    /// Starts a producer: route refresh, attempt deadlines and broker heartbeats run in the
    /// background.
    pub fn start(env: E, config: ClientConfig) -> Self {
        Self::start_with(env, config, None)
    }

    /// [`Self::start`]; with a checker, CHECK_TRANSACTION_STATE requests from brokers are
    /// answered with its verdict (see [`crate::transaction`]).
    pub(crate) fn start_with(env: E, config: ClientConfig, checker: Option<crate::transaction::Checker>) -> Self {
        let settings = ProducerSettings {
            send_timeout_ms: config.send_timeout_ms,
            attempt_timeout_ms: config.send_timeout_ms,
            retry_times: config.retry_times_when_send_failed,
            route_refresh_ms: config.poll_namesrv_interval_ms.max(100),
            heartbeat_interval_ms: config.heartbeat_interval_ms.max(100),
        };
        let core = ProducerCore::new(settings, env.now_ms());
        let ip = config.client_ip.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let uniq_prefix = (ip, env.process_id() as u16, env.seed() as i32);
        let (inst, incoming) = ClientInstance::new(env, config);
        let (stop, _) = watch::channel(false);
        let p = Producer {
            inner: Arc::new(Inner {
                inst,
                core: Mutex::new(core),
                waiters: Mutex::default(),
                counter: AtomicU16::new(0),
                uniq_prefix,
                wake: Notify::new(),
                sleeping_until: AtomicU64::new(0),
                routed: Notify::new(),
                stop,
            }),
        };
        let bg = p.clone();
        spawn(async move { bg.background().await });
        if let Some(checker) = checker {
            let answering = p.clone();
            spawn(async move { crate::transaction::answer_checks(answering, incoming, checker).await });
        }
        p
    }

    pub(crate) fn instance(&self) -> &ClientInstance<E> {
        &self.inner.inst
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

    fn core(&self) -> std::sync::MutexGuard<'_, ProducerCore> {
        self.inner.core.lock().expect("producer core lock is never poisoned")
    }

    fn now(&self) -> u64 {
        self.inner.inst.env().now_ms()
    }

    /// Ticks the core by its own deadlines.
    async fn background(&self) {
        let mut stop = self.inner.stop.subscribe();
        loop {
            let wait = {
                let core = self.core();
                let now = self.now();
                let wait = core.next_wakeup().saturating_sub(now).clamp(1, 60_000);
                self.inner.sleeping_until.store(now + wait, Ordering::Relaxed);
                wait
            };
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                _ = self.inner.wake.notified() => continue,
                _ = rmq_rt::time::sleep(Duration::from_millis(wait)) => {}
            }
            let out = {
                let now = self.now();
                self.core().tick(now)
            };
            self.carry_out(out);
        }
    }

    /// Carries out what the core decided.
    fn carry_out(&self, out: Vec<ProducerOutput>) {
        for o in out {
            match o {
                ProducerOutput::FetchRoute { topic, ask } => {
                    let this = self.clone();
                    spawn(async move {
                        let answer = match this.inner.inst.fetch_route(&ask).await {
                            Ok(route) => RouteAnswer::Found(route),
                            Err(ClientError::NoRoute { .. }) => RouteAnswer::NotExist,
                            Err(e) => RouteAnswer::Unreachable(e.to_string()),
                        };
                        let out = {
                            let now = this.now();
                            this.core().on_route(&topic, &ask, answer, now)
                        };
                        this.inner.routed.notify_waiters();
                        this.carry_out(out);
                    });
                }
                ProducerOutput::Attempt { send, attempt, mq, addr, timeout_ms, oneway } => {
                    let Some(req) = self.request(send, &mq) else { continue };
                    let this = self.clone();
                    spawn(async move {
                        if oneway {
                            let r = this.inner.inst.rpc.invoke_oneway(&addr, req).await;
                            let r =
                                r.map(|()| None).map_err(|e| SendError::Exhausted { attempts: 1, last: e.to_string() });
                            this.finish(send, r);
                            return;
                        }
                        let answer = this.inner.inst.rpc.invoke(&addr, req, timeout_ms).await;
                        let out = {
                            let now = this.now();
                            let mut core = this.core();
                            match answer {
                                Ok(resp) => core.on_response(send, attempt, &resp, now),
                                Err(e) => core.on_error(send, attempt, &e.to_string(), now),
                            }
                        };
                        this.carry_out(out);
                    });
                }
                ProducerOutput::TimedOut { send, attempt } => tracing::debug!(send, attempt, "send attempt timed out"),
                ProducerOutput::Done { send, outcome } => {
                    // One trip to the waiter map: take the waiter, then answer it.
                    let Some(mut w) = self.waiters().remove(&send) else { continue };
                    let r = match outcome {
                        Ok(stored) => {
                            let uniq = w.msg.properties.remove(prop::UNIQ_KEY);
                            Ok(Some(SendResult {
                                status: stored.status,
                                msg_id: uniq.unwrap_or_else(|| stored.offset_msg_id.clone()),
                                offset_msg_id: stored.offset_msg_id,
                                queue: stored.queue,
                                queue_offset: stored.queue_offset,
                            }))
                        }
                        Err(SendFailure::NoRoute { topic, cause }) => Err(SendError::NoRoute { topic, cause }),
                        Err(SendFailure::Rejected { broker, code, remark }) => {
                            Err(SendError::Broker { broker, code, remark })
                        }
                        Err(SendFailure::Exhausted { attempts, last }) => Err(SendError::Exhausted { attempts, last }),
                    };
                    let _ = w.reply.send(r);
                }
                ProducerOutput::Heartbeat { .. } => {
                    let this = self.clone();
                    spawn(async move { this.inner.inst.heartbeat_all(&this.heartbeat_data()).await });
                }
            }
        }
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, BTreeMap<SendId, Waiter>> {
        self.inner.waiters.lock().expect("waiter lock is never poisoned")
    }

    fn finish(&self, send: SendId, r: Result<Option<SendResult>, SendError>) {
        if let Some(w) = self.waiters().remove(&send) {
            let _ = w.reply.send(r);
        }
    }

    /// The wire request for an attempt of `send` to `mq`.
    fn request(&self, send: SendId, mq: &MessageQueue) -> Option<RemotingCommand> {
        // Every send's tasks take this lock: hold it for the copies only, not for the encoding.
        let (props, body, flag, batch) = {
            let waiters = self.waiters();
            let w = waiters.get(&send)?;
            (w.msg.properties.clone(), w.msg.body.clone(), w.msg.flag, w.batch)
        };
        let req = SendRequest {
            group: &self.inner.inst.config.group,
            mq,
            born_ms: self.now() as i64,
            flag,
            properties: &props,
            body,
            batch,
        };
        Some(req.command())
    }

    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.inner.inst.client_id.clone(),
            producer_data_set: vec![ProducerData { group_name: self.inner.inst.config.group.clone() }],
            ..Default::default()
        }
    }

    /// Hands a send to the core and waits for its outcome.
    async fn submit(
        &self,
        msg: Message,
        batch: bool,
        selection: Selection,
        attempts: Option<u32>,
        oneway: bool,
    ) -> Result<Option<SendResult>, SendError> {
        let (reply, outcome) = oneshot::channel();
        let topic = msg.topic.clone();
        let out = {
            // Both locks, core first (as everywhere): the waiter is in place before any
            // output of this send can be carried out.
            let mut core = self.core();
            let now = self.now();
            let (send, out) = core.submit(&topic, selection, attempts, oneway, now);
            self.waiters().insert(send, Waiter { msg, batch, reply });
            // Wake the background task only if it sleeps past this send's first deadline
            // (recomputing its wakeup visits every topic: per send, that was most of the CPU
            // of a producer with 10,000 topics). Notify keeps a permit if it is not waiting.
            if core.earliest_deadline_of_a_send(now) < self.inner.sleeping_until.load(Ordering::Relaxed) {
                self.inner.wake.notify_one();
            }
            out
        };
        self.carry_out(out);
        outcome.await.unwrap_or_else(|_| Err(SendError::Exhausted { attempts: 0, last: "producer stopped".into() }))
    }

    /// Sends and waits for the broker's answer, retrying another broker on failure.
    pub async fn send(&self, msg: Message) -> Result<SendResult, SendError> {
        self.send_inner(msg, false, Selection::RoundRobin, None).await
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
    pub async fn send_oneway(&self, mut msg: Message) -> Result<(), SendError> {
        validate(&msg)?;
        msg.properties.entry(prop::UNIQ_KEY.into()).or_insert_with(|| self.next_uniq_id());
        self.submit(msg, false, Selection::RoundRobin, Some(1), true).await.map(|_| ())
    }

    /// Sends to the queue `hash(key) mod queues`: same key, same queue, in send order. One
    /// attempt, no retry on another queue (that would break the order).
    pub async fn send_orderly(&self, msg: Message, key: &str) -> Result<SendResult, SendError> {
        self.send_inner(msg, false, Selection::ByKey(key.to_string()), Some(1)).await
    }

    /// Sends to a queue chosen by `selector` from the topic's writable queues. One attempt.
    pub async fn send_with_selector<F>(&self, msg: Message, selector: F) -> Result<SendResult, SendError>
    where
        F: FnOnce(&[MessageQueue], &Message) -> usize,
    {
        validate(&msg)?;
        let queues = self.writable_queues(&msg.topic).await?;
        let i = selector(&queues, &msg) % queues.len();
        self.send_to(msg, queues[i].clone()).await
    }

    /// The topic's writable queues, asking the core to learn the route when it has none.
    async fn writable_queues(&self, topic: &str) -> Result<Vec<MessageQueue>, SendError> {
        let deadline = self.now() + self.inner.inst.config.send_timeout_ms;
        loop {
            let routed = self.inner.routed.notified();
            let out = {
                let now = self.now();
                let mut core = self.core();
                if let Some(info) = core.publish_info(topic) {
                    return Ok(info.queues.clone());
                }
                core.want_route(topic, now)
            };
            self.carry_out(out);
            let left = deadline.saturating_sub(self.now());
            if left == 0 {
                return Err(no_queue(topic));
            }
            tokio::select! {
                _ = routed => {}
                _ = rmq_rt::time::sleep(Duration::from_millis(left)) => {}
            }
        }
    }

    /// Sends to one given queue, once.
    pub async fn send_to(&self, msg: Message, mq: MessageQueue) -> Result<SendResult, SendError> {
        if mq.topic != msg.topic {
            return Err(SendError::InvalidMessage(format!(
                "queue of topic {} for a message of {}",
                mq.topic, msg.topic
            )));
        }
        self.send_inner(msg, false, Selection::Queue(mq), Some(1)).await
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
        self.send_inner(batch, true, Selection::RoundRobin, None).await
    }

    async fn send_inner(
        &self,
        mut msg: Message,
        batch: bool,
        selection: Selection,
        attempts: Option<u32>,
    ) -> Result<SendResult, SendError> {
        validate(&msg)?;
        if !batch {
            // One UNIQ_KEY for every attempt, so a retried duplicate is recognisable.
            msg.properties.entry(prop::UNIQ_KEY.into()).or_insert_with(|| self.next_uniq_id());
        }
        let r = self.submit(msg, batch, selection, attempts, false).await?;
        r.ok_or_else(|| SendError::Exhausted {
            attempts: 1,
            last: "the core ended a two-way send without an answer".into(),
        })
    }

    fn next_uniq_id(&self) -> String {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let (ip, pid, hash) = self.inner.uniq_prefix;
        uniq_msg_id(ip, pid, hash, self.inner.inst.env().now_ms() as i64, n)
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
