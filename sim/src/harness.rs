//! Runs a built-in job on a simulated cluster (a job manager and task manager nodes) for
//! one seed, and returns what it wrote.

use crate::storage::SimStorage;
use engine::cluster::Cluster;
use engine::config::JobConfig;
use engine::local::{self, RunError};
use engine::seam::runtime;
use engine::seam::storage::StorageRef;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// The part files concatenated in subtask order, exactly as written.
    pub output: String,
    /// Simulated (or real) time the job ran.
    pub job_time_ms: u64,
}

impl SimOutcome {
    /// The output's lines, sorted.
    pub fn canonical(&self) -> Vec<String> {
        engine::jobs::canonical_lines(&self.output).into_iter().map(str::to_string).collect()
    }
}

/// The directory the sink writes to in simulated runs.
pub const OUTPUT_DIR: &str = "/output";

/// Runs `job` for `seed`.
pub fn run(seed: u64, job: &SimJob) -> Result<SimOutcome, RunError> {
    engine::logging::init();
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
        let outcome = local::run_builtin(&cluster, &job.job, &parameters, job.config.clone()).await?;
        let output = local::read_parts(&storage, std::path::Path::new(OUTPUT_DIR)).await?;
        Ok(SimOutcome { output, job_time_ms: outcome.duration.as_millis() as u64 })
    });
    engine::logging::set_seed(None);
    result
}
