//! Scenarios: a small line-based DSL.
//!
//! ```text
//! # goal: what this reproduces
//! name = broker-crash-sync
//! flush = sync            # sync | async
//! producers = 2
//! messages = 100          # per producer
//! send_interval_ms = 20
//! consumers = 2
//! queues = 4
//! latency_ms = 1
//! jitter_ms = 2
//! drop_pct = 0
//! dup_pct = 0
//! flush_lag_ms = 2
//! writeback_pct = 0       # crash: chance a dirty page was written back
//! tear = true             # crash: tear one dirty page at a sector boundary
//! replication = sync      # none | async | sync: every broker group gets a slave
//!                         # (`slave`, `slave1`, …); async = ASYNC_MASTER, sync = SYNC_MASTER
//! duration_ms = 30000
//! net_faults_until_ms = 20000  # loss and duplication stop here (default: a third of the
//!                              # run, at most 15 s, before the end)
//! at 1500 crash broker
//! at 3000 restart broker
//! at 4000 partition c0 broker
//! at 5000 wipe broker     # a crashed broker's disk is lost: it restarts empty
//! at 6000 heal
//! expect acked_loss = none   # none | allowed
//! expect processed_twice = none  # none | allowed (default: none when idempotent; allowed
//!                                 # beside idempotent = true is refused)
//! ```

use std::collections::{BTreeMap, BTreeSet};

pub use rmq_client_core::transaction::LocalTransactionState;

/// How long after the last fault the timing property starts to apply.
pub const SETTLE_MS: u64 = 15_000;

/// A fault at a point in simulated time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Power loss on a node (broker or namesrv).
    Crash(String),
    /// Restart a crashed node.
    Restart(String),
    /// Drop all traffic between two nodes, both ways.
    Partition(String, String),
    /// Drop traffic from the first node to the second only.
    PartitionOneWay(String, String),
    /// Remove every partition.
    Heal,
    /// Stop a node's processing for a while (a GC pause, SIGSTOP); frames and timers wait.
    Pause(String, u64),
    /// Power loss of a node at the first interesting moment from then on (`at T crash NODE on
    /// WHAT`): aims crashes where durability bugs hide.
    CrashOn(String, Trigger),
    /// The disk of a crashed broker is lost (replaced by an empty one): its next restart
    /// starts from nothing.
    Wipe(String),
    /// An operator rewinds the consumer group (`at T reset-offsets MS`: mqadmin
    /// resetOffsetByTime to MS before now, forced) on every master; live members re-seat.
    ResetOffsets(u64),
}

/// How consuming a message goes in a scenario with failures (`poison_pct`, `flaky_pct`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeClass {
    /// Always consumed.
    Healthy,
    /// The first consumption fails; the retry succeeds.
    Flaky,
    /// Every consumption fails: the message ends in the dead-letter queue.
    Poison,
}

/// Master/slave replication of every broker group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Replication {
    /// Masters only.
    None,
    /// ASYNC_MASTER + one slave per group.
    Async,
    /// SYNC_MASTER + one slave per group: SEND_OK only once the slave holds the message.
    Sync,
}

impl Replication {
    /// The DSL word.
    pub fn word(self) -> &'static str {
        match self {
            Replication::None => "none",
            Replication::Async => "async",
            Replication::Sync => "sync",
        }
    }
}

/// The moment an armed crash waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// A CommitLog flush has been asked for and has not completed (pages in flight).
    Flush,
    /// A producer has just been answered SEND_OK.
    Ack,
    /// A checkpoint's ConsumeQueue flushes are in flight.
    Checkpoint,
    /// The node has just restarted and recovered (a crash during or right after recovery).
    Recovery,
}

impl Trigger {
    /// The DSL word.
    pub fn word(self) -> &'static str {
        match self {
            Trigger::Flush => "flush",
            Trigger::Ack => "ack",
            Trigger::Checkpoint => "checkpoint",
            Trigger::Recovery => "recovery",
        }
    }

    fn parse(w: &str) -> Option<Trigger> {
        [Trigger::Flush, Trigger::Ack, Trigger::Checkpoint, Trigger::Recovery].into_iter().find(|t| t.word() == w)
    }
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// What it reproduces.
    pub goal: String,
    /// SYNC_FLUSH or ASYNC_FLUSH.
    pub sync_flush: bool,
    /// NameServers (`ns`, `ns1`, …).
    pub namesrvs: u32,
    /// Broker groups; each has a master (`broker`, `broker1`, …) holding every queue of the
    /// topic and, with replication, a slave (`slave`, `slave1`, …).
    pub brokers: u32,
    /// Master/slave replication of every group.
    pub replication: Replication,
    /// Producers.
    pub producers: u32,
    /// Messages per producer.
    pub messages: u32,
    /// Time between sends of one producer.
    pub send_interval_ms: u64,
    /// Consumers in the group.
    pub consumers: u32,
    /// Consumers deduplicate by message id (UNIQ_KEY) before processing (the brief's
    /// idempotent consumption).
    pub idempotent: bool,
    /// Queues of the topic.
    pub queues: i32,
    /// One-way base latency.
    pub latency_ms: u64,
    /// Extra random latency (reorders).
    pub jitter_ms: u64,
    /// Chance a frame is dropped.
    pub drop_pct: u32,
    /// Chance a frame is delivered twice.
    pub dup_pct: u32,
    /// How long a flush takes before it is reported.
    pub flush_lag_ms: u64,
    /// Crash: chance a dirty page was written back.
    pub writeback_pct: u32,
    /// Crash: tear one page.
    pub tear: bool,
    /// When the run ends.
    pub duration_ms: u64,
    /// Fault schedule, by time.
    pub faults: Vec<(u64, Fault)>,
    /// Whether acknowledged messages may be lost (ASYNC_FLUSH crashes).
    pub acked_loss_allowed: bool,
    /// `expect processed_twice = none` (`Some(true)`) or `= allowed` (`Some(false)`): each
    /// message must be processed once even without `idempotent`, which is what a model's
    /// `no-dedup` counterexample, exported, claims and breaks. Idempotent scenarios always
    /// expect it; `allowed` beside `idempotent = true` is refused.
    pub processed_once: Option<bool>,
    /// Per-node wall-clock skew, ms (message timestamps, expiry).
    pub clock_skew_ms: BTreeMap<String, i64>,
    /// When random frame loss and duplication stop (`net_faults_until_ms`); by default a
    /// third of the run (at most 15 s) before the end, so liveness is judged on a healed
    /// network, as it is after partitions.
    pub net_faults_until_ms: Option<u64>,
    /// Bound of the timing property (`delivery_within_ms`); see [`Scenario::timeliness`].
    pub delivery_within_ms: Option<u64>,
    /// Progress the run must make (`expect acked >= 90%`, `expect delivered >= 100`); a run
    /// that makes less fails, so a run in which nothing happened never passes.
    pub floors: Floors,
    /// Largest message body (`body_bytes`); each message's size (from its key's length up to
    /// this) and content follow from its key ([`crate::oracle::body_for`]), so every delivery
    /// and every stored record is checked byte for byte. 0: the body is the key.
    pub body_bytes: u32,
    /// Share of messages sent keyed to one hot queue (`hot_pct`), as an orderly producer with
    /// a hot key does; the rest spread over every queue. Leaves quiet queues that only the
    /// checkpoint protects after a crash.
    pub hot_pct: u32,
    /// Small store files (`small_segments = true`): 64 KiB CommitLog segments and 128-entry
    /// ConsumeQueue files, so runs roll segments over and recovery crosses file boundaries.
    pub small_segments: bool,
    /// Retention (`retention_ms = N`): brokers delete CommitLog segments whose messages are
    /// all older than N ms (fileReservedTime, at every hour, checked every second). The oracle
    /// tells such deletions from loss. Needs `small_segments` (segments must fill to go).
    pub retention_ms: Option<u64>,
    /// Share of messages whose consumption always fails (`poison_pct`): retried with growing
    /// delays, then moved to the group's dead-letter queue.
    pub poison_pct: u32,
    /// Share of messages whose first consumption fails (`flaky_pct`), retried once.
    pub flaky_pct: u32,
    /// The consumers' `maxReconsumeTimes` (`max_reconsume`): retries before the DLQ.
    pub max_reconsume: i32,
    /// Orderly consumers (`orderly = true`): each queue consumed one message at a time under
    /// the broker's queue lock; failures retried in place, then dead-lettered.
    pub orderly: bool,
    /// Order keys per producer (`order_keys`): message `p<i>-<seq>` is sent to the queue of key
    /// `p<i>-k<seq % order_keys>`, and per-key processing order is judged. 0: spread sends.
    pub order_keys: u32,
    /// How long the application takes over one message (`consume_ms`).
    pub consume_ms: u64,
    /// Fault injection (`queue_lock = false`): orderly consumers skip the broker's queue lock,
    /// to show what the lock protects.
    pub queue_lock: bool,
    /// Transactional producers (`transactional = true`): every message is a half message
    /// ended by the local transaction, or by the broker's check-back when the producer says
    /// UNKNOW or dies first.
    pub transactional: bool,
    /// Share of transactions that roll back (`rollback_pct`).
    pub rollback_pct: u32,
    /// Share of transactions whose local outcome is UNKNOW (`unknown_pct`): the check-back
    /// decides them (a third commit, a third roll back, a third stay unknown until the broker
    /// gives up on them).
    pub unknown_pct: u32,
    /// BROADCASTING consumers (`broadcasting = true`): every member gets every message and
    /// keeps its offsets in its own local store, which survives its restarts.
    pub broadcasting: bool,
}

/// Simulated brokers check back a half message this old (transactionTimeOut; RocketMQ: 6 s).
pub const TX_TIMEOUT_MS: u64 = 3_000;
/// Simulated brokers look for open half messages this often (transactionCheckInterval;
/// RocketMQ: 30 s).
pub const TX_CHECK_INTERVAL_MS: u64 = 2_000;
/// How long the fast lane's local transaction takes between SEND_OK and END_TRANSACTION: a
/// producer crash in this window leaves the half message to the check-back.
pub const TX_LOCAL_MS: u64 = 30;

/// The orderly consumers' pause after a failure (RocketMQ's suspendCurrentQueueTimeMillis).
pub const ORDERLY_SUSPEND_MS: u64 = 1_000;

/// A progress floor: a share or an absolute count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// Percent of the reference (messages attempted for `acked`, messages acknowledged for
    /// `delivered`).
    Pct(u32),
    /// At least this many.
    Count(u64),
}

impl Floor {
    /// Whether `got` out of `of` meets the floor.
    pub fn met(self, got: u64, of: u64) -> bool {
        match self {
            Floor::Pct(p) => got * 100 >= of * u64::from(p),
            Floor::Count(n) => got >= n,
        }
    }

    fn parse(v: &str) -> Option<Floor> {
        match v.strip_suffix('%') {
            Some(p) => p.parse().ok().filter(|p| *p <= 100).map(Floor::Pct),
            None => v.parse().ok().map(Floor::Count),
        }
    }

    fn dsl(self) -> String {
        match self {
            Floor::Pct(p) => format!("{p}%"),
            Floor::Count(n) => n.to_string(),
        }
    }
}

/// The progress floors of a scenario. The default demands at least one acknowledged message
/// and at least one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floors {
    /// Messages answered SEND_OK, against messages the producers tried to send.
    pub acked: Floor,
    /// Distinct acknowledged messages delivered, against messages acknowledged.
    pub delivered: Floor,
}

impl Default for Floors {
    fn default() -> Self {
        Floors { acked: Floor::Count(1), delivered: Floor::Count(1) }
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "unnamed".into(),
            goal: String::new(),
            sync_flush: true,
            namesrvs: 1,
            brokers: 1,
            replication: Replication::None,
            producers: 2,
            messages: 100,
            send_interval_ms: 20,
            consumers: 2,
            idempotent: false,
            queues: 4,
            latency_ms: 1,
            jitter_ms: 2,
            drop_pct: 0,
            dup_pct: 0,
            flush_lag_ms: 2,
            writeback_pct: 0,
            tear: false,
            duration_ms: 30_000,
            faults: Vec::new(),
            acked_loss_allowed: false,
            processed_once: None,
            clock_skew_ms: BTreeMap::new(),
            net_faults_until_ms: None,
            delivery_within_ms: None,
            floors: Floors::default(),
            body_bytes: 0,
            hot_pct: 0,
            small_segments: false,
            retention_ms: None,
            poison_pct: 0,
            flaky_pct: 0,
            max_reconsume: 16,
            orderly: false,
            order_keys: 0,
            consume_ms: 0,
            queue_lock: true,
            transactional: false,
            rollback_pct: 0,
            unknown_pct: 0,
            broadcasting: false,
        }
    }
}

/// Parses the DSL; errors name the line.
pub fn parse(text: &str) -> Result<Scenario, String> {
    let mut s = Scenario::default();
    let mut kv: BTreeMap<String, String> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("").trim();
        if let Some(goal) = line.strip_prefix("# goal:") {
            s.goal = goal.trim().to_string();
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: &str| format!("line {}: {m}: {raw:?}", i + 1);
        if let Some(rest) = line.strip_prefix("at ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let at: u64 =
                words.first().and_then(|w| w.trim_end_matches("ms").parse().ok()).ok_or_else(|| err("bad time"))?;
            let fault = match words.get(1..).unwrap_or_default() {
                ["crash", node] => Fault::Crash(node.to_string()),
                ["crash", node, "on", what] => Fault::CrashOn(
                    node.to_string(),
                    Trigger::parse(what).ok_or_else(|| err("unknown trigger (flush | ack | checkpoint | recovery)"))?,
                ),
                ["restart", node] => Fault::Restart(node.to_string()),
                ["wipe", node] => Fault::Wipe(node.to_string()),
                ["partition", a, b] => Fault::Partition(a.to_string(), b.to_string()),
                ["partition-oneway", a, b] => Fault::PartitionOneWay(a.to_string(), b.to_string()),
                ["heal"] => Fault::Heal,
                ["reset-offsets", ms] => {
                    Fault::ResetOffsets(ms.trim_end_matches("ms").parse().map_err(|_| err("bad reset age (ms before now)"))?)
                }
                ["pause", node, ms] => Fault::Pause(
                    node.to_string(),
                    ms.trim_end_matches("ms").parse().map_err(|_| err("bad pause length"))?,
                ),
                _ => {
                    return Err(err(
                        "unknown fault (crash N [on flush|ack|checkpoint|recovery] | restart N | wipe N | partition A B | partition-oneway A B | heal | pause N MS | reset-offsets MS)",
                    ))
                }
            };
            s.faults.push((at, fault));
            continue;
        }
        if let Some(rest) = line.strip_prefix("skew ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [node, ms] => {
                    let ms: i64 = ms.trim_end_matches("ms").parse().map_err(|_| err("bad skew"))?;
                    s.clock_skew_ms.insert(node.to_string(), ms);
                }
                _ => return Err(err("expected: skew NODE MS")),
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("expect ") {
            let compact = rest.replace(' ', "");
            match compact.as_str() {
                "acked_loss=none" => s.acked_loss_allowed = false,
                "acked_loss=allowed" => s.acked_loss_allowed = true,
                "processed_twice=none" => s.processed_once = Some(true),
                "processed_twice=allowed" => s.processed_once = Some(false),
                _ => {
                    let floor = |v: &str| Floor::parse(v).ok_or_else(|| err("bad floor (N or N%, at most 100%)"));
                    if let Some(v) = compact.strip_prefix("acked>=") {
                        s.floors.acked = floor(v)?;
                    } else if let Some(v) = compact.strip_prefix("delivered>=") {
                        s.floors.delivered = floor(v)?;
                    } else {
                        return Err(err(
                            "unknown expectation (acked_loss = none | allowed, processed_twice = none | allowed, acked >= N[%], delivered >= N[%])",
                        ));
                    }
                }
            }
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| err("expected key = value"))?;
        kv.insert(k.trim().to_string(), v.trim().to_string());
    }
    for (k, v) in kv {
        let num = || v.parse::<u64>().map_err(|_| format!("{k} = {v}: not a number"));
        let flag = || match v.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{k} = {v}: expected true or false")),
        };
        let pct = || match num()? {
            n if n <= 100 => Ok(n as u32),
            _ => Err(format!("{k} = {v}: a percentage, 0 to 100")),
        };
        match k.as_str() {
            "name" => s.name = v,
            "flush" => {
                s.sync_flush = match v.as_str() {
                    "sync" => true,
                    "async" => false,
                    _ => return Err(format!("flush = {v}: expected sync or async")),
                }
            }
            "replication" => {
                s.replication = match v.as_str() {
                    "none" => Replication::None,
                    "async" => Replication::Async,
                    "sync" => Replication::Sync,
                    _ => return Err(format!("replication = {v}: expected none, async or sync")),
                }
            }
            "namesrvs" => s.namesrvs = num()?.clamp(1, 8) as u32,
            "brokers" => s.brokers = num()?.clamp(1, 8) as u32,
            "producers" => s.producers = num()? as u32,
            "messages" => s.messages = num()? as u32,
            "send_interval_ms" => s.send_interval_ms = num()?.max(1),
            "consumers" => s.consumers = num()? as u32,
            "queues" => s.queues = num()?.clamp(1, 64) as i32,
            "latency_ms" => s.latency_ms = num()?,
            "jitter_ms" => s.jitter_ms = num()?,
            "drop_pct" => s.drop_pct = num()?.min(100) as u32,
            "dup_pct" => s.dup_pct = num()?.min(100) as u32,
            "flush_lag_ms" => s.flush_lag_ms = num()?,
            "writeback_pct" => s.writeback_pct = num()?.min(100) as u32,
            "tear" => s.tear = v == "true",
            "idempotent" => s.idempotent = v == "true",
            "duration_ms" => s.duration_ms = num()?,
            "net_faults_until_ms" => s.net_faults_until_ms = Some(num()?),
            "delivery_within_ms" => s.delivery_within_ms = Some(num()?),
            "body_bytes" => {
                let n = num()?;
                if n > 1 << 20 {
                    return Err(format!("body_bytes = {v}: at most 1048576"));
                }
                s.body_bytes = n as u32;
            }
            "hot_pct" => s.hot_pct = pct()?,
            "poison_pct" => s.poison_pct = pct()?,
            "flaky_pct" => s.flaky_pct = pct()?,
            "max_reconsume" => {
                let n = num()?;
                if !(1..=16).contains(&n) {
                    return Err(format!("max_reconsume = {v}: 1 to 16 (the delay levels a retry walks)"));
                }
                s.max_reconsume = n as i32;
            }
            "orderly" => s.orderly = flag()?,
            "queue_lock" => s.queue_lock = flag()?,
            "order_keys" => s.order_keys = num()?.min(1_000) as u32,
            "transactional" => s.transactional = flag()?,
            "broadcasting" => s.broadcasting = flag()?,
            "rollback_pct" => s.rollback_pct = pct()?,
            "unknown_pct" => s.unknown_pct = pct()?,
            "consume_ms" => s.consume_ms = num()?.min(60_000),
            "small_segments" => s.small_segments = flag()?,
            "retention_ms" => s.retention_ms = Some(num()?.clamp(1, 86_400_000)),
            _ => return Err(format!("unknown key {k}")),
        }
    }
    if (s.rollback_pct > 0 || s.unknown_pct > 0) && !s.transactional {
        return Err(
            "rollback_pct / unknown_pct: only transactional producers have transactions (set transactional = true)"
                .into(),
        );
    }
    if s.retention_ms.is_some() && !s.small_segments {
        return Err("retention_ms without small_segments = true: only whole segments are deleted, and the default ones never fill in a run".into());
    }
    if s.rollback_pct + s.unknown_pct > 100 {
        return Err("rollback_pct + unknown_pct: more than 100%".into());
    }
    if s.transactional && (s.hot_pct > 0 || s.order_keys > 0) {
        return Err("transactional beside hot_pct or order_keys: a transactional send picks its queue itself (RocketMQ's TransactionMQProducer has no keyed send)".into());
    }
    if s.broadcasting && (s.poison_pct > 0 || s.flaky_pct > 0) {
        return Err("poison_pct / flaky_pct beside broadcasting: a broadcasting consumer drops a failed message, it has no retry (RocketMQ's behaviour)".into());
    }
    if !s.queue_lock && !s.orderly {
        return Err("queue_lock = false: only orderly consumers take queue locks (set orderly = true)".into());
    }
    if s.orderly && s.hot_pct > 0 {
        return Err("hot_pct beside orderly: use order_keys to key an orderly run's messages".into());
    }
    if s.idempotent && s.processed_once == Some(false) {
        return Err("expect processed_twice = allowed contradicts idempotent = true (idempotent consumers process each message once)".into());
    }
    s.faults.sort_by_key(|f| f.0);
    Ok(s)
}

/// The trace name of the `k`th node of a kind: `ns`, `ns1`, … / `broker`, `broker1`, ….
pub fn node_name(base: &str, k: u32) -> String {
    if k == 0 {
        base.to_string()
    } else {
        format!("{base}{k}")
    }
}

impl Scenario {
    /// Slave nodes: one per broker group with replication, none without.
    pub fn slaves(&self) -> u32 {
        if self.replication == Replication::None {
            0
        } else {
            self.brokers.max(1)
        }
    }

    /// Every node the scenario builds, by trace name.
    pub fn node_names(&self) -> Vec<String> {
        (0..self.namesrvs.max(1))
            .map(|k| node_name("ns", k))
            .chain((0..self.brokers.max(1)).map(|k| node_name("broker", k)))
            .chain((0..self.slaves()).map(|k| node_name("slave", k)))
            .chain((0..self.producers).map(|k| format!("p{k}")))
            .chain((0..self.consumers).map(|k| format!("c{k}")))
            .collect()
    }

    /// A fault or skew naming a node the scenario does not build: refused in every lane rather
    /// than silently skipped (a typo would otherwise run a scenario without its fault).
    pub fn unknown_node(&self) -> Option<String> {
        let known = self.node_names();
        let named = self.faults.iter().flat_map(|(at, f)| {
            let nodes: Vec<&String> = match f {
                Fault::Crash(n) | Fault::Restart(n) | Fault::Pause(n, _) | Fault::CrashOn(n, _) | Fault::Wipe(n) => {
                    vec![n]
                }
                Fault::Partition(a, b) | Fault::PartitionOneWay(a, b) => vec![a, b],
                Fault::Heal | Fault::ResetOffsets(_) => vec![],
            };
            nodes.into_iter().map(move |n| (format!("at {at}"), n))
        });
        let wiped = self.faults.iter().find_map(|(at, f)| match f {
            Fault::Wipe(n) if !n.starts_with("broker") && !n.starts_with("slave") => Some((at, n)),
            _ => None,
        });
        if let Some((at, n)) = wiped {
            return Some(format!("at {at}: wipe {n}: only a broker (master or slave) has a disk to lose"));
        }
        // A disk is swapped only while its node is down (crashed, not yet restarted): a wipe
        // at any other time would be skipped, so it is refused here instead.
        let mut down: Vec<&String> = Vec::new();
        for (at, f) in &self.faults {
            match f {
                Fault::Crash(n) => down.push(n),
                Fault::Restart(n) => down.retain(|d| *d != n),
                Fault::Wipe(n) if !down.contains(&n) => {
                    return Some(format!(
                        "at {at}: wipe {n}: {n} is not down then; wipe a node after `crash {n}` and before its restart"
                    ));
                }
                _ => {}
            }
        }
        let skews = self.clock_skew_ms.keys().map(|n| ("skew".to_string(), n));
        named
            .chain(skews)
            .find(|(_, n)| !known.contains(n))
            .map(|(w, n)| format!("{w}: no node named {n:?} in this scenario (nodes: {})", known.join(", ")))
    }

    /// The timing property this scenario promises, if it leaves a long enough healed stretch:
    /// messages acknowledged from [`SETTLE_MS`] after the last fault (2 s into a run without
    /// faults; [`SETTLE_MS`] after random loss stops) until
    /// shortly before the end reach a consumer within `delivery_within_ms` (default: two round
    /// trips with full jitter, one flush, and 500 ms: less than a long-poll hold).
    pub fn timeliness(&self) -> Option<crate::oracle::Timeliness> {
        if self.consumers == 0 {
            return None;
        }
        let within_ms =
            self.delivery_within_ms.unwrap_or(2 * (self.latency_ms + self.jitter_ms) + self.flush_lag_ms + 500);
        let last_fault = self
            .faults
            .iter()
            .map(|(at, f)| if let Fault::Pause(_, ms) = f { at + ms } else { *at })
            .max()
            .unwrap_or(0);
        // Settle after the last fault (and after random loss and duplication stop) for as long
        // as the real client may need to notice a dead connection (a held pull times out after
        // suspend + 8 s, then waits 3 s); with no fault, 2 s for the group to form.
        let mut from_ms = if self.faults.is_empty() { 2_000 } else { last_fault + SETTLE_MS };
        // A broker the NameServer dropped (silent past the expiry) is routed again only after
        // it registers (10 s) and the clients poll their routes (30 s).
        if self.silence().is_some() {
            from_ms += 10_000 + 30_000;
        }
        if self.drop_pct > 0 || self.dup_pct > 0 {
            from_ms = from_ms.max(self.net_faults_end_ms() + SETTLE_MS);
        }
        let to_ms = self.duration_ms.saturating_sub(within_ms + 1_000);
        (from_ms < to_ms).then_some(crate::oracle::Timeliness { from_ms, to_ms, within_ms })
    }

    /// Simulated time after which no frame is lost or duplicated at random.
    pub fn net_faults_end_ms(&self) -> u64 {
        self.net_faults_until_ms.unwrap_or_else(|| self.duration_ms - (self.duration_ms / 3).min(15_000))
    }

    /// The scenario as DSL text (what `shrink` writes and `swarm` prints).
    pub fn to_dsl(&self) -> String {
        let mut out = String::new();
        if !self.goal.is_empty() {
            out.push_str(&format!("# goal: {}\n", self.goal));
        }
        out.push_str(&format!("name = {}\n", self.name));
        out.push_str(&format!("flush = {}\n", if self.sync_flush { "sync" } else { "async" }));
        out.push_str(&format!("replication = {}\n", self.replication.word()));
        for (k, v) in [
            ("namesrvs", u64::from(self.namesrvs)),
            ("brokers", u64::from(self.brokers)),
            ("producers", self.producers as u64),
            ("messages", u64::from(self.messages)),
            ("send_interval_ms", self.send_interval_ms),
            ("consumers", u64::from(self.consumers)),
            ("queues", self.queues as u64),
            ("latency_ms", self.latency_ms),
            ("jitter_ms", self.jitter_ms),
            ("drop_pct", u64::from(self.drop_pct)),
            ("dup_pct", u64::from(self.dup_pct)),
            ("flush_lag_ms", self.flush_lag_ms),
            ("writeback_pct", u64::from(self.writeback_pct)),
            ("duration_ms", self.duration_ms),
        ] {
            out.push_str(&format!("{k} = {v}\n"));
        }
        if let Some(ms) = self.net_faults_until_ms {
            out.push_str(&format!("net_faults_until_ms = {ms}\n"));
        }
        if let Some(ms) = self.delivery_within_ms {
            out.push_str(&format!("delivery_within_ms = {ms}\n"));
        }
        out.push_str(&format!("tear = {}\n", self.tear));
        out.push_str(&format!("idempotent = {}\n", self.idempotent));
        if self.body_bytes > 0 {
            out.push_str(&format!("body_bytes = {}\n", self.body_bytes));
        }
        if self.hot_pct > 0 {
            out.push_str(&format!("hot_pct = {}\n", self.hot_pct));
        }
        if self.small_segments {
            out.push_str("small_segments = true\n");
        }
        if let Some(ms) = self.retention_ms {
            out.push_str(&format!("retention_ms = {ms}\n"));
        }
        if self.poison_pct > 0 {
            out.push_str(&format!("poison_pct = {}\n", self.poison_pct));
        }
        if self.flaky_pct > 0 {
            out.push_str(&format!("flaky_pct = {}\n", self.flaky_pct));
        }
        if self.max_reconsume != 16 {
            out.push_str(&format!("max_reconsume = {}\n", self.max_reconsume));
        }
        if self.orderly {
            out.push_str("orderly = true\n");
        }
        if !self.queue_lock {
            out.push_str("queue_lock = false\n");
        }
        if self.order_keys > 0 {
            out.push_str(&format!("order_keys = {}\n", self.order_keys));
        }
        if self.consume_ms > 0 {
            out.push_str(&format!("consume_ms = {}\n", self.consume_ms));
        }
        if self.transactional {
            out.push_str("transactional = true\n");
        }
        if self.broadcasting {
            out.push_str("broadcasting = true\n");
        }
        if self.rollback_pct > 0 {
            out.push_str(&format!("rollback_pct = {}\n", self.rollback_pct));
        }
        if self.unknown_pct > 0 {
            out.push_str(&format!("unknown_pct = {}\n", self.unknown_pct));
        }
        for (at, f) in &self.faults {
            let f = match f {
                Fault::Crash(n) => format!("crash {n}"),
                Fault::Restart(n) => format!("restart {n}"),
                Fault::Wipe(n) => format!("wipe {n}"),
                Fault::Partition(a, b) => format!("partition {a} {b}"),
                Fault::PartitionOneWay(a, b) => format!("partition-oneway {a} {b}"),
                Fault::Heal => "heal".to_string(),
                Fault::ResetOffsets(ms) => format!("reset-offsets {ms}"),
                Fault::Pause(n, ms) => format!("pause {n} {ms}"),
                Fault::CrashOn(n, t) => format!("crash {n} on {}", t.word()),
            };
            out.push_str(&format!("at {at} {f}\n"));
        }
        for (node, ms) in &self.clock_skew_ms {
            out.push_str(&format!("skew {node} {ms}\n"));
        }
        out.push_str(&format!("expect acked_loss = {}\n", if self.acked_loss_allowed { "allowed" } else { "none" }));
        match self.processed_once {
            Some(true) => out.push_str("expect processed_twice = none\n"),
            Some(false) => out.push_str("expect processed_twice = allowed\n"),
            None => {}
        }
        out.push_str(&format!("expect acked >= {}\n", self.floors.acked.dsl()));
        out.push_str(&format!("expect delivered >= {}\n", self.floors.delivered.dsl()));
        out
    }
}

/// Swarm testing: a scenario whose flush mode, network and fault mix are drawn from `seed`.
/// Faults heal well before the end, so liveness is judged too.
pub fn swarm(seed: u64) -> Scenario {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5157_4152_4d00_0000);
    let sync_flush = rng.gen_bool(0.7);
    let consumers = rng.gen_range(1..=3);
    let mut s = Scenario {
        name: "swarm".into(),
        goal: format!("random fault mix drawn from seed {seed}"),
        sync_flush,
        namesrvs: 1,
        brokers: 1,
        replication: Replication::None,
        producers: rng.gen_range(1..=3),
        messages: rng.gen_range(20..=120),
        send_interval_ms: rng.gen_range(5..=40),
        consumers,
        idempotent: rng.gen_bool(0.5),
        queues: rng.gen_range(1..=8),
        latency_ms: rng.gen_range(0..=5),
        jitter_ms: if rng.gen_bool(0.5) { rng.gen_range(0..=50) } else { 0 },
        drop_pct: if rng.gen_bool(0.3) { rng.gen_range(1..=5) } else { 0 },
        dup_pct: if rng.gen_bool(0.3) { rng.gen_range(1..=10) } else { 0 },
        flush_lag_ms: if rng.gen_bool(0.3) { rng.gen_range(20..=400) } else { rng.gen_range(0..=5) },
        writeback_pct: rng.gen_range(0..=50),
        tear: rng.gen_bool(0.5),
        duration_ms: 45_000,
        faults: Vec::new(),
        acked_loss_allowed: !sync_flush,
        clock_skew_ms: BTreeMap::new(),
        net_faults_until_ms: None,
        delivery_within_ms: None,
        floors: Floors::default(),
        ..Scenario::default()
    };
    if rng.gen_bool(0.3) {
        s.clock_skew_ms.insert("broker".into(), rng.gen_range(-60_000..=60_000));
    }
    let mut t = rng.gen_range(300..=1_500);
    for _ in 0..rng.gen_range(1..=3) {
        match rng.gen_range(0..7) {
            0 => {
                s.faults.push((t, Fault::Crash("broker".into())));
                t += rng.gen_range(200..=3_000);
                s.faults.push((t, Fault::Restart("broker".into())));
            }
            1 => {
                let c = format!("c{}", rng.gen_range(0..consumers));
                s.faults.push((t, Fault::Partition(c, "broker".into())));
                t += rng.gen_range(500..=6_000);
                s.faults.push((t, Fault::Heal));
            }
            2 => {
                s.faults.push((t, Fault::Partition("broker".into(), "ns".into())));
                t += rng.gen_range(500..=5_000);
                s.faults.push((t, Fault::Heal));
            }
            3 => {
                let c = format!("c{}", rng.gen_range(0..consumers));
                s.faults.push((t, Fault::Crash(c.clone())));
                t += rng.gen_range(200..=4_000);
                s.faults.push((t, Fault::Restart(c)));
            }
            4 => {
                s.faults.push((t, Fault::Crash("ns".into())));
                t += rng.gen_range(200..=4_000);
                s.faults.push((t, Fault::Restart("ns".into())));
            }
            5 => {
                s.faults.push((t, Fault::Pause("broker".into(), rng.gen_range(100..=3_000))));
            }
            _ => {
                // A power cut aimed at an interesting moment; the restart comes later (a
                // recovery-aimed cut fires at it and needs a second restart).
                let what = [Trigger::Ack, Trigger::Flush, Trigger::Checkpoint, Trigger::Recovery][rng.gen_range(0..4)];
                if what == Trigger::Recovery {
                    s.faults.push((t, Fault::Crash("broker".into())));
                }
                s.faults.push((t, Fault::CrashOn("broker".into(), what)));
                t += rng.gen_range(1_000..=3_000);
                s.faults.push((t, Fault::Restart("broker".into())));
                if what == Trigger::Recovery {
                    t += rng.gen_range(500..=2_000);
                    s.faults.push((t, Fault::Restart("broker".into())));
                }
            }
        }
        t += rng.gen_range(200..=2_000);
    }
    // Replication topologies come from a stream of their own, so the mixes drawn above stay
    // what they were for every seed: a third of the seeds add a slave, and a fault aimed at
    // the pair (the broker faults above then hit a master with a slave).
    let mut rr = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5245_504c_4943_4100);
    if rr.gen_bool(0.33) {
        s.replication = if rr.gen_bool(0.5) { Replication::Sync } else { Replication::Async };
        // After half the load at the earliest (sends start about a second in) and after the
        // other faults, so the run acknowledges something before the pair is disturbed.
        let load_ms = u64::from(s.messages) * s.send_interval_ms;
        let last = s.faults.iter().map(|(at, f)| if let Fault::Pause(_, ms) = f { at + ms } else { *at }).max();
        let mut t = (1_000 + load_ms / 2).max(last.unwrap_or(0)) + rr.gen_range(0..=2_000);
        match rr.gen_range(0..3) {
            0 => {
                s.faults.push((t, Fault::Crash("slave".into())));
                t += rr.gen_range(200..=4_000);
                s.faults.push((t, Fault::Restart("slave".into())));
            }
            1 => {
                s.faults.push((t, Fault::Partition("broker".into(), "slave".into())));
                t += rr.gen_range(500..=5_000);
                s.faults.push((t, Fault::Heal));
            }
            _ => {
                s.faults.push((t, Fault::CrashOn("slave".into(), Trigger::Ack)));
                t += rr.gen_range(1_000..=3_000);
                s.faults.push((t, Fault::Restart("slave".into())));
            }
        }
        s.faults.sort_by_key(|f| f.0);
    }
    // The store's load, from a third stream: half the seeds send bodies up to 8 KiB, a third
    // skew the load onto a hot queue, a third use small store files.
    let mut sr = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5354_4f52_4500_0000);
    if sr.gen_bool(0.5) {
        s.body_bytes = sr.gen_range(64..=8_192);
    }
    if sr.gen_bool(0.33) {
        s.hot_pct = sr.gen_range(30..=90);
    }
    s.small_segments = sr.gen_bool(0.33);
    s
}

impl Scenario {
    /// Store file sizes of the scenario's brokers: (CommitLog segment bytes, ConsumeQueue
    /// entries per file).
    pub fn segment_sizes(&self) -> (u64, u64) {
        if self.small_segments {
            (64 * 1024, 128)
        } else {
            (256 * 1024, 1_024)
        }
    }

    /// Sets a broker's store settings from the scenario: file sizes and retention.
    pub fn apply_store(&self, c: &mut rmq_broker_core::BrokerConfig) {
        (c.store.commit_log_segment_bytes, c.store.consume_queue_segment_entries) = self.segment_sizes();
        if let Some(ms) = self.retention_ms {
            c.file_reserved_ms = ms;
            c.delete_when_hours = (0..24).collect();
            c.clean_resource_interval_ms = 1_000;
        }
    }

    /// The broker groups whose every queue must receive traffic: those whose master no fault
    /// names (crash, pause, partition, wipe); `None` when every group is touched.
    pub fn routed_groups(&self) -> Option<crate::oracle::Routed> {
        let named: BTreeSet<&str> = self
            .faults
            .iter()
            .flat_map(|(_, f)| match f {
                Fault::Crash(n) | Fault::Restart(n) | Fault::Pause(n, _) | Fault::CrashOn(n, _) | Fault::Wipe(n) => {
                    vec![n.as_str()]
                }
                Fault::Partition(a, b) | Fault::PartitionOneWay(a, b) => vec![a.as_str(), b.as_str()],
                Fault::Heal | Fault::ResetOffsets(_) => vec![],
            })
            .collect();
        let groups: Vec<String> = (0..self.brokers.max(1))
            .filter(|k| !named.contains(node_name("broker", *k).as_str()))
            .map(|k| format!("broker-{}", (b'a' + k as u8) as char))
            .collect();
        // Keyed sends reach the queues their keys hash to, not every queue.
        (!groups.is_empty() && self.order_keys == 0 && !self.transactional).then_some(crate::oracle::Routed {
            groups,
            queues: self.queues,
            hot_pct: self.hot_pct,
        })
    }

    /// Whether consuming message `key` fails at its delivery number `reconsume` (0 first, then
    /// each retry): poison messages always fail, flaky ones the first time only. Decided by the
    /// key, so every lane and every consumer agrees.
    pub fn consume_fails(&self, key: &str, reconsume: i32) -> bool {
        match self.consume_class(key) {
            ConsumeClass::Poison => true,
            ConsumeClass::Flaky => reconsume == 0,
            ConsumeClass::Healthy => false,
        }
    }

    /// How consuming message `key` goes (`poison_pct`, `flaky_pct`).
    pub fn consume_class(&self, key: &str) -> ConsumeClass {
        // A hash stream of its own, so the hot-queue choice does not pick the same keys.
        let h = crate::oracle::key_hash(&format!("consume:{key}")) % 100;
        if h < u64::from(self.poison_pct) {
            ConsumeClass::Poison
        } else if h < u64::from(self.poison_pct + self.flaky_pct) {
            ConsumeClass::Flaky
        } else {
            ConsumeClass::Healthy
        }
    }

    /// The silent-broker property: when a master of a cluster of several groups is paused
    /// longer than the NameServer's broker expiry (120 s) plus its scan (5 s), the broker's
    /// registration period (10 s) and the producers' route refresh (30 s) and some slack, the
    /// sends begun from then until it resumes must not wait on it.
    pub fn silence(&self) -> Option<crate::oracle::Silence> {
        const EXPIRY_MS: u64 = 120_000 + 5_000 + 10_000 + 30_000 + 5_000;
        if self.brokers < 2 {
            return None;
        }
        self.faults.iter().find_map(|(at, f)| match f {
            Fault::Pause(n, ms) if n.starts_with("broker") && *ms > EXPIRY_MS => {
                Some(crate::oracle::Silence { from_ms: at + EXPIRY_MS, to_ms: at + ms, within_ms: 1_500 })
            }
            _ => None,
        })
    }

    /// What the local transaction of message `key` decides (`rollback_pct`, `unknown_pct`).
    pub fn tx_local(&self, key: &str) -> LocalTransactionState {
        let h = crate::oracle::key_hash(&format!("tx:{key}")) % 100;
        if h < u64::from(self.rollback_pct) {
            LocalTransactionState::RollbackMessage
        } else if h < u64::from(self.rollback_pct + self.unknown_pct) {
            LocalTransactionState::Unknown
        } else {
            LocalTransactionState::CommitMessage
        }
    }

    /// What the checker answers the broker's check-back about message `key`, reading the
    /// application's record of its local transaction (`ran`): none (it never ran: the half
    /// message's SEND_OK never reached the producer) is a rollback; a decided one stands; an
    /// UNKNOW one commits, rolls back or stays unknown (a third each, from the key).
    pub fn tx_checked(&self, key: &str, ran: Option<LocalTransactionState>) -> LocalTransactionState {
        let Some(ran) = ran else { return LocalTransactionState::RollbackMessage };
        match ran {
            LocalTransactionState::Unknown => match crate::oracle::key_hash(&format!("check:{key}")) % 3 {
                0 => LocalTransactionState::CommitMessage,
                1 => LocalTransactionState::RollbackMessage,
                _ => LocalTransactionState::Unknown,
            },
            decided => decided,
        }
    }

    /// Whether message `key` goes keyed to the hot queue (`hot_pct`), decided by the key.
    pub fn is_hot(&self, key: &str) -> bool {
        self.hot_pct > 0 && crate::oracle::key_hash(key) % 100 < u64::from(self.hot_pct)
    }
}

/// A scenario by name for a seed: a built-in one, or `swarm` (drawn from the seed).
pub fn resolve(name: &str, seed: u64) -> Option<Scenario> {
    if name == "swarm" {
        Some(swarm(seed))
    } else {
        builtin(name)
    }
}

/// The built-in catalogue (the files in sim/scenarios/, embedded).
pub const CATALOGUE: &[(&str, &str)] = &[
    ("steady", include_str!("../scenarios/steady.sim")),
    ("jitter", include_str!("../scenarios/jitter.sim")),
    ("broker-crash-sync", include_str!("../scenarios/broker-crash-sync.sim")),
    ("broker-crash-async", include_str!("../scenarios/broker-crash-async.sim")),
    ("partition-heal", include_str!("../scenarios/partition-heal.sim")),
    ("duplicate-delivery", include_str!("../scenarios/duplicate-delivery.sim")),
    ("duplicate-delivery-idempotent", include_str!("../scenarios/duplicate-delivery-idempotent.sim")),
    ("consumer-crash", include_str!("../scenarios/consumer-crash.sim")),
    ("rebalance-churn", include_str!("../scenarios/rebalance-churn.sim")),
    ("namesrv-crash", include_str!("../scenarios/namesrv-crash.sim")),
    ("flush-lag", include_str!("../scenarios/flush-lag.sim")),
    ("crash-at-flush", include_str!("../scenarios/crash-at-flush.sim")),
    ("cluster", include_str!("../scenarios/cluster.sim")),
    ("cluster-broker-crash", include_str!("../scenarios/cluster-broker-crash.sim")),
    ("cluster-broker-pause", include_str!("../scenarios/cluster-broker-pause.sim")),
    ("broker-silent-expiry", include_str!("../scenarios/broker-silent-expiry.sim")),
    ("store-stress", include_str!("../scenarios/store-stress.sim")),
    ("uneven-group", include_str!("../scenarios/uneven-group.sim")),
    ("retry-dlq", include_str!("../scenarios/retry-dlq.sim")),
    ("checkpoint-crash-writeback", include_str!("../scenarios/checkpoint-crash-writeback.sim")),
    ("replica-master-crash-sync", include_str!("../scenarios/replica-master-crash-sync.sim")),
    ("replica-master-crash-async", include_str!("../scenarios/replica-master-crash-async.sim")),
    ("replica-partition", include_str!("../scenarios/replica-partition.sim")),
    ("replica-slave-crash", include_str!("../scenarios/replica-slave-crash.sim")),
    ("replica-two-group", include_str!("../scenarios/replica-two-group.sim")),
    ("replica-master-restart-sync", include_str!("../scenarios/replica-master-restart-sync.sim")),
    ("replica-master-restart-async", include_str!("../scenarios/replica-master-restart-async.sim")),
    ("replica-master-disk-loss", include_str!("../scenarios/replica-master-disk-loss.sim")),
    ("replica-crash-churn", include_str!("../scenarios/replica-crash-churn.sim")),
    ("orderly-rebalance", include_str!("../scenarios/orderly-rebalance.sim")),
    ("orderly-consumer-failure", include_str!("../scenarios/orderly-consumer-failure.sim")),
    ("transaction-rollback", include_str!("../scenarios/transaction-rollback.sim")),
    ("transaction-producer-crash", include_str!("../scenarios/transaction-producer-crash.sim")),
    ("broadcasting-restart", include_str!("../scenarios/broadcasting-restart.sim")),
    ("retention", include_str!("../scenarios/retention.sim")),
    ("offset-reset", include_str!("../scenarios/offset-reset.sim")),
];

/// A catalogue scenario by name.
pub fn builtin(name: &str) -> Option<Scenario> {
    CATALOGUE.iter().find(|(n, _)| *n == name).map(|(_, t)| parse(t).expect("built-in scenarios parse"))
}
