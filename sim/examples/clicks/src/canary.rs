//! The click-count job's canary: the same job whose table sink commits at pre-commit, before the checkpoint
//! completes ([`EagerCommit`]). A failure between the two replays clicks whose versions are in the table already,
//! and the harness must catch the duplicates: a scenario that expects the violation proves the checkers can fail
//! for this job too.

use crate::job::{self, ClicksParams};
use crate::workload::Clicks;
use engine::api::BuildError;
use engine::api::graph::JobGraph;
use engine::config::JobConfig;
use engine::seam::storage::StorageRef;
use sim::invariants::Invariant;
use sim::workload::{BoxFuture, EagerCommit, Reference, Workload, WorkloadEnv};

/// [`Clicks`] with a sink that commits early.
pub struct ClicksEagerCommit;

impl Workload for ClicksEagerCommit {
    const NAME: &'static str = "clicks-canary-eager-commit";
    type Params = ClicksParams;

    fn about(&self) -> &'static str {
        "canary: `clicks` with a table sink that commits before its checkpoint completes"
    }

    fn validate(&self, params: &ClicksParams) -> Result<(), String> {
        Clicks.validate(params)
    }

    fn build(&self, params: &ClicksParams, env: &WorkloadEnv, config: JobConfig) -> Result<JobGraph, BuildError> {
        job::graph(Self::NAME, params, env.output_dir.clone(), config, EagerCommit)
    }

    fn reference(&self, params: &ClicksParams) -> Reference {
        Clicks.reference(params)
    }

    fn committed<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> BoxFuture<'a, Result<String, String>> {
        Clicks.committed(storage, env)
    }

    fn state_lines(&self, committed: &[&str]) -> Vec<String> {
        Clicks.state_lines(committed)
    }

    fn not_applicable(&self, invariant: Invariant) -> Option<String> {
        Clicks.not_applicable(invariant)
    }

    fn check_order(&self, params: &ClicksParams, committed: &[&str]) -> Option<String> {
        Clicks.check_order(params, committed)
    }
}
