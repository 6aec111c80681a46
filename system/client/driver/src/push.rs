//! The push consumer: owns queues through rebalance (CLUSTERING) or takes all of them
//! (BROADCASTING), long-polls each owned queue, hands messages to the listener in queue order,
//! sends failures back for a delayed retry, and commits the lowest unfinished offset.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmq_client_core::rebalance::allocate_averagely;
use rmq_client_core::{ProcessQueue, PublishInfo};
use rmq_proto::body::{from_json, ConsumerData, ConsumerIdList, HeartbeatData, MessageQueue, SubscriptionData};
use rmq_proto::codes::RequestCode;
use rmq_proto::header::{ConsumerGroupRequestHeader, ConsumerSendMsgBackRequestHeader};
use rmq_proto::message::{prop, MessageExt};
use rmq_proto::RemotingCommand;
use rmq_rt::{spawn, Env};
use tokio::sync::{watch, Notify};

use crate::instance::ClientInstance;
use crate::pull::{commit_offset, committed_offset, pull_once, queue_offset};
use crate::{ClientConfig, ClientError, ConsumeFromWhere, MessageModel, PullStatus};

/// What the listener says about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumeResult {
    /// Done.
    Success,
    /// Failed: deliver again later, with a growing delay.
    ReconsumeLater,
}

/// The user's message handler.
pub type Listener = Arc<dyn Fn(&[MessageExt]) -> ConsumeResult + Send + Sync>;

/// Wait after a failed pull (pullTimeDelayMillsWhenException).
pub const PULL_RETRY_DELAY_MS: u64 = 3_000;
/// Wait before consuming again locally when a send-back failed.
pub const LOCAL_RETRY_DELAY_MS: u64 = 5_000;

#[derive(Debug, Default)]
struct Progress {
    next_offset: u64,
    in_flight: ProcessQueue,
    last_committed: Option<u64>,
    /// A pull failed on the broker's connection: the broker may have restarted and recovered
    /// the queue shorter, so this position may point past messages stored since at the
    /// recovered offsets. Until it is re-seated from the group's committed offset it is
    /// neither committed (that would skip them) nor pulled from.
    stale: bool,
}

impl Progress {
    /// The offset to commit, if the position can be trusted.
    fn committable(&self) -> Option<u64> {
        (!self.stale).then(|| self.in_flight.committable(self.next_offset))
    }
}

struct Owned {
    progress: Arc<Mutex<Progress>>,
    stop: watch::Sender<bool>,
}

struct Inner<E: Env> {
    inst: ClientInstance<E>,
    subs: BTreeMap<String, String>,
    listener: Listener,
    owned: tokio::sync::Mutex<BTreeMap<MessageQueue, Owned>>,
    /// Broadcasting offsets live in the client.
    local_offsets: Mutex<BTreeMap<MessageQueue, u64>>,
    rebalance_now: Notify,
    stop: watch::Sender<bool>,
}

/// A push consumer. Cheap to clone.
#[derive(Clone)]
pub struct PushConsumer<E: Env> {
    inner: Arc<Inner<E>>,
}

impl<E: Env> std::fmt::Debug for PushConsumer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConsumer").field("group", &self.inner.inst.config.group).finish()
    }
}

impl<E: Env> PushConsumer<E> {
    /// Subscribes to `(topic, tag expression)` pairs and starts consuming with `listener`.
    pub async fn start<F>(
        env: E,
        config: ClientConfig,
        subscriptions: &[(&str, &str)],
        listener: F,
    ) -> Result<Self, ClientError>
    where
        F: Fn(&[MessageExt]) -> ConsumeResult + Send + Sync + 'static,
    {
        let (inst, mut incoming) = ClientInstance::new(env, config);
        let mut subs: BTreeMap<String, String> =
            subscriptions.iter().map(|(t, e)| (t.to_string(), e.to_string())).collect();
        if inst.config.message_model == MessageModel::Clustering {
            subs.insert(format!("%RETRY%{}", inst.config.group), "*".into());
        }
        let (stop, _) = watch::channel(false);
        let c = PushConsumer {
            inner: Arc::new(Inner {
                inst,
                subs,
                listener: Arc::new(listener),
                owned: tokio::sync::Mutex::default(),
                local_offsets: Mutex::default(),
                rebalance_now: Notify::new(),
                stop,
            }),
        };
        for topic in c.inner.subs.keys() {
            if let Err(e) = c.inner.inst.fetch_route(topic).await {
                tracing::debug!(%topic, error = %e, "no route yet");
            }
        }
        c.inner.inst.heartbeat_all(&c.heartbeat_data()).await;
        c.rebalance().await;
        let notify = c.clone();
        spawn(async move {
            while let Some(inc) = incoming.recv().await {
                if inc.cmd.request_code() == RequestCode::NotifyConsumerIdsChanged {
                    notify.inner.rebalance_now.notify_one();
                }
            }
        });
        let bg = c.clone();
        spawn(async move { bg.background().await });
        Ok(c)
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.inner.inst.client_id
    }

    /// Queues this member owns now.
    pub async fn owned_queues(&self) -> Vec<MessageQueue> {
        self.inner.owned.lock().await.keys().cloned().collect()
    }

    /// Stops pulling, commits offsets and leaves the group.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let owned = std::mem::take(&mut *self.inner.owned.lock().await);
        for (mq, o) in owned {
            let _ = o.stop.send(true);
            let off = o.progress.lock().expect("progress lock is never poisoned").committable();
            if let Some(off) = off {
                self.persist_one(&mq, off, false).await;
            }
        }
        let inst = &self.inner.inst;
        for addr in inst.all_broker_addrs() {
            let req = RemotingCommand::request(RequestCode::UnregisterClient, 0)
                .with_ext("clientID", &inst.client_id)
                .with_ext("consumerGroup", &inst.config.group);
            let _ = inst.rpc.invoke(&addr, req, 1_000).await;
        }
        inst.rpc.close_all().await;
    }

    fn heartbeat_data(&self) -> HeartbeatData {
        let cfg = &self.inner.inst.config;
        let subs = self.inner.subs.iter().map(|(t, e)| SubscriptionData::tag(t, e)).collect();
        HeartbeatData {
            client_id: self.inner.inst.client_id.clone(),
            consumer_data_set: vec![ConsumerData {
                group_name: cfg.group.clone(),
                consume_type: "CONSUME_PASSIVELY".into(),
                message_model: cfg.message_model.name().into(),
                consume_from_where: match cfg.consume_from_where {
                    ConsumeFromWhere::LastOffset => "CONSUME_FROM_LAST_OFFSET".into(),
                    ConsumeFromWhere::FirstOffset => "CONSUME_FROM_FIRST_OFFSET".into(),
                },
                subscription_data_set: subs,
                unit_mode: false,
            }],
            ..Default::default()
        }
    }

    async fn background(&self) {
        let mut stop = self.inner.stop.subscribe();
        let cfg = self.inner.inst.config.clone();
        let mut persist = rmq_rt::time::interval(Duration::from_millis(cfg.persist_offset_interval_ms.max(10)));
        let mut heartbeat = rmq_rt::time::interval(Duration::from_millis(cfg.heartbeat_interval_ms.max(10)));
        let mut rebalance = rmq_rt::time::interval(Duration::from_millis(cfg.rebalance_interval_ms.max(10)));
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                _ = persist.tick() => self.persist_all().await,
                _ = heartbeat.tick() => {
                    for topic in self.inner.subs.keys() {
                        let _ = self.inner.inst.fetch_route(topic).await;
                    }
                    self.inner.inst.heartbeat_all(&self.heartbeat_data()).await;
                }
                _ = rebalance.tick() => self.rebalance().await,
                _ = self.inner.rebalance_now.notified() => self.rebalance().await,
            }
        }
    }

    async fn members(&self, route: &rmq_proto::body::TopicRouteData) -> Option<Vec<String>> {
        let inst = &self.inner.inst;
        for b in &route.broker_datas {
            let Some(addr) = b.broker_addrs.values().next() else { continue };
            let h = ConsumerGroupRequestHeader { consumer_group: inst.config.group.clone() };
            let req = RemotingCommand::request_with(RequestCode::GetConsumerListByGroup, 0, &h);
            if let Ok(resp) = inst.call(addr, req).await {
                if let Ok(list) = from_json::<ConsumerIdList>(&resp.body) {
                    return Some(list.consumer_id_list);
                }
            }
        }
        None
    }

    /// Recomputes owned queues; starts and stops queue tasks.
    async fn rebalance(&self) {
        let inst = &self.inner.inst;
        let mut wanted = Vec::new();
        for topic in self.inner.subs.keys() {
            let route = match inst.fetch_route(topic).await {
                Ok(r) => r,
                Err(_) => match inst.cached_route(topic) {
                    Some(r) => r,
                    None => continue,
                },
            };
            let queues = PublishInfo::readable_queues(topic, &route);
            match inst.config.message_model {
                MessageModel::Broadcasting => wanted.extend(queues),
                MessageModel::Clustering => {
                    let Some(members) = self.members(&route).await else { continue };
                    wanted.extend(allocate_averagely(&queues, &members, &inst.client_id));
                }
            }
        }
        let mut owned = self.inner.owned.lock().await;
        let gone: Vec<MessageQueue> = owned.keys().filter(|q| !wanted.contains(q)).cloned().collect();
        for mq in gone {
            if let Some(o) = owned.remove(&mq) {
                let _ = o.stop.send(true);
                let off = o.progress.lock().expect("progress lock is never poisoned").committable();
                if let Some(off) = off {
                    self.persist_one(&mq, off, false).await;
                }
                tracing::debug!(queue = ?mq, "queue released");
            }
        }
        for mq in wanted {
            if owned.contains_key(&mq) {
                continue;
            }
            let Ok(start) = self.start_offset(&mq).await else { continue };
            let progress = Arc::new(Mutex::new(Progress { next_offset: start, ..Default::default() }));
            let (stop, stopped) = watch::channel(false);
            let this = self.clone();
            let (mq2, p2) = (mq.clone(), progress.clone());
            spawn(async move { this.consume_queue(mq2, p2, stopped).await });
            tracing::debug!(queue = ?mq, start, "queue taken");
            owned.insert(mq, Owned { progress, stop });
        }
    }

    async fn start_offset(&self, mq: &MessageQueue) -> Result<u64, ClientError> {
        let inst = &self.inner.inst;
        if inst.config.message_model == MessageModel::Broadcasting {
            if let Some(o) = self.inner.local_offsets.lock().expect("offset lock is never poisoned").get(mq) {
                return Ok(*o);
            }
        } else if let Some(o) = committed_offset(inst, mq).await? {
            return Ok(o);
        }
        match inst.config.consume_from_where {
            ConsumeFromWhere::FirstOffset => queue_offset(inst, mq, RequestCode::GetMinOffset).await,
            ConsumeFromWhere::LastOffset => queue_offset(inst, mq, RequestCode::GetMaxOffset).await,
        }
    }

    async fn consume_queue(
        &self,
        mq: MessageQueue,
        progress: Arc<Mutex<Progress>>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let inst = &self.inner.inst;
        let cfg = &inst.config;
        let expr = self.inner.subs.get(&mq.topic).cloned().unwrap_or_else(|| "*".into());
        let clustering = cfg.message_model == MessageModel::Clustering;
        loop {
            if *stopped.borrow() {
                return;
            }
            let stale = progress.lock().expect("progress lock is never poisoned").stale;
            if stale {
                // Re-seat from the group's committed offset (redelivery, never a skip); the
                // messages still in flight will be delivered again from there.
                match committed_offset(inst, &mq).await {
                    Ok(Some(o)) => {
                        let mut p = progress.lock().expect("progress lock is never poisoned");
                        p.next_offset = o;
                        p.in_flight = ProcessQueue::default();
                        p.last_committed = Some(o);
                        p.stale = false;
                    }
                    _ => {
                        rmq_rt::time::sleep(Duration::from_millis(PULL_RETRY_DELAY_MS)).await;
                        continue;
                    }
                }
            }
            let (next, commit) = {
                let p = progress.lock().expect("progress lock is never poisoned");
                (p.next_offset, if clustering { p.committable() } else { None })
            };
            let pulled = tokio::select! {
                biased;
                _ = stopped.changed() => return,
                r = pull_once(inst, &mq, next, cfg.pull_batch_size, &expr, commit, cfg.pull_suspend_ms) => r,
            };
            let r = match pulled {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(queue = ?mq, error = %e, "pull failed");
                    if matches!(e, ClientError::Rpc(_)) && clustering {
                        progress.lock().expect("progress lock is never poisoned").stale = true;
                    }
                    rmq_rt::time::sleep(Duration::from_millis(PULL_RETRY_DELAY_MS)).await;
                    continue;
                }
            };
            {
                let mut p = progress.lock().expect("progress lock is never poisoned");
                p.next_offset = r.next_begin_offset;
                let offsets: Vec<u64> = r.messages.iter().map(|m| m.queue_offset as u64).collect();
                p.in_flight.add(&offsets);
            }
            if r.status == PullStatus::Found {
                self.consume(&mq, r.messages, &progress, &stopped).await;
            }
        }
    }

    /// Hands messages to the listener batch by batch; failures go back to the broker.
    async fn consume(
        &self,
        mq: &MessageQueue,
        mut msgs: Vec<MessageExt>,
        progress: &Arc<Mutex<Progress>>,
        stopped: &watch::Receiver<bool>,
    ) {
        for m in msgs.iter_mut() {
            if let Some(t) = m.properties.get(prop::RETRY_TOPIC).filter(|_| m.topic.starts_with("%RETRY%")) {
                m.topic = t.clone();
            }
        }
        let batch_max = self.inner.inst.config.consume_batch_max.max(1);
        for chunk in msgs.chunks(batch_max) {
            loop {
                let result = (self.inner.listener)(chunk);
                if result == ConsumeResult::Success || self.send_back_all(mq, chunk).await {
                    break;
                }
                // The broker did not take the retry: consume again here after a pause.
                rmq_rt::time::sleep(Duration::from_millis(LOCAL_RETRY_DELAY_MS)).await;
                if *stopped.borrow() {
                    return;
                }
            }
            let offsets: Vec<u64> = chunk.iter().map(|m| m.queue_offset as u64).collect();
            progress.lock().expect("progress lock is never poisoned").in_flight.remove(&offsets);
        }
    }

    /// Sends each failed message back for a delayed retry; true when all were accepted.
    async fn send_back_all(&self, mq: &MessageQueue, msgs: &[MessageExt]) -> bool {
        let inst = &self.inner.inst;
        if inst.config.message_model == MessageModel::Broadcasting {
            tracing::warn!("broadcasting consumption failed; the message is dropped (no retry in broadcasting)");
            return true;
        }
        let Some(addr) = inst.master_addr(&mq.broker_name) else { return false };
        for m in msgs {
            let h = ConsumerSendMsgBackRequestHeader {
                offset: m.commit_log_offset,
                group: inst.config.group.clone(),
                delay_level: 0,
                origin_msg_id: Some(m.msg_id()),
                origin_topic: Some(m.topic.clone()),
                max_reconsume_times: Some(inst.config.max_reconsume_times),
            };
            let req = RemotingCommand::request_with(RequestCode::ConsumerSendMsgBack, 0, &h);
            if inst.call(&addr, req).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn persist_all(&self) {
        let snapshot: Vec<(MessageQueue, u64, Option<u64>)> = {
            let owned = self.inner.owned.lock().await;
            owned
                .iter()
                .filter_map(|(mq, o)| {
                    let p = o.progress.lock().expect("progress lock is never poisoned");
                    p.committable().map(|off| (mq.clone(), off, p.last_committed))
                })
                .collect()
        };
        for (mq, off, last) in snapshot {
            if last != Some(off) {
                self.persist_one(&mq, off, true).await;
                if let Some(o) = self.inner.owned.lock().await.get(&mq) {
                    o.progress.lock().expect("progress lock is never poisoned").last_committed = Some(off);
                }
            }
        }
    }

    async fn persist_one(&self, mq: &MessageQueue, offset: u64, oneway: bool) {
        let inst = &self.inner.inst;
        match inst.config.message_model {
            MessageModel::Broadcasting => {
                self.inner.local_offsets.lock().expect("offset lock is never poisoned").insert(mq.clone(), offset);
            }
            MessageModel::Clustering => {
                if let Err(e) = commit_offset(inst, mq, offset, oneway).await {
                    tracing::debug!(queue = ?mq, error = %e, "offset commit failed");
                }
            }
        }
    }
}
