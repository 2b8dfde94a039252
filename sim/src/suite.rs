//! Running scenarios over many seeds: in parallel over the cores, each scenario compared
//! with its own fault-free run, with canary scenarios inverted (they pass when the checkers
//! catch their deliberate bug). Also the determinism self-check, and [`Suite`], the builder a
//! user's own `#[test]` runs its scenarios with.

use crate::divergence;
use crate::invariants::Invariant;
use crate::runner::{self, RunOptions, RunReport};
use crate::scenario::{self, Scenario, ScenarioError};
use crate::shard::SeedShare;
use crate::workload::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How one scenario fared over its seeds.
#[derive(Clone, Debug)]
pub struct ScenarioSummary {
    pub name: String,
    pub path: String,
    pub seeds: u64,
    pub passed: u64,
    /// Failing seeds' reports, ascending by seed.
    pub failures: Vec<RunReport>,
    pub wall_time: Duration,
    pub sim_time_ms: u64,
    /// For a canary: the invariant it must break.
    pub canary: Option<Invariant>,
    /// The scenario's faults that never fired in any of its seeds, described: most likely a `when` or a scope that
    /// the run never reaches (a swarm's faults are drawn per seed and are not counted).
    pub never_fired: Vec<String>,
}

impl ScenarioSummary {
    pub fn seeds_per_second(&self) -> f64 {
        self.seeds as f64 / self.wall_time.as_secs_f64().max(1e-9)
    }

    /// Simulated time per wall-clock time, over every seed.
    pub fn sim_wall_ratio(&self) -> f64 {
        self.sim_time_ms as f64 / 1000.0 / self.wall_time.as_secs_f64().max(1e-9)
    }
}

impl ScenarioSummary {
    /// What a person reads about this scenario: one line of figures, then each of the first `shown` failing seeds
    /// with its violation and the command that replays it (`replay` is how the simulation binary is run).
    pub fn describe(&self, replay: &str, shown: usize) -> String {
        let kind = match self.canary {
            Some(invariant) => format!(" (canary: must break `{invariant}`)"),
            None => String::new(),
        };
        let mut text = format!(
            "{:<44} {:>4}/{:<4} seeds passed{kind}  {:>7.1} seeds/s  simulated/wall {:>6.0}x\n",
            self.name,
            self.passed,
            self.seeds,
            self.seeds_per_second(),
            self.sim_wall_ratio()
        );
        for failure in self.failures.iter().take(shown) {
            match (&failure.error, failure.violations.first(), self.canary) {
                (_, _, Some(invariant)) => {
                    let _ = writeln!(text, "  seed {}: the canary was not caught (`{invariant}` held)", failure.seed);
                }
                (_, Some(violation), None) => {
                    let _ = writeln!(text, "  {violation}");
                }
                (Some(error), None, None) => {
                    let _ = writeln!(text, "  seed {}: {error}", failure.seed);
                }
                (None, None, None) => {}
            }
            if let Some(divergence) = &failure.first_divergence {
                let _ = writeln!(text, "    first divergence: {divergence}");
            }
            let _ = writeln!(text, "    replay: {}", replay_command(replay, Path::new(&self.path), failure.seed));
        }
        if self.failures.len() > shown {
            let _ = writeln!(text, "  ... and {} more failing seeds", self.failures.len() - shown);
        }
        for fault in &self.never_fired {
            let _ = writeln!(
                text,
                "  warning: {fault} never fired in {} seeds: its `when` or scope is never reached",
                self.seeds
            );
        }
        text
    }
}

/// A scenario suite over a range of seeds, for a user's own `#[test]`: scenario files (or directories of them)
/// whose workloads come from a registry, run as `weir-sim run` runs them, each seed checked against the workload's
/// reference model and the scenario's fault-free run.
///
/// ```no_run
/// # use sim::{suite::Suite, workload::Registry};
/// Suite::new(Registry::builtin())
///     .scenarios("scenarios/my-job")
///     .seeds(0..64)
///     .replay_with("cargo run -p my-job-sim --")
///     .assert_passes();
/// ```
pub struct Suite {
    registry: Registry,
    paths: Vec<PathBuf>,
    seeds: Range<u64>,
    jobs: usize,
    replay: String,
}

impl Suite {
    /// An empty suite over `registry`'s workloads: seeds `0..32`, one worker per core, replayed with `weir-sim`.
    pub fn new(registry: Registry) -> Suite {
        let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        Suite { registry, paths: Vec::new(), seeds: 0..32, jobs, replay: "weir-sim".to_string() }
    }

    /// Adds a scenario file, or every `*.toml` below a directory.
    pub fn scenarios(mut self, path: impl Into<PathBuf>) -> Suite {
        self.paths.push(path.into());
        self
    }

    /// The seeds every scenario runs with.
    pub fn seeds(mut self, seeds: Range<u64>) -> Suite {
        assert!(seeds.start < seeds.end, "an empty seed range {seeds:?}");
        self.seeds = seeds;
        self
    }

    /// How many seeds run at once.
    pub fn jobs(mut self, jobs: usize) -> Suite {
        self.jobs = jobs.max(1);
        self
    }

    /// How a failure's replay command starts: the command that runs the crate's simulation binary (the one whose
    /// `main` calls [`crate::cli::main_with`]).
    pub fn replay_with(mut self, program: impl Into<String>) -> Suite {
        self.replay = program.into();
        self
    }

    /// Every scenario, loaded; one that cannot be used is an error.
    fn load(&self) -> Result<Vec<Scenario>, ScenarioError> {
        let mut scenarios = Vec::new();
        for path in &self.paths {
            for file in scenario::discover(path)? {
                scenarios.push(scenario::load_with(&file, &self.registry)?);
            }
        }
        if scenarios.is_empty() {
            let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
            return Err(ScenarioError::Read {
                path: self.paths.first().cloned().unwrap_or_default(),
                message: format!("no scenario files (*.toml) under {}", paths.join(", ")),
            });
        }
        Ok(scenarios)
    }

    /// Loads every scenario, then runs each over the seeds. A scenario that cannot be used is an error before any
    /// seed runs.
    pub fn run(&self) -> Result<SuiteReport, ScenarioError> {
        let scenarios = self.load()?;
        let summaries = scenarios.iter().map(|s| run_seeds(s, self.seeds.clone(), self.jobs, &|_| {})).collect();
        Ok(SuiteReport { summaries, replay: self.replay.clone() })
    }

    /// Checks, instead of the invariants, that every seed of every scenario runs the same three ways (as
    /// `run --check-determinism` does), and panics naming each seed that does not, with its replay command.
    /// `program` is the crate's simulation binary, which runs the seed in a fresh process; in an integration test
    /// of the crate that has it, `env!("CARGO_BIN_EXE_<name>")`.
    pub fn assert_deterministic(&self, program: impl Into<PathBuf>) {
        let scenarios = self.load().unwrap_or_else(|error| panic!("{error}"));
        let fresh = FreshProcess { program: program.into() };
        let summaries = check_determinism_all(&scenarios, self.seeds.clone(), self.jobs, &fresh, &|| {});
        let mut divergent = String::new();
        for summary in &summaries {
            for (seed, divergence) in &summary.divergences {
                let replay = replay_command(&self.replay, Path::new(&summary.path), *seed);
                let _ = writeln!(divergent, "{}: {divergence}\n  replay: {replay}", summary.name);
            }
        }
        assert!(divergent.is_empty(), "seeds that do not replay the same:\n{divergent}");
    }

    /// Runs the suite and panics, describing every failing scenario with its replay commands, unless every seed of
    /// every scenario passed.
    pub fn assert_passes(&self) {
        let report = self.run().unwrap_or_else(|error| panic!("{error}"));
        assert!(report.passed(), "scenarios failed:\n{}", report.describe());
    }
}

/// What a [`Suite`] run found.
#[derive(Clone, Debug)]
pub struct SuiteReport {
    pub summaries: Vec<ScenarioSummary>,
    replay: String,
}

impl SuiteReport {
    /// Whether every seed of every scenario passed.
    pub fn passed(&self) -> bool {
        self.summaries.iter().all(|s| s.failures.is_empty())
    }

    /// Every scenario's line of figures and its failures.
    pub fn describe(&self) -> String {
        self.summaries.iter().map(|s| s.describe(&self.replay, 5)).collect()
    }
}

/// The copyable command that replays one seed of one scenario: `program` is how the simulation binary is run
/// (`cargo x sim` for weir's own).
pub fn replay_command(program: &str, path: &Path, seed: u64) -> String {
    format!("{program} replay {} --seed {seed}", path.display())
}

/// The fault-free run's committed output, sorted: what every seed must commit. It is seed 0
/// with the scenario's faults, restarts and savepoint steps off; its own checkers are not
/// run, since only its output is used.
pub fn fault_free_output(scenario: &Scenario) -> Result<Arc<[String]>, String> {
    let report = runner::simulate_seed(scenario, 0, RunOptions { faults: false, trace: false }).unchecked();
    if let Some(error) = report.error {
        return Err(format!("the fault-free run failed: {error}"));
    }
    // Normally it committed the reference output, whose lines are sorted already.
    let reference = runner::expected_output(scenario);
    if reference.matches(&report.output) {
        return Ok(reference.shared_lines());
    }
    let mut lines: Vec<&str> = report.output.lines().collect();
    lines.sort_unstable();
    Ok(lines.into_iter().map(str::to_string).collect())
}

/// The fault-free oracle of a scenario's seeds: one fault-free run, or, for a swarm that draws workload
/// parameters, one per distinct drawn workload (each seed is compared with the run of its own parameters). A run
/// is made when a seed first needs it; seeds that need one being made wait for it ([`FaultFree::for_seed`]), or
/// are checked later ([`FaultFree::for_seed_if_ready`]).
pub struct FaultFree<'a> {
    scenario: &'a Scenario,
    runs: Mutex<BTreeMap<String, Arc<FaultFreeRun>>>,
}

/// One fault-free run: whether a thread started making it, and what it committed once made.
#[derive(Default)]
struct FaultFreeRun {
    started: std::sync::atomic::AtomicBool,
    output: OnceLock<Arc<FaultFreeOutput>>,
}

/// A fault-free run's sorted committed output, or why there is none.
pub type FaultFreeOutput = Result<Arc<[String]>, String>;

impl<'a> FaultFree<'a> {
    pub fn new(scenario: &'a Scenario) -> Self {
        FaultFree { scenario, runs: Mutex::new(BTreeMap::new()) }
    }

    /// What seed `seed` must commit, made now if no thread made it yet, waited for if another is making it.
    pub fn for_seed(&self, seed: u64) -> Arc<FaultFreeOutput> {
        self.lookup(seed, true).expect("a waiting lookup always answers")
    }

    /// As [`FaultFree::for_seed`], but `None` instead of waiting while another thread makes the run: the caller
    /// checks the seed later and simulates another meanwhile, so no thread idles while one makes a run.
    pub fn for_seed_if_ready(&self, seed: u64) -> Option<Arc<FaultFreeOutput>> {
        self.lookup(seed, false)
    }

    fn lookup(&self, seed: u64, wait: bool) -> Option<Arc<FaultFreeOutput>> {
        let drawn = match &self.scenario.file.swarm {
            Some(swarm) if !swarm.params.is_empty() => match crate::swarm::effective(self.scenario, seed) {
                Ok(drawn) => Some(drawn),
                Err(error) => return Some(Arc::new(Err(format!("the swarm's profile for seed {seed}: {error}")))),
            },
            _ => None,
        };
        let scenario = drawn.as_ref().unwrap_or(self.scenario);
        let run =
            self.runs.lock().expect("fault-free lock").entry(scenario.workload.reference_key()).or_default().clone();
        if let Some(output) = run.output.get() {
            return Some(output.clone());
        }
        if run.started.swap(true, Ordering::SeqCst) && !wait {
            return None;
        }
        Some(run.output.get_or_init(|| Arc::new(fault_free_output(scenario))).clone())
    }
}

/// Whether a seed's report passes: no violation, or, for a canary, the expected one.
pub fn seed_passed(scenario: &Scenario, report: &RunReport) -> bool {
    match scenario.file.checks.expect_violation {
        Some(expected) => report.violations.iter().any(|v| v.invariant == expected),
        None => report.passed(),
    }
}

/// Runs `seeds` of `scenario` on `jobs` threads; `on_seed` is called after each seed.
pub fn run_seeds(
    scenario: &Scenario,
    seeds: Range<u64>,
    jobs: usize,
    on_seed: &(dyn Fn(&RunReport) + Sync),
) -> ScenarioSummary {
    run_seed_share(scenario, SeedShare::all(seeds), jobs, on_seed)
}

/// Runs the seeds of `share` (a shard's share of a range, [`crate::shard`]) of `scenario` on `jobs` threads;
/// `on_seed` is called after each seed. A failing seed is run once more, traced, for its first divergence.
///
/// Each seed is compared with its fault-free run ([`FaultFree`]). An empty share runs nothing.
pub fn run_seed_share(
    scenario: &Scenario,
    share: SeedShare,
    jobs: usize,
    on_seed: &(dyn Fn(&RunReport) + Sync),
) -> ScenarioSummary {
    run_seed_share_until(scenario, share, jobs, None, on_seed)
}

/// [`run_seed_share`], taking no new seed after `deadline`: a sweep with a time budget. The summary counts the
/// seeds that ran, which are the share's first ones.
pub fn run_seed_share_until(
    scenario: &Scenario,
    share: SeedShare,
    jobs: usize,
    deadline: Option<Instant>,
    on_seed: &(dyn Fn(&RunReport) + Sync),
) -> ScenarioSummary {
    let started = Instant::now();
    let oracle = FaultFree::new(scenario);
    // Seeds are handed out by their index in the range, so that a range ending at `u64::MAX` cannot wrap.
    let next = AtomicU64::new(0);
    let count = share.len();
    // A passing seed leaves only its count and simulated time: a sweep of a million seeds keeps its failures alone.
    let failures: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    let (passed, sim_time_ms) = (AtomicU64::new(0), AtomicU64::new(0));
    // The faults no seed has fired yet; a swarm's faults are drawn per seed, so none are followed.
    let followed = if scenario.file.swarm.is_some() { 0 } else { scenario.file.faults.len() };
    let never_fired: Mutex<BTreeSet<usize>> = Mutex::new((0..followed).collect());
    // Checks a simulated seed against its fault-free run and counts it.
    let finish = |seed: u64, finished: runner::Finished, fault_free: Arc<FaultFreeOutput>| {
        let mut report = match fault_free.as_ref() {
            Ok(lines) => finished.check(Some(lines)),
            Err(error) => {
                let mut report = finished.check(None);
                report.error = Some(error.clone());
                report
            }
        };
        if !seed_passed(scenario, &report) {
            let lines = fault_free.as_ref().as_ref().ok().map(|lines| &**lines);
            report.first_divergence = divergence::by_traced_rerun(scenario, &report, lines);
        }
        report.output = String::new();
        if seed_passed(scenario, &report) {
            report.profile = None;
        }
        on_seed(&report);
        sim_time_ms.fetch_add(report.sim_time_ms, Ordering::SeqCst);
        never_fired.lock().expect("never-fired lock").retain(|index| report.unfired.contains(index));
        assert_eq!(report.seed, seed, "a report checked against another seed's run");
        if seed_passed(scenario, &report) {
            passed.fetch_add(1, Ordering::SeqCst);
        } else {
            failures.lock().expect("failures lock").push(report);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..if share.is_empty() { 0 } else { jobs.max(1) } {
            scope.spawn(|| {
                // Seeds simulated but not checked yet: their fault-free run is being made by another thread.
                let mut unchecked: Vec<(u64, runner::Finished)> = Vec::new();
                loop {
                    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                        break;
                    }
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= count {
                        break;
                    }
                    let seed = share.nth(index);
                    unchecked
                        .push((seed, runner::simulate_seed(scenario, seed, RunOptions { faults: true, trace: false })));
                    let mut waiting = Vec::new();
                    for (seed, finished) in unchecked.drain(..) {
                        match oracle.for_seed_if_ready(seed) {
                            Some(fault_free) => finish(seed, finished, fault_free),
                            None => waiting.push((seed, finished)),
                        }
                    }
                    unchecked = waiting;
                }
                for (seed, finished) in unchecked {
                    finish(seed, finished, oracle.for_seed(seed));
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("failures lock");
    failures.sort_by_key(|r| r.seed);
    let passed = passed.into_inner();
    let mut never_fired = never_fired.into_inner().expect("never-fired lock");
    if passed == 0 && failures.is_empty() {
        never_fired.clear(); // No seed ran: nothing was seen not to fire.
    }
    ScenarioSummary {
        name: scenario.name().to_string(),
        path: scenario.path.display().to_string(),
        seeds: passed + failures.len() as u64,
        passed,
        failures,
        wall_time: started.elapsed(),
        sim_time_ms: sim_time_ms.into_inner(),
        never_fired: never_fired
            .into_iter()
            .map(|index| format!("fault {} ({})", index + 1, crate::injector::describe(&scenario.file.faults[index])))
            .collect(),
        canary: scenario.file.checks.expect_violation,
    }
}

/// How to run one seed in a fresh process: a program whose `trace <scenario> --seed <n>`
/// prints the seed's fingerprint on its first line (`fingerprint <hex>`), then its trace
/// (`weir-sim` has it, and so has a binary made with `main_with`).
#[derive(Clone, Debug)]
pub struct FreshProcess {
    pub program: std::path::PathBuf,
}

/// One seed's trace and fingerprint, from a fresh process.
fn fresh_trace(fresh: &FreshProcess, scenario: &Scenario, seed: u64) -> Result<(u64, Vec<String>), String> {
    let output = std::process::Command::new(&fresh.program)
        .arg("trace")
        .arg(&scenario.path)
        .arg("--seed")
        .arg(seed.to_string())
        .output()
        .map_err(|e| format!("cannot start `{}`: {e}", fresh.program.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the fresh process failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut lines = stdout.lines();
    let fingerprint = lines
        .next()
        .and_then(|l| l.strip_prefix("fingerprint "))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| "the fresh process printed no fingerprint".to_string())?;
    Ok((fingerprint, lines.map(str::to_string).collect()))
}

/// The first line where two traces differ, described.
fn first_trace_difference(first: &[String], second: &[String], labels: (&str, &str)) -> Option<String> {
    for (index, (a, b)) in first.iter().zip(second).enumerate() {
        if a != b {
            return Some(format!("trace line {} differs:\n  {}: {a}\n  {}: {b}", index + 1, labels.0, labels.1));
        }
    }
    (first.len() != second.len())
        .then(|| format!("traces have {} ({}) and {} ({}) lines", first.len(), labels.0, second.len(), labels.1))
}

/// Checks that `seed` runs the same three ways: untraced as a suite runs it, traced in the
/// same process right after, and traced in a fresh process (what `replay` does). The
/// process may have run any other scenarios before. Returns the trace's length, or where
/// the runs part.
pub fn check_determinism(scenario: &Scenario, seed: u64, fresh: &FreshProcess) -> Result<usize, String> {
    let in_suite = runner::simulate_seed(scenario, seed, RunOptions { faults: true, trace: false }).unchecked();
    let traced = runner::simulate_seed(scenario, seed, RunOptions { faults: true, trace: true }).unchecked();
    let (fresh_fingerprint, fresh_trace) = fresh_trace(fresh, scenario, seed)?;
    if let Some(difference) = first_trace_difference(&traced.trace, &fresh_trace, ("this process", "fresh process")) {
        return Err(format!("seed {seed}: {difference}"));
    }
    if traced.fingerprint != fresh_fingerprint {
        return Err(format!(
            "seed {seed}: the traces agree but the runs end differently ({:016x} here, {fresh_fingerprint:016x} in a fresh process)",
            traced.fingerprint
        ));
    }
    if in_suite.fingerprint != traced.fingerprint {
        return Err(format!(
            "seed {seed}: the untraced run ended differently from the traced ones ({:016x}, traced {:016x}): recording the trace, or an earlier run in this process, changed the schedule",
            in_suite.fingerprint, traced.fingerprint
        ));
    }
    Ok(traced.trace.len())
}

/// How one scenario fared in the determinism check.
#[derive(Clone, Debug)]
pub struct DeterminismSummary {
    pub name: String,
    pub path: String,
    pub seeds: u64,
    /// `(seed, where the runs part)`, ascending by seed.
    pub divergences: Vec<(u64, String)>,
}

/// The determinism check over every seed of every scenario, on `jobs` threads. Each thread
/// takes (scenario, seed) pairs in order, so most seeds run after other scenarios did in
/// the same thread, as they would in a suite.
pub fn check_determinism_all(
    scenarios: &[Scenario],
    seeds: Range<u64>,
    jobs: usize,
    fresh: &FreshProcess,
    on_seed: &(dyn Fn() + Sync),
) -> Vec<DeterminismSummary> {
    let pairs: Vec<(usize, u64)> =
        (0..scenarios.len()).flat_map(|s| seeds.clone().map(move |seed| (s, seed))).collect();
    let next = AtomicU64::new(0);
    let found: Mutex<Vec<(usize, u64, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::SeqCst) as usize;
                    let Some(&(index, seed)) = pairs.get(at) else { return };
                    if let Err(divergence) = check_determinism(&scenarios[index], seed, fresh) {
                        found.lock().expect("divergences lock").push((index, seed, divergence));
                    }
                    on_seed();
                }
            });
        }
    });
    let mut found = found.into_inner().expect("divergences lock");
    found.sort_by_key(|(index, seed, _)| (*index, *seed));
    scenarios
        .iter()
        .enumerate()
        .map(|(index, scenario)| DeterminismSummary {
            name: scenario.name().to_string(),
            path: scenario.path.display().to_string(),
            seeds: seeds.end - seeds.start,
            divergences: found
                .iter()
                .filter(|(i, _, _)| *i == index)
                .map(|(_, seed, divergence)| (*seed, divergence.clone()))
                .collect(),
        })
        .collect()
}
