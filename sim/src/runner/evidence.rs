//! What a run left behind, collected once the job ended (or the healing bound passed): the committed output as the
//! workload reads it, every job's checkpoint directory, the savepoints the steps took, and what the recorder saw.

use super::restarts::Steps;
use super::world::World;
use crate::checkers::Abandoned;
use crate::checks;
use crate::layout::CHECKPOINT_DIR;
use crate::workload::CommittedPart;
use engine::ids::{CheckpointId, JobId};
use engine::seam::runtime;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the simulation returns.
pub struct Simulated {
    /// Savepoints taken by `[[savepoint]]` steps, and their state at the end: `None` if intact, else the problem.
    pub savepoints: Vec<(String, Option<String>)>,
    pub output: String,
    /// The committed output by the commit that made each piece visible (collected for traced runs only), or why
    /// it is not known.
    pub parts: Result<Vec<CommittedPart>, String>,
    pub completions: Vec<crate::checkers::Completion>,
    /// What the protocol monitors found.
    pub protocol: Vec<crate::invariants::Violation>,
    /// Every job of the run and the snapshot id it was restored from.
    pub lineage: BTreeMap<JobId, Option<CheckpointId>>,
    pub restores: u32,
    pub attempts: u32,
    pub checkpoint_dirs: Vec<checks::CheckpointDirReport>,
    /// Jobs a crash abandoned, by job directory.
    pub abandoned: BTreeMap<PathBuf, Abandoned>,
    pub finished_at_ms: Option<u64>,
    pub sim_time_ms: u64,
    /// Simulated time at the end, in nanoseconds: every poll moves madsim's clock, so any difference in the
    /// schedule shows here.
    pub sim_time_ns: u128,
    pub error: Option<String>,
    /// The scenario's faults (by index) that could fire once and never did ([`crate::injector::Injector::unfired`]).
    pub unfired: Vec<usize>,
}

impl Simulated {
    /// A 64-bit hash of the end time, the committed output, the completed checkpoints, the restores and the error,
    /// for telling two runs apart. FxHash, eight bytes a step (byte-wise FNV-1a over the output took 2% of a
    /// suite's time); it depends only on the bytes, never on a seed or the process.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::Hasher as _;
        let mut hash = rustc_hash::FxHasher::default();
        hash.write(&self.sim_time_ns.to_le_bytes());
        hash.write(self.output.as_bytes());
        // Lengths separate the variable-length parts: an output ending in digits cannot pass for a restore count.
        hash.write_usize(self.output.len());
        for crate::checkers::Completion { id, .. } in &self.completions {
            hash.write_u64(id.0);
        }
        hash.write_u32(self.restores);
        hash.write(self.error.as_deref().unwrap_or("").as_bytes());
        hash.finish()
    }
}

/// Reads back what the run committed and left in storage; with `parts`, the committed output piece by piece too.
pub async fn collect(world: &World, steps: Steps, parts: bool) -> Simulated {
    let storage = &world.storage_ref;
    // The job is over: what is read back now is evidence, read without faults.
    world.injector.heal();
    let (output, mut error) = match world.workload.committed(storage, &world.env).await {
        Ok(output) => (output, steps.error),
        Err(problem) => {
            (String::new(), Some(steps.error.unwrap_or(format!("cannot read the committed output: {problem}"))))
        }
    };
    let parts = match parts {
        false => Err("not recorded: the run was not traced".to_string()),
        true => match world.workload.committed_parts(storage, &world.env).await {
            Ok(Some(parts)) => Ok(parts),
            Ok(None) => {
                Err(format!("the `{}` workload does not say what each commit made visible", world.workload.name()))
            }
            Err(problem) => Err(format!("cannot read the committed parts: {problem}")),
        },
    };
    let checkpoint_dirs = match checks::inspect_checkpoint_root(storage, Path::new(CHECKPOINT_DIR)).await {
        Ok(reports) => reports,
        Err(problem) => {
            error.get_or_insert(format!("cannot inspect the checkpoint directory: {problem}"));
            Vec::new()
        }
    };
    let mut savepoints = Vec::new();
    for path in &steps.savepoints {
        let problem = match engine::checkpoint::restore::load(storage, path).await {
            Ok(loaded) => {
                engine::checkpoint::restore::resolve(storage, &loaded, false, &engine::faults::Faults::none())
                    .await
                    .err()
                    .map(|e| e.to_string())
            }
            Err(error) => Some(error.to_string()),
        };
        savepoints.push((path.display().to_string(), problem));
    }
    Simulated {
        savepoints,
        output,
        parts,
        completions: world.recorder.completions(),
        protocol: {
            // Savepoints are checked here, where their directories are known: every one taken is still there.
            for path in &steps.savepoints {
                world.recorder.monitor.check_savepoint(path);
            }
            world.recorder.monitor.violations()
        },
        lineage: steps.lineage,
        restores: steps.restores,
        attempts: steps.attempts,
        checkpoint_dirs,
        abandoned: steps.abandoned,
        finished_at_ms: steps.finished_at_ms,
        sim_time_ms: runtime::elapsed().as_millis() as u64,
        sim_time_ns: runtime::elapsed().as_nanos(),
        error,
        unfired: world.injector.unfired(),
    }
}
