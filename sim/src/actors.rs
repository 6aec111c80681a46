//! Producer and consumer actors: small state machines speaking the real protocol, using the
//! client core's decisions (queue selection, retry policy, AVG allocation).

use std::collections::BTreeMap;

use std::collections::VecDeque;

use rmq_client_core::consumer::{ConsumerCore, ConsumerOutput, ConsumerSettings, Model, PullAnswer, ReqId, StartFrom};
use rmq_client_core::producer::{
    ProducerCore, ProducerOutput, ProducerSettings, RouteAnswer, Selection, SendFailure, SendId, SendRequest,
};
use rmq_client_core::retry::SendStatus;
use rmq_client_core::transaction::{self, LocalTransactionState};
use rmq_proto::body::{
    from_json, to_json, ConsumerData, ConsumerIdList, HeartbeatData, LockBatchBody, LockBatchResult, MessageQueue,
    ProducerData, SubscriptionData, TopicRouteData,
};
use rmq_proto::codes::{pull_flag, RequestCode};
use rmq_proto::header::{
    CheckTransactionStateRequestHeader, ConsumerSendMsgBackRequestHeader, PullMessageRequestHeader,
    QueryConsumerOffsetRequestHeader, QueueRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use rmq_proto::message::{decode_message, decode_messages, prop, MessageExt};
use rmq_proto::{RemotingCommand, ResponseCode};

use crate::oracle::message_key;
use crate::world::{Role, World, EPOCH_MS, GROUP, TOPIC};

/// The group's retry topic, which a CLUSTERING member subscribes to beside its own.
const RETRY_TOPIC: &str = "%RETRY%G";

/// Sends in flight per producer.
pub const PRODUCER_INFLIGHT_MAX: usize = 8;
/// A request unanswered this long is abandoned.
pub const REQUEST_TIMEOUT_MS: u64 = 3_000;
/// Attempts per message (1 + 2 retries, RocketMQ's default).
pub const SEND_ATTEMPTS_MAX: u32 = 3;
/// Long-poll hold asked by consumers.
pub const PULL_HOLD_MS: u64 = 1_000;
/// Consumer housekeeping period.
pub const CONSUMER_TICK_MS: u64 = 200;
/// Consumer heartbeat + rebalance period.
pub const REBALANCE_MS: u64 = 1_000;
/// Route refresh period (RocketMQ's pollNameServerInterval); a request that goes unanswered
/// refreshes the route at once.
pub const ROUTE_REFRESH_MS: u64 = 30_000;

/// Why a producer request is outstanding.
#[derive(Debug, Clone)]
enum Ticket {
    Route { topic: String, ask: String },
    Attempt { send: SendId, attempt: u32 },
}

/// A producer sending `total` messages keyed `p<idx>-<seq>`: an application over the client's
/// [`ProducerCore`], which makes every decision (route, queue, timeout, retry, heartbeat).
#[derive(Debug)]
pub struct Producer {
    idx: u32,
    total: u32,
    seq: u32,
    core: ProducerCore,
    /// The application's key of each send the core holds.
    keys: BTreeMap<SendId, String>,
    tickets: BTreeMap<i32, Ticket>,
    next_opaque: i32,
    /// Transactional: END_TRANSACTIONs waiting for their local transaction to finish (when,
    /// to which broker node, the request).
    ending: Vec<(u64, usize, RemotingCommand)>,
}

/// The fast lane's producer settings: RocketMQ's defaults, with a 3 s deadline per attempt.
fn producer_settings() -> ProducerSettings {
    ProducerSettings {
        send_timeout_ms: REQUEST_TIMEOUT_MS * SEND_ATTEMPTS_MAX as u64,
        attempt_timeout_ms: REQUEST_TIMEOUT_MS,
        retry_times: SEND_ATTEMPTS_MAX - 1,
        route_refresh_ms: ROUTE_REFRESH_MS,
        heartbeat_interval_ms: ROUTE_REFRESH_MS,
    }
}

impl Producer {
    /// A producer.
    pub fn new(idx: u32, total: u32) -> Self {
        Producer {
            idx,
            total,
            seq: 0,
            core: ProducerCore::new(producer_settings(), 0),
            keys: BTreeMap::new(),
            tickets: BTreeMap::new(),
            next_opaque: 1,
            ending: Vec::new(),
        }
    }

    fn opaque(&mut self) -> i32 {
        self.next_opaque += 1;
        self.next_opaque
    }

    /// The producer after a process restart at `now`: unanswered sends are forgotten (their
    /// callers died); it resumes with the next message, as an application replaying its input
    /// would.
    pub fn restarted(&self, now: u64) -> Self {
        Producer {
            idx: self.idx,
            total: self.total,
            seq: self.seq,
            core: ProducerCore::new(producer_settings(), now),
            keys: BTreeMap::new(),
            tickets: BTreeMap::new(),
            next_opaque: self.next_opaque + 1_000,
            // Local transactions in progress died with the process: their half messages are
            // left to the broker's check-back.
            ending: Vec::new(),
        }
    }
}

/// What a consumer request is for (to decode its answer).
#[derive(Debug, Clone)]
enum Asked {
    Route,
    Members,
    Committed,
    QueueOffset,
    Pull(MessageQueue),
    /// The message (key, position) and whether it goes to the dead-letter queue.
    SendBack(String, crate::oracle::Position, bool),
    Lock,
}

/// A message with the application: (queue offset, key, whether it fails).
type Processing = Vec<(u64, String, bool)>;

/// A consumer of group `G` (CLUSTERING, or BROADCASTING with `broadcasting`), subscribed to
/// the topic with `*`: an application over
/// the client's [`ConsumerCore`], which makes every decision (rebalance, start offsets, pulls,
/// replica choice, commits, re-seating after a failure).
#[derive(Debug)]
pub struct Consumer {
    idx: u32,
    core: ConsumerCore,
    tickets: BTreeMap<i32, (ReqId, Asked)>,
    /// Messages handed over by a pull and not finished yet.
    held: BTreeMap<(MessageQueue, u64), MessageExt>,
    next_opaque: i32,
    /// The client's local offset store (BROADCASTING only): it survives a restart.
    saved_offsets: BTreeMap<MessageQueue, u64>,
    settings: ConsumerSettings,
    /// Messages the application is working on (`consume_ms`): when it is done, the queue, and
    /// what each will turn out to be.
    processing: Vec<(u64, MessageQueue, Processing)>,
}

/// The fast lane's consumer settings: a 1 s long poll, heartbeat and rebalance every second;
/// orderly as the scenario says (RocketMQ's lock periods).
fn consumer_settings(idx: u32, sc: &crate::scenario::Scenario) -> ConsumerSettings {
    // A BROADCASTING member has no retry topic (a failure is dropped).
    let topics: &[&str] = if sc.broadcasting { &[TOPIC] } else { &[TOPIC, RETRY_TOPIC] };
    let mut s = ConsumerSettings::new(&format!("10.0.2.{idx}@c{idx}"), topics);
    if sc.broadcasting {
        s.model = Model::Broadcasting;
    }
    s.start_from = StartFrom::First;
    s.pull_hold_ms = PULL_HOLD_MS;
    s.request_timeout_ms = REQUEST_TIMEOUT_MS;
    s.pull_retry_delay_ms = CONSUMER_TICK_MS;
    s.rebalance_ms = REBALANCE_MS;
    s.heartbeat_ms = REBALANCE_MS;
    s.route_refresh_ms = ROUTE_REFRESH_MS;
    s.members_rotor = idx as usize;
    s.orderly = sc.orderly;
    s.skip_queue_lock = !sc.queue_lock;
    s.suspend_ms = crate::scenario::ORDERLY_SUSPEND_MS;
    s.max_reconsume = sc.max_reconsume.max(0) as u32;
    s
}

impl Consumer {
    /// A consumer.
    pub fn new(idx: u32, sc: &crate::scenario::Scenario) -> Self {
        let settings = consumer_settings(idx, sc);
        Consumer {
            idx,
            core: ConsumerCore::new(settings.clone(), 0),
            tickets: BTreeMap::new(),
            held: BTreeMap::new(),
            next_opaque: 1,
            saved_offsets: BTreeMap::new(),
            settings,
            processing: Vec::new(),
        }
    }

    /// What its local offset store holds (BROADCASTING), by (broker group, queue) of the topic.
    pub fn saved_offsets(&self) -> Vec<((String, i32), u64)> {
        let on_topic = self.saved_offsets.iter().filter(|(mq, _)| mq.topic == TOPIC);
        on_topic.map(|(mq, o)| ((mq.broker_name.clone(), mq.queue_id), *o)).collect()
    }

    /// The consumer after a process restart at `now`: it starts from scratch, as a new process
    /// would, with what its local offset store held.
    pub fn restarted(&self, now: u64) -> Self {
        let mut core = ConsumerCore::new(self.settings.clone(), now);
        core.restore_offsets(self.saved_offsets.clone());
        Consumer {
            idx: self.idx,
            core,
            tickets: BTreeMap::new(),
            held: BTreeMap::new(),
            next_opaque: 1,
            saved_offsets: self.saved_offsets.clone(),
            settings: self.settings.clone(),
            processing: Vec::new(),
        }
    }

    fn request(
        &mut self,
        w: &mut World,
        me: usize,
        to: Option<usize>,
        ticket: (ReqId, Asked),
        mut cmd: RemotingCommand,
    ) {
        self.next_opaque += 1;
        cmd.opaque = self.next_opaque;
        let Some(to) = to else { return };
        self.tickets.insert(cmd.opaque, ticket);
        w.send(me, to, &cmd);
    }
}

/// A frame arrived at actor node `me` from node `from`.
pub fn on_frame(w: &mut World, me: usize, from: usize, cmd: RemotingCommand) {
    let mut role = std::mem::replace(&mut w.nodes[me].role, Role::Namesrv(None));
    match &mut role {
        Role::Producer(p) => producer_frame(w, me, from, p, cmd),
        Role::Consumer(c) => consumer_frame(w, me, c, cmd),
        _ => {}
    }
    w.nodes[me].role = role;
}

/// Actor node `me`'s timer fired.
pub fn on_tick(w: &mut World, me: usize) {
    let mut role = std::mem::replace(&mut w.nodes[me].role, Role::Namesrv(None));
    match &mut role {
        Role::Producer(p) => producer_tick(w, me, p),
        Role::Consumer(c) => consumer_tick(w, me, c),
        _ => {}
    }
    w.nodes[me].role = role;
}

fn producer_tick(w: &mut World, me: usize, p: &mut Producer) {
    let now = w.now;
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut p.ending).into_iter().partition(|e| e.0 <= now);
    p.ending = later;
    for (_, broker, mut end) in due {
        end.opaque = p.opaque();
        w.send(me, broker, &end);
    }
    let out = p.core.tick(w.now);
    apply_producer(w, me, p, out);
    if p.seq < p.total && p.core.pending_len() < PRODUCER_INFLIGHT_MAX {
        let key = format!("p{}-{}", p.idx, p.seq);
        p.seq += 1;
        w.history.sent.insert(key.clone());
        w.history.send_began(&key, w.now);
        // A hot message goes keyed to one queue (and stays there on a retry, as an orderly
        // send does); the rest rotate over every queue.
        // Orderly runs key every message (`order_keys`).
        let selection = match crate::oracle::order_key(&key, w.scenario.order_keys) {
            Some(ok) => Selection::ByKey(ok),
            None if w.scenario.is_hot(&key) => Selection::ByKey(HOT_KEY.into()),
            None => Selection::RoundRobin,
        };
        let (send, out) = p.core.submit(TOPIC, selection, None, false, w.now);
        p.keys.insert(send, key);
        apply_producer(w, me, p, out);
    }
    let busy = p.seq < p.total || p.core.pending_len() > 0;
    let next = if p.core.publish_info(TOPIC).is_none() { 500 } else { w.scenario.send_interval_ms };
    let ending = p.ending.iter().map(|e| e.0).min().unwrap_or(u64::MAX);
    if busy {
        w.schedule_timer(me, (w.now + next).min(p.core.next_wakeup()).min(ending));
    } else if w.scenario.transactional {
        // A transactional producer stays in its group (heartbeats) to answer check-backs.
        w.schedule_timer(me, p.core.next_wakeup().min(ending));
    }
}

/// The order key of the hot messages (`hot_pct`): every lane sends them to the queue this key
/// selects.
pub const HOT_KEY: &str = "hot";

/// Carries out what the producer core decided.
fn apply_producer(w: &mut World, me: usize, p: &mut Producer, out: Vec<ProducerOutput>) {
    // Every producer step ends here: the core's own bookkeeping (topic timers, sends) is
    // checked after each.
    p.core.assert_invariants();
    let name = w.nodes[me].name.clone();
    let mut todo: VecDeque<ProducerOutput> = out.into();
    while let Some(o) = todo.pop_front() {
        match o {
            ProducerOutput::FetchRoute { topic, ask } => {
                let o = p.opaque();
                let mut cmd = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, o).with_ext("topic", &ask);
                cmd.opaque = o;
                p.tickets.insert(o, Ticket::Route { topic, ask });
                let ns = w.namesrv_for(me);
                w.send(me, ns, &cmd);
            }
            ProducerOutput::Attempt { send, attempt, mq, addr, .. } => {
                let key = p.keys.get(&send).cloned().unwrap_or_default();
                w.trace.line(
                    w.now,
                    &name,
                    "client.message.sent",
                    &format!("key={key} queue={} attempt={attempt}", mq.queue_id),
                );
                let Some(broker) = w.node_at(&addr) else {
                    todo.extend(p.core.on_error(send, attempt, "no node at the route's address", w.now));
                    continue;
                };
                let mut props = BTreeMap::new();
                props.insert(prop::UNIQ_KEY.to_string(), key.clone());
                if w.scenario.transactional {
                    // A half message (the request carries TRANSACTION_PREPARED).
                    props.insert(prop::TRAN_MSG.to_string(), "true".to_string());
                    props.insert(prop::PGROUP.to_string(), "PG".to_string());
                }
                let request = SendRequest {
                    group: "PG",
                    mq: &mq,
                    born_ms: (EPOCH_MS + w.now) as i64,
                    flag: 0,
                    properties: &props,
                    body: crate::oracle::body_for(&key, w.scenario.body_bytes).into(),
                    batch: false,
                };
                let mut cmd = request.command();
                cmd.opaque = p.opaque();
                p.tickets.insert(cmd.opaque, Ticket::Attempt { send, attempt });
                w.send(me, broker, &cmd);
            }
            ProducerOutput::TimedOut { send, attempt } => {
                let key = p.keys.get(&send).cloned().unwrap_or_default();
                w.trace.line(w.now, &name, "client.send.timed_out", &format!("key={key} attempt={attempt}"));
            }
            ProducerOutput::Done { send, outcome } => {
                p.tickets.retain(|_, t| !matches!(t, Ticket::Attempt { send: s, .. } if *s == send));
                let key = p.keys.remove(&send).unwrap_or_default();
                match outcome {
                    Ok(s) if w.scenario.transactional => {
                        // The half message is stored: the local transaction runs (only on
                        // SEND_OK), and END_TRANSACTION follows once it is done.
                        let state = transaction::outcome(s.status, || w.scenario.tx_local(&key));
                        if s.status == SendStatus::SendOk {
                            w.history.tx_ledger.insert(key.clone(), state);
                            w.on_client_acked();
                        }
                        if state == LocalTransactionState::CommitMessage {
                            w.history.tx_committed(&key, w.now);
                            let (queue, offset) = (s.queue.queue_id, s.queue_offset.max(0) as u64);
                            w.history.acked(&key, &s.queue.broker_name, queue, offset, w.now);
                        }
                        w.trace.line(
                            w.now,
                            &name,
                            "client.transaction.local",
                            &format!("key={key} status={:?} state={state:?}", s.status),
                        );
                        let end =
                            transaction::end_after_send("PG", TOPIC, s.queue_offset, &s.offset_msg_id, &key, state);
                        if let (Some(end), Some(broker)) = (end, w.broker_node(&s.queue.broker_name)) {
                            p.ending.push((w.now + crate::scenario::TX_LOCAL_MS, broker, end));
                            w.schedule_timer(me, w.now + crate::scenario::TX_LOCAL_MS);
                        }
                    }
                    Ok(s) if s.status == SendStatus::SendOk => {
                        let (queue, offset) = (s.queue.queue_id, s.queue_offset.max(0) as u64);
                        w.history.acked(&key, &s.queue.broker_name, queue, offset, w.now);
                        w.check_replicated_ack(&s.queue.broker_name, &key, queue, offset);
                        w.on_client_acked();
                        w.trace.line(
                            w.now,
                            &name,
                            "client.send.acked",
                            &format!("key={key} queue={queue} offset={offset}"),
                        );
                    }
                    Ok(s) => {
                        // FLUSH_DISK_TIMEOUT and friends: stored, durability unconfirmed; not
                        // counted as acked.
                        w.history.unconfirmed += 1;
                        w.trace.line(
                            w.now,
                            &name,
                            "client.send.unconfirmed",
                            &format!("key={key} status={:?}", s.status),
                        );
                    }
                    Err(f) => {
                        w.history.send_failed(&key, w.now);
                        let cause = match f {
                            SendFailure::NoRoute { .. } => "no-route",
                            SendFailure::Rejected { .. } => "rejected",
                            SendFailure::Exhausted { .. } => "exhausted",
                        };
                        w.trace.line(w.now, &name, "client.send.failed", &format!("key={key} cause={cause}"));
                    }
                }
            }
            ProducerOutput::Heartbeat { addrs } => {
                let hb = HeartbeatData {
                    client_id: format!("10.0.1.{}@p{}", p.idx, p.idx),
                    producer_data_set: vec![ProducerData { group_name: "PG".into() }],
                    ..Default::default()
                };
                let body = to_json(&hb);
                for a in addrs {
                    if let Some(node) = w.node_at(&a) {
                        let cmd = RemotingCommand::request(RequestCode::HeartBeat, p.opaque()).with_body(body.clone());
                        w.send(me, node, &cmd);
                    }
                }
            }
        }
    }
}

fn producer_frame(w: &mut World, me: usize, from: usize, p: &mut Producer, cmd: RemotingCommand) {
    if !cmd.is_response() {
        if cmd.request_code() == RequestCode::CheckTransactionState {
            answer_check(w, me, from, p, &cmd);
        }
        return;
    }
    let Some(ticket) = p.tickets.remove(&cmd.opaque) else { return };
    let out = match ticket {
        Ticket::Route { topic, ask } => {
            let answer = match ResponseCode::from_code(cmd.code) {
                ResponseCode::Success => match from_json::<TopicRouteData>(&cmd.body) {
                    Ok(route) => RouteAnswer::Found(route),
                    Err(e) => RouteAnswer::Unreachable(e.to_string()),
                },
                ResponseCode::TopicNotExist => RouteAnswer::NotExist,
                _ => RouteAnswer::Unreachable(format!("code {}", cmd.code)),
            };
            p.core.on_route(&topic, &ask, answer, w.now)
        }
        Ticket::Attempt { send, attempt } => p.core.on_response(send, attempt, &cmd, w.now),
    };
    apply_producer(w, me, p, out);
}

/// The checker: answers the broker's CHECK_TRANSACTION_STATE from the application's record.
fn answer_check(w: &mut World, me: usize, from: usize, p: &mut Producer, cmd: &RemotingCommand) {
    let name = w.nodes[me].name.clone();
    let (Ok(h), Ok((half, _))) =
        (cmd.decode_header::<CheckTransactionStateRequestHeader>(), decode_message(&cmd.body, true))
    else {
        w.trace.line(w.now, &name, "client.transaction.check_unreadable", "");
        return;
    };
    let key = message_key(&half.properties);
    let state = w.history.tx_check(&w.scenario, &key, w.now);
    w.trace.line(w.now, &name, "client.transaction.checked", &format!("key={key} state={state:?}"));
    let mut end = transaction::end_after_check("PG", &h, &half, state);
    end.opaque = p.opaque();
    w.send(me, from, &end);
}

fn consumer_tick(w: &mut World, me: usize, c: &mut Consumer) {
    let now = w.now;
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut c.processing).into_iter().partition(|p| p.0 <= now);
    c.processing = later;
    for (_, mq, work) in due {
        let out = finish_consume(w, me, c, &mq, work);
        apply_consumer(w, me, c, out);
    }
    let out = c.core.tick(w.now);
    apply_consumer(w, me, c, out);
    let busy_until = c.processing.iter().map(|p| p.0).min().unwrap_or(u64::MAX);
    w.schedule_timer(me, (w.now + CONSUMER_TICK_MS).min(c.core.next_wakeup()).min(busy_until));
}

/// The application finished the messages of `work`: the oracle hears how each went (order
/// judged), and the core is told.
fn finish_consume(
    w: &mut World,
    me: usize,
    c: &mut Consumer,
    mq: &MessageQueue,
    work: Processing,
) -> Vec<ConsumerOutput> {
    let name = w.nodes[me].name.clone();
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for (o, key, fails) in work {
        w.history.processing_ended(&name, &key, !fails);
        if fails {
            failed.push(o);
        } else {
            done.push(o);
            if !w.scenario.idempotent || w.processing_log.insert(key.clone()) {
                w.history.processed(&key);
            }
        }
    }
    let mut out = Vec::new();
    if !failed.is_empty() {
        out.extend(c.core.on_consumed(mq, &failed, false, w.now));
    }
    out.extend(c.core.on_consumed(mq, &done, true, w.now));
    out
}

/// Carries out what the consumer core decided.
fn apply_consumer(w: &mut World, me: usize, c: &mut Consumer, out: Vec<ConsumerOutput>) {
    let name = w.nodes[me].name.clone();
    let mut todo: VecDeque<ConsumerOutput> = out.into();
    while let Some(o) = todo.pop_front() {
        match o {
            ConsumerOutput::FetchRoute { req, topic } => {
                let cmd = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, 0).with_ext("topic", &topic);
                let ns = w.namesrv_for(me);
                c.request(w, me, Some(ns), (req, Asked::Route), cmd);
            }
            ConsumerOutput::Heartbeat { addrs } => {
                let hb = HeartbeatData {
                    client_id: c.core.settings().client_id.clone(),
                    consumer_data_set: vec![ConsumerData {
                        group_name: "G".into(),
                        consume_type: "CONSUME_PASSIVELY".into(),
                        message_model: match c.core.settings().model {
                            Model::Clustering => "CLUSTERING".into(),
                            Model::Broadcasting => "BROADCASTING".into(),
                        },
                        consume_from_where: "CONSUME_FROM_FIRST_OFFSET".into(),
                        subscription_data_set: c
                            .core
                            .settings()
                            .topics
                            .iter()
                            .map(|t| SubscriptionData::tag(t, "*"))
                            .collect(),
                        unit_mode: false,
                    }],
                    ..Default::default()
                };
                let body = to_json(&hb);
                for a in addrs {
                    if let Some(node) = w.node_at(&a) {
                        let cmd = RemotingCommand::request(RequestCode::HeartBeat, 0).with_body(body.clone());
                        c.next_opaque += 1;
                        w.send(me, node, &RemotingCommand { opaque: c.next_opaque, ..cmd });
                    }
                }
            }
            ConsumerOutput::QueryMembers { req, addr } => {
                let cmd =
                    RemotingCommand::request(RequestCode::GetConsumerListByGroup, 0).with_ext("consumerGroup", "G");
                c.request(w, me, w.node_at(&addr), (req, Asked::Members), cmd);
            }
            ConsumerOutput::QueryCommitted { req, mq, addr } => {
                let h = QueryConsumerOffsetRequestHeader {
                    consumer_group: "G".into(),
                    topic: mq.topic.clone(),
                    queue_id: mq.queue_id,
                };
                let cmd = RemotingCommand::request_with(RequestCode::QueryConsumerOffset, 0, &h);
                c.request(w, me, w.node_at(&addr), (req, Asked::Committed), cmd);
            }
            ConsumerOutput::QueryQueueOffset { req, mq, addr, max } => {
                let h = QueueRequestHeader { topic: mq.topic.clone(), queue_id: mq.queue_id };
                let code = if max { RequestCode::GetMaxOffset } else { RequestCode::GetMinOffset };
                let cmd = RemotingCommand::request_with(code, 0, &h);
                c.request(w, me, w.node_at(&addr), (req, Asked::QueueOffset), cmd);
            }
            ConsumerOutput::Pull { req, mq, addr, offset, commit, max_nums, hold_ms, .. } => {
                let mut sys_flag = pull_flag::SUSPEND | pull_flag::SUBSCRIPTION;
                if commit.is_some() {
                    sys_flag |= pull_flag::COMMIT_OFFSET;
                }
                let h = PullMessageRequestHeader {
                    consumer_group: "G".into(),
                    topic: mq.topic.clone(),
                    queue_id: mq.queue_id,
                    queue_offset: offset as i64,
                    max_msg_nums: max_nums,
                    sys_flag,
                    commit_offset: commit.unwrap_or(0) as i64,
                    suspend_timeout_millis: hold_ms as i64,
                    subscription: Some("*".into()),
                    sub_version: 0,
                    expression_type: Some("TAG".into()),
                    max_msg_bytes: None,
                    broker_name: None,
                };
                let cmd = RemotingCommand::request_with(RequestCode::PullMessage, 0, &h);
                c.request(w, me, w.node_at(&addr), (req, Asked::Pull(mq)), cmd);
            }
            ConsumerOutput::Consume { mq, offsets } => {
                // The application: some messages fail (`poison_pct`, `flaky_pct`) and go back
                // for a delayed retry (orderly: are retried here); idempotent scenarios skip a
                // message id seen before instead of processing it. It takes `consume_ms`.
                let mut work = Vec::new();
                for o in &offsets {
                    let Some(m) = c.held.get(&(mq.clone(), *o)) else { continue };
                    let key = message_key(&m.properties);
                    // Orderly retries happen here: the core counts them, as RocketMQ does.
                    let reconsume = m.reconsume_times + c.core.attempts(&mq, *o) as i32;
                    w.history.check_body(&key, &m.body, w.scenario.body_bytes);
                    w.history.delivered(c.idx, &key, m.queue_id, m.queue_offset as u64, w.now);
                    let at = (mq.broker_name.clone(), m.queue_id, m.queue_offset as u64);
                    if w.scenario.broadcasting {
                        w.history.member_received(&name, &key, &at, w.now);
                    }
                    w.history.processing_began(&name, &key, at, w.now);
                    let fails = w.scenario.consume_fails(&key, reconsume);
                    w.history.attempted(&key, reconsume, fails, w.now);
                    let line = if fails {
                        format!("key={key} reconsume={reconsume} failed=true")
                    } else {
                        format!("key={key} queue={} offset={}", m.queue_id, m.queue_offset)
                    };
                    w.trace.line(w.now, &name, "client.message.consumed", &line);
                    work.push((*o, key, fails));
                }
                if w.scenario.consume_ms == 0 {
                    todo.extend(finish_consume(w, me, c, &mq, work));
                } else {
                    let at = w.now + w.scenario.consume_ms;
                    c.processing.push((at, mq, work));
                    w.schedule_timer(me, at);
                }
            }
            ConsumerOutput::SendBack { req, mq, queue_offset, addr, to_dlq } => {
                let Some(m) = c.held.get(&(mq.clone(), queue_offset)) else { continue };
                let h = ConsumerSendMsgBackRequestHeader {
                    offset: m.commit_log_offset,
                    group: "G".into(),
                    // -1: straight to the DLQ (an orderly message that spent its retries).
                    delay_level: if to_dlq { -1 } else { 0 },
                    origin_msg_id: Some(m.msg_id()),
                    origin_topic: Some(m.topic.clone()),
                    max_reconsume_times: Some(w.scenario.max_reconsume),
                };
                let at = (mq.broker_name.clone(), m.queue_id, m.queue_offset as u64);
                let asked = Asked::SendBack(message_key(&m.properties), at, to_dlq);
                let cmd = RemotingCommand::request_with(RequestCode::ConsumerSendMsgBack, 0, &h);
                c.request(w, me, w.node_at(&addr), (req, asked), cmd);
            }
            ConsumerOutput::Lock { req, addr, mqs } => {
                let body = to_json(&LockBatchBody {
                    consumer_group: "G".into(),
                    client_id: c.core.settings().client_id.clone(),
                    only_this_broker: false,
                    mq_set: mqs,
                });
                let cmd = RemotingCommand::request(RequestCode::LockBatchMq, 0).with_body(body);
                c.request(w, me, w.node_at(&addr), (req, Asked::Lock), cmd);
            }
            ConsumerOutput::Unlock { addr, mqs } => {
                let body = to_json(&LockBatchBody {
                    consumer_group: "G".into(),
                    client_id: c.core.settings().client_id.clone(),
                    only_this_broker: false,
                    mq_set: mqs,
                });
                if let Some(node) = w.node_at(&addr) {
                    c.next_opaque += 1;
                    let cmd = RemotingCommand::request(RequestCode::UnlockBatchMq, c.next_opaque).with_body(body);
                    w.send(me, node, &cmd.oneway());
                }
            }
            ConsumerOutput::Commit { mq, addr, offset } => {
                let h = UpdateConsumerOffsetRequestHeader {
                    consumer_group: "G".into(),
                    topic: mq.topic.clone(),
                    queue_id: mq.queue_id,
                    commit_offset: offset as i64,
                };
                if let Some(node) = w.node_at(&addr) {
                    c.next_opaque += 1;
                    let cmd =
                        RemotingCommand::request_with(RequestCode::UpdateConsumerOffset, c.next_opaque, &h).oneway();
                    w.send(me, node, &cmd);
                }
            }
            ConsumerOutput::Rebalanced { queues } => {
                let ids: Vec<String> = queues
                    .iter()
                    .map(|q| if q.topic == TOPIC { q.queue_id.to_string() } else { format!("retry{}", q.queue_id) })
                    .collect();
                w.trace.line(w.now, &name, "client.queues.rebalanced", &format!("queues=[{}]", ids.join(", ")));
            }
            ConsumerOutput::SaveOffsets { offsets } => c.saved_offsets = offsets,
        }
    }
    // Messages the core let go (finished, sent back, or of a released queue) are dropped.
    c.held.retain(|(mq, o), _| c.core.holds(mq, *o));
}

fn consumer_frame(w: &mut World, me: usize, c: &mut Consumer, cmd: RemotingCommand) {
    if !cmd.is_response() {
        if cmd.request_code() == RequestCode::NotifyConsumerIdsChanged {
            let out = c.core.rebalance_now(w.now);
            apply_consumer(w, me, c, out);
        }
        if cmd.request_code() == RequestCode::ResetConsumerClientOffset {
            let ours =
                cmd.decode_header::<rmq_proto::header::ResetOffsetRequestHeader>().is_ok_and(|h| h.group == GROUP);
            if let (true, Ok(body)) = (ours, rmq_proto::body::ResetOffsetBody::parse(&cmd.body)) {
                let offsets = body.offset_table.into_iter().map(|(mq, o)| (mq, o.max(0) as u64)).collect();
                let out = c.core.reset_offsets(&offsets, w.now);
                apply_consumer(w, me, c, out);
            }
        }
        return;
    }
    let Some((req, asked)) = c.tickets.remove(&cmd.opaque) else { return };
    let code = ResponseCode::from_code(cmd.code);
    let num = |k: &str| cmd.ext(k).and_then(|v| v.parse::<i64>().ok()).map(|v| v.max(0) as u64);
    let now = w.now;
    let out = match asked {
        Asked::Route => {
            c.core.on_route(req, from_json::<TopicRouteData>(&cmd.body).ok().filter(|_| cmd.code == 0), now)
        }
        Asked::Members => match from_json::<ConsumerIdList>(&cmd.body) {
            Ok(list) if cmd.code == 0 => c.core.on_members(req, list.consumer_id_list, now),
            _ => c.core.on_failed(req, now),
        },
        Asked::Committed => match (code, num("offset")) {
            (ResponseCode::Success, Some(o)) => c.core.on_committed(req, Some(o), now),
            (ResponseCode::QueryNotFound, _) => c.core.on_committed(req, None, now),
            _ => c.core.on_failed(req, now),
        },
        Asked::QueueOffset => match (code, num("offset")) {
            (ResponseCode::Success, Some(o)) => c.core.on_queue_offset(req, o, now),
            _ => c.core.on_failed(req, now),
        },
        Asked::Pull(mq) => {
            let suggested = cmd.ext("suggestWhichBrokerId").and_then(|s| s.parse::<i64>().ok());
            let answer = match (code, num("nextBeginOffset")) {
                (ResponseCode::Success, Some(next_begin)) => {
                    let msgs = decode_messages(&cmd.body).unwrap_or_default();
                    let mut offsets = Vec::new();
                    for m in msgs {
                        offsets.push(m.queue_offset as u64);
                        c.held.insert((mq.clone(), m.queue_offset as u64), m);
                    }
                    PullAnswer::Found { offsets, next_begin }
                }
                (
                    ResponseCode::PullNotFound | ResponseCode::PullRetryImmediately | ResponseCode::PullOffsetMoved,
                    Some(next_begin),
                ) => PullAnswer::Empty { next_begin },
                _ => PullAnswer::Refused,
            };
            c.core.on_pulled(req, answer, suggested, now)
        }
        Asked::SendBack(key, at, to_dlq) => {
            if to_dlq && cmd.code == 0 {
                w.history.dead_lettered(&key, at);
            }
            c.core.on_sent_back(req, cmd.code == 0, now)
        }
        Asked::Lock => match from_json::<LockBatchResult>(&cmd.body) {
            Ok(r) if cmd.code == 0 => c.core.on_locked(req, &r.lock_ok_mq_set, now),
            _ => c.core.on_failed(req, now),
        },
    };
    apply_consumer(w, me, c, out);
}
