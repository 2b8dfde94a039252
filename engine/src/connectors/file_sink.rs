//! A transactional file sink: the steps of two-phase commit over files, run by the engine's protocol
//! ([`crate::operators::two_phase`]).
//!
//! Records are written into the current transaction, a hidden in-progress file
//! `.part-<subtask>-<job>-<attempt>-<seq>.inprogress` (numbers zero-padded). Pre-committing flushes and fsyncs it
//! and makes its directory entry durable. Committing renames it to `part-<subtask>-<checkpoint>-<job>-<attempt>-<seq>`
//! and fsyncs the directory; a commit is idempotent (a missing in-progress file whose committed name exists was
//! committed already). Aborting deletes every in-progress file of earlier attempts the restored checkpoint does not
//! list.
//!
//! A restore from a checkpoint older than the newest committed part would replay records
//! whose output is committed already, duplicating it, so the sink refuses it (naming both
//! checkpoints) unless told to discard the newer parts first.
//!
//! The committed output is the set of `part-*` files; in-progress files are never output.

use crate::error::{TaskError, TaskFailure};
use crate::faults::{FaultPoint, Faults, SinkStep};
use crate::ids::{CheckpointId, JobId, OperatorUid, TaskRef};
use crate::operators::OperatorContext;
use crate::operators::two_phase::{self, END_OF_INPUT_COMMIT, Pending, TransactionalSink, TwoPhaseCommitSink};
use crate::seam::storage::{StorageError, StorageRef, WriteFile};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Formats one record as one line (without the newline).
pub type LineFormat<T> = Arc<dyn Fn(&T, &mut String) + Send + Sync>;

/// Bytes buffered before a write reaches storage.
const WRITE_BUFFER_BYTES: usize = 4 << 10;

/// A pre-committed file transaction, as checkpoints record it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTransaction {
    pub checkpoint: CheckpointId,
    /// The transaction's name; its in-progress file is `.<name>.inprogress`.
    pub name: String,
    /// The file name once committed: `part-<subtask>-<checkpoint>-<name's rest>`. Checkpoint
    /// ids increase across restores too, so name order is commit order within a subtask.
    pub committed: String,
}

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
        return Err(TaskFailure::RestoreRefused { operator: uid.clone(), message: ahead.to_string() }.into());
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

/// The file sink: [`FileTransactions`] run by the engine's two-phase commit protocol.
pub type FileSink<T> = TwoPhaseCommitSink<T, FileTransactions<T>>;

/// The steps of two-phase commit over part files in one directory.
pub struct FileTransactions<T> {
    dir: PathBuf,
    format: LineFormat<T>,
    buffer: String,
    current: Option<Transaction>,
    /// `part-<subtask>-<job>-<attempt>-`: unique per subtask and deployment.
    prefix: String,
    /// `part-<subtask>-`.
    subtask_prefix: String,
    /// `-<job>-<attempt>-`: what every file of this deployment, of any subtask, holds in its name.
    deployment: String,
    next_sequence: u64,
    /// On restore, delete committed parts newer than the restored checkpoint instead of
    /// refusing to resume.
    discard_newer_output: bool,
    uid: Option<OperatorUid>,
    storage: Option<StorageRef>,
    /// The subtask's fault points, and where they are: the commit marks its step between the renames and the fsync.
    faults: Option<(Faults, JobId, TaskRef)>,
}

/// The in-progress file of a transaction.
pub fn in_progress_name(name: &str) -> String {
    format!(".{name}.inprogress")
}

impl<T: Send + 'static> TwoPhaseCommitSink<T, FileTransactions<T>> {
    /// A file sink writing part files into `dir`, one line per record.
    pub fn new(dir: PathBuf, format: LineFormat<T>) -> Self {
        TwoPhaseCommitSink::of(FileTransactions::new(dir, format))
    }

    /// On a restore from a checkpoint older than the newest committed part, delete the
    /// newer parts (durably) instead of refusing to resume: the records behind them are
    /// replayed and committed again.
    pub fn discard_newer_output(mut self, discard: bool) -> Self {
        self.inner_mut().discard_newer_output = discard;
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
}

impl<T: Send + 'static> FileTransactions<T> {
    pub fn new(dir: PathBuf, format: LineFormat<T>) -> Self {
        FileTransactions {
            dir,
            format,
            buffer: String::new(),
            current: None,
            prefix: String::new(),
            subtask_prefix: String::new(),
            deployment: String::new(),
            next_sequence: 0,
            discard_newer_output: false,
            uid: None,
            storage: None,
            faults: None,
        }
    }

    fn storage(&self) -> &StorageRef {
        self.storage.as_ref().expect("the sink is opened before use")
    }

    /// Writes the buffered lines into the current transaction's file, creating it first if need be.
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
        // The state says the transaction was pre-committed (durably), the output says it never was: that holds on
        // every retry, so the job fails instead of restarting forever.
        Err(StorageError::NotFound { .. }) => Err(TaskFailure::RestoreRefused {
            operator: uid.clone(),
            message: format!(
                "pending transaction `{}` of checkpoint {} is neither in progress nor committed in `{}`: the output directory was moved or cleaned since the checkpoint, or the checkpoint is one its job never completed (its job manager died as it wrote it) whose transactions a later attempt aborted",
                transaction.name,
                transaction.checkpoint,
                dir.display()
            ),
        }.into()),
        Err(other) => Err(other.into()),
    }
}

#[async_trait]
impl<T: Send + 'static> TransactionalSink<T> for FileTransactions<T> {
    type Handle = PendingTransaction;

    async fn open(&mut self, context: OperatorContext<'_>) -> Result<(), TaskError> {
        let storage = context.storage.clone();
        storage.create_dir_all(&self.dir).await?;
        let info = context.info;
        self.subtask_prefix = format!("part-{:04}-", info.subtask.0);
        self.prefix = format!("{}{}-{:04}-", self.subtask_prefix, info.job, info.attempt.0);
        self.deployment = format!("-{}-{:04}-", info.job, info.attempt.0);
        self.uid = Some(context.uid.clone());
        self.storage = Some(storage);
        self.faults = Some((context.faults.clone(), info.job, info.task_ref()));
        Ok(())
    }

    async fn recover(
        &mut self,
        restored: Option<CheckpointId>,
        _pending: &[Pending<PendingTransaction>],
    ) -> Result<(), TaskError> {
        match restored {
            Some(checkpoint) => {
                let uid = self.uid.clone().expect("opened");
                reconcile_newer_output(self.storage(), &self.dir, checkpoint, self.discard_newer_output, &uid).await
            }
            None => Ok(()),
        }
    }

    async fn begin(&mut self) -> Result<(), TaskError> {
        // The transaction's file is created with its first bytes: a transaction that stays empty leaves nothing.
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

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<PendingTransaction>, TaskError> {
        self.write_buffer().await?;
        let Some(mut transaction) = self.current.take() else { return Ok(None) };
        transaction.file.sync().await?;
        // The in-progress file's directory entry must be durable too, or a storage crash after the checkpoint
        // completes loses a transaction it covers; and it must still be there after that fsync (a crash before it
        // may have lost the entry while the fsync, issued after the crash, succeeded).
        let path = self.dir.join(in_progress_name(&transaction.name));
        self.storage().sync_dir(&self.dir).await?;
        if !self.storage().exists(&path).await? {
            return Err(TaskFailure::Storage(StorageError::Stale { op: "pre-commit", path }).into());
        }
        let rest = transaction.name.strip_prefix(&self.subtask_prefix).expect("named by this sink");
        let committed = format!("{}{:020}-{rest}", self.subtask_prefix, checkpoint.0);
        Ok(Some(PendingTransaction { checkpoint, name: transaction.name, committed }))
    }

    async fn commit(&mut self, transactions: &[Pending<PendingTransaction>]) -> Result<(), TaskError> {
        let uid = self.uid.clone().expect("opened");
        for transaction in transactions {
            commit(self.storage(), &self.dir, &transaction.handle, &uid).await?;
            tracing::info!(target: "weir::trace", part = %transaction.handle.committed, checkpoint = %transaction.checkpoint, "part committed");
        }
        if let (Some((faults, job, task)), Some(last)) =
            (self.faults.clone(), transactions.iter().map(|t| t.checkpoint).max())
        {
            let point = FaultPoint::Sink { job, task, id: last, step: SinkStep::CommitApplied };
            faults.obey(point).await.map_err(|injected| two_phase::injected_error(&injected))?;
        }
        // One directory fsync makes every rename above durable.
        self.storage().sync_dir(&self.dir).await?;
        // A storage crash between a rename and that fsync may lose the rename while the fsync, issued after the
        // crash, succeeds (another writer of the directory may have drawn its error): a committed part missing
        // now is a failed commit, which the protocol retries.
        for transaction in transactions {
            let path = self.dir.join(&transaction.handle.committed);
            if !self.storage().exists(&path).await? {
                return Err(TaskFailure::Storage(StorageError::Stale { op: "commit", path }).into());
            }
        }
        Ok(())
    }

    async fn abort_all_except(&mut self, keep: &[Pending<PendingTransaction>]) -> Result<(), TaskError> {
        // What earlier deployments left in progress and the restored checkpoint does not know holds records after
        // it, which are replayed. Files of this deployment (any subtask) are live, whatever their age.
        let keep: Vec<String> = keep.iter().map(|t| in_progress_name(&t.handle.name)).collect();
        let storage = self.storage().clone();
        let mut removed = false;
        for name in storage.list(&self.dir).await? {
            let stale = name.starts_with(".part-") && name.ends_with(".inprogress") && !name.contains(&self.deployment);
            if stale && !keep.contains(&name) {
                match storage.remove_file(&self.dir.join(&name)).await {
                    // Another subtask of this deployment aborted it first.
                    Ok(()) | Err(StorageError::NotFound { .. }) => removed = true,
                    Err(other) => return Err(other.into()),
                }
            }
        }
        if removed {
            storage.sync_dir(&self.dir).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Attempt, JobId, SubtaskIndex, VertexId};
    use crate::operators::SubtaskInfo;
    use crate::operators::sink::Sink;
    use crate::seam::storage::LocalStorage;
    use crate::state::operator::OperatorStateStore;
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
            let context = OperatorContext {
                uid: &self.uid,
                info: &info,
                storage: &self.storage,
                checkpointing: true,
                faults: &Faults::none(),
            };
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
        block_on(sink.inner_mut().write_buffer()).unwrap();
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
        let context = OperatorContext {
            uid: &fixture.uid,
            info: &first,
            storage: &fixture.storage,
            checkpointing: true,
            faults: &Faults::none(),
        };
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
        let context = OperatorContext {
            uid: &fixture.uid,
            info: &third,
            storage: &fixture.storage,
            checkpointing: true,
            faults: &Faults::none(),
        };
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
        let context = OperatorContext {
            uid: &fixture.uid,
            info: &info,
            storage: &fixture.storage,
            checkpointing: false,
            faults: &Faults::none(),
        };
        block_on(sink.open(context, None)).unwrap();
        fixture.write(&mut sink, 0..3);
        block_on(sink.finish()).unwrap();
        assert_eq!(fixture.committed(), vec![0, 1, 2]);
    }
}
