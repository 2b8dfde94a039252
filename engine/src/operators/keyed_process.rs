//! Keyed process functions: user logic with keyed state, run on a keyed stream.
//!
//! The operator recomputes each record's key (as Flink does after a `keyBy`), checks that
//! its key group belongs to this subtask, and scopes every state access to that key. A
//! borrowed key is copied into one reused buffer (`clone_from`), so the per-record path
//! allocates only when a key is new to the state.

use super::{ChainOp, Finish, MaintenanceFuture};
use crate::error::{TaskError, TaskFailure};
use crate::ids::{CheckpointId, KeyGroup, OperatorUid};
use crate::keygroup::key_group_for_key;
use crate::state::backend::KeyedStateBackend;
use crate::state::keyed::{KeyedContext, KeyedEndContext, Registry};
use crate::state::snapshot::{OperatorSnapshot, SyncSnapshot};
use crate::state::{Key, KeySelector, StateError};
use std::borrow::Cow;
use std::marker::PhantomData;

/// User logic over a keyed stream. State lives in the backend, reached through the context,
/// so the operator snapshots it; a function that keeps state in its own fields would lose
/// it on failure.
pub trait KeyedProcessFunction<K: Key, In, Out>: Send + 'static {
    /// Handles one record; `context` is scoped to the record's key.
    fn process<B: KeyedStateBackend<K>>(
        &mut self,
        record: In,
        context: &mut KeyedContext<'_, K, B>,
        out: &mut Vec<Out>,
    ) -> Result<(), StateError>;

    /// All input has arrived (bounded streams): emit final results. Called once for each key
    /// group of the subtask, in ascending order, with a context that visits that group's keys:
    /// one group's results go downstream before the next group is read, so that results as
    /// many as the keys (state larger than memory, on an on-disk backend) are never all in
    /// memory at once.
    fn end_of_input<B: KeyedStateBackend<K>>(
        &mut self,
        context: &mut KeyedEndContext<'_, K, B>,
        out: &mut Vec<Out>,
    ) -> Result<(), StateError>;
}

/// Runs a [`KeyedProcessFunction`] over a backend `B`.
pub struct KeyedProcessOperator<K: Key, In, Out, F, B> {
    uid: OperatorUid,
    key_of: KeySelector<In, K>,
    /// The current record's key, reused from record to record.
    current_key: Option<K>,
    function: F,
    backend: B,
    registry: Registry,
    max_parallelism: u32,
    /// Once the input has ended: the next key group whose final results are to be emitted.
    next_final_group: Option<u32>,
    _types: PhantomData<fn(In) -> Out>,
}

impl<K, In, Out, F, B> KeyedProcessOperator<K, In, Out, F, B>
where
    K: Key,
    F: KeyedProcessFunction<K, In, Out>,
    B: KeyedStateBackend<K>,
{
    /// The operator `uid` running `function` over `backend`, keying records with `key_of` into `max_parallelism`
    /// key groups.
    pub fn new(uid: OperatorUid, key_of: KeySelector<In, K>, function: F, backend: B, max_parallelism: u32) -> Self {
        KeyedProcessOperator {
            uid,
            key_of,
            current_key: None,
            function,
            backend,
            registry: Registry::default(),
            max_parallelism,
            next_final_group: None,
            _types: PhantomData,
        }
    }

    fn state_error(&self, source: StateError) -> TaskError {
        TaskError::from(TaskFailure::State { operator: self.uid.clone(), source })
    }
}

impl<K, In, Out, F, B> ChainOp<In, Out> for KeyedProcessOperator<K, In, Out, F, B>
where
    K: Key,
    In: Send,
    Out: Send,
    F: KeyedProcessFunction<K, In, Out>,
    B: KeyedStateBackend<K>,
{
    fn process_batch(&mut self, input: &mut Vec<In>, out: &mut Vec<Out>) -> Result<(), TaskError> {
        let range = self.backend.key_group_range();
        for record in input.drain(..) {
            match ((self.key_of)(&record), &mut self.current_key) {
                (Cow::Borrowed(key), Some(current)) => current.clone_from(key),
                (key, current) => *current = Some(key.into_owned()),
            }
            let key = self.current_key.as_ref().expect("set just above");
            let key_group = key_group_for_key(&key, self.max_parallelism);
            // A record routed to the wrong subtask would silently split a key's state.
            assert!(
                range.contains(key_group),
                "operator `{}`: key group {key_group} routed to a subtask owning {range:?}",
                self.uid
            );
            let mut context = KeyedContext::new(&mut self.backend, &mut self.registry, key, key_group);
            if let Err(e) = self.function.process(record, &mut context, out) {
                return Err(self.state_error(e));
            }
        }
        Ok(())
    }

    /// Emits the final results key group by key group: each call goes on until a group's
    /// results are in `out` (or every group is done), so `out` holds one group's at most.
    fn finish(&mut self, out: &mut Vec<Out>) -> Result<Finish, TaskError> {
        let range = self.backend.key_group_range();
        let mut next = self.next_final_group.unwrap_or(range.start).max(range.start);
        while next < range.end && out.is_empty() {
            let mut context = KeyedEndContext::for_key_group(&mut self.backend, &mut self.registry, KeyGroup(next));
            let emitted = self.function.end_of_input(&mut context, out);
            emitted.map_err(|e| self.state_error(e))?;
            next += 1;
        }
        self.next_final_group = Some(next);
        Ok(if next < range.end { Finish::More } else { Finish::Done })
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId, snapshot: &mut SyncSnapshot) -> Result<(), TaskError> {
        // Copy-on-write: the state is encoded by the asynchronous part, not here.
        let frozen = self.backend.freeze().map_err(|e| self.state_error(e))?;
        snapshot.insert(&self.uid, OperatorSnapshot::default(), Some(frozen));
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.backend.notify_checkpoint_complete(checkpoint);
        Ok(())
    }

    fn needs_maintenance(&self) -> bool {
        self.backend.needs_maintenance()
    }

    fn maintain(&mut self) -> MaintenanceFuture<'_> {
        Box::pin(async move {
            let result = self.backend.maintain().await;
            result.map_err(|e| self.state_error(e))
        })
    }
}
