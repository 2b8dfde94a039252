//! A simulated key-value table and its transactional sink: the steps of two-phase commit for a store that is not
//! a file system, run by the engine's protocol ([`TwoPhaseCommitSink`](engine::operators::two_phase)).
//!
//! The table keeps every version of a cell, as Bigtable and HBase do: a write of `(row, column) = value` adds a
//! version, and a cell's value is its newest. It lives in the storage seam (so the simulator can fail, fill, slow
//! down and crash it) as batches of writes and a commit marker per batch:
//!
//! ```text
//! <dir>/batches/<transaction>.batch   one `row column value` line per write; written and fsynced at pre-commit
//! <dir>/commits/<transaction>         the commit marker: the batch is part of the table once this exists
//! ```
//!
//! A transaction is named `<checkpoint>-<subtask>-<job>-<attempt>-<sequence>` (numbers zero-padded), so the
//! markers, sorted by name, are the table's batches in commit order: checkpoint ids increase across restores, and
//! within one checkpoint every row belongs to one subtask.
//!
//! - **Pre-commit** writes the open transaction's batch, fsyncs it and its directory: durable, invisible.
//! - **Commit** creates the batch's marker and fsyncs its directory. A batch whose marker exists is committed
//!   already, so a commit repeated (a repeated notification, a restore) changes nothing: the marker is what makes
//!   applying a batch idempotent.
//! - **Abort** removes every batch that earlier deployments left without a marker, but those the restored
//!   checkpoint still holds pending (they are committed next).
//! - **Recover** refuses a restore from a checkpoint older than the newest committed batch: resuming would write
//!   the versions after it a second time.

use async_trait::async_trait;
use engine::error::{TaskError, TaskFailure};
use engine::ids::{CheckpointId, OperatorUid};
use engine::operators::OperatorContext;
use engine::operators::two_phase::{Pending, TransactionalSink};
use engine::seam::storage::{StorageError, StorageRef};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The column of a user's row that holds the user's clicks in all.
pub const TOTAL_COLUMN: &str = "total";

/// One write to the table: a new version of cell `(row, column)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub row: String,
    pub column: String,
    pub value: u64,
}

/// The write as one line of a batch (and of the committed output): `row column value`.
impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.row, self.column, self.value)
    }
}

/// A pre-committed transaction, as checkpoints record it until it is committed: its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub name: String,
}

fn batches_dir(table: &Path) -> PathBuf {
    table.join("batches")
}

fn commits_dir(table: &Path) -> PathBuf {
    table.join("commits")
}

fn batch_file(name: &str) -> String {
    format!("{name}.batch")
}

/// The checkpoint a transaction belongs to, from its name.
fn checkpoint_of(name: &str) -> Option<CheckpointId> {
    name.split('-').next()?.parse().ok().map(CheckpointId)
}

/// The table's committed batches, in commit order: `(transaction, its lines)`.
pub async fn committed_batches(storage: &StorageRef, table: &Path) -> Result<Vec<(String, String)>, StorageError> {
    let commits = commits_dir(table);
    if !storage.exists(&commits).await? {
        return Ok(Vec::new());
    }
    let mut batches = Vec::new();
    for name in storage.list(&commits).await? {
        let bytes = storage.read(&batches_dir(table).join(batch_file(&name))).await?;
        batches.push((name, String::from_utf8_lossy(&bytes).into_owned()));
    }
    Ok(batches)
}

/// Every version the table holds, one `row column value` line each, in commit order: the sink's committed output.
pub async fn read_versions(storage: &StorageRef, table: &Path) -> Result<String, StorageError> {
    Ok(committed_batches(storage, table).await?.into_iter().map(|(_, lines)| lines).collect())
}

/// The fields of a `row column value` line, if it is one.
pub fn parse_line(line: &str) -> Option<(&str, &str, u64)> {
    let mut fields = line.split(' ');
    let (row, column, value) = (fields.next()?, fields.next()?, fields.next()?.parse().ok()?);
    fields.next().is_none().then_some((row, column, value))
}

/// The table's cells at their newest versions, from its versions in commit order: `(row, column) -> value`.
pub fn newest_values<'a>(versions: impl IntoIterator<Item = &'a str>) -> BTreeMap<(&'a str, &'a str), u64> {
    let mut cells = BTreeMap::new();
    for (row, column, value) in versions.into_iter().filter_map(parse_line) {
        cells.insert((row, column), value);
    }
    cells
}

/// The table's transactional steps for one sink subtask.
pub struct TableTransactions {
    dir: PathBuf,
    /// The open transaction's lines, written to storage whole at pre-commit.
    open: String,
    /// Transactions this subtask started, for unique names.
    sequence: u64,
    /// `<subtask>`, zero-padded.
    subtask: String,
    /// `-<job>-<attempt>-`: what every transaction of this deployment's subtasks has in its name.
    deployment: String,
    uid: Option<OperatorUid>,
    storage: Option<StorageRef>,
}

impl TableTransactions {
    /// The steps for the table at `dir`.
    pub fn new(dir: PathBuf) -> Self {
        TableTransactions {
            dir,
            open: String::new(),
            sequence: 0,
            subtask: String::new(),
            deployment: String::new(),
            uid: None,
            storage: None,
        }
    }

    fn storage(&self) -> &StorageRef {
        self.storage.as_ref().expect("the sink is opened before use")
    }

    fn uid(&self) -> OperatorUid {
        self.uid.clone().expect("the sink is opened before use")
    }

    /// The names of the committed transactions.
    async fn committed(&self) -> Result<BTreeSet<String>, StorageError> {
        Ok(self.storage().list(&commits_dir(&self.dir)).await?.into_iter().collect())
    }
}

/// `Stale` unless `path` exists: after a storage crash between a change and the fsync of its directory the fsync,
/// issued after the crash, may succeed while the change is gone. The protocol tries a stale step again.
async fn still_there(storage: &StorageRef, path: PathBuf, op: &'static str) -> Result<(), TaskError> {
    if storage.exists(&path).await? {
        Ok(())
    } else {
        Err(TaskFailure::Storage(StorageError::Stale { op, path }).into())
    }
}

#[async_trait]
impl TransactionalSink<Cell> for TableTransactions {
    type Handle = Batch;

    async fn open(&mut self, context: OperatorContext<'_>) -> Result<(), TaskError> {
        let storage = context.storage.clone();
        storage.create_dir_all(&batches_dir(&self.dir)).await?;
        storage.create_dir_all(&commits_dir(&self.dir)).await?;
        let info = context.info;
        self.subtask = format!("{:04}", info.subtask.0);
        self.deployment = format!("-{}-{:04}-", info.job, info.attempt.0);
        self.uid = Some(context.uid.clone());
        self.storage = Some(storage);
        Ok(())
    }

    async fn recover(&mut self, restored: Option<CheckpointId>, _pending: &[Pending<Batch>]) -> Result<(), TaskError> {
        let Some(restored) = restored else { return Ok(()) };
        let newest = self.committed().await?.iter().filter_map(|name| checkpoint_of(name)).max();
        match newest {
            Some(newest) if newest > restored => Err(TaskFailure::RestoreRefused {
                operator: self.uid(),
                message: format!(
                    "the table `{}` holds batches committed by checkpoint {newest}, newer than the restored checkpoint \
                     {restored}: resuming would write the versions after checkpoint {restored} again",
                    self.dir.display()
                ),
            }
            .into()),
            _ => Ok(()),
        }
    }

    async fn begin(&mut self) -> Result<(), TaskError> {
        // A transaction is a batch in memory until it is pre-committed: one that stays empty leaves nothing.
        self.open.clear();
        Ok(())
    }

    async fn write(&mut self, cells: &mut Vec<Cell>) -> Result<(), TaskError> {
        for cell in cells.drain(..) {
            let _ = writeln!(self.open, "{cell}");
        }
        Ok(())
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<Batch>, TaskError> {
        if self.open.is_empty() {
            return Ok(None);
        }
        let name = format!("{:020}-{}{}{:08}", checkpoint.0, self.subtask, self.deployment, self.sequence);
        self.sequence += 1;
        let dir = batches_dir(&self.dir);
        let path = dir.join(batch_file(&name));
        let mut file = self.storage().create(&path).await?;
        file.write_all(std::mem::take(&mut self.open).as_bytes()).await?;
        file.sync().await?;
        drop(file);
        // The batch's directory entry must be durable too, or a storage crash after the checkpoint completes loses
        // a transaction it covers.
        self.storage().sync_dir(&dir).await?;
        still_there(self.storage(), path, "pre-commit").await?;
        Ok(Some(Batch { name }))
    }

    async fn commit(&mut self, transactions: &[Pending<Batch>]) -> Result<(), TaskError> {
        let dir = commits_dir(&self.dir);
        let committed = self.committed().await?;
        for transaction in transactions.iter().filter(|t| !committed.contains(&t.handle.name)) {
            // An empty file: its name is the marker.
            drop(self.storage().create(&dir.join(&transaction.handle.name)).await?);
        }
        // Also when every marker was there already: an attempt that crashed after creating one may never have
        // made it durable.
        self.storage().sync_dir(&dir).await?;
        for transaction in transactions {
            still_there(self.storage(), dir.join(&transaction.handle.name), "commit").await?;
        }
        Ok(())
    }

    async fn abort_all_except(&mut self, keep: &[Pending<Batch>]) -> Result<(), TaskError> {
        // Batches of this deployment (any subtask) are live, whatever their age; committed ones are the table.
        let keep: BTreeSet<String> = keep.iter().map(|t| batch_file(&t.handle.name)).collect();
        let committed: BTreeSet<String> = self.committed().await?.iter().map(|name| batch_file(name)).collect();
        let dir = batches_dir(&self.dir);
        let storage = self.storage().clone();
        let mut removed = false;
        for file in storage.list(&dir).await? {
            if file.contains(&self.deployment) || keep.contains(&file) || committed.contains(&file) {
                continue;
            }
            match storage.remove_file(&dir.join(&file)).await {
                // Another subtask of this deployment aborted it first.
                Ok(()) | Err(StorageError::NotFound { .. }) => removed = true,
                Err(other) => return Err(other.into()),
            }
        }
        if removed {
            storage.sync_dir(&dir).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The table sink run by the engine's protocol against the simulated storage, one step at a time: what a
    //! scenario does at random, here in a fixed order.

    use super::*;
    use engine::ids::{Attempt, JobId, SubtaskIndex, VertexId};
    use engine::operators::SubtaskInfo;
    use engine::operators::sink::Sink;
    use engine::operators::two_phase::TwoPhaseCommitSink;
    use engine::seam::runtime;
    use engine::state::operator::OperatorStateStore;
    use sim::storage::SimStorage;
    use std::sync::Arc;

    type TableSink = TwoPhaseCommitSink<Cell, TableTransactions>;

    fn table() -> PathBuf {
        PathBuf::from("/table")
    }

    /// The sink subtask of attempt `attempt`, on `storage`, restored from `restored`.
    async fn open(
        storage: &StorageRef,
        attempt: u32,
        restored: Option<&OperatorStateStore>,
    ) -> Result<TableSink, TaskError> {
        let info = SubtaskInfo {
            job: JobId(7),
            job_name: "clicks".into(),
            vertex: VertexId(0),
            vertex_name: "table".into(),
            subtask: SubtaskIndex(0),
            parallelism: 1,
            max_parallelism: 128,
            attempt: Attempt(attempt),
        };
        let uid = OperatorUid("table".into());
        let mut sink = TwoPhaseCommitSink::of(TableTransactions::new(table()));
        let context = OperatorContext {
            uid: &uid,
            info: &info,
            storage,
            checkpointing: true,
            faults: &engine::faults::Faults::none(),
        };
        sink.open(context, restored).await?;
        Ok(sink)
    }

    /// Versions `values` of cell `(u000, total)`.
    fn versions(values: std::ops::RangeInclusive<u64>) -> Vec<Cell> {
        values.map(|value| Cell { row: "u000".into(), column: TOTAL_COLUMN.into(), value }).collect()
    }

    /// The committed versions of cell `(u000, total)`, in commit order.
    async fn committed(storage: &StorageRef) -> Vec<u64> {
        let text = read_versions(storage, &table()).await.unwrap();
        text.lines().map(|line| parse_line(line).expect("a version").2).collect()
    }

    /// Writes versions `values` into the open transaction, then takes checkpoint `checkpoint`'s snapshot of the sink
    /// (its pre-commit), as a restore reads it back.
    async fn checkpoint(
        sink: &mut TableSink,
        values: std::ops::RangeInclusive<u64>,
        checkpoint: u64,
    ) -> OperatorStateStore {
        sink.write(&mut versions(values)).await.unwrap();
        let mut state = OperatorStateStore::default();
        sink.snapshot(CheckpointId(checkpoint), &mut state).await.unwrap();
        OperatorStateStore::restore(&state.snapshot())
    }

    /// Checkpoint `checkpoint` completed: its notification reaches the sink.
    async fn complete(sink: &mut TableSink, checkpoint: u64) {
        sink.notify_checkpoint_complete(CheckpointId(checkpoint)).await.unwrap();
    }

    fn simulate(test: impl std::future::Future<Output = ()> + Send + 'static) {
        runtime::run(0, test)
    }

    #[test]
    fn a_batch_is_invisible_until_its_checkpoint_completes_and_a_repeated_commit_changes_nothing() {
        simulate(async {
            let storage: StorageRef = Arc::new(SimStorage::new());
            let mut sink = open(&storage, 0, None).await.unwrap();
            checkpoint(&mut sink, 1..=3, 1).await;
            assert!(committed(&storage).await.is_empty(), "a pre-committed batch must stay invisible");
            complete(&mut sink, 1).await;
            assert_eq!(committed(&storage).await, vec![1, 2, 3]);
            checkpoint(&mut sink, 4..=5, 2).await;
            // Notifications repeat, arrive late, or cover several checkpoints at once.
            complete(&mut sink, 1).await;
            complete(&mut sink, 2).await;
            complete(&mut sink, 2).await;
            assert_eq!(committed(&storage).await, vec![1, 2, 3, 4, 5]);
        });
    }

    #[test]
    fn a_restore_commits_the_restored_batches_and_aborts_those_no_checkpoint_covers() {
        simulate(async {
            let storage: StorageRef = Arc::new(SimStorage::new());
            let mut sink = open(&storage, 0, None).await.unwrap();
            // Checkpoint 1 completes but its notification never arrives; checkpoint 2 never completes.
            let at_1 = checkpoint(&mut sink, 1..=3, 1).await;
            checkpoint(&mut sink, 4..=6, 2).await;
            drop(sink);
            let restored = open(&storage, 1, Some(&at_1)).await.unwrap();
            assert_eq!(committed(&storage).await, vec![1, 2, 3], "checkpoint 1's batch commits on restore");
            let batches = storage.list(&batches_dir(&table())).await.unwrap();
            assert_eq!(batches.len(), 1, "checkpoint 2's batch is aborted: {batches:?}");
            drop(restored);
            // A second restore from the same checkpoint commits nothing twice; the replay then goes on.
            let mut again = open(&storage, 2, Some(&at_1)).await.unwrap();
            checkpoint(&mut again, 4..=6, 2).await;
            complete(&mut again, 2).await;
            assert_eq!(committed(&storage).await, vec![1, 2, 3, 4, 5, 6]);
        });
    }

    #[test]
    fn a_restore_behind_the_committed_table_is_refused() {
        simulate(async {
            let storage: StorageRef = Arc::new(SimStorage::new());
            let mut sink = open(&storage, 0, None).await.unwrap();
            let at_1 = checkpoint(&mut sink, 1..=2, 1).await;
            complete(&mut sink, 1).await;
            checkpoint(&mut sink, 3..=4, 2).await;
            complete(&mut sink, 2).await;
            drop(sink);
            let Err(error) = open(&storage, 1, Some(&at_1)).await else { panic!("a restore behind the table") };
            assert!(error.is_deterministic(), "{error}");
            let message = error.to_string();
            assert!(message.contains("committed by checkpoint 2, newer than the restored checkpoint 1"), "{message}");
            assert_eq!(committed(&storage).await, vec![1, 2, 3, 4], "a refused restore changes nothing");
        });
    }

    #[test]
    fn what_a_checkpoint_covers_survives_a_storage_crash() {
        simulate(async {
            let sim = SimStorage::new();
            let storage: StorageRef = Arc::new(sim.clone());
            let mut sink = open(&storage, 0, None).await.unwrap();
            checkpoint(&mut sink, 1..=3, 1).await;
            complete(&mut sink, 1).await;
            let at_2 = checkpoint(&mut sink, 4..=6, 2).await;
            drop(sink);
            // The storage loses power: what is not durable may go, committed markers and pre-committed batches stay.
            sim.crash();
            assert_eq!(committed(&storage).await, vec![1, 2, 3]);
            drop(open(&storage, 1, Some(&at_2)).await.unwrap());
            assert_eq!(committed(&storage).await, vec![1, 2, 3, 4, 5, 6]);
        });
    }
}
