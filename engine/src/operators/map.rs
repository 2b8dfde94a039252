//! `map`: one record in, one record out. Stateless.

use super::{ChainOp, Finish};
use crate::error::TaskError;
use crate::ids::CheckpointId;
use crate::state::snapshot::SyncSnapshot;

pub struct MapOp<F> {
    f: F,
}

impl<F> MapOp<F> {
    pub fn new(f: F) -> Self {
        MapOp { f }
    }
}

impl<In, Out, F> ChainOp<In, Out> for MapOp<F>
where
    F: FnMut(In) -> Out + Send,
{
    fn process_batch(&mut self, input: &mut Vec<In>, out: &mut Vec<Out>) -> Result<(), TaskError> {
        out.extend(input.drain(..).map(&mut self.f));
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
