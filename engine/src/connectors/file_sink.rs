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
//! A restore from a checkpoint older than the newest committed part would replay records
//! whose output is committed already, duplicating it, so the sink refuses it (naming both
//! checkpoints) unless told to discard the newer parts first.
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
const WRITE_BUFFER_BYTES: usize = 4 << 10;

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

/// The checkpoint the snapshot was taken for, so that a restore knows which committed parts
/// its state covers. Union: every subtask's entry is the same id.
const SNAPSHOT_CHECKPOINT: OperatorListDescriptor<CheckpointId> = OperatorListDescriptor::union("snapshot-checkpoint");

/// The id under which a sink without checkpointing commits at the end of its input.
const END_OF_INPUT_COMMIT: CheckpointId = CheckpointId(u64::MAX);

/// The checkpoint a committed part file belongs to: `part-<subtask>-<checkpoint>-…`.
pub fn committed_part_checkpoint(name: &str) -> Option<CheckpointId> {
    let rest = name.strip_prefix("part-")?;
    let (_subtask, rest) = rest.split_once('-')?;
    let checkpoint = rest.split('-').next()?;
    checkpoint.parse().ok().map(CheckpointId)
}

/// The newest checkpoint with a committed part file in `dir`; `None` when there is none
/// (or no `dir`).
pub async fn newest_committed_checkpoint(
    storage: &StorageRef,
    dir: &Path,
) -> Result<Option<CheckpointId>, StorageError> {
    if !storage.exists(dir).await? {
        return Ok(None);
    }
    Ok(storage.list(dir).await?.iter().filter_map(|name| committed_part_checkpoint(name)).max())
}

/// A restore from an older checkpoint than the newest committed output: resuming would
/// duplicate everything committed after the restored checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputAheadOfRestore {
    pub dir: PathBuf,
    pub newest: CheckpointId,
    pub restored: CheckpointId,
}

impl std::fmt::Display for OutputAheadOfRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (dir, newest, restored) = (self.dir.display(), self.newest, self.restored);
        let discard = "or discard the newer parts (`weir run --discard-newer-output`)";
        if newest == END_OF_INPUT_COMMIT {
            write!(
                f,
                "the output `{dir}` holds parts committed at the end of a run without checkpoints, after the restored \
                 checkpoint {restored}: resuming would duplicate them; write to another output, {discard}"
            )
        } else {
            write!(
                f,
                "the output `{dir}` holds parts committed by checkpoint {newest}, newer than the restored checkpoint \
                 {restored}: resuming would duplicate the output after checkpoint {restored}; resume from checkpoint \
                 {newest} or later, {discard}"
            )
        }
    }
}

impl std::error::Error for OutputAheadOfRestore {}

/// Refuses, or with `discard` prepares, a restore of checkpoint `restored` into `dir`, which
/// may hold parts committed after it.
async fn reconcile_newer_output(
    storage: &StorageRef,
    dir: &Path,
    restored: CheckpointId,
    discard: bool,
    uid: &OperatorUid,
) -> Result<(), TaskError> {
    let Err(ahead) = check_restore(storage, dir, restored).await? else { return Ok(()) };
    if !discard {
        return Err(TaskError::RestoreRefused { operator: uid.clone(), message: ahead.to_string() });
    }
    // Every subtask discards every newer part (a rescale may have renumbered them); a part
    // another subtask removed first is gone already.
    for name in storage.list(dir).await? {
        if committed_part_checkpoint(&name).is_some_and(|checkpoint| checkpoint > restored) {
            match storage.remove_file(&dir.join(&name)).await {
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(other) => return Err(other.into()),
            }
            tracing::info!(target: "weir::trace", part = %name, checkpoint = %restored, "sink discarded a part newer than the restored checkpoint");
        }
    }
    storage.sync_dir(dir).await?;
    Ok(())
}

/// Checks that restoring `restored` into `dir` duplicates nothing.
pub async fn check_restore(
    storage: &StorageRef,
    dir: &Path,
    restored: CheckpointId,
) -> Result<Result<(), OutputAheadOfRestore>, StorageError> {
    Ok(match newest_committed_checkpoint(storage, dir).await? {
        Some(newest) if newest > restored => Err(OutputAheadOfRestore { dir: dir.to_path_buf(), newest, restored }),
        _ => Ok(()),
    })
}

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
    /// A deliberately broken mode for the simulator's canary: commit at pre-commit, before
    /// the checkpoint completes. A failure before completion then duplicates output.
    eager_commit: bool,
    /// On restore, delete committed parts newer than the restored checkpoint instead of
    /// refusing to resume.
    discard_newer_output: bool,
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
            eager_commit: false,
            discard_newer_output: false,
            uid: None,
            storage: None,
        }
    }

    /// The broken canary variant: commits before the checkpoint completes. Never use it
    /// outside the simulator's negative scenarios.
    pub fn eager_commit(mut self) -> Self {
        self.eager_commit = true;
        self
    }

    /// On a restore from a checkpoint older than the newest committed part, delete the
    /// newer parts (durably) instead of refusing to resume: the records behind them are
    /// replayed and committed again.
    pub fn discard_newer_output(mut self, discard: bool) -> Self {
        self.discard_newer_output = discard;
        self
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
            // The in-progress file's directory entry must be durable too, or a storage
            // crash after the checkpoint completes loses a transaction it covers.
            self.storage().sync_dir(&self.dir).await?;
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
            tracing::info!(target: "weir::trace", transaction = %transaction.committed, checkpoint = %transaction.checkpoint, "sink committed");
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
            // Snapshots taken before the sink recorded their checkpoint cannot be checked.
            let snapshot_checkpoint = restored.get(&SNAPSHOT_CHECKPOINT).map_err(|e| context.state_error(e))?;
            // The canary is broken on purpose: its duplicates are what the checkers must catch.
            if let Some(checkpoint) = snapshot_checkpoint.into_iter().max().filter(|_| !self.eager_commit) {
                reconcile_newer_output(&storage, &self.dir, checkpoint, self.discard_newer_output, context.uid).await?;
            }
            let pending = restored.get(&PENDING).map_err(|e| context.state_error(e))?;
            for transaction in &pending {
                commit(&storage, &self.dir, transaction, context.uid).await?;
                tracing::info!(target: "weir::trace", transaction = %transaction.committed, checkpoint = %transaction.checkpoint, "sink committed on restore");
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
        if self.eager_commit {
            self.commit_up_to(checkpoint).await?;
        }
        let uid = self.uid.clone().expect("opened");
        state
            .set(&SNAPSHOT_CHECKPOINT, &[checkpoint])
            .map_err(|source| TaskError::State { operator: uid.clone(), source })?;
        state.set(&PENDING, &self.pending).map_err(|source| TaskError::State { operator: uid, source })
    }

    async fn finish(&mut self) -> Result<(), TaskError> {
        if self.checkpointing {
            // The final checkpoint pre-commits and commits what is left.
            return self.write_buffer().await;
        }
        let last = END_OF_INPUT_COMMIT;
        self.pre_commit(last).await?;
        self.commit_up_to(last).await
    }

    async fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.commit_up_to(checkpoint).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Attempt, JobId, SubtaskIndex, VertexId};
    use crate::operators::SubtaskInfo;
    use crate::seam::storage::LocalStorage;
    use std::future::Future;

    /// Local storage never suspends, so one poll completes every call.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(future).poll(&mut context) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("local storage suspended"),
        }
    }

    fn info(attempt: u32) -> SubtaskInfo {
        SubtaskInfo {
            job: JobId(7),
            job_name: "test".into(),
            vertex: VertexId(0),
            vertex_name: "sink".into(),
            subtask: SubtaskIndex(0),
            parallelism: 1,
            max_parallelism: 128,
            attempt: Attempt(attempt),
        }
    }

    struct Fixture {
        dir: PathBuf,
        storage: StorageRef,
        uid: OperatorUid,
    }

    impl Fixture {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("weir-file-sink-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir); // real-only: a test fixture
            Fixture { dir, storage: Arc::new(LocalStorage), uid: OperatorUid("sink".into()) }
        }

        fn open(&self, attempt: u32, restored: Option<&OperatorStateStore>) -> FileSink<u32> {
            let mut sink =
                FileSink::new(self.dir.clone(), Arc::new(|n: &u32, line: &mut String| line.push_str(&n.to_string())));
            let info = info(attempt);
            let context = OperatorContext { uid: &self.uid, info: &info, storage: &self.storage, checkpointing: true };
            block_on(sink.open(context, restored)).unwrap();
            sink
        }

        fn write(&self, sink: &mut FileSink<u32>, records: std::ops::Range<u32>) {
            block_on(sink.write(&mut records.collect())).unwrap();
        }

        fn snapshot(&self, sink: &mut FileSink<u32>, checkpoint: u64) -> OperatorStateStore {
            let mut state = OperatorStateStore::default();
            block_on(sink.snapshot(CheckpointId(checkpoint), &mut state)).unwrap();
            state
        }

        /// Committed records, in commit order.
        fn committed(&self) -> Vec<u32> {
            let listing = std::fs::read_dir(&self.dir); // real-only: a test fixture
            let mut names: Vec<String> = listing
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("part-"))
                .collect();
            names.sort();
            names
                .iter()
                .flat_map(|n| {
                    std::fs::read_to_string(self.dir.join(n)) // real-only: a test fixture
                        .unwrap()
                        .lines()
                        .map(|l| l.parse().unwrap())
                        .collect::<Vec<u32>>()
                })
                .collect()
        }
    }

    #[test]
    fn nothing_is_committed_before_its_checkpoint_completes() {
        let fixture = Fixture::new("before");
        let mut sink = fixture.open(0, None);
        fixture.write(&mut sink, 0..10);
        fixture.snapshot(&mut sink, 1);
        assert!(fixture.committed().is_empty(), "pre-committed data must stay invisible");
        block_on(sink.notify_checkpoint_complete(CheckpointId(1))).unwrap();
        assert_eq!(fixture.committed(), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_lost_notification_is_covered_by_the_next_and_repeats_are_harmless() {
        let fixture = Fixture::new("lost");
        let mut sink = fixture.open(0, None);
        fixture.write(&mut sink, 0..5);
        fixture.snapshot(&mut sink, 1);
        fixture.write(&mut sink, 5..9);
        fixture.snapshot(&mut sink, 2);
        // The notification for 1 is lost; 2's commits both transactions, in order.
        block_on(sink.notify_checkpoint_complete(CheckpointId(2))).unwrap();
        assert_eq!(fixture.committed(), (0..9).collect::<Vec<_>>());
        block_on(sink.notify_checkpoint_complete(CheckpointId(1))).unwrap();
        block_on(sink.notify_checkpoint_complete(CheckpointId(2))).unwrap();
        assert_eq!(fixture.committed(), (0..9).collect::<Vec<_>>());
    }

    #[test]
    fn a_restore_commits_the_checkpoints_pending_transactions_and_aborts_the_rest() {
        let fixture = Fixture::new("restore");
        let mut sink = fixture.open(0, None);
        fixture.write(&mut sink, 0..4);
        let state = fixture.snapshot(&mut sink, 1);
        // Records after checkpoint 1, in a transaction no checkpoint covers; then a crash
        // after checkpoint 1 completed but before its notification arrived.
        fixture.write(&mut sink, 4..8);
        block_on(sink.write_buffer()).unwrap();
        drop(sink);
        let restored = OperatorStateStore::restore(&state.snapshot());
        let mut sink = fixture.open(1, Some(&restored));
        assert_eq!(
            fixture.committed(),
            (0..4).collect::<Vec<_>>(),
            "checkpoint 1's transaction is committed on restore"
        );
        let listing = std::fs::read_dir(&fixture.dir); // real-only: a test fixture
        let in_progress =
            listing.unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".inprogress")).count();
        assert_eq!(in_progress, 0, "the uncovered transaction is aborted");
        // A second restore from the same checkpoint commits idempotently.
        drop(sink);
        sink = fixture.open(2, Some(&restored));
        fixture.write(&mut sink, 4..8);
        fixture.snapshot(&mut sink, 2);
        block_on(sink.notify_checkpoint_complete(CheckpointId(2))).unwrap();
        assert_eq!(fixture.committed(), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_restore_older_than_the_committed_output_is_refused_unless_newer_parts_are_discarded() {
        let fixture = Fixture::new("older");
        let mut sink = fixture.open(0, None);
        fixture.write(&mut sink, 0..3);
        let at_1 = fixture.snapshot(&mut sink, 1);
        block_on(sink.notify_checkpoint_complete(CheckpointId(1))).unwrap();
        fixture.write(&mut sink, 3..6);
        let at_2 = fixture.snapshot(&mut sink, 2);
        block_on(sink.notify_checkpoint_complete(CheckpointId(2))).unwrap();
        drop(sink);
        assert_eq!(fixture.committed(), (0..6).collect::<Vec<_>>());

        // Restoring checkpoint 1 would replay 3..6, whose output checkpoint 2 committed.
        let older = OperatorStateStore::restore(&at_1.snapshot());
        let mut refused =
            FileSink::new(fixture.dir.clone(), Arc::new(|n: &u32, line: &mut String| line.push_str(&n.to_string())));
        let first = info(1);
        let context =
            OperatorContext { uid: &fixture.uid, info: &first, storage: &fixture.storage, checkpointing: true };
        let error = block_on(refused.open(context, Some(&older))).unwrap_err();
        assert!(error.is_deterministic(), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("committed by checkpoint 2, newer than the restored checkpoint 1")
                && message.contains(&fixture.dir.display().to_string()),
            "{message}"
        );
        assert_eq!(fixture.committed(), (0..6).collect::<Vec<_>>(), "a refused restore changes nothing");

        // The newest checkpoint restores as before.
        drop(fixture.open(2, Some(&OperatorStateStore::restore(&at_2.snapshot()))));

        // Told to, the sink discards checkpoint 2's parts; the replay commits them again.
        let mut discarding =
            FileSink::new(fixture.dir.clone(), Arc::new(|n: &u32, line: &mut String| line.push_str(&n.to_string())))
                .discard_newer_output(true);
        let third = info(3);
        let context =
            OperatorContext { uid: &fixture.uid, info: &third, storage: &fixture.storage, checkpointing: true };
        block_on(discarding.open(context, Some(&older))).unwrap();
        assert_eq!(fixture.committed(), (0..3).collect::<Vec<_>>());
        fixture.write(&mut discarding, 3..6);
        fixture.snapshot(&mut discarding, 3);
        block_on(discarding.notify_checkpoint_complete(CheckpointId(3))).unwrap();
        assert_eq!(fixture.committed(), (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn committed_part_names_carry_their_checkpoint() {
        assert_eq!(committed_part_checkpoint("part-0003-00000000000000000011-7-0002-00000004"), Some(CheckpointId(11)));
        assert_eq!(committed_part_checkpoint(".part-0003-7-0002-00000004.inprogress"), None);
        assert_eq!(committed_part_checkpoint("part-0003"), None);
        assert_eq!(committed_part_checkpoint("notes.txt"), None);
    }

    #[test]
    fn without_checkpointing_the_sink_commits_at_the_end_of_input() {
        let fixture = Fixture::new("no-checkpoints");
        let mut sink =
            FileSink::new(fixture.dir.clone(), Arc::new(|n: &u32, line: &mut String| line.push_str(&n.to_string())));
        let info = info(0);
        let context =
            OperatorContext { uid: &fixture.uid, info: &info, storage: &fixture.storage, checkpointing: false };
        block_on(sink.open(context, None)).unwrap();
        fixture.write(&mut sink, 0..3);
        block_on(sink.finish()).unwrap();
        assert_eq!(fixture.committed(), vec![0, 1, 2]);
    }
}
