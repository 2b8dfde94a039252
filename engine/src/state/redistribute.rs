//! Redistribution of snapshotted state to a new parallelism: keyed state by key-group ranges,
//! operator list state by even split or union.
//!
//! These functions never decode state; they move encoded blobs, so that they cannot lose or
//! corrupt what they do not understand.

use super::snapshot::{KeyGroupSnapshot, ListStateSnapshot, OperatorSnapshot, Redistribution};
use crate::ids::SubtaskIndex;
use crate::keygroup::KeyGroupRange;
use std::collections::BTreeMap;

/// Splits `items` into `parts` contiguous runs whose lengths differ by at most one, the
/// longer runs first (Flink's `RoundRobinOperatorStateRepartitioner` even split).
pub fn even_split<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    assert!(parts >= 1);
    let base = items.len() / parts;
    let extra = items.len() % parts;
    let mut iter = items.into_iter();
    (0..parts).map(|i| iter.by_ref().take(base + usize::from(i < extra)).collect()).collect()
}

/// Gives every one of `parts` subtasks all of `items`.
pub fn union<T: Clone>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    assert!(parts >= 1);
    vec![items; parts]
}

/// Redistributes one operator's state, snapshotted by its old subtasks (in subtask order),
/// to `new_parallelism` subtasks under `max_parallelism`.
pub fn redistribute(old: &[OperatorSnapshot], new_parallelism: u32, max_parallelism: u32) -> Vec<OperatorSnapshot> {
    let parts = new_parallelism as usize;
    let mut new: Vec<OperatorSnapshot> = vec![OperatorSnapshot::default(); parts];

    // Keyed state: each key group goes to the one subtask whose range holds it.
    let mut groups: Vec<&KeyGroupSnapshot> = old.iter().flat_map(|s| s.keyed.iter()).collect();
    groups.sort_by_key(|g| g.key_group);
    for pair in groups.windows(2) {
        assert!(pair[0].key_group != pair[1].key_group, "key group {} snapshotted twice", pair[0].key_group);
    }
    for (i, target) in new.iter_mut().enumerate() {
        let range = KeyGroupRange::for_subtask(SubtaskIndex(i as u32), new_parallelism, max_parallelism);
        target.keyed = groups.iter().filter(|g| range.contains(g.key_group)).map(|g| (*g).clone()).collect();
        // An embedded store's files go to every subtask whose range meets the store's: the restore
        // combines them and clips them to its own range.
        target.stores = old
            .iter()
            .flat_map(|s| s.stores.iter())
            .filter(|store| store.snapshot.key_groups.overlaps(range))
            .cloned()
            .collect();
    }

    // Finished flags (FLIP-147): an operator finished everywhere stays finished everywhere; a
    // partially finished one keeps its flags per subtask at the same parallelism. Rescaled, its
    // subtasks all start unfinished, with the finished ones' state redistributed like any other
    // (a source's offsets at the end of its partitions): the caller rescales a partially
    // finished operator only where running its end of input again emits nothing new.
    if old.iter().all(|s| s.finished) && !old.is_empty() {
        new.iter_mut().for_each(|s| s.finished = true);
    } else if old.iter().any(|s| s.finished) && old.len() == parts {
        for (target, source) in new.iter_mut().zip(old) {
            target.finished = source.finished;
        }
    }

    // Operator list state: concatenate each named list over old subtasks in order.
    let mut lists: BTreeMap<&str, (Redistribution, Vec<Vec<u8>>)> = BTreeMap::new();
    for snapshot in old {
        for list in &snapshot.lists {
            let entry = lists.entry(&list.name).or_insert((list.mode, Vec::new()));
            assert_eq!(entry.0, list.mode, "list state `{}` has two redistribution modes", list.name);
            entry.1.extend(list.elements.iter().cloned());
        }
    }
    for (name, (mode, elements)) in lists {
        let split = match mode {
            Redistribution::EvenSplit => even_split(elements, parts),
            Redistribution::Union => union(elements, parts),
        };
        for (target, elements) in new.iter_mut().zip(split) {
            target.lists.push(ListStateSnapshot { name: name.to_string(), mode, elements });
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::KeyGroup;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn multiset(items: impl IntoIterator<Item = u32>) -> BTreeMap<u32, usize> {
        let mut counts = BTreeMap::new();
        for item in items {
            *counts.entry(item).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn even_split_puts_the_longer_runs_first() {
        assert_eq!(even_split(vec![1, 2, 3, 4, 5], 3), vec![vec![1, 2], vec![3, 4], vec![5]]);
        assert_eq!(even_split(Vec::<u8>::new(), 2), vec![Vec::<u8>::new(), vec![]]);
    }

    proptest! {
        #[test]
        fn even_split_keeps_every_element_exactly_once(items in proptest::collection::vec(any::<u32>(), 0..200), parts in 1usize..40) {
            let split = even_split(items.clone(), parts);
            prop_assert_eq!(split.len(), parts);
            let lengths: Vec<usize> = split.iter().map(Vec::len).collect();
            prop_assert!(lengths.iter().max().unwrap() - lengths.iter().min().unwrap() <= 1);
            prop_assert_eq!(split.concat(), items);
        }

        #[test]
        fn union_gives_every_subtask_every_element(items in proptest::collection::vec(any::<u32>(), 0..100), parts in 1usize..20) {
            for part in union(items.clone(), parts) {
                prop_assert_eq!(part, items.clone());
            }
        }

        #[test]
        fn redistribute_moves_lists_and_key_groups_without_loss(
            old_p in 1u32..12, new_p in 1u32..12, max in 12u32..200,
            lists in proptest::collection::vec(proptest::collection::vec(any::<u32>(), 0..10), 12),
        ) {
            // Old snapshots: subtask i owns its key-group range and holds one even-split and
            // one union list.
            let old: Vec<OperatorSnapshot> = (0..old_p).map(|i| {
                let range = KeyGroupRange::for_subtask(SubtaskIndex(i), old_p, max);
                let elements: Vec<Vec<u8>> = lists[i as usize].iter().map(|e| e.to_le_bytes().to_vec()).collect();
                OperatorSnapshot {
                    finished: false,
                    keyed: range.iter().map(|kg| KeyGroupSnapshot { key_group: kg, bytes: kg.0.to_le_bytes().to_vec() }).collect(),
                    lists: vec![
                        ListStateSnapshot { name: "even".into(), mode: Redistribution::EvenSplit, elements: elements.clone() },
                        ListStateSnapshot { name: "union".into(), mode: Redistribution::Union, elements },
                    ],
                    stores: Vec::new(),
                }
            }).collect();
            let all: Vec<u32> = lists[..old_p as usize].concat();
            let new = redistribute(&old, new_p, max);
            prop_assert_eq!(new.len(), new_p as usize);

            let decode = |e: &Vec<u8>| u32::from_le_bytes(e[..4].try_into().unwrap());
            let even: Vec<u32> = new.iter().flat_map(|s| s.lists.iter().filter(|l| l.name == "even")).flat_map(|l| l.elements.iter().map(decode)).collect();
            prop_assert_eq!(multiset(even), multiset(all.clone()));
            for snapshot in &new {
                let union: Vec<u32> = snapshot.lists.iter().filter(|l| l.name == "union").flat_map(|l| l.elements.iter().map(decode)).collect();
                prop_assert_eq!(multiset(union), multiset(all.clone()));
            }

            let mut seen = vec![0usize; max as usize];
            for (i, snapshot) in new.iter().enumerate() {
                let range = KeyGroupRange::for_subtask(SubtaskIndex(i as u32), new_p, max);
                for group in &snapshot.keyed {
                    prop_assert!(range.contains(group.key_group));
                    prop_assert_eq!(group.bytes.clone(), group.key_group.0.to_le_bytes().to_vec());
                    seen[group.key_group.0 as usize] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
            let _ = KeyGroup(0);
        }
    }
}
