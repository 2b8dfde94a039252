//! A generated bounded source for benchmarks: records `(i % keys, i)` for `i` in `0..n`,
//! split over partitions by index, replayable by offset.

use super::initial_partitions;
use crate::error::{TaskError, TaskFailure};
use crate::ids::{CheckpointId, OperatorUid};
use crate::operators::OperatorContext;
use crate::operators::source::{Source, SourcePoll};
use crate::state::operator::{OperatorListDescriptor, OperatorStateStore};
use async_trait::async_trait;

/// `(partition, next index)` pairs; partition `p` of `P` emits the indexes `i ≡ p (mod P)`.
const POSITIONS: OperatorListDescriptor<(u32, u64)> = OperatorListDescriptor::even_split("positions");

/// One generated record: the key's number and the value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    pub key: u64,
    pub value: u64,
}

pub struct GeneratorSource {
    n: u64,
    keys: u64,
    partitions: u32,
    positions: Vec<(u32, u64)>,
    next: usize,
    uid: Option<OperatorUid>,
}

impl GeneratorSource {
    pub fn new(n: u64, keys: u64, partitions: u32) -> Self {
        assert!(keys >= 1 && partitions >= 1);
        GeneratorSource { n, keys, partitions, positions: Vec::new(), next: 0, uid: None }
    }
}

#[async_trait]
impl Source for GeneratorSource {
    type Out = Generated;

    async fn open(
        &mut self,
        context: OperatorContext<'_>,
        restored: Option<&OperatorStateStore>,
    ) -> Result<(), TaskError> {
        self.uid = Some(context.uid.clone());
        self.positions = match restored {
            Some(restored) => restored.get(&POSITIONS).map_err(|e| context.state_error(e))?,
            None => initial_partitions(self.partitions, context.info.subtask, context.info.parallelism)
                .into_iter()
                .map(|p| (p, u64::from(p)))
                .collect(),
        };
        Ok(())
    }

    async fn poll(&mut self, out: &mut Vec<Generated>, max_records: usize) -> Result<SourcePoll, TaskError> {
        let step = u64::from(self.partitions);
        for _ in 0..self.positions.len() {
            let index = self.next % self.positions.len();
            self.next += 1;
            let (_, next) = &mut self.positions[index];
            if *next >= self.n {
                continue;
            }
            for _ in 0..max_records {
                if *next >= self.n {
                    break;
                }
                out.push(Generated { key: *next % self.keys, value: *next });
                *next += step;
            }
            return Ok(SourcePoll::More);
        }
        Ok(SourcePoll::Finished)
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId, state: &mut OperatorStateStore) -> Result<(), TaskError> {
        let uid = self.uid.clone().expect("opened before snapshot");
        state
            .set(&POSITIONS, &self.positions)
            .map_err(|source| TaskError::from(TaskFailure::State { operator: uid, source }))
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> Result<(), TaskError> {
        Ok(())
    }
}
