//! The keyed state backend trait: where keyed state lives while a job runs.
//!
//! The typed state API (`keyed.rs`) is written against this trait only, so a backend that
//! keeps objects on the heap and one that keeps encoded bytes on local disk serve the same
//! user code. Methods are generic over the stored type `S` (the per-key value of one state:
//! `V` for value state, `Vec<V>` for list state, a map for map state), so the trait is used
//! through generics, not `dyn`.

use super::snapshot::{FrozenKeyedState, KeyGroupSnapshot};
use super::{Key, StateError, StateValue};
use crate::ids::KeyGroup;
use crate::keygroup::KeyGroupRange;

/// Identifies a registered state within one backend.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StateIndex(pub usize);

/// The kind of a registered state, checked when the same name is registered twice.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StateKind {
    Value,
    List,
    Map,
    Reducing,
    Aggregating,
}

/// Keyed state storage for one operator in one subtask, covering its key-group range.
pub trait KeyedStateBackend<K: Key>: Send + 'static {
    /// Registers (or finds) state `name` whose per-key value is `S`. Restored entries for
    /// `name` become visible from here on.
    fn register<S: StateValue>(&mut self, name: &str, kind: StateKind) -> Result<StateIndex, StateError>;

    /// Calls `f` with the current value for `key`, if any.
    fn read<S: StateValue, R>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        key: &K,
        f: impl FnOnce(Option<&S>) -> R,
    ) -> Result<R, StateError>;

    /// Calls `f` with a mutable value for `key`, created by `init` if absent.
    fn update<S: StateValue, R>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        key: &K,
        init: impl FnOnce() -> S,
        f: impl FnOnce(&mut S) -> R,
    ) -> Result<R, StateError>;

    /// Sets the value for `key`.
    fn put<S: StateValue>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        key: &K,
        value: S,
    ) -> Result<(), StateError>;

    /// Removes the value for `key`.
    fn remove(&mut self, state: StateIndex, key_group: KeyGroup, key: &K) -> Result<(), StateError>;

    /// Calls `f` for every key of `key_group` (one of this backend's) that has a value, in key order.
    fn for_each_in<S: StateValue>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        f: impl FnMut(&K, &S),
    ) -> Result<(), StateError>;

    /// Calls `f` for every key that has a value, key group by key group in ascending order.
    fn for_each<S: StateValue>(&mut self, state: StateIndex, mut f: impl FnMut(&K, &S)) -> Result<(), StateError> {
        for key_group in self.key_group_range().iter() {
            self.for_each_in(state, key_group, &mut f)?;
        }
        Ok(())
    }

    /// The synchronous part of a snapshot: freezes the current state (copy-on-write, cheap)
    /// for the asynchronous part to encode while processing goes on.
    fn freeze(&mut self) -> Result<FrozenKeyedState, StateError>;

    /// The state encoded now: one blob per non-empty key group, ascending.
    fn snapshot(&mut self) -> Result<Vec<KeyGroupSnapshot>, StateError> {
        self.freeze()?.encode()
    }

    /// The key groups this backend holds.
    fn key_group_range(&self) -> KeyGroupRange;

    /// Checkpoint `checkpoint` completed: an incremental backend may build on its files.
    fn notify_checkpoint_complete(&mut self, checkpoint: crate::ids::CheckpointId) {
        let _ = checkpoint;
    }

    /// Whether [`KeyedStateBackend::maintain`] has work to do. Called after every batch, so
    /// it must be cheap. A backend that does no IO never has any.
    fn needs_maintenance(&self) -> bool {
        false
    }

    /// The backend's IO between batches: an on-disk backend flushes and compacts here
    /// (in the background; this call only installs and starts that work), and stalls the
    /// operator while its memory is over budget. The operator awaits it after a batch when
    /// [`KeyedStateBackend::needs_maintenance`] says so; without those calls an on-disk
    /// backend would keep everything in memory.
    fn maintain(&mut self) -> impl std::future::Future<Output = Result<(), StateError>> + Send {
        std::future::ready(Ok(()))
    }
}
