//! `flat_map`: each record produces zero or more records. Stateless.

use super::{ChainOp, Finish};
use crate::error::TaskError;
use crate::ids::CheckpointId;
use crate::state::snapshot::SyncSnapshot;

pub struct FlatMapOp<F> {
    f: F,
}

impl<F> FlatMapOp<F> {
    pub fn new(f: F) -> Self {
        FlatMapOp { f }
    }
}

impl<In, Out, F> ChainOp<In, Out> for FlatMapOp<F>
where
    F: FnMut(In, &mut Vec<Out>) + Send,
{
    fn process_batch(&mut self, input: &mut Vec<In>, out: &mut Vec<Out>) -> Result<(), TaskError> {
        for record in input.drain(..) {
            (self.f)(record, out);
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Out>) -> Result<Finish, TaskError> {
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
