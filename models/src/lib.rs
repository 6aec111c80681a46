//! stateright models of the delivery guarantees, over the real cores.
//!
//! The brokers in these models are the product's [`rmq_broker_core::BrokerCore`] over
//! [`rmq_store::MemDisk`], the producer's retry decisions are the client core's, and the
//! idempotent consumer applies the client library's dedup rule
//! ([`rmq_client_core::idempotent`]). What the harness adds is only what a driver adds: the
//! network, the disk's timing, power cuts (see [`cluster`]).
//!
//! # Models
//! - [`no_loss`]: producer, master and slave under SYNC_FLUSH + SYNC_MASTER; variants
//!   `async-flush` and `async-master` must fail.
//! - [`exactly_once`]: broker, consumer with offset commits and the idempotent helper; variant
//!   `no-dedup` must fail.
//!
//! # Calling contract
//! ```
//! use rmq_models::{check, CheckOptions, Verdict};
//! let report = check("exactly-once", "no-dedup", &CheckOptions::default()).unwrap();
//! assert_eq!(report.verdict, Verdict::Fails);
//! assert!(report.counterexamples[0].steps.iter().any(|s| s.contains("processes m0")));
//! let bad = CheckOptions { bounds: vec![("horizon-ms".into(), 5)], ..CheckOptions::default() };
//! assert!(check("exactly-once", "dedup", &bad).is_err(), "a bound the model lacks is refused");
//! ```

pub mod cluster;
pub mod exactly_once;
pub mod no_loss;

use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use serde::Serialize;
use stateright::{Checker, Expectation, HasDiscoveries, Model};

/// A model that can say what each step did, in words.
pub trait Explain: Model {
    /// One line for `action` taken in `state`.
    fn describe(&self, state: &Self::State, action: &Self::Action) -> String;
    /// What was found wrong (or notable) in the last state of a counterexample.
    fn diagnose(&self, state: &Self::State, property: &str) -> Option<String>;
    /// The counterexample as a fast-lane scenario (`mqsim run --file F`) that reproduces the
    /// same violation, or why it cannot be expressed there.
    fn scenario(&self, path: &[(Self::State, Option<Self::Action>)], property: &str) -> Result<String, String>;
}

/// A model's bounds, settable by name.
pub trait Bounded {
    /// Every bound with its current value, in a fixed order.
    fn list(&self) -> Vec<(&'static str, u64)>;
    /// Sets one bound; `Err` names the bounds this model has.
    fn set(&mut self, name: &str, value: u64) -> Result<(), String>;
}

/// Applies `overrides` to `b`, refusing names it does not have and values out of range.
fn apply_bounds(b: &mut dyn Bounded, overrides: &[(String, u64)]) -> Result<(), UnknownModel> {
    for (name, value) in overrides {
        b.set(name, *value).map_err(UnknownModel)?;
    }
    Ok(())
}

/// The models and their variants: (model, variants; the first variant is the sound one).
pub const CATALOGUE: &[(&str, &[&str], &str)] = &[
    (
        "no-loss",
        &["sync", "async-flush", "async-master"],
        "producer, master and slave; SEND_OK survives every power cut and a lost master disk",
    ),
    (
        "exactly-once",
        &["dedup", "no-dedup", "weak-dedup"],
        "broker and consumer with offset commits; each message's effect is applied once",
    ),
];

/// How to run a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Stop exploring below this depth (`None`: the model's own bounds only).
    pub depth: Option<usize>,
    /// Checker threads.
    pub threads: usize,
    /// Give up after this long (the report then says it was cut short).
    pub timeout: Option<Duration>,
    /// Bounds to change from the model's defaults, by name (`messages`, `crashes`, …; see
    /// [`Bounded::set`]). A name the model does not have is refused.
    pub bounds: Vec<(String, u64)>,
    /// Breadth first (memory grows with the frontier) instead of depth first (memory grows
    /// with the depth only). Either way, a counterexample found is replaced by a shortest one
    /// (a breadth-first search bounded by its length).
    pub bfs: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { depth: None, threads: 1, timeout: None, bounds: Vec::new(), bfs: false }
    }
}

/// Whether the properties held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every `always` property held in every state explored, and every `sometimes` property
    /// was reached.
    Holds,
    /// A counterexample (or an unreached `sometimes` property).
    Fails,
}

/// A property that failed, with the path to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counterexample {
    /// The property.
    pub property: String,
    /// The steps from the initial state, one line each.
    pub steps: Vec<String>,
    /// What is wrong in the last state.
    pub diagnosis: Option<String>,
    /// The counterexample as a fast-lane scenario file, or why the fast lane cannot express it.
    pub scenario: Result<String, String>,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Model name.
    pub model: String,
    /// Variant name.
    pub variant: String,
    /// States generated, repeats included.
    pub states: usize,
    /// Unique states.
    pub unique_states: usize,
    /// Deepest level explored.
    pub max_depth: usize,
    /// Wall time, when the caller measured it (the library reads no clock; `mqsim check`
    /// times the run with the real Env's stopwatch).
    pub seconds: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// `always` properties that failed.
    pub counterexamples: Vec<Counterexample>,
    /// `sometimes` properties never reached (the model would be vacuous for them).
    pub unreached: Vec<String>,
    /// `sometimes` properties reached.
    pub reached: Vec<String>,
    /// The checker stopped at its timeout: the search is incomplete.
    pub timed_out: bool,
    /// The bounds checked, by name.
    pub bounds: Vec<(String, u64)>,
    /// The machine's own limit, when the caller measured it: how many of this model's states
    /// one thread can clone and hash per second ([`state_cost`]), the least work a checker
    /// does per state.
    pub baseline_states_per_s: Option<f64>,
}

impl Report {
    fn with_bounds(mut self, b: &dyn Bounded) -> Self {
        self.bounds = b.list().into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        self
    }

    /// A human-readable summary.
    pub fn render(&self) -> String {
        let mut time = self.seconds.map_or(String::new(), |s| format!(", {s:.2} s"));
        if let (Some(secs), Some(base)) = (self.seconds, self.baseline_states_per_s) {
            let rate = self.unique_states as f64 / secs.max(1e-9);
            time.push_str(&format!(
                " ({rate:.0} unique states/s; one thread clones and hashes {base:.0} states/s: {:.2}× that)",
                rate / base
            ));
        }
        let mut out = format!(
            "model {} variant {}: {} states, {} unique, depth {}{time}{}\n",
            self.model,
            self.variant,
            self.states,
            self.unique_states,
            self.max_depth,
            if self.timed_out { " (timed out: incomplete)" } else { "" }
        );
        if !self.bounds.is_empty() {
            let b: Vec<String> = self.bounds.iter().map(|(n, v)| format!("{n}={v}")).collect();
            out.push_str(&format!("  bounds: {}\n", b.join(" ")));
        }
        for p in &self.reached {
            out.push_str(&format!("  reached: {p}\n"));
        }
        for p in &self.unreached {
            if self.counterexamples.is_empty() {
                out.push_str(&format!("  NOT reached: {p}\n"));
            } else {
                out.push_str(&format!("  not reached before the search stopped at a counterexample: {p}\n"));
            }
        }
        for c in &self.counterexamples {
            out.push_str(&format!("  COUNTEREXAMPLE to \"{}\" in {} steps:\n", c.property, c.steps.len()));
            for (i, s) in c.steps.iter().enumerate() {
                out.push_str(&format!("    {:>2}. {s}\n", i + 1));
            }
            if let Some(d) = &c.diagnosis {
                out.push_str(&format!("    => {d}\n"));
            }
            if let Err(why) = &c.scenario {
                out.push_str(&format!("    (no fast-lane scenario: {why})\n"));
            }
        }
        out.push_str(match self.verdict {
            Verdict::Holds => "verdict: the properties hold\n",
            Verdict::Fails => "verdict: FAILS\n",
        });
        out
    }
}

/// Why a check could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownModel(pub String);

impl std::fmt::Display for UnknownModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnknownModel {}

/// A model built from its name and variant.
enum Built {
    NoLoss(no_loss::NoLoss),
    ExactlyOnce(exactly_once::ExactlyOnce),
}

/// Builds `model` in `variant` (an empty variant: the sound one) with `bounds` changed;
/// returns the variant's name.
fn build(model: &str, variant: &str, bounds: &[(String, u64)]) -> Result<(Built, &'static str), UnknownModel> {
    let Some((_, variants, _)) = CATALOGUE.iter().find(|(m, _, _)| *m == model) else {
        let names: Vec<&str> = CATALOGUE.iter().map(|(m, _, _)| *m).collect();
        return Err(UnknownModel(format!("unknown model {model:?}; models: {}", names.join(", "))));
    };
    let variant = if variant.is_empty() { variants[0] } else { variant };
    let Some(variant) = variants.iter().copied().find(|v| *v == variant) else {
        return Err(UnknownModel(format!(
            "model {model} has no variant {variant:?}; variants: {}",
            variants.join(", ")
        )));
    };
    let built = match (model, variant) {
        ("no-loss", v) => {
            let v = match v {
                "sync" => no_loss::Variant::Sound,
                "async-flush" => no_loss::Variant::AsyncFlush,
                _ => no_loss::Variant::AsyncMaster,
            };
            let mut b = no_loss::Bounds::default();
            apply_bounds(&mut b, bounds)?;
            Built::NoLoss(no_loss::NoLoss::new(v, b))
        }
        (_, v) => {
            let v = match v {
                "dedup" => exactly_once::Variant::Dedup,
                "weak-dedup" => exactly_once::Variant::WeakDedup,
                _ => exactly_once::Variant::NoDedup,
            };
            let mut b = exactly_once::Bounds::default();
            apply_bounds(&mut b, bounds)?;
            Built::ExactlyOnce(exactly_once::ExactlyOnce::new(v, b))
        }
    };
    Ok((built, variant))
}

/// Checks `model` in `variant` (an empty variant: the sound one).
pub fn check(model: &str, variant: &str, opts: &CheckOptions) -> Result<Report, UnknownModel> {
    if opts.threads == 0 || opts.depth == Some(0) {
        return Err(UnknownModel("threads and depth must be at least 1".into()));
    }
    let (built, variant) = build(model, variant, &opts.bounds)?;
    Ok(match built {
        Built::NoLoss(m) => {
            let b = m.bounds;
            run(model, variant, m, opts).with_bounds(&b)
        }
        Built::ExactlyOnce(m) => {
            let b = m.bounds;
            run(model, variant, m, opts).with_bounds(&b)
        }
    })
}

/// The least work a checker does per state of `model`: clones its initial state and hashes
/// the clone, `n` times (returns a checksum, so the work is not optimised away). The caller
/// times it: states per second of this is the machine's own limit for the model.
pub fn state_cost(model: &str, variant: &str, n: u32) -> Result<u64, UnknownModel> {
    fn work<M: Model>(m: &M, n: u32) -> u64
    where
        M::State: Clone + Hash,
    {
        use std::hash::Hasher;
        let init = m.init_states().remove(0);
        let mut sum = 0u64;
        for _ in 0..n {
            let copy = std::hint::black_box(init.clone());
            let mut h = std::collections::hash_map::DefaultHasher::new();
            copy.hash(&mut h);
            sum = sum.wrapping_add(h.finish());
        }
        sum
    }
    let (built, _) = build(model, variant, &[])?;
    Ok(match built {
        Built::NoLoss(m) => work(&m, n),
        Built::ExactlyOnce(m) => work(&m, n),
    })
}

/// Serves stateright's Explorer for `model` in `variant` on `addr` (loopback only); blocks.
pub fn explore(model: &str, variant: &str, addr: &str) -> Result<(), UnknownModel> {
    let sock: std::net::SocketAddr =
        addr.parse().map_err(|_| UnknownModel(format!("--explorer {addr:?} is not an address like 127.0.0.1:3000")))?;
    if !sock.ip().is_loopback() {
        return Err(UnknownModel(format!("--explorer {addr}: the Explorer serves on loopback addresses only")));
    }
    let (built, _) = build(model, variant, &[])?;
    match built {
        Built::NoLoss(m) => drop(m.checker().serve(sock)),
        Built::ExactlyOnce(m) => drop(m.checker().serve(sock)),
    }
    Ok(())
}

/// Paths to the discoveries, by property name.
type Discoveries<M> =
    std::collections::BTreeMap<&'static str, stateright::Path<<M as Model>::State, <M as Model>::Action>>;

/// Waits for a checker; returns (states, unique states, max depth, done, discoveries).
fn finish<M, C>(checker: C) -> (usize, usize, usize, bool, Discoveries<M>)
where
    M: Model,
    M::State: Clone + PartialEq,
    M::Action: Clone + PartialEq,
    C: Checker<M>,
{
    let checker = checker.join();
    // stateright hands discoveries over in a hash map: sorted here, so nothing downstream
    // depends on its order.
    let found = checker.discoveries().into_iter().collect();
    (checker.state_count(), checker.unique_state_count(), checker.max_depth(), checker.is_done(), found)
}

/// The shortest path (at most `max_len` actions) to a state where `condition` fails.
fn shortest<M>(
    m: &M,
    condition: fn(&M, &M::State) -> bool,
    max_len: usize,
) -> Option<stateright::Path<M::State, M::Action>>
where
    M: Model,
    M::State: Clone + Hash + PartialEq,
    M::Action: Clone + PartialEq,
{
    use std::hash::Hasher;
    // `DefaultHasher::new()` has fixed keys: the same fingerprints on every run.
    let fingerprint = |s: &M::State| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        s.hash(&mut h);
        h.finish()
    };
    let inits = m.init_states();
    // Visited states: fingerprint → node; a node is (parent node and the action from it, or
    // the initial state it is).
    let mut seen: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let mut tree: Vec<Result<(usize, M::Action), usize>> = Vec::new();
    let mut frontier = std::collections::VecDeque::new();
    for (k, init) in inits.iter().enumerate() {
        if seen.insert(fingerprint(init), tree.len()).is_none() {
            frontier.push_back((init.clone(), tree.len(), 0usize));
            tree.push(Err(k));
        }
    }
    while let Some((state, node, depth)) = frontier.pop_front() {
        if !condition(m, &state) {
            let mut actions = Vec::new();
            let mut i = node;
            let root = loop {
                match &tree[i] {
                    Ok((parent, a)) => {
                        actions.push(a.clone());
                        i = *parent;
                    }
                    Err(k) => break *k,
                }
            };
            actions.reverse();
            return stateright::Path::from_actions(m, inits[root].clone(), actions.iter());
        }
        if depth >= max_len {
            continue;
        }
        let mut actions = Vec::new();
        m.actions(&state, &mut actions);
        for a in actions {
            let Some(next) = m.next_state(&state, a.clone()) else { continue };
            let fp = fingerprint(&next);
            if let std::collections::btree_map::Entry::Vacant(v) = seen.entry(fp) {
                v.insert(tree.len());
                frontier.push_back((next, tree.len(), depth + 1));
                tree.push(Ok((node, a)));
            }
        }
    }
    None
}

/// Runs the checker over `m` (depth first unless `opts.bfs`; at least one thread), then
/// replaces each counterexample by a shortest one.
pub fn run<M>(model: &str, variant: &str, m: M, opts: &CheckOptions) -> Report
where
    M: Explain + Send + Sync + Clone + 'static,
    M::State: Clone + Debug + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + Debug + PartialEq + Send + Sync + 'static,
{
    let props = m.properties();
    let mut builder = m.clone().checker().threads(opts.threads.max(1));
    if let Some(d) = opts.depth {
        builder = builder.target_max_depth(d);
    }
    if let Some(t) = opts.timeout {
        builder = builder.timeout(t);
    }
    // A sound variant explores everything; a failing one stops at its first counterexample.
    builder = builder.finish_when(HasDiscoveries::AnyFailures);
    let (states, unique_states, max_depth, done, mut discoveries) =
        if opts.bfs { finish(builder.spawn_bfs()) } else { finish(builder.spawn_dfs()) };
    let failure_len = props
        .iter()
        .filter(|p| p.expectation != Expectation::Sometimes)
        .filter_map(|p| discoveries.get(p.name))
        .map(|path| path.clone().into_actions().len())
        .min();
    if let Some(len) = failure_len {
        // Shorten: a breadth-first search of our own, bounded by the length found, in the
        // model's action order on one thread: the path is a shortest one, the same every run.
        for p in props.iter().filter(|p| p.expectation == Expectation::Always) {
            if discoveries.contains_key(p.name) {
                if let Some(path) = shortest(&m, p.condition, len) {
                    discoveries.insert(p.name, path);
                }
            }
        }
    }
    let mut counterexamples = Vec::new();
    let (mut reached, mut unreached) = (Vec::new(), Vec::new());
    for p in &props {
        let found = discoveries.get(p.name);
        match (p.expectation.clone(), found) {
            (Expectation::Sometimes, Some(_)) => reached.push(p.name.to_string()),
            (Expectation::Sometimes, None) => unreached.push(p.name.to_string()),
            (_, Some(path)) => {
                let pairs = path.clone().into_vec();
                let mut steps = Vec::new();
                for (state, action) in &pairs {
                    if let Some(a) = action {
                        steps.push(m.describe(state, a));
                    }
                }
                let last = &pairs.last().expect("a path has a last state").0;
                counterexamples.push(Counterexample {
                    property: p.name.to_string(),
                    steps,
                    diagnosis: m.diagnose(last, p.name),
                    scenario: m.scenario(&pairs, p.name),
                });
            }
            (_, None) => {}
        }
    }
    // A run that stopped at a counterexample is not done either; only a run with nothing
    // found and states left unexplored was cut short.
    let timed_out = opts.timeout.is_some() && !done && counterexamples.is_empty();
    // An early stop at a counterexample leaves `sometimes` properties unexplored: they only
    // count against a run that found nothing wrong.
    let verdict =
        if counterexamples.is_empty() && unreached.is_empty() && !timed_out { Verdict::Holds } else { Verdict::Fails };
    Report {
        model: model.to_string(),
        variant: variant.to_string(),
        states,
        unique_states,
        max_depth,
        seconds: None,
        verdict,
        counterexamples,
        unreached,
        reached,
        timed_out,
        bounds: Vec::new(),
        baseline_states_per_s: None,
    }
}
