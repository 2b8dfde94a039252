//! The workload contract: what the harness needs to test a job, any job, and the registry scenarios name them from.
//!
//! A [`Workload`] says how to build its job graph from typed, validated parameters; what input the job reads,
//! generated from the parameters alone; what it must commit (its reference model, computed from the input, never
//! from a run); how to read what it committed back; which of the harness's invariants mean something for it (an
//! order is checked only where the job promises one); and any checks of its own. The fault-free run of the same
//! scenario stays the second, generic oracle. The engine's built-in jobs are workloads registered like a user's
//! would be (`sequence.rs`, `wordcount.rs`, `keyed_sum.rs`), and so are the canaries' deliberately broken ones.
//!
//! A scenario names a workload by [`Workload::NAME`]; [`Registry::prepare`] checks its parameters into a
//! [`Prepared`] workload, the type-erased form the rest of the harness works with.

mod canary;
mod keyed_sum;
mod sequence;
mod wordcount;

pub use canary::{EagerCommit, EagerCommitCanary};
pub use keyed_sum::KeyedSum;
pub use sequence::{Sequence, SequenceParams};
pub use wordcount::{WordCount, generated_text};

use crate::invariants::Invariant;
use engine::api::BuildError;
use engine::api::graph::JobGraph;
use engine::config::JobConfig;
use engine::seam::storage::StorageRef;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Where a simulated job reads its input and writes its committed output.
#[derive(Clone, Debug)]
pub struct WorkloadEnv {
    /// Where the job's input files go (the workload's [`Workload::input`] names paths below it).
    pub input_dir: PathBuf,
    /// Where the job's sink commits.
    pub output_dir: PathBuf,
}

impl Default for WorkloadEnv {
    fn default() -> Self {
        WorkloadEnv { input_dir: PathBuf::from("/input"), output_dir: PathBuf::from("/output") }
    }
}

/// What a job must commit, from its reference model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reference {
    /// Every committed line, sorted: what an exactly-once run commits, each line as often.
    pub lines: Vec<String>,
    /// The lines that stand for one input record each (sorted): AT_LEAST_ONCE must commit each at least once.
    pub records: Vec<String>,
    /// The final keyed state, as lines (sorted): what the job's state holds once all input is processed.
    pub state: Vec<String>,
}

/// What one commit made visible: the first-divergence analysis follows the committed output as it grows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedPart {
    /// The name the sink's `part committed` trace event gives it (its `part` field).
    pub name: String,
    /// Its lines, as [`Workload::committed`] would return them.
    pub text: String,
}

/// A boxed future, for the object-safe side of the contract.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`Workload::committed_parts`] returns.
pub type PartsFuture<'a> = BoxFuture<'a, Result<Option<Vec<CommittedPart>>, String>>;

/// A job the harness can test. Implement it for your own job and register it: the harness then runs it under
/// every fault a scenario can name, against its own reference model.
pub trait Workload: Send + Sync + 'static {
    /// The name scenarios give in `[job] name`.
    const NAME: &'static str;
    /// Its parameters, read strictly from the scenario's `[job] params` (use `#[serde(deny_unknown_fields)]`).
    type Params: DeserializeOwned + Debug + Clone + Send + Sync + 'static;

    /// One line saying what the job does.
    fn about(&self) -> &'static str;

    /// Checks what types cannot: ranges, relations between parameters.
    fn validate(&self, params: &Self::Params) -> Result<(), String>;

    /// The files the job reads, below `env.input_dir`, generated from the parameters alone.
    fn input(&self, _params: &Self::Params, _env: &WorkloadEnv) -> Vec<(PathBuf, Vec<u8>)> {
        Vec::new()
    }

    /// The job graph, committing below `env.output_dir`.
    fn build(&self, params: &Self::Params, env: &WorkloadEnv, config: JobConfig) -> Result<JobGraph, BuildError>;

    /// What the job must commit, from its parameters and input alone.
    fn reference(&self, params: &Self::Params) -> Reference;

    /// The committed output, one line per committed record, in commit order.
    fn committed<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> BoxFuture<'a, Result<String, String>>;

    /// The final keyed state in a committed output, as lines (compared sorted with [`Reference::state`]).
    fn state_lines(&self, committed: &[&str]) -> Vec<String>;

    /// The committed output split by the commit that made each piece visible (whose sink traced a `part committed`
    /// event naming it): what lets a failure's report name the first commit that departs from the fault-free run.
    /// `None` (the default) when the sink cannot tell; file-sink jobs return [`file_sink_parts`].
    fn committed_parts<'a>(&'a self, _storage: &'a StorageRef, _env: &'a WorkloadEnv) -> PartsFuture<'a> {
        Box::pin(async { Ok(None) })
    }

    /// About when the job's sources reach the end of their input in a run without faults at `parallelism`, if
    /// they are paced (`None`, the default, if the job cannot tell): the swarm aims some of its stops and restarts
    /// just before it, where a stop-with-savepoint races the end of input and the final checkpoint.
    fn input_ends_at(&self, _params: &Self::Params, _parallelism: u32) -> Option<Duration> {
        None
    }

    /// Why `invariant` cannot say anything about this job, if it cannot.
    fn not_applicable(&self, invariant: Invariant) -> Option<String> {
        match invariant {
            Invariant::NoLossNoDupInOrder => Some(format!("`{}` promises no order to check", Self::NAME)),
            _ => None,
        }
    }

    /// The job's own order rule, checked on the committed lines in commit order (the `no_loss_no_dup_in_order`
    /// invariant): the first breach, described.
    fn check_order(&self, _params: &Self::Params, _committed: &[&str]) -> Option<String> {
        None
    }

    /// The consistent-cut oracle (the `consistent_cut` invariant): whether a completed snapshot's state is what
    /// the reference model gives for exactly the input its sources recorded having read. The first difference,
    /// described; `None` if it holds, or if the workload does not check cuts.
    fn check_cut(&self, _params: &Self::Params, _cut: &crate::cut::Cut) -> Option<String> {
        None
    }
}

/// A workload with its parameters checked: what scenarios, runs and checkers hold.
pub trait Prepared: Send + Sync + Debug {
    fn name(&self) -> &'static str;
    fn input(&self, env: &WorkloadEnv) -> Vec<(PathBuf, Vec<u8>)>;
    fn build(&self, env: &WorkloadEnv, config: JobConfig) -> Result<JobGraph, BuildError>;
    fn reference(&self) -> Reference;
    fn committed<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> BoxFuture<'a, Result<String, String>>;
    fn state_lines(&self, committed: &[&str]) -> Vec<String>;
    fn committed_parts<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> PartsFuture<'a>;
    fn input_ends_at(&self, parallelism: u32) -> Option<Duration>;
    fn not_applicable(&self, invariant: Invariant) -> Option<String>;
    fn check_order(&self, committed: &[&str]) -> Option<String>;
    fn check_cut(&self, cut: &crate::cut::Cut) -> Option<String>;
    /// A key naming the reference model's inputs (workload and parameters), for sharing one reference.
    fn reference_key(&self) -> String;
    /// The same workload with other parameters (a swarm's drawn ones), checked as a scenario's are.
    fn with_params(&self, params: &toml::Table) -> Result<Arc<dyn Prepared>, String>;
}

/// A workload and its typed parameters.
struct WithParams<W: Workload> {
    workload: Arc<W>,
    params: W::Params,
}

impl<W: Workload> Debug for WithParams<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{:?}", W::NAME, self.params)
    }
}

impl<W: Workload> Prepared for WithParams<W> {
    fn name(&self) -> &'static str {
        W::NAME
    }

    fn input(&self, env: &WorkloadEnv) -> Vec<(PathBuf, Vec<u8>)> {
        self.workload.input(&self.params, env)
    }

    fn build(&self, env: &WorkloadEnv, config: JobConfig) -> Result<JobGraph, BuildError> {
        self.workload.build(&self.params, env, config)
    }

    fn reference(&self) -> Reference {
        self.workload.reference(&self.params)
    }

    fn committed<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> BoxFuture<'a, Result<String, String>> {
        self.workload.committed(storage, env)
    }

    fn state_lines(&self, committed: &[&str]) -> Vec<String> {
        self.workload.state_lines(committed)
    }

    fn committed_parts<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> PartsFuture<'a> {
        self.workload.committed_parts(storage, env)
    }

    fn input_ends_at(&self, parallelism: u32) -> Option<Duration> {
        self.workload.input_ends_at(&self.params, parallelism)
    }

    fn not_applicable(&self, invariant: Invariant) -> Option<String> {
        if invariant == Invariant::NothingLost && self.reference().records.is_empty() {
            return Some(format!("`{}` commits no line per record, so nothing can be found lost", W::NAME));
        }
        self.workload.not_applicable(invariant)
    }

    fn check_order(&self, committed: &[&str]) -> Option<String> {
        self.workload.check_order(&self.params, committed)
    }

    fn check_cut(&self, cut: &crate::cut::Cut) -> Option<String> {
        self.workload.check_cut(&self.params, cut)
    }

    fn reference_key(&self) -> String {
        format!("{self:?}")
    }

    fn with_params(&self, params: &toml::Table) -> Result<Arc<dyn Prepared>, String> {
        self.workload.prepare(params)
    }
}

/// Type-erases a workload for the registry.
trait Registered: Send + Sync {
    fn about(&self) -> &'static str;
    fn prepare(&self, params: &toml::Table) -> Result<Arc<dyn Prepared>, String>;
}

impl<W: Workload> Registered for Arc<W> {
    fn about(&self) -> &'static str {
        W::about(self)
    }

    fn prepare(&self, params: &toml::Table) -> Result<Arc<dyn Prepared>, String> {
        let params: W::Params = toml::Value::Table(params.clone())
            .try_into()
            .map_err(|e: toml::de::Error| format!("parameters of `{}`: {}", W::NAME, e.message().replace('\n', " ")))?;
        self.validate(&params).map_err(|e| format!("parameters of `{}`: {e}", W::NAME))?;
        Ok(Arc::new(WithParams { workload: self.clone(), params }))
    }
}

/// The workloads scenarios can name.
#[derive(Clone, Default)]
pub struct Registry {
    workloads: BTreeMap<&'static str, Arc<dyn Registered>>,
}

impl Registry {
    /// No workloads.
    pub fn empty() -> Self {
        Registry::default()
    }

    /// The engine's built-in jobs: `sequence`, `wordcount`, `keyed-sum`.
    pub fn builtin() -> Self {
        Registry::empty().with(Sequence).with(WordCount).with(KeyedSum)
    }

    /// The built-in jobs and the canaries' deliberately broken workloads: what `weir-sim` runs.
    pub fn standard() -> Self {
        Registry::builtin().with(EagerCommitCanary)
    }

    /// Adds `workload`; a second workload of the same name replaces the first.
    pub fn with<W: Workload>(mut self, workload: W) -> Self {
        self.workloads.insert(W::NAME, Arc::new(Arc::new(workload)));
        self
    }

    /// The registered names, sorted, with what each does.
    pub fn list(&self) -> Vec<(&'static str, &'static str)> {
        self.workloads.iter().map(|(name, w)| (*name, w.about())).collect()
    }

    /// Workload `name` with `params` checked; an unknown name is an error listing the known ones.
    pub fn prepare(&self, name: &str, params: &toml::Table) -> Result<Arc<dyn Prepared>, String> {
        let Some(workload) = self.workloads.get(name) else {
            let known: Vec<&str> = self.workloads.keys().copied().collect();
            return Err(format!("unknown workload `{name}` (known: {})", known.join(", ")));
        };
        workload.prepare(params)
    }
}

/// The committed part files under `dir` (the file sink's output), concatenated in commit order: what the built-in
/// jobs' [`Workload::committed`] return.
pub fn file_sink_output<'a>(storage: &'a StorageRef, dir: &'a Path) -> BoxFuture<'a, Result<String, String>> {
    Box::pin(async move {
        if !storage.exists(dir).await.map_err(|e| e.to_string())? {
            return Ok(String::new());
        }
        engine::local::read_parts(storage, dir).await.map_err(|e| e.to_string())
    })
}

/// The committed part files under `dir`, each with its name, in commit order: what the built-in jobs'
/// [`Workload::committed_parts`] return.
pub fn file_sink_parts<'a>(storage: &'a StorageRef, dir: &'a Path) -> PartsFuture<'a> {
    Box::pin(async move {
        if !storage.exists(dir).await.map_err(|e| e.to_string())? {
            return Ok(Some(Vec::new()));
        }
        let parts = engine::local::read_part_files(storage, dir).await.map_err(|e| e.to_string())?;
        Ok(Some(parts.into_iter().map(|(name, text)| CommittedPart { name, text }).collect()))
    })
}

/// Sorted lines of `text`.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}
