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
//! duration_ms = 30000
//! at 1500 crash broker
//! at 3000 restart broker
//! at 4000 partition c0 broker
//! at 6000 heal
//! expect acked_loss = none   # none | allowed
//! ```

use std::collections::BTreeMap;

/// A fault at a point in simulated time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Power loss on a node (broker or namesrv).
    Crash(String),
    /// Restart a crashed node.
    Restart(String),
    /// Drop all traffic between two nodes, both ways.
    Partition(String, String),
    /// Remove every partition.
    Heal,
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
    /// Producers.
    pub producers: u32,
    /// Messages per producer.
    pub messages: u32,
    /// Time between sends of one producer.
    pub send_interval_ms: u64,
    /// Consumers in the group.
    pub consumers: u32,
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
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "unnamed".into(),
            goal: String::new(),
            sync_flush: true,
            producers: 2,
            messages: 100,
            send_interval_ms: 20,
            consumers: 2,
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
                ["restart", node] => Fault::Restart(node.to_string()),
                ["partition", a, b] => Fault::Partition(a.to_string(), b.to_string()),
                ["heal"] => Fault::Heal,
                _ => return Err(err("unknown fault (crash N | restart N | partition A B | heal)")),
            };
            s.faults.push((at, fault));
            continue;
        }
        if let Some(rest) = line.strip_prefix("expect ") {
            match rest.replace(' ', "").as_str() {
                "acked_loss=none" => s.acked_loss_allowed = false,
                "acked_loss=allowed" => s.acked_loss_allowed = true,
                _ => return Err(err("unknown expectation (acked_loss = none | allowed)")),
            }
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| err("expected key = value"))?;
        kv.insert(k.trim().to_string(), v.trim().to_string());
    }
    for (k, v) in kv {
        let num = || v.parse::<u64>().map_err(|_| format!("{k} = {v}: not a number"));
        match k.as_str() {
            "name" => s.name = v,
            "flush" => {
                s.sync_flush = match v.as_str() {
                    "sync" => true,
                    "async" => false,
                    _ => return Err(format!("flush = {v}: expected sync or async")),
                }
            }
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
            "duration_ms" => s.duration_ms = num()?,
            _ => return Err(format!("unknown key {k}")),
        }
    }
    s.faults.sort_by_key(|f| f.0);
    Ok(s)
}

/// The built-in catalogue (the files in sim/scenarios/, embedded).
pub const CATALOGUE: &[(&str, &str)] = &[
    ("steady", include_str!("../scenarios/steady.sim")),
    ("jitter", include_str!("../scenarios/jitter.sim")),
    ("broker-crash-sync", include_str!("../scenarios/broker-crash-sync.sim")),
    ("broker-crash-async", include_str!("../scenarios/broker-crash-async.sim")),
    ("partition-heal", include_str!("../scenarios/partition-heal.sim")),
    ("duplicate-delivery", include_str!("../scenarios/duplicate-delivery.sim")),
];

/// A catalogue scenario by name.
pub fn builtin(name: &str) -> Option<Scenario> {
    CATALOGUE.iter().find(|(n, _)| *n == name).map(|(_, t)| parse(t).expect("built-in scenarios parse"))
}
