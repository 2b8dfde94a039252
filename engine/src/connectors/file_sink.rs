//! A transactional file sink (two-phase commit), as Flink's `TwoPhaseCommitSinkFunction`
//! over files.
//!
//! Records are written into the current transaction, a hidden in-progress file
//! `.part-<subtask>-<job>-<attempt>-<seq>.inprogress` (numbers zero-padded). At a checkpoint the transaction is
//! pre-committed (flushed, fsynced, recorded as pending in operator state). When checkpoint
//! `n` completes, every pending transaction up to `n` is committed by renaming it to
//! `part-<subtask>-<checkpoint>-<job>-<attempt>-<seq>`. A commit is idempotent (a missing in-progress
//! file whose committed name exists was committed already), so lost or repeated
//! notifications are harmless. On restore, the restored checkpoint's pending transactions
//! are committed and every other in-progress file of earlier attempts is aborted (deleted).
//! Without checkpointing, the sink commits when its input ends.
//!
//! The committed output is the set of `part-*` files; in-progress files are never output.

use crate::error::TaskError;
use crate::ids::{CheckpointId, OperatorUid};
use crate::operators::OperatorContext;
use crate::operators::sink::Sink;
use crate::seam::storage::{StorageError, StorageRef, WriteFile};
use crate::state::operator::{OperatorListDescriptor, OperatorStateStore};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Formats one record as one line (without the newline).
pub type LineFormat<T> = Arc<dyn Fn(&T, &mut String) + Send + Sync>;

/// Bytes buffered before a write reaches storage.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// A pre-committed transaction: durable, waiting for its checkpoint to complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTransaction {
    pub checkpoint: CheckpointId,
    /// The transaction's name; its in-progress file is `.<name>.inprogress`.
    pub name: String,
    /// The file name once committed: `part-<subtask>-<checkpoint>-<name's rest>`. Checkpoint
    /// ids increase across restores too, so name order is commit order within a subtask.
    pub committed: String,
}

/// Pending transactions. Union redistribution: after a rescale every subtask sees all of
/// them, and since commits are idempotent it does not matter which one commits.
const PENDING: OperatorListDescriptor<PendingTransaction> = OperatorListDescriptor::union("pending-transactions");

struct Transaction {
    name: String,
    file: Box<dyn WriteFile>,
}

pub struct FileSink<T> {
    dir: PathBuf,
    format: LineFormat<T>,
    buffer: String,
    current: Option<Transaction>,
    pending: Vec<PendingTransaction>,
    /// `part-<subtask>-<job>-<attempt>-`: unique per subtask and deployment.
    prefix: String,
    /// `part-<subtask>-`.
    subtask_prefix: String,
    next_sequence: u64,
    checkpointing: bool,
    uid: Option<OperatorUid>,
    storage: Option<StorageRef>,
}

/// The in-progress file of a transaction.
pub fn in_progress_name(name: &str) -> String {
    format!(".{name}.inprogress")
}

impl<T: Send + 'static> FileSink<T> {
    pub fn new(dir: PathBuf, format: LineFormat<T>) -> Self {
        FileSink {
            dir,
            format,
            buffer: String::new(),
            current: None,
            pending: Vec::new(),
            prefix: String::new(),
            subtask_prefix: String::new(),
            next_sequence: 0,
            checkpointing: false,
            uid: None,
            storage: None,
        }
    }

    /// A factory for the typed API's `sink`: one sink per subtask over the same directory.
    pub fn factory(
        dir: impl Into<PathBuf>,
        format: impl Fn(&T, &mut String) + Send + Sync + 'static,
    ) -> impl Fn() -> FileSink<T> + Send + Sync + 'static {
        let dir = dir.into();
        let format: LineFormat<T> = Arc::new(format);
        move || FileSink::new(dir.clone(), format.clone())
    }

    fn storage(&self) -> &StorageRef {
        self.storage.as_ref().expect("the sink is opened before use")
    }

    async fn write_buffer(&mut self) -> Result<(), TaskError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if self.current.is_none() {
            // Zero-padded, so that name order is commit order within a subtask.
            let name = format!("{}{:08}", self.prefix, self.next_sequence);
            self.next_sequence += 1;
            let file = self.storage().create(&self.dir.join(in_progress_name(&name))).await?;
            self.current = Some(Transaction { name, file });
        }
        let transaction = self.current.as_mut().expect("just opened");
        transaction.file.write_all(self.buffer.as_bytes()).await?;
        self.buffer.clear();
        Ok(())
    }

    /// Flushes and fsyncs the current transaction, and moves it to pending.
    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.write_buffer().await?;
        if let Some(mut transaction) = self.current.take() {
            transaction.file.sync().await?;
            let rest = transaction.name.strip_prefix(&self.subtask_prefix).expect("named by this sink");
            let committed = format!("{}{:020}-{rest}", self.subtask_prefix, checkpoint.0);
            self.pending.push(PendingTransaction { checkpoint, name: transaction.name, committed });
        }
        Ok(())
    }

    /// Commits every pending transaction of a checkpoint up to `checkpoint`, in order.
    async fn commit_up_to(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        let ready: Vec<PendingTransaction> =
            self.pending.iter().filter(|t| t.checkpoint <= checkpoint).cloned().collect();
        if ready.is_empty() {
            return Ok(());
        }
        for transaction in &ready {
            commit(self.storage(), &self.dir, transaction, self.uid.as_ref().expect("opened")).await?;
        }
        self.storage().sync_dir(&self.dir).await?;
        self.pending.retain(|t| t.checkpoint > checkpoint);
        Ok(())
    }
}

/// Renames a pre-committed transaction to its committed name; idempotent.
async fn commit(
    storage: &StorageRef,
    dir: &Path,
    transaction: &PendingTransaction,
    uid: &OperatorUid,
) -> Result<(), TaskError> {
    let from = dir.join(in_progress_name(&transaction.name));
    let to = dir.join(&transaction.committed);
    match storage.rename(&from, &to).await {
        Ok(()) => Ok(()),
        Err(StorageError::NotFound { .. }) if storage.exists(&to).await? => Ok(()),
        Err(StorageError::NotFound { .. }) => Err(TaskError::User {
            operator: uid.clone(),
            message: format!(
                "pending transaction `{}` of checkpoint {} is neither in progress nor committed in `{}`: the output directory was moved or cleaned since the checkpoint",
                transaction.name,
                transaction.checkpoint,
                dir.display()
            ),
        }),
        Err(other) => Err(other.into()),
    }
}

#[async_trait]
impl<T: Send + 'static> Sink<T> for FileSink<T> {
    async fn open(
        &mut self,
        context: OperatorContext<'_>,
        restored: Option<&OperatorStateStore>,
    ) -> Result<(), TaskError> {
        let storage = context.storage.clone();
        storage.create_dir_all(&self.dir).await?;
        let info = context.info;
        self.subtask_prefix = format!("part-{:04}-", info.subtask.0);
        self.prefix = format!("{}{}-{:04}-", self.subtask_prefix, info.job, info.attempt.0);
        self.checkpointing = context.checkpointing;
        self.uid = Some(context.uid.clone());
        if let Some(restored) = restored {
            let pending = restored.get(&PENDING).map_err(|e| context.state_error(e))?;
            for transaction in &pending {
                commit(&storage, &self.dir, transaction, context.uid).await?;
            }
            // Abort what earlier deployments left in progress and the checkpoint does not
            // know: it holds records after the restored checkpoint, which will be replayed.
            // Files of this deployment (any subtask) are live, whatever their age.
            let this_deployment = format!("-{}-{:04}-", info.job, info.attempt.0);
            let keep: Vec<String> = pending.iter().map(|t| in_progress_name(&t.name)).collect();
            for name in storage.list(&self.dir).await? {
                let stale =
                    name.starts_with(".part-") && name.ends_with(".inprogress") && !name.contains(&this_deployment);
                if stale && !keep.contains(&name) {
                    match storage.remove_file(&self.dir.join(&name)).await {
                        // Another subtask of this deployment aborted it first.
                        Ok(()) | Err(StorageError::NotFound { .. }) => {}
                        Err(other) => return Err(other.into()),
                    }
                }
            }
            storage.sync_dir(&self.dir).await?;
        }
        self.storage = Some(storage);
        Ok(())
    }

    async fn write(&mut self, records: &mut Vec<T>) -> Result<(), TaskError> {
        for record in records.drain(..) {
            (self.format)(&record, &mut self.buffer);
            self.buffer.push('\n');
        }
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.write_buffer().await?;
        }
        Ok(())
    }

    async fn snapshot(&mut self, checkpoint: CheckpointId, state: &mut OperatorStateStore) -> Result<(), TaskError> {
        self.pre_commit(checkpoint).await?;
        let uid = self.uid.clone().expect("opened");
        state.set(&PENDING, &self.pending).map_err(|source| TaskError::State { operator: uid, source })
    }

    async fn finish(&mut self) -> Result<(), TaskError> {
        if self.checkpointing {
            // The final checkpoint pre-commits and commits what is left.
            return self.write_buffer().await;
        }
        let last = CheckpointId(u64::MAX);
        self.pre_commit(last).await?;
        self.commit_up_to(last).await
    }

    async fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.commit_up_to(checkpoint).await
    }
}
