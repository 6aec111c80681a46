//! The oracle: reads the history of a run (sends, acknowledgements, deliveries, offset
//! commits, crashes) plus what the broker finally holds, and checks MQ semantics.

use std::collections::{BTreeMap, BTreeSet};

use rmq_broker_core::Event;
use rmq_proto::message::{decode_message, prop};
use rmq_store::{Directory, MessageStore};
use serde::Serialize;

use crate::disk::SimDisk;
use crate::scenario::{Floors, Scenario};
use crate::world::{World, TOPIC};

/// Everything observed during a run.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Keys producers tried to send.
    pub sent: BTreeSet<String>,
    /// Keys answered SEND_OK → (queue, queue offset).
    pub acked: BTreeMap<String, (i32, u64)>,
    /// Sends that gave up.
    pub failed: u64,
    /// Sends stored without durability confirmation (FLUSH_DISK_TIMEOUT...).
    pub unconfirmed: u64,
    /// key → number of deliveries.
    pub deliveries: BTreeMap<String, u32>,
    /// Deliveries in total.
    pub delivered_total: u64,
    /// key → times the application processed it (after any deduplication).
    pub processed: BTreeMap<String, u32>,
    /// Node crashes.
    pub crashes: u64,
    /// Key → simulated time its SEND_OK arrived.
    pub acked_at_ms: BTreeMap<String, u64>,
    /// Key → simulated time of its first delivery.
    pub first_delivered_ms: BTreeMap<String, u64>,
    /// (broker node, broker epoch, group, topic, queue) → last committed offset.
    committed: BTreeMap<(usize, u64, String, String, i32), u64>,
    /// Safety violations found while the run was going.
    pub violations: Vec<String>,
    /// SEND_OKs under double sync (SYNC_FLUSH + SYNC_MASTER) whose message the slave did not
    /// hold when the producer got the answer.
    pub replica_violations: Vec<String>,
    /// Deliveries whose body differed from what was sent.
    pub damaged_bodies: u64,
    /// SEND_OKs per (broker group, queue): how producers spread the load.
    pub acked_per_queue: BTreeMap<(String, i32), u64>,
    /// Key → every consumption attempt: (simulated ms, reconsume times, failed).
    pub attempts: BTreeMap<String, Vec<(u64, i32, bool)>>,
    /// Key → when its producer began sending it.
    pub send_began_ms: BTreeMap<String, u64>,
    /// Key → when its producer gave up on it.
    pub send_failed_ms: BTreeMap<String, u64>,
    /// Orderly scenarios (`order_keys`): messages `p<i>-<seq>` share the order key
    /// `p<i>-k<seq % order_keys>`; 0: no order is judged.
    pub order_keys: u32,
    /// Order key → the message being processed now: (member, key, position).
    order_open: BTreeMap<String, (String, String, Position)>,
    /// Order key → every position known to hold one of its messages (acknowledged there, or
    /// delivered from there) → whether a member finished it (consumed, or dead-lettered).
    order_known: BTreeMap<String, BTreeMap<Position, (String, bool)>>,
    /// Per-key order broken: a message processed beside, or before, an earlier one of its key.
    pub order_violations: Vec<String>,
    /// Processings judged for order.
    pub order_checked: u64,
    /// Transactional producers: a message may reach a consumer only once its transaction
    /// committed.
    pub transactional: bool,
    /// Key → when its transaction was decided to commit (by its producer, or by a checker
    /// answering the broker's check-back).
    pub tx_committed_at: BTreeMap<String, u64>,
    /// Half messages seen by a consumer before (or without) a commit.
    pub tx_violations: Vec<String>,
    /// The application's database: key → what its local transaction decided when it ran
    /// (what a checker reads to answer a check-back).
    pub tx_ledger: BTreeMap<String, crate::scenario::LocalTransactionState>,
    /// BROADCASTING: member → the keys it received.
    pub member_received: BTreeMap<String, BTreeSet<String>>,
    /// BROADCASTING: (member, broker group, queue) → the offset its local store held when it
    /// last went down: after a restart it must not read below it.
    resume_floor: BTreeMap<(String, String, i32), u64>,
    /// BROADCASTING: reads below a restarted member's saved offsets.
    pub resume_violations: Vec<String>,
    /// The broker (group name) each acknowledged message was stored on.
    pub acked_broker: BTreeMap<String, String>,
    /// Retention passes that deleted files (`retention_ms`): acknowledged messages below a
    /// queue's min offset at the end were deleted by policy, not lost.
    pub retention_deletions: u64,
}

/// Where a message is stored: (broker group, queue, queue offset).
pub type Position = (String, i32, u64);

/// The order key of message `key` (`p<i>-<seq>`) when messages share `order_keys` keys per
/// producer.
pub fn order_key(key: &str, order_keys: u32) -> Option<String> {
    if order_keys == 0 {
        return None;
    }
    let (producer, seq) = key.rsplit_once('-')?;
    let seq: u32 = seq.parse().ok()?;
    Some(format!("{producer}-k{}", seq % order_keys))
}

/// Where two bodies first differ, for a violation's text.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => format!(", first difference at byte {i}"),
        None => String::new(),
    }
}

impl History {
    /// An empty history of a run of `s` (its order keys, its transactions).
    pub fn of(s: &Scenario) -> Self {
        History { order_keys: s.order_keys, transactional: s.transactional, ..History::default() }
    }

    /// The transaction of message `key` was decided to commit at `now_ms`.
    pub fn tx_committed(&mut self, key: &str, now_ms: u64) {
        self.tx_committed_at.entry(key.to_string()).or_insert(now_ms);
    }

    /// The checker of every lane: answers the broker's check-back about `key` at `now_ms` from
    /// the application's record ([`Self::tx_ledger`]) as scenario `s` decides, and records a
    /// commit.
    pub fn tx_check(&mut self, s: &Scenario, key: &str, now_ms: u64) -> crate::scenario::LocalTransactionState {
        let state = s.tx_checked(key, self.tx_ledger.get(key).copied());
        if state == crate::scenario::LocalTransactionState::CommitMessage {
            self.tx_committed(key, now_ms);
        }
        state
    }

    /// A producer was answered SEND_OK at `now_ms` for a message stored at (queue, offset) of
    /// broker group `broker`.
    pub fn acked(&mut self, key: &str, broker: &str, queue: i32, offset: u64, now_ms: u64) {
        // Routing is judged on sends begun once the routes settled: before the operator's
        // topic reaches the NameServer a producer may rightly use the default topic's route.
        if self.send_began_ms.get(key).is_some_and(|b| *b >= ROUTES_SETTLED_MS) {
            *self.acked_per_queue.entry((broker.to_string(), queue)).or_default() += 1;
        }
        self.acked.insert(key.to_string(), (queue, offset));
        self.acked_broker.insert(key.to_string(), broker.to_string());
        self.acked_at_ms.entry(key.to_string()).or_insert(now_ms);
        if let Some(ok) = order_key(key, self.order_keys) {
            let known = self.order_known.entry(ok).or_default();
            known.entry((broker.to_string(), queue, offset)).or_insert((key.to_string(), false));
        }
    }

    /// Orderly: `member` starts processing message `key` stored at `at`. Judged: no other
    /// message of its key is being processed (by any member), and every earlier message of its
    /// key in the same queue that the run knows of has been finished.
    pub fn processing_began(&mut self, member: &str, key: &str, at: Position, now_ms: u64) {
        let Some(ok) = order_key(key, self.order_keys) else { return };
        self.order_checked += 1;
        if let Some((m, k, p)) = self.order_open.get(&ok) {
            self.order_violations.push(format!(
                "{now_ms} ms: {member} began {key} ({}:{}@{}) while {m} was still processing {k} ({}:{}@{}) of the same key {ok}",
                at.0, at.1, at.2, p.0, p.1, p.2
            ));
        }
        let known = self.order_known.entry(ok.clone()).or_default();
        let earlier = known
            .range((at.0.clone(), at.1, 0)..(at.0.clone(), at.1, at.2))
            .find(|(_, (_, done))| !done)
            .map(|(p, (k, _))| (p.2, k.clone()));
        if let Some((offset, k)) = earlier {
            self.order_violations.push(format!(
                "{now_ms} ms: {member} began {key} ({}:{}@{}) before {k} (@{offset}) of the same key {ok} was finished",
                at.0, at.1, at.2
            ));
        }
        known.entry(at.clone()).or_insert((key.to_string(), false));
        self.order_open.insert(ok, (member.to_string(), key.to_string(), at));
    }

    /// Orderly: `member` stopped processing message `key`: `finished` when it was consumed
    /// (a failure leaves it unfinished: the queue must wait for its retry).
    pub fn processing_ended(&mut self, member: &str, key: &str, finished: bool) {
        let Some(ok) = order_key(key, self.order_keys) else { return };
        if self.order_open.get(&ok).is_some_and(|(m, k, _)| m == member && k == key) {
            let (_, _, at) = self.order_open.remove(&ok).expect("checked");
            if finished {
                self.finished(&ok, at);
            }
        }
    }

    /// Orderly: the message at `at` went to the dead-letter queue: its queue may move on.
    pub fn dead_lettered(&mut self, key: &str, at: Position) {
        if let Some(ok) = order_key(key, self.order_keys) {
            self.finished(&ok, at);
        }
    }

    fn finished(&mut self, ok: &str, at: Position) {
        let known = self.order_known.entry(ok.to_string()).or_default();
        known.entry(at).or_insert((String::new(), true)).1 = true;
    }

    /// BROADCASTING: `member` went down with these offsets in its local store (queue →
    /// next offset): when it comes back it resumes there.
    pub fn member_saved(&mut self, member: &str, saved: impl IntoIterator<Item = ((String, i32), u64)>) {
        self.resume_floor.retain(|(m, _, _), _| m != member);
        for ((broker, queue), offset) in saved {
            self.resume_floor.insert((member.to_string(), broker, queue), offset);
        }
    }

    /// BROADCASTING: `member` received `key` from `at`: every member must receive every
    /// message, and a restarted one never reads below what its store held.
    pub fn member_received(&mut self, member: &str, key: &str, at: &Position, now_ms: u64) {
        self.member_received.entry(member.to_string()).or_default().insert(key.to_string());
        if let Some(floor) = self.resume_floor.get(&(member.to_string(), at.0.clone(), at.1)) {
            if at.2 < *floor {
                self.resume_violations.push(format!(
                    "{now_ms} ms: {member} read {key} at {}:{}@{}, below the offset {floor} its local store held",
                    at.0, at.1, at.2
                ));
            }
        }
    }

    /// A member died: whatever it was processing stopped with it.
    pub fn member_down(&mut self, member: &str) {
        self.order_open.retain(|_, (m, _, _)| m != member);
    }

    /// A consumer received message `key` with `body`: it must be byte for byte what the
    /// producer sent (bodies at most `body_bytes`).
    pub fn check_body(&mut self, key: &str, body: &[u8], body_bytes: u32) {
        let want = body_for(key, body_bytes);
        if body != want.as_slice() {
            self.violations.push(format!(
                "the body of {key} was delivered damaged: {} bytes, {} sent{}",
                body.len(),
                want.len(),
                first_difference(body, &want)
            ));
            self.damaged_bodies += 1;
        }
    }

    /// A consumer received a message at `now_ms`.
    pub fn delivered(&mut self, _consumer: u32, key: &str, _queue: i32, _offset: u64, now_ms: u64) {
        if self.transactional && !self.tx_committed_at.contains_key(key) {
            self.tx_violations.push(format!(
                "{now_ms} ms: {key} delivered, yet its transaction never committed (a half message or a rolled-back one)"
            ));
        }
        *self.deliveries.entry(key.to_string()).or_default() += 1;
        self.first_delivered_ms.entry(key.to_string()).or_insert(now_ms);
        self.delivered_total += 1;
    }

    /// A producer began sending `key` at `now_ms`.
    pub fn send_began(&mut self, key: &str, now_ms: u64) {
        self.send_began_ms.entry(key.to_string()).or_insert(now_ms);
    }

    /// A producer gave up sending `key` at `now_ms`.
    pub fn send_failed(&mut self, key: &str, now_ms: u64) {
        self.failed += 1;
        self.send_failed_ms.insert(key.to_string(), now_ms);
    }

    /// A consumer's listener was handed message `key` (its `reconsume`th retry) at `now_ms`
    /// and consumed it, or failed to.
    pub fn attempted(&mut self, key: &str, reconsume: i32, failed: bool, now_ms: u64) {
        self.attempts.entry(key.to_string()).or_default().push((now_ms, reconsume, failed));
    }

    /// The consumer's application processed a message.
    pub fn processed(&mut self, key: &str) {
        *self.processed.entry(key.to_string()).or_default() += 1;
    }

    /// A broker event: committed group offsets never move backward within one broker life.
    pub fn broker_event(&mut self, broker: usize, epoch: u64, e: &Event) {
        if let Event::ReplicaTruncated { .. } = e {
            // A slave cut back to its master's history lowers the group offsets that pointed
            // into the cut tail, as recovery does: its offsets start over from there.
            self.committed.retain(|(b, ep, ..), _| (*b, *ep) != (broker, epoch));
            return;
        }
        if let Event::FilesDeleted { .. } = e {
            self.retention_deletions += 1;
            return;
        }
        if let Event::ConsumerOffsetReset { group, topic, queue_id, offset } = e {
            // An operator's reset may move an offset anywhere: judge monotonicity from there.
            self.committed.insert((broker, epoch, group.clone(), topic.clone(), *queue_id), *offset);
            return;
        }
        if let Event::ConsumerOffsetCommitted { group, topic, queue_id, offset } = e {
            let slot = self.committed.entry((broker, epoch, group.clone(), topic.clone(), *queue_id)).or_insert(0);
            if *offset < *slot {
                self.violations.push(format!(
                    "group {group} topic {topic} queue {queue_id} offset moved back from {slot} to {offset}"
                ));
            }
            *slot = (*slot).max(*offset);
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every guarantee held.
    Pass,
    /// A safety property broke (acknowledged loss where durability was promised, offsets
    /// going backward, holes in a queue).
    Safety,
    /// Something that should have happened did not by the end (acknowledged, stored, never
    /// delivered).
    Liveness,
}

impl Findings {
    /// Adds a finding of kind `what` found after the judgement: a safety one makes the run a
    /// safety failure, any other at least a liveness one.
    fn add(&mut self, what: &'static str, safety: bool, text: String) {
        self.problems.push(text);
        if !self.kinds.contains(&what) {
            self.kinds.push(what);
            self.kinds.sort_unstable();
        }
        self.verdict = match (self.verdict, safety) {
            (_, true) | (Verdict::Safety, _) => Verdict::Safety,
            _ => Verdict::Liveness,
        };
    }
}

/// The oracle's findings.
#[derive(Debug, Clone, Serialize)]
pub struct Findings {
    /// Verdict.
    pub verdict: Verdict,
    /// What broke, one line each.
    pub problems: Vec<String>,
    /// The kinds of violation found (sorted): what `shrink` keeps constant.
    pub kinds: Vec<&'static str>,
    /// Acknowledged messages missing from the broker at the end.
    pub acked_lost: u64,
    /// Acknowledged messages deleted by retention (below their queue's min offset at the end,
    /// on a broker whose retention deleted files): neither lost nor owed a delivery.
    #[serde(skip_serializing_if = "is_zero")]
    pub expired: u64,
    /// Acknowledged, still stored, never delivered.
    pub undelivered: u64,
    /// Deliveries beyond the first of each message.
    pub duplicates: u64,
    /// Messages the application processed more than once.
    pub processed_duplicates: u64,
    /// Messages the timing property checked (acknowledged inside its window).
    pub timely_checked: u64,
}

/// What a run promises: the scenario's durability claim, idempotent processing, progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promise {
    /// Acknowledged messages may be lost (ASYNC_FLUSH crashes).
    pub acked_loss_allowed: bool,
    /// No message may be processed twice.
    pub idempotent: bool,
    /// Progress the run must make.
    pub floors: Floors,
    /// Messages acknowledged in `[from_ms, to_ms)` (a healed, settled network) must be
    /// delivered within `within_ms` of their acknowledgement.
    pub timely: Option<Timeliness>,
    /// Largest body sent: every stored record's body is checked against [`body_for`].
    pub body_bytes: u32,
    /// Broker groups whose every queue must receive traffic.
    pub routed: Option<Routed>,
    /// Consumption fails for some messages: retries and the dead-letter queue are judged.
    pub retry: Option<Retry>,
    /// A broker silent for longer than the NameServer's expiry leaves the routes in time.
    pub silence: Option<Silence>,
    /// Transactional runs: a commit decided before this time (by a producer or a checker)
    /// must reach a consumer.
    pub tx_commits_due_ms: Option<u64>,
    /// BROADCASTING: the members, each of which must receive every message.
    pub broadcast_members: Option<Vec<String>>,
}

/// A timing property: a broker that stops answering (paused longer than the NameServer's
/// broker expiry) is dropped from the routes, so once the expiry, the NameServer's scan, the
/// broker's last registration and the producers' route refresh have passed, no send waits on
/// it any more: every send begun in `[from_ms, to_ms)` is answered within `within_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    /// When sends must no longer meet the silent broker.
    pub from_ms: u64,
    /// When the broker comes back.
    pub to_ms: u64,
    /// Longest a send may take once the broker is out of the routes.
    pub within_ms: u64,
}

/// The retry promise (RocketMQ's): a message whose consumption failed comes back after the
/// delay of level 3 + its reconsume count, and after `max_reconsume` retries it is moved to
/// `%DLQ%<group>` and never delivered again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Share of messages that always fail.
    pub poison_pct: u32,
    /// Share of messages that fail once.
    pub flaky_pct: u32,
    /// Retries before the DLQ.
    pub max_reconsume: i32,
    /// The broker's delay levels (level 1 first), ms.
    pub levels_ms: Vec<u64>,
    /// The consumer group (its retry and DLQ topics).
    pub group: String,
    /// End of the run: a retry due later is not judged.
    pub end_ms: u64,
    /// Orderly consumers retry here, without the retry topic, after this pause.
    pub orderly_suspend_ms: Option<u64>,
}

/// How late a retry may come after its delay: the retry topic's route appears at the broker's
/// next registration (10 s in the simulations) and a held pull answers within its suspension.
pub const RETRY_SLACK_MS: u64 = 15_000;

impl Retry {
    /// The delay of the retry after a failure at reconsume count `r`.
    pub fn delay_ms(&self, r: i32) -> u64 {
        if let Some(ms) = self.orderly_suspend_ms {
            return ms;
        }
        let level = (r + 3).clamp(1, self.levels_ms.len() as i32);
        self.levels_ms[(level - 1) as usize]
    }
}

/// A routing property: every queue of every broker group no fault touches receives traffic
/// when the run acknowledges enough spread (not hot-keyed) messages, so routing and queue
/// selection reach every broker and every queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// Broker group names (`broker-a`, …).
    pub groups: Vec<String>,
    /// Queues of the topic on each.
    pub queues: i32,
    /// Share of messages keyed to the hot queue (not spread).
    pub hot_pct: u32,
}

/// A timing property: how soon an acknowledged message reaches a consumer once nothing is
/// broken (a held pull answers on arrival; no queue is left unowned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeliness {
    /// Start of the checked window (simulated ms).
    pub from_ms: u64,
    /// End of the checked window.
    pub to_ms: u64,
    /// Most time from SEND_OK to first delivery.
    pub within_ms: u64,
}

impl Promise {
    /// The promise a scenario makes.
    pub fn of(s: &Scenario) -> Self {
        Promise {
            acked_loss_allowed: s.acked_loss_allowed,
            idempotent: s.idempotent || s.processed_once == Some(true),
            floors: s.floors,
            timely: s.timeliness(),
            body_bytes: s.body_bytes,
            routed: s.routed_groups(),
            silence: s.silence(),
            tx_commits_due_ms: s.transactional.then(|| s.duration_ms.saturating_sub(10_000)),
            broadcast_members: s.broadcasting.then(|| (0..s.consumers).map(|k| format!("c{k}")).collect()),
            retry: (s.poison_pct > 0 || s.flaky_pct > 0).then(|| Retry {
                poison_pct: s.poison_pct,
                flaky_pct: s.flaky_pct,
                max_reconsume: s.max_reconsume,
                levels_ms: rmq_broker_core::BrokerConfig::default().delay_levels_ms,
                group: crate::world::GROUP.to_string(),
                end_ms: s.duration_ms,
                orderly_suspend_ms: s.orderly.then_some(crate::scenario::ORDERLY_SUSPEND_MS),
            }),
        }
    }
}

/// When the routes of a run have settled: the operator's topic registered and every client
/// polled its route at least once since (the host lanes poll every second).
pub const ROUTES_SETTLED_MS: u64 = 2_000;

/// FNV-1a of a message key: the seed-free choices a key decides (its body size, whether it
/// goes to the hot queue).
pub fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The body a producer sends for message `key` when bodies are at most `max` bytes: the key,
/// then bytes derived from the key and their position, up to a size the key decides (the key
/// alone when `max` is not larger). A delivery or stored record whose body differs was damaged
/// on the way.
pub fn body_for(key: &str, max: u32) -> Vec<u8> {
    let mut body = key.as_bytes().to_vec();
    let max = max as usize;
    if max > body.len() {
        let h = key_hash(key);
        let size = body.len() + (h % (max - body.len() + 1) as u64) as usize;
        let mut i = body.len() as u64;
        while body.len() < size {
            body.push((h.rotate_left((i % 64) as u32) ^ i.wrapping_mul(0x9e37_79b9)) as u8);
            i += 1;
        }
    }
    body
}

/// The message key the oracle tracks: the application key (`KEYS`) when set, else the
/// client's message id (`UNIQ_KEY`).
pub fn message_key(properties: &BTreeMap<String, String>) -> String {
    properties.get(prop::KEYS).or_else(|| properties.get(prop::UNIQ_KEY)).cloned().unwrap_or_default()
}

/// Checks a finished fast-lane run.
pub fn check(w: &World) -> Findings {
    let stores: Vec<(&str, &str, &MessageStore<SimDisk>)> = w
        .live_brokers()
        .into_iter()
        .map(|(name, core)| (name, core.config().broker_name.as_str(), core.store()))
        .collect();
    check_run(&w.history, &stores, w.groups_down(), w.scenario.queues, &Promise::of(&w.scenario))
}

/// Checks a run of any lane: `stores` are the brokers (masters and slaves) up at the end
/// (node name, broker group name, store); `groups_down` counts broker groups with no member up. Every queue of the
/// topic is read in full in every store (a message counts as stored if any holds it), then the
/// history is judged.
pub fn check_run<D: Directory>(
    h: &History,
    stores: &[(&str, &str, &MessageStore<D>)],
    groups_down: usize,
    queues: i32,
    promise: &Promise,
) -> Findings {
    let mut problems = h.violations.clone();
    problems.extend(h.replica_violations.iter().cloned());
    let mut kinds: BTreeSet<&'static str> = BTreeSet::new();
    if !h.replica_violations.is_empty() {
        kinds.insert("unreplicated-ack");
    }
    let mut stored: BTreeSet<String> = BTreeSet::new();
    if groups_down > 0 {
        problems.push(format!(
            "{groups_down} broker group(s) have no member up at the end of the run; the scenario must restart one"
        ));
        kinds.insert("broker-down");
    }
    // Per (broker group, queue): the highest min offset any of its stores holds.
    let mut floors: BTreeMap<(&str, i32), u64> = BTreeMap::new();
    for (name, broker, store) in stores {
        for q in 0..queues {
            let max = store.max_queue_offset(TOPIC, q);
            let mut off = store.min_queue_offset(TOPIC, q);
            let floor = floors.entry((*broker, q)).or_insert(0);
            *floor = (*floor).max(off);
            while off < max {
                let got = store.get_messages(TOPIC, q, off, 32, u32::MAX, &|_| true);
                if got.messages.is_empty() {
                    problems.push(format!("{name} queue {q}: offset {off} below max {max} holds no message (hole)"));
                    kinds.insert("queue-hole");
                    break;
                }
                for raw in &got.messages {
                    match decode_message(raw, true) {
                        Ok((m, _)) if m.queue_offset as u64 == off => {
                            let key = message_key(&m.properties);
                            let want = body_for(&key, promise.body_bytes);
                            if m.body.as_ref() != want.as_slice() {
                                problems.push(format!(
                                    "{name} queue {q}: offset {off} holds {key} with a damaged body ({} bytes, {} sent{})",
                                    m.body.len(),
                                    want.len(),
                                    first_difference(&m.body, &want)
                                ));
                                kinds.insert("damaged-body");
                            }
                            stored.insert(key);
                        }
                        Ok((m, _)) => {
                            problems.push(format!(
                                "{name} queue {q}: offset {off} holds a record claiming offset {}",
                                m.queue_offset
                            ));
                            kinds.insert("misplaced-record");
                        }
                        Err(e) => {
                            problems.push(format!("{name} queue {q}: offset {off} unreadable: {e}"));
                            kinds.insert("corrupt-record");
                        }
                    }
                    off += 1;
                }
            }
        }
    }
    let mut dead: BTreeSet<String> = BTreeSet::new();
    // Deleted by policy: not stored, and below its queue's min where retention ran.
    let expired: BTreeSet<String> = h
        .acked
        .iter()
        .filter(|(k, (q, off))| {
            h.retention_deletions > 0
                && !stored.contains(*k)
                && h.acked_broker.get(*k).is_some_and(|b| floors.get(&(b.as_str(), *q)).is_some_and(|min| off < min))
        })
        .map(|(k, _)| k.clone())
        .collect();
    if let Some(r) = &promise.retry {
        let dlq = format!("%DLQ%{}", r.group);
        for (_, _, store) in stores {
            let mut off = store.min_queue_offset(&dlq, 0);
            let max = store.max_queue_offset(&dlq, 0);
            while off < max {
                let got = store.get_messages(&dlq, 0, off, 32, u32::MAX, &|_| true);
                if got.messages.is_empty() {
                    break;
                }
                for raw in &got.messages {
                    if let Ok((m, _)) = decode_message(raw, true) {
                        dead.insert(message_key(&m.properties));
                    }
                    off += 1;
                }
            }
        }
    }
    if h.transactional {
        let mut uncommitted: Vec<&String> = stored.iter().filter(|k| !h.tx_committed_at.contains_key(*k)).collect();
        uncommitted.truncate(3);
        if !uncommitted.is_empty() {
            problems.push(format!(
                "messages whose transaction never committed are stored in {TOPIC}, e.g. {uncommitted:?}"
            ));
            kinds.insert("uncommitted-visible");
        }
    }
    for (found, kind, what) in [
        (&h.resume_violations, "resume-below-saved", "reads below a restarted broadcasting member's saved offsets"),
        (&h.tx_violations, "uncommitted-visible", "deliveries of uncommitted transactional messages"),
        (&h.order_violations, "order-violation", "per-key order violations"),
    ] {
        if !found.is_empty() {
            problems.push(format!("{} {what}, e.g. {:?}", found.len(), &found[..found.len().min(3)]));
            kinds.insert(kind);
        }
    }
    let mut f = judge(h, &stored, &expired, problems, kinds, promise);
    if let Some(r) = &promise.retry {
        judge_retries(h, &stored, &dead, r, &mut f);
    }
    if let Some(members) = &promise.broadcast_members {
        // Liveness: every member receives every stored, acknowledged message.
        for m in members {
            let got = h.member_received.get(m);
            let mut missing: Vec<&String> =
                h.acked.keys().filter(|k| stored.contains(*k) && !got.is_some_and(|g| g.contains(*k))).collect();
            if !missing.is_empty() {
                let n = missing.len();
                missing.truncate(3);
                let text = format!("broadcasting member {m} never received {n} messages, e.g. {missing:?}");
                f.add("broadcast-missed", false, text);
            }
        }
    }
    if let Some(due) = promise.tx_commits_due_ms {
        // Liveness: a commit decided in time reaches a consumer (one the check-back decided
        // is not among the acknowledged messages the judge already followed).
        let mut never: Vec<&String> = h
            .tx_committed_at
            .iter()
            .filter(|(k, at)| **at < due && !h.deliveries.contains_key(*k))
            .map(|(k, _)| k)
            .collect();
        if !never.is_empty() {
            let n = never.len();
            never.truncate(3);
            f.add(
                "committed-undelivered",
                false,
                format!("{n} committed transactional messages never delivered, e.g. {never:?}"),
            );
        }
    }
    f
}

/// The retry promise: every failure is retried after its level's delay (not sooner, not much
/// later), a message that failed `max_reconsume` retries is in the dead-letter queue and is
/// not delivered again, nothing else is there, and every other message is consumed.
fn judge_retries(h: &History, stored: &BTreeSet<String>, dead: &BTreeSet<String>, r: &Retry, f: &mut Findings) {
    let mut early = Vec::new();
    let mut late = Vec::new();
    let mut not_dead = Vec::new();
    let mut never_consumed = Vec::new();
    for key in h.acked.keys().filter(|k| stored.contains(*k)) {
        let attempts = h.attempts.get(key).map(Vec::as_slice).unwrap_or_default();
        for (i, &(t, reconsume, failed)) in attempts.iter().enumerate() {
            if !failed {
                continue;
            }
            if reconsume >= r.max_reconsume {
                // Spent: the DLQ holds it and it is not delivered again.
                if !dead.contains(key) {
                    not_dead.push(key.clone());
                }
                if let Some(&(t2, _, _)) = attempts[i + 1..].iter().find(|a| a.1 > reconsume) {
                    late.push(format!("{key} delivered again at {t2} ms after its last retry failed"));
                }
                continue;
            }
            let due = t + r.delay_ms(reconsume);
            match attempts[i + 1..].iter().find(|a| a.1 > reconsume) {
                Some(&(t2, _, _)) if t2 + 50 < due => early.push(format!(
                    "{key} failed at {t} ms (reconsume {reconsume}) and came back at {t2} ms, before its {} ms delay",
                    r.delay_ms(reconsume)
                )),
                Some(&(t2, _, _)) if t2 > due + RETRY_SLACK_MS => {
                    late.push(format!("{key} failed at {t} ms, retry due at {due} ms, came at {t2} ms"))
                }
                Some(_) => {}
                None if due + RETRY_SLACK_MS < r.end_ms => {
                    late.push(format!("{key} failed at {t} ms, retry due at {due} ms, never came"))
                }
                None => {}
            }
        }
        let consumed = attempts.iter().any(|a| !a.2);
        let spent = attempts.iter().any(|a| a.2 && a.1 >= r.max_reconsume);
        if !consumed && !spent && !attempts.is_empty() {
            let last = attempts.iter().map(|a| a.0).max().unwrap_or(0);
            // Still between retries at the end of the run: not judged.
            let pending = attempts.last().is_some_and(|a| a.2 && last + r.delay_ms(a.1) + RETRY_SLACK_MS >= r.end_ms);
            if !pending {
                never_consumed.push(key.clone());
            }
        }
    }
    let wrongly_dead: Vec<&String> = dead
        .iter()
        .filter(|k| !h.attempts.get(*k).is_some_and(|a| a.iter().any(|x| x.2 && x.1 >= r.max_reconsume)))
        .collect();
    let mut add = |what: &'static str, safety: bool, text: String| f.add(what, safety, text);
    if !early.is_empty() {
        add(
            "early-retry",
            true,
            format!("{} retries came before their delay, e.g. {:?}", early.len(), &early[..early.len().min(3)]),
        );
    }
    if !wrongly_dead.is_empty() {
        add(
            "wrongly-dead",
            true,
            format!(
                "{} messages in the DLQ never spent their retries, e.g. {:?}",
                wrongly_dead.len(),
                &wrongly_dead[..wrongly_dead.len().min(3)]
            ),
        );
    }
    if !late.is_empty() {
        add(
            "late-retry",
            false,
            format!("{} retries late, missing or after the DLQ, e.g. {:?}", late.len(), &late[..late.len().min(3)]),
        );
    }
    not_dead.dedup();
    if !not_dead.is_empty() {
        add(
            "dlq-missing",
            false,
            format!(
                "{} messages spent their retries but are not in the DLQ, e.g. {:?}",
                not_dead.len(),
                &not_dead[..not_dead.len().min(3)]
            ),
        );
    }
    if !never_consumed.is_empty() {
        add(
            "never-consumed",
            false,
            format!(
                "{} messages neither consumed nor dead, e.g. {:?}",
                never_consumed.len(),
                &never_consumed[..never_consumed.len().min(3)]
            ),
        );
    }
}

/// Judges a history, from the simulator or recorded from real processes: `stored` holds the
/// message ids the brokers hold at the end (a full read of every queue); `problems` and
/// `kinds` carry structural findings already made. The default progress floors apply.
pub fn check_history(h: &History, stored: &BTreeSet<String>, acked_loss_allowed: bool, idempotent: bool) -> Findings {
    let promise = Promise {
        acked_loss_allowed,
        idempotent,
        floors: Floors::default(),
        timely: None,
        body_bytes: 0,
        routed: None,
        retry: None,
        silence: None,
        tx_commits_due_ms: None,
        broadcast_members: None,
    };
    judge(h, stored, &BTreeSet::new(), h.violations.clone(), BTreeSet::new(), &promise)
}

fn judge(
    h: &History,
    stored: &BTreeSet<String>,
    expired: &BTreeSet<String>,
    mut problems: Vec<String>,
    mut kinds: BTreeSet<&'static str>,
    promise: &Promise,
) -> Findings {
    let (acked_loss_allowed, idempotent) = (promise.acked_loss_allowed, promise.idempotent);
    if h.damaged_bodies > 0 {
        kinds.insert("damaged-body");
    }
    if h.violations.len() as u64 > h.damaged_bodies {
        kinds.insert("offset-backward");
    }
    let lost: Vec<&String> = h.acked.keys().filter(|k| !stored.contains(*k) && !expired.contains(*k)).collect();
    let undelivered: Vec<&String> =
        h.acked.keys().filter(|k| stored.contains(*k) && !h.deliveries.contains_key(*k)).collect();
    let duplicates = h.deliveries.values().map(|n| u64::from(n.saturating_sub(1))).sum();
    if !lost.is_empty() && !acked_loss_allowed {
        problems.push(format!("{} acknowledged messages lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(3)]));
        kinds.insert("acked-loss");
    }
    let processed_duplicates: u64 = h.processed.values().map(|n| u64::from(n.saturating_sub(1))).sum();
    if idempotent && processed_duplicates > 0 {
        problems
            .push(format!("consumers processed {processed_duplicates} messages twice (each must be processed once)"));
        kinds.insert("processed-twice");
    }
    let safety = !problems.is_empty();
    if !undelivered.is_empty() {
        problems.push(format!(
            "{} acknowledged, stored messages never delivered, e.g. {:?}",
            undelivered.len(),
            &undelivered[..undelivered.len().min(3)]
        ));
    }
    let attempted = h.sent.len() as u64;
    let acked = h.acked.len() as u64;
    let delivered = h.acked.keys().filter(|k| h.deliveries.contains_key(*k)).count() as u64;
    let mut below_floor = false;
    if !promise.floors.acked.met(acked, attempted) {
        problems.push(format!(
            "progress floor: {acked} of {attempted} sends acknowledged, the scenario expects acked >= {:?}",
            promise.floors.acked
        ));
        below_floor = true;
    }
    if !promise.floors.delivered.met(delivered, acked) {
        problems.push(format!(
            "progress floor: {delivered} of {acked} acknowledged messages delivered, the scenario expects delivered >= {:?}",
            promise.floors.delivered
        ));
        below_floor = true;
    }
    if below_floor {
        kinds.insert("progress-floor");
    }
    let mut late: Vec<String> = Vec::new();
    let mut timely_checked = 0;
    if let Some(t) = promise.timely {
        for (key, at) in h.acked_at_ms.iter().filter(|(_, at)| (t.from_ms..t.to_ms).contains(*at)) {
            if !stored.contains(key) {
                continue;
            }
            timely_checked += 1;
            match h.first_delivered_ms.get(key) {
                Some(d) if d.saturating_sub(*at) <= t.within_ms => {}
                Some(d) => late.push(format!("{key} acked at {at} ms, delivered {} ms later", d - at)),
                None => late.push(format!("{key} acked at {at} ms, never delivered")),
            }
        }
    }
    if !late.is_empty() {
        let t = promise.timely.expect("late deliveries come from a timing window");
        problems.push(format!(
            "{} messages acknowledged on a healed network ({}..{} ms) reached no consumer within {} ms, e.g. {:?}",
            late.len(),
            t.from_ms,
            t.to_ms,
            t.within_ms,
            &late[..late.len().min(3)]
        ));
        kinds.insert("slow-delivery");
    }
    if !undelivered.is_empty() {
        kinds.insert("undelivered");
    }
    let mut unrouted: Vec<String> = Vec::new();
    if let Some(r) = &promise.routed {
        // Only when enough messages spread over the queues that each should have had some.
        let settled: u64 = h.acked_per_queue.values().sum();
        let spread = settled * u64::from(100 - r.hot_pct.min(100)) / 100;
        if spread >= 8 * r.groups.len() as u64 * r.queues as u64 {
            for g in &r.groups {
                for q in 0..r.queues {
                    if h.acked_per_queue.get(&(g.clone(), q)).copied().unwrap_or(0) == 0 {
                        unrouted.push(format!("{g} queue {q}"));
                    }
                }
            }
        }
    }
    if !unrouted.is_empty() {
        problems.push(format!(
            "{} queue(s) of untouched brokers acknowledged nothing of {} messages sent once the routes settled: routing or queue selection skipped them, e.g. {:?}",
            unrouted.len(),
            h.acked_per_queue.values().sum::<u64>(),
            &unrouted[..unrouted.len().min(4)]
        ));
        kinds.insert("unrouted-queue");
    }
    let mut stuck: Vec<String> = Vec::new();
    if let Some(sl) = promise.silence {
        for (key, began) in h.send_began_ms.iter().filter(|(_, b)| (sl.from_ms..sl.to_ms).contains(*b)) {
            let done = h.acked_at_ms.get(key).or_else(|| h.send_failed_ms.get(key));
            match done {
                Some(d) if d.saturating_sub(*began) <= sl.within_ms && !h.send_failed_ms.contains_key(key) => {}
                Some(d) => stuck.push(format!("{key} began at {began} ms, ended at {d} ms")),
                None => stuck.push(format!("{key} began at {began} ms, never answered")),
            }
        }
    }
    if !stuck.is_empty() {
        let sl = promise.silence.expect("stuck sends come from a silence window");
        problems.push(format!(
            "{} sends begun after a silent broker should have left the routes ({}..{} ms) took longer than {} ms or failed: the NameServer kept routing it, e.g. {:?}",
            stuck.len(),
            sl.from_ms,
            sl.to_ms,
            sl.within_ms,
            &stuck[..stuck.len().min(3)]
        ));
        kinds.insert("silent-broker-routed");
    }
    let verdict = if safety {
        Verdict::Safety
    } else if !undelivered.is_empty() || below_floor || !late.is_empty() || !unrouted.is_empty() || !stuck.is_empty() {
        Verdict::Liveness
    } else {
        Verdict::Pass
    };
    Findings {
        timely_checked,
        processed_duplicates,
        verdict,
        problems,
        kinds: kinds.into_iter().collect(),
        acked_lost: lost.len() as u64,
        expired: expired.len() as u64,
        undelivered: undelivered.len() as u64,
        duplicates,
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_from_their_key_and_bound() {
        assert_eq!(body_for("p0-1", 0), b"p0-1".to_vec(), "no bound: the body is the key");
        let b = body_for("p0-1", 6_000);
        assert!(b.starts_with(b"p0-1") && b.len() <= 6_000);
        assert_eq!(b, body_for("p0-1", 6_000), "the same key gives the same body");
        let sizes: BTreeSet<usize> = (0..50).map(|i| body_for(&format!("p0-{i}"), 6_000).len()).collect();
        assert!(sizes.len() > 40, "sizes vary with the key: {sizes:?}");
    }

    #[test]
    fn a_damaged_delivery_is_a_safety_violation() {
        let mut h = History::default();
        let sent = body_for("p0-3", 5_000);
        h.acked("p0-3", "broker-a", 0, 0, 10);
        h.check_body("p0-3", &sent, 5_000);
        assert!(h.violations.is_empty());
        h.check_body("p0-3", &sent[..sent.len() - 1], 5_000);
        let stored: BTreeSet<String> = ["p0-3".to_string()].into();
        h.delivered(0, "p0-3", 0, 0, 20);
        let f = check_history(&h, &stored, false, false);
        assert_eq!(f.verdict, Verdict::Safety, "{:?}", f.problems);
        assert_eq!(f.kinds, vec!["damaged-body"]);
        assert!(f.problems[0].contains("delivered damaged"), "{:?}", f.problems);
    }

    #[test]
    fn retention_deletions_are_expired_not_lost_but_other_gaps_still_are() {
        use rmq_store::{MemDirectory, MessageStore, StoreConfig};
        let config =
            StoreConfig { commit_log_segment_bytes: 4096, consume_queue_segment_entries: 8, ..Default::default() };
        let (mut store, _) = MessageStore::open(MemDirectory::default(), config).unwrap();
        let mut h = History::default();
        for i in 0..60u64 {
            let key = format!("k{i}");
            let mut m = rmq_proto::message::MessageExt {
                topic: crate::world::TOPIC.into(),
                body: body_for(&key, 0).into(),
                store_timestamp: i as i64,
                ..Default::default()
            };
            m.properties.insert(prop::KEYS.into(), key.clone());
            let put = store.put(&mut m).unwrap();
            h.sent.insert(key.clone());
            h.acked(&key, "broker-a", 0, put.queue_offset, 10);
            h.delivered(0, &key, 0, put.queue_offset, 20);
        }
        // One more acknowledged message the broker never held: lost whatever retention did.
        h.sent.insert("ghost".into());
        h.acked("ghost", "broker-a", 0, 1_000, 10);
        store.flush().unwrap();
        assert!(store.delete_expired_files(i64::MAX, true, 3).unwrap().commit_log_segments > 0);
        let min = store.min_queue_offset(crate::world::TOPIC, 0);
        let promise = Promise { floors: Floors::default(), ..Promise::of(&crate::scenario::Scenario::default()) };
        let judge_now = |h: &History| check_run(h, &[("b0", "broker-a", &store)], 0, 1, &promise);
        // Without a retention pass on record, the deleted messages count as lost.
        let f = judge_now(&h);
        assert_eq!((f.acked_lost, f.expired), (min + 1, 0), "{:?}", f.problems);
        h.retention_deletions = 1;
        let f = judge_now(&h);
        assert_eq!((f.acked_lost, f.expired), (1, min), "only the ghost is lost: {:?}", f.problems);
        assert_eq!(f.verdict, Verdict::Safety);
        h.acked.remove("ghost");
        assert_eq!(judge_now(&h).verdict, Verdict::Pass);
    }

    #[test]
    fn an_untouched_broker_queue_that_gets_no_traffic_is_a_finding() {
        let mut h = History::default();
        let stored: BTreeSet<String> = (0..64).map(|i| format!("k{i}")).collect();
        // 64 messages over 2 queues of broker-a only; broker-b's queues get nothing.
        for i in 0..64 {
            let key = format!("k{i}");
            h.sent.insert(key.clone());
            h.send_began(&key, ROUTES_SETTLED_MS);
            h.acked(&key, "broker-a", i % 2, u64::from(i as u32 / 2), 10);
            h.delivered(0, &key, i % 2, 0, 20);
        }
        let routed = Routed { groups: vec!["broker-a".into(), "broker-b".into()], queues: 2, hot_pct: 0 };
        let promise = Promise {
            acked_loss_allowed: false,
            idempotent: false,
            floors: Floors::default(),
            timely: None,
            body_bytes: 0,
            routed: Some(routed.clone()),
            retry: None,
            silence: None,
            tx_commits_due_ms: None,
            broadcast_members: None,
        };
        let f = judge(&h, &stored, &BTreeSet::new(), Vec::new(), BTreeSet::new(), &promise);
        assert_eq!(f.verdict, Verdict::Liveness, "{:?}", f.problems);
        assert_eq!(f.kinds, vec!["unrouted-queue"]);
        // Too few spread messages to expect every queue to have some: no finding.
        let hot = Promise { routed: Some(Routed { hot_pct: 90, ..routed }), ..promise };
        assert_eq!(judge(&h, &stored, &BTreeSet::new(), Vec::new(), BTreeSet::new(), &hot).verdict, Verdict::Pass);
    }

    #[test]
    fn per_key_order_is_judged_across_members() {
        let s = Scenario { order_keys: 2, ..Scenario::default() };
        let at = |o: u64| ("broker-a".to_string(), 0, o);
        // p0-0 and p0-2 share key p0-k0; p0-1 is p0-k1.
        let mut h = History::of(&s);
        h.acked("p0-0", "broker-a", 0, 0, 1);
        h.acked("p0-2", "broker-a", 0, 2, 1);
        h.processing_began("c0", "p0-0", at(0), 10);
        h.processing_began("c1", "p0-1", at(1), 11);
        h.processing_ended("c0", "p0-0", true);
        h.processing_ended("c1", "p0-1", true);
        h.processing_began("c1", "p0-2", at(2), 12);
        h.processing_ended("c1", "p0-2", true);
        // A replay of a finished message after a later one is allowed (redelivery).
        h.processing_began("c0", "p0-0", at(0), 13);
        h.processing_ended("c0", "p0-0", true);
        assert!(h.order_violations.is_empty(), "{:?}", h.order_violations);
        // Two members on one key at once.
        h.processing_began("c0", "p0-0", at(0), 20);
        h.processing_began("c1", "p0-2", at(2), 21);
        assert_eq!(h.order_violations.len(), 1, "{:?}", h.order_violations);
        // A later message before an earlier one finished (failed, not retried yet).
        let mut h = History::of(&s);
        h.acked("p0-0", "broker-a", 0, 0, 1);
        h.processing_began("c0", "p0-0", at(0), 10);
        h.processing_ended("c0", "p0-0", false);
        h.processing_began("c0", "p0-2", at(2), 11);
        assert_eq!(h.order_violations.len(), 1, "{:?}", h.order_violations);
        // Unless it went to the dead-letter queue; and a crash ends what a member was doing.
        let mut h = History::of(&s);
        h.processing_began("c0", "p0-0", at(0), 10);
        h.processing_ended("c0", "p0-0", false);
        h.dead_lettered("p0-0", at(0));
        h.processing_began("c0", "p0-2", at(2), 11);
        h.member_down("c0");
        h.processing_began("c1", "p0-2", at(2), 12);
        assert!(h.order_violations.is_empty(), "{:?}", h.order_violations);
    }

    #[test]
    fn an_operator_reset_may_move_an_offset_back_and_commits_are_judged_from_there() {
        let mut h = History::default();
        let commit = |h: &mut History, offset| {
            let e = Event::ConsumerOffsetCommitted { group: "G".into(), topic: "T".into(), queue_id: 0, offset };
            h.broker_event(0, 0, &e);
        };
        commit(&mut h, 10);
        h.broker_event(
            0,
            0,
            &Event::ConsumerOffsetReset { group: "G".into(), topic: "T".into(), queue_id: 0, offset: 3 },
        );
        commit(&mut h, 5);
        assert!(h.violations.is_empty(), "{:?}", h.violations);
        commit(&mut h, 4);
        assert_eq!(h.violations.len(), 1, "below the reset position and the commits after it");
    }

    #[test]
    fn a_restarted_broadcasting_member_must_not_read_below_its_saved_offsets() {
        let mut h = History::default();
        let at = |q: i32, o: u64| ("broker-a".to_string(), q, o);
        h.member_received("c1", "p0-0", &at(0, 0), 1);
        h.member_saved("c1", [(("broker-a".to_string(), 0), 5)]);
        h.member_received("c1", "p0-9", &at(0, 5), 10);
        h.member_received("c1", "p0-8", &at(1, 0), 10);
        h.member_received("c0", "p0-1", &at(0, 1), 10);
        assert!(h.resume_violations.is_empty(), "{:?}", h.resume_violations);
        h.member_received("c1", "p0-1", &at(0, 1), 11);
        assert_eq!(h.resume_violations.len(), 1, "{:?}", h.resume_violations);
        assert_eq!(h.member_received["c1"].len(), 4);
    }
}
