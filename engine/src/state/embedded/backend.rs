//! The embedded keyed state backend: keyed state as encoded entries in the subtask's own
//! on-disk store, so state can be larger than memory (Flink's RocksDB backend's role).
//!
//! Every access decodes the value from the store and every write encodes it back: a
//! `ValueState::update` is a read and a put. Restored key groups are stored as they came
//! (one blob per state and key group, under [`Namespace::RESTORED`]), because a blob can
//! only be split into entries once its state is registered and its value type is known;
//! the first access to a state in a key group unpacks that group's blob. A state that is
//! restored but never registered is never unpacked, and its blobs go into every snapshot
//! as they came.

use super::canonical::{self, GroupEncoding};
use super::frozen::FrozenStore;
use super::key::{self, Namespace, PREFIX_BYTES};
use super::options::EmbeddedOptions;
use super::restore::{RestoredStore, restore_store};
use super::store::Store;
use super::upload::{FrozenUpload, UploadLedger};
use crate::ids::{CheckpointId, KeyGroup};
use crate::keygroup::KeyGroupRange;
use crate::seam::storage::StorageRef;
use crate::state::backend::{KeyedStateBackend, StateIndex, StateKind};
use crate::state::snapshot::{FrozenKeyedState, KeyGroupSnapshot, StoreSnapshot};
use crate::state::{Key, StateError, StateValue};
use std::any::TypeId;
use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Unpacks a state's restored blob in one key group, knowing the state's value type.
type Unpack<K> = fn(&mut EmbeddedKeyedBackend<K>, StateIndex, KeyGroup) -> Result<(), StateError>;

struct RegisteredState<K> {
    name: String,
    /// Where its entries are in the store's keys.
    namespace: Namespace,
    kind: StateKind,
    type_id: TypeId,
    type_name: &'static str,
    /// By key-group offset: whether the group still holds this state's restored blob.
    /// `None` once no group does.
    restored: Option<Vec<bool>>,
    unpack: Unpack<K>,
}

/// Keyed state in an embedded on-disk store, for one operator in one subtask.
pub struct EmbeddedKeyedBackend<K> {
    range: KeyGroupRange,
    store: Store,
    states: Vec<RegisteredState<K>>,
    /// Every state name the store's keys know, registered or restored from files, with its
    /// namespace: a state restored from files keeps the namespace it had.
    namespaces: BTreeMap<String, Namespace>,
    /// Restored states not registered yet: by name, which key groups hold a blob of them.
    unregistered: BTreeMap<String, Vec<bool>>,
    /// Where checkpoints put the store's files, for incremental checkpoints to build on.
    ledger: Arc<Mutex<UploadLedger>>,
    /// The current access's stored key, reused from access to access.
    key: Vec<u8>,
    _key: PhantomData<fn() -> K>,
}

impl<K: Key> EmbeddedKeyedBackend<K> {
    /// A backend over `key_group_range` whose store lives in `work_dir` (a directory on the
    /// task manager's local disk, for this operator subtask alone; it may hold leftovers
    /// of earlier attempts, which the store removes), restoring `restored` (canonical key
    /// groups, from either backend).
    ///
    /// Synchronous and without IO: the restored blobs go into memtables, and the first
    /// [`KeyedStateBackend::maintain`] call makes the store's directory and flushes them
    /// (stalling until the memtables are within their budget).
    pub fn open(
        storage: StorageRef,
        work_dir: PathBuf,
        key_group_range: KeyGroupRange,
        options: EmbeddedOptions,
        restored: &[KeyGroupSnapshot],
    ) -> Result<Self, StateError> {
        let store = Store::open(storage, work_dir, options)?;
        let restored_store = RestoredStore { store, namespaces: BTreeMap::new(), ledger: UploadLedger::default() };
        Self::assemble(restored_store, key_group_range, restored, BTreeMap::new())
    }

    /// A backend over `key_group_range` restored from embedded snapshots' files (`stores`,
    /// several after a rescale) and canonical key groups (`restored`): the files are
    /// downloaded into a store in `work_dir`, checked, and clipped to the range.
    pub async fn restore(
        storage: StorageRef,
        work_dir: PathBuf,
        key_group_range: KeyGroupRange,
        options: EmbeddedOptions,
        stores: &[StoreSnapshot],
        restored: &[KeyGroupSnapshot],
    ) -> Result<Self, StateError> {
        let restored_store = restore_store(storage, work_dir, options, key_group_range, stores).await?;
        let mut backend = Self::from_restored(restored_store, key_group_range, restored)?;
        backend.settle().await?;
        Ok(backend)
    }

    /// A backend over a store rebuilt from snapshots' files (see [`Self::restore`]), plus
    /// canonical key groups `restored`.
    pub fn from_restored(
        restored_store: RestoredStore,
        key_group_range: KeyGroupRange,
        restored: &[KeyGroupSnapshot],
    ) -> Result<Self, StateError> {
        // Blobs restored from a canonical snapshot that no access unpacked before the files
        // were written are still in the files, by state name.
        let mut blobs: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        for key_group in key_group_range.iter() {
            let (start, end) = key::namespace_range(key_group, Namespace::RESTORED);
            restored_store.store.scan(&start, &end, |stored_key, _| {
                let name = String::from_utf8(stored_key[PREFIX_BYTES..].to_vec())
                    .expect("restored blobs are keyed by their state's name");
                blobs.entry(name).or_insert_with(|| vec![false; key_group_range.len()])
                    [(key_group.0 - key_group_range.start) as usize] = true;
                Ok(())
            })?;
        }
        Self::assemble(restored_store, key_group_range, restored, blobs)
    }

    fn assemble(
        restored_store: RestoredStore,
        key_group_range: KeyGroupRange,
        restored: &[KeyGroupSnapshot],
        mut unregistered: BTreeMap<String, Vec<bool>>,
    ) -> Result<Self, StateError> {
        let RestoredStore { mut store, namespaces, ledger } = restored_store;
        let namespaces = namespaces.into_iter().map(|(namespace, name)| (name, Namespace(namespace))).collect();
        let mut stored_key = Vec::new();
        for group in restored {
            if !key_group_range.contains(group.key_group) {
                return Err(StateError::ForeignKeyGroup {
                    key_group: group.key_group.0,
                    start: key_group_range.start,
                    end: key_group_range.end,
                });
            }
            let offset = (group.key_group.0 - key_group_range.start) as usize;
            let states: GroupEncoding = canonical::decode_group(group)?;
            for (name, bytes) in states {
                key::start_key(&mut stored_key, group.key_group, Namespace::RESTORED);
                stored_key.extend_from_slice(name.as_bytes());
                store.put(&stored_key, bytes);
                unregistered.entry(name).or_insert_with(|| vec![false; key_group_range.len()])[offset] = true;
            }
        }
        Ok(EmbeddedKeyedBackend {
            range: key_group_range,
            store,
            states: Vec::new(),
            namespaces,
            unregistered,
            ledger: Arc::new(Mutex::new(ledger)),
            key: Vec::new(),
            _key: PhantomData,
        })
    }

    /// The states' names by namespace, as a snapshot records them.
    fn names_by_namespace(&self) -> BTreeMap<u16, String> {
        self.namespaces.iter().map(|(name, namespace)| (namespace.0, name.clone())).collect()
    }

    /// The checkpoint the next incremental checkpoint builds on, if any.
    pub fn incremental_base(&self) -> Option<CheckpointId> {
        self.ledger.lock().expect("ledger lock").confirmed()
    }

    /// The store underneath, for its statistics and files.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Maintains until the store is quiet (every due flush and compaction done).
    pub async fn settle(&mut self) -> Result<(), StateError> {
        self.store.settle().await
    }

    /// Freezes the store for a snapshot, returning it with the states' names by namespace.
    pub fn freeze_store(&mut self) -> (FrozenStore, BTreeMap<u16, String>) {
        let names = self.names_by_namespace();
        (self.store.freeze(), names)
    }

    fn offset(&self, key_group: KeyGroup) -> usize {
        assert!(self.range.contains(key_group), "key group {key_group} outside {:?}", self.range);
        (key_group.0 - self.range.start) as usize
    }

    fn check_type<S: StateValue>(&self, state: StateIndex) -> Result<(), StateError> {
        let registered = &self.states[state.0];
        if registered.type_id != TypeId::of::<S>() {
            return Err(StateError::TypeMismatch {
                name: registered.name.clone(),
                registered: registered.type_name.to_string(),
                requested: std::any::type_name::<S>().to_string(),
            });
        }
        Ok(())
    }

    /// Unpacks the state's restored blob in `key_group`, if it still has one there.
    fn ensure_unpacked(&mut self, state: StateIndex, key_group: KeyGroup) -> Result<(), StateError> {
        let offset = self.offset(key_group);
        let registered = &self.states[state.0];
        if registered.restored.as_ref().is_some_and(|groups| groups[offset]) {
            (registered.unpack)(self, state, key_group)?;
        }
        Ok(())
    }

    fn unpack<S: StateValue>(&mut self, state: StateIndex, key_group: KeyGroup) -> Result<(), StateError> {
        let name = self.states[state.0].name.clone();
        let mut blob_key = Vec::new();
        key::start_key(&mut blob_key, key_group, Namespace::RESTORED);
        blob_key.extend_from_slice(name.as_bytes());
        if let Some(blob) = self.store.get(&blob_key)? {
            let entries: Vec<(K, S)> = postcard::from_bytes(&blob).map_err(|e| StateError::Decode {
                name: name.clone(),
                key_group: key_group.0,
                message: e.to_string(),
            })?;
            for (user_key, value) in entries {
                self.encode_key(state, key_group, &user_key)?;
                let value = self.encode_value(state, &value)?;
                self.store.put(&self.key, value);
            }
            self.store.delete(&blob_key);
        }
        let offset = self.offset(key_group);
        let registered = &mut self.states[state.0];
        let groups = registered.restored.as_mut().expect("unpacking a restored state");
        groups[offset] = false;
        if groups.iter().all(|pending| !pending) {
            registered.restored = None;
        }
        Ok(())
    }

    /// Sets `self.key` to the stored key of `key` in `state` and `key_group`.
    fn encode_key(&mut self, state: StateIndex, key_group: KeyGroup, key: &K) -> Result<(), StateError> {
        let mut buffer = std::mem::take(&mut self.key);
        key::start_key(&mut buffer, key_group, self.states[state.0].namespace);
        self.key = postcard::to_extend(key, buffer).map_err(|e| StateError::Encode {
            name: self.states[state.0].name.clone(),
            message: format!("key: {e}"),
        })?;
        Ok(())
    }

    fn encode_value<S: StateValue>(&self, state: StateIndex, value: &S) -> Result<Vec<u8>, StateError> {
        encode(&self.states[state.0], value)
    }

    fn decode_value<S: StateValue>(
        &self,
        state: StateIndex,
        key_group: KeyGroup,
        bytes: &[u8],
    ) -> Result<S, StateError> {
        decode(&self.states[state.0], key_group, bytes)
    }

    /// The state's value for the key in `self.key`, decoded.
    fn current<S: StateValue>(&self, state: StateIndex, key_group: KeyGroup) -> Result<Option<S>, StateError> {
        match self.store.get(&self.key)? {
            Some(bytes) => self.decode_value(state, key_group, &bytes).map(Some),
            None => Ok(None),
        }
    }
}

/// A value of `state`, encoded as the store keeps it.
fn encode<K, S: StateValue>(state: &RegisteredState<K>, value: &S) -> Result<Vec<u8>, StateError> {
    postcard::to_stdvec(value).map_err(|e| StateError::Encode { name: state.name.clone(), message: e.to_string() })
}

/// A value of `state` in `key_group`, decoded from the store's bytes.
fn decode<K, S: StateValue>(state: &RegisteredState<K>, key_group: KeyGroup, bytes: &[u8]) -> Result<S, StateError> {
    postcard::from_bytes(bytes).map_err(|e| StateError::Decode {
        name: state.name.clone(),
        key_group: key_group.0,
        message: e.to_string(),
    })
}

impl<K: Key> KeyedStateBackend<K> for EmbeddedKeyedBackend<K> {
    fn register<S: StateValue>(&mut self, name: &str, kind: StateKind) -> Result<StateIndex, StateError> {
        if let Some(index) = self.states.iter().position(|s| s.name == name) {
            let registered = &self.states[index];
            if registered.kind != kind || registered.type_id != TypeId::of::<S>() {
                return Err(StateError::TypeMismatch {
                    name: name.to_string(),
                    registered: format!("{:?} of {}", registered.kind, registered.type_name),
                    requested: format!("{:?} of {}", kind, std::any::type_name::<S>()),
                });
            }
            return Ok(StateIndex(index));
        }
        // A state restored from files keeps its namespace; a new one takes the next free one.
        let next = self.namespaces.values().map(|n| usize::from(n.0) + 1).max().unwrap_or(0);
        let namespace = *self.namespaces.entry(name.to_string()).or_insert_with(|| Namespace::of_state(next));
        assert_ne!(namespace, Namespace::RESTORED);
        self.states.push(RegisteredState {
            name: name.to_string(),
            namespace,
            kind,
            type_id: TypeId::of::<S>(),
            type_name: std::any::type_name::<S>(),
            restored: self.unregistered.remove(name),
            unpack: Self::unpack::<S>,
        });
        Ok(StateIndex(self.states.len() - 1))
    }

    fn read<S: StateValue, R>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        key: &K,
        f: impl FnOnce(Option<&S>) -> R,
    ) -> Result<R, StateError> {
        self.check_type::<S>(state)?;
        self.ensure_unpacked(state, key_group)?;
        self.encode_key(state, key_group, key)?;
        let value: Option<S> = self.current(state, key_group)?;
        Ok(f(value.as_ref()))
    }

    fn update<S: StateValue, R>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        key: &K,
        init: impl FnOnce() -> S,
        f: impl FnOnce(&mut S) -> R,
    ) -> Result<R, StateError> {
        self.check_type::<S>(state)?;
        self.ensure_unpacked(state, key_group)?;
        self.encode_key(state, key_group, key)?;
        let registered = &self.states[state.0];
        // One read-modify-write of the store, not a read and then a put.
        self.store.update(&self.key, |current| {
            let mut value = match current {
                Some(bytes) => decode(registered, key_group, bytes)?,
                None => init(),
            };
            let result = f(&mut value);
            Ok((encode(registered, &value)?, result))
        })
    }

    fn put<S: StateValue>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        key: &K,
        value: S,
    ) -> Result<(), StateError> {
        self.check_type::<S>(state)?;
        self.ensure_unpacked(state, key_group)?;
        self.encode_key(state, key_group, key)?;
        let bytes = self.encode_value(state, &value)?;
        self.store.put(&self.key, bytes);
        Ok(())
    }

    fn remove(&mut self, state: StateIndex, key_group: KeyGroup, key: &K) -> Result<(), StateError> {
        self.ensure_unpacked(state, key_group)?;
        self.encode_key(state, key_group, key)?;
        self.store.delete(&self.key);
        Ok(())
    }

    fn for_each_in<S: StateValue>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        mut f: impl FnMut(&K, &S),
    ) -> Result<(), StateError> {
        self.check_type::<S>(state)?;
        self.ensure_unpacked(state, key_group)?;
        let (start, end) = key::namespace_range(key_group, self.states[state.0].namespace);
        let name = &self.states[state.0].name;
        let decode_error = |e: postcard::Error| StateError::Decode {
            name: name.clone(),
            key_group: key_group.0,
            message: e.to_string(),
        };
        let mut entries: Vec<(K, S)> = Vec::new();
        self.store.scan(&start, &end, |stored_key, value| {
            let user_key: K = postcard::from_bytes(&stored_key[PREFIX_BYTES..]).map_err(decode_error)?;
            let value: S = postcard::from_bytes(value).map_err(decode_error)?;
            entries.push((user_key, value));
            Ok(())
        })?;
        // Stored keys sort by their encoding; what reaches an output sorts by key.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (user_key, value) in &entries {
            f(user_key, value);
        }
        Ok(())
    }

    fn freeze(&mut self) -> Result<FrozenKeyedState, StateError> {
        let namespaces = self.names_by_namespace();
        let (frozen, adopt) = self.store.freeze_for_snapshot();
        Ok(FrozenKeyedState::Store(Box::new(FrozenUpload {
            frozen,
            adopt,
            namespaces,
            range: self.range,
            context: self.store.context_now(),
            incarnation: self.store.incarnation(),
            ledger: self.ledger.clone(),
        })))
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) {
        self.ledger.lock().expect("ledger lock").confirm(checkpoint);
    }

    fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }

    fn needs_maintenance(&self) -> bool {
        self.store.needs_maintenance()
    }

    fn maintain(&mut self) -> impl Future<Output = Result<(), StateError>> + Send {
        self.store.maintain()
    }
}
