//! The canonical snapshot format, as the heap backend writes it, produced from (and read
//! into) the store's key layout, so that a checkpoint or savepoint written by either
//! backend restores into the other.
//!
//! A key group's blob is `postcard(Vec<(state name, entries)>)`, states ascending by name,
//! where `entries` is `postcard(Vec<(K, S)>)`: a varint count, then each key's and value's
//! postcard encodings back to back. The store keeps exactly those encodings (the user key
//! after the key's prefix, the value as the entry's value), so a state's entries are a
//! count and a concatenation: encoding a snapshot decodes nothing. A restored blob that no
//! access has unpacked yet is stored whole and written back as it came.

use super::codec::put_varint;
use super::frozen::FrozenStore;
use super::key::{self, Namespace};
use crate::ids::KeyGroup;
use crate::keygroup::KeyGroupRange;
use crate::state::StateError;
use crate::state::snapshot::KeyGroupSnapshot;
use std::collections::BTreeMap;

/// One key group's encoding: each state's name with its encoded entries.
pub type GroupEncoding = Vec<(String, Vec<u8>)>;

/// Reads a restored key group's blob into its states.
pub fn decode_group(group: &KeyGroupSnapshot) -> Result<GroupEncoding, StateError> {
    postcard::from_bytes(&group.bytes).map_err(|e| StateError::Decode {
        name: "<key group>".into(),
        key_group: group.key_group.0,
        message: e.to_string(),
    })
}

/// The key group being gathered.
#[derive(Default)]
struct Group {
    key_group: Option<KeyGroup>,
    /// Registered states' entries by namespace: count, then keys and values back to back.
    states: BTreeMap<u16, (u64, Vec<u8>)>,
    /// Restored blobs not unpacked, by name.
    restored: GroupEncoding,
}

impl Group {
    fn finish(&mut self, names: &BTreeMap<u16, String>, out: &mut Vec<KeyGroupSnapshot>) -> Result<(), StateError> {
        let Some(key_group) = self.key_group.take() else {
            return Ok(());
        };
        let mut states = std::mem::take(&mut self.restored);
        for (namespace, (count, entries)) in std::mem::take(&mut self.states) {
            let name = names.get(&namespace).unwrap_or_else(|| {
                panic!("namespace {namespace} in key group {key_group} belongs to no state registered at the freeze")
            });
            let mut blob = Vec::with_capacity(entries.len() + 10);
            put_varint(&mut blob, count);
            blob.extend_from_slice(&entries);
            states.push((name.clone(), blob));
        }
        states.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(
            states.windows(2).all(|pair| pair[0].0 != pair[1].0),
            "key group {key_group}: a state is both unpacked and still restored"
        );
        let bytes = postcard::to_stdvec(&states)
            .map_err(|e| StateError::Encode { name: "<key group>".into(), message: e.to_string() })?;
        out.push(KeyGroupSnapshot { key_group, bytes });
        Ok(())
    }
}

/// The canonical snapshot of `frozen` over `range`: one blob per key group holding
/// something, ascending. `names` are the states' names by namespace.
pub fn encode_key_groups(
    frozen: &FrozenStore,
    names: &BTreeMap<u16, String>,
    range: KeyGroupRange,
) -> Result<Vec<KeyGroupSnapshot>, StateError> {
    let (start, end) = key::key_group_range_bounds(range);
    let mut out = Vec::new();
    let mut group = Group::default();
    frozen.scan(&start, &end, |stored_key, value| {
        let decoded = key::decode(stored_key).expect("every stored key has its prefix");
        if group.key_group != Some(decoded.key_group) {
            group.finish(names, &mut out)?;
            group.key_group = Some(decoded.key_group);
        }
        if decoded.namespace == Namespace::RESTORED {
            let name =
                String::from_utf8(decoded.rest.to_vec()).expect("restored blobs are keyed by their state's name");
            group.restored.push((name, value.to_vec()));
        } else {
            let (count, entries) = group.states.entry(decoded.namespace.0).or_default();
            *count += 1;
            entries.extend_from_slice(decoded.rest);
            entries.extend_from_slice(value);
        }
        Ok(())
    })?;
    group.finish(names, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The two backends against each other: the same operations give snapshots with the
    //! same contents, and each restores the other's snapshot to the same reads.

    use super::*;
    use crate::keygroup::key_group_for_key;
    use crate::state::backend::KeyedStateBackend;
    use crate::state::embedded::EmbeddedKeyedBackend;
    use crate::state::embedded::testing::BackendUnderTest;
    use crate::state::heap::HeapKeyedBackend;
    use crate::state::keyed::{
        AggregatingStateDescriptor, KeyedContext, KeyedEndContext, ListStateDescriptor, MapStateDescriptor,
        ReducingStateDescriptor, Registry, ValueStateDescriptor,
    };
    use proptest::prelude::*;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    const COUNT: ValueStateDescriptor<u64> = ValueStateDescriptor::new("count");
    const SEEN: ListStateDescriptor<String> = ListStateDescriptor::new("seen");
    const BY_WORD: MapStateDescriptor<String, u32> = MapStateDescriptor::new("by-word");
    const MAX: ReducingStateDescriptor<u64> = ReducingStateDescriptor::new("max", |a, b| a.max(b));
    const MEAN: AggregatingStateDescriptor<u64, (u64, u64), f64> = AggregatingStateDescriptor::new(
        "mean",
        || (0, 0),
        |acc, v| *acc = (acc.0 + v, acc.1 + 1),
        |acc| acc.0 as f64 / acc.1 as f64,
    );
    /// Restored into both backends at the start and never registered: carried as it came.
    const LEGACY: ValueStateDescriptor<(u32, String)> = ValueStateDescriptor::new("legacy");

    const MAX_PARALLELISM: u32 = 16;
    const RANGE: KeyGroupRange = KeyGroupRange { start: 0, end: MAX_PARALLELISM };

    type Heap = HeapKeyedBackend<String>;
    type Embedded = EmbeddedKeyedBackend<String>;

    #[derive(Debug, Clone)]
    enum Op {
        ValueSet(u8, u64),
        ValueIncrement(u8),
        ValueClear(u8),
        ListAdd(u8, u8),
        ListReplace(u8, Vec<u8>),
        ListClear(u8),
        MapPut(u8, u8, u32),
        MapRemove(u8, u8),
        MapClear(u8),
        ReduceAdd(u8, u64),
        ReduceClear(u8),
        AggregateAdd(u8, u64),
        AggregateClear(u8),
        /// The embedded backend flushes and compacts.
        Settle,
        /// Both snapshot; the contents must be equal.
        Snapshot,
        /// Each backend is replaced by the other kind, restored from its snapshot.
        CrossRestore,
    }

    fn op() -> impl Strategy<Value = Op> {
        let key = 0u8..24;
        prop_oneof![
            (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::ValueSet(k, v)),
            key.clone().prop_map(Op::ValueIncrement),
            key.clone().prop_map(Op::ValueClear),
            (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::ListAdd(k, v)),
            (key.clone(), proptest::collection::vec(any::<u8>(), 0..4)).prop_map(|(k, v)| Op::ListReplace(k, v)),
            key.clone().prop_map(Op::ListClear),
            (key.clone(), 0u8..6, any::<u32>()).prop_map(|(k, u, v)| Op::MapPut(k, u, v)),
            (key.clone(), 0u8..6).prop_map(|(k, u)| Op::MapRemove(k, u)),
            key.clone().prop_map(Op::MapClear),
            (key.clone(), 0u64..1000).prop_map(|(k, v)| Op::ReduceAdd(k, v)),
            key.clone().prop_map(Op::ReduceClear),
            (key.clone(), 0u64..1000).prop_map(|(k, v)| Op::AggregateAdd(k, v)),
            key.prop_map(Op::AggregateClear),
            Just(Op::Settle),
            Just(Op::Snapshot),
            Just(Op::CrossRestore),
        ]
    }

    fn user_key(k: u8) -> String {
        format!("key-{k}")
    }

    fn with_key<B: KeyedStateBackend<String>, R>(
        backend: &mut B,
        registry: &mut Registry,
        k: u8,
        f: impl FnOnce(&mut KeyedContext<'_, String, B>) -> Result<R, StateError>,
    ) -> R {
        let key = user_key(k);
        let mut context = KeyedContext::new(backend, registry, &key, key_group_for_key(&key, MAX_PARALLELISM));
        f(&mut context).unwrap()
    }

    fn apply<B: KeyedStateBackend<String>>(backend: &mut B, registry: &mut Registry, op: &Op) {
        match op.clone() {
            Op::ValueSet(k, v) => with_key(backend, registry, k, |c| c.value(&COUNT)?.set(v)),
            Op::ValueIncrement(k) => with_key(backend, registry, k, |c| c.value(&COUNT)?.update(|| 0, |v| *v += 1)),
            Op::ValueClear(k) => with_key(backend, registry, k, |c| c.value(&COUNT)?.clear()),
            Op::ListAdd(k, v) => with_key(backend, registry, k, |c| c.list(&SEEN)?.add(format!("v{v}"))),
            Op::ListReplace(k, values) => with_key(backend, registry, k, |c| {
                c.list(&SEEN)?.update(values.iter().map(|v| format!("v{v}")).collect())
            }),
            Op::ListClear(k) => with_key(backend, registry, k, |c| c.list(&SEEN)?.clear()),
            Op::MapPut(k, u, v) => with_key(backend, registry, k, |c| c.map(&BY_WORD)?.put(format!("u{u}"), v)),
            Op::MapRemove(k, u) => with_key(backend, registry, k, |c| c.map(&BY_WORD)?.remove(&format!("u{u}"))),
            Op::MapClear(k) => with_key(backend, registry, k, |c| c.map(&BY_WORD)?.clear()),
            Op::ReduceAdd(k, v) => with_key(backend, registry, k, |c| c.reducing(&MAX)?.add(v)),
            Op::ReduceClear(k) => with_key(backend, registry, k, |c| c.reducing(&MAX)?.clear()),
            Op::AggregateAdd(k, v) => with_key(backend, registry, k, |c| c.aggregating(&MEAN)?.add(v)),
            Op::AggregateClear(k) => with_key(backend, registry, k, |c| c.aggregating(&MEAN)?.clear()),
            Op::Settle | Op::Snapshot | Op::CrossRestore => {}
        }
    }

    /// Everything a user can read for key `k`.
    type Reads = (Option<u64>, Vec<String>, Vec<(String, u32)>, Option<u64>, Option<f64>);

    fn reads<B: KeyedStateBackend<String>>(backend: &mut B, registry: &mut Registry, k: u8) -> Reads {
        with_key(backend, registry, k, |c| {
            Ok((
                c.value(&COUNT)?.get()?,
                c.list(&SEEN)?.get()?,
                c.map(&BY_WORD)?.entries()?,
                c.reducing(&MAX)?.get()?,
                c.aggregating(&MEAN)?.get()?,
            ))
        })
    }

    fn all_counts<B: KeyedStateBackend<String>>(backend: &mut B, registry: &mut Registry) -> Vec<(String, u64)> {
        let mut counts = Vec::new();
        KeyedEndContext::new(backend, registry).for_each_value(&COUNT, |k, v| counts.push((k.clone(), *v))).unwrap();
        counts
    }

    /// A state's blob as its entries, each re-encoded: comparable whatever their order.
    fn entries_of<S: Serialize + DeserializeOwned>(blob: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let entries: Vec<(String, S)> = postcard::from_bytes(blob).unwrap();
        let count = entries.len();
        let map: BTreeMap<Vec<u8>, Vec<u8>> =
            entries.iter().map(|(k, v)| (postcard::to_stdvec(k).unwrap(), postcard::to_stdvec(v).unwrap())).collect();
        assert_eq!(map.len(), count, "a key appears once in a blob");
        map
    }

    type Contents = BTreeMap<(KeyGroup, String), BTreeMap<Vec<u8>, Vec<u8>>>;

    /// A snapshot's contents, decoded.
    fn contents(snapshot: &[KeyGroupSnapshot]) -> Contents {
        assert!(snapshot.windows(2).all(|pair| pair[0].key_group < pair[1].key_group), "key groups ascend");
        let mut all = Contents::new();
        for group in snapshot {
            let states = decode_group(group).unwrap();
            assert!(!states.is_empty(), "only key groups holding something");
            assert!(states.windows(2).all(|pair| pair[0].0 < pair[1].0), "states ascend by name");
            for (name, blob) in states {
                let entries = match name.as_str() {
                    "count" | "max" => entries_of::<u64>(&blob),
                    "seen" => entries_of::<Vec<String>>(&blob),
                    "by-word" => entries_of::<BTreeMap<String, u32>>(&blob),
                    "mean" => entries_of::<(u64, u64)>(&blob),
                    "legacy" => entries_of::<(u32, String)>(&blob),
                    other => panic!("unexpected state `{other}`"),
                };
                assert!(!entries.is_empty(), "no empty state is written");
                all.insert((group.key_group, name), entries);
            }
        }
        all
    }

    /// The snapshot both backends restore at the start: a state nobody registers.
    fn legacy_snapshot() -> Vec<KeyGroupSnapshot> {
        let mut backend = Heap::open_for_test(RANGE, &[]).unwrap();
        let mut registry = Registry::default();
        for k in 0..10u8 {
            with_key(&mut backend, &mut registry, k, |c| c.value(&LEGACY)?.set((u32::from(k), format!("old{k}"))));
        }
        backend.snapshot().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn both_backends_snapshot_the_same_contents_and_restore_each_others_snapshots(
            ops in proptest::collection::vec(op(), 1..150),
        ) {
            let legacy = legacy_snapshot();
            let mut heap = Heap::open_for_test(RANGE, &legacy).unwrap();
            let mut embedded = Embedded::open_for_test(RANGE, &legacy).unwrap();
            let (mut heap_registry, mut embedded_registry) = (Registry::default(), Registry::default());
            for op in &ops {
                apply(&mut heap, &mut heap_registry, op);
                apply(&mut embedded, &mut embedded_registry, op);
                match op {
                    Op::Settle => embedded = embedded.settled(),
                    Op::Snapshot => {
                        let (a, b) = (heap.snapshot().unwrap(), embedded.snapshot().unwrap());
                        prop_assert_eq!(contents(&a), contents(&b));
                    }
                    Op::CrossRestore => {
                        let (a, b) = (heap.snapshot().unwrap(), embedded.snapshot().unwrap());
                        heap = Heap::open_for_test(RANGE, &b).unwrap();
                        embedded = Embedded::open_for_test(RANGE, &a).unwrap().settled();
                        heap_registry = Registry::default();
                        embedded_registry = Registry::default();
                    }
                    _ => {}
                }
                for k in 0..24u8 {
                    if Some(k) == touched(op) {
                        let (a, b) = (reads(&mut heap, &mut heap_registry, k), reads(&mut embedded, &mut embedded_registry, k));
                        prop_assert_eq!(a, b, "key {} after {:?}", k, op);
                    }
                }
            }
            // The whole state, read and snapshotted, then restored the other way round.
            let embedded_settled = embedded.settled();
            embedded = embedded_settled;
            prop_assert_eq!(all_counts(&mut heap, &mut heap_registry), all_counts(&mut embedded, &mut embedded_registry));
            let (a, b) = (heap.snapshot().unwrap(), embedded.snapshot().unwrap());
            prop_assert_eq!(contents(&a), contents(&b));
            let mut heap_from_embedded = Heap::open_for_test(RANGE, &b).unwrap();
            let mut embedded_from_heap = Embedded::open_for_test(RANGE, &a).unwrap().settled();
            let (mut r1, mut r2) = (Registry::default(), Registry::default());
            for k in 0..24u8 {
                let expected = reads(&mut heap, &mut heap_registry, k);
                prop_assert_eq!(&reads(&mut heap_from_embedded, &mut r1, k), &expected, "key {}", k);
                prop_assert_eq!(&reads(&mut embedded_from_heap, &mut r2, k), &expected, "key {}", k);
            }
            // The legacy state, never registered, went through every snapshot unchanged.
            let legacy_contents: Contents =
                contents(&legacy).into_iter().filter(|((_, name), _)| name == "legacy").collect();
            let carried: Contents = contents(&b).into_iter().filter(|((_, name), _)| name == "legacy").collect();
            prop_assert_eq!(carried, legacy_contents);
        }
    }

    /// The key an operation reads or writes.
    fn touched(op: &Op) -> Option<u8> {
        match op {
            Op::ValueSet(k, _)
            | Op::ValueIncrement(k)
            | Op::ValueClear(k)
            | Op::ListAdd(k, _)
            | Op::ListReplace(k, _)
            | Op::ListClear(k)
            | Op::MapPut(k, _, _)
            | Op::MapRemove(k, _)
            | Op::MapClear(k)
            | Op::ReduceAdd(k, _)
            | Op::ReduceClear(k)
            | Op::AggregateAdd(k, _)
            | Op::AggregateClear(k) => Some(*k),
            Op::Settle | Op::Snapshot | Op::CrossRestore => None,
        }
    }

    #[test]
    fn a_state_blob_is_exactly_postcards_encoding_of_its_entries() {
        // The count-and-concatenation the encoder writes is what postcard writes for a
        // `Vec<(K, S)>`, so either backend reads the other's blobs without conversion.
        let mut embedded = Embedded::open_for_test(RANGE, &[]).unwrap();
        let mut registry = Registry::default();
        let key = "k".to_string();
        let group = key_group_for_key(&key, MAX_PARALLELISM);
        KeyedContext::new(&mut embedded, &mut registry, &key, group).map(&BY_WORD).unwrap().put("a".into(), 1).unwrap();
        let snapshot = embedded.settled().snapshot().unwrap();
        let states = decode_group(&snapshot[0]).unwrap();
        let expected = postcard::to_stdvec(&vec![(key, BTreeMap::from([("a".to_string(), 1u32)]))]).unwrap();
        assert_eq!(states, vec![("by-word".to_string(), expected)]);
    }
}
