//! The `sequence` source: partition `p` emits the numbers `0..n` in order. Deterministic
//! and replayable by offset, so a checker can prove no loss, no duplicate and no reordering.

use super::initial_partitions;
use crate::error::{TaskError, TaskFailure};
use crate::ids::{CheckpointId, OperatorUid};
use crate::operators::OperatorContext;
use crate::operators::source::{Source, SourcePoll};
use crate::seam::runtime;
use crate::state::operator::{OperatorListDescriptor, OperatorStateStore};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One record of the sequence.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceRecord {
    pub partition: u32,
    pub number: u64,
}

/// `(partition, next number)` pairs.
const POSITIONS: OperatorListDescriptor<(u32, u64)> = OperatorListDescriptor::even_split("positions");

/// The `(partition, next number)` positions a snapshot of the source recorded (its subtasks' lists, together).
pub fn recorded_positions(
    lists: &[crate::state::snapshot::ListStateSnapshot],
) -> Result<Vec<(u32, u64)>, crate::state::StateError> {
    OperatorStateStore::restore(lists).get(&POSITIONS)
}

pub struct SequenceSource {
    partitions: u32,
    records_per_partition: u64,
    /// Pacing per subtask; 0 means as fast as possible.
    records_per_second: u64,
    /// `(partition, next number)` for the partitions this subtask reads.
    positions: Vec<(u32, u64)>,
    next: usize,
    uid: Option<OperatorUid>,
}

impl SequenceSource {
    pub fn new(partitions: u32, records_per_partition: u64) -> Self {
        Self::paced(partitions, records_per_partition, 0)
    }

    /// A source that emits about `records_per_second` records per second per subtask, so
    /// that a job lasts long enough (in simulated or real time) for checkpoints and faults.
    pub fn paced(partitions: u32, records_per_partition: u64, records_per_second: u64) -> Self {
        SequenceSource {
            partitions,
            records_per_partition,
            records_per_second,
            positions: Vec::new(),
            next: 0,
            uid: None,
        }
    }
}

#[async_trait]
impl Source for SequenceSource {
    type Out = SequenceRecord;

    async fn open(
        &mut self,
        context: OperatorContext<'_>,
        restored: Option<&OperatorStateStore>,
    ) -> Result<(), TaskError> {
        self.positions = match restored {
            Some(restored) => restored.get(&POSITIONS).map_err(|e| context.state_error(e))?,
            None => initial_partitions(self.partitions, context.info.subtask, context.info.parallelism)
                .into_iter()
                .map(|p| (p, 0))
                .collect(),
        };
        self.uid = Some(context.uid.clone());
        Ok(())
    }

    async fn poll(&mut self, out: &mut Vec<SequenceRecord>, max_records: usize) -> Result<SourcePoll, TaskError> {
        // Round robin over unfinished partitions, one slice each, so partitions interleave.
        let unfinished = self.positions.iter().filter(|(_, next)| *next < self.records_per_partition).count();
        if unfinished == 0 {
            return Ok(SourcePoll::Finished);
        }
        let mut slice = (max_records / unfinished).max(1) as u64;
        if self.records_per_second > 0 {
            // Paced: a slice of 10 ms worth of records every 10 ms, whatever the batch size,
            // so that real timers (millisecond granularity) keep the rate too.
            slice = (self.records_per_second / 100).max(1);
            runtime::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..self.positions.len() {
            let index = self.next % self.positions.len();
            self.next += 1;
            let (partition, next) = &mut self.positions[index];
            if *next >= self.records_per_partition {
                continue;
            }
            let end = (*next + slice).min(self.records_per_partition);
            out.extend((*next..end).map(|number| SequenceRecord { partition: *partition, number }));
            *next = end;
            break;
        }
        Ok(SourcePoll::More)
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId, state: &mut OperatorStateStore) -> Result<(), TaskError> {
        state.set(&POSITIONS, &self.positions).map_err(|source| {
            TaskError::from(TaskFailure::State { operator: self.uid.clone().expect("opened before snapshot"), source })
        })
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> Result<(), TaskError> {
        Ok(())
    }
}
