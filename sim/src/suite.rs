//! Running scenarios over many seeds: in parallel over the cores, each scenario compared
//! with its own fault-free run, with canary scenarios inverted (they pass when the checkers
//! catch their deliberate bug). Also the determinism self-check.

use crate::invariants::Invariant;
use crate::runner::{self, RunOptions, RunReport};
use crate::scenario::Scenario;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
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

/// The copyable command that replays one seed of one scenario.
pub fn replay_command(path: &Path, seed: u64) -> String {
    format!("cargo x sim replay {} --seed {seed}", path.display())
}

/// The fault-free run's committed output, sorted: what every seed must commit. It is seed 0
/// with the scenario's faults, restarts and savepoint steps off; its own checkers are not
/// run, since only its output is used.
pub fn fault_free_output(scenario: &Scenario) -> Result<Vec<String>, String> {
    let report = runner::simulate_seed(scenario, 0, RunOptions { faults: false, trace: false }).unchecked();
    if let Some(error) = report.error {
        return Err(format!("the fault-free run failed: {error}"));
    }
    // Normally it committed the reference output, whose lines are sorted already.
    let reference = runner::expected_output(scenario);
    if reference.matches(&report.output) {
        return Ok(reference.lines().to_vec());
    }
    let mut lines: Vec<&str> = report.output.lines().collect();
    lines.sort_unstable();
    Ok(lines.into_iter().map(str::to_string).collect())
}

/// Whether a seed's report passes: no violation, or, for a canary, the expected one.
pub fn seed_passed(scenario: &Scenario, report: &RunReport) -> bool {
    match scenario.file.checks.expect_violation {
        Some(expected) => report.violations.iter().any(|v| v.invariant == expected),
        None => report.passed(),
    }
}

/// Runs `seeds` of `scenario` on `jobs` threads; `on_seed` is called after each seed.
///
/// The fault-free run is the first thing a worker takes; the other workers simulate seeds
/// meanwhile and wait for it only to check them.
pub fn run_seeds(
    scenario: &Scenario,
    seeds: Range<u64>,
    jobs: usize,
    on_seed: &(dyn Fn(&RunReport) + Sync),
) -> ScenarioSummary {
    let started = Instant::now();
    let fault_free_taken = AtomicBool::new(false);
    let fault_free: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
    let next = AtomicU64::new(seeds.start);
    let reports: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                if !fault_free_taken.swap(true, Ordering::SeqCst) {
                    // Set it even if the run panics, so that no worker waits for it forever;
                    // the panic still fails the whole run when the threads are joined.
                    match std::panic::catch_unwind(|| fault_free_output(scenario)) {
                        Ok(outcome) => {
                            let _ = fault_free.set(outcome);
                        }
                        Err(panic) => {
                            let _ = fault_free.set(Err("the fault-free run panicked".into()));
                            std::panic::resume_unwind(panic);
                        }
                    }
                }
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= seeds.end {
                        return;
                    }
                    let finished = runner::simulate_seed(scenario, seed, RunOptions { faults: true, trace: false });
                    let mut report = match fault_free.wait() {
                        Ok(lines) => finished.check(Some(lines)),
                        Err(error) => {
                            let mut report = finished.check(None);
                            report.error = Some(error.clone());
                            report
                        }
                    };
                    report.output = String::new();
                    on_seed(&report);
                    reports.lock().expect("reports lock").push(report);
                }
            });
        }
    });
    let mut reports = reports.into_inner().expect("reports lock");
    reports.sort_by_key(|r| r.seed);
    let sim_time_ms = reports.iter().map(|r| r.sim_time_ms).sum();
    let (passed, failed): (Vec<RunReport>, Vec<RunReport>) =
        reports.into_iter().partition(|r| seed_passed(scenario, r));
    ScenarioSummary {
        name: scenario.name().to_string(),
        path: scenario.path.display().to_string(),
        seeds: seeds.end - seeds.start,
        passed: passed.len() as u64,
        failures: failed,
        wall_time: started.elapsed(),
        sim_time_ms,
        canary: scenario.file.checks.expect_violation,
    }
}

/// Runs `seed` twice with its trace; the first line where the traces differ, if any.
pub fn check_determinism(scenario: &Scenario, seed: u64, fault_free: Option<&[String]>) -> Result<usize, String> {
    let options = RunOptions { faults: true, trace: true };
    let first = runner::run(scenario, seed, options, fault_free);
    let second = runner::run(scenario, seed, options, fault_free);
    for (index, (a, b)) in first.trace.iter().zip(&second.trace).enumerate() {
        if a != b {
            return Err(format!("seed {seed}: trace line {} differs:\n  first:  {a}\n  second: {b}", index + 1));
        }
    }
    if first.trace.len() != second.trace.len() {
        return Err(format!("seed {seed}: traces have {} and {} lines", first.trace.len(), second.trace.len()));
    }
    if first.output != second.output {
        return Err(format!("seed {seed}: the traces agree but the committed outputs differ"));
    }
    Ok(first.trace.len())
}
