//! The heap keyed state backend: state as objects in per-key-group hash maps.
//!
//! Serves both the `jobmanager` and `filesystem` backends; they differ only in where
//! snapshots are written. Key groups are copy-on-write, as Flink's heap backend snapshots
//! its `CopyOnWriteStateMap`: freezing the state for a snapshot only counts references,
//! the asynchronous part encodes the frozen maps, and a key group written while a snapshot
//! still holds it is copied once. The snapshot gets the copy and the live state keeps the
//! original, so a checkpoint does not scatter the live state's memory.
//!
//! Hash maps use a fixed hasher (FxHash), so iteration order depends only on the history
//! of operations, never on a random seed: a snapshot's bytes are the same for the same
//! seed. Snapshots keep that order (sorting would make them superlinear); what reaches an
//! output (`for_each`) is sorted by key.

use super::backend::{KeyedStateBackend, StateIndex, StateKind};
use super::snapshot::{FrozenKeyedState, KeyGroupSnapshot};
use super::{Key, StateError, StateValue};
use crate::ids::KeyGroup;
use crate::keygroup::KeyGroupRange;
use rustc_hash::FxHashMap;
use serde_bytes::ByteBuf;
use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

/// One registered state's storage, with its type erased.
trait ErasedTable<K>: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn type_name(&self) -> &'static str;
    fn kind(&self) -> StateKind;
    /// Shares the current key-group maps with a snapshot.
    fn freeze(&mut self) -> Box<dyn FrozenTable>;
    fn remove_key(&mut self, offset: usize, key: &K);
}

/// One state's key-group maps as a snapshot froze them.
trait FrozenTable: Send {
    fn encode_group(&self, offset: usize) -> Result<Option<Vec<u8>>, StateError>;
}

/// A key group's entries, shared with the snapshots that froze them.
type Group<K, S> = Arc<FxHashMap<K, S>>;

struct Table<K, S> {
    name: String,
    kind: StateKind,
    groups: Vec<Group<K, S>>,
    /// The snapshots in flight that froze this table.
    frozen: Vec<Weak<Frozen<K, S>>>,
}

/// One snapshot's hold on a table: each slot keeps a key group's map until the encoder
/// takes it.
struct Frozen<K, S> {
    name: String,
    slots: Vec<Mutex<Option<Group<K, S>>>>,
}

impl<K: Key, S: StateValue> Table<K, S> {
    /// The key group at `offset`, for writing. If snapshots in flight still hold it, they
    /// get a copy and the live state keeps the original; only a group the encoder is
    /// reading at this moment is copied for the live state instead.
    fn group_mut(&mut self, offset: usize) -> &mut FxHashMap<K, S> {
        if Arc::strong_count(&self.groups[offset]) > 1 {
            let live = &self.groups[offset];
            let mut copy: Option<Group<K, S>> = None;
            for frozen in self.frozen.iter().filter_map(Weak::upgrade) {
                let mut slot = frozen.slots[offset].lock().expect("a frozen slot's lock is never poisoned");
                if slot.as_ref().is_some_and(|held| Arc::ptr_eq(held, live)) {
                    *slot = Some(copy.get_or_insert_with(|| Arc::new(FxHashMap::clone(live))).clone());
                }
            }
        }
        Arc::make_mut(&mut self.groups[offset])
    }
}

impl<K: Key, S: StateValue> FrozenTable for Arc<Frozen<K, S>> {
    fn encode_group(&self, offset: usize) -> Result<Option<Vec<u8>>, StateError> {
        // Taken, so that the live state need not copy this group once it is encoded.
        let taken = self.slots[offset].lock().expect("a frozen slot's lock is never poisoned").take();
        let Some(group) = taken.filter(|group| !group.is_empty()) else {
            return Ok(None);
        };
        // In the map's order, unsorted: encoding stays linear in the state's size. Postcard
        // encodes a map as a sequence of pairs, which restore reads back as `Vec<(K, S)>`.
        postcard::to_stdvec(&*group)
            .map(Some)
            .map_err(|e| StateError::Encode { name: self.name.clone(), message: e.to_string() })
    }
}

impl<K: Key, S: StateValue> ErasedTable<K> for Table<K, S> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<S>()
    }

    fn kind(&self) -> StateKind {
        self.kind
    }

    fn freeze(&mut self) -> Box<dyn FrozenTable> {
        self.frozen.retain(|frozen| frozen.strong_count() > 0);
        let slots = self.groups.iter().map(|group| Mutex::new(Some(group.clone()))).collect();
        let frozen = Arc::new(Frozen { name: self.name.clone(), slots });
        self.frozen.push(Arc::downgrade(&frozen));
        Box::new(frozen)
    }

    fn remove_key(&mut self, offset: usize, key: &K) {
        // Only a real removal copies a frozen group.
        if self.groups[offset].contains_key(key) {
            self.group_mut(offset).remove(key);
        }
    }
}

/// Keyed state on the heap for one operator in one subtask.
pub struct HeapKeyedBackend<K> {
    range: KeyGroupRange,
    names: Vec<String>,
    tables: Vec<Box<dyn ErasedTable<K>>>,
    /// The `TypeId` of each table, checked without a virtual call on every access.
    types: Vec<TypeId>,
    /// Restored bytes of states not registered yet, by state name then key group. They are
    /// carried into every snapshot until registered, so unread state is never dropped.
    pending: Arc<PendingState>,
}

/// Restored bytes by state name, then key group.
type PendingState = BTreeMap<String, BTreeMap<KeyGroup, Vec<u8>>>;

/// The encoding of one key group: each state's name with its encoded entries (as serde bytes: postcard writes
/// them as it writes a `Vec<u8>`, and reads them back at once rather than a byte at a time).
type GroupEncoding = Vec<(String, ByteBuf)>;

/// The states of one key group's snapshot, by name: what a restore reads first.
fn decode_group(group: &KeyGroupSnapshot) -> Result<GroupEncoding, StateError> {
    postcard::from_bytes(&group.bytes).map_err(|e| StateError::Decode {
        name: "<key group>".into(),
        key_group: group.key_group.0,
        message: e.to_string(),
    })
}

/// The entries of state `name` in key group `key_group`'s encoding of it.
fn decode_entries<K: Key, S: StateValue>(
    name: &str,
    key_group: KeyGroup,
    bytes: &[u8],
) -> Result<Vec<(K, S)>, StateError> {
    postcard::from_bytes(bytes).map_err(|e| StateError::Decode {
        name: name.to_string(),
        key_group: key_group.0,
        message: e.to_string(),
    })
}

/// Every entry of state `name` in the key groups' snapshots `groups` (of any subtasks, each group below
/// `max_parallelism`), decoded as a restore decodes them but without building a backend: for readers of a
/// snapshot's state, such as the simulator's consistent-cut check. A key group given twice counts once, the later,
/// as in a restore.
pub fn snapshot_entries<K: Key, S: StateValue>(
    groups: &[KeyGroupSnapshot],
    name: &str,
    max_parallelism: u32,
) -> Result<Vec<(K, S)>, StateError> {
    let mut found: BTreeMap<KeyGroup, Vec<u8>> = BTreeMap::new();
    for group in groups {
        if group.key_group.0 >= max_parallelism {
            return Err(StateError::ForeignKeyGroup { key_group: group.key_group.0, start: 0, end: max_parallelism });
        }
        // Every state of a group is decoded, as a restore does, so that a corrupt one is found here too.
        for (state, bytes) in decode_group(group)? {
            if state == name {
                found.insert(group.key_group, bytes.into_vec());
            }
        }
    }
    let mut entries = Vec::new();
    for (key_group, bytes) in found {
        entries.extend(decode_entries::<K, S>(name, key_group, &bytes)?);
    }
    Ok(entries)
}

impl<K: Key> HeapKeyedBackend<K> {
    /// A backend over `range`, restoring the given key groups.
    pub fn new(range: KeyGroupRange, restored: &[KeyGroupSnapshot]) -> Result<Self, StateError> {
        let mut pending = PendingState::new();
        for group in restored {
            if !range.contains(group.key_group) {
                return Err(StateError::ForeignKeyGroup {
                    key_group: group.key_group.0,
                    start: range.start,
                    end: range.end,
                });
            }
            for (name, bytes) in decode_group(group)? {
                pending.entry(name).or_default().insert(group.key_group, bytes.into_vec());
            }
        }
        Ok(HeapKeyedBackend {
            range,
            names: Vec::new(),
            tables: Vec::new(),
            types: Vec::new(),
            pending: Arc::new(pending),
        })
    }

    fn offset(&self, key_group: KeyGroup) -> usize {
        assert!(self.range.contains(key_group), "key group {key_group} outside {:?}", self.range);
        (key_group.0 - self.range.start) as usize
    }

    fn table<S: StateValue>(&mut self, state: StateIndex) -> Result<&mut Table<K, S>, StateError> {
        if self.types[state.0] != TypeId::of::<Table<K, S>>() {
            return Err(StateError::TypeMismatch {
                name: self.names[state.0].clone(),
                registered: self.tables[state.0].type_name().to_string(),
                requested: std::any::type_name::<S>().to_string(),
            });
        }
        Ok(self.tables[state.0].as_any_mut().downcast_mut::<Table<K, S>>().expect("the type was checked just above"))
    }
}

impl<K: Key> KeyedStateBackend<K> for HeapKeyedBackend<K> {
    fn register<S: StateValue>(&mut self, name: &str, kind: StateKind) -> Result<StateIndex, StateError> {
        if let Some(index) = self.names.iter().position(|n| n == name) {
            let table = &self.tables[index];
            if table.kind() != kind || table.type_name() != std::any::type_name::<S>() {
                return Err(StateError::TypeMismatch {
                    name: name.to_string(),
                    registered: format!("{:?} of {}", table.kind(), table.type_name()),
                    requested: format!("{:?} of {}", kind, std::any::type_name::<S>()),
                });
            }
            return Ok(StateIndex(index));
        }
        let mut groups: Vec<Group<K, S>> = (0..self.range.len()).map(|_| Group::default()).collect();
        for (key_group, bytes) in Arc::make_mut(&mut self.pending).remove(name).unwrap_or_default() {
            let entries = decode_entries::<K, S>(name, key_group, &bytes)?;
            Arc::make_mut(&mut groups[(key_group.0 - self.range.start) as usize]).extend(entries);
        }
        self.names.push(name.to_string());
        self.tables.push(Box::new(Table { name: name.to_string(), kind, groups, frozen: Vec::new() }));
        self.types.push(TypeId::of::<Table<K, S>>());
        Ok(StateIndex(self.tables.len() - 1))
    }

    fn read<S: StateValue, R>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        key: &K,
        f: impl FnOnce(Option<&S>) -> R,
    ) -> Result<R, StateError> {
        let offset = self.offset(key_group);
        Ok(f(self.table::<S>(state)?.groups[offset].get(key)))
    }

    fn update<S: StateValue, R>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        key: &K,
        init: impl FnOnce() -> S,
        f: impl FnOnce(&mut S) -> R,
    ) -> Result<R, StateError> {
        let offset = self.offset(key_group);
        let group = self.table::<S>(state)?.group_mut(offset);
        // Look up by reference first so that the key is cloned only when it is new.
        if let Some(value) = group.get_mut(key) {
            return Ok(f(value));
        }
        Ok(f(group.entry(key.clone()).or_insert_with(init)))
    }

    fn put<S: StateValue>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        key: &K,
        value: S,
    ) -> Result<(), StateError> {
        let offset = self.offset(key_group);
        let group = self.table::<S>(state)?.group_mut(offset);
        match group.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                group.insert(key.clone(), value);
            }
        }
        Ok(())
    }

    fn remove(&mut self, state: StateIndex, key_group: KeyGroup, key: &K) -> Result<(), StateError> {
        let offset = self.offset(key_group);
        self.tables[state.0].remove_key(offset, key);
        Ok(())
    }

    fn for_each_in<S: StateValue>(
        &mut self,
        state: StateIndex,
        key_group: KeyGroup,
        mut f: impl FnMut(&K, &S),
    ) -> Result<(), StateError> {
        let offset = self.offset(key_group);
        let group = &self.table::<S>(state)?.groups[offset];
        // A hash map's order must not reach an output: visit the keys sorted.
        let mut entries: Vec<(&K, &S)> = group.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, value) in entries {
            f(key, value);
        }
        Ok(())
    }

    fn freeze(&mut self) -> Result<FrozenKeyedState, StateError> {
        let range = self.range;
        let tables: Vec<(String, Box<dyn FrozenTable>)> =
            self.names.iter().cloned().zip(self.tables.iter_mut().map(|table| table.freeze())).collect();
        let pending = self.pending.clone();
        Ok(FrozenKeyedState::new(move || {
            let mut snapshot = Vec::new();
            for key_group in range.iter() {
                let offset = (key_group.0 - range.start) as usize;
                let mut states: GroupEncoding = Vec::new();
                for (name, table) in &tables {
                    if let Some(bytes) = table.encode_group(offset)? {
                        states.push((name.clone(), ByteBuf::from(bytes)));
                    }
                }
                for (name, groups) in pending.iter() {
                    if let Some(bytes) = groups.get(&key_group) {
                        states.push((name.clone(), ByteBuf::from(bytes.clone())));
                    }
                }
                if states.is_empty() {
                    continue;
                }
                states.sort_by(|a, b| a.0.cmp(&b.0));
                let bytes = postcard::to_stdvec(&states)
                    .map_err(|e| StateError::Encode { name: "<key group>".into(), message: e.to_string() })?;
                snapshot.push(KeyGroupSnapshot { key_group, bytes });
            }
            Ok(snapshot)
        }))
    }

    fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }
}

#[cfg(test)]
mod rescale_tests {
    //! Rescaling through snapshots, for each pair of backends: the old subtasks on one, the
    //! new ones on the same or the other (a savepoint restores into either backend).

    use super::*;
    use crate::ids::SubtaskIndex;
    use crate::keygroup::{key_group_for_key, subtask_for_key_group};
    use crate::state::embedded::EmbeddedKeyedBackend;
    use crate::state::embedded::testing::BackendUnderTest;
    use crate::state::keyed::{KeyedContext, KeyedEndContext, Registry, ValueStateDescriptor};
    use crate::state::redistribute::redistribute;
    use crate::state::snapshot::OperatorSnapshot;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
    use std::collections::{BTreeMap, BTreeSet};

    const VALUE: ValueStateDescriptor<u64> = ValueStateDescriptor::new("value");

    fn every_keys_state_lands_in_exactly_the_subtask_its_key_group_names<Old, New>(
        keys: &BTreeSet<u64>,
        old_p: u32,
        new_p: u32,
        max: u32,
    ) -> Result<(), TestCaseError>
    where
        Old: BackendUnderTest<u64>,
        New: BackendUnderTest<u64>,
    {
        // Old subtasks hold the keys of their ranges, each key's value derived from it.
        let mut snapshots = Vec::new();
        for i in 0..old_p {
            let range = KeyGroupRange::for_subtask(SubtaskIndex(i), old_p, max);
            let mut backend = Old::open_for_test(range, &[]).unwrap();
            let mut registry = Registry::default();
            for key in keys.iter().filter(|k| range.contains(key_group_for_key(*k, max))) {
                let mut context = KeyedContext::new(&mut backend, &mut registry, key, key_group_for_key(key, max));
                context.value(&VALUE).unwrap().set(key.wrapping_mul(31)).unwrap();
            }
            let mut backend = backend.settled();
            snapshots.push(OperatorSnapshot { keyed: backend.snapshot().unwrap(), ..OperatorSnapshot::default() });
        }
        // Restore at the new parallelism and see where every key's value is.
        let mut found: BTreeMap<u64, Vec<(u32, u64)>> = BTreeMap::new();
        for (j, snapshot) in redistribute(&snapshots, new_p, max).into_iter().enumerate() {
            let range = KeyGroupRange::for_subtask(SubtaskIndex(j as u32), new_p, max);
            let mut backend = New::open_for_test(range, &snapshot.keyed).unwrap().settled();
            let mut registry = Registry::default();
            KeyedEndContext::new(&mut backend, &mut registry)
                .for_each_value(&VALUE, |key, value| found.entry(*key).or_default().push((j as u32, *value)))
                .unwrap();
        }
        prop_assert_eq!(found.len(), keys.len(), "a key's state was lost");
        for key in keys {
            let expected = subtask_for_key_group(key_group_for_key(key, max), new_p, max).0;
            prop_assert_eq!(&found[key], &vec![(expected, key.wrapping_mul(31))], "key {}", key);
        }
        Ok(())
    }

    type Heap = HeapKeyedBackend<u64>;
    type Embedded = EmbeddedKeyedBackend<u64>;

    proptest! {
        #[test]
        fn heap_to_heap(keys in proptest::collection::btree_set(any::<u64>(), 0..300), old_p in 1u32..9, new_p in 1u32..9, max in 9u32..300) {
            every_keys_state_lands_in_exactly_the_subtask_its_key_group_names::<Heap, Heap>(&keys, old_p, new_p, max)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn embedded_to_embedded(keys in proptest::collection::btree_set(any::<u64>(), 0..300), old_p in 1u32..9, new_p in 1u32..9, max in 9u32..300) {
            every_keys_state_lands_in_exactly_the_subtask_its_key_group_names::<Embedded, Embedded>(&keys, old_p, new_p, max)?;
        }

        #[test]
        fn heap_to_embedded(keys in proptest::collection::btree_set(any::<u64>(), 0..300), old_p in 1u32..9, new_p in 1u32..9, max in 9u32..300) {
            every_keys_state_lands_in_exactly_the_subtask_its_key_group_names::<Heap, Embedded>(&keys, old_p, new_p, max)?;
        }

        #[test]
        fn embedded_to_heap(keys in proptest::collection::btree_set(any::<u64>(), 0..300), old_p in 1u32..9, new_p in 1u32..9, max in 9u32..300) {
            every_keys_state_lands_in_exactly_the_subtask_its_key_group_names::<Embedded, Heap>(&keys, old_p, new_p, max)?;
        }
    }
}

#[cfg(test)]
mod encoding_tests {
    use super::*;
    use crate::state::keyed::{KeyedContext, KeyedEndContext, Registry, ValueStateDescriptor};
    use proptest::prelude::*;

    const COUNT: ValueStateDescriptor<u64> = ValueStateDescriptor::new("count");
    const NAME: ValueStateDescriptor<String> = ValueStateDescriptor::new("name");

    proptest! {
        /// Reading one state straight from a snapshot gives what a backend restored from it holds.
        #[test]
        fn snapshot_entries_are_what_a_restored_backend_holds(
            keys in proptest::collection::btree_map(0u64..500, (any::<u64>(), "[a-z]{0,8}"), 0..60),
            max_parallelism in 1u32..40,
        ) {
            let range = KeyGroupRange { start: 0, end: max_parallelism };
            let mut backend = HeapKeyedBackend::<u64>::new(range, &[]).unwrap();
            let mut registry = Registry::default();
            for (key, (count, name)) in &keys {
                let key_group = crate::keygroup::key_group_for_key(key, max_parallelism);
                let mut context = KeyedContext::new(&mut backend, &mut registry, key, key_group);
                context.value(&COUNT).unwrap().set(*count).unwrap();
                context.value(&NAME).unwrap().set(name.clone()).unwrap();
            }
            let groups = backend.freeze().unwrap().encode().unwrap();
            let mut restored = HeapKeyedBackend::<u64>::new(range, &groups).unwrap();
            let mut registry = Registry::default();
            let mut held = Vec::new();
            KeyedEndContext::new(&mut restored, &mut registry)
                .for_each_value(&COUNT, |key, count| held.push((*key, *count)))
                .unwrap();
            held.sort_unstable();
            let mut read = snapshot_entries::<u64, u64>(&groups, COUNT.name, max_parallelism).unwrap();
            read.sort_unstable();
            prop_assert_eq!(&read, &held);
            let expected: Vec<(u64, u64)> = keys.iter().map(|(key, (count, _))| (*key, *count)).collect();
            prop_assert_eq!(read, expected);
        }
    }

    #[test]
    fn a_key_group_beyond_max_parallelism_is_refused() {
        let group =
            KeyGroupSnapshot { key_group: KeyGroup(8), bytes: postcard::to_stdvec(&GroupEncoding::new()).unwrap() };
        let error = snapshot_entries::<u64, u64>(&[group], COUNT.name, 8).unwrap_err();
        assert!(matches!(error, StateError::ForeignKeyGroup { key_group: 8, start: 0, end: 8 }), "{error:?}");
    }

    /// A key group's encoding names its states' bytes as serde bytes: the same postcard bytes as the plain
    /// `Vec<u8>`s that snapshots written before held.
    #[test]
    fn a_group_encoding_keeps_the_bytes_of_plain_byte_vectors() {
        let plain: Vec<(String, Vec<u8>)> = vec![("a".into(), vec![1, 2, 200]), ("b".into(), Vec::new())];
        let encoding: GroupEncoding = plain.iter().map(|(n, b)| (n.clone(), ByteBuf::from(b.clone()))).collect();
        let bytes = postcard::to_stdvec(&encoding).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&plain).unwrap());
        assert_eq!(postcard::from_bytes::<GroupEncoding>(&bytes).unwrap(), encoding);
    }
}
