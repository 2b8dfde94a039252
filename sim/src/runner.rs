//! Runs one scenario for one seed: the faults phase, the healing phase, whole-job restarts
//! from externalized checkpoints, then the checkers. Every run is a function of (scenario,
//! seed, build).

use crate::checkers::{self, Abandoned, Evidence, ExpectedOutput};
use crate::checks;
use crate::harness::{CHECKPOINT_DIR, OUTPUT_DIR};

/// Where savepoints go in simulated runs (`state.savepoints.dir`).
pub const SAVEPOINT_DIR: &str = "/savepoints";
/// Where relocated checkpoints and savepoints are moved to.
pub const RELOCATED_DIR: &str = "/relocated";
use crate::injector::{self, Injector, Nodes};
use crate::invariants::Violation;
use crate::scenario::{RestartHow, Scenario, job_parameters};
use crate::storage::SimStorage;
use engine::cluster::messages::RestoreRequest;
use engine::cluster::{Cluster, JobHandle};
use engine::config::{JobConfig, StateBackendKind};
use engine::faults::{CheckpointPhase, Fate, FaultHook, FaultPoint};
use engine::ids::{CheckpointId, JobId};
use engine::jobs;
use engine::local;
use engine::seam::runtime;
use engine::seam::storage::StorageRef;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
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
    /// A digest of what the run did, exact to the simulated nanosecond it ended at: equal
    /// for two runs of a seed exactly when they took the same course (the trace, if
    /// recorded, says where they part). Computed whether or not the trace is recorded.
    pub fingerprint: u64,
    pub wall_time: Duration,
    /// The committed output.
    pub output: String,
    pub completed: Vec<CheckpointId>,
    pub restores: u32,
    pub trace: Vec<String>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.error.is_none()
    }
}

/// Settings drawn from the seed (unless the scenario fixes them): the batch size and
/// channel capacity decide where backpressure and interleavings happen.
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

/// Records completions, in order, across every job manager and job of the run, and the directories being
/// discarded, then hands every fault point to the injector.
struct Recorder {
    injector: Arc<Injector>,
    completions: Mutex<Vec<(JobId, CheckpointId)>>,
    /// Snapshots whose directories are being deleted, by job.
    discarding: Mutex<BTreeSet<(JobId, CheckpointId)>>,
}

impl Recorder {
    /// What a crash abandons of `job` now.
    fn abandoned(&self, job: JobId) -> Abandoned {
        let completions = self.completions.lock().expect("recorder lock");
        let completed = completions.iter().filter(|(j, _)| *j == job).map(|(_, id)| *id).max();
        let discarding = self.discarding.lock().expect("recorder lock");
        Abandoned { completed, discarding: discarding.iter().filter(|(j, _)| *j == job).map(|(_, id)| *id).collect() }
    }
}

impl FaultHook for Recorder {
    fn at(&self, point: FaultPoint<'_>) -> Fate {
        match point {
            FaultPoint::Snapshot { job, id, phase: CheckpointPhase::Completed, .. } => {
                self.completions.lock().expect("recorder lock").push((job, id))
            }
            FaultPoint::Discard { job, id, done, .. } => {
                let mut discarding = self.discarding.lock().expect("recorder lock");
                if done {
                    discarding.remove(&(job, id));
                } else {
                    discarding.insert((job, id));
                }
            }
            // Nothing else is recorded; every point goes on to the injector below.
            FaultPoint::Snapshot { .. }
            | FaultPoint::Rpc { .. }
            | FaultPoint::Barrier { .. }
            | FaultPoint::SnapshotAsync { .. }
            | FaultPoint::Recovery { .. }
            | FaultPoint::Deploy { .. } => {}
        }
        self.injector.at(point)
    }
}

/// A deterministic text for `wordcount` scenarios: `lines` lines drawn from a fixed
/// vocabulary with case and punctuation, seeded by the line count only, so that every seed
/// of a scenario reads the same input.
pub fn generated_text(lines: u32) -> String {
    const WORDS: &[&str] =
        &["The", "quick", "brown", "fox", "jumps", "over", "LAZY", "dog's", "naïve", "co-op", "x2y", "end."];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(lines);
    let mut text = String::new();
    for _ in 0..lines {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let words = (state % 9) as usize;
        let line: Vec<&str> = (0..words).map(|i| WORDS[((state >> (i * 5)) % WORDS.len() as u64) as usize]).collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    text
}

/// The job's expected committed output (sorted lines), from its parameters alone.
pub fn reference_output(scenario: &Scenario) -> Vec<String> {
    let params = job_parameters(&scenario.file.job);
    let number = |name: &str, default: u64| params.get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let mut lines = Vec::new();
    match scenario.file.job.name.as_str() {
        "sequence" => {
            let (partitions, records, keys) = (number("partitions", 4), number("records", 10_000), number("keys", 64));
            lines = jobs::sequence::reference_lines(partitions as u32, records, keys);
        }
        "wordcount" => {
            let text = generated_text(scenario.file.job.input_lines.unwrap_or(1000));
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut word = String::new();
            for &byte in text.as_bytes().iter().chain(std::iter::once(&b' ')) {
                if byte.is_ascii_alphabetic() {
                    word.push(byte.to_ascii_lowercase() as char);
                } else if !word.is_empty() {
                    *counts.entry(std::mem::take(&mut word)).or_default() += 1;
                }
            }
            lines.extend(counts.into_iter().map(|(w, c)| format!("{w} {c}")));
        }
        other => panic!("no reference model for job `{other}`"),
    }
    lines.sort();
    lines
}

/// What a job's reference output depends on: the job, its parameters and its input.
type ReferenceKey = (String, BTreeMap<String, String>, Option<u32>);

/// Reference outputs computed so far in this process, by what they depend on: every seed of
/// a scenario, and every scenario of the same job and parameters, shares one. Kept small:
/// past [`REFERENCES_KEPT`] entries it starts over.
static REFERENCES: Mutex<Vec<(ReferenceKey, Arc<ExpectedOutput>)>> = Mutex::new(Vec::new());
const REFERENCES_KEPT: usize = 16;

/// [`reference_output`] prepared for the checkers, computed once per job and parameters.
pub fn expected_output(scenario: &Scenario) -> Arc<ExpectedOutput> {
    let job = &scenario.file.job;
    let key: ReferenceKey = (job.name.clone(), job_parameters(job), job.input_lines);
    // A panic while computing leaves the cache as it was, so a poisoned lock is still usable.
    let mut references = REFERENCES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, expected)) = references.iter().find(|(known, _)| *known == key) {
        return expected.clone();
    }
    let expected = Arc::new(ExpectedOutput::new(reference_output(scenario)));
    if references.len() >= REFERENCES_KEPT {
        references.clear();
    }
    references.push((key, expected.clone()));
    expected
}

/// A writer appending trace lines to a shared buffer.
#[derive(Clone, Default)]
struct TraceBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for TraceBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("trace lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `scenario` for `seed`, then the checkers. `fault_free` is the sorted committed output
/// of a fault-free run, when the exactly-once check should compare with one.
pub fn run(scenario: &Scenario, seed: u64, options: RunOptions, fault_free: Option<&[String]>) -> RunReport {
    simulate_seed(scenario, seed, options).check(fault_free)
}

/// A simulated seed whose evidence the checkers have not looked at yet.
pub struct Finished<'a> {
    scenario: &'a Scenario,
    config: JobConfig,
    simulated: Simulated,
    /// Everything but the violations, the output and the checkpoints completed, which stay
    /// in `simulated` until the checkers have seen them.
    report: RunReport,
}

impl Finished<'_> {
    /// Runs the scenario's checkers; see [`run`] for `fault_free`.
    pub fn check(self, fault_free: Option<&[String]>) -> RunReport {
        let reference = expected_output(self.scenario);
        let simulated = &self.simulated;
        let evidence = Evidence {
            seed: self.report.seed,
            time_ms: simulated.sim_time_ms,
            output: &simulated.output,
            reference: &reference,
            fault_free,
            completions: &simulated.completions,
            lineage: &simulated.lineage,
            checkpoint_dirs: &simulated.checkpoint_dirs,
            abandoned: &simulated.abandoned,
            num_retained: self.config.checkpoint.num_retained,
            finished_at_ms: simulated.finished_at_ms,
            healing_bound_ms: self.scenario.file.healing.finish_within.as_millis() as u64,
            savepoints: &simulated.savepoints,
        };
        let violations = checkers::check(&self.scenario.file.checks.invariants, &evidence);
        RunReport { violations, ..self.unchecked() }
    }

    /// The report without running the checkers.
    pub fn unchecked(self) -> RunReport {
        let completed = self.simulated.completions.iter().map(|(_, id)| *id).collect();
        RunReport { output: self.simulated.output, completed, ..self.report }
    }
}

/// Runs `scenario` for `seed`, leaving the checkers for [`Finished::check`].
pub fn simulate_seed(scenario: &Scenario, seed: u64, options: RunOptions) -> Finished<'_> {
    let started = Instant::now();
    let mut config = scenario.config.clone();
    let chosen = choose(seed, scenario, &mut config);
    if config.checkpoint.interval_ms.is_some() && config.checkpoint.dir.is_none() {
        config.checkpoint.dir = Some(CHECKPOINT_DIR.to_string());
    }
    let buffer = TraceBuffer::default();
    let simulated = {
        let scenario = scenario.clone();
        let config = config.clone();
        let writer = buffer.clone();
        let simulation = move || runtime::run(seed, simulate(scenario, config, options));
        if options.trace {
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("weir::trace=info,engine=warn,sim=warn"))
                .with_timer(engine::logging::RuntimeClock)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, simulation)
        } else {
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), simulation)
        }
    };
    let trace: Vec<String> =
        String::from_utf8_lossy(&buffer.0.lock().expect("trace lock")).lines().map(str::to_string).collect();
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
        trace,
    };
    Finished { scenario, config, simulated, report }
}

/// The job running now, for steps that act on it.
type RunningJob = (Arc<Cluster>, engine::ids::JobId);

/// What the simulation itself returns.
struct Simulated {
    /// Savepoints taken by `[[savepoint]]` steps, and their state at the end.
    savepoints: Vec<(String, Option<String>)>,
    output: String,
    completions: Vec<(JobId, CheckpointId)>,
    /// Every job of the run and the snapshot id it was restored from.
    lineage: BTreeMap<JobId, Option<CheckpointId>>,
    restores: u32,
    checkpoint_dirs: Vec<checks::CheckpointDirReport>,
    /// Jobs a crash abandoned, by job directory.
    abandoned: BTreeMap<PathBuf, Abandoned>,
    finished_at_ms: Option<u64>,
    sim_time_ms: u64,
    /// Simulated time at the end, in nanoseconds: every poll moves madsim's clock, so any
    /// difference in the schedule shows here.
    sim_time_ns: u128,
    error: Option<String>,
}

impl Simulated {
    /// 64-bit FNV-1a over the end time, the committed output, the completed checkpoints,
    /// the restores and the error.
    fn fingerprint(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &byte in bytes {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        feed(&self.sim_time_ns.to_le_bytes());
        feed(self.output.as_bytes());
        for (_, id) in &self.completions {
            feed(&id.0.to_le_bytes());
        }
        feed(&self.restores.to_le_bytes());
        feed(self.error.as_deref().unwrap_or("").as_bytes());
        hash
    }
}

async fn simulate(scenario: Scenario, config: JobConfig, options: RunOptions) -> Simulated {
    // Times are measured from this run's start: on tokio the runtime's clock is the
    // process's, shared by every run in it.
    let started = runtime::now();
    let elapsed = move || started.elapsed();
    let file = &scenario.file;
    let storage = SimStorage::new();
    if file.job.name == "wordcount" {
        storage.put_file(Path::new("/input/text.txt"), generated_text(file.job.input_lines.unwrap_or(1000)).as_bytes());
    }
    let faults = if options.faults { file.faults.clone() } else { Vec::new() };
    let (injector, actions) = Injector::new(faults, file.job.task_managers, storage.clone());
    let injector = Arc::new(injector);
    let recorder = Arc::new(Recorder {
        injector: injector.clone(),
        completions: Mutex::new(Vec::new()),
        discarding: Mutex::new(BTreeSet::new()),
    });
    let nodes: Arc<Mutex<Nodes>> = Arc::new(Mutex::new(BTreeMap::new()));
    runtime::spawn(injector::controller(actions, nodes.clone()));
    for (index, at) in injector.timed() {
        let injector = injector.clone();
        runtime::spawn(async move {
            runtime::sleep(at).await;
            injector.fire(index);
        });
    }
    let healer = injector.clone();
    let faults_until = file.healing.faults_until;
    runtime::spawn(async move {
        runtime::sleep(faults_until).await;
        healer.heal();
    });

    let storage_ref: StorageRef = Arc::new(storage.clone());
    // Slots for the highest parallelism any of the run's jobs uses.
    let most_parallel =
        file.restarts.iter().filter_map(|r| r.parallelism).chain([file.job.parallelism]).max().unwrap_or(1);
    let spec = local::cluster_spec(most_parallel, file.job.task_managers);
    let start_cluster = || {
        let cluster = Cluster::start_with_faults(&spec, storage_ref.clone(), recorder.clone());
        let mut map = nodes.lock().expect("nodes lock");
        map.insert("jm".to_string(), cluster.job_manager().clone());
        for node in cluster.task_managers() {
            map.insert(node.name().to_string(), node.clone());
        }
        drop(map);
        cluster
    };
    let mut parameters = job_parameters(&file.job);
    parameters.insert("output".into(), OUTPUT_DIR.into());
    if file.job.name == "wordcount" {
        parameters.insert("input".into(), "/input/text.txt".into());
    }
    let builtin = jobs::find(&file.job.name).expect("validated job name");
    let deadline = faults_until + file.healing.finish_within;
    let failure = |message: String| Simulated {
        savepoints: Vec::new(),
        output: String::new(),
        completions: Vec::new(),
        lineage: BTreeMap::new(),
        restores: 0,
        checkpoint_dirs: Vec::new(),
        abandoned: BTreeMap::new(),
        finished_at_ms: None,
        sim_time_ms: elapsed().as_millis() as u64,
        sim_time_ns: runtime::elapsed().as_nanos(),
        error: Some(message),
    };

    // Savepoint steps run beside the restarts; they ask whichever job runs at their time.
    let current: Arc<Mutex<Option<RunningJob>>> = Arc::new(Mutex::new(None));
    let taken: Arc<Mutex<Vec<PathBuf>>> = Arc::new(Mutex::new(Vec::new()));
    let steps = if options.faults { file.savepoints.clone() } else { Vec::new() };
    for step in steps {
        let (current, taken) = (current.clone(), taken.clone());
        runtime::spawn(async move {
            let now = started.elapsed();
            if step.at > now {
                runtime::sleep(step.at - now).await;
            }
            let target = current.lock().expect("current lock").clone();
            if let Some((cluster, job)) = target {
                match cluster.trigger_savepoint(job, Some(PathBuf::from(SAVEPOINT_DIR)), false).await {
                    Ok(path) => taken.lock().expect("taken lock").push(path),
                    Err(error) => tracing::info!(target: "weir::trace", %error, "savepoint step failed"),
                }
            }
        });
    }
    let mut cluster = Arc::new(start_cluster());
    let submit =
        async |cluster: &Cluster, config: &JobConfig, restore: Option<RestoreRequest>| -> Result<JobHandle, String> {
            let graph = builtin.build_graph(&parameters, config.clone()).map_err(|e| e.to_string())?;
            cluster.submit(graph, restore).await.map_err(|e| e.to_string())
        };
    let mut config = config;
    let mut handle = match submit(&cluster, &config, None).await {
        Ok(handle) => handle,
        Err(error) => return failure(error),
    };
    *current.lock().expect("current lock") = Some((cluster.clone(), handle.job));
    let mut lineage = BTreeMap::from([(handle.job, None)]);
    let mut restores = 0;
    let mut abandoned = BTreeMap::new();
    let restarts = if options.faults { file.restarts.clone() } else { Vec::new() };
    for restart in restarts {
        let now = elapsed();
        if restart.at > now {
            runtime::sleep(restart.at - now).await;
        }
        let job = handle.job;
        let mut savepoint = None;
        match restart.how {
            RestartHow::Cancel => {
                tracing::info!(target: "weir::trace", %job, "restart: canceling the job");
                if cluster.cancel(job).await.is_err() {
                    break; // The job already ended: nothing to restart.
                }
            }
            RestartHow::StopWithSavepoint => {
                tracing::info!(target: "weir::trace", %job, "restart: stopping the job with a savepoint");
                match cluster.trigger_savepoint(job, Some(PathBuf::from(SAVEPOINT_DIR)), true).await {
                    Ok(path) => {
                        let _ = handle.wait().await;
                        savepoint = Some(path);
                    }
                    // The savepoint failed (faults), its answer was lost with a job manager, or the job ended: cancel
                    // (if it still runs) and resume from the newest snapshot, as a user would.
                    Err(error) => {
                        tracing::info!(target: "weir::trace", %job, %error, "restart: the stop failed, canceling");
                        if cluster.cancel(job).await.is_err() {
                            tracing::info!(target: "weir::trace", %job, "restart: the job had ended already");
                        }
                        let _ = handle.wait().await;
                    }
                }
            }
            RestartHow::Crash => {
                tracing::info!(target: "weir::trace", %job, "restart: every node of the job crashes");
                let _ = cluster.job_manager().kill();
                for node in cluster.task_managers() {
                    let _ = node.kill();
                }
                // The new cluster does not know the job: no one completes or discards the snapshots it had in
                // flight or was deleting, as after a Flink job manager's crash without HA.
                abandoned.insert(Path::new(CHECKPOINT_DIR).join(job.to_string()), recorder.abandoned(job));
                cluster = Arc::new(start_cluster());
            }
        }
        // The stop's savepoint, else the newest snapshot under the checkpoint and savepoint directories, whichever
        // job of the run wrote it (a job restarted from a checkpoint may have none of its own yet).
        let mut latest = match savepoint {
            Some(path) => Some(path),
            None => {
                match checks::newest_snapshot(&storage_ref, Path::new(CHECKPOINT_DIR), Path::new(SAVEPOINT_DIR)).await {
                    Ok(newest) => newest.map(|(path, _)| path),
                    Err(error) => return failure(error.to_string()),
                }
            }
        };
        if restart.relocate
            && let Some(from) = latest.take()
        {
            let to = Path::new(RELOCATED_DIR).join(format!(
                "{restores}-{}",
                from.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            let moved = async {
                storage_ref.create_dir_all(Path::new(RELOCATED_DIR)).await?;
                storage_ref.rename(&from, &to).await?;
                storage_ref.sync_dir(Path::new(RELOCATED_DIR)).await?;
                storage_ref.sync_dir(from.parent().unwrap_or(Path::new("/"))).await
            };
            if let Err(error) = moved.await {
                return failure(format!("cannot relocate {}: {error}", from.display()));
            }
            tracing::info!(target: "weir::trace", from = %from.display(), to = %to.display(), "restart: relocated");
            latest = Some(to);
        }
        if let Some(parallelism) = restart.parallelism {
            config.parallelism = Some(parallelism);
        }
        match restart.backend.as_deref() {
            Some("jobmanager") => config.state_backend = StateBackendKind::JobManager,
            Some("filesystem") => config.state_backend = StateBackendKind::FileSystem,
            _ => {}
        }
        tracing::info!(target: "weir::trace", from = ?latest, "restart: new job from the latest externalized checkpoint");
        restores += 1;
        let restored_from = match &latest {
            Some(path) => match engine::checkpoint::restore::load(&storage_ref, path).await {
                Ok(loaded) => Some(loaded.metadata.checkpoint_id),
                Err(error) => return failure(format!("cannot read the snapshot to resume from: {error}")),
            },
            None => None,
        };
        let restore = latest.map(|path| RestoreRequest { path, allow_non_restored_state: false });
        handle = match submit(&cluster, &config, restore).await {
            Ok(handle) => handle,
            Err(error) => return failure(error),
        };
        lineage.insert(handle.job, restored_from);
        *current.lock().expect("current lock") = Some((cluster.clone(), handle.job));
    }
    let remaining = deadline.saturating_sub(elapsed());
    let (finished_at_ms, error) = tokio::select! {
        biased;
        outcome = handle.wait() => match outcome {
            Ok(_) => (Some(elapsed().as_millis() as u64), None),
            Err(error) => (None, Some(format!("the job failed: {error}"))),
        },
        _ = runtime::sleep(remaining) => (None, None),
    };
    let output = local::read_parts(&storage_ref, Path::new(OUTPUT_DIR)).await.unwrap_or_default();
    let checkpoint_dirs =
        checks::inspect_checkpoint_root(&storage_ref, Path::new(CHECKPOINT_DIR)).await.unwrap_or_default();
    let completions = recorder.completions.lock().expect("recorder lock").clone();
    let mut savepoints = Vec::new();
    let taken: Vec<PathBuf> = taken.lock().expect("taken lock").clone();
    for path in taken {
        let problem = match engine::checkpoint::restore::load(&storage_ref, &path).await {
            Ok(loaded) => {
                engine::checkpoint::restore::resolve(&storage_ref, &loaded).await.err().map(|e| e.to_string())
            }
            Err(error) => Some(error.to_string()),
        };
        savepoints.push((path.display().to_string(), problem));
    }
    Simulated {
        savepoints,
        output,
        completions,
        lineage,
        restores,
        checkpoint_dirs,
        abandoned,
        finished_at_ms,
        sim_time_ms: runtime::elapsed().as_millis() as u64,
        sim_time_ns: runtime::elapsed().as_nanos(),
        error,
    }
}
