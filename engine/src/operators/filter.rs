//! `filter`: keeps the records the predicate accepts. Stateless.

use super::{ChainOp, Finish};
use crate::error::TaskError;
use crate::ids::CheckpointId;
use crate::state::snapshot::SyncSnapshot;

pub struct FilterOp<F> {
    predicate: F,
}

impl<F> FilterOp<F> {
    pub fn new(predicate: F) -> Self {
        FilterOp { predicate }
    }
}

impl<T, F> ChainOp<T, T> for FilterOp<F>
where
    F: FnMut(&T) -> bool + Send,
{
    fn process_batch(&mut self, input: &mut Vec<T>, out: &mut Vec<T>) -> Result<(), TaskError> {
        let predicate = &mut self.predicate;
        out.extend(input.drain(..).filter(|record| predicate(record)));
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<T>) -> Result<Finish, TaskError> {
        Ok(Finish::Done)
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId, _snapshot: &mut SyncSnapshot) -> Result<(), TaskError> {
        // Stateless: nothing to snapshot.
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> Result<(), TaskError> {
        Ok(())
    }
}
