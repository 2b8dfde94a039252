//! The snapshot of an operator's state in one subtask, shared by every state backend.
//!
//! Keyed state is one blob per key group, so that a restore at another parallelism can hand
//! each key group to its new owner without decoding it. Operator list state keeps each list
//! element as its own encoded blob, so even-split and union redistribution never decode
//! either.

use super::StateError;
use crate::ids::{KeyGroup, OperatorUid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub bytes: Vec<u8>,
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
}

impl OperatorSnapshot {
    pub fn is_empty(&self) -> bool {
        self.keyed.is_empty() && self.lists.is_empty()
    }

    /// Total encoded bytes of the state.
    pub fn size_bytes(&self) -> usize {
        self.keyed.iter().map(|g| g.bytes.len()).sum::<usize>()
            + self.lists.iter().flat_map(|l| l.elements.iter()).map(Vec::len).sum::<usize>()
    }
}

/// The state of every stateful operator of one subtask, by operator uid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskSnapshot {
    pub operators: BTreeMap<OperatorUid, OperatorSnapshot>,
}

/// Keyed state as a snapshot's synchronous part freezes it: a copy-on-write view that the
/// asynchronous part encodes while the operator goes on changing its live state.
pub struct FrozenKeyedState(Box<dyn FnOnce() -> Result<Vec<KeyGroupSnapshot>, StateError> + Send>);

impl FrozenKeyedState {
    pub fn new(encode: impl FnOnce() -> Result<Vec<KeyGroupSnapshot>, StateError> + Send + 'static) -> Self {
        FrozenKeyedState(Box::new(encode))
    }

    /// Encodes the frozen state: one blob per non-empty key group, ascending.
    pub fn encode(self) -> Result<Vec<KeyGroupSnapshot>, StateError> {
        (self.0)()
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
}
