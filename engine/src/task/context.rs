//! What a subtask is built from: its place in the job, its restored state, its channels, its links to the job
//! manager and to checkpoint storage. The job manager fills it in at deployment; the typed API's task factories
//! take it apart.

use crate::checkpoint::storage::CheckpointWriter;
use crate::config::JobConfig;
use crate::error::{TaskError, TaskFailure};
use crate::faults::Faults;
use crate::ids::{CheckpointId, OperatorUid, SubtaskInfo};
use crate::keygroup::StableHasher;
use crate::seam::storage::StorageRef;
use crate::state::embedded::EmbeddedOptions;
use crate::state::embedded::restore::{RestoredStore, restore_store};
use crate::state::snapshot::{OperatorSnapshot, SubtaskSnapshot};
use crate::task::control::{Reporter, TaskCommand};
use std::any::Any;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A subtask's links to the job manager and to checkpoint storage.
pub struct TaskServices {
    pub commands: tokio::sync::mpsc::Receiver<TaskCommand>,
    pub reporter: Arc<dyn Reporter>,
    /// Where snapshots are written; `None` when the job does not checkpoint.
    pub checkpoints: Option<Arc<CheckpointWriter>>,
    /// The simulation's fault points (inert in real runs).
    pub faults: Faults,
}

/// How a deployed subtask runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DeployMode {
    /// Process input until its end.
    Run,
    /// The job was stopped with savepoint `n` and restored from it: open (a sink commits the savepoint's pending
    /// transactions), commit up to `n`, and exit without processing anything.
    FinishAt(CheckpointId),
}

/// What a subtask is built from: its place, its restored state, its channels, its config.
pub struct BuildContext {
    pub info: SubtaskInfo,
    pub config: Arc<JobConfig>,
    pub storage: StorageRef,
    /// The task manager's local working directory (the embedded state backend keeps its files below it).
    pub local_dir: PathBuf,
    /// Restored operator state by uid, already redistributed for this subtask; empty on a fresh start.
    pub restored: SubtaskSnapshot,
    /// Embedded stores rebuilt from the restored state's files ([`BuildContext::prepare_stores`]), by uid.
    pub prepared: BTreeMap<OperatorUid, RestoredStore>,
    pub mode: DeployMode,
    /// Commands from and reports to the job manager, and where snapshots are written.
    pub services: TaskServices,
    /// Receivers of the vertex's input edge, one per upstream subtask, type-erased.
    pub inputs: Vec<Box<dyn Any + Send>>,
    /// Senders of the vertex's output edge, one per downstream subtask, type-erased.
    pub outputs: Vec<Box<dyn Any + Send>>,
}

impl BuildContext {
    /// Takes the restored state of operator `uid`: `None` when the operator starts fresh (no restore, or a
    /// checkpoint without this operator), as Flink's `isRestored()`.
    pub fn take_restored(&mut self, uid: &OperatorUid) -> Option<OperatorSnapshot> {
        self.restored.operators.remove(uid)
    }

    pub fn batch_size_records(&self) -> usize {
        self.config.batch_size_records as usize
    }

    /// The working directory of operator `uid`'s embedded store in this subtask: below
    /// `state.backend.rocksdb.localdir` (per job) if set, else the task manager's local directory.
    pub fn embedded_work_dir(&self, uid: &OperatorUid) -> PathBuf {
        let base = match &self.config.embedded.local_dir {
            Some(dir) => PathBuf::from(dir).join(self.info.job.to_string()),
            None => self.local_dir.clone(),
        };
        // A uid may hold any character: the directory is named by its stable hash.
        let mut hasher = StableHasher::new();
        hasher.write(uid.0.as_bytes());
        base.join(format!("op-{:016x}-{}", hasher.finish(), self.info.subtask.0))
    }

    /// The embedded store's settings for this job.
    pub fn embedded_options(&self) -> EmbeddedOptions {
        EmbeddedOptions::with_memory_budget(self.config.embedded.memory_bytes as usize)
    }

    /// Rebuilds, before the chain is built, the embedded store of every operator restored from
    /// stores' files: downloading them is IO, and building the chain is not.
    pub async fn prepare_stores(&mut self) -> Result<(), TaskError> {
        let uids: Vec<OperatorUid> =
            self.restored.operators.iter().filter(|(_, o)| !o.stores.is_empty()).map(|(uid, _)| uid.clone()).collect();
        for uid in uids {
            let stores = std::mem::take(&mut self.restored.operators.get_mut(&uid).expect("listed above").stores);
            let restored = restore_store(
                self.storage.clone(),
                self.embedded_work_dir(&uid),
                self.embedded_options(),
                self.info.key_group_range(),
                &stores,
            )
            .await
            .map_err(|source| TaskFailure::State { operator: uid.clone(), source })?;
            self.prepared.insert(uid, restored);
        }
        Ok(())
    }
}
