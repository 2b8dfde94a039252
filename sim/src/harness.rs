//! Runs a built-in job on a simulated cluster (a job manager and task manager nodes) for
//! one seed, and returns what it committed and what its checkpoint directory holds.

use crate::checks::{self, CheckpointDirReport};
use crate::storage::SimStorage;
use engine::cluster::Cluster;
use engine::cluster::messages::RestoreRequest;
use engine::config::JobConfig;
use engine::error::JobError;
use engine::jobs;
use engine::local::{self, RunError};
use engine::seam::runtime;
use engine::seam::storage::StorageRef;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One job run to simulate.
#[derive(Clone, Debug)]
pub struct SimJob {
    pub job: String,
    pub parameters: BTreeMap<String, String>,
    pub config: JobConfig,
    pub task_managers: u32,
    /// Files put on the simulated storage before the run: (path, content).
    pub inputs: Vec<(PathBuf, Vec<u8>)>,
}

/// What a run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOutcome {
    /// The committed part files concatenated in name order, exactly as written.
    pub output: String,
    /// Simulated (or real) time the job ran, over all its runs.
    pub job_time_ms: u64,
    /// Deployments over all runs (1 per run when nothing failed).
    pub attempts: u32,
    /// Checkpoints completed over all runs, ascending.
    pub completed: Vec<engine::ids::CheckpointId>,
    /// What each job's checkpoint directory held at the end, by job id.
    pub checkpoint_dirs: Vec<CheckpointDirReport>,
}

impl SimOutcome {
    /// The output's lines, sorted.
    pub fn canonical(&self) -> Vec<String> {
        jobs::canonical_lines(&self.output).into_iter().map(str::to_string).collect()
    }
}

/// The directory the sink writes to in simulated runs.
pub const OUTPUT_DIR: &str = "/output";
/// The checkpoint directory in simulated runs (`state.checkpoints.dir`).
pub const CHECKPOINT_DIR: &str = "/checkpoints";

/// Runs `job` for `seed` to its end.
pub fn run(seed: u64, job: &SimJob) -> Result<SimOutcome, RunError> {
    simulate(seed, job, None)
}

/// Runs `job` for `seed`, cancels it after `cancel_after_ms`, then starts a new job from
/// the latest checkpoint on storage (what `weir run -s` does) and runs it to its end.
pub fn run_cancel_and_resume(seed: u64, job: &SimJob, cancel_after_ms: u64) -> Result<SimOutcome, RunError> {
    simulate(seed, job, Some(cancel_after_ms))
}

fn simulate(seed: u64, job: &SimJob, cancel_after_ms: Option<u64>) -> Result<SimOutcome, RunError> {
    engine::logging::init_for_tests();
    engine::logging::set_seed(Some(seed));
    let job = job.clone();
    let result = runtime::run(seed, async move {
        let storage = SimStorage::new();
        for (path, bytes) in &job.inputs {
            storage.put_file(path, bytes);
        }
        let storage: StorageRef = Arc::new(storage);
        let mut parameters = job.parameters.clone();
        parameters.insert("output".to_string(), OUTPUT_DIR.to_string());
        let parallelism = job.config.parallelism.unwrap_or(1);
        let cluster = Cluster::start(&local::cluster_spec(parallelism, job.task_managers), storage.clone());
        let builtin =
            jobs::find(&job.job).ok_or_else(|| RunError::UnknownJob { name: job.job.clone(), known: String::new() })?;

        let mut restore = None;
        let mut totals = (0u64, 0u32, Vec::new());
        if let Some(cancel_after_ms) = cancel_after_ms {
            let handle = cluster.submit(builtin.build_graph(&parameters, job.config.clone())?, None).await?;
            let first_job = handle.job;
            runtime::sleep(Duration::from_millis(cancel_after_ms)).await;
            match cluster.cancel(first_job).await {
                // Finished before the cancel: nothing to resume.
                Err(JobError::UnknownJob(_)) => {}
                other => other?,
            }
            let outcome = handle.wait().await;
            if let Ok(outcome) = &outcome {
                totals = (outcome.duration.as_millis() as u64, outcome.attempts, outcome.completed.clone());
            }
            let job_dir = Path::new(CHECKPOINT_DIR).join(first_job.to_string());
            restore = checks::latest_checkpoint(&storage, &job_dir)
                .await?
                .map(|path| RestoreRequest { path, allow_non_restored_state: false });
            if outcome.is_ok() {
                restore = None;
            }
        }
        let resumed = cancel_after_ms.is_none() || restore.is_some();
        if resumed {
            let graph = builtin.build_graph(&parameters, job.config.clone())?;
            let outcome = cluster.submit(graph, restore).await?.wait().await?;
            totals.0 += outcome.duration.as_millis() as u64;
            totals.1 += outcome.attempts;
            totals.2.extend(outcome.completed);
        }
        let output = local::read_parts(&storage, Path::new(OUTPUT_DIR)).await?;
        let checkpoint_dirs = checks::inspect_checkpoint_root(&storage, Path::new(CHECKPOINT_DIR)).await?;
        Ok(SimOutcome { output, job_time_ms: totals.0, attempts: totals.1, completed: totals.2, checkpoint_dirs })
    });
    engine::logging::set_seed(None);
    result
}
