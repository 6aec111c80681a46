//! **Exactly-once under idempotent consumption.** A master (SYNC_FLUSH) holds messages, one of
//! them stored twice (a producer's retry after a lost answer: same message id, two queue
//! offsets). A consumer pulls them, processes each into its own database, and commits its
//! offset with UPDATE_CONSUMER_OFFSET. The checker interleaves deliveries, losses and
//! duplicates of frames, consumer crashes before and after an offset commit (its database
//! survives, its memory does not), broker power cuts (consumer offsets not yet persisted are
//! lost) and restarts.
//!
//! Always: **each message's effect is applied at most once** (by message id).
//! Sometimes: every effect applied; a duplicate delivery skipped by the dedup check; a
//! consumer crash after processing and before its offset commit.
//!
//! Variants: `dedup` (the strong helper: [`process_once`] in the database transaction) holds;
//! `no-dedup` (process every delivery) and `weak-dedup` (in-memory claims with an expiry,
//! lost with the consumer's memory) must fail.

use std::collections::{BTreeMap, BTreeSet};

use rmq_broker_core::{BrokerRole, FlushDiskType};
use rmq_client_core::idempotent::{dedup_key, process_once, DedupTxn, ExpiringClaims, Outcome};
use rmq_proto::codes::{pull_flag, RequestCode};
use rmq_proto::header::{
    PullMessageRequestHeader, QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use rmq_proto::message::{decode_messages, prop};
use rmq_proto::{RemotingCommand, ResponseCode};
use stateright::{Model, Property};

use crate::cluster::{Cluster, Dest, GroupConfig, Node, Role, TOPIC};

/// How the consumer deduplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The strong helper: key and effect in one database transaction.
    Dedup,
    /// Every delivery is processed.
    NoDedup,
    /// Claims with an expiry, in the consumer's memory.
    WeakDedup,
}

/// How far the checker goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Distinct messages (one more record: the first is stored twice).
    pub messages: u8,
    /// Consumer crashes.
    pub consumer_crashes: u8,
    /// Broker power cuts.
    pub broker_crashes: u8,
    /// Frames delivered twice.
    pub duplicates: u8,
    /// Frames lost.
    pub losses: u8,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { messages: 2, consumer_crashes: 1, broker_crashes: 1, duplicates: 1, losses: 1 }
    }
}

impl crate::Bounded for Bounds {
    fn list(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("messages", u64::from(self.messages)),
            ("consumer-crashes", u64::from(self.consumer_crashes)),
            ("broker-crashes", u64::from(self.broker_crashes)),
            ("duplicates", u64::from(self.duplicates)),
            ("losses", u64::from(self.losses)),
        ]
    }

    fn set(&mut self, name: &str, value: u64) -> Result<(), String> {
        let small = |name: &str, v: u64| u8::try_from(v).map_err(|_| format!("bound {name}={v} is above 255"));
        match name {
            "messages" if value == 0 => return Err("bound messages=0: a model needs a message to check".into()),
            "messages" => self.messages = small(name, value)?,
            "consumer-crashes" => self.consumer_crashes = small(name, value)?,
            "broker-crashes" => self.broker_crashes = small(name, value)?,
            "duplicates" => self.duplicates = small(name, value)?,
            "losses" => self.losses = small(name, value)?,
            _ => return Err(format!("this model has no bound {name:?}; bounds: messages, consumer-crashes, broker-crashes, duplicates, losses")),
        }
        Ok(())
    }
}

/// The model.
#[derive(Debug, Clone)]
pub struct ExactlyOnce {
    /// The dedup variant.
    pub variant: Variant,
    /// How far the checker goes.
    pub bounds: Bounds,
    /// The broker (a master alone).
    pub cfg: GroupConfig,
}

/// The consumer's database: what survives its crashes. Business effects (how many times each
/// message's effect was applied) and the dedup keys commit together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Db {
    /// Dedup keys recorded.
    pub keys: BTreeSet<String>,
    /// Message id → times its effect was applied.
    pub effects: BTreeMap<String, u8>,
}

impl DedupTxn for Db {
    type Error = std::convert::Infallible;
    fn is_recorded(&mut self, key: &str) -> Result<bool, Self::Error> {
        Ok(self.keys.contains(key))
    }
    fn record(&mut self, key: &str) -> Result<(), Self::Error> {
        self.keys.insert(key.to_string());
        Ok(())
    }
}

/// What the consumer is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Waiting {
    /// Its committed offset.
    Offset(i32),
    /// A pull.
    Pull(i32),
    /// An offset commit.
    Commit(i32),
}

/// The consumer's memory (lost in a crash).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Consumer {
    /// Next queue offset to pull; `None` until the committed offset is known.
    pub next: Option<u64>,
    /// Delivered and not yet processed: (queue offset, message id).
    pub pending: Vec<(u64, String)>,
    /// Processed up to here (the offset to commit).
    pub done_to: Option<u64>,
    /// Last offset this life committed.
    pub committed: Option<u64>,
    /// The request in flight.
    pub waiting: Option<Waiting>,
    /// Weak variant: claims held in memory.
    pub claims: ExpiringClaims,
}

/// Faults spent so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Spent {
    /// Consumer crashes.
    pub consumer_crashes: u8,
    /// Broker power cuts.
    pub broker_crashes: u8,
    /// Duplicated frames.
    pub duplicates: u8,
    /// Lost frames.
    pub losses: u8,
}

/// One state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    /// The broker and the network.
    pub cluster: Cluster,
    /// The consumer's memory.
    pub consumer: Consumer,
    /// The consumer's database.
    pub db: Db,
    /// Next opaque.
    pub next_opaque: i32,
    /// Faults spent.
    pub spent: Spent,
    /// A delivery was skipped as a duplicate.
    pub skipped_duplicate: bool,
    /// The consumer crashed with processed messages not committed.
    pub crash_before_commit: bool,
    /// A restart failed.
    pub open_failed: Option<String>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// The consumer asks for its committed offset.
    QueryOffset,
    /// The consumer pulls.
    Pull,
    /// The consumer processes the next delivered message.
    Process,
    /// The consumer commits its offset.
    Commit,
    /// A frame arrives.
    Deliver(usize),
    /// A frame arrives and a copy stays in flight.
    Duplicate(usize),
    /// A frame is lost (the consumer's request then times out).
    Lose(usize),
    /// The consumer crashes (its database survives).
    ConsumerCrash,
    /// The broker's disk completes a flush.
    FlushDone,
    /// The broker loses power.
    BrokerCrash,
    /// The broker restarts.
    BrokerRestart,
}

const GROUP: &str = "CG";

impl ExactlyOnce {
    /// The model of `variant` within `bounds`.
    pub fn new(variant: Variant, bounds: Bounds) -> Self {
        let mut cfg = GroupConfig::new(FlushDiskType::SyncFlush, BrokerRole::AsyncMaster, false, 1);
        cfg.master.offset_persist_interval_ms = 1 << 40; // Persisted at shutdown only: a crash loses commits.
        ExactlyOnce { variant, bounds, cfg }
    }

    /// The message ids stored, in queue order: m0, m1, …, then m0 again (a producer's retry).
    pub fn stored_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = (0..self.bounds.messages).map(|i| format!("m{i}")).collect();
        ids.push("m0".into());
        ids
    }

    fn request(&self, s: &mut State, waiting: fn(i32) -> Waiting, h: &dyn Fn(i32) -> RemotingCommand) {
        let opaque = s.next_opaque;
        s.next_opaque += 1;
        s.consumer.waiting = Some(waiting(opaque));
        s.cluster.send_to_master(0, h(opaque));
    }

    fn on_answer(&self, s: &mut State, cmd: &RemotingCommand) {
        let c = &mut s.consumer;
        match c.waiting {
            Some(Waiting::Offset(o)) if o == cmd.opaque => {
                c.waiting = None;
                // QUERY_NOT_FOUND (no commit yet): start at 0.
                c.next =
                    Some(if cmd.code == 0 { cmd.ext("offset").and_then(|v| v.parse().ok()).unwrap_or(0) } else { 0 });
            }
            Some(Waiting::Pull(o)) if o == cmd.opaque => {
                c.waiting = None;
                if cmd.code == 0 {
                    for m in decode_messages(&cmd.body).unwrap_or_default() {
                        let id = m.properties.get(prop::UNIQ_KEY).cloned().unwrap_or_default();
                        c.pending.push((m.queue_offset as u64, id));
                    }
                }
                if let Some(nb) = cmd.ext("nextBeginOffset").and_then(|v| v.parse().ok()) {
                    c.next = Some(nb);
                }
            }
            Some(Waiting::Commit(o)) if o == cmd.opaque => c.waiting = None,
            _ => {} // Late or duplicated: ignored, as the client ignores unknown opaques.
        }
    }

    fn process(&self, s: &mut State) {
        if s.consumer.pending.is_empty() {
            return;
        }
        let (qo, id) = s.consumer.pending.remove(0);
        let key = dedup_key(&id, "order");
        let apply = |db: &mut Db| {
            *db.effects.entry(id.clone()).or_default() += 1;
        };
        match self.variant {
            Variant::NoDedup => apply(&mut s.db),
            Variant::Dedup => {
                // One transaction: it works on a copy that replaces the database on commit.
                let mut txn = s.db.clone();
                let Ok(outcome) = process_once(&mut txn, &key, |t| {
                    apply(t);
                    Ok(())
                });
                s.skipped_duplicate |= outcome == Outcome::Duplicate;
                s.db = txn;
            }
            Variant::WeakDedup => {
                if s.consumer.claims.try_claim(0, &key) {
                    apply(&mut s.db);
                } else {
                    s.skipped_duplicate = true;
                }
            }
        }
        s.consumer.done_to = Some(qo + 1);
    }
}

impl Model for ExactlyOnce {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut cluster = Cluster::start(&self.cfg);
        // The producer's sends, already answered: each record stored and flushed.
        for (i, id) in self.stored_ids().into_iter().enumerate() {
            let cmd = crate::cluster::send_request(&id, -1 - i as i32, false);
            cluster.deliver_request(0, cmd);
            while cluster.can_flush(Role::Master) {
                cluster.flush(Role::Master);
            }
        }
        cluster.net.clear(); // The producer has its answers.
        vec![State {
            cluster,
            consumer: Consumer { claims: ExpiringClaims::new(60_000), ..Consumer::default() },
            db: Db::default(),
            next_opaque: 1,
            spent: Spent::default(),
            skipped_duplicate: false,
            crash_before_commit: false,
            open_failed: None,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.open_failed.is_some() {
            return;
        }
        let b = &self.bounds;
        let c = &s.consumer;
        let up = s.cluster.master.core().is_some();
        if up && c.waiting.is_none() {
            match c.next {
                None => actions.push(Action::QueryOffset),
                // The records stored: every message once, the first twice.
                Some(n) if c.pending.is_empty() && n < u64::from(b.messages) + 1 => actions.push(Action::Pull),
                _ => {}
            }
            if c.done_to.is_some() && c.done_to != c.committed {
                actions.push(Action::Commit);
            }
        }
        if !c.pending.is_empty() {
            actions.push(Action::Process);
        }
        for i in 0..s.cluster.net.len() {
            actions.push(Action::Deliver(i));
            if s.spent.duplicates < b.duplicates {
                actions.push(Action::Duplicate(i));
            }
            if s.spent.losses < b.losses {
                actions.push(Action::Lose(i));
            }
        }
        if s.spent.consumer_crashes < b.consumer_crashes {
            actions.push(Action::ConsumerCrash);
        }
        if s.cluster.can_flush(Role::Master) {
            actions.push(Action::FlushDone);
        }
        match s.cluster.master {
            Node::Up { .. } if s.spent.broker_crashes < b.broker_crashes => actions.push(Action::BrokerCrash),
            Node::Down { .. } => actions.push(Action::BrokerRestart),
            _ => {}
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let cfg = &self.cfg;
        match action {
            Action::QueryOffset => self.request(&mut s, Waiting::Offset, &|o| {
                let h =
                    QueryConsumerOffsetRequestHeader { consumer_group: GROUP.into(), topic: TOPIC.into(), queue_id: 0 };
                RemotingCommand::request_with(RequestCode::QueryConsumerOffset, o, &h)
            }),
            Action::Pull => {
                let next = s.consumer.next.unwrap_or(0);
                self.request(&mut s, Waiting::Pull, &|o| {
                    let h = PullMessageRequestHeader {
                        consumer_group: GROUP.into(),
                        topic: TOPIC.into(),
                        queue_id: 0,
                        queue_offset: next as i64,
                        max_msg_nums: 2,
                        sys_flag: pull_flag::SUBSCRIPTION,
                        commit_offset: 0,
                        suspend_timeout_millis: 0,
                        subscription: Some("*".into()),
                        sub_version: 0,
                        expression_type: Some("TAG".into()),
                        max_msg_bytes: None,
                        broker_name: None,
                    };
                    RemotingCommand::request_with(RequestCode::PullMessage, o, &h)
                })
            }
            Action::Process => self.process(&mut s),
            Action::Commit => {
                let to = s.consumer.done_to.unwrap_or(0);
                s.consumer.committed = Some(to);
                self.request(&mut s, Waiting::Commit, &|o| {
                    let h = UpdateConsumerOffsetRequestHeader {
                        consumer_group: GROUP.into(),
                        topic: TOPIC.into(),
                        queue_id: 0,
                        commit_offset: to as i64,
                    };
                    RemotingCommand::request_with(RequestCode::UpdateConsumerOffset, o, &h)
                })
            }
            Action::Deliver(i) | Action::Duplicate(i) => {
                let env = if matches!(action, Action::Duplicate(_)) {
                    s.spent.duplicates += 1;
                    s.cluster.net[i].clone()
                } else {
                    s.cluster.net.remove(i)
                };
                match env.to {
                    Dest::Master => s.cluster.deliver_request(0, env.cmd),
                    Dest::Client => self.on_answer(&mut s, &env.cmd),
                }
            }
            Action::Lose(i) => {
                s.spent.losses += 1;
                let lost = s.cluster.net.remove(i);
                let waited = match s.consumer.waiting {
                    Some(Waiting::Offset(o) | Waiting::Pull(o) | Waiting::Commit(o)) => o == lost.cmd.opaque,
                    None => false,
                };
                if waited {
                    s.consumer.waiting = None; // Its request times out; it asks again.
                }
            }
            Action::ConsumerCrash => {
                s.spent.consumer_crashes += 1;
                s.crash_before_commit |= s.consumer.done_to.is_some() && s.consumer.done_to != s.consumer.committed;
                s.consumer = Consumer { claims: ExpiringClaims::new(60_000), ..Consumer::default() };
                s.cluster.net.clear(); // Its connection broke.
            }
            Action::FlushDone => s.cluster.flush(Role::Master),
            Action::BrokerCrash => {
                s.spent.broker_crashes += 1;
                s.cluster.crash(Role::Master);
                s.consumer.waiting = None;
            }
            Action::BrokerRestart => {
                if let Err(e) = s.cluster.restart(cfg, Role::Master) {
                    s.open_failed = Some(e.0);
                }
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("each effect applied at most once", |_, s: &State| s.db.effects.values().all(|n| *n <= 1)),
            Property::always("recovery succeeds", |_, s: &State| s.open_failed.is_none()),
            Property::sometimes("every effect applied", |m: &ExactlyOnce, s: &State| {
                s.db.effects.len() == usize::from(m.bounds.messages)
            }),
            Property::sometimes("a duplicate delivery skipped", |_, s: &State| s.skipped_duplicate),
            Property::sometimes("consumer crash before its offset commit", |_, s: &State| s.crash_before_commit),
        ]
    }
}

impl crate::Explain for ExactlyOnce {
    fn describe(&self, s: &State, a: &Action) -> String {
        let frame = |i: usize| {
            let e = &s.cluster.net[i];
            if e.cmd.is_response() {
                let mut ids = Vec::new();
                for m in decode_messages(&e.cmd.body).unwrap_or_default() {
                    ids.push(format!(
                        "{}@{}",
                        m.properties.get(prop::UNIQ_KEY).map_or("?", String::as_str),
                        m.queue_offset
                    ));
                }
                format!(
                    "the answer {:?} to request #{} [{}]",
                    ResponseCode::from_code(e.cmd.code),
                    e.cmd.opaque,
                    ids.join(" ")
                )
            } else {
                format!("request #{} ({:?})", e.cmd.opaque, e.cmd.request_code())
            }
        };
        match a {
            Action::QueryOffset => "the consumer asks for its committed offset".into(),
            Action::Pull => format!("the consumer pulls from offset {}", s.consumer.next.unwrap_or(0)),
            Action::Process => {
                let (qo, id) = &s.consumer.pending[0];
                format!("the consumer processes {id} (queue offset {qo})")
            }
            Action::Commit => format!("the consumer commits offset {}", s.consumer.done_to.unwrap_or(0)),
            Action::Deliver(i) => format!("{} arrives", frame(*i)),
            Action::Duplicate(i) => format!("{} arrives, and a duplicate stays in flight", frame(*i)),
            Action::Lose(i) => format!("{} is lost", frame(*i)),
            Action::ConsumerCrash => "the consumer crashes (its database survives)".into(),
            Action::FlushDone => "the broker's disk completes a flush".into(),
            Action::BrokerCrash => "the broker loses power".into(),
            Action::BrokerRestart => "the broker restarts and recovers".into(),
        }
    }

    fn scenario(&self, path: &[(State, Option<Action>)], property: &str) -> Result<String, String> {
        if property != "each effect applied at most once" {
            return Err("only a repeated effect has a fast-lane counterpart".into());
        }
        let idempotent =
            match self.variant {
                Variant::NoDedup => false,
                Variant::Dedup => true,
                Variant::WeakDedup => return Err(
                    "the fast lane's consumers deduplicate strongly or not at all; it has no expiring-claim consumer"
                        .into(),
                ),
            };
        // Duplicates in the model come from a message stored twice (a producer's retry) and
        // from redelivery after a consumer crash: the fast lane gets both from duplicated frames
        // and the same crash.
        let mut faults = String::new();
        if path.iter().any(|(_, a)| matches!(a, Some(Action::ConsumerCrash))) {
            faults.push_str("at 1500 crash c0\nat 3000 restart c0\n");
        }
        if path.iter().any(|(_, a)| matches!(a, Some(Action::BrokerCrash))) {
            faults.push_str("at 2000 crash broker\nat 4000 restart broker\n");
        }
        let steps: String = path
            .iter()
            .filter_map(|(st, a)| a.as_ref().map(|a| self.describe(st, a)))
            .enumerate()
            .map(|(i, s)| format!("#   {}. {s}\n", i + 1))
            .collect();
        let variant = if idempotent { "dedup" } else { "no-dedup" };
        Ok(format!(
            "# goal: exported from `mqsim check exactly-once --variant {variant}`: a counterexample to\n\
             # \"{property}\". The model's steps:\n{steps}\
             name = model-exactly-once-{variant}\n\
             flush = sync\n\
             producers = 1\n\
             messages = 200\n\
             consumers = 1\n\
             queues = 1\n\
             idempotent = {idempotent}\n\
             dup_pct = 10\n\
             duration_ms = 20000\n\
             {faults}\
             expect acked_loss = none\n\
             expect processed_twice = none\n"
        ))
    }

    fn diagnose(&self, s: &State, property: &str) -> Option<String> {
        match property {
            "each effect applied at most once" => Some(format!("effects applied per message id: {:?}", s.db.effects)),
            "recovery succeeds" => s.open_failed.clone(),
            _ => None,
        }
    }
}
