//! The snapshot of an operator's state in one subtask, shared by every state backend.
//!
//! Keyed state is one blob per key group, so that a restore at another parallelism can hand
//! each key group to its new owner without decoding it. Operator list state keeps each list
//! element as its own encoded blob, so even-split and union redistribution never decode
//! either.

use super::StateError;
use crate::ids::{CheckpointId, KeyGroup, OperatorUid};
use crate::keygroup::KeyGroupRange;
use crate::seam::storage::StorageRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How an operator list state is redistributed when parallelism changes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Redistribution {
    /// Concatenate every subtask's list and split it evenly (Flink's `getListState`).
    EvenSplit,
    /// Every subtask gets the concatenation of all lists (Flink's `getUnionListState`).
    Union,
}

/// One operator list state: its name, mode and encoded elements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListStateSnapshot {
    pub name: String,
    pub mode: Redistribution,
    pub elements: Vec<Vec<u8>>,
}

/// The keyed state of one key group: every state's entries for the keys in that group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupSnapshot {
    pub key_group: KeyGroup,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Whether a file of an embedded snapshot belongs to its checkpoint alone or may be shared.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FileScope {
    /// In the checkpoint's own `chk-<n>/` directory, deleted with it.
    Exclusive,
    /// In the job's `shared/` directory, reference-counted by the job manager across checkpoints.
    Shared,
}

/// One sorted file of an embedded store's snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedFile {
    /// The file's name in `chk-<n>/` (exclusive) or `shared/` (shared): no separators.
    pub name: String,
    pub scope: FileScope,
    /// The store level it sits at (0 to 6).
    pub level: u32,
    pub size_bytes: u64,
    /// CRC-32 of the whole file.
    pub checksum: u32,
    /// The checkpoint that uploaded it: this one, or (a shared file) an earlier one it builds on.
    pub uploaded_by: CheckpointId,
}

impl EmbeddedFile {
    /// Where the file is, for a snapshot whose `_metadata` is in `dir`: beside it, or in the
    /// job's `shared/` directory beside `dir`.
    pub fn path(&self, dir: &Path) -> PathBuf {
        match self.scope {
            FileScope::Exclusive => dir.join(&self.name),
            FileScope::Shared => shared_path(dir, &self.name),
        }
    }
}

/// The name of the job directory's shared-file directory.
pub const SHARED_DIR_NAME: &str = "shared";

/// A shared file's path, for a snapshot whose `_metadata` is in `dir` (`<job dir>/chk-<n>`).
pub fn shared_path(dir: &Path, name: &str) -> PathBuf {
    dir.parent().unwrap_or(Path::new(".")).join(SHARED_DIR_NAME).join(name)
}

/// A range deletion in an embedded store: every key in `[start, end)` older than `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedTombstone {
    #[serde(with = "serde_bytes")]
    pub start: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub end: Vec<u8>,
    pub seq: u64,
}

/// An embedded store's snapshot as its sorted files (Flink's incremental RocksDB handle): the
/// store rebuilt from them holds exactly the state of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedSnapshot {
    /// The key groups the store held.
    pub key_groups: KeyGroupRange,
    /// Each namespace in the files and the state it holds, ascending by namespace.
    pub namespaces: Vec<(u16, String)>,
    /// Level 0 newest first, then each deeper level in key order.
    pub files: Vec<EmbeddedFile>,
    pub tombstones: Vec<EmbeddedTombstone>,
}

impl EmbeddedSnapshot {
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size_bytes).sum()
    }
}

/// An embedded snapshot to restore from, with where its files are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSnapshot {
    pub snapshot: EmbeddedSnapshot,
    /// The directory of the snapshot's `_metadata`, which its files' paths are relative to.
    pub dir: PathBuf,
    /// The checkpoint it is, when the restoring job owns it (a failover within the job): the
    /// restored store may then build its next incremental checkpoint on these files. `None`
    /// for a snapshot the job does not own (`-s`, Flink's NO_CLAIM): its first checkpoint
    /// uploads everything again, and it never refers to, or deletes, what it restored.
    pub owned: Option<CheckpointId>,
}

/// The state of one operator in one subtask.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// Keyed state, ascending by key group, only groups that hold something.
    pub keyed: Vec<KeyGroupSnapshot>,
    /// Operator list states, ascending by name.
    pub lists: Vec<ListStateSnapshot>,
    /// Snapshotted after the operator processed all its input (Flink's FLIP-147
    /// "finished"): restored, it must not process or emit its end-of-input results again.
    pub finished: bool,
    /// Keyed state as embedded stores' files: the snapshot this subtask wrote (one), or those
    /// a restore combines for it (several, after a rescale).
    pub stores: Vec<StoreSnapshot>,
}

impl OperatorSnapshot {
    pub fn is_empty(&self) -> bool {
        self.keyed.is_empty() && self.lists.is_empty() && self.stores.is_empty()
    }

    /// Total encoded bytes of the state.
    pub fn size_bytes(&self) -> usize {
        self.keyed.iter().map(|g| g.bytes.len()).sum::<usize>()
            + self.lists.iter().flat_map(|l| l.elements.iter()).map(Vec::len).sum::<usize>()
            + self.stores.iter().map(|s| s.snapshot.size_bytes() as usize).sum::<usize>()
    }
}

/// The state of every stateful operator of one subtask, by operator uid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskSnapshot {
    pub operators: BTreeMap<OperatorUid, OperatorSnapshot>,
}

/// Keyed state as a snapshot's synchronous part freezes it: a copy-on-write view that the
/// asynchronous part encodes (or, for an on-disk store, uploads) while the operator goes on
/// changing its live state.
pub enum FrozenKeyedState {
    /// Encoded into canonical key groups.
    Encode(Box<dyn FnOnce() -> Result<Vec<KeyGroupSnapshot>, StateError> + Send>),
    /// An on-disk store's frozen version: uploaded as files for a checkpoint, encoded into
    /// canonical key groups for a savepoint.
    Store(Box<dyn FrozenStoreState>),
}

/// Where a checkpoint's asynchronous part puts an on-disk store's files.
#[derive(Clone)]
pub struct UploadTarget {
    pub storage: StorageRef,
    /// The checkpoint's own directory (`chk-<n>`): every file goes there first; the job manager
    /// moves the new shared ones into `shared/` when it registers them.
    pub dir: PathBuf,
    pub checkpoint: CheckpointId,
    /// Share files across checkpoints (Flink's `state.backend.incremental`).
    pub incremental: bool,
}

/// An on-disk store's frozen state, read by the asynchronous part of a snapshot.
#[async_trait::async_trait]
pub trait FrozenStoreState: Send {
    /// The canonical key groups (a savepoint, or a backend that does not write files).
    fn encode(self: Box<Self>) -> Result<Vec<KeyGroupSnapshot>, StateError>;
    /// Uploads the files a checkpoint needs into `target` and describes them.
    async fn upload(self: Box<Self>, target: &UploadTarget) -> Result<EmbeddedSnapshot, StateError>;
}

impl FrozenKeyedState {
    pub fn new(encode: impl FnOnce() -> Result<Vec<KeyGroupSnapshot>, StateError> + Send + 'static) -> Self {
        FrozenKeyedState::Encode(Box::new(encode))
    }

    /// Encodes the frozen state: one blob per non-empty key group, ascending.
    pub fn encode(self) -> Result<Vec<KeyGroupSnapshot>, StateError> {
        match self {
            FrozenKeyedState::Encode(encode) => encode(),
            FrozenKeyedState::Store(store) => store.encode(),
        }
    }
}

/// What a checkpoint's synchronous part collects from a subtask's operators: their state,
/// keyed state still frozen. `materialize` (the asynchronous part) encodes it.
#[derive(Default)]
pub struct SyncSnapshot {
    pub operators: BTreeMap<OperatorUid, OperatorSnapshot>,
    pub frozen: Vec<(OperatorUid, FrozenKeyedState)>,
}

impl SyncSnapshot {
    /// Adds operator `uid`'s state; an operator snapshots once per checkpoint.
    pub fn insert(&mut self, uid: &OperatorUid, operator: OperatorSnapshot, frozen: Option<FrozenKeyedState>) {
        let previous = self.operators.insert(uid.clone(), operator);
        assert!(previous.is_none(), "operator uid `{uid}` snapshotted twice");
        if let Some(frozen) = frozen {
            self.frozen.push((uid.clone(), frozen));
        }
    }

    /// Encodes the frozen keyed state into the operators' snapshots.
    pub fn materialize(self) -> Result<SubtaskSnapshot, (OperatorUid, StateError)> {
        let SyncSnapshot { mut operators, frozen } = self;
        for (uid, frozen) in frozen {
            let keyed = frozen.encode().map_err(|e| (uid.clone(), e))?;
            operators.get_mut(&uid).expect("inserted together with its frozen state").keyed = keyed;
        }
        Ok(SubtaskSnapshot { operators })
    }

    /// The asynchronous part for a checkpoint: on-disk stores upload their files into `target`
    /// (when given), everything else is encoded into canonical key groups.
    pub async fn materialize_into(
        self,
        target: Option<&UploadTarget>,
    ) -> Result<SubtaskSnapshot, (OperatorUid, StateError)> {
        let SyncSnapshot { mut operators, frozen } = self;
        for (uid, frozen) in frozen {
            let operator = operators.get_mut(&uid).expect("inserted together with its frozen state");
            match (frozen, target) {
                (FrozenKeyedState::Store(store), Some(target)) => {
                    let snapshot = store.upload(target).await.map_err(|e| (uid.clone(), e))?;
                    operator.stores = vec![StoreSnapshot { snapshot, dir: target.dir.clone(), owned: None }];
                }
                (frozen, _) => operator.keyed = frozen.encode().map_err(|e| (uid.clone(), e))?,
            }
        }
        Ok(SubtaskSnapshot { operators })
    }
}
