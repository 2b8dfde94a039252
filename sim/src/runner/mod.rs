//! Runs one scenario for one seed: the faults phase, the healing phase, whole-job restarts from externalized
//! snapshots, then the checkers. Every run is a function of (scenario, seed, build).
//!
//! - `world.rs`: the run's storage, injector, recorder and cluster;
//! - `restarts.rs`: the scenario's steps against the running job: savepoints and whole-job restarts;
//! - `evidence.rs`: what the run left behind, for the checkers;
//! - `trace.rs`: the trace, one line per protocol event.

mod evidence;
mod restarts;
mod trace;
mod world;

pub use crate::layout::{
    CHECKPOINT_DIR, INPUT_DIR, LOCAL_DIR, OUTPUT_DIR, RELOCATED_DIR, SAVEPOINT_DIR, SHARED_VOLUMES, volume_paths,
};
pub use trace::{Trace, TraceEvent};

use crate::checkers::{self, Evidence, ExpectedOutput};
use crate::divergence::{self, FirstDivergence};
use crate::invariants::Violation;
use crate::scenario::Scenario;
use engine::config::JobConfig;
use engine::ids::CheckpointId;
use engine::seam::runtime;
use evidence::Simulated;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to run.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Inject the scenario's faults and restarts (off for the fault-free reference run).
    pub faults: bool,
    /// Record the trace: one line per event.
    pub trace: bool,
}

/// What one seed of one scenario did.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    /// Settings drawn from the seed.
    pub chosen: Vec<(String, String)>,
    pub violations: Vec<Violation>,
    /// A failure of the run itself (the job failed for good, a harness error).
    pub error: Option<String>,
    pub sim_time_ms: u64,
    /// A digest of what the run did, exact to the simulated nanosecond it ended at: equal for two runs of a seed
    /// exactly when they took the same course (the trace, if recorded, says where they part). Computed whether
    /// or not the trace is recorded.
    pub fingerprint: u64,
    pub wall_time: Duration,
    /// The committed output.
    pub output: String,
    pub completed: Vec<CheckpointId>,
    /// Whole-job restarts that resumed from a snapshot (the scenario's `[[restart]]` steps).
    pub restores: u32,
    /// Deployments of the last job (1 when it never failed over); 0 if it did not finish.
    pub attempts: u32,
    /// For a swarm scenario, the profile the seed drew, as a scenario file's text (what `--save-scenario` writes).
    pub profile: Option<String>,
    /// What every job's checkpoint directory held at the end.
    pub checkpoint_dirs: Vec<crate::checks::CheckpointDirReport>,
    /// The scenario's faults (by index) that could fire once and never did in this run.
    pub unfired: Vec<usize>,
    /// The trace's lines (empty unless recorded).
    pub trace: Vec<String>,
    /// The trace's events (empty unless recorded).
    pub events: Vec<TraceEvent>,
    /// For a failing run that was traced: where its committed output first departs from the fault-free run's
    /// ([`crate::divergence`]). `None` for a passing run, or one not traced.
    pub first_divergence: Option<FirstDivergence>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.error.is_none()
    }
}

/// Settings drawn from the seed (unless the scenario fixes them): the batch size and channel capacity decide where
/// backpressure and interleavings happen.
fn choose(seed: u64, scenario: &Scenario, config: &mut JobConfig) -> Vec<(String, String)> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // splitmix64: a seed-only generator, independent of the simulation's.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut chosen = Vec::new();
    if !scenario.file.config.contains_key("weir.channel.batch-size-records") {
        config.batch_size_records = [1, 4, 16, 64][(next() % 4) as usize];
    }
    if !scenario.file.config.contains_key("weir.channel.capacity-batches") {
        config.channel_capacity_batches = [1, 2, 4][(next() % 3) as usize];
    }
    chosen.push(("weir.channel.batch-size-records".into(), config.batch_size_records.to_string()));
    chosen.push(("weir.channel.capacity-batches".into(), config.channel_capacity_batches.to_string()));
    chosen
}

/// Reference outputs computed so far in this process, by what they depend on (the workload and its parameters):
/// every seed of a scenario, and every scenario of the same workload and parameters, shares one. Kept small:
/// past [`REFERENCES_KEPT`] entries it starts over. Shared between simulations, it cannot influence one: it is a
/// pure function of its key, read by the checkers after the run.
static REFERENCES: Mutex<Vec<(String, Arc<ExpectedOutput>)>> = Mutex::new(Vec::new());
const REFERENCES_KEPT: usize = 16;

/// The scenario's workload's reference, prepared for the checkers, computed once per workload and parameters.
pub fn expected_output(scenario: &Scenario) -> Arc<ExpectedOutput> {
    let key = scenario.workload.reference_key();
    // A panic while computing leaves the cache as it was, so a poisoned lock is still usable.
    let mut references = REFERENCES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, expected)) = references.iter().find(|(known, _)| *known == key) {
        return expected.clone();
    }
    let expected = Arc::new(ExpectedOutput::new(scenario.workload.reference()));
    if references.len() >= REFERENCES_KEPT {
        references.clear();
    }
    references.push((key, expected.clone()));
    expected
}

/// Runs `scenario` for `seed`, then the checkers. `fault_free` is the sorted committed output of a fault-free
/// run, when the exactly-once check should compare with one.
pub fn run(scenario: &Scenario, seed: u64, options: RunOptions, fault_free: Option<&[String]>) -> RunReport {
    simulate_seed(scenario, seed, options).check(fault_free)
}

/// A simulated seed whose evidence the checkers have not looked at yet.
pub struct Finished {
    /// What ran: the scenario, or the profile its swarm drew for the seed.
    scenario: Scenario,
    config: JobConfig,
    simulated: Simulated,
    /// Whether the trace was recorded.
    traced: bool,
    /// Everything but the violations, the output and the checkpoints completed, which stay in `simulated` until
    /// the checkers have seen them.
    report: RunReport,
}

impl Finished {
    /// Runs the scenario's checkers; see [`run`] for `fault_free`.
    pub fn check(self, fault_free: Option<&[String]>) -> RunReport {
        let reference = expected_output(&self.scenario);
        let simulated = &self.simulated;
        let evidence = Evidence {
            seed: self.report.seed,
            time_ms: simulated.sim_time_ms,
            output: &simulated.output,
            reference: &reference,
            workload: self.scenario.workload.as_ref(),
            fault_free,
            completions: &simulated.completions,
            lineage: &simulated.lineage,
            checkpoint_dirs: &simulated.checkpoint_dirs,
            abandoned: &simulated.abandoned,
            num_retained: self.config.checkpoint.num_retained,
            finished_at_ms: simulated.finished_at_ms,
            healing_bound_ms: self.scenario.file.healing.finish_within.as_millis() as u64,
            savepoints: &simulated.savepoints,
            protocol: &simulated.protocol,
            savepoints_required: self.scenario.file.savepoints.iter().any(|step| !step.optional),
        };
        // The protocol monitors' rules hold in every scenario, listed or not.
        let mut invariants = self.scenario.file.checks.invariants.clone();
        for protocol in crate::monitor::PROTOCOL {
            if !invariants.contains(&protocol) {
                invariants.push(protocol);
            }
        }
        let violations = checkers::check(&invariants, &evidence);
        let failed = !violations.is_empty() || self.report.error.is_some();
        let first_divergence = (failed && self.traced).then(|| self.first_divergence(fault_free));
        RunReport { violations, first_divergence, ..self.unchecked() }
    }

    /// Where the committed output first departs from `fault_free`, from the trace and the committed parts.
    fn first_divergence(&self, fault_free: Option<&[String]>) -> FirstDivergence {
        match (&self.simulated.parts, fault_free) {
            (Err(reason), _) => FirstDivergence::Unknown { reason: reason.clone() },
            (Ok(_), None) => FirstDivergence::Unknown { reason: "there is no fault-free run to compare with".into() },
            (Ok(parts), Some(fault_free)) => divergence::first_divergence(&self.report.events, parts, fault_free),
        }
    }

    /// The report without running the checkers.
    pub fn unchecked(self) -> RunReport {
        let completed = self.simulated.completions.iter().map(|c| c.id).collect();
        RunReport { output: self.simulated.output, completed, ..self.report }
    }
}

/// Runs `scenario` for `seed`, leaving the checkers for [`Finished::check`].
pub fn simulate_seed(scenario: &Scenario, seed: u64, options: RunOptions) -> Finished {
    let started = Instant::now();
    // A swarm scenario runs the profile the seed draws (the fault-free run, the scenario without faults).
    let (scenario, profile) = match (&scenario.file.swarm, options.faults) {
        (Some(_), true) => {
            let drawn = crate::swarm::effective(scenario, seed).unwrap_or_else(|error| {
                panic!("the swarm of `{}` drew an invalid profile for seed {seed}: {error}", scenario.path.display())
            });
            let text = crate::swarm::to_text(&drawn.file);
            (drawn, Some(text))
        }
        _ => (scenario.clone(), None),
    };
    let mut config = scenario.config.clone();
    let mut chosen = choose(seed, &scenario, &mut config);
    if profile.is_some() {
        for fault in &scenario.file.faults {
            chosen.push(("drawn fault".into(), crate::injector::describe(fault)));
        }
        for restart in &scenario.file.restarts {
            chosen.push(("drawn restart".into(), crate::injector::describe_restart(restart)));
        }
    }
    if config.checkpoint.interval_ms.is_some() && config.checkpoint.dir.is_none() {
        config.checkpoint.dir = Some(CHECKPOINT_DIR.to_string());
    }
    let trace = Trace::default();
    let simulated = {
        let scenario = scenario.clone();
        let config = config.clone();
        let simulation = move || runtime::run(seed, simulate(scenario, seed, config, options));
        if options.trace {
            tracing::subscriber::with_default(trace.subscriber(), simulation)
        } else {
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), simulation)
        }
    };
    let events = trace.events();
    let report = RunReport {
        scenario: scenario.name().to_string(),
        seed,
        chosen,
        violations: Vec::new(),
        error: simulated.error.clone(),
        sim_time_ms: simulated.sim_time_ms,
        fingerprint: simulated.fingerprint(),
        wall_time: started.elapsed(),
        output: String::new(),
        completed: Vec::new(),
        restores: simulated.restores,
        attempts: simulated.attempts,
        profile,
        checkpoint_dirs: simulated.checkpoint_dirs.clone(),
        unfired: simulated.unfired.clone(),
        trace: events.iter().map(TraceEvent::line).collect(),
        events,
        first_divergence: None,
    };
    Finished { scenario, config, simulated, traced: options.trace, report }
}

/// The simulation: the world, the faults timeline, the job and its restarts, then the evidence.
async fn simulate(scenario: Scenario, seed: u64, config: JobConfig, options: RunOptions) -> Simulated {
    let world = world::World::new(&scenario, seed, options.faults);
    if options.faults {
        world.schedule_faults(&scenario);
    }
    let steps = restarts::run_job(&scenario, &world, config, options.faults).await;
    let simulated = evidence::collect(&world, steps, options.trace).await;
    world.tear_down().await;
    simulated
}
