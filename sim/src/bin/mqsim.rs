//! `mqsim`: run seeded scenarios against the real cores.
//!
//! ```text
//! mqsim run                                   # default scenario, fixed seed
//! mqsim run broker-crash-sync --seed 7 --trace /tmp/t.log
//! mqsim run broker-crash-sync --seed 7 --html /tmp/t.html   # the run as a timeline page
//! mqsim run --file my.sim --seed 3 --json
//! mqsim run steady --seed 1 --check-determinism
//! mqsim list
//! mqsim sweep all --seeds 200
//! mqsim run swarm --seed 9                   # a random fault mix drawn from the seed, printed
//! mqsim shrink my.sim --file my.sim --seed 3   # minimal failing scenario written to a file
//! mqsim check no-loss                         # stateright over the real cores (models/)
//! mqsim check no-loss --variant async-master  # fails, printing the counterexample's steps
//! mqsim check --list
//! ```
//! Exit codes: 0 pass (for `check`: the properties hold), 1 safety violation (for `check`: a
//! counterexample, or a `sometimes` property never reached), 2 liveness violation, 3 nondeterminism, 4 usage,
//! 5 the scenario cannot run in the chosen lane (refused before anything ran), 6 the lane is
//! not in this build (the madsim lane needs `scripts/madsim-lane.sh`, the `--cfg madsim` build).

use std::process::ExitCode;

/// mimalloc, as in every shipped binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rmq_sim::scenario::{parse, resolve, Replication, CATALOGUE};
use rmq_sim::{Lane, RunReport, Scenario, Verdict};

#[derive(Parser, Debug)]
#[command(name = "mqsim", version, about = "Deterministic simulation of the real NameServer, broker and client")]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one scenario with one seed.
    Run {
        /// A built-in scenario (see `list`).
        #[arg(default_value = DEFAULT_SCENARIO)]
        scenario: String,
        /// A scenario file instead of a built-in one.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Write the trace to this file.
        #[arg(long)]
        trace: Option<std::path::PathBuf>,
        /// Write the run as a self-contained HTML timeline page.
        #[arg(long)]
        html: Option<std::path::PathBuf>,
        /// Run twice and compare traces; name the first divergent event.
        #[arg(long)]
        check_determinism: bool,
        /// `fast`: the discrete-event lane over the cores; `stack`: the real drivers and client
        /// library on turmoil hosts; `madsim`: the same on madsim nodes (the `--cfg madsim`
        /// build: scripts/madsim-lane.sh).
        #[arg(long, default_value = "fast")]
        lane: String,
        #[arg(long)]
        json: bool,
    },
    /// List the built-in scenarios.
    List,
    /// Minimise a failing scenario's faults and workload while the same violation persists,
    /// and write the minimal scenario file.
    Shrink {
        scenario: String,
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        #[arg(long)]
        seed: u64,
        /// Where to write the minimal scenario (default: ./<name>-shrunk-seed<N>.sim).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Model-check a delivery guarantee over the real cores with stateright (see models/).
    Check {
        /// `no-loss` or `exactly-once` (see `--list`).
        model: Option<String>,
        /// A variant (default: the sound one); the others must fail.
        #[arg(long, default_value = "")]
        variant: String,
        /// Explore no deeper than this many steps.
        #[arg(long)]
        depth: Option<usize>,
        /// Checker threads (default 2).
        #[arg(long)]
        threads: Option<usize>,
        /// Change a bound of the model, e.g. `--bound losses=1 --bound messages=3` (the report
        /// lists every bound with its value).
        #[arg(long = "bound", value_name = "NAME=VALUE")]
        bounds: Vec<String>,
        /// Breadth first (more memory) instead of depth first.
        #[arg(long)]
        bfs: bool,
        /// Stop after this many seconds (the verdict is then FAILS: the search is incomplete).
        #[arg(long)]
        timeout_secs: Option<u64>,
        #[arg(long)]
        json: bool,
        /// Serve stateright's Explorer on this loopback address instead of checking.
        #[arg(long)]
        explorer: Option<String>,
        /// Name the models and their variants.
        #[arg(long)]
        list: bool,
        /// Write the first counterexample as a fast-lane scenario file (replay it with
        /// `mqsim run --file FILE`).
        #[arg(long)]
        export: Option<std::path::PathBuf>,
    },
    /// Run seeds 1..=N of one scenario (or `all`) in one lane or every lane, and summarise;
    /// with `--lane all` the lanes' verdicts are compared seed by seed.
    Sweep {
        scenario: String,
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// `fast`, `stack`, `madsim`, or `all` (every lane of this build).
        #[arg(long, default_value = "fast")]
        lane: String,
        #[arg(long)]
        json: bool,
    },
}

const DEFAULT_SCENARIO: &str = "broker-crash-sync";
const DEFAULT_SEED: u64 = 42;
/// Exit status of a scenario a lane refuses.
const EXIT_REFUSED: u8 = 5;

fn scenario(name: &str, file: Option<&std::path::Path>, seed: u64) -> anyhow::Result<Scenario> {
    match file {
        Some(p) => parse(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
            .map_err(anyhow::Error::msg),
        None => resolve(name, seed).with_context(|| format!("no built-in scenario {name:?}; try `mqsim list`")),
    }
}

fn code(v: Verdict) -> u8 {
    match v {
        Verdict::Pass => 0,
        Verdict::Safety => 1,
        Verdict::Liveness => 2,
    }
}

/// Exit status of a lane this build of mqsim does not contain (the stack lane in the madsim
/// build, the madsim lane in the normal one).
const EXIT_LANE_NOT_BUILT: u8 = 6;

/// A lane by name, or why not: unknown (usage, exit 4), or not in this build (exit 6).
fn lane(name: &str) -> anyhow::Result<Result<Lane, u8>> {
    let lane = Lane::parse(name).with_context(|| format!("unknown lane {name:?}: fast, stack, madsim or all"))?;
    if let Some(why) = lane.not_built() {
        eprintln!("mqsim: the {} lane is not in this build: {why}", lane.name());
        return Ok(Err(EXIT_LANE_NOT_BUILT));
    }
    Ok(Ok(lane))
}

/// `--lane all` is every lane this build runs (fast + stack, or fast + madsim).
fn lanes(name: &str) -> anyhow::Result<Result<Vec<Lane>, u8>> {
    if name == "all" {
        return Ok(Ok(Lane::built()));
    }
    Ok(lane(name)?.map(|l| vec![l]))
}

fn print(r: &RunReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("reports serialize"));
        return;
    }
    let f = &r.findings;
    println!(
        "{} seed={} verdict={:?} lane={} digest={} | sent={} acked={} failed={} delivered={} duplicates={} processed_twice={} acked_lost={} crashes={} | {} events, {} simulated ms",
        r.scenario, r.seed, f.verdict, r.lane, r.digest, r.sent, r.acked, r.failed, r.delivered, f.duplicates, f.processed_duplicates, f.acked_lost, r.crashes, r.events, r.simulated_ms
    );
    for p in &f.problems {
        println!("  violation: {p}");
    }
}

/// The short account a newcomer reads after a run: what ran, what broke, what held, and how to
/// look closer.
fn explain(s: &Scenario, r: &RunReport, cmds: &Commands) {
    let f = &r.findings;
    println!();
    println!("What ran");
    if !s.goal.is_empty() {
        println!("  {}", s.goal);
    }
    println!(
        "  {} NameServer(s), {} broker(s) ({}), {} producer(s) x {} messages, {} consumer(s){}, {} queues, {} lane",
        s.namesrvs,
        s.brokers,
        if s.sync_flush { "SYNC_FLUSH: a send is answered only after its flush" } else { "ASYNC_FLUSH" },
        s.producers,
        s.messages,
        s.consumers,
        if s.idempotent { " deduplicating by message key" } else { "" },
        s.queues,
        r.lane
    );
    let mut net = vec![format!("latency {} ms + up to {} ms jitter", s.latency_ms, s.jitter_ms)];
    if s.drop_pct > 0 {
        net.push(format!("{}% of frames lost", s.drop_pct));
    }
    if s.dup_pct > 0 {
        net.push(format!("{}% of frames duplicated", s.dup_pct));
    }
    if s.flush_lag_ms > 0 {
        net.push(format!("each flush takes {} ms", s.flush_lag_ms));
    }
    println!("  network and disk: {}", net.join(", "));
    println!("Faults");
    if s.faults.is_empty() {
        println!("  none");
    }
    for (at, fault) in &s.faults {
        println!("  at {:>6} ms: {}", at, describe(fault, s));
    }
    println!("What happened");
    println!(
        "  {} sends tried, {} acknowledged (SEND_OK), {} gave up; {} deliveries ({} duplicates); {} crash(es)",
        r.sent, r.acked, r.failed, r.delivered, f.duplicates, r.crashes
    );
    println!(
        "  acknowledged and lost: {}{}; acknowledged, stored, never delivered: {}",
        f.acked_lost,
        match (s.acked_loss_allowed, s.replication) {
            (false, _) => " (none allowed)",
            (true, Replication::None) => " (allowed: ASYNC_FLUSH may lose the page cache)",
            (true, _) => " (allowed: the loss window of asynchronous flush or replication, measured here)",
        },
        f.undelivered
    );
    if let Some(ms) = s.retention_ms {
        println!(
            "  deleted by retention (fileReservedTime {ms} ms) by the end: {} (expired, not lost; owed no delivery)",
            f.expired
        );
    }
    println!("Verdict: {:?}", f.verdict);
    if f.problems.is_empty() {
        println!(
            "  every guarantee held: no acknowledged message lost{}, queues dense and in order, group offsets never moved back, progress floors met, {} message(s) judged for timely delivery on a healed network",
            if s.acked_loss_allowed { " beyond what ASYNC_FLUSH allows" } else { "" },
            f.timely_checked
        );
    }
    for p in &f.problems {
        println!("  because: {p}");
    }
    println!("Trace digest {} ({} lines): the same seed gives the same digest", r.digest, r.trace_lines);
    println!("Replay:   {}", cmds.replay);
    println!("Timeline: {} --html /tmp/{}-seed{}.html   (then open it in a browser)", cmds.replay, s.name, r.seed);
    println!("Shrink:   {}", cmds.shrink);
}

fn describe(f: &rmq_sim::scenario::Fault, s: &Scenario) -> String {
    use rmq_sim::scenario::Fault;
    match f {
        Fault::Crash(n) if n.starts_with("broker") || n.starts_with("slave") => format!(
            "power loss on {n} (page cache lost{}{})",
            if s.writeback_pct > 0 {
                format!(", {}% of dirty pages written back", s.writeback_pct)
            } else {
                String::new()
            },
            if s.tear { ", one page torn" } else { "" }
        ),
        Fault::Crash(n) => format!("{n} crashes"),
        Fault::CrashOn(n, t) => format!("{n} loses power at the next {} from here", t.word()),
        Fault::Wipe(n) => format!("{n}'s disk is lost: it restarts empty"),
        Fault::Restart(n) => {
            format!(
                "{n} restarts{}",
                if n.starts_with("broker") || n.starts_with("slave") { " and recovers its store" } else { "" }
            )
        }
        Fault::Partition(a, b) => format!("network partition between {a} and {b}"),
        Fault::PartitionOneWay(a, b) => format!("frames from {a} to {b} are lost (one-way partition)"),
        Fault::ResetOffsets(ms) => format!("an operator resets group G to {ms} ms ago (resetOffsetByTime, forced)"),
        Fault::Heal => "every partition heals".into(),
        Fault::Pause(n, ms) => format!("{n} pauses for {ms} ms"),
    }
}

/// What the replay, timeline and shrink commands of a run say.
struct Commands {
    replay: String,
    shrink: String,
}

impl Commands {
    fn of(name: &str, file: Option<&std::path::Path>, seed: u64, lane: Lane) -> Self {
        let target = match file {
            Some(p) => format!("x --file {}", p.display()),
            None => name.to_string(),
        };
        let lane_arg = if lane == Lane::Fast { String::new() } else { format!(" --lane {}", lane.name()) };
        let base = if lane == Lane::Madsim { "scripts/madsim-lane.sh" } else { "cargo run --release --bin mqsim --" };
        Commands {
            replay: format!("{base} run {target} --seed {seed}{lane_arg}"),
            shrink: format!("{base} shrink {target} --seed {seed}"),
        }
    }
}

/// Writes the run as a timeline page: `mqsim run … --html FILE`.
fn write_html(path: &std::path::Path, r: &RunReport, cmds: &Commands) -> anyhow::Result<()> {
    let verdict = format!("{:?}", r.findings.verdict);
    let evidence = rmq_sim::html::evidence_keys(&r.findings.problems);
    let page = rmq_sim::html::render(&rmq_sim::html::Timeline {
        scenario: &r.scenario,
        lane: &r.lane,
        seed: r.seed,
        verdict: &verdict,
        digest: &r.digest,
        problems: &r.findings.problems,
        evidence: &evidence,
        replay_command: &cmds.replay,
        shrink_command: &cmds.shrink,
        lines: &r.trace,
    });
    std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("# timeline page written to {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    // `mqsim … | head` ends quietly, as command-line tools do, instead of panicking on the
    // closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match real_main() {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("mqsim: {e:#}");
            ExitCode::from(4)
        }
    }
}

/// Runs a scenario in a lane, or says why the lane refuses it (exit status 5).
fn run_or_refuse(lane: Lane, s: &Scenario, seed: u64, keep: bool) -> anyhow::Result<Result<RunReport, u8>> {
    if let Some(why) = lane.refusal(s) {
        eprintln!("mqsim: refused: scenario {} cannot run in the {} lane: {why}", s.name, lane.name());
        return Ok(Err(EXIT_REFUSED));
    }
    Ok(Ok(lane.run(s, seed, keep).map_err(anyhow::Error::msg)?))
}

#[allow(clippy::too_many_arguments)]
fn cmd_run(
    name: String,
    file: Option<std::path::PathBuf>,
    seed: u64,
    trace: Option<std::path::PathBuf>,
    html: Option<std::path::PathBuf>,
    check_determinism: bool,
    lane: String,
    json: bool,
    explain_run: bool,
) -> anyhow::Result<u8> {
    let s = scenario(&name, file.as_deref(), seed)?;
    let lane = match self::lane(&lane)? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    if name == "swarm" && file.is_none() && !json {
        println!(
            "# swarm mix drawn from seed {seed}:\n{}",
            s.to_dsl().lines().map(|l| format!("#   {l}")).collect::<Vec<_>>().join("\n")
        );
    }
    let keep = trace.is_some() || html.is_some() || check_determinism;
    let cmds = Commands::of(&name, file.as_deref(), seed, lane);
    let r = match run_or_refuse(lane, &s, seed, keep)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if let Some(path) = &trace {
        std::fs::write(path, r.trace.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &html {
        write_html(path, &r, &cmds)?;
    }
    if check_determinism {
        let again = match lane.rerun_checked(&s, seed) {
            Ok(r) => r,
            Err(why) => {
                println!("nondeterminism in the {} lane: {why}", lane.name());
                return Ok(3);
            }
        };
        if again.digest != r.digest {
            let i = r
                .trace
                .iter()
                .zip(&again.trace)
                .position(|(a, b)| a != b)
                .unwrap_or(r.trace.len().min(again.trace.len()));
            println!(
                "nondeterminism in the {} lane: first divergent event #{i}:\n  run 1: {:?}\n  run 2: {:?}",
                lane.name(),
                r.trace.get(i),
                again.trace.get(i)
            );
            return Ok(3);
        }
        if !json {
            println!("deterministic: two runs gave digest {}", r.digest);
        }
    }
    print(&r, json);
    if explain_run && !json {
        explain(&s, &r, &cmds);
    }
    Ok(code(r.findings.verdict))
}

fn real_main() -> anyhow::Result<u8> {
    let args = Args::parse();
    // Driver logs (stack lane) only when asked for: RUST_LOG=rmq_broker=debug mqsim run …
    if std::env::var_os("RUST_LOG").is_some() {
        rmq_tools::init_tracing("warn");
    }
    let Some(cmd) = args.cmd else {
        // The README's first command: the default chaos scenario, explained.
        return cmd_run(DEFAULT_SCENARIO.into(), None, DEFAULT_SEED, None, None, false, "fast".into(), false, true);
    };
    match cmd {
        Cmd::List => {
            for (name, text) in CATALOGUE {
                let s = parse(text).map_err(anyhow::Error::msg)?;
                println!("{name:<30} {}", s.goal);
            }
            println!("{:<30} swarm testing: flush mode, network and fault mix drawn from the seed", "swarm");
            Ok(0)
        }
        Cmd::Shrink { scenario: name, file, seed, out } => {
            let s = scenario(&name, file.as_deref(), seed)?;
            let Some(shrunk) = rmq_sim::shrink::shrink(&s, seed) else {
                println!("{} passes at seed {seed}: nothing to shrink", s.name);
                return Ok(0);
            };
            let path = out.unwrap_or_else(|| std::path::PathBuf::from(format!("{}.sim", shrunk.scenario.name)));
            let text = shrunk.scenario.to_dsl();
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
            println!(
                "# {:?} violation kept after {} candidate runs; written to {}",
                shrunk.verdict,
                shrunk.runs,
                path.display()
            );
            print!("{text}");
            Ok(code(shrunk.verdict))
        }
        Cmd::Run { scenario: name, file, seed, trace, html, check_determinism, lane, json } => {
            cmd_run(name, file, seed, trace, html, check_determinism, lane, json, true)
        }
        Cmd::Sweep { scenario: name, seeds, lane, json } => match lanes(&lane)? {
            Ok(lanes) => sweep(&name, seeds, &lanes, json),
            Err(code) => Ok(code),
        },
        Cmd::Check { model, variant, depth, threads, bounds, bfs, timeout_secs, json, explorer, list, export } => {
            cmd_check(model, variant, depth, threads, bounds, bfs, timeout_secs, json, explorer, list, export)
        }
    }
}

/// `mqsim check`: exit 0 when the properties hold, 1 with a counterexample, 4 for usage.
#[allow(clippy::too_many_arguments)]
fn cmd_check(
    model: Option<String>,
    variant: String,
    depth: Option<usize>,
    threads: Option<usize>,
    bounds: Vec<String>,
    bfs: bool,
    timeout_secs: Option<u64>,
    json: bool,
    explorer: Option<String>,
    list: bool,
    export: Option<std::path::PathBuf>,
) -> anyhow::Result<u8> {
    let bounds = bounds
        .iter()
        .map(|b| {
            let (name, value) = b.split_once('=').with_context(|| format!("--bound {b:?}: expected NAME=VALUE"))?;
            let value = value.parse::<u64>().with_context(|| format!("--bound {b:?}: {value:?} is not a count"))?;
            Ok((name.to_string(), value))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if list {
        let other = model.is_some()
            || !variant.is_empty()
            || depth.is_some()
            || threads.is_some()
            || !bounds.is_empty()
            || bfs
            || timeout_secs.is_some()
            || explorer.is_some()
            || export.is_some();
        if other {
            anyhow::bail!("--list names the models; it takes no model or other option (except --json)");
        }
        if json {
            let models: Vec<serde_json::Value> = rmq_models::CATALOGUE
                .iter()
                .map(|(name, variants, what)| serde_json::json!({"model": name, "variants": variants, "what": what}))
                .collect();
            println!("{}", serde_json::Value::Array(models));
            return Ok(0);
        }
        for (name, variants, what) in rmq_models::CATALOGUE {
            println!("{name:<13} {what}");
            println!("{:<13} variants: {} (the first holds; the others must fail)", "", variants.join(", "));
        }
        return Ok(0);
    }
    let Some(model) = model else {
        anyhow::bail!("name a model (`mqsim check --list`)");
    };
    if threads == Some(0) {
        anyhow::bail!("--threads 0: the checker needs at least one thread");
    }
    if depth == Some(0) {
        anyhow::bail!("--depth 0: the search needs at least the initial state (depth 1)");
    }
    if let Some(addr) = explorer {
        let checking_only = !bounds.is_empty()
            || depth.is_some()
            || export.is_some()
            || threads.is_some()
            || bfs
            || timeout_secs.is_some()
            || json;
        if checking_only {
            anyhow::bail!(
                "--explorer serves the model at its default bounds and explores on demand; it takes none of --bound, --depth, --export, --threads, --bfs, --timeout-secs, --json"
            );
        }
        eprintln!("# serving stateright's Explorer for {model} on http://{addr}/ (Ctrl-C to stop)");
        rmq_models::explore(&model, &variant, &addr)?;
        return Ok(0);
    }
    let opts = rmq_models::CheckOptions {
        depth,
        threads: threads.unwrap_or(2),
        bounds,
        timeout: timeout_secs.map(std::time::Duration::from_secs),
        bfs,
    };
    // The machine's own limit for this model, measured in the same run: one thread cloning
    // and hashing a state (the least a checker does per state).
    const PROBE: u32 = 20_000;
    let watch = rmq_rt::RealEnv::stopwatch();
    std::hint::black_box(rmq_models::state_cost(&model, &variant, PROBE)?);
    let baseline = f64::from(PROBE) / watch.elapsed().as_secs_f64().max(1e-9);
    let watch = rmq_rt::RealEnv::stopwatch();
    let mut report = rmq_models::check(&model, &variant, &opts)?;
    report.seconds = Some(watch.elapsed().as_secs_f64());
    report.baseline_states_per_s = Some(baseline);
    if json {
        println!("{}", serde_json::to_string(&report).expect("reports serialize"));
    } else {
        print!("{}", report.render());
    }
    if let Some(path) = export {
        let Some(c) = report.counterexamples.first() else {
            anyhow::bail!("--export: no counterexample to export (the properties hold)");
        };
        let text = c.scenario.as_ref().map_err(|why| anyhow::anyhow!("--export: {why}"))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("# counterexample written as a scenario: mqsim run --file {} --seed 1", path.display());
    }
    Ok(match report.verdict {
        rmq_models::Verdict::Holds => 0,
        rmq_models::Verdict::Fails => 1,
    })
}

/// One scenario's results in one lane.
#[derive(Default)]
struct Tally {
    pass: u64,
    failed: Vec<(u64, Verdict)>,
    /// Seeds the lane refused (swarm draws some mixes a lane cannot express), and why.
    refused: u64,
    refused_why: Option<String>,
    acked_lost: u64,
    simulated_ms: u64,
}

fn sweep(name: &str, seeds: u64, lanes: &[Lane], json: bool) -> anyhow::Result<u8> {
    let names: Vec<String> = if name == "all" {
        CATALOGUE.iter().map(|(n, _)| n.to_string()).chain(std::iter::once("swarm".to_string())).collect()
    } else {
        vec![name.to_string()]
    };
    let mut worst = 0;
    let mut disagreements: Vec<String> = Vec::new();
    // Progress on stderr, only when someone is watching.
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && !json {
        indicatif::ProgressBar::new(seeds * names.len() as u64 * lanes.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = rmq_rt::RealEnv::stopwatch();
    let mut rows: Vec<(String, Lane, Tally)> = Vec::new();
    for n in &names {
        let mut tallies: Vec<Tally> = lanes.iter().map(|_| Tally::default()).collect();
        for seed in 1..=seeds {
            let s = scenario(n, None, seed)?;
            let mut verdicts: Vec<(Lane, Verdict)> = Vec::new();
            for (lane, tally) in lanes.iter().zip(tallies.iter_mut()) {
                bar.set_message(format!("{n} [{}]", lane.name()));
                bar.inc(1);
                if let Some(why) = lane.refusal(&s) {
                    tally.refused += 1;
                    tally.refused_why = Some(why);
                    continue;
                }
                let r = lane.run(&s, seed, false).map_err(anyhow::Error::msg)?;
                tally.acked_lost += r.findings.acked_lost;
                tally.simulated_ms += r.simulated_ms;
                verdicts.push((*lane, r.findings.verdict));
                if r.findings.verdict == Verdict::Pass {
                    tally.pass += 1;
                } else {
                    worst = worst.max(code(r.findings.verdict));
                    tally.failed.push((seed, r.findings.verdict));
                }
            }
            if verdicts.windows(2).any(|w| w[0].1 != w[1].1) {
                let each: Vec<String> = verdicts.iter().map(|(l, v)| format!("{}={v:?}", l.name())).collect();
                disagreements.push(format!("{n} seed {seed}: {}", each.join(" ")));
            }
        }
        for (lane, tally) in lanes.iter().zip(tallies) {
            rows.push((n.clone(), *lane, tally));
        }
    }
    bar.finish_and_clear();
    let wall_ms = started.elapsed().as_millis().max(1) as u64;
    for (n, lane, t) in &rows {
        if json {
            println!(
                "{}",
                serde_json::json!({ "scenario": n, "lane": lane.name(), "seeds": seeds, "pass": t.pass, "refused": t.refused, "refused_why": t.refused_why,
                    "failed": t.failed.iter().map(|(s, v)| serde_json::json!({"seed": s, "verdict": v})).collect::<Vec<_>>(),
                    "acked_lost_total": t.acked_lost })
            );
        } else if t.refused == seeds {
            println!("{n:<30} lane={:<6} refused: {}", lane.name(), t.refused_why.as_deref().unwrap_or_default());
        } else {
            println!(
                "{n:<30} lane={:<6} seeds={seeds:<5} pass={:<5} fail={:<4} acked_lost_total={} {}{}",
                lane.name(),
                t.pass,
                t.failed.len(),
                t.acked_lost,
                t.failed.first().map(|(s, v)| format!("first failing seed: {s} ({v:?}) ")).unwrap_or_default(),
                if t.refused > 0 {
                    format!("refused={} (e.g. {})", t.refused, t.refused_why.as_deref().unwrap_or_default())
                } else {
                    String::new()
                }
            );
        }
    }
    if !json {
        for lane in lanes {
            let (runs, sim_ms): (u64, u64) = rows
                .iter()
                .filter(|(_, l, _)| l == lane)
                .fold((0, 0), |(r, m), (_, _, t)| (r + t.pass + t.failed.len() as u64, m + t.simulated_ms));
            println!("lane {:<6} {runs} runs, {} simulated s", lane.name(), sim_ms / 1_000);
        }
        println!("wall time {:.1} s", wall_ms as f64 / 1_000.0);
    }
    if lanes.len() > 1 {
        if disagreements.is_empty() {
            println!("lanes agree on every verdict");
        } else {
            for d in &disagreements {
                println!("finding: lanes disagree: {d}");
            }
            worst = worst.max(1);
        }
    }
    Ok(worst)
}
