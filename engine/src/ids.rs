//! Newtypes for the identifiers that carry the engine's protocol: checkpoints, key groups,
//! operators, vertices, subtasks, jobs.
//!
//! Mixing these up is a class of bug the type system can rule out, so nothing in the engine
//! passes a bare integer where one of these is meant.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A checkpoint's id. Ids strictly increase over a job's life, across restarts too.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointId(pub u64);

/// A key group: the unit in which keyed state is partitioned, snapshotted and redistributed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyGroup(pub u32);

/// The stable identity of an operator, used to map snapshotted state back to operators.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OperatorUid(pub String);

/// The index of one parallel instance of a vertex, `0..parallelism`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SubtaskIndex(pub u32);

/// A vertex of the job graph: a chain of operators that runs as one task per subtask.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VertexId(pub u32);

/// A job's id: 16 bytes, printed as 32 hex digits like Flink's `JobID`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u128);

/// One task that must ack every checkpoint: a subtask of a vertex.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskRef {
    pub vertex: VertexId,
    pub subtask: SubtaskIndex,
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.vertex, self.subtask)
    }
}

/// Where a subtask sits in its job.
#[derive(Clone, Debug)]
pub struct SubtaskInfo {
    pub job: JobId,
    pub job_name: String,
    pub vertex: VertexId,
    pub vertex_name: String,
    pub subtask: SubtaskIndex,
    pub parallelism: u32,
    pub max_parallelism: u32,
    pub attempt: Attempt,
}

impl SubtaskInfo {
    /// This subtask as the coordinator knows it.
    pub fn task_ref(&self) -> TaskRef {
        TaskRef { vertex: self.vertex, subtask: self.subtask }
    }
}

/// Counts the deployments of a job: 0 for the first, +1 for every restart.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attempt(pub u32);

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for KeyGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for OperatorUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SubtaskIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for VertexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl JobId {
    /// The first 6 hex digits, as used in savepoint directory names.
    pub fn short(&self) -> String {
        self.to_string()[..6].to_string()
    }
}

impl SubtaskIndex {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
