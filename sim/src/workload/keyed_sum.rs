//! `keyed-sum` as a workload: the benchmark job, `n` generated records into a keyed `(count, sum)` per key, whose
//! reference is [`engine::jobs::keyed_sum::reference`].

use super::{BoxFuture, PartsFuture, Reference, Workload, WorkloadEnv, file_sink_output, file_sink_parts};
use engine::api::BuildError;
use engine::api::graph::JobGraph;
use engine::config::JobConfig;
use engine::seam::storage::StorageRef;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The built-in `keyed-sum` job.
pub struct KeyedSum;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeyedSumParams {
    #[serde(default = "default_n")]
    pub n: u64,
    #[serde(default = "default_keys")]
    pub keys: u64,
    #[serde(default = "default_partitions")]
    pub partitions: u32,
}

fn default_n() -> u64 {
    10_000
}

fn default_keys() -> u64 {
    1000
}

fn default_partitions() -> u32 {
    4
}

impl Workload for KeyedSum {
    const NAME: &'static str = "keyed-sum";
    type Params = KeyedSumParams;

    fn about(&self) -> &'static str {
        engine::jobs::keyed_sum::JOB.about
    }

    fn validate(&self, params: &KeyedSumParams) -> Result<(), String> {
        if params.keys == 0 {
            return Err("`keys` must be at least 1".into());
        }
        if params.n > 10_000_000 {
            return Err(format!("`n` above 10000000 takes too long to simulate, got {}", params.n));
        }
        if !(1..=4096).contains(&params.partitions) {
            return Err(format!("`partitions` must be in 1..=4096, got {}", params.partitions));
        }
        Ok(())
    }

    fn build(&self, params: &KeyedSumParams, env: &WorkloadEnv, config: JobConfig) -> Result<JobGraph, BuildError> {
        let given = BTreeMap::from([
            ("output".to_string(), env.output_dir.display().to_string()),
            ("n".to_string(), params.n.to_string()),
            ("keys".to_string(), params.keys.to_string()),
            ("partitions".to_string(), params.partitions.to_string()),
        ]);
        engine::jobs::keyed_sum::JOB.build_graph(&given, config)
    }

    fn reference(&self, params: &KeyedSumParams) -> Reference {
        let lines = engine::jobs::keyed_sum::reference(params.n, params.keys);
        Reference { state: lines.clone(), lines, records: Vec::new() }
    }

    fn committed<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> BoxFuture<'a, Result<String, String>> {
        file_sink_output(storage, &env.output_dir)
    }

    fn committed_parts<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> PartsFuture<'a> {
        file_sink_parts(storage, &env.output_dir)
    }

    fn state_lines(&self, committed: &[&str]) -> Vec<String> {
        committed.iter().map(|l| l.to_string()).collect()
    }
}
