//! The typed keyed state API: descriptors, and `ValueState`, `ListState`, `MapState`,
//! `ReducingState`, `AggregatingState` scoped to the key of the record being processed.
//!
//! A descriptor names a state; the first access through a descriptor registers it with the
//! backend, later accesses find it by name. Every state kind has `clear()`.

use super::backend::{KeyedStateBackend, StateIndex, StateKind};
use super::{Key, StateError, StateValue};
use crate::ids::KeyGroup;
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// Names a `ValueState<V>`.
pub struct ValueStateDescriptor<V> {
    pub name: &'static str,
    _value: PhantomData<fn() -> V>,
}

impl<V> ValueStateDescriptor<V> {
    pub const fn new(name: &'static str) -> Self {
        ValueStateDescriptor { name, _value: PhantomData }
    }
}

/// Names a `ListState<V>`.
pub struct ListStateDescriptor<V> {
    pub name: &'static str,
    _value: PhantomData<fn() -> V>,
}

impl<V> ListStateDescriptor<V> {
    pub const fn new(name: &'static str) -> Self {
        ListStateDescriptor { name, _value: PhantomData }
    }
}

/// Names a `MapState<UK, UV>`.
pub struct MapStateDescriptor<UK, UV> {
    pub name: &'static str,
    _value: PhantomData<fn() -> (UK, UV)>,
}

impl<UK, UV> MapStateDescriptor<UK, UV> {
    pub const fn new(name: &'static str) -> Self {
        MapStateDescriptor { name, _value: PhantomData }
    }
}

/// Names a `ReducingState<V>` and gives its reduce function.
pub struct ReducingStateDescriptor<V> {
    pub name: &'static str,
    pub reduce: fn(V, V) -> V,
}

impl<V> ReducingStateDescriptor<V> {
    pub const fn new(name: &'static str, reduce: fn(V, V) -> V) -> Self {
        ReducingStateDescriptor { name, reduce }
    }
}

/// Names an `AggregatingState<IN, OUT>` with accumulator `ACC` and gives its aggregate
/// function (Flink's `AggregateFunction`: create, add, get result).
pub struct AggregatingStateDescriptor<IN, ACC, OUT> {
    pub name: &'static str,
    pub create: fn() -> ACC,
    pub add: fn(&mut ACC, IN),
    pub result: fn(&ACC) -> OUT,
}

impl<IN, ACC, OUT> AggregatingStateDescriptor<IN, ACC, OUT> {
    pub const fn new(name: &'static str, create: fn() -> ACC, add: fn(&mut ACC, IN), result: fn(&ACC) -> OUT) -> Self {
        AggregatingStateDescriptor { name, create, add, result }
    }
}

/// Keyed state access while processing one record: every state is scoped to its key.
pub struct KeyedContext<'a, K: Key, B: KeyedStateBackend<K>> {
    backend: &'a mut B,
    registry: &'a mut Registry,
    key: &'a K,
    key_group: KeyGroup,
}

/// Names already registered with the backend, so repeated accesses skip registration.
#[derive(Default)]
pub struct Registry {
    entries: Vec<(&'static str, StateIndex)>,
}

impl Registry {
    fn index<K: Key, B: KeyedStateBackend<K>, S: StateValue>(
        &mut self,
        backend: &mut B,
        name: &'static str,
        kind: StateKind,
    ) -> Result<StateIndex, StateError> {
        if let Some((_, index)) = self.entries.iter().find(|(n, _)| std::ptr::eq(*n, name) || *n == name) {
            return Ok(*index);
        }
        let index = backend.register::<S>(name, kind)?;
        self.entries.push((name, index));
        Ok(index)
    }
}

impl<'a, K: Key, B: KeyedStateBackend<K>> KeyedContext<'a, K, B> {
    pub fn new(backend: &'a mut B, registry: &'a mut Registry, key: &'a K, key_group: KeyGroup) -> Self {
        KeyedContext { backend, registry, key, key_group }
    }

    /// The key of the record being processed.
    pub fn key(&self) -> &K {
        self.key
    }

    pub fn key_group(&self) -> KeyGroup {
        self.key_group
    }

    pub fn value<V: StateValue>(
        &mut self,
        descriptor: &ValueStateDescriptor<V>,
    ) -> Result<ValueState<'_, 'a, K, B, V>, StateError> {
        let index = self.registry.index::<K, B, V>(self.backend, descriptor.name, StateKind::Value)?;
        Ok(ValueState { context: self, index, _value: PhantomData })
    }

    pub fn list<V: StateValue>(
        &mut self,
        descriptor: &ListStateDescriptor<V>,
    ) -> Result<ListState<'_, 'a, K, B, V>, StateError> {
        let index = self.registry.index::<K, B, Vec<V>>(self.backend, descriptor.name, StateKind::List)?;
        Ok(ListState { context: self, index, _value: PhantomData })
    }

    pub fn map<UK: StateValue + Ord, UV: StateValue>(
        &mut self,
        descriptor: &MapStateDescriptor<UK, UV>,
    ) -> Result<MapState<'_, 'a, K, B, UK, UV>, StateError> {
        let index = self.registry.index::<K, B, BTreeMap<UK, UV>>(self.backend, descriptor.name, StateKind::Map)?;
        Ok(MapState { context: self, index, _value: PhantomData })
    }

    pub fn reducing<V: StateValue>(
        &mut self,
        descriptor: &ReducingStateDescriptor<V>,
    ) -> Result<ReducingState<'_, 'a, K, B, V>, StateError> {
        let index = self.registry.index::<K, B, V>(self.backend, descriptor.name, StateKind::Reducing)?;
        Ok(ReducingState { context: self, index, reduce: descriptor.reduce })
    }

    pub fn aggregating<IN, ACC: StateValue, OUT>(
        &mut self,
        descriptor: &AggregatingStateDescriptor<IN, ACC, OUT>,
    ) -> Result<AggregatingState<'_, 'a, K, B, IN, ACC, OUT>, StateError> {
        let index = self.registry.index::<K, B, ACC>(self.backend, descriptor.name, StateKind::Aggregating)?;
        Ok(AggregatingState {
            context: self,
            index,
            create: descriptor.create,
            add: descriptor.add,
            result: descriptor.result,
        })
    }

    fn remove(&mut self, index: StateIndex) -> Result<(), StateError> {
        self.backend.remove(index, self.key_group, self.key)
    }
}

/// A single value per key.
pub struct ValueState<'c, 'a, K: Key, B: KeyedStateBackend<K>, V> {
    context: &'c mut KeyedContext<'a, K, B>,
    index: StateIndex,
    _value: PhantomData<fn() -> V>,
}

impl<K: Key, B: KeyedStateBackend<K>, V: StateValue> ValueState<'_, '_, K, B, V> {
    pub fn get(&mut self) -> Result<Option<V>, StateError> {
        let c = &mut *self.context;
        c.backend.read::<V, _>(self.index, c.key_group, c.key, |v| v.cloned())
    }

    pub fn set(&mut self, value: V) -> Result<(), StateError> {
        let c = &mut *self.context;
        c.backend.put(self.index, c.key_group, c.key, value)
    }

    /// Updates the value in place, starting from `init()` when there is none.
    pub fn update<R>(&mut self, init: impl FnOnce() -> V, f: impl FnOnce(&mut V) -> R) -> Result<R, StateError> {
        let c = &mut *self.context;
        c.backend.update(self.index, c.key_group, c.key, init, f)
    }

    pub fn clear(&mut self) -> Result<(), StateError> {
        self.context.remove(self.index)
    }
}

/// A list of values per key.
pub struct ListState<'c, 'a, K: Key, B: KeyedStateBackend<K>, V> {
    context: &'c mut KeyedContext<'a, K, B>,
    index: StateIndex,
    _value: PhantomData<fn() -> V>,
}

impl<K: Key, B: KeyedStateBackend<K>, V: StateValue> ListState<'_, '_, K, B, V> {
    /// The list, empty when the key has none.
    pub fn get(&mut self) -> Result<Vec<V>, StateError> {
        let c = &mut *self.context;
        c.backend.read::<Vec<V>, _>(self.index, c.key_group, c.key, |v| v.cloned().unwrap_or_default())
    }

    pub fn add(&mut self, value: V) -> Result<(), StateError> {
        let c = &mut *self.context;
        c.backend.update(self.index, c.key_group, c.key, Vec::new, |list: &mut Vec<V>| list.push(value))
    }

    /// Replaces the list; an empty list clears the state.
    pub fn update(&mut self, values: Vec<V>) -> Result<(), StateError> {
        if values.is_empty() {
            return self.clear();
        }
        let c = &mut *self.context;
        c.backend.put(self.index, c.key_group, c.key, values)
    }

    pub fn clear(&mut self) -> Result<(), StateError> {
        self.context.remove(self.index)
    }
}

/// A map of user keys to user values per key.
pub struct MapState<'c, 'a, K: Key, B: KeyedStateBackend<K>, UK, UV> {
    context: &'c mut KeyedContext<'a, K, B>,
    index: StateIndex,
    _value: PhantomData<fn() -> (UK, UV)>,
}

impl<K: Key, B: KeyedStateBackend<K>, UK: StateValue + Ord, UV: StateValue> MapState<'_, '_, K, B, UK, UV> {
    pub fn get(&mut self, user_key: &UK) -> Result<Option<UV>, StateError> {
        let c = &mut *self.context;
        c.backend
            .read::<BTreeMap<UK, UV>, _>(self.index, c.key_group, c.key, |m| m.and_then(|m| m.get(user_key).cloned()))
    }

    pub fn put(&mut self, user_key: UK, value: UV) -> Result<(), StateError> {
        let c = &mut *self.context;
        c.backend.update(self.index, c.key_group, c.key, BTreeMap::new, |m: &mut BTreeMap<UK, UV>| {
            m.insert(user_key, value);
        })
    }

    pub fn contains(&mut self, user_key: &UK) -> Result<bool, StateError> {
        let c = &mut *self.context;
        c.backend.read::<BTreeMap<UK, UV>, _>(self.index, c.key_group, c.key, |m| {
            m.is_some_and(|m| m.contains_key(user_key))
        })
    }

    pub fn remove(&mut self, user_key: &UK) -> Result<(), StateError> {
        let c = &mut *self.context;
        let now_empty =
            c.backend.update(self.index, c.key_group, c.key, BTreeMap::new, |m: &mut BTreeMap<UK, UV>| {
                m.remove(user_key);
                m.is_empty()
            })?;
        if now_empty {
            self.context.remove(self.index)?;
        }
        Ok(())
    }

    /// All entries, ascending by user key.
    pub fn entries(&mut self) -> Result<Vec<(UK, UV)>, StateError> {
        let c = &mut *self.context;
        c.backend.read::<BTreeMap<UK, UV>, _>(self.index, c.key_group, c.key, |m| {
            m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
        })
    }

    pub fn clear(&mut self) -> Result<(), StateError> {
        self.context.remove(self.index)
    }
}

/// A value per key that every `add` folds in with the reduce function.
pub struct ReducingState<'c, 'a, K: Key, B: KeyedStateBackend<K>, V> {
    context: &'c mut KeyedContext<'a, K, B>,
    index: StateIndex,
    reduce: fn(V, V) -> V,
}

impl<K: Key, B: KeyedStateBackend<K>, V: StateValue> ReducingState<'_, '_, K, B, V> {
    pub fn get(&mut self) -> Result<Option<V>, StateError> {
        let c = &mut *self.context;
        c.backend.read::<V, _>(self.index, c.key_group, c.key, |v| v.cloned())
    }

    pub fn add(&mut self, value: V) -> Result<(), StateError> {
        let c = &mut *self.context;
        let reduce = self.reduce;
        let current = c.backend.read::<V, _>(self.index, c.key_group, c.key, |v| v.cloned())?;
        let next = match current {
            Some(current) => reduce(current, value),
            None => value,
        };
        c.backend.put(self.index, c.key_group, c.key, next)
    }

    pub fn clear(&mut self) -> Result<(), StateError> {
        self.context.remove(self.index)
    }
}

/// An accumulator per key that every `add` feeds; `get` gives the aggregate's result.
pub struct AggregatingState<'c, 'a, K: Key, B: KeyedStateBackend<K>, IN, ACC, OUT> {
    context: &'c mut KeyedContext<'a, K, B>,
    index: StateIndex,
    create: fn() -> ACC,
    add: fn(&mut ACC, IN),
    result: fn(&ACC) -> OUT,
}

impl<K: Key, B: KeyedStateBackend<K>, IN, ACC: StateValue, OUT> AggregatingState<'_, '_, K, B, IN, ACC, OUT> {
    pub fn get(&mut self) -> Result<Option<OUT>, StateError> {
        let c = &mut *self.context;
        let result = self.result;
        c.backend.read::<ACC, _>(self.index, c.key_group, c.key, |acc| acc.map(result))
    }

    pub fn add(&mut self, value: IN) -> Result<(), StateError> {
        let c = &mut *self.context;
        let add = self.add;
        c.backend.update(self.index, c.key_group, c.key, self.create, |acc| add(acc, value))
    }

    pub fn clear(&mut self) -> Result<(), StateError> {
        self.context.remove(self.index)
    }
}

/// Keyed state access at the end of input, when there is no current key: visits every key,
/// or (as a keyed operator hands it to its function) every key of one key group.
pub struct KeyedEndContext<'a, K: Key, B: KeyedStateBackend<K>> {
    backend: &'a mut B,
    registry: &'a mut Registry,
    /// The one key group visited; every group of the backend when `None`.
    key_group: Option<KeyGroup>,
    _key: PhantomData<fn() -> K>,
}

impl<'a, K: Key, B: KeyedStateBackend<K>> KeyedEndContext<'a, K, B> {
    /// A context that visits every key of the backend.
    pub fn new(backend: &'a mut B, registry: &'a mut Registry) -> Self {
        KeyedEndContext { backend, registry, key_group: None, _key: PhantomData }
    }

    /// A context that visits the keys of `key_group` alone.
    pub fn for_key_group(backend: &'a mut B, registry: &'a mut Registry, key_group: KeyGroup) -> Self {
        KeyedEndContext { backend, registry, key_group: Some(key_group), _key: PhantomData }
    }

    /// The key group this context visits, if it is scoped to one.
    pub fn key_group(&self) -> Option<KeyGroup> {
        self.key_group
    }

    /// Calls `f` for every key (of this context's key groups) holding a value in
    /// `descriptor`'s state, in key-group order and, within a key group, in key order.
    pub fn for_each_value<V: StateValue>(
        &mut self,
        descriptor: &ValueStateDescriptor<V>,
        f: impl FnMut(&K, &V),
    ) -> Result<(), StateError> {
        let index = self.registry.index::<K, B, V>(self.backend, descriptor.name, StateKind::Value)?;
        match self.key_group {
            Some(key_group) => self.backend.for_each_in(index, key_group, f),
            None => self.backend.for_each(index, f),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every test runs against both backends (the `for_each_backend!` list at the end): the
    //! heap backend and the embedded on-disk one, which is also made to flush and compact
    //! (`settled`) where that could change what a later read or snapshot sees.

    use super::*;
    use crate::keygroup::{KeyGroupRange, key_group_for_key};
    use crate::state::embedded::testing::BackendUnderTest;
    use crate::state::snapshot::KeyGroupSnapshot;

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

    const MAX_PARALLELISM: u32 = 128;

    fn with_key<B: KeyedStateBackend<String>, R>(
        backend: &mut B,
        registry: &mut Registry,
        key: &str,
        f: impl FnOnce(&mut KeyedContext<'_, String, B>) -> R,
    ) -> R {
        let key = key.to_string();
        let key_group = key_group_for_key(&key, MAX_PARALLELISM);
        let mut context = KeyedContext::new(backend, registry, &key, key_group);
        f(&mut context)
    }

    fn full_range() -> KeyGroupRange {
        KeyGroupRange { start: 0, end: MAX_PARALLELISM }
    }

    fn every_state_kind_is_scoped_to_the_current_key_and_survives_snapshot_and_restore<B: BackendUnderTest<String>>() {
        let mut backend = B::open_for_test(full_range(), &[]).unwrap();
        let mut registry = Registry::default();
        for (key, n) in [("a", 3u64), ("b", 5)] {
            for i in 1..=n {
                with_key(&mut backend, &mut registry, key, |c| {
                    c.value(&COUNT)?.update(|| 0, |v| *v += 1)?;
                    c.list(&SEEN)?.add(format!("{key}{i}"))?;
                    c.map(&BY_WORD)?.put(format!("w{}", i % 2), i as u32)?;
                    c.reducing(&MAX)?.add(i * 10)?;
                    c.aggregating(&MEAN)?.add(i)
                })
                .unwrap();
            }
        }
        let mut backend = backend.settled();
        let snapshot = backend.snapshot().unwrap();
        let mut restored = B::open_for_test(full_range(), &snapshot).unwrap().settled();
        for backend in [&mut backend, &mut restored] {
            // A registry caches one backend's indexes, so each backend gets its own.
            let mut registry = Registry::default();
            with_key(backend, &mut registry, "b", |c| {
                assert_eq!(c.value(&COUNT)?.get()?, Some(5));
                assert_eq!(c.list(&SEEN)?.get()?, vec!["b1", "b2", "b3", "b4", "b5"]);
                assert_eq!(c.map(&BY_WORD)?.entries()?, vec![("w0".to_string(), 4), ("w1".to_string(), 5)]);
                assert_eq!(c.reducing(&MAX)?.get()?, Some(50));
                assert_eq!(c.aggregating(&MEAN)?.get()?, Some(3.0));
                Ok::<_, StateError>(())
            })
            .unwrap();
            with_key(backend, &mut registry, "a", |c| {
                assert_eq!(c.value(&COUNT)?.get()?, Some(3));
                c.value(&COUNT)?.clear()?;
                assert_eq!(c.value(&COUNT)?.get()?, None);
                c.list(&SEEN)?.clear()?;
                assert!(c.list(&SEEN)?.get()?.is_empty());
                c.map(&BY_WORD)?.remove(&"w0".to_string())?;
                assert!(!c.map(&BY_WORD)?.contains(&"w0".to_string())?);
                c.reducing(&MAX)?.clear()?;
                c.aggregating(&MEAN)?.clear()?;
                assert_eq!(c.aggregating(&MEAN)?.get()?, None);
                Ok::<_, StateError>(())
            })
            .unwrap();
        }
    }

    /// Every key's count in `backend`, read back as a user would.
    fn counts<B: KeyedStateBackend<String>>(backend: &mut B) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        let mut registry = Registry::default();
        KeyedEndContext::new(backend, &mut registry)
            .for_each_value(&COUNT, |key, count| {
                counts.insert(key.clone(), *count);
            })
            .unwrap();
        counts
    }

    fn a_frozen_snapshot_holds_the_state_as_it_was_whatever_is_written_after<B: BackendUnderTest<String>>() {
        let mut backend = B::open_for_test(full_range(), &[]).unwrap();
        let mut registry = Registry::default();
        let mut model: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..200u64 {
            let key = format!("k{i}");
            with_key(&mut backend, &mut registry, &key, |c| c.value(&COUNT)?.set(i)).unwrap();
            model.insert(key, i);
        }
        let mut backend = backend.settled();
        let first = backend.freeze().unwrap();
        let at_first = model.clone();
        // Written while the first snapshot is in flight: an update, a removal, a new key.
        with_key(&mut backend, &mut registry, "k1", |c| c.value(&COUNT)?.set(1000)).unwrap();
        with_key(&mut backend, &mut registry, "k2", |c| c.value(&COUNT)?.clear()).unwrap();
        with_key(&mut backend, &mut registry, "new", |c| c.value(&COUNT)?.set(7)).unwrap();
        model.insert("k1".into(), 1000);
        model.remove("k2");
        model.insert("new".into(), 7);
        // A second snapshot in flight at the same time, then more writes, flushed and
        // compacted while both snapshots hold their files.
        let mut backend = backend.settled();
        let second = backend.freeze().unwrap();
        let at_second = model.clone();
        for i in 0..200u64 {
            let key = format!("k{i}");
            if model.contains_key(&key) {
                with_key(&mut backend, &mut registry, &key, |c| c.value(&COUNT)?.update(|| 0, |v| *v += 1)).unwrap();
                *model.get_mut(&key).unwrap() += 1;
            }
        }
        let mut backend = backend.settled();
        // Encoded after all of it, in either order, each snapshot is the state at its freeze.
        let second = second.encode().unwrap();
        let first = first.encode().unwrap();
        let restore = |groups: &[KeyGroupSnapshot]| B::open_for_test(full_range(), groups).unwrap().settled();
        assert_eq!(counts(&mut restore(&first)), at_first);
        assert_eq!(counts(&mut restore(&second)), at_second);
        assert_eq!(counts(&mut backend), model);
    }

    fn restored_but_unregistered_state_is_carried_into_the_next_snapshot<B: BackendUnderTest<String>>() {
        let mut backend = B::open_for_test(full_range(), &[]).unwrap();
        let mut registry = Registry::default();
        with_key(&mut backend, &mut registry, "k", |c| c.value(&COUNT)?.set(7)).unwrap();
        let first = backend.snapshot().unwrap();
        let mut untouched = B::open_for_test(full_range(), &first).unwrap().settled();
        assert_eq!(untouched.snapshot().unwrap(), first);
    }

    fn accessing_a_state_as_another_type_is_an_error<B: BackendUnderTest<String>>() {
        const AS_TEXT: ValueStateDescriptor<String> = ValueStateDescriptor::new("count");
        let mut backend = B::open_for_test(full_range(), &[]).unwrap();
        let mut registry = Registry::default();
        with_key(&mut backend, &mut registry, "k", |c| c.value(&COUNT)?.set(1)).unwrap();
        let mut other_registry = Registry::default();
        let err = with_key(&mut backend, &mut other_registry, "k", |c| c.value(&AS_TEXT).map(|_| ())).unwrap_err();
        assert!(matches!(err, StateError::TypeMismatch { .. }), "{err}");
    }

    fn a_backend_refuses_key_groups_outside_its_range<B: BackendUnderTest<String>>() {
        let mut backend = B::open_for_test(full_range(), &[]).unwrap();
        let mut registry = Registry::default();
        with_key(&mut backend, &mut registry, "k", |c| c.value(&COUNT)?.set(1)).unwrap();
        let snapshot = backend.snapshot().unwrap();
        let err = B::open_for_test(KeyGroupRange { start: 0, end: 0 }, &snapshot).err().unwrap();
        assert!(matches!(err, StateError::ForeignKeyGroup { .. }));
    }

    /// One `#[test]` per backend for each of the generic tests above.
    macro_rules! for_each_backend {
        ($($test:ident),* $(,)?) => {
            mod heap {
                $(#[test]
                fn $test() {
                    super::$test::<crate::state::heap::HeapKeyedBackend<String>>();
                })*
            }
            mod embedded {
                $(#[test]
                fn $test() {
                    super::$test::<crate::state::embedded::EmbeddedKeyedBackend<String>>();
                })*
            }
        };
    }

    for_each_backend!(
        every_state_kind_is_scoped_to_the_current_key_and_survives_snapshot_and_restore,
        a_frozen_snapshot_holds_the_state_as_it_was_whatever_is_written_after,
        restored_but_unregistered_state_is_carried_into_the_next_snapshot,
        accessing_a_state_as_another_type_is_an_error,
        a_backend_refuses_key_groups_outside_its_range,
    );
}
