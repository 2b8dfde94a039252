//! The `weir-sim` command line, for any registry of workloads: [`main_with`] gives a user's crate its own
//! `weir-sim`-style binary (`run`, `replay`, `--check-determinism`) over its own workloads.

use crate::report::{self, SuiteReport};
use crate::scenario::{self, Scenario};
use crate::shard::{SeedShare, Shard};
use crate::suite::{self, ScenarioSummary};
use crate::workload::Registry;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What a binary built with [`main_with`] knows: its workloads and how its replay command is spelt.
struct Context {
    registry: Registry,
    /// What a replay command starts with: `cargo x sim` for weir's own, the program's name otherwise.
    replay: String,
}

#[derive(Parser)]
#[command(about = "Deterministic simulation of weir: scenario suites over seeds, replay, determinism checks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every scenario under a file or directory over a range of seeds.
    Run {
        path: PathBuf,
        /// Seeds as `start..end` (end exclusive) or a count.
        #[arg(long, default_value = "0..32")]
        seeds: String,
        /// Worker threads (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write a JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Run each seed twice and compare traces instead of checking invariants only.
        #[arg(long)]
        check_determinism: bool,
        /// Write each failing seed of a swarm scenario, its drawn profile made explicit, as a scenario file in this
        /// directory (`<scenario>-seed-<n>.toml`): it fails the same way on the same seed.
        #[arg(long, value_name = "DIR")]
        save_scenario: Option<PathBuf>,
        /// Run only shard I of N of the (scenario, seed) pairs, as `I/N` (see `merge`).
        #[arg(long)]
        shard: Option<Shard>,
        /// Stop taking new seeds after this many minutes, shared out evenly among the scenarios (what one leaves
        /// unused goes to the next): a sweep with a time budget.
        #[arg(long, value_name = "M")]
        minutes: Option<f64>,
    },
    /// Combines the JSON reports of a sharded sweep (`run --shard I/N --json ...`) into one summary with the
    /// distinct failures.
    Merge {
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Write the merged JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Shrinks a failing seed: its faults made explicit, then removed, then the restarts, savepoints and workload
    /// reduced, each step one run of the seed; writes a minimal scenario that fails the same way on that seed.
    Shrink {
        scenario: PathBuf,
        #[arg(long)]
        seed: u64,
        /// Where to write the shrunk scenario (default: `<scenario name>-seed-<n>-shrunk.toml`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Replays one seed of one scenario and writes its trace.
    Replay {
        scenario: PathBuf,
        #[arg(long)]
        seed: u64,
        /// Where to write the trace (default: `<scenario name>-seed-<n>.trace`).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// For a swarm scenario, write the seed's drawn profile as a scenario file here.
        #[arg(long, value_name = "FILE")]
        save_scenario: Option<PathBuf>,
        /// Also write the run's timeline here: one self-contained HTML page.
        #[arg(long)]
        timeline: Option<PathBuf>,
    },
    /// Runs one seed and prints its fingerprint, then its trace: the fresh process of the
    /// determinism check.
    #[command(hide = true)]
    Trace {
        scenario: PathBuf,
        #[arg(long)]
        seed: u64,
    },
}

/// `weir-sim`'s command line over `registry`'s workloads: what a user's simulation binary calls from its `main`.
/// Its replay commands name the program itself.
pub fn main_with(registry: Registry) -> ExitCode {
    let program = std::env::args()
        .next()
        .map(|arg| Path::new(&arg).file_name().map_or(arg.clone(), |n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "weir-sim".to_string());
    run_cli(Context { registry, replay: program })
}

/// `weir-sim` itself: the built-in workloads and canaries, replayed with `cargo x sim`.
pub fn weir_sim_main() -> ExitCode {
    run_cli(Context { registry: Registry::standard(), replay: "cargo x sim".to_string() })
}

fn run_cli(context: Context) -> ExitCode {
    let cli = Cli::parse();
    let context = &context;
    let result = match cli.command {
        Command::Run { path, seeds, jobs, json, junit, check_determinism, save_scenario, shard, minutes } => {
            let reports =
                Reports { json: json.as_deref(), junit: junit.as_deref(), scenarios: save_scenario.as_deref() };
            let sweep = Sweep { jobs, determinism: check_determinism, shard, minutes };
            run(context, &path, &seeds, reports, sweep)
        }
        Command::Merge { reports, json, junit } => {
            merge(&reports, Reports { json: json.as_deref(), junit: junit.as_deref(), scenarios: None })
        }
        Command::Replay { scenario, seed, trace, save_scenario, timeline } => {
            replay(context, &scenario, seed, trace, save_scenario.as_deref(), timeline.as_deref())
        }
        Command::Trace { scenario, seed } => print_trace(context, &scenario, seed),
        Command::Shrink { scenario, seed, out } => shrink(context, &scenario, seed, out),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// The most seeds one command runs: a bound on time and on the memory the reports take.
const SEEDS_MAX: u64 = 10_000_000;

fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
    let bad = || format!("--seeds: expected `start..end` (end exclusive) or a count, got `{text}`");
    let range = match text.split_once("..") {
        Some((start, end)) => {
            let (start, end): (u64, u64) = (start.parse().map_err(|_| bad())?, end.parse().map_err(|_| bad())?);
            if start >= end {
                return Err(bad());
            }
            start..end
        }
        None => text.parse::<u64>().ok().filter(|&n| n > 0).map(|n| 0..n).ok_or_else(bad)?,
    };
    if range.end - range.start > SEEDS_MAX {
        return Err(format!(
            "--seeds: {} seeds is more than one run takes ({SEEDS_MAX}); split the range",
            range.end - range.start
        ));
    }
    Ok(range)
}

fn load_all(context: &Context, path: &Path) -> Result<Vec<Scenario>, String> {
    let paths = scenario::discover(path).map_err(|e| e.to_string())?;
    if paths.is_empty() {
        return Err(format!("no scenario files (*.toml) under `{}`", path.display()));
    }
    paths.iter().map(|p| scenario::load_with(p, &context.registry).map_err(|e| e.to_string())).collect()
}

/// Where `run` writes what it found, besides its summary.
#[derive(Clone, Copy)]
struct Reports<'a> {
    json: Option<&'a Path>,
    junit: Option<&'a Path>,
    /// The directory failing swarm seeds are saved to as scenario files.
    scenarios: Option<&'a Path>,
}

impl Reports<'_> {
    fn write(&self, report: &SuiteReport) -> Result<(), String> {
        for (path, text) in [(self.json, report.to_json()), (self.junit, report.to_junit())] {
            if let Some(path) = path {
                write_file(path, &text)?;
            }
        }
        Ok(())
    }
}

/// Writes `text` to `path`, creating its directory.
fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

/// A swarm seed's profile as a scenario file that replays it: the drawn faults and settings made explicit.
fn saved_scenario(path: &str, report: &crate::runner::RunReport) -> Option<String> {
    let (seed, profile) = (report.seed, report.profile.as_ref()?);
    Some(format!("# The swarm profile that seed {seed} of `{path}` drew; replay it with `--seed {seed}`.\n{profile}"))
}

/// The most worker threads `--jobs` may ask for: each runs a whole simulated cluster.
const JOBS_MAX: usize = 1024;

/// How `run` sweeps its seeds.
struct Sweep {
    jobs: Option<usize>,
    determinism: bool,
    shard: Option<Shard>,
    minutes: Option<f64>,
}

fn run(context: &Context, path: &Path, seeds: &str, reports: Reports<'_>, sweep: Sweep) -> Result<bool, String> {
    let Sweep { jobs, determinism, shard, minutes } = sweep;
    if let Some(jobs) = jobs.filter(|j| !(1..=JOBS_MAX).contains(j)) {
        return Err(format!("--jobs: expected from 1 to {JOBS_MAX} worker threads, got {jobs}"));
    }
    let save_dir = reports.scenarios;
    let budget = match minutes {
        Some(m) if !(m.is_finite() && m > 0.0 && m <= 100_000.0) => {
            return Err(format!("--minutes: expected a positive number of minutes, got {m}"));
        }
        Some(m) => Some(std::time::Duration::from_secs_f64(m * 60.0)),
        None => None,
    };
    let seeds = parse_seeds(seeds)?;
    let scenarios = load_all(context, path)?;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if determinism {
        if shard.is_some() {
            return Err("--shard does not apply to --check-determinism: give each machine its own --seeds".into());
        }
        return check_determinism(context, &scenarios, seeds, jobs);
    }
    let shares: Vec<SeedShare> =
        scenarios.iter().map(|s| shard.unwrap_or(Shard::ALL).seeds(s.name(), seeds.clone())).collect();
    let total: u64 = shares.iter().map(SeedShare::len).sum();
    if let Some(shard) = shard {
        let all = (seeds.end - seeds.start) * scenarios.len() as u64;
        println!("shard {shard}: {total} of the {all} (scenario, seed) pairs");
    }
    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {elapsed} elapsed, {msg}").expect("a valid template"),
    );
    let mut summaries = Vec::new();
    let started = std::time::Instant::now();
    for (index, (scenario, share)) in scenarios.iter().zip(shares).enumerate() {
        progress.set_message(scenario.name().to_string());
        // Scenario `index` may run until its share of the budget, and what earlier ones left, is used.
        let deadline = budget.map(|b| started + b.mul_f64((index + 1) as f64 / scenarios.len() as f64));
        let summary = suite::run_seed_share_until(scenario, share, jobs, deadline, &|_| progress.inc(1));
        progress.suspend(|| print_summary(context, &summary));
        if let Some(dir) = save_dir {
            for failure in &summary.failures {
                let Some(text) = saved_scenario(&summary.path, failure) else { continue };
                let file = dir.join(format!("{}-seed-{}.toml", summary.name, failure.seed));
                write_file(&file, &text)?;
                progress.suspend(|| println!("  saved seed {}'s profile: {}", failure.seed, file.display()));
            }
        }
        summaries.push(summary);
    }
    progress.finish_and_clear();
    let report = SuiteReport::of_run(&context.replay, &summaries, &seeds, shard);
    print!("{}", report.distinct_summary());
    let failed: Vec<&ScenarioSummary> = summaries.iter().filter(|s| !s.failures.is_empty()).collect();
    let seeds_total: u64 = summaries.iter().map(|s| s.seeds).sum();
    let wall: f64 = summaries.iter().map(|s| s.wall_time.as_secs_f64()).sum();
    let sim: f64 = summaries.iter().map(|s| s.sim_time_ms as f64 / 1000.0).sum();
    println!(
        "{} scenarios, {seeds_total} seeds: {} passed, {} failed; {:.1} seeds/s, simulated/wall {:.0}x",
        summaries.len(),
        summaries.len() - failed.len(),
        failed.len(),
        seeds_total as f64 / wall.max(1e-9),
        sim / wall.max(1e-9)
    );
    if budget.is_some() && seeds_total < total {
        println!("stopped at the time budget: {seeds_total} of the {total} seeds ran (each scenario's first ones)");
    }
    reports.write(&report)?;
    Ok(failed.is_empty())
}

/// `merge`: the shards' reports as one.
fn merge(paths: &[PathBuf], reports: Reports<'_>) -> Result<bool, String> {
    let read: Vec<(PathBuf, SuiteReport)> = paths
        .iter()
        .map(|path| report::read(path).map(|r| (path.clone(), r)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let merged = report::merge(&read).map_err(|e| e.to_string())?;
    print!("{}", merged.summary());
    reports.write(&merged)?;
    Ok(merged.failed_scenarios() == 0)
}

fn print_summary(context: &Context, summary: &ScenarioSummary) {
    print!("{}", summary.describe(&context.replay, 5));
}

fn check_determinism(
    context: &Context,
    scenarios: &[Scenario],
    seeds: Range<u64>,
    jobs: usize,
) -> Result<bool, String> {
    let program = std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let fresh = suite::FreshProcess { program };
    let progress = ProgressBar::new((seeds.end - seeds.start) * scenarios.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds checked, {elapsed} elapsed")
            .expect("a valid template"),
    );
    let summaries = suite::check_determinism_all(scenarios, seeds, jobs, &fresh, &|| progress.inc(1));
    progress.finish_and_clear();
    let mut ok = true;
    for summary in &summaries {
        if summary.divergences.is_empty() {
            println!("{:<44} {} seeds deterministic", summary.name, summary.seeds);
            continue;
        }
        ok = false;
        println!("{:<44} NOT deterministic on {} of {} seeds", summary.name, summary.divergences.len(), summary.seeds);
        for (seed, divergence) in summary.divergences.iter().take(5) {
            println!("  {divergence}");
            println!("    replay: {}", suite::replay_command(&context.replay, Path::new(&summary.path), *seed));
        }
    }
    let seeds_total: u64 = summaries.iter().map(|s| s.seeds).sum();
    let divergent: usize = summaries.iter().map(|s| s.divergences.len()).sum();
    println!(
        "{} scenarios, {seeds_total} seeds: each run untraced in this process, traced in this process and traced in a fresh process; {divergent} diverged",
        summaries.len()
    );
    Ok(ok)
}

fn print_trace(context: &Context, path: &Path, seed: u64) -> Result<bool, String> {
    let scenario = scenario::load_with(path, &context.registry).map_err(|e| e.to_string())?;
    let options = crate::runner::RunOptions { faults: true, trace: true };
    let report = crate::runner::simulate_seed(&scenario, seed, options).unchecked();
    let mut out = format!("fingerprint {:016x}\n", report.fingerprint);
    for line in &report.trace {
        out.push_str(line);
        out.push('\n');
    }
    use std::io::Write as _;
    std::io::stdout().write_all(out.as_bytes()).map_err(|e| format!("cannot write the trace: {e}"))?;
    Ok(true)
}

fn shrink(context: &Context, path: &Path, seed: u64, out: Option<PathBuf>) -> Result<bool, String> {
    let scenario = scenario::load_with(path, &context.registry).map_err(|e| e.to_string())?;
    let shrunk = crate::shrink::shrink(&scenario, seed).map_err(|e| e.to_string())?;
    let out = out.unwrap_or_else(|| crate::shrink::default_output(&scenario, seed));
    write_file(&out, &shrunk.text)?;
    println!(
        "seed {seed} of {} fails {}; shrunk in {:.1} s ({} runs):",
        path.display(),
        shrunk.failure,
        shrunk.took.as_secs_f64(),
        shrunk.runs
    );
    for change in &shrunk.changes {
        println!("  {change}");
    }
    println!("wrote {}; replay: {}", out.display(), suite::replay_command(&context.replay, &out, seed));
    Ok(true)
}

fn replay(
    context: &Context,
    path: &Path,
    seed: u64,
    trace: Option<PathBuf>,
    save_scenario: Option<&Path>,
    timeline: Option<&Path>,
) -> Result<bool, String> {
    let scenario = scenario::load_with(path, &context.registry).map_err(|e| e.to_string())?;
    let fault_free = suite::FaultFree::new(&scenario).for_seed(seed).as_ref().clone().ok();
    let report = crate::runner::run(
        &scenario,
        seed,
        crate::runner::RunOptions { faults: true, trace: true },
        fault_free.as_deref(),
    );
    println!("scenario {} ({}), seed {seed}", scenario.name(), path.display());
    for (key, value) in &report.chosen {
        println!("  chosen by the seed: {key} = {value}");
    }
    // By default under `target/`, never beside the sources.
    let trace_path = trace.unwrap_or_else(|| {
        PathBuf::from("target").join("weir-sim").join("traces").join(format!("{}-seed-{seed}.trace", scenario.name()))
    });
    if let Some(parent) = trace_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    }
    std::fs::write(&trace_path, report.trace.join("\n") + "\n")
        .map_err(|e| format!("cannot write `{}`: {e}", trace_path.display()))?;
    println!("fingerprint {:016x}", report.fingerprint);
    println!(
        "simulated {} ms in {:.3} s; {} checkpoints completed; {} restores; trace: {} ({} lines)",
        report.sim_time_ms,
        report.wall_time.as_secs_f64(),
        report.completed.len(),
        report.restores,
        trace_path.display(),
        report.trace.len()
    );
    if let Some(error) = &report.error {
        println!("  {error}");
    }
    for violation in &report.violations {
        println!("  {violation}");
    }
    if let Some(file) = save_scenario {
        let Some(text) = saved_scenario(&path.display().to_string(), &report) else {
            return Err(format!("`{}` has no `[swarm]` section: there is no drawn profile to save", path.display()));
        };
        write_file(file, &text)?;
        println!("saved the seed's profile: {}", file.display());
    }
    if let Some(divergence) = &report.first_divergence {
        println!("  first divergence: {divergence}");
    }
    let passed = suite::seed_passed(&scenario, &report);
    if let Some(timeline) = timeline {
        let replay = suite::replay_command(&context.replay, path, seed);
        let canary = scenario.file.checks.expect_violation.map(|invariant| invariant.to_string());
        let about = crate::timeline::About { scenario_path: &path.display().to_string(), passed, canary, replay };
        std::fs::write(timeline, crate::timeline::html(&report, &about))
            .map_err(|e| format!("cannot write `{}`: {e}", timeline.display()))?;
        println!("timeline: {}", timeline.display());
    }
    println!("{}", if passed { "passed" } else { "FAILED" });
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_count_of_zero_or_absurdly_many_is_an_error_naming_the_option() {
        let context = Context { registry: Registry::standard(), replay: String::new() };
        for jobs in [0, 1025, 100_000] {
            let reports = Reports { json: None, junit: None, scenarios: None };
            let sweep = Sweep { jobs: Some(jobs), determinism: false, shard: None, minutes: None };
            let error = run(&context, Path::new("no-such-scenario.toml"), "0..1", reports, sweep).unwrap_err();
            assert_eq!(error, format!("--jobs: expected from 1 to 1024 worker threads, got {jobs}"));
        }
    }
}
