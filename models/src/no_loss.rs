//! **No loss under SYNC_FLUSH + SYNC_MASTER.** A producer sends a few messages, one at a time,
//! to a master with one slave. The checker interleaves, in every order: deliveries, losses and
//! duplicates of client frames; the HA streams; disk flush completions; timers; power cuts and
//! restarts of either broker; the loss of the master's disk; a broken HA connection.
//!
//! Always:
//! - **acknowledged messages survive**: every message answered SEND_OK is held, at the queue
//!   offset its answer gave, by some broker of the group: in its running store, or on the disk
//!   it restarts from (the real recovery decides);
//! - **acknowledged order**: acknowledged queue offsets increase in acknowledgement order (a
//!   broker that lost an acknowledged tail would hand its offsets out again);
//! - **recovery succeeds**: every restart opens.
//!
//! Sometimes (so the above are not vacuous): a broker loses power right after a SEND_OK; every
//! message is acknowledged.
//!
//! Variants: `async-flush` (both brokers ASYNC_FLUSH) and `async-master` (ASYNC_MASTER) must
//! fail: they acknowledge bytes one power cut, or one lost disk, can take.

use rmq_broker_core::{BrokerRole, FlushDiskType};
use rmq_client_core::retry::{is_retryable, RETRY_TIMES_WHEN_SEND_FAILED};
use rmq_proto::{RemotingCommand, ResponseCode};
use stateright::{Model, Property};

use crate::cluster::{key_of, message_at, readable_store, Cluster, Dest, GroupConfig, Node, Role};

/// Which configuration is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// SYNC_FLUSH on both brokers, SYNC_MASTER: the guarantee holds.
    Sound,
    /// ASYNC_FLUSH on both brokers, SYNC_MASTER: must fail.
    AsyncFlush,
    /// SYNC_FLUSH, ASYNC_MASTER: must fail.
    AsyncMaster,
}

/// How far the checker goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Messages the producer sends.
    pub messages: u8,
    /// Power cuts (of either broker).
    pub crashes: u8,
    /// Lost master disks.
    pub disk_losses: u8,
    /// Broken HA connections.
    pub ha_breaks: u8,
    /// Client frames delivered twice.
    pub duplicates: u8,
    /// Client frames lost.
    pub losses: u8,
    /// Timers run up to this time (ms) on each broker.
    pub horizon_ms: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { messages: 2, crashes: 2, disk_losses: 1, ha_breaks: 0, duplicates: 0, losses: 0, horizon_ms: 1_000 }
    }
}

impl crate::Bounded for Bounds {
    fn list(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("messages", u64::from(self.messages)),
            ("crashes", u64::from(self.crashes)),
            ("disk-losses", u64::from(self.disk_losses)),
            ("ha-breaks", u64::from(self.ha_breaks)),
            ("duplicates", u64::from(self.duplicates)),
            ("losses", u64::from(self.losses)),
            ("horizon-ms", self.horizon_ms),
        ]
    }

    fn set(&mut self, name: &str, value: u64) -> Result<(), String> {
        let small = |name: &str, v: u64| u8::try_from(v).map_err(|_| format!("bound {name}={v} is above 255"));
        match name {
            "messages" if value == 0 => return Err("bound messages=0: a model needs a message to check".into()),
            "messages" => self.messages = small(name, value)?,
            "crashes" => self.crashes = small(name, value)?,
            "disk-losses" => self.disk_losses = small(name, value)?,
            "ha-breaks" => self.ha_breaks = small(name, value)?,
            "duplicates" => self.duplicates = small(name, value)?,
            "losses" => self.losses = small(name, value)?,
            "horizon-ms" => self.horizon_ms = value,
            _ => return Err(format!("this model has no bound {name:?}; bounds: messages, crashes, disk-losses, ha-breaks, duplicates, losses, horizon-ms")),
        }
        Ok(())
    }
}

/// The model.
#[derive(Debug, Clone)]
pub struct NoLoss {
    /// The configuration checked.
    pub variant: Variant,
    /// How far the checker goes.
    pub bounds: Bounds,
    /// The broker group.
    pub cfg: GroupConfig,
}

impl NoLoss {
    /// The model of `variant` within `bounds`.
    pub fn new(variant: Variant, bounds: Bounds) -> Self {
        let (flush, role) = match variant {
            Variant::Sound => (FlushDiskType::SyncFlush, BrokerRole::SyncMaster),
            Variant::AsyncFlush => (FlushDiskType::AsyncFlush, BrokerRole::SyncMaster),
            Variant::AsyncMaster => (FlushDiskType::SyncFlush, BrokerRole::AsyncMaster),
        };
        NoLoss { variant, bounds, cfg: GroupConfig::new(flush, role, true, 1) }
    }
}

/// A message answered SEND_OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ack {
    /// Message number.
    pub msg: u8,
    /// The queue offset the answer gave.
    pub queue_offset: u64,
}

/// The send in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attempt {
    /// Message number.
    pub msg: u8,
    /// The request's opaque.
    pub opaque: i32,
    /// Attempts made so far.
    pub tries: u8,
    /// Its request or answer was lost, or its connection broke: it will time out.
    pub lost: bool,
}

/// Faults spent so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Spent {
    /// Power cuts.
    pub crashes: u8,
    /// Lost disks.
    pub disk_losses: u8,
    /// Broken HA connections.
    pub ha_breaks: u8,
    /// Duplicated frames.
    pub duplicates: u8,
    /// Lost frames.
    pub losses: u8,
}

/// One state of the model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    /// Master, slave, network.
    pub cluster: Cluster,
    /// Next message to send.
    pub next_msg: u8,
    /// The send in progress.
    pub sending: Option<Attempt>,
    /// Next opaque.
    pub next_opaque: i32,
    /// Messages answered SEND_OK, in answer order.
    pub acked: Vec<Ack>,
    /// Faults spent.
    pub spent: Spent,
    /// The last step answered a SEND_OK.
    pub just_acked: bool,
    /// A broker lost power right after a SEND_OK.
    pub crash_after_ack: bool,
    /// A restart failed (recovery refused the disk), and why.
    pub open_failed: Option<String>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// The producer sends (or resends) a message.
    Send {
        /// Message number.
        msg: u8,
    },
    /// A client frame arrives.
    Deliver {
        /// Its place in the multiset.
        index: usize,
    },
    /// A client frame is lost.
    Lose {
        /// Its place in the multiset.
        index: usize,
    },
    /// A client frame arrives, and a copy stays in flight.
    Duplicate {
        /// Its place in the multiset.
        index: usize,
    },
    /// The producer's request or answer is gone (lost, or its connection broke): it times out.
    SendTimeout,
    /// The next HA frame reaches the slave.
    HaToSlave,
    /// The next HA report reaches the master.
    HaToMaster,
    /// The HA connection breaks.
    HaBreak,
    /// A broker's disk completes a flush.
    FlushDone(Role),
    /// A broker's next timer fires.
    Timer(Role),
    /// A broker loses power.
    Crash(Role),
    /// A broker restarts over its disk.
    Restart(Role),
    /// The master's disk is replaced by an empty one (while it is down).
    LoseDisk,
}

fn send_request(msg: u8, opaque: i32) -> RemotingCommand {
    crate::cluster::send_request(&format!("m{msg}"), opaque, true)
}

impl NoLoss {
    /// The variant's name on the command line.
    pub fn variant_name(&self) -> &'static str {
        match self.variant {
            Variant::Sound => "sync",
            Variant::AsyncFlush => "async-flush",
            Variant::AsyncMaster => "async-master",
        }
    }

    /// Whether an acknowledged message is held by some broker (running, or on its disk).
    pub fn ack_survives(&self, s: &State, ack: &Ack) -> bool {
        let want = format!("m{}", ack.msg);
        s.cluster.roles().into_iter().any(|role| {
            let node = s.cluster.node(role).expect("role present");
            readable_store(&self.cfg, role, node)
                .and_then(|store| message_at(&store, ack.queue_offset))
                .is_some_and(|m| key_of(&m) == Some(want.as_str()))
        })
    }

    fn give_up_or_retry(&self, s: &mut State, retry: bool) {
        let Some(a) = s.sending.take() else { return };
        if retry && u32::from(a.tries) <= RETRY_TIMES_WHEN_SEND_FAILED {
            s.sending = Some(Attempt { tries: a.tries + 1, opaque: s.next_opaque, lost: false, ..a });
            s.cluster.send_to_master(0, send_request(a.msg, s.next_opaque));
            s.next_opaque += 1;
        } else {
            s.next_msg += 1;
        }
    }

    fn on_answer(&self, s: &mut State, cmd: &RemotingCommand) {
        let Some(a) = s.sending else { return };
        if cmd.opaque != a.opaque {
            return; // A late answer to an earlier attempt.
        }
        let code = ResponseCode::from_code(cmd.code);
        if code == ResponseCode::Success {
            let queue_offset = cmd.ext("queueOffset").and_then(|o| o.parse().ok()).unwrap_or(u64::MAX);
            s.acked.push(Ack { msg: a.msg, queue_offset });
            s.just_acked = true;
            s.sending = None;
            s.next_msg += 1;
        } else {
            // Stored-but-unconfirmed codes are not retried (a retry would duplicate).
            self.give_up_or_retry(s, is_retryable(code));
        }
    }
}

impl Model for NoLoss {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            cluster: Cluster::start(&self.cfg),
            next_msg: 0,
            sending: None,
            next_opaque: 1,
            acked: Vec::new(),
            spent: Spent::default(),
            just_acked: false,
            crash_after_ack: false,
            open_failed: None,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.open_failed.is_some() {
            return;
        }
        let b = &self.bounds;
        if s.sending.is_none() && s.next_msg < b.messages && s.cluster.master.core().is_some() {
            actions.push(Action::Send { msg: s.next_msg });
        }
        for (index, _) in s.cluster.net.iter().enumerate() {
            actions.push(Action::Deliver { index });
            if s.spent.losses < b.losses {
                actions.push(Action::Lose { index });
            }
            if s.spent.duplicates < b.duplicates {
                actions.push(Action::Duplicate { index });
            }
        }
        if s.sending.is_some_and(|a| a.lost) {
            actions.push(Action::SendTimeout);
        }
        if let Some(link) = &s.cluster.ha {
            if !link.to_slave.is_empty() {
                actions.push(Action::HaToSlave);
            }
            if !link.to_master.is_empty() {
                actions.push(Action::HaToMaster);
            }
            if s.spent.ha_breaks < b.ha_breaks {
                actions.push(Action::HaBreak);
            }
        }
        for role in s.cluster.roles() {
            if s.cluster.can_flush(role) {
                actions.push(Action::FlushDone(role));
            }
            if s.cluster.next_timer(role).is_some_and(|t| t <= b.horizon_ms) {
                actions.push(Action::Timer(role));
            }
            match s.cluster.node(role) {
                Some(Node::Up { .. }) if s.spent.crashes < b.crashes => actions.push(Action::Crash(role)),
                Some(Node::Down { .. }) => actions.push(Action::Restart(role)),
                _ => {}
            }
        }
        if matches!(s.cluster.master, Node::Down { .. }) && s.spent.disk_losses < b.disk_losses {
            actions.push(Action::LoseDisk);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let cfg = &self.cfg;
        s.just_acked = false;
        match action {
            Action::Send { msg } => {
                s.sending = Some(Attempt { msg, opaque: s.next_opaque, tries: 1, lost: false });
                s.cluster.send_to_master(0, send_request(msg, s.next_opaque));
                s.next_opaque += 1;
            }
            Action::Deliver { index } | Action::Duplicate { index } => {
                let env = if matches!(action, Action::Duplicate { .. }) {
                    s.spent.duplicates += 1;
                    s.cluster.net[index].clone()
                } else {
                    s.cluster.net.remove(index)
                };
                match env.to {
                    Dest::Master => s.cluster.deliver_request(env.client, env.cmd),
                    Dest::Client => self.on_answer(&mut s, &env.cmd),
                }
            }
            Action::Lose { index } => {
                s.spent.losses += 1;
                let gone = s.cluster.net.remove(index);
                if let Some(a) = s.sending.as_mut().filter(|a| a.opaque == gone.cmd.opaque) {
                    a.lost = true;
                }
            }
            Action::SendTimeout => self.give_up_or_retry(&mut s, true),
            Action::HaToSlave => s.cluster.ha_to_slave(),
            Action::HaToMaster => s.cluster.ha_to_master(),
            Action::HaBreak => {
                s.spent.ha_breaks += 1;
                s.cluster.break_ha();
            }
            Action::FlushDone(role) => s.cluster.flush(role),
            Action::Timer(role) => s.cluster.tick(role),
            Action::Crash(role) => {
                s.spent.crashes += 1;
                s.crash_after_ack |= last.just_acked;
                s.cluster.crash(role);
                if role == Role::Master {
                    // The producer's connection broke: its send fails (a timeout, or at once).
                    if let Some(a) = s.sending.as_mut() {
                        a.lost = true;
                    }
                }
            }
            Action::Restart(role) => {
                if let Err(e) = s.cluster.restart(cfg, role) {
                    s.open_failed = Some(e.0);
                }
            }
            Action::LoseDisk => {
                s.spent.disk_losses += 1;
                s.cluster.lose_disk(Role::Master);
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("acknowledged messages survive", |m: &NoLoss, s: &State| {
                s.acked.iter().all(|a| m.ack_survives(s, a))
            }),
            Property::always("acknowledged order", |_, s: &State| {
                s.acked.windows(2).all(|w| w[0].queue_offset < w[1].queue_offset)
            }),
            Property::always("recovery succeeds", |_, s: &State| s.open_failed.is_none()),
            Property::sometimes("power cut right after SEND_OK", |_, s: &State| s.crash_after_ack),
            Property::sometimes("every message acknowledged", |m: &NoLoss, s: &State| {
                s.acked.len() == usize::from(m.bounds.messages)
            }),
        ]
    }
}

impl crate::Explain for NoLoss {
    fn describe(&self, s: &State, a: &Action) -> String {
        match a {
            Action::Send { msg } => format!("the producer sends m{msg}"),
            Action::Deliver { index } | Action::Lose { index } | Action::Duplicate { index } => {
                let e = &s.cluster.net[*index];
                let what = if e.cmd.is_response() {
                    let qo = e.cmd.ext("queueOffset").unwrap_or("-");
                    format!(
                        "the answer {:?} (queueOffset {qo}) to request #{}",
                        ResponseCode::from_code(e.cmd.code),
                        e.cmd.opaque
                    )
                } else {
                    format!("request #{} (SEND {})", e.cmd.opaque, String::from_utf8_lossy(&e.cmd.body))
                };
                match a {
                    Action::Deliver { .. } => format!("{what} arrives"),
                    Action::Lose { .. } => format!("{what} is lost"),
                    _ => format!("{what} arrives, and a duplicate stays in flight"),
                }
            }
            Action::SendTimeout => "the producer's send times out".into(),
            Action::HaToSlave => {
                let (offset, bytes) =
                    s.cluster.ha.as_ref().and_then(|l| l.to_slave.front()).cloned().unwrap_or_default();
                if bytes.is_empty() {
                    format!("the slave receives a heartbeat at offset {offset}")
                } else {
                    format!("the slave receives {} CommitLog bytes at offset {offset}", bytes.len())
                }
            }
            Action::HaToMaster => {
                let offset = s.cluster.ha.as_ref().and_then(|l| l.to_master.front()).copied().unwrap_or_default();
                format!("the master receives the slave's report: offset {offset}")
            }
            Action::HaBreak => "the HA connection breaks".into(),
            Action::FlushDone(role) => {
                let written = s.cluster.node(*role).and_then(Node::core).map(|c| c.store().commit_log_max_offset());
                format!("the {role:?}'s disk completes a flush (CommitLog written to {})", written.unwrap_or(0))
            }
            Action::Timer(role) => {
                format!("the {role:?}'s timer fires at {} ms", s.cluster.next_timer(*role).unwrap_or(0))
            }
            Action::Crash(role) => {
                let c = s.cluster.node(*role).and_then(Node::core);
                let (w, f) =
                    c.map_or((0, 0), |c| (c.store().commit_log_max_offset(), c.store().commit_log_flushed_offset()));
                format!("the {role:?} loses power (CommitLog written to {w}, flushed to {f})")
            }
            Action::Restart(role) => format!("the {role:?} restarts and recovers from its disk"),
            Action::LoseDisk => "the master's disk is lost (it will restart empty)".into(),
        }
    }

    fn scenario(&self, path: &[(State, Option<Action>)], property: &str) -> Result<String, String> {
        if property == "recovery succeeds" {
            return Err("a recovery failure is a store bug: replay it with the model's steps".into());
        }
        let (flush, replication) = match self.variant {
            Variant::Sound => ("sync", "sync"),
            Variant::AsyncFlush => ("async", "sync"),
            Variant::AsyncMaster => ("sync", "async"),
        };
        let node = |r: &Role| match r {
            Role::Master => "broker",
            Role::Slave => "slave",
        };
        // The model's faults in order, on a timeline under steady load. A power cut that came
        // right after a SEND_OK in the model is aimed the same way (`on ack`), unless its disk
        // is lost next (a wipe needs the node down at a known time: that cut is at a fixed time,
        // where the load keeps recent answers unreplicated). Power cuts with nothing flushed or
        // restarted between them in the model fire together, on the same ack.
        let mut lines: Vec<String> = Vec::new();
        let (mut at, mut acked_since_fault, mut down) = (1_000u64, false, std::collections::BTreeSet::new());
        let mut last_crash: Option<(u64, &'static str)> = None;
        let mut partitioned = false;
        let actions: Vec<(&State, &Action)> = path.iter().filter_map(|(st, a)| a.as_ref().map(|a| (st, a))).collect();
        for (i, (state, a)) in actions.iter().enumerate() {
            match a {
                Action::Deliver { index } | Action::Duplicate { index }
                    if state.cluster.net[*index].cmd.is_response() && state.cluster.net[*index].cmd.code == 0 =>
                {
                    acked_since_fault = true;
                }
                Action::FlushDone(_) | Action::Restart(_) | Action::LoseDisk => last_crash = None,
                _ => {}
            }
            match a {
                Action::Crash(r) => {
                    let wiped_next = actions[i + 1..]
                        .iter()
                        .find(|(_, b)| matches!(b, Action::LoseDisk | Action::Restart(_) | Action::Crash(_)))
                        .is_some_and(|(_, b)| matches!(b, Action::LoseDisk));
                    let (t, aim) = match last_crash {
                        Some((t, aim)) => (t, aim),
                        None if acked_since_fault && !wiped_next => (at, " on ack"),
                        None => (at, ""),
                    };
                    // The model held acknowledged bytes back from the slave: on a timeline,
                    // a partition of the HA link before the cut does that.
                    let held_back = *r == Role::Master
                        && state.cluster.node(Role::Slave).and_then(Node::core).is_some_and(|sl| {
                            let m = state.cluster.master.core().map_or(0, |m| m.store().commit_log_max_offset());
                            sl.store().commit_log_max_offset() < m
                        });
                    if held_back && !partitioned {
                        lines.push(format!("at {} partition broker slave", t.saturating_sub(500)));
                        partitioned = true;
                    }
                    lines.push(format!("at {t} crash {}{aim}", node(r)));
                    down.insert(node(r));
                    last_crash = Some((t, aim));
                    (at, acked_since_fault) = (t + 20, false);
                }
                Action::LoseDisk => {
                    lines.push(format!("at {at} wipe broker"));
                    at += 20;
                }
                Action::Restart(r) => {
                    at += 2_000;
                    lines.push(format!("at {at} restart {}", node(r)));
                    down.remove(node(r));
                    at += 1_000;
                }
                Action::HaBreak => {
                    lines.push(format!("at {at} partition broker slave"));
                    lines.push(format!("at {} heal", at + 1_000));
                    at += 1_000;
                }
                _ => {}
            }
        }
        // Whatever the model left down comes back, so the run can judge what survived.
        at += 3_000;
        if partitioned {
            lines.push(format!("at {at} heal"));
        }
        for n in down {
            lines.push(format!("at {at} restart {n}"));
        }
        let steps: Vec<String> = path.iter().filter_map(|(st, a)| a.as_ref().map(|a| self.describe(st, a))).collect();
        Ok(format!(
            "# goal: exported from `mqsim check no-loss --variant {variant}`: a counterexample to\n\
             # \"{property}\". The model's steps:\n{steps}\
             name = model-no-loss-{variant}\n\
             flush = {flush}\n\
             replication = {replication}\n\
             producers = 4\n\
             messages = 400\n\
             send_interval_ms = 2\n\
             consumers = 1\n\
             queues = 1\n\
             flush_lag_ms = 3\n\
             duration_ms = {duration}\n\
             {faults}\n\
             expect acked_loss = none\n\
             expect acked >= 1\n",
            variant = self.variant_name(),
            steps = steps.iter().enumerate().map(|(i, s)| format!("#   {}. {s}\n", i + 1)).collect::<String>(),
            duration = at + 20_000,
            faults = lines.join("\n"),
        ))
    }

    fn diagnose(&self, s: &State, property: &str) -> Option<String> {
        match property {
            "acknowledged messages survive" => {
                let lost: Vec<String> = s
                    .acked
                    .iter()
                    .filter(|a| !self.ack_survives(s, a))
                    .map(|a| format!("m{} (SEND_OK, queue offset {})", a.msg, a.queue_offset))
                    .collect();
                Some(format!("acknowledged but held by no broker, running or on disk: {}", lost.join(", ")))
            }
            "acknowledged order" => Some(format!("acknowledged queue offsets: {:?}", s.acked)),
            "recovery succeeds" => s.open_failed.clone(),
            _ => None,
        }
    }
}
