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
//! ```
//! Exit codes: 0 pass, 1 safety violation, 2 liveness violation, 3 nondeterminism, 4 usage.

use std::process::ExitCode;

/// mimalloc, as in every shipped binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rmq_sim::scenario::{parse, resolve, CATALOGUE};
use rmq_sim::{run, RunReport, Scenario, Verdict};

#[derive(Parser, Debug)]
#[command(name = "mqsim", version, about = "Deterministic simulation of the real NameServer and broker cores")]
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
        /// Write the run as a self-contained HTML timeline page (fast lane).
        #[arg(long)]
        html: Option<std::path::PathBuf>,
        /// Run twice and compare traces; name the first divergent event.
        #[arg(long)]
        check_determinism: bool,
        /// `fast`: the discrete-event lane over the cores; `stack`: the real drivers and client
        /// library on turmoil hosts.
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
    /// Run seeds 1..=N of one scenario (or `all`) and summarise.
    Sweep {
        scenario: String,
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        #[arg(long)]
        json: bool,
    },
}

const DEFAULT_SCENARIO: &str = "broker-crash-sync";
const DEFAULT_SEED: u64 = 42;

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

fn print(r: &RunReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("reports serialize"));
        return;
    }
    let f = &r.findings;
    println!(
        "{} seed={} verdict={:?} digest={} | sent={} acked={} failed={} delivered={} duplicates={} processed_twice={} acked_lost={} crashes={} | {} events, {} simulated ms",
        r.scenario, r.seed, f.verdict, r.digest, r.sent, r.acked, r.failed, r.delivered, f.duplicates, f.processed_duplicates, f.acked_lost, r.crashes, r.events, r.simulated_ms
    );
    for p in &f.problems {
        println!("  violation: {p}");
    }
}

fn run_stack_lane(s: &Scenario, seed: u64, json: bool) -> anyhow::Result<u8> {
    let r = rmq_sim::stack::run_stack(s, seed).map_err(anyhow::Error::msg)?;
    let violation = !r.lost.is_empty() && !s.acked_loss_allowed;
    let delivered: u32 = r.deliveries.values().sum();
    if json {
        println!(
            "{}",
            serde_json::json!({ "scenario": s.name, "seed": seed, "lane": "stack", "acked": r.acked.len(), "failed": r.failed,
                "delivered": delivered, "acked_lost": r.lost.len(), "simulated_ms": r.simulated_ms,
                "verdict": if violation { "Safety" } else { "Pass" } })
        );
    } else {
        println!(
            "{} seed={} lane=stack verdict={} | acked={} failed={} delivered={} acked_lost={} | {} simulated ms",
            s.name,
            seed,
            if violation { "Safety" } else { "Pass" },
            r.acked.len(),
            r.failed,
            delivered,
            r.lost.len(),
            r.simulated_ms
        );
    }
    Ok(if violation { 1 } else { 0 })
}

/// Writes the run as a timeline page: `mqsim run … --html FILE`.
fn write_html(
    path: &std::path::Path,
    r: &RunReport,
    name: &str,
    file: Option<&std::path::Path>,
    lane: &str,
) -> anyhow::Result<()> {
    let file_arg = file.map(|f| format!(" --file {}", f.display())).unwrap_or_default();
    let lane_arg = if lane == "fast" { String::new() } else { format!(" --lane {lane}") };
    let replay = format!("mqsim run {name}{file_arg} --seed {}{lane_arg}", r.seed);
    let shrink = format!("mqsim shrink {name}{file_arg} --seed {}", r.seed);
    let verdict = format!("{:?}", r.findings.verdict);
    let evidence = rmq_sim::html::evidence_keys(&r.findings.problems);
    let page = rmq_sim::html::render(&rmq_sim::html::Timeline {
        scenario: &r.scenario,
        lane,
        seed: r.seed,
        verdict: &verdict,
        digest: &r.digest,
        problems: &r.findings.problems,
        evidence: &evidence,
        replay_command: &replay,
        shrink_command: &shrink,
        lines: &r.trace,
    });
    std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("# timeline page written to {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    match real_main() {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("mqsim: {e:#}");
            ExitCode::from(4)
        }
    }
}

fn real_main() -> anyhow::Result<u8> {
    let args = Args::parse();
    let cmd = args.cmd.unwrap_or(Cmd::Run {
        scenario: DEFAULT_SCENARIO.into(),
        file: None,
        seed: DEFAULT_SEED,
        trace: None,
        html: None,
        check_determinism: false,
        lane: "fast".into(),
        json: false,
    });
    match cmd {
        Cmd::List => {
            for (name, text) in CATALOGUE {
                let s = parse(text).map_err(anyhow::Error::msg)?;
                println!("{name:<22} {}", s.goal);
            }
            println!("{:<22} swarm testing: flush mode, network and fault mix drawn from the seed", "swarm");
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
            let s = scenario(&name, file.as_deref(), seed)?;
            match lane.as_str() {
                "fast" => {}
                "stack" if html.is_some() => anyhow::bail!("--html draws the fast lane's trace; drop --lane stack"),
                "stack" => return run_stack_lane(&s, seed, json),
                other => anyhow::bail!("unknown lane {other:?}: fast or stack"),
            }
            if name == "swarm" && file.is_none() && !json {
                println!(
                    "# swarm mix drawn from seed {seed}:\n{}",
                    s.to_dsl().lines().map(|l| format!("#   {l}")).collect::<Vec<_>>().join("\n")
                );
            }
            let keep = trace.is_some() || html.is_some() || check_determinism;
            let r = run(&s, seed, keep);
            if let Some(path) = &trace {
                std::fs::write(path, r.trace.join("\n") + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &html {
                let name = if file.is_some() { s.name.as_str() } else { name.as_str() };
                write_html(path, &r, name, file.as_deref(), &lane)?;
            }
            if check_determinism {
                let again = run(&s, seed, true);
                if again.digest != r.digest {
                    let i = r
                        .trace
                        .iter()
                        .zip(&again.trace)
                        .position(|(a, b)| a != b)
                        .unwrap_or(r.trace.len().min(again.trace.len()));
                    println!(
                        "nondeterminism: first divergent event #{i}:\n  run 1: {:?}\n  run 2: {:?}",
                        r.trace.get(i),
                        again.trace.get(i)
                    );
                    return Ok(3);
                }
                println!("deterministic: two runs gave digest {}", r.digest);
            }
            print(&r, json);
            Ok(code(r.findings.verdict))
        }
        Cmd::Sweep { scenario: name, seeds, json } => {
            let names: Vec<String> = if name == "all" {
                CATALOGUE.iter().map(|(n, _)| n.to_string()).chain(std::iter::once("swarm".to_string())).collect()
            } else {
                vec![name]
            };
            let mut worst = 0;
            for n in names {
                let (mut pass, mut fail, mut lost) = (0u64, Vec::new(), 0u64);
                // Progress on stderr, only when someone is watching.
                let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && !json {
                    indicatif::ProgressBar::new(seeds).with_message(n.clone())
                } else {
                    indicatif::ProgressBar::hidden()
                };
                for seed in 1..=seeds {
                    bar.inc(1);
                    let s = scenario(&n, None, seed)?;
                    let r = run(&s, seed, false);
                    lost += r.findings.acked_lost;
                    if r.findings.verdict == Verdict::Pass {
                        pass += 1;
                    } else {
                        worst = worst.max(code(r.findings.verdict));
                        fail.push((seed, r.findings.verdict));
                    }
                }
                bar.finish_and_clear();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "scenario": n, "seeds": seeds, "pass": pass, "failed": fail.iter().map(|(s, v)| serde_json::json!({"seed": s, "verdict": v})).collect::<Vec<_>>(), "acked_lost_total": lost })
                    );
                } else {
                    println!(
                        "{n:<22} seeds={seeds:<5} pass={pass:<5} fail={:<4} acked_lost_total={lost} {}",
                        fail.len(),
                        if fail.is_empty() { String::new() } else { format!("first failing seed: {}", fail[0].0) }
                    );
                }
            }
            Ok(worst)
        }
    }
}
