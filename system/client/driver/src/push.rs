//! The push consumer: owns queues through rebalance (CLUSTERING) or takes all of them
//! (BROADCASTING), long-polls each owned queue, hands messages to the listener in queue order,
//! sends failures back for a delayed retry, and commits the lowest unfinished offset.
//!
//! Every decision is the client core's [`ConsumerCore`] (the one the fast simulation lane
//! drives too); this driver carries its requests out over the network, holds the pulled
//! messages until the core lets them go, and runs the listener.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmq_client_core::consumer::{ConsumerCore, ConsumerOutput, ConsumerSettings, Model, PullAnswer, StartFrom};
use rmq_proto::body::{
    from_json, to_json, ConsumerData, ConsumerIdList, HeartbeatData, LockBatchBody, LockBatchResult, MessageQueue,
    ResetOffsetBody, SubscriptionData,
};
use rmq_proto::codes::RequestCode;
use rmq_proto::header::{ConsumerGroupRequestHeader, ConsumerSendMsgBackRequestHeader, ResetOffsetRequestHeader};
use rmq_proto::message::{prop, MessageExt};
use rmq_proto::RemotingCommand;
use rmq_rt::{spawn, Env};
use tokio::sync::{watch, Notify};

use crate::instance::{ClientInstance, RPC_TIMEOUT_MS};
use crate::offset_store::LocalOffsetStore;
use crate::pull::{commit_offset_at, committed_offset_at, pull_at, queue_offset_at, PullAsk};
use crate::{ClientConfig, ClientError, ConsumeFromWhere, MessageModel, PullStatus};

/// What the listener says about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumeResult {
    /// Done.
    Success,
    /// Failed: deliver again later, with a growing delay. A listener that panics says this.
    ReconsumeLater,
}

/// The user's message handler.
pub type Listener = Arc<dyn Fn(&[MessageExt]) -> ConsumeResult + Send + Sync>;

/// Wait after a failed pull (pullTimeDelayMillsWhenException).
pub const PULL_RETRY_DELAY_MS: u64 = 3_000;
/// Wait before consuming again locally when a send-back failed.
pub const LOCAL_RETRY_DELAY_MS: u64 = 5_000;

type Held = BTreeMap<MessageQueue, BTreeMap<u64, MessageExt>>;

struct Inner<E: Env> {
    inst: ClientInstance<E>,
    subs: BTreeMap<String, String>,
    listener: Listener,
    core: Mutex<ConsumerCore>,
    /// Pulled messages the core still holds (with the listener, being sent back, or waiting
    /// for a local retry), by queue and offset.
    held: Mutex<Held>,
    /// Rings when the core's next deadline may have moved earlier.
    wake: Notify,
    /// Turns true once the first rebalance has had its answer (or the route was missing).
    settled: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    /// BROADCASTING: this member's offsets on the local disk.
    offsets: Option<LocalOffsetStore>,
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
    /// Returns once the first rebalance has been answered (or a few seconds have passed
    /// without one: the consumer keeps trying in the background).
    pub async fn start<F>(
        env: E,
        config: ClientConfig,
        subscriptions: &[(&str, &str)],
        listener: F,
    ) -> Result<Self, ClientError>
    where
        F: Fn(&[MessageExt]) -> ConsumeResult + Send + Sync + 'static,
    {
        Self::start_with(env, config, subscriptions, false, Arc::new(listener)).await
    }

    /// [`Self::start`] with an orderly listener (RocketMQ's MessageListenerOrderly): each
    /// queue's messages come one at a time, in queue order; a CLUSTERING member consumes a
    /// queue only while it holds the broker's lock on it (taken before the first pull, renewed
    /// every 20 s, released after the last commit when the queue moves to another member); a
    /// failed message is consumed again here after `suspend_current_queue_ms`, with its
    /// reconsume count raised, until `max_reconsume_times` retries are spent, then goes to the
    /// dead-letter queue, and only then does the queue move on.
    pub async fn start_orderly<F>(
        env: E,
        config: ClientConfig,
        subscriptions: &[(&str, &str)],
        listener: F,
    ) -> Result<Self, ClientError>
    where
        F: Fn(&[MessageExt]) -> ConsumeResult + Send + Sync + 'static,
    {
        Self::start_with(env, config, subscriptions, true, Arc::new(listener)).await
    }

    async fn start_with(
        env: E,
        config: ClientConfig,
        subscriptions: &[(&str, &str)],
        orderly: bool,
        listener: Listener,
    ) -> Result<Self, ClientError> {
        let mut config = config;
        if config.message_model == MessageModel::Broadcasting && config.instance_name.is_none() {
            // As RocketMQ: a broadcasting member keeps the instance name DEFAULT (a clustering
            // one takes its process id), so its client id, and with it the directory of its
            // saved offsets, is the same after a restart.
            config.instance_name = Some("DEFAULT".into());
        }
        let (inst, mut incoming) = ClientInstance::new(env, config);
        let mut subs: BTreeMap<String, String> =
            subscriptions.iter().map(|(t, e)| (t.to_string(), e.to_string())).collect();
        if inst.config.message_model == MessageModel::Clustering {
            subs.insert(format!("%RETRY%{}", inst.config.group), "*".into());
        }
        let mut s = settings(&inst, &subs);
        s.orderly = orderly;
        let mut core = ConsumerCore::new(s, inst.env().now_ms());
        let offsets = match inst.config.message_model {
            MessageModel::Clustering if inst.config.local_offset_store_dir.is_some() => {
                return Err(ClientError::Config(
                    "local_offset_store_dir is for BROADCASTING consumers; a CLUSTERING group's offsets live on the broker"
                        .into(),
                ))
            }
            MessageModel::Clustering => None,
            MessageModel::Broadcasting => {
                let dir = inst.config.local_offset_store_dir.as_deref();
                let store = LocalOffsetStore::new(dir, &inst.client_id, &inst.config.group)?;
                core.restore_offsets(store.load()?);
                Some(store)
            }
        };
        let (stop, _) = watch::channel(false);
        let (settled, _) = watch::channel(false);
        let c = PushConsumer {
            inner: Arc::new(Inner {
                inst,
                subs,
                listener,
                core: Mutex::new(core),
                held: Mutex::default(),
                wake: Notify::new(),
                settled,
                stop,
                offsets,
            }),
        };
        let notify = c.clone();
        spawn(async move {
            while let Some(inc) = incoming.recv().await {
                match inc.cmd.request_code() {
                    RequestCode::NotifyConsumerIdsChanged => {
                        let out = notify.apply(|core, now| core.rebalance_now(now));
                        notify.carry_out(out);
                    }
                    RequestCode::ResetConsumerClientOffset => notify.on_reset(&inc.cmd),
                    _ => {}
                }
            }
        });
        let mut settled = c.inner.settled.subscribe();
        let bg = c.clone();
        spawn(async move { bg.background().await });
        tokio::select! {
            _ = settled.wait_for(|s| *s) => {}
            _ = rmq_rt::time::sleep(Duration::from_millis(2 * RPC_TIMEOUT_MS)) => {
                tracing::debug!("no rebalance answer yet; consuming starts when one comes");
            }
        }
        Ok(c)
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.inner.inst.client_id
    }

    /// Queues this member owns now.
    pub async fn owned_queues(&self) -> Vec<MessageQueue> {
        self.core().owned()
    }

    /// Stops pulling, commits offsets and leaves the group.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let out = self.apply(|core, _| core.shutdown());
        let inst = &self.inner.inst;
        for o in out {
            match o {
                ConsumerOutput::Commit { mq, addr, offset } => {
                    if let Err(e) = commit_offset_at(inst, &addr, &mq, offset, false).await {
                        tracing::debug!(queue = ?mq, error = %e, "offset commit at shutdown failed");
                    }
                }
                ConsumerOutput::SaveOffsets { offsets } => self.save_offsets(&offsets),
                ConsumerOutput::Unlock { addr, mqs } => self.unlock(&addr, mqs).await,
                other => tracing::debug!(?other, "not carried out at shutdown"),
            }
        }
        for addr in inst.all_broker_addrs() {
            let req = RemotingCommand::request(RequestCode::UnregisterClient, 0)
                .with_ext("clientID", &inst.client_id)
                .with_ext("consumerGroup", &inst.config.group);
            let _ = inst.rpc.invoke(&addr, req, 1_000).await;
        }
        inst.rpc.close_all().await;
    }

    fn core(&self) -> std::sync::MutexGuard<'_, ConsumerCore> {
        self.inner.core.lock().expect("consumer core lock is never poisoned")
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.inner.held.lock().expect("held-message lock is never poisoned")
    }

    fn stopped(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Feeds the core one input and drops the held messages it let go. Locks: core, then held.
    /// An operator reset this group's offsets (mqadmin resetOffsetByTime): re-seat the queues.
    fn on_reset(&self, cmd: &RemotingCommand) {
        let group_matches =
            cmd.decode_header::<ResetOffsetRequestHeader>().is_ok_and(|h| h.group == self.inner.inst.config.group);
        if !group_matches {
            return;
        }
        match ResetOffsetBody::parse(&cmd.body) {
            Ok(body) => {
                let offsets: BTreeMap<MessageQueue, u64> =
                    body.offset_table.into_iter().map(|(mq, o)| (mq, o.max(0) as u64)).collect();
                tracing::info!(group = %self.inner.inst.config.group, queues = offsets.len(), "offsets reset by an operator");
                let out = self.apply(|core, now| core.reset_offsets(&offsets, now));
                self.carry_out(out);
            }
            Err(e) => tracing::warn!(error = %e, "unreadable RESET_CONSUMER_CLIENT_OFFSET body"),
        }
    }

    fn apply(&self, f: impl FnOnce(&mut ConsumerCore, u64) -> Vec<ConsumerOutput>) -> Vec<ConsumerOutput> {
        self.apply_pulled(None, f)
    }

    /// [`Self::apply`], holding the messages of a pull answer first. They are stored under the
    /// core's lock, in the same step as the core takes them: stored earlier, a concurrent
    /// `apply` would prune them as not (yet) the core's business.
    fn apply_pulled(
        &self,
        pulled: Option<(&MessageQueue, Vec<MessageExt>)>,
        f: impl FnOnce(&mut ConsumerCore, u64) -> Vec<ConsumerOutput>,
    ) -> Vec<ConsumerOutput> {
        let mut core = self.core();
        let out = f(&mut core, self.inner.inst.env().now_ms());
        let mut held = self.held();
        if let Some((mq, msgs)) = pulled {
            let queue = held.entry(mq.clone()).or_default();
            for m in msgs {
                queue.insert(m.queue_offset as u64, m);
            }
        }
        held.retain(|mq, msgs| {
            msgs.retain(|o, _| core.holds(mq, *o));
            !msgs.is_empty()
        });
        out
    }

    /// Ticks the core by its own deadlines.
    async fn background(&self) {
        let mut stop = self.inner.stop.subscribe();
        loop {
            let now = self.inner.inst.env().now_ms();
            let wait = self.core().next_wakeup().saturating_sub(now).clamp(1, 60_000);
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                _ = self.inner.wake.notified() => continue,
                _ = rmq_rt::time::sleep(Duration::from_millis(wait)) => {}
            }
            let out = self.apply(|core, now| core.tick(now));
            self.carry_out(out);
        }
    }

    /// Carries out what the core decided. Heartbeats go first: a member query of the same
    /// batch waits for them, so the broker counts this member before it lists the group.
    fn carry_out(&self, out: Vec<ConsumerOutput>) {
        if self.stopped() || out.is_empty() {
            return;
        }
        self.inner.wake.notify_one();
        let (beats, rest): (Vec<_>, Vec<_>) =
            out.into_iter().partition(|o| matches!(o, ConsumerOutput::Heartbeat { .. }));
        let (members, rest): (Vec<_>, Vec<_>) =
            rest.into_iter().partition(|o| matches!(o, ConsumerOutput::QueryMembers { .. }));
        for o in rest {
            self.carry_out_one(o);
        }
        if beats.is_empty() {
            for o in members {
                self.carry_out_one(o);
            }
            return;
        }
        let this = self.clone();
        spawn(async move {
            let hb = this.heartbeat_data();
            for b in beats {
                if let ConsumerOutput::Heartbeat { addrs } = b {
                    this.inner.inst.heartbeat_to(&addrs, &hb).await;
                }
            }
            for o in members {
                this.carry_out_one(o);
            }
        });
    }

    fn carry_out_one(&self, o: ConsumerOutput) {
        let this = self.clone();
        match o {
            ConsumerOutput::FetchRoute { req, topic } => {
                spawn(async move {
                    let route = match this.inner.inst.fetch_route(&topic).await {
                        Ok(r) => Some(r),
                        Err(e) => {
                            tracing::debug!(%topic, error = %e, "no route");
                            this.settle();
                            None
                        }
                    };
                    let out = this.apply(|core, now| core.on_route(req, route, now));
                    this.carry_out(out);
                });
            }
            ConsumerOutput::Heartbeat { addrs } => {
                spawn(async move { this.inner.inst.heartbeat_to(&addrs, &this.heartbeat_data()).await });
            }
            ConsumerOutput::QueryMembers { req, addr } => {
                spawn(async move {
                    let inst = &this.inner.inst;
                    let h = ConsumerGroupRequestHeader { consumer_group: inst.config.group.clone() };
                    let cmd = RemotingCommand::request_with(RequestCode::GetConsumerListByGroup, 0, &h);
                    let members = match inst.call(&addr, cmd).await {
                        Ok(resp) => from_json::<ConsumerIdList>(&resp.body).ok().map(|l| l.consumer_id_list),
                        Err(e) => {
                            tracing::debug!(%addr, error = %e, "member list failed");
                            None
                        }
                    };
                    let out = this.apply(|core, now| match members {
                        Some(m) => core.on_members(req, m, now),
                        None => core.on_failed(req, now),
                    });
                    this.carry_out(out);
                    this.settle();
                });
            }
            ConsumerOutput::QueryCommitted { req, mq, addr } => {
                spawn(async move {
                    let r = committed_offset_at(&this.inner.inst, &addr, &mq).await;
                    let out = this.apply(|core, now| match r {
                        Ok(o) => core.on_committed(req, o, now),
                        Err(_) => core.on_failed(req, now),
                    });
                    this.carry_out(out);
                });
            }
            ConsumerOutput::QueryQueueOffset { req, mq, addr, max } => {
                spawn(async move {
                    let code = if max { RequestCode::GetMaxOffset } else { RequestCode::GetMinOffset };
                    let r = queue_offset_at(&this.inner.inst, &addr, &mq, code).await;
                    let out = this.apply(|core, now| match r {
                        Ok(o) => core.on_queue_offset(req, o, now),
                        Err(_) => core.on_failed(req, now),
                    });
                    this.carry_out(out);
                });
            }
            order @ ConsumerOutput::Pull { .. } => {
                spawn(async move { this.pull(order).await });
            }
            ConsumerOutput::Consume { mq, offsets } => {
                spawn(async move { this.consume(mq, offsets) });
            }
            ConsumerOutput::SendBack { req, mq, queue_offset, addr, to_dlq } => {
                spawn(async move {
                    let accepted = this.send_back(&mq, queue_offset, &addr, to_dlq).await;
                    let out = this.apply(|core, now| core.on_sent_back(req, accepted, now));
                    this.carry_out(out);
                });
            }
            ConsumerOutput::Commit { mq, addr, offset } => {
                spawn(async move {
                    if let Err(e) = commit_offset_at(&this.inner.inst, &addr, &mq, offset, true).await {
                        tracing::debug!(queue = ?mq, error = %e, "offset commit failed");
                    }
                });
            }
            ConsumerOutput::Rebalanced { queues } => {
                tracing::info!(group = %self.inner.inst.config.group, owned = queues.len(), ?queues, "rebalanced");
                self.settle();
            }
            ConsumerOutput::SaveOffsets { offsets } => self.save_offsets(&offsets),
            ConsumerOutput::Lock { req, addr, mqs } => {
                spawn(async move {
                    let inst = &this.inner.inst;
                    let body = LockBatchBody {
                        consumer_group: inst.config.group.clone(),
                        client_id: inst.client_id.clone(),
                        only_this_broker: false,
                        mq_set: mqs,
                    };
                    let cmd = RemotingCommand::request(RequestCode::LockBatchMq, 0).with_body(to_json(&body));
                    let granted = match inst.call(&addr, cmd).await {
                        Ok(resp) => from_json::<LockBatchResult>(&resp.body).ok().map(|r| r.lock_ok_mq_set),
                        Err(e) => {
                            tracing::debug!(%addr, error = %e, "queue lock failed");
                            None
                        }
                    };
                    let out = this.apply(|core, now| match granted {
                        Some(g) => core.on_locked(req, &g, now),
                        None => core.on_failed(req, now),
                    });
                    this.carry_out(out);
                });
            }
            ConsumerOutput::Unlock { addr, mqs } => {
                spawn(async move { this.unlock(&addr, mqs).await });
            }
        }
    }

    /// UNLOCK_BATCH_MQ. A lost unlock only delays the next owner until the broker lets the
    /// lock expire.
    async fn unlock(&self, addr: &str, mqs: Vec<MessageQueue>) {
        let inst = &self.inner.inst;
        let body = LockBatchBody {
            consumer_group: inst.config.group.clone(),
            client_id: inst.client_id.clone(),
            only_this_broker: false,
            mq_set: mqs,
        };
        let cmd = RemotingCommand::request(RequestCode::UnlockBatchMq, 0).with_body(to_json(&body));
        if let Err(e) = inst.call(addr, cmd).await {
            tracing::debug!(%addr, error = %e, "queue unlock failed; the broker's lock expires instead");
        }
    }

    /// Writes the broadcasting offsets to the local store. A failed write is logged: the
    /// next change writes the whole table again, and until then a restart resumes from the
    /// last table written (redelivery, never a skip).
    fn save_offsets(&self, offsets: &BTreeMap<MessageQueue, u64>) {
        match &self.inner.offsets {
            Some(store) => {
                if let Err(e) = store.save(offsets) {
                    tracing::warn!(path = %store.path().display(), error = %e, "broadcasting offsets not saved");
                }
            }
            None => tracing::error!("the core asked to save broadcasting offsets of a clustering consumer"),
        }
    }

    fn settle(&self) {
        self.inner.settled.send_replace(true);
    }

    /// Carries out a [`ConsumerOutput::Pull`] and answers the core.
    async fn pull(&self, order: ConsumerOutput) {
        let ConsumerOutput::Pull { req, mq, addr, offset, commit, max_nums, hold_ms, timeout_ms } = order else {
            return;
        };
        let subscription = self.inner.subs.get(&mq.topic).map_or("*", String::as_str);
        let ask = PullAsk { offset, max_nums, subscription, commit_offset: commit, suspend_ms: hold_ms, timeout_ms };
        let r = pull_at(&self.inner.inst, &addr, &mq, &ask).await;
        let mut pulled = Vec::new();
        let (answer, suggested) = match r {
            Ok((r, suggested)) => {
                let answer = match r.status {
                    PullStatus::Found => {
                        let offsets: Vec<u64> = r.messages.iter().map(|m| m.queue_offset as u64).collect();
                        for mut m in r.messages {
                            if let Some(t) =
                                m.properties.get(prop::RETRY_TOPIC).filter(|_| m.topic.starts_with("%RETRY%"))
                            {
                                m.topic = t.clone();
                            }
                            pulled.push(m);
                        }
                        PullAnswer::Found { offsets, next_begin: r.next_begin_offset }
                    }
                    _ => PullAnswer::Empty { next_begin: r.next_begin_offset },
                };
                (Some(answer), suggested)
            }
            Err(ClientError::Server { code, remark }) => {
                tracing::debug!(queue = ?mq, code, %remark, "pull refused");
                (Some(PullAnswer::Refused), None)
            }
            Err(e) => {
                tracing::debug!(queue = ?mq, error = %e, "pull failed");
                (None, None)
            }
        };
        let out = self.apply_pulled(Some((&mq, pulled)), |core, now| match answer {
            Some(a) => core.on_pulled(req, a, suggested, now),
            None => core.on_failed(req, now),
        });
        self.carry_out(out);
    }

    /// Hands the held messages at `offsets` of `mq` to the listener, batch by batch.
    fn consume(&self, mq: MessageQueue, offsets: Vec<u64>) {
        let msgs: Vec<MessageExt> = {
            let core = self.core();
            let held = self.held();
            let queue = held.get(&mq);
            let mut msgs: Vec<MessageExt> =
                offsets.iter().filter_map(|o| queue.and_then(|q| q.get(o)).cloned()).collect();
            for m in &mut msgs {
                // Orderly: local retries count as reconsumes, as RocketMQ counts them.
                m.reconsume_times += core.attempts(&mq, m.queue_offset as u64) as i32;
            }
            msgs
        };
        if msgs.len() != offsets.len() {
            // Never expected: the core asked for messages the driver does not hold. They are
            // reported failed (redelivered), never consumed by assumption.
            tracing::error!(queue = ?mq, "{} of {} messages to consume are not held", offsets.len() - msgs.len(), offsets.len());
            let missing: Vec<u64> =
                offsets.iter().copied().filter(|o| !msgs.iter().any(|m| m.queue_offset as u64 == *o)).collect();
            let out = self.apply(|core, now| core.on_consumed(&mq, &missing, false, now));
            self.carry_out(out);
        }
        let batch_max = self.inner.inst.config.consume_batch_max.max(1);
        for chunk in msgs.chunks(batch_max) {
            if self.stopped() {
                return;
            }
            let listener = &self.inner.listener;
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| listener(chunk))).unwrap_or_else(|_| {
                tracing::warn!(queue = ?mq, "the listener panicked; the batch is consumed again later");
                ConsumeResult::ReconsumeLater
            });
            let done: Vec<u64> = chunk.iter().map(|m| m.queue_offset as u64).collect();
            let out = self.apply(|core, now| core.on_consumed(&mq, &done, result == ConsumeResult::Success, now));
            self.carry_out(out);
        }
    }

    /// CONSUMER_SEND_MSG_BACK of a held message; true when the broker took it.
    async fn send_back(&self, mq: &MessageQueue, queue_offset: u64, addr: &str, to_dlq: bool) -> bool {
        let inst = &self.inner.inst;
        let msg = self.held().get(mq).and_then(|q| q.get(&queue_offset)).cloned();
        let Some(m) = msg else { return false };
        let h = ConsumerSendMsgBackRequestHeader {
            offset: m.commit_log_offset,
            group: inst.config.group.clone(),
            // -1: straight to the dead-letter queue (an orderly message's spent local retries).
            delay_level: if to_dlq { -1 } else { 0 },
            origin_msg_id: Some(m.msg_id()),
            origin_topic: Some(m.topic.clone()),
            max_reconsume_times: Some(inst.config.max_reconsume_times),
        };
        let req = RemotingCommand::request_with(RequestCode::ConsumerSendMsgBack, 0, &h);
        match inst.call(addr, req).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(queue = ?mq, queue_offset, error = %e, "send-back failed; consumed again here later");
                false
            }
        }
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
}

/// The core's settings from the client's configuration.
fn settings<E: Env>(inst: &ClientInstance<E>, subs: &BTreeMap<String, String>) -> ConsumerSettings {
    let cfg = &inst.config;
    let topics: Vec<&str> = subs.keys().map(String::as_str).collect();
    let mut s = ConsumerSettings::new(&inst.client_id, &topics);
    s.model = match cfg.message_model {
        MessageModel::Clustering => Model::Clustering,
        MessageModel::Broadcasting => Model::Broadcasting,
    };
    s.start_from = match cfg.consume_from_where {
        ConsumeFromWhere::FirstOffset => StartFrom::First,
        ConsumeFromWhere::LastOffset => StartFrom::Last,
    };
    s.pull_batch = cfg.pull_batch_size;
    s.pull_hold_ms = cfg.pull_suspend_ms;
    s.request_timeout_ms = RPC_TIMEOUT_MS;
    s.pull_retry_delay_ms = PULL_RETRY_DELAY_MS;
    s.local_retry_delay_ms = LOCAL_RETRY_DELAY_MS;
    s.rebalance_ms = cfg.rebalance_interval_ms.max(10);
    s.heartbeat_ms = cfg.heartbeat_interval_ms.max(10);
    s.route_refresh_ms = cfg.poll_namesrv_interval_ms.max(10);
    s.persist_ms = cfg.persist_offset_interval_ms.max(10);
    s.suspend_ms = cfg.suspend_current_queue_ms;
    s.lock_renew_ms = cfg.rebalance_lock_interval_ms.max(10);
    s.lock_live_ms = cfg.rebalance_lock_max_live_ms.max(10);
    s.max_reconsume = cfg.max_reconsume_times.max(0) as u32;
    s
}
