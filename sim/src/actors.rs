//! Producer and consumer actors: small state machines speaking the real protocol, using the
//! client core's decisions (queue selection, retry policy, AVG allocation).

use std::collections::BTreeMap;

use std::collections::VecDeque;

use rmq_client_core::producer::{
    ProducerCore, ProducerOutput, ProducerSettings, RouteAnswer, Selection, SendFailure, SendId, SendRequest,
};
use rmq_client_core::rebalance::allocate_averagely;
use rmq_client_core::retry::SendStatus;
use rmq_client_core::PublishInfo;
use rmq_proto::body::{
    from_json, to_json, ConsumerData, ConsumerIdList, HeartbeatData, MessageQueue, ProducerData, SubscriptionData,
    TopicRouteData,
};
use rmq_proto::codes::{pull_flag, RequestCode};
use rmq_proto::header::{PullMessageRequestHeader, QueryConsumerOffsetRequestHeader};
use rmq_proto::message::{decode_messages, prop};
use rmq_proto::{RemotingCommand, ResponseCode};

use crate::world::{Role, World, EPOCH_MS, TOPIC};

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
        }
    }
}

#[derive(Debug, Clone)]
enum Req {
    Route,
    Members,
    QueryOffset(MessageQueue),
    Pull(MessageQueue),
    Heartbeat,
}

#[derive(Debug, Default, Clone)]
struct QueueState {
    next: Option<u64>,
    inflight: Option<i32>,
}

/// A CLUSTERING consumer of group `G`, subscribed to the topic with `*`.
#[derive(Debug)]
pub struct Consumer {
    idx: u32,
    client_id: String,
    queues: Vec<MessageQueue>,
    owned: BTreeMap<MessageQueue, QueueState>,
    pending: BTreeMap<i32, (Req, u64)>,
    next_opaque: i32,
    last_rebalance: u64,
    /// Broker name → broker id → address, from the last route: a group's master (id 0) while
    /// the NameServer lists it, otherwise its slave.
    addrs: BTreeMap<String, BTreeMap<i64, String>>,
    /// When the route was last asked for (`None`: ask now).
    route_asked_at: Option<u64>,
    /// Broker name → the broker id its last pull answer suggested (suggestWhichBrokerId).
    suggested: BTreeMap<String, i64>,
}

impl Consumer {
    /// A consumer.
    pub fn new(idx: u32) -> Self {
        Consumer {
            idx,
            client_id: format!("10.0.2.{idx}@c{idx}"),
            queues: Vec::new(),
            owned: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_opaque: 1,
            last_rebalance: 0,
            addrs: BTreeMap::new(),
            route_asked_at: None,
            suggested: BTreeMap::new(),
        }
    }

    /// The node to read a group's queues from: the broker id the last pull answer suggested
    /// if the route lists it, else the master, else the lowest-numbered slave (RocketMQ's
    /// findBrokerAddressInSubscribe).
    fn read_node(&self, w: &World, broker_name: &str) -> Option<usize> {
        let ids = self.addrs.get(broker_name);
        let suggested = self.suggested.get(broker_name).and_then(|id| ids.and_then(|ids| ids.get(id)));
        match suggested.or_else(|| ids.and_then(|ids| ids.values().next())) {
            Some(addr) => w.node_at(addr),
            None => w.broker_node(broker_name),
        }
    }

    /// Every broker node of the route, masters and slaves (heartbeats go to all of them).
    fn route_nodes(&self, w: &World) -> Vec<usize> {
        if self.addrs.is_empty() {
            let mut v: Vec<usize> = self.queues.iter().filter_map(|q| w.broker_node(&q.broker_name)).collect();
            v.dedup();
            return v;
        }
        self.addrs.values().flat_map(|ids| ids.values()).filter_map(|a| w.node_at(a)).collect()
    }

    /// One node per group: where the group's queues are read.
    fn read_nodes(&self, w: &World) -> Vec<usize> {
        let mut names: Vec<&str> = self.queues.iter().map(|q| q.broker_name.as_str()).collect();
        names.dedup();
        names.into_iter().filter_map(|n| self.read_node(w, n)).collect()
    }

    /// The consumer's index (c0, c1...).
    pub fn index(&self) -> u32 {
        self.idx
    }

    fn request(&mut self, w: &mut World, me: usize, to: usize, req: Req, mut cmd: RemotingCommand) -> i32 {
        self.next_opaque += 1;
        cmd.opaque = self.next_opaque;
        self.pending.insert(cmd.opaque, (req, w.now));
        w.send(me, to, &cmd);
        cmd.opaque
    }
}

/// A frame arrived at actor node `me` from node `from`.
pub fn on_frame(w: &mut World, me: usize, _from: usize, cmd: RemotingCommand) {
    let mut role = std::mem::replace(&mut w.nodes[me].role, Role::Namesrv(None));
    match &mut role {
        Role::Producer(p) => producer_frame(w, me, p, cmd),
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
    let out = p.core.tick(w.now);
    apply_producer(w, me, p, out);
    if p.seq < p.total && p.core.pending_len() < PRODUCER_INFLIGHT_MAX {
        let key = format!("p{}-{}", p.idx, p.seq);
        p.seq += 1;
        w.history.sent.insert(key.clone());
        w.history.send_began(&key, w.now);
        // A hot message goes keyed to one queue (and stays there on a retry, as an orderly
        // send does); the rest rotate over every queue.
        let selection = if w.scenario.is_hot(&key) { Selection::ByKey(HOT_KEY.into()) } else { Selection::RoundRobin };
        let (send, out) = p.core.submit(TOPIC, selection, None, false, w.now);
        p.keys.insert(send, key);
        apply_producer(w, me, p, out);
    }
    let busy = p.seq < p.total || p.core.pending_len() > 0;
    let next = if p.core.publish_info(TOPIC).is_none() { 500 } else { w.scenario.send_interval_ms };
    if busy {
        w.schedule_timer(me, (w.now + next).min(p.core.next_wakeup()));
    }
}

/// The order key of the hot messages (`hot_pct`): every lane sends them to the queue this key
/// selects.
pub const HOT_KEY: &str = "hot";

/// Carries out what the producer core decided.
fn apply_producer(w: &mut World, me: usize, p: &mut Producer, out: Vec<ProducerOutput>) {
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
                props.insert(prop::WAIT.to_string(), "true".to_string());
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

fn producer_frame(w: &mut World, me: usize, p: &mut Producer, cmd: RemotingCommand) {
    if !cmd.is_response() {
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

fn consumer_tick(w: &mut World, me: usize, c: &mut Consumer) {
    let stale: Vec<i32> = c
        .pending
        .iter()
        .filter(|(_, (_, at))| w.now >= at + REQUEST_TIMEOUT_MS + PULL_HOLD_MS)
        .map(|(o, _)| *o)
        .collect();
    for o in stale {
        if let Some((Req::Pull(mq) | Req::QueryOffset(mq), _)) = c.pending.remove(&o) {
            // The broker may be gone: learn the route again (a slave may now serve the group).
            c.route_asked_at = None;
            if let Some(q) = c.owned.get_mut(&mq) {
                // The broker may have restarted and lost the tail this position points past:
                // re-seat from the group's committed offset (redelivery, never a skip).
                q.inflight = None;
                q.next = None;
            }
        }
    }
    let route_due = c.route_asked_at.is_none_or(|at| w.now >= at + ROUTE_REFRESH_MS);
    if c.queues.is_empty() || route_due {
        c.route_asked_at = Some(w.now);
        let cmd = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, 0).with_ext("topic", TOPIC);
        let ns = w.namesrv_for(me);
        c.request(w, me, ns, Req::Route, cmd);
    }
    if w.now >= c.last_rebalance + REBALANCE_MS {
        c.last_rebalance = w.now;
        let hb = HeartbeatData {
            client_id: c.client_id.clone(),
            consumer_data_set: vec![ConsumerData {
                group_name: "G".into(),
                consume_type: "CONSUME_PASSIVELY".into(),
                message_model: "CLUSTERING".into(),
                consume_from_where: "CONSUME_FROM_FIRST_OFFSET".into(),
                subscription_data_set: vec![SubscriptionData::tag(TOPIC, "*")],
                unit_mode: false,
            }],
            ..Default::default()
        };
        // Every broker of the route (slaves too) learns the member; one of the nodes the group
        // is read from answers who the group is.
        let brokers = c.read_nodes(w);
        let body = to_json(&hb);
        for b in &c.route_nodes(w) {
            c.request(
                w,
                me,
                *b,
                Req::Heartbeat,
                RemotingCommand::request(RequestCode::HeartBeat, 0).with_body(body.clone()),
            );
        }
        if let Some(b) = brokers.get(c.idx as usize % brokers.len().max(1)) {
            let list = RemotingCommand::request(RequestCode::GetConsumerListByGroup, 0).with_ext("consumerGroup", "G");
            c.request(w, me, *b, Req::Members, list);
        }
    }
    let queues: Vec<MessageQueue> = c.owned.keys().cloned().collect();
    for mq in queues {
        poll_queue(w, me, c, &mq);
    }
    w.schedule_timer(me, w.now + CONSUMER_TICK_MS);
}

fn poll_queue(w: &mut World, me: usize, c: &mut Consumer, mq: &MessageQueue) {
    let Some(q) = c.owned.get(mq).cloned() else { return };
    if q.inflight.is_some() {
        return;
    }
    let (req, cmd) = match q.next {
        None => {
            let h = QueryConsumerOffsetRequestHeader {
                consumer_group: "G".into(),
                topic: TOPIC.into(),
                queue_id: mq.queue_id,
            };
            (Req::QueryOffset(mq.clone()), RemotingCommand::request_with(RequestCode::QueryConsumerOffset, 0, &h))
        }
        Some(next) => {
            let h = PullMessageRequestHeader {
                consumer_group: "G".into(),
                topic: TOPIC.into(),
                queue_id: mq.queue_id,
                queue_offset: next as i64,
                max_msg_nums: 32,
                sys_flag: pull_flag::SUSPEND | pull_flag::COMMIT_OFFSET | pull_flag::SUBSCRIPTION,
                commit_offset: next as i64,
                suspend_timeout_millis: PULL_HOLD_MS as i64,
                subscription: Some("*".into()),
                sub_version: 0,
                expression_type: Some("TAG".into()),
                max_msg_bytes: None,
                broker_name: None,
            };
            (Req::Pull(mq.clone()), RemotingCommand::request_with(RequestCode::PullMessage, 0, &h))
        }
    };
    let Some(broker) = c.read_node(w, &mq.broker_name) else { return };
    let o = c.request(w, me, broker, req, cmd);
    if let Some(q) = c.owned.get_mut(mq) {
        q.inflight = Some(o);
    }
}

fn consumer_frame(w: &mut World, me: usize, c: &mut Consumer, cmd: RemotingCommand) {
    if !cmd.is_response() {
        if cmd.request_code() == RequestCode::NotifyConsumerIdsChanged {
            c.last_rebalance = 0;
            w.schedule_timer(me, w.now);
        }
        return;
    }
    let Some((req, _)) = c.pending.remove(&cmd.opaque) else { return };
    let name = w.nodes[me].name.clone();
    match req {
        Req::Heartbeat => {}
        Req::Route => {
            if let Ok(route) = from_json::<TopicRouteData>(&cmd.body) {
                let queues = PublishInfo::readable_queues(TOPIC, &route);
                let addrs: BTreeMap<String, BTreeMap<i64, String>> =
                    route.broker_datas.iter().map(|b| (b.broker_name.clone(), b.broker_addrs.clone())).collect();
                if addrs != c.addrs && !c.addrs.is_empty() {
                    w.trace.line(w.now, &name, "client.route.changed", &format!("{addrs:?}"));
                }
                c.addrs = addrs;
                // A route that lost a group's queues (its master and slave unregistered) keeps
                // the queues known: the group comes back, and rebalance must not shuffle.
                if !queues.is_empty() {
                    c.queues = queues;
                }
            }
        }
        Req::Members => {
            let Ok(list) = from_json::<ConsumerIdList>(&cmd.body) else { return };
            let mine = allocate_averagely(&c.queues, &list.consumer_id_list, &c.client_id);
            let before: Vec<i32> = c.owned.keys().map(|q| q.queue_id).collect();
            c.owned.retain(|q, _| mine.contains(q));
            for q in mine {
                c.owned.entry(q).or_default();
            }
            let after: Vec<i32> = c.owned.keys().map(|q| q.queue_id).collect();
            if before != after {
                w.trace.line(w.now, &name, "client.queues.rebalanced", &format!("queues={after:?}"));
            }
        }
        Req::QueryOffset(mq) => {
            if let Some(q) = c.owned.get_mut(&mq) {
                q.inflight = None;
                q.next =
                    Some(if cmd.code == 0 { cmd.ext("offset").and_then(|o| o.parse().ok()).unwrap_or(0) } else { 0 });
            }
            poll_queue(w, me, c, &mq);
        }
        Req::Pull(mq) => {
            let Some(q) = c.owned.get_mut(&mq) else { return };
            if q.inflight != Some(cmd.opaque) {
                return;
            }
            q.inflight = None;
            let next_begin: Option<u64> = cmd.ext("nextBeginOffset").and_then(|o| o.parse().ok());
            if let Some(id) = cmd.ext("suggestWhichBrokerId").and_then(|s| s.parse::<i64>().ok()) {
                c.suggested.insert(mq.broker_name.clone(), id);
            }
            if cmd.code == 0 {
                for m in decode_messages(&cmd.body).unwrap_or_default() {
                    let key = m.properties.get(prop::UNIQ_KEY).cloned().unwrap_or_default();
                    w.history.check_body(&key, &m.body, w.scenario.body_bytes);
                    w.history.delivered(c.idx, &key, m.queue_id, m.queue_offset as u64, w.now);
                    // Idempotent consumption: a message id seen before is skipped, not processed.
                    if !w.scenario.idempotent || w.processing_log.insert(key.clone()) {
                        w.history.processed(&key);
                    }
                    w.trace.line(
                        w.now,
                        &name,
                        "client.message.consumed",
                        &format!("key={key} queue={} offset={}", m.queue_id, m.queue_offset),
                    );
                }
            }
            if let Some(nb) = next_begin {
                q.next = Some(nb);
            }
            poll_queue(w, me, c, &mq);
        }
    }
}
