//! The producer's decisions, sans-IO: which route to ask for and when, which queue an attempt
//! goes to, when an attempt has timed out, whether a failure is retried (and on which broker),
//! when a send is finished, and when to heartbeat. Both the tokio producer
//! (`rmq_client::Producer`) and the fast simulation lane drive this one state machine; neither
//! decides anything of this itself.
//!
//! # Calling contract
//! Every input carries `now_ms` and returns the outputs it caused, in order:
//! - [`ProducerOutput::FetchRoute`]: ask a NameServer for `ask`'s route; answer with
//!   [`ProducerCore::on_route`].
//! - [`ProducerOutput::Attempt`]: send the message to `addr` for `mq`; answer with
//!   [`ProducerCore::on_response`] or, when the request failed or timed out,
//!   [`ProducerCore::on_error`]. A one-way attempt needs no answer: the send ends there.
//! - [`ProducerOutput::Done`]: the send's outcome; nothing about it follows.
//! - [`ProducerOutput::TimedOut`]: an attempt passed its deadline (the retry decision follows).
//! - [`ProducerOutput::Heartbeat`]: heartbeat every listed broker.
//!
//! Answers for an attempt that is no longer current (timed out, retried, finished) are dropped.
//! [`ProducerCore::tick`] must run by [`ProducerCore::next_wakeup`].
//!
//! ```
//! use rmq_client_core::producer::{ProducerCore, ProducerOutput, ProducerSettings, RouteAnswer, Selection};
//! use rmq_proto::body::{BrokerData, QueueData, TopicRouteData};
//! use rmq_proto::RemotingCommand;
//! let mut core = ProducerCore::new(ProducerSettings::default(), 0);
//! let (send, out) = core.submit("T", Selection::RoundRobin, None, false, 0);
//! let ProducerOutput::FetchRoute { topic, ask } = &out[0] else { panic!() };
//! let route = TopicRouteData {
//!     queue_datas: vec![QueueData { broker_name: "b".into(), read_queue_nums: 1, write_queue_nums: 1, perm: 6, topic_sys_flag: 0 }],
//!     broker_datas: vec![BrokerData { cluster: "c".into(), broker_name: "b".into(),
//!         broker_addrs: [(0, "127.0.0.1:10911".to_string())].into(), zone_name: None, enable_acting_master: false }],
//!     ..Default::default()
//! };
//! let out = core.on_route(&topic.clone(), &ask.clone(), RouteAnswer::Found(route), 5);
//! let ProducerOutput::Attempt { attempt, .. } = out[0].clone() else { panic!() };
//! let ok = RemotingCommand::response_to(&RemotingCommand::request(310, 0), rmq_proto::ResponseCode::Success)
//!     .with_ext("queueId", "0").with_ext("queueOffset", "7");
//! let out = core.on_response(send, attempt, &ok, 9);
//! assert!(matches!(&out[0], ProducerOutput::Done { outcome: Ok(s), .. } if s.queue_offset == 7));
//! core.assert_invariants();
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use rmq_proto::body::{MessageQueue, TopicRouteData};
use rmq_proto::codes::RequestCode;
use rmq_proto::header::SendMessageRequestHeader;
use rmq_proto::message::encode_properties_with;
use rmq_proto::{RemotingCommand, ResponseCode};

use crate::retry::{is_retryable, stored_status, SendStatus, RETRY_TIMES_WHEN_SEND_FAILED};
use crate::PublishInfo;

/// Identifies one send across its attempts.
pub type SendId = u64;

/// The topic whose route stands in for a topic the NameServer does not know (auto-creation).
pub const DEFAULT_TOPIC: &str = "TBW102";
/// Queues per topic asked for when a topic is auto-created.
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;
/// A route request unanswered this long is abandoned (and asked again when a send waits).
pub const ROUTE_ASK_TIMEOUT_MS: u64 = 3_000;

/// The producer's timing and retry settings (RocketMQ's names in brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProducerSettings {
    /// Time a whole send may take, all attempts together [sendMsgTimeout].
    pub send_timeout_ms: u64,
    /// Time one attempt may take (at most what is left of the send's time).
    pub attempt_timeout_ms: u64,
    /// Retries after the first attempt [retryTimesWhenSendFailed].
    pub retry_times: u32,
    /// Route refresh period [pollNameServerInterval].
    pub route_refresh_ms: u64,
    /// Broker heartbeat period [heartbeatBrokerInterval].
    pub heartbeat_interval_ms: u64,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            send_timeout_ms: 3_000,
            attempt_timeout_ms: 3_000,
            retry_times: RETRY_TIMES_WHEN_SEND_FAILED,
            route_refresh_ms: 30_000,
            heartbeat_interval_ms: 30_000,
        }
    }
}

/// Where a send's attempts go.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selection {
    /// Round-robin over the writable queues; a retry avoids the broker that failed.
    RoundRobin,
    /// The queue `hash(key) mod queues` (every attempt: order is per queue).
    ByKey(String),
    /// This queue (every attempt).
    Queue(MessageQueue),
}

/// A NameServer's answer to a route request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteAnswer {
    /// The route.
    Found(TopicRouteData),
    /// TOPIC_NOT_EXIST.
    NotExist,
    /// No NameServer answered usefully.
    Unreachable(String),
}

/// A send the broker stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Stored {
    /// Stored status.
    pub status: SendStatus,
    /// The queue it went to (the broker's queue id).
    pub queue: MessageQueue,
    /// Its queue offset (-1 when the broker did not say).
    pub queue_offset: i64,
    /// The broker's offset message id.
    pub offset_msg_id: String,
    /// Attempts it took.
    pub attempts: u32,
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SendFailure {
    /// No writable queue for the topic.
    NoRoute {
        /// Topic.
        topic: String,
        /// Why.
        cause: String,
    },
    /// A broker refused the message with a code that is not retried.
    Rejected {
        /// Broker name.
        broker: String,
        /// Response code.
        code: i32,
        /// Remark.
        remark: String,
    },
    /// Every attempt failed, or the send's time ran out.
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProducerOutput {
    /// Ask a NameServer for `ask`'s route, on behalf of `topic`.
    FetchRoute {
        /// The topic the route is for.
        topic: String,
        /// The topic to ask about (`topic`, or [`DEFAULT_TOPIC`] for auto-creation).
        ask: String,
    },
    /// Send attempt `attempt` of `send`.
    Attempt {
        /// The send.
        send: SendId,
        /// 1-based attempt number.
        attempt: u32,
        /// Target queue.
        mq: MessageQueue,
        /// Its broker's master address.
        addr: String,
        /// Give up on this attempt after this long.
        timeout_ms: u64,
        /// No answer is asked for; the send ends with this attempt.
        oneway: bool,
    },
    /// An attempt passed its deadline.
    TimedOut {
        /// The send.
        send: SendId,
        /// The attempt.
        attempt: u32,
    },
    /// The send is finished.
    Done {
        /// The send.
        send: SendId,
        /// Its outcome.
        outcome: Result<Stored, SendFailure>,
    },
    /// Heartbeat these brokers.
    Heartbeat {
        /// Broker addresses, sorted.
        addrs: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
struct TopicState {
    /// Writable queues (kept from the last route that had any).
    info: PublishInfo,
    /// Every broker address of the last route.
    addrs: BTreeSet<String>,
    /// When the route was last asked for.
    asked_at: Option<u64>,
    /// A request outstanding: the topic asked about, and since when.
    asking: Option<(String, u64)>,
}

impl TopicState {
    /// When a tick must look at this topic: its outstanding request is abandoned, or its route
    /// is due for a refresh (at once if it was never asked for).
    fn due(&self, refresh_ms: u64) -> u64 {
        match &self.asking {
            Some((_, since)) => since + ROUTE_ASK_TIMEOUT_MS,
            None => self.asked_at.map_or(0, |at| at + refresh_ms),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Pending {
    topic: String,
    selection: Selection,
    attempts_max: u32,
    oneway: bool,
    deadline_ms: u64,
    /// Current attempt (0: waiting for a route).
    attempt: u32,
    /// The current attempt's queue and deadline.
    current: Option<(MessageQueue, u64)>,
    last: String,
}

/// The producer's state: routes, sends in flight, timers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProducerCore {
    settings: ProducerSettings,
    topics: BTreeMap<String, TopicState>,
    /// Every topic's next timer ([`TopicState::due`]), so a tick visits only the topics whose
    /// time has come and the next wakeup is the first entry: a producer may know 10,000 topics,
    /// whose route refreshes (one per topic every `route_refresh_ms`) wake it every few ms.
    timers: BTreeSet<(u64, String)>,
    pending: BTreeMap<SendId, Pending>,
    next_send: SendId,
    last_heartbeat_ms: u64,
    /// A heartbeat went out: the first goes as soon as a route names a broker (RocketMQ's
    /// producer heartbeats when it starts), so the brokers know the group at once (a
    /// transactional producer is asked about its half messages only once they do).
    joined: bool,
}

impl ProducerCore {
    /// A producer with no routes, started at `now_ms`.
    pub fn new(settings: ProducerSettings, now_ms: u64) -> Self {
        ProducerCore {
            settings,
            topics: BTreeMap::new(),
            timers: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_send: 1,
            last_heartbeat_ms: now_ms,
            joined: false,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ProducerSettings {
        &self.settings
    }

    /// Sends not finished yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// A topic's writable queues, when a route gave any.
    pub fn publish_info(&self, topic: &str) -> Option<&PublishInfo> {
        self.topics.get(topic).map(|t| &t.info).filter(|i| !i.queues.is_empty())
    }

    /// Every broker address of the known routes, sorted.
    pub fn broker_addrs(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self.topics.values().flat_map(|t| t.addrs.iter()).collect();
        all.into_iter().cloned().collect()
    }

    /// Starts a send of a message to `topic`. `attempts` defaults to 1 + the retry setting; a
    /// one-way send makes one attempt.
    pub fn submit(
        &mut self,
        topic: &str,
        selection: Selection,
        attempts: Option<u32>,
        oneway: bool,
        now_ms: u64,
    ) -> (SendId, Vec<ProducerOutput>) {
        let send = self.next_send;
        self.next_send += 1;
        let attempts_max = if oneway { 1 } else { attempts.unwrap_or(1 + self.settings.retry_times).max(1) };
        self.pending.insert(
            send,
            Pending {
                topic: topic.to_string(),
                selection,
                attempts_max,
                oneway,
                deadline_ms: now_ms + self.settings.send_timeout_ms,
                attempt: 0,
                current: None,
                last: String::new(),
            },
        );
        let mut out = Vec::new();
        if self.publish_info(topic).is_some() {
            self.attempt(send, None, now_ms, &mut out);
        } else {
            self.ask(topic, topic, now_ms, &mut out);
        }
        (send, out)
    }

    /// Asks for `topic`'s route unless it has writable queues or a request is outstanding (for a
    /// caller that must see the queues before it sends, such as a queue selector).
    pub fn want_route(&mut self, topic: &str, now_ms: u64) -> Vec<ProducerOutput> {
        let mut out = Vec::new();
        if self.publish_info(topic).is_none() {
            self.ask(topic, topic, now_ms, &mut out);
        }
        out
    }

    /// A NameServer answered the route request for `topic` (asked as `ask`).
    pub fn on_route(&mut self, topic: &str, ask: &str, answer: RouteAnswer, now_ms: u64) -> Vec<ProducerOutput> {
        let mut out = Vec::new();
        let Some(t) = self.topics.get_mut(topic) else { return out };
        if t.asking.as_ref().map(|(a, _)| a.as_str()) != Some(ask) {
            return out;
        }
        let before = t.due(self.settings.route_refresh_ms);
        t.asking = None;
        retime(&mut self.timers, topic, Some(before), t.due(self.settings.route_refresh_ms));
        let mut join = false;
        let failure = match answer {
            RouteAnswer::Found(mut route) => {
                if ask == DEFAULT_TOPIC && topic != DEFAULT_TOPIC {
                    for qd in route.queue_datas.iter_mut() {
                        qd.write_queue_nums = qd.write_queue_nums.min(DEFAULT_TOPIC_QUEUE_NUMS);
                        qd.read_queue_nums = qd.read_queue_nums.min(DEFAULT_TOPIC_QUEUE_NUMS);
                    }
                }
                t.addrs = route.broker_datas.iter().flat_map(|b| b.broker_addrs.values().cloned()).collect();
                // A route without a writable queue replaces the last one too (as RocketMQ's
                // does): the next send asks again rather than waiting out a dead master.
                let mut info = PublishInfo::from_route(topic, &route);
                info.rotor = t.info.rotor;
                t.info = info;
                join = !self.joined && !route.broker_datas.is_empty();
                "no writable queue on a broker with a live master".to_string()
            }
            RouteAnswer::NotExist if ask != DEFAULT_TOPIC => {
                self.ask(topic, DEFAULT_TOPIC, now_ms, &mut out);
                return out;
            }
            RouteAnswer::NotExist => format!("topic {topic} does not exist and {DEFAULT_TOPIC} has no route"),
            RouteAnswer::Unreachable(why) => why,
        };
        let waiting: Vec<SendId> =
            self.pending.iter().filter(|(_, p)| p.topic == topic && p.attempt == 0).map(|(s, _)| *s).collect();
        let ready = self.publish_info(topic).is_some();
        for send in waiting {
            if ready {
                self.attempt(send, None, now_ms, &mut out);
            } else {
                self.pending.remove(&send);
                let cause = failure.clone();
                out.push(ProducerOutput::Done {
                    send,
                    outcome: Err(SendFailure::NoRoute { topic: topic.to_string(), cause }),
                });
            }
        }
        if join {
            self.joined = true;
            self.last_heartbeat_ms = now_ms;
            out.push(ProducerOutput::Heartbeat { addrs: self.broker_addrs() });
        }
        out
    }

    /// A broker answered attempt `attempt` of `send`.
    pub fn on_response(
        &mut self,
        send: SendId,
        attempt: u32,
        resp: &RemotingCommand,
        now_ms: u64,
    ) -> Vec<ProducerOutput> {
        let mut out = Vec::new();
        let Some((mq, _)) = self.current(send, attempt) else { return out };
        let code = ResponseCode::from_code(resp.code);
        if let Some(status) = stored_status(code) {
            self.pending.remove(&send);
            let queue_id = resp.ext("queueId").and_then(|q| q.parse().ok()).unwrap_or(mq.queue_id);
            let stored = Stored {
                status,
                queue: MessageQueue { queue_id, ..mq },
                queue_offset: resp.ext("queueOffset").and_then(|q| q.parse().ok()).unwrap_or(-1),
                offset_msg_id: resp.ext("msgId").unwrap_or_default().to_string(),
                attempts: attempt,
            };
            out.push(ProducerOutput::Done { send, outcome: Ok(stored) });
            return out;
        }
        let remark = resp.remark.clone().unwrap_or_default();
        if is_retryable(code) {
            let why = format!("broker {} answered code {}: {remark}", mq.broker_name, resp.code);
            self.failed(send, why, now_ms, &mut out);
        } else {
            self.pending.remove(&send);
            let failure = SendFailure::Rejected { broker: mq.broker_name, code: resp.code, remark };
            out.push(ProducerOutput::Done { send, outcome: Err(failure) });
        }
        out
    }

    /// Attempt `attempt` of `send` failed without an answer (connection lost, timed out).
    pub fn on_error(&mut self, send: SendId, attempt: u32, cause: &str, now_ms: u64) -> Vec<ProducerOutput> {
        let mut out = Vec::new();
        if self.current(send, attempt).is_some() {
            self.failed(send, cause.to_string(), now_ms, &mut out);
        }
        out
    }

    /// Time passed: attempt and send deadlines, route requests, refreshes, heartbeats.
    pub fn tick(&mut self, now_ms: u64) -> Vec<ProducerOutput> {
        let mut out = Vec::new();
        let expired: Vec<(SendId, u32)> = self
            .pending
            .iter()
            .filter(|(_, p)| match p.current {
                Some((_, deadline)) => now_ms >= deadline,
                None => now_ms >= p.deadline_ms,
            })
            .map(|(s, p)| (*s, p.attempt))
            .collect();
        for (send, attempt) in expired {
            if attempt == 0 {
                let p = self.pending.remove(&send).expect("listed above");
                let cause = format!("no route within the send timeout of {} ms", self.settings.send_timeout_ms);
                out.push(ProducerOutput::Done { send, outcome: Err(SendFailure::NoRoute { topic: p.topic, cause }) });
            } else {
                out.push(ProducerOutput::TimedOut { send, attempt });
                self.failed(send, format!("attempt {attempt} timed out"), now_ms, &mut out);
            }
        }
        // Only the topics whose timer is due are visited (a producer may know 10,000).
        let refresh_ms = self.settings.route_refresh_ms;
        let work: Vec<String> =
            self.timers.iter().take_while(|(due, _)| *due <= now_ms).map(|(_, topic)| topic.clone()).collect();
        for topic in work {
            let t = self.topics.get_mut(&topic).expect("a timer names a known topic");
            let before = t.due(refresh_ms);
            let abandoned = t.asking.is_some();
            if abandoned {
                t.asking = None;
            }
            let due = t.asked_at.is_none_or(|at| now_ms >= at + refresh_ms);
            retime(&mut self.timers, &topic, Some(before), t.due(refresh_ms));
            let waiting = abandoned && self.pending.values().any(|p| p.attempt == 0 && p.topic == topic);
            if due || waiting {
                self.ask(&topic, &topic, now_ms, &mut out);
            }
        }
        if now_ms >= self.last_heartbeat_ms + self.settings.heartbeat_interval_ms {
            self.last_heartbeat_ms = now_ms;
            let addrs = self.broker_addrs();
            if !addrs.is_empty() {
                out.push(ProducerOutput::Heartbeat { addrs });
            }
        }
        out
    }

    /// No deadline a [`ProducerCore::submit`] at `now_ms` creates comes before this (a driver
    /// sleeping until earlier need not be woken by a new send). O(1), unlike
    /// [`Self::next_wakeup`], which visits every topic.
    pub fn earliest_deadline_of_a_send(&self, now_ms: u64) -> u64 {
        let s = &self.settings;
        now_ms + s.attempt_timeout_ms.min(s.send_timeout_ms).clamp(1, ROUTE_ASK_TIMEOUT_MS)
    }

    /// When [`ProducerCore::tick`] must run next.
    pub fn next_wakeup(&self) -> u64 {
        let sends = self.pending.values().map(|p| p.current.as_ref().map_or(p.deadline_ms, |(_, d)| *d));
        let asks = self.timers.first().map(|(due, _)| *due);
        sends
            .chain(asks)
            .chain([self.last_heartbeat_ms + self.settings.heartbeat_interval_ms])
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Checks the core's own consistency; panics naming what broke.
    pub fn assert_invariants(&self) {
        for (send, p) in &self.pending {
            assert!(*send < self.next_send, "send {send} was never issued");
            assert!(p.attempt <= p.attempts_max, "send {send}: attempt {} of {}", p.attempt, p.attempts_max);
            assert_eq!(p.attempt == 0, p.current.is_none(), "send {send}: an attempt without a queue");
            assert!(!p.oneway || p.attempt == 0, "one-way send {send} still pending after its attempt");
            assert!(self.topics.contains_key(&p.topic), "send {send}: topic {} unknown", p.topic);
        }
        let refresh_ms = self.settings.route_refresh_ms;
        let expected: BTreeSet<(u64, String)> = self
            .topics
            .iter()
            .filter(|(_, t)| t.asked_at.is_some())
            .map(|(name, t)| (t.due(refresh_ms), name.clone()))
            .collect();
        assert_eq!(self.timers, expected, "topic timers out of step with the topics");
    }

    fn current(&self, send: SendId, attempt: u32) -> Option<(MessageQueue, u64)> {
        self.pending.get(&send).filter(|p| p.attempt == attempt).and_then(|p| p.current.clone())
    }

    fn ask(&mut self, topic: &str, ask: &str, now_ms: u64, out: &mut Vec<ProducerOutput>) {
        let refresh_ms = self.settings.route_refresh_ms;
        let t = self.topics.entry(topic.to_string()).or_default();
        if t.asking.is_some() {
            return;
        }
        let before = (t.asked_at.is_some()).then(|| t.due(refresh_ms));
        t.asking = Some((ask.to_string(), now_ms));
        t.asked_at = Some(now_ms);
        retime(&mut self.timers, topic, before, t.due(refresh_ms));
        out.push(ProducerOutput::FetchRoute { topic: topic.to_string(), ask: ask.to_string() });
    }

    /// The current attempt failed: retry (elsewhere, if the selection allows) or finish.
    fn failed(&mut self, send: SendId, why: String, now_ms: u64, out: &mut Vec<ProducerOutput>) {
        let Some(p) = self.pending.get_mut(&send) else { return };
        p.last = why;
        let avoid = p.current.take().map(|(mq, _)| mq.broker_name);
        let topic = p.topic.clone();
        let spent = p.attempt >= p.attempts_max || now_ms >= p.deadline_ms;
        // The route may be what failed (a broker gone): learn it again, whether or not this
        // send retries, so the next send does not wait out the same dead broker.
        self.ask(&topic, &topic, now_ms, out);
        if spent {
            let p = self.pending.remove(&send).expect("present");
            let last = if now_ms >= p.deadline_ms && p.attempt < p.attempts_max {
                format!("send timeout of {} ms spent; {}", self.settings.send_timeout_ms, p.last)
            } else {
                p.last
            };
            out.push(ProducerOutput::Done { send, outcome: Err(SendFailure::Exhausted { attempts: p.attempt, last }) });
            return;
        }
        self.attempt(send, avoid.as_deref(), now_ms, out);
    }

    /// Makes the next attempt of `send`.
    fn attempt(&mut self, send: SendId, avoid: Option<&str>, now_ms: u64, out: &mut Vec<ProducerOutput>) {
        let Some(p) = self.pending.get(&send) else { return };
        let Some(t) = self.topics.get_mut(&p.topic) else { return };
        let mq = match &p.selection {
            Selection::RoundRobin => t.info.select(avoid).cloned(),
            Selection::ByKey(key) => t.info.select_by_key(key).cloned(),
            Selection::Queue(mq) => Some(mq.clone()),
        };
        let addr = mq.as_ref().and_then(|mq| t.info.masters.get(&mq.broker_name).cloned());
        let (Some(mq), Some(addr)) = (mq, addr) else {
            let p = self.pending.remove(&send).expect("present");
            let cause = "no writable queue on a broker with a live master".to_string();
            out.push(ProducerOutput::Done { send, outcome: Err(SendFailure::NoRoute { topic: p.topic, cause }) });
            return;
        };
        let p = self.pending.get_mut(&send).expect("present");
        let timeout_ms = self.settings.attempt_timeout_ms.min(p.deadline_ms.saturating_sub(now_ms)).max(1);
        p.attempt += 1;
        let attempt = p.attempt;
        let oneway = p.oneway;
        out.push(ProducerOutput::Attempt { send, attempt, mq: mq.clone(), addr, timeout_ms, oneway });
        if oneway {
            self.pending.remove(&send);
        } else {
            p.current = Some((mq, now_ms + timeout_ms));
        }
    }
}

/// Moves `topic`'s timer from `before` (none: it had none) to `after`.
fn retime(timers: &mut BTreeSet<(u64, String)>, topic: &str, before: Option<u64>, after: u64) {
    if before == Some(after) {
        return;
    }
    if let Some(before) = before {
        let removed = timers.remove(&(before, topic.to_string()));
        debug_assert!(removed, "topic {topic} had no timer at {before}");
    }
    timers.insert((after, topic.to_string()));
}

/// The fields of a SEND_MESSAGE_V2 (or SEND_BATCH_MESSAGE) request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SendRequest<'a> {
    /// Producer group.
    pub group: &'a str,
    /// Target queue.
    pub mq: &'a MessageQueue,
    /// Born timestamp (ms since the epoch).
    pub born_ms: i64,
    /// User flag.
    pub flag: i32,
    /// Properties (UNIQ_KEY included by the caller; a single message gets WAIT=true here unless
    /// it sets WAIT itself).
    pub properties: &'a BTreeMap<String, String>,
    /// Body (an encoded batch when `batch`).
    pub body: Bytes,
    /// A SEND_BATCH_MESSAGE.
    pub batch: bool,
}

impl SendRequest<'_> {
    /// The properties string: a single message waits for the store (RocketMQ's
    /// waitStoreMsgOK, on by default), a batch's messages carry their own properties.
    fn encoded_properties(&self) -> String {
        let wait = (!self.batch).then_some((rmq_proto::message::prop::WAIT, "true"));
        encode_properties_with(self.properties, wait)
    }

    /// The request, in the compact ROCKETMQ header encoding (the broker answers in kind).
    pub fn command(&self) -> RemotingCommand {
        let h = SendMessageRequestHeader {
            producer_group: self.group.to_string(),
            topic: self.mq.topic.clone(),
            default_topic: DEFAULT_TOPIC.into(),
            default_topic_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
            queue_id: self.mq.queue_id,
            // A message marked TRAN_MSG is a half message (RocketMQ's client does the same).
            sys_flag: if self.properties.get(rmq_proto::message::prop::TRAN_MSG).is_some_and(|v| v == "true") {
                rmq_proto::codes::sys_flag::TRANSACTION_PREPARED
            } else {
                0
            },
            born_timestamp: self.born_ms,
            flag: self.flag,
            properties: Some(self.encoded_properties()),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: Some(self.batch),
            max_reconsume_times: None,
            broker_name: Some(self.mq.broker_name.clone()),
        };
        let code = if self.batch { RequestCode::SendBatchMessage } else { RequestCode::SendMessageV2 };
        let mut cmd = RemotingCommand::request(code, 0).with_body(self.body.clone());
        cmd.ext_fields = h.to_ext_v2();
        cmd.serialize_type = rmq_proto::SerializeType::RocketMq;
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(brokers: &[&str]) -> TopicRouteData {
        let with_master: Vec<(&str, bool)> = brokers.iter().map(|b| (*b, true)).collect();
        crate::tests::route(&with_master)
    }

    fn resp(code: i32) -> RemotingCommand {
        RemotingCommand::response_to(&RemotingCommand::request(310, 0), ResponseCode::from_code(code))
    }

    fn ready(brokers: &[&str]) -> ProducerCore {
        let mut core = ProducerCore::new(ProducerSettings::default(), 0);
        let (_, out) = core.submit("T", Selection::RoundRobin, None, true, 0);
        assert_eq!(out, vec![ProducerOutput::FetchRoute { topic: "T".into(), ask: "T".into() }]);
        let out = core.on_route("T", "T", RouteAnswer::Found(route(brokers)), 0);
        assert!(matches!(out[..], [ProducerOutput::Attempt { oneway: true, .. }, ProducerOutput::Heartbeat { .. }]));
        core
    }

    fn attempt_of(out: &[ProducerOutput]) -> (u32, MessageQueue, u64) {
        out.iter()
            .find_map(|o| match o {
                ProducerOutput::Attempt { attempt, mq, timeout_ms, .. } => Some((*attempt, mq.clone(), *timeout_ms)),
                _ => None,
            })
            .expect("an attempt")
    }

    fn done(out: &[ProducerOutput]) -> Option<Result<Stored, SendFailure>> {
        out.iter().find_map(|o| match o {
            ProducerOutput::Done { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
    }

    #[test]
    fn a_retryable_answer_is_retried_on_another_broker_and_a_stored_one_is_not() {
        let mut core = ready(&["a", "b"]);
        let (send, out) = core.submit("T", Selection::RoundRobin, None, false, 10);
        let (n, first, _) = attempt_of(&out);
        assert_eq!(n, 1);
        let busy = resp(ResponseCode::SystemBusy.code());
        let out = core.on_response(send, 1, &busy, 20);
        let (n, second, _) = attempt_of(&out);
        assert_eq!(n, 2);
        assert_ne!(first.broker_name, second.broker_name, "the retry avoids the broker that failed");
        assert!(out.iter().any(|o| matches!(o, ProducerOutput::FetchRoute { .. })), "a failure refreshes the route");
        // A late answer to attempt 1 is stale: dropped.
        assert!(core.on_response(send, 1, &resp(0), 21).is_empty());
        let stored = resp(ResponseCode::FlushDiskTimeout.code()).with_ext("queueOffset", "3");
        let outcome = done(&core.on_response(send, 2, &stored, 30)).expect("finished").expect("stored");
        assert_eq!((outcome.status, outcome.queue_offset, outcome.attempts), (SendStatus::FlushDiskTimeout, 3, 2));
        assert_eq!(core.pending_len(), 0);
        core.assert_invariants();
    }

    #[test]
    fn a_refusal_that_is_not_retryable_ends_the_send() {
        let mut core = ready(&["a", "b"]);
        let (send, _) = core.submit("T", Selection::RoundRobin, None, false, 10);
        let illegal = resp(ResponseCode::MessageIllegal.code()).with_remark("too big");
        let out = core.on_response(send, 1, &illegal, 11);
        assert!(matches!(done(&out), Some(Err(SendFailure::Rejected { code: 13, .. }))), "{out:?}");
    }

    #[test]
    fn attempts_time_out_and_the_send_deadline_bounds_the_retries() {
        let settings = ProducerSettings { send_timeout_ms: 5_000, attempt_timeout_ms: 2_000, ..Default::default() };
        let mut core = ProducerCore::new(settings, 0);
        let (_, out) = core.submit("T", Selection::RoundRobin, None, false, 0);
        assert!(matches!(&out[0], ProducerOutput::FetchRoute { .. }));
        let out = core.on_route("T", "T", RouteAnswer::Found(route(&["a", "b"])), 0);
        assert_eq!(attempt_of(&out).2, 2_000);
        assert_eq!(core.next_wakeup(), 2_000);
        assert!(core.tick(1_999).is_empty());
        let out = core.tick(2_000);
        assert!(matches!(out[0], ProducerOutput::TimedOut { attempt: 1, .. }));
        assert_eq!(attempt_of(&out).0, 2);
        let out = core.tick(4_000);
        let (n, _, timeout) = attempt_of(&out);
        assert_eq!((n, timeout), (3, 1_000), "the last attempt gets what is left of the send's time");
        let out = core.tick(5_000);
        assert!(matches!(done(&out), Some(Err(SendFailure::Exhausted { attempts: 3, .. }))), "{out:?}");
        core.assert_invariants();
    }

    #[test]
    fn a_send_that_fails_for_good_still_refreshes_the_route_for_the_next_one() {
        // One broker, one attempt that times out: the send ends, and the route is asked again
        // so the next send learns the master is gone instead of waiting it out too.
        let settings = ProducerSettings { send_timeout_ms: 3_000, attempt_timeout_ms: 3_000, ..Default::default() };
        let mut core = ProducerCore::new(settings, 0);
        core.submit("T", Selection::RoundRobin, None, false, 0);
        core.on_route("T", "T", RouteAnswer::Found(route(&["a"])), 0);
        let out = core.tick(3_000);
        assert!(matches!(done(&out), Some(Err(SendFailure::Exhausted { attempts: 1, .. }))), "{out:?}");
        assert!(out.contains(&ProducerOutput::FetchRoute { topic: "T".into(), ask: "T".into() }), "{out:?}");
        let mut gone = route(&["a"]);
        gone.broker_datas[0].broker_addrs = [(1, "a-slave:1".to_string())].into();
        core.on_route("T", "T", RouteAnswer::Found(gone.clone()), 3_001);
        assert!(core.publish_info("T").is_none(), "a route without a master replaces the last one");
        let (_, out) = core.submit("T", Selection::RoundRobin, None, false, 3_002);
        assert_eq!(out, vec![ProducerOutput::FetchRoute { topic: "T".into(), ask: "T".into() }]);
        let out = core.on_route("T", "T", RouteAnswer::Found(gone), 3_010);
        assert!(matches!(done(&out), Some(Err(SendFailure::NoRoute { .. }))), "{out:?}");
        core.assert_invariants();
    }

    #[test]
    fn an_unknown_topic_is_sent_by_the_default_topics_route_and_a_missing_one_fails() {
        let mut core = ProducerCore::new(ProducerSettings::default(), 0);
        let (_, out) = core.submit("New", Selection::RoundRobin, None, false, 0);
        assert_eq!(out, vec![ProducerOutput::FetchRoute { topic: "New".into(), ask: "New".into() }]);
        let out = core.on_route("New", "New", RouteAnswer::NotExist, 1);
        assert_eq!(out, vec![ProducerOutput::FetchRoute { topic: "New".into(), ask: DEFAULT_TOPIC.into() }]);
        let mut r = route(&["a"]);
        r.queue_datas[0].write_queue_nums = 16;
        let out = core.on_route("New", DEFAULT_TOPIC, RouteAnswer::Found(r), 2);
        assert_eq!(attempt_of(&out).1.topic, "New");
        assert_eq!(core.publish_info("New").expect("routed").queues.len(), DEFAULT_TOPIC_QUEUE_NUMS as usize);

        let (_, out) = core.submit("Gone", Selection::RoundRobin, None, false, 3);
        assert_eq!(out.len(), 1);
        let out = core.on_route("Gone", "Gone", RouteAnswer::Unreachable("no name server".into()), 4);
        assert!(matches!(done(&out), Some(Err(SendFailure::NoRoute { .. }))), "{out:?}");
        core.assert_invariants();
    }

    #[test]
    fn a_key_keeps_its_queue_on_retry_and_routes_refresh_and_heartbeat_on_time() {
        let mut core = ready(&["a", "b"]);
        let (send, out) = core.submit("T", Selection::ByKey("k".into()), Some(2), false, 0);
        let (_, q1, _) = attempt_of(&out);
        let out = core.on_error(send, 1, "connection reset", 5);
        assert_eq!(attempt_of(&out).1, q1);
        let out = core.on_error(send, 2, "connection reset", 6);
        assert!(matches!(done(&out), Some(Err(SendFailure::Exhausted { attempts: 2, .. }))));
        // The failure above asked for the route at 5 ms; answer it, then wait for the refresh.
        core.on_route("T", "T", RouteAnswer::Found(route(&["a", "b"])), 7);
        let refresh = core.settings().route_refresh_ms;
        let early = core.tick(5 + refresh - 1);
        assert!(!early.iter().any(|o| matches!(o, ProducerOutput::FetchRoute { .. })), "{early:?}");
        assert!(early.contains(&ProducerOutput::Heartbeat { addrs: vec!["a:1".into(), "b:1".into()] }), "{early:?}");
        let out = core.tick(5 + refresh);
        assert!(out.contains(&ProducerOutput::FetchRoute { topic: "T".into(), ask: "T".into() }), "{out:?}");
        assert!(!out.iter().any(|o| matches!(o, ProducerOutput::Heartbeat { .. })), "one heartbeat per period");
    }

    #[test]
    fn routes_learnt_at_different_times_refresh_one_by_one_and_set_the_next_wakeup() {
        // 1,000 topics routed 10 ms apart: each refresh falls due on its own, a tick asks for
        // exactly the due ones, and the next wakeup is the earliest timer left.
        let settings = ProducerSettings { heartbeat_interval_ms: u64::MAX / 4, ..Default::default() };
        let refresh = settings.route_refresh_ms;
        let mut core = ProducerCore::new(settings, 0);
        let topics: Vec<String> = (0..1_000).map(|i| format!("T{i:04}")).collect();
        for (i, topic) in topics.iter().enumerate() {
            let at = 10 * i as u64;
            core.want_route(topic, at);
            core.on_route(topic, topic, RouteAnswer::Found(route(&["a"])), at);
        }
        core.assert_invariants();
        assert_eq!(core.next_wakeup(), refresh, "the first topic's refresh");
        assert!(core.tick(refresh - 1).is_empty());
        let asked = |out: &[ProducerOutput]| -> Vec<String> {
            out.iter()
                .filter_map(|o| match o {
                    ProducerOutput::FetchRoute { topic, .. } => Some(topic.clone()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(asked(&core.tick(refresh + 25)), topics[..3].to_vec());
        // The three asked are outstanding: the next timer is the fourth topic's refresh.
        assert_eq!(core.next_wakeup(), refresh + 30);
        core.assert_invariants();
        // One answer comes back; the other two are abandoned after ROUTE_ASK_TIMEOUT_MS and
        // wait for their next refresh (no send is waiting for them).
        core.on_route(&topics[0], &topics[0], RouteAnswer::Found(route(&["a"])), refresh + 26);
        let later = refresh + 25 + ROUTE_ASK_TIMEOUT_MS;
        let last_due = ((later - refresh) / 10) as usize;
        assert_eq!(asked(&core.tick(later)), topics[3..=last_due].to_vec(), "only the newly due topics");
        core.assert_invariants();
        assert_eq!(core.next_wakeup(), refresh + 10 * (last_due as u64 + 1));
        assert!(asked(&core.tick(2 * refresh + 25)).contains(&topics[1]), "an abandoned ask refreshes on time");
        core.assert_invariants();
    }

    #[test]
    fn an_unanswered_route_request_is_asked_again_while_a_send_waits() {
        let mut core = ProducerCore::new(ProducerSettings { send_timeout_ms: 10_000, ..Default::default() }, 0);
        core.submit("T", Selection::RoundRobin, None, false, 0);
        assert!(core.tick(ROUTE_ASK_TIMEOUT_MS - 1).is_empty());
        let out = core.tick(ROUTE_ASK_TIMEOUT_MS);
        assert_eq!(out, vec![ProducerOutput::FetchRoute { topic: "T".into(), ask: "T".into() }]);
        let out = core.tick(10_000);
        assert!(matches!(done(&out), Some(Err(SendFailure::NoRoute { .. }))), "{out:?}");
    }
}
