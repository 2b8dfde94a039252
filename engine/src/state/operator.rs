//! Operator (non-keyed) state: named list states per subtask, redistributed on rescale by
//! even split or union. A partitioned source keeps its `(partition, offset)` pairs here.

use super::snapshot::{ListStateSnapshot, Redistribution};
use super::{StateError, StateValue};
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// Names an operator list state and says how it is redistributed.
pub struct OperatorListDescriptor<T> {
    pub name: &'static str,
    pub mode: Redistribution,
    _value: PhantomData<fn() -> T>,
}

impl<T> OperatorListDescriptor<T> {
    /// A list redistributed by even split (Flink's `getListState`).
    pub const fn even_split(name: &'static str) -> Self {
        OperatorListDescriptor { name, mode: Redistribution::EvenSplit, _value: PhantomData }
    }

    /// A list every subtask receives whole (Flink's `getUnionListState`).
    pub const fn union(name: &'static str) -> Self {
        OperatorListDescriptor { name, mode: Redistribution::Union, _value: PhantomData }
    }
}

/// The operator list states of one operator in one subtask, kept encoded: operator state is
/// small (offsets, pending transactions), and encoded elements redistribute without decoding.
#[derive(Clone, Debug, Default)]
pub struct OperatorStateStore {
    lists: BTreeMap<String, ListStateSnapshot>,
}

impl OperatorStateStore {
    /// A store holding restored lists (already redistributed for this subtask).
    pub fn restore(lists: &[ListStateSnapshot]) -> Self {
        OperatorStateStore { lists: lists.iter().map(|l| (l.name.clone(), l.clone())).collect() }
    }

    /// The list's elements; empty if it was never set nor restored.
    pub fn get<T: StateValue>(&self, descriptor: &OperatorListDescriptor<T>) -> Result<Vec<T>, StateError> {
        let Some(list) = self.lists.get(descriptor.name) else { return Ok(Vec::new()) };
        list.elements
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                postcard::from_bytes(bytes).map_err(|e| StateError::DecodeListElement {
                    name: descriptor.name.to_string(),
                    index,
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Replaces the list's elements.
    pub fn set<T: StateValue>(
        &mut self,
        descriptor: &OperatorListDescriptor<T>,
        items: &[T],
    ) -> Result<(), StateError> {
        let elements = items
            .iter()
            .map(|item| {
                postcard::to_stdvec(item)
                    .map_err(|e| StateError::Encode { name: descriptor.name.to_string(), message: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.lists.insert(
            descriptor.name.to_string(),
            ListStateSnapshot { name: descriptor.name.to_string(), mode: descriptor.mode, elements },
        );
        Ok(())
    }

    /// Every list, ascending by name.
    pub fn snapshot(&self) -> Vec<ListStateSnapshot> {
        self.lists.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFSETS: OperatorListDescriptor<(u32, u64)> = OperatorListDescriptor::even_split("offsets");

    #[test]
    fn lists_round_trip_through_a_snapshot() {
        let mut store = OperatorStateStore::default();
        assert!(store.get(&OFFSETS).unwrap().is_empty());
        store.set(&OFFSETS, &[(0, 10), (1, 20)]).unwrap();
        let restored = OperatorStateStore::restore(&store.snapshot());
        assert_eq!(restored.get(&OFFSETS).unwrap(), vec![(0, 10), (1, 20)]);
    }

    #[test]
    fn a_corrupt_element_is_an_error_naming_the_list() {
        let broken = vec![ListStateSnapshot {
            name: "offsets".into(),
            mode: Redistribution::EvenSplit,
            elements: vec![vec![0xff]],
        }];
        let err = OperatorStateStore::restore(&broken).get(&OFFSETS).unwrap_err();
        assert!(err.to_string().contains("offsets"), "{err}");
    }
}
