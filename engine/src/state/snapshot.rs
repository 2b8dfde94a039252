//! The snapshot of an operator's state in one subtask, shared by every state backend.
//!
//! Keyed state is one blob per key group, so that a restore at another parallelism can hand
//! each key group to its new owner without decoding it. Operator list state keeps each list
//! element as its own encoded blob, so even-split and union redistribution never decode
//! either.

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
