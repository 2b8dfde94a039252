//! Two-phase commit, owned by the engine: a transactional sink supplies the steps (begin, write, pre-commit,
//! commit, abort, recover), and [`TwoPhaseCommitSink`] runs the protocol once for every such sink, as Flink's
//! `TwoPhaseCommitSinkFunction` and Arroyo's two-phase committer do.
//!
//! The protocol:
//!
//! - Records go into the open transaction, begun before the first write after each pre-commit.
//! - At checkpoint `n` (the snapshot's synchronous part) the open transaction is pre-committed: made durable but
//!   invisible. Its handle joins the pending transactions, which the snapshot records in operator state (union
//!   redistribution: after a rescale every subtask sees every handle; commits are idempotent, so it does not matter
//!   which one commits).
//! - When checkpoint `n` completes, every pending transaction of a checkpoint up to `n` is committed, in checkpoint
//!   order. Notifications may be lost or repeated: a later one covers a lost one, and a commit of a committed
//!   transaction changes nothing.
//! - On restore the sink may check the restored checkpoint against what it already committed (the file sink
//!   refuses to resume behind its committed output), then the restored pending transactions are committed (the
//!   checkpoint completed, but its notification may never have arrived) and every other transaction earlier
//!   attempts left is aborted: it holds records after the checkpoint, which are replayed.
//! - A commit that fails for a passing reason (an IO error, a handle gone stale in a storage crash) is retried,
//!   idempotently; if it keeps failing, the subtask fails and the restore commits it.
//! - Without checkpointing, the sink pre-commits and commits when its input ends.
//!
//! Every step passes a fault point ([`SinkStep`]) first, where a simulation fails it (as an IO error would), delays
//! it or crashes the task manager; a failure right after a commit returned ([`SinkStep::Committed`]) makes the
//! protocol commit the same transactions again, which is how idempotence gets tested.

use super::OperatorContext;
use super::sink::Sink;
use crate::error::{TaskError, TaskFailure};
use crate::faults::{FaultPoint, Faults, Injected, Interleaving, PointKind, SinkStep};
use crate::ids::{CheckpointId, JobId, OperatorUid, TaskRef};
use crate::seam::runtime;
use crate::seam::storage::StorageError;
use crate::state::operator::{OperatorListDescriptor, OperatorStateStore};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::time::Duration;

/// The checkpoint id under which a sink without checkpointing commits at the end of its input.
pub const END_OF_INPUT_COMMIT: CheckpointId = CheckpointId(u64::MAX);

/// How often a commit is tried before the subtask fails (and the restore commits it).
const COMMIT_ATTEMPTS: u32 = 4;
/// The pause before a commit is tried again.
const COMMIT_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// A pre-committed transaction waiting for its checkpoint: durable, invisible, known by its handle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending<H> {
    pub checkpoint: CheckpointId,
    pub handle: H,
}

/// The steps of a transactional sink. Every step may fail; [`TransactionalSink::commit`] must be idempotent.
#[async_trait]
pub trait TransactionalSink<T>: Send + 'static {
    /// What a pre-committed transaction is known by: kept in checkpoints until it is committed, so that a restore
    /// can commit it.
    type Handle: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static;

    /// Prepares the subtask: connections, directories.
    async fn open(&mut self, context: OperatorContext<'_>) -> Result<(), TaskError>;

    /// On restore, before anything is committed: checks `restored` (the checkpoint the state comes from, if it
    /// says) against what the sink committed already. `pending` are the restored pending transactions.
    async fn recover(
        &mut self,
        _restored: Option<CheckpointId>,
        _pending: &[Pending<Self::Handle>],
    ) -> Result<(), TaskError> {
        Ok(())
    }

    /// Starts a transaction for the records that follow.
    async fn begin(&mut self) -> Result<(), TaskError>;

    /// Writes (and drains) records into the open transaction.
    async fn write(&mut self, records: &mut Vec<T>) -> Result<(), TaskError>;

    /// Makes the open transaction durable but invisible, for checkpoint `checkpoint`; `None` if it holds nothing.
    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<Self::Handle>, TaskError>;

    /// Makes pre-committed transactions visible, in order. Idempotent: committing a committed transaction again
    /// changes nothing, since notifications repeat and restores commit again.
    async fn commit(&mut self, transactions: &[Pending<Self::Handle>]) -> Result<(), TaskError>;

    /// Aborts every transaction earlier attempts of this subtask left open or pre-committed, but those in `keep`.
    async fn abort_all_except(&mut self, keep: &[Pending<Self::Handle>]) -> Result<(), TaskError>;
}

/// A transactional sink run by the engine's two-phase commit protocol.
pub struct TwoPhaseCommitSink<T, S: TransactionalSink<T>> {
    sink: S,
    pending: Vec<Pending<S::Handle>>,
    in_transaction: bool,
    checkpointing: bool,
    uid: Option<OperatorUid>,
    /// Where the subtask runs and its fault points; set by `open`.
    place: Option<SinkPlace>,
    _records: PhantomData<fn(T)>,
}

/// Where a sink's subtask runs, for its fault points.
#[derive(Clone, Debug)]
struct SinkPlace {
    job: JobId,
    task: TaskRef,
    faults: Faults,
}

/// Passes the fault point of `step` for checkpoint `id` at `place` (none before the sink opened): an injected
/// failure is an IO error of the step.
async fn step(place: Option<SinkPlace>, step: SinkStep, id: CheckpointId) -> Result<(), TaskError> {
    let Some(place) = place else { return Ok(()) };
    let point = FaultPoint::Sink { job: place.job, task: place.task, id, step };
    place.faults.obey(point).await.map_err(|injected| injected_error(&injected))
}

/// The pending transactions, as operator state.
fn pending_descriptor<H: Serialize + DeserializeOwned + Clone + Send + Sync + 'static>()
-> OperatorListDescriptor<Pending<H>> {
    OperatorListDescriptor::union("pending-transactions")
}

/// The checkpoint a snapshot was taken for, so that a restore knows which commits its state covers. Union: every
/// subtask's entry is the same id.
const SNAPSHOT_CHECKPOINT: OperatorListDescriptor<CheckpointId> = OperatorListDescriptor::union("snapshot-checkpoint");

impl<T, S: TransactionalSink<T>> TwoPhaseCommitSink<T, S> {
    /// The protocol around `sink`.
    pub fn of(sink: S) -> Self {
        TwoPhaseCommitSink {
            sink,
            pending: Vec::new(),
            in_transaction: false,
            checkpointing: false,
            uid: None,
            place: None,
            _records: PhantomData,
        }
    }

    /// The sink the protocol runs.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    fn state_error(&self, source: crate::state::StateError) -> TaskError {
        TaskError::from(TaskFailure::State { operator: self.uid.clone().expect("opened"), source })
    }

    /// Commits `transactions`, trying again on an error that may pass.
    async fn commit_retrying(&mut self, transactions: &[Pending<S::Handle>]) -> Result<(), TaskError> {
        let last = transactions.iter().map(|t| t.checkpoint).max().expect("something to commit");
        let mut attempt = 1;
        loop {
            let committed = match step(self.place.clone(), SinkStep::Commit, last).await {
                Ok(()) => match self.sink.commit(transactions).await {
                    Ok(()) => step(self.place.clone(), SinkStep::Committed, last).await,
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            match committed.as_ref().map_err(|error| &**error) {
                Ok(()) => return Ok(()),
                Err(TaskFailure::Storage(error)) if passes(error) && attempt < COMMIT_ATTEMPTS => {
                    tracing::info!(target: "weir::trace", %error, attempt, "sink commit failed; trying again");
                    attempt += 1;
                    runtime::sleep(COMMIT_RETRY_PAUSE).await;
                }
                Err(_) => return committed,
            }
        }
    }

    /// Commits every pending transaction of a checkpoint up to `checkpoint`, in checkpoint order.
    async fn commit_up_to(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        let ready: Vec<Pending<S::Handle>> =
            self.pending.iter().filter(|t| t.checkpoint <= checkpoint).cloned().collect();
        if ready.is_empty() {
            return Ok(());
        }
        self.commit_retrying(&ready).await?;
        for transaction in &ready {
            tracing::info!(target: "weir::trace", checkpoint = %transaction.checkpoint, "sink committed");
        }
        self.pending.retain(|t| t.checkpoint > checkpoint);
        Ok(())
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        step(self.place.clone(), SinkStep::PreCommit, checkpoint).await?;
        if let Some(handle) = self.sink.pre_commit(checkpoint).await? {
            self.pending.push(Pending { checkpoint, handle });
        }
        self.in_transaction = false;
        Ok(())
    }
}

/// An injected failure of a sink's step, as the IO error it stands for.
pub fn injected_error(injected: &Injected) -> TaskError {
    TaskError::from(TaskFailure::Storage(StorageError::Io {
        op: "sink",
        path: std::path::PathBuf::from("<injected>"),
        message: injected.to_string(),
    }))
}

/// Whether a storage error may pass if the step is tried again.
fn passes(error: &StorageError) -> bool {
    matches!(error, StorageError::Io { .. } | StorageError::Stale { .. })
}

#[async_trait]
impl<T: Send + 'static, S: TransactionalSink<T>> Sink<T> for TwoPhaseCommitSink<T, S> {
    async fn open(
        &mut self,
        context: OperatorContext<'_>,
        restored: Option<&OperatorStateStore>,
    ) -> Result<(), TaskError> {
        self.checkpointing = context.checkpointing;
        self.uid = Some(context.uid.clone());
        self.place =
            Some(SinkPlace { job: context.info.job, task: context.info.task_ref(), faults: context.faults.clone() });
        self.sink.open(context).await?;
        let mut keep = Vec::new();
        if let Some(restored) = restored {
            let pending = restored.get(&pending_descriptor::<S::Handle>()).map_err(|e| context.state_error(e))?;
            // Snapshots taken before the protocol recorded their checkpoint say nothing of it.
            let checkpoint = restored.get(&SNAPSHOT_CHECKPOINT).map_err(|e| context.state_error(e))?.into_iter().max();
            self.sink.recover(checkpoint, &pending).await?;
            if let Some(last) = pending.iter().map(|t| t.checkpoint).max() {
                step(self.place.clone(), SinkStep::RecoverCommit, last).await?;
                self.commit_retrying(&pending).await?;
            }
            for transaction in &pending {
                tracing::info!(target: "weir::trace", checkpoint = %transaction.checkpoint, "sink committed on restore");
            }
            keep = pending;
        }
        let newest_kept = keep.iter().map(|t| t.checkpoint).max().unwrap_or(CheckpointId(0));
        step(self.place.clone(), SinkStep::Abort, newest_kept).await?;
        self.sink.abort_all_except(&keep).await
    }

    async fn write(&mut self, records: &mut Vec<T>) -> Result<(), TaskError> {
        if let Some(place) = self.place.as_ref().filter(|place| place.faults.may_act(PointKind::Interleave)) {
            place.faults.interleave(place.task, Interleaving::SinkWrite).await;
        }
        if !self.in_transaction {
            self.sink.begin().await?;
            self.in_transaction = true;
        }
        self.sink.write(records).await
    }

    async fn snapshot(&mut self, checkpoint: CheckpointId, state: &mut OperatorStateStore) -> Result<(), TaskError> {
        self.pre_commit(checkpoint).await?;
        state.set(&SNAPSHOT_CHECKPOINT, &[checkpoint]).map_err(|e| self.state_error(e))?;
        let pending = self.pending.clone();
        state.set(&pending_descriptor::<S::Handle>(), &pending).map_err(|e| self.state_error(e))
    }

    async fn finish(&mut self) -> Result<(), TaskError> {
        if self.checkpointing {
            // The final checkpoint pre-commits and commits what is left.
            return Ok(());
        }
        self.pre_commit(END_OF_INPUT_COMMIT).await?;
        self.commit_up_to(END_OF_INPUT_COMMIT).await
    }

    async fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.commit_up_to(checkpoint).await
    }
}
