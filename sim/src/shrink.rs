//! `weir-sim shrink`: from a failing seed to a minimal scenario that fails the same way. The seed's faults are
//! first made explicit (a swarm's drawn profile becomes an ordinary scenario file), then removed by delta
//! debugging, then the restarts and savepoint steps, then the workload is made smaller (each numeric parameter
//! halved while it still fails, lower parallelism, fewer task managers). Every step is one deterministic run of
//! the same seed: a candidate is kept only if it still breaks the invariant the original run broke first (or,
//! for a run that failed without a violation, still fails). Each fault draws its random decisions from its own
//! seeded stream ([`crate::injector::Stream`]), so removing one fault does not redraw the others.
//!
//! A canary shrinks the same way, keeping the violation it must cause: the smallest scenario its broken part is
//! still caught in.
//!
//! The result is an ordinary scenario file, replayed with `weir-sim replay <file> --seed N` and fit to be kept
//! as a regression test.

use crate::invariants::Invariant;
use crate::runner::{self, RunOptions, RunReport};
use crate::scenario::{self, Scenario, ScenarioFile};
use crate::suite::{self, FaultFree};
use std::path::Path;
use std::time::{Duration, Instant};

/// What a failing run broke, which a shrunk candidate must break too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Its first violated invariant.
    Violated(Invariant),
    /// The run itself failed (the job failed for good, a harness error), with no violation.
    Error,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Violated(invariant) => write!(f, "`{invariant}`"),
            Failure::Error => f.write_str("the run's own failure"),
        }
    }
}

/// The outcome of a shrink.
pub struct Shrunk {
    /// The minimal scenario file's text.
    pub text: String,
    pub failure: Failure,
    /// What was removed or reduced, one line each (`37 faults -> 2`).
    pub changes: Vec<String>,
    /// Deterministic runs made.
    pub runs: u32,
    pub took: Duration,
}

/// Shrinking's errors.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error("seed {seed} of `{path}` passes: there is no failure to shrink")]
    Passes { path: String, seed: u64 },
    #[error("seed {seed} of canary `{path}` does not cause the violation it must: there is no catch to shrink")]
    Canary { path: String, seed: u64 },
    #[error("the profile of seed {seed} is not a valid scenario: {error}")]
    Profile { seed: u64, error: String },
}

struct Shrinker<'a> {
    original: &'a Scenario,
    seed: u64,
    failure: Failure,
    runs: u32,
}

impl Shrinker<'_> {
    /// Whether `file` still fails seed `seed` as the original did. A file the workload or the checks refuse does
    /// not.
    fn still_fails(&mut self, file: &ScenarioFile) -> bool {
        let text = crate::swarm::to_text(file);
        let Ok(parsed) = scenario::parse_file(&text, &self.original.path) else { return false };
        let workload = match self.original.workload.with_params(&parsed.job.params) {
            Ok(workload) => workload,
            Err(_) => return false,
        };
        let Ok(candidate) = scenario::validate(parsed, &text, &self.original.path, workload) else { return false };
        self.runs += 2;
        let fault_free = FaultFree::new(&candidate).for_seed(self.seed);
        let report = runner::run(&candidate, self.seed, RunOptions { faults: true, trace: false }, {
            fault_free.as_ref().as_ref().ok().map(|lines| &**lines)
        });
        failure_of(&report).is_some_and(|_| self.breaks(&report))
    }

    fn breaks(&self, report: &RunReport) -> bool {
        match &self.failure {
            Failure::Violated(invariant) => report.violations.iter().any(|v| v.invariant == *invariant),
            Failure::Error => report.error.is_some(),
        }
    }

    /// Delta debugging (Zeller's ddmin) over the items `items` of `file`: the smallest subset found with which it
    /// still fails.
    fn minimize<T: Clone>(
        &mut self,
        file: &ScenarioFile,
        items: Vec<T>,
        with: impl Fn(&ScenarioFile, Vec<T>) -> ScenarioFile,
    ) -> Vec<T> {
        let mut items = items;
        let mut parts = 2usize;
        while !items.is_empty() {
            let chunk = items.len().div_ceil(parts);
            let mut reduced = false;
            for start in (0..items.len()).step_by(chunk.max(1)) {
                let end = (start + chunk).min(items.len());
                // The complement of one part: everything but items[start..end].
                let complement: Vec<T> = items[..start].iter().chain(&items[end..]).cloned().collect();
                if complement.len() < items.len() && self.still_fails(&with(file, complement.clone())) {
                    items = complement;
                    parts = (parts - 1).max(2);
                    reduced = true;
                    break;
                }
            }
            if !reduced {
                if parts >= items.len() {
                    break;
                }
                parts = (parts * 2).min(items.len());
            }
        }
        items
    }
}

/// What a failing report broke first, if it failed.
fn failure_of(report: &RunReport) -> Option<Failure> {
    match (report.violations.first(), &report.error) {
        (Some(violation), _) => Some(Failure::Violated(violation.invariant)),
        (None, Some(_)) => Some(Failure::Error),
        (None, None) => None,
    }
}

/// Shrinks seed `seed` of `scenario` to a minimal scenario that fails the same way.
pub fn shrink(scenario: &Scenario, seed: u64) -> Result<Shrunk, ShrinkError> {
    let started = Instant::now();
    let path = scenario.path.display().to_string();
    let fault_free = FaultFree::new(scenario).for_seed(seed);
    let report = runner::run(scenario, seed, RunOptions { faults: true, trace: true }, {
        fault_free.as_ref().as_ref().ok().map(|lines| &**lines)
    });
    // A canary's failure is the violation it must cause: shrinking keeps it caught.
    let failure = match scenario.file.checks.expect_violation {
        Some(expected) if report.violations.iter().any(|v| v.invariant == expected) => Failure::Violated(expected),
        Some(_) => return Err(ShrinkError::Canary { path, seed }),
        None if suite::seed_passed(scenario, &report) => return Err(ShrinkError::Passes { path, seed }),
        None => failure_of(&report).ok_or_else(|| ShrinkError::Passes { path: path.clone(), seed })?,
    };
    // The seed's own schedule, explicit: a swarm's drawn profile, or the scenario as it is.
    let explicit = crate::swarm::effective(scenario, seed)
        .map_err(|error| ShrinkError::Profile { seed, error: error.to_string() })?;
    let mut file = explicit.file.clone();
    file.swarm = None;
    let mut shrinker = Shrinker { original: &explicit, seed, failure: failure.clone(), runs: 1 };
    let mut changes = Vec::new();

    // Faults that never fired first, all at once: they cannot matter, unless their mere presence did.
    let fired: Vec<String> = report
        .events
        .iter()
        .filter(|e| e.message == "fault: firing")
        .filter_map(|e| e.field("fault").map(str::to_string))
        .collect();
    let faults_before = file.faults.len();
    let firing: Vec<_> =
        file.faults.iter().filter(|f| fired.contains(&crate::injector::describe(f))).cloned().collect();
    if firing.len() < file.faults.len() {
        let candidate = ScenarioFile { faults: firing.clone(), ..file.clone() };
        if shrinker.still_fails(&candidate) {
            file = candidate;
        }
    }
    let faults = shrinker.minimize(&file, file.faults.clone(), |f, faults| ScenarioFile { faults, ..f.clone() });
    file.faults = faults;
    changes.push(format!("{faults_before} faults -> {}", file.faults.len()));

    let restarts_before = file.restarts.len();
    let restarts =
        shrinker.minimize(&file, file.restarts.clone(), |f, restarts| ScenarioFile { restarts, ..f.clone() });
    file.restarts = restarts;
    if restarts_before > 0 {
        changes.push(format!("{restarts_before} restarts -> {}", file.restarts.len()));
    }
    let savepoints_before = file.savepoints.len();
    let savepoints =
        shrinker.minimize(&file, file.savepoints.clone(), |f, savepoints| ScenarioFile { savepoints, ..f.clone() });
    file.savepoints = savepoints;
    if savepoints_before > 0 {
        changes.push(format!("{savepoints_before} savepoint steps -> {}", file.savepoints.len()));
    }

    // The workload, smaller: each numeric parameter halved while the seed still fails.
    let names: Vec<String> = file.job.params.keys().cloned().collect();
    for name in names {
        let Some(before) = file.job.params.get(&name).and_then(toml::Value::as_integer) else { continue };
        let mut value = before;
        while value > 1 {
            let mut candidate = file.clone();
            candidate.job.params.insert(name.clone(), toml::Value::Integer(value / 2));
            if !shrinker.still_fails(&candidate) {
                break;
            }
            file = candidate;
            value /= 2;
        }
        if value != before {
            changes.push(format!("{name} {before} -> {value}"));
        }
    }
    for (what, get, set) in [
        ("parallelism", (|f: &ScenarioFile| f.job.parallelism) as fn(&ScenarioFile) -> u32, {
            (|f: &mut ScenarioFile, v: u32| f.job.parallelism = v) as fn(&mut ScenarioFile, u32)
        }),
        (
            "task managers",
            |f: &ScenarioFile| f.job.task_managers,
            |f: &mut ScenarioFile, v: u32| f.job.task_managers = v,
        ),
    ] {
        let before = get(&file);
        while get(&file) > 1 {
            let mut candidate = file.clone();
            set(&mut candidate, get(&file) - 1);
            if !shrinker.still_fails(&candidate) {
                break;
            }
            file = candidate;
        }
        if get(&file) != before {
            changes.push(format!("{what} {before} -> {}", get(&file)));
        }
    }
    file.name = format!("{}-seed-{seed}-shrunk", scenario.name());
    file.about = format!(
        "{} Shrunk from seed {seed} of `{}`: fails {failure} on seed {seed}.",
        scenario.file.about.trim_end_matches('.').to_string() + ".",
        scenario.path.display()
    );
    let text = format!(
        "# Shrunk by `weir-sim shrink {} --seed {seed}`; replay with `weir-sim replay <this file> --seed {seed}`.\n{}",
        scenario.path.display(),
        crate::swarm::to_text(&file)
    );
    Ok(Shrunk { text, failure, changes, runs: shrinker.runs, took: started.elapsed() })
}

/// Where `shrink` writes its result by default: `<scenario name>-seed-<n>-shrunk.toml` in the working directory.
pub fn default_output(scenario: &Scenario, seed: u64) -> std::path::PathBuf {
    Path::new(&format!("{}-seed-{seed}-shrunk.toml", scenario.name())).to_path_buf()
}
