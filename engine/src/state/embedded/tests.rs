//! Tests of the store as a whole, each against an independent model (a `BTreeMap`):
//! sorted files round trip, corruption is reported precisely, the cache and memtables stay
//! within their bounds, compaction keeps contents within its write-amplification bound,
//! and random operation sequences (flushes, compactions, freezes, restores included) read
//! as the model says.

use super::cache::BlockCache;
use super::files::{FileGuard, STORE_DIR_PREFIX};
use super::merge::Cursor;
use super::picker::write_amplification_bound;
use super::store::Store;
use super::table::{TableFile, TableOptions, TableWriter};
use super::testing::{MemStorage, block_on, small_options, work_dir};
use super::{EmbeddedOptions, frozen::FrozenStore};
use crate::state::StateError;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// A deterministic stream of pseudo-random numbers (splitmix64), for workloads.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn key(k: u64) -> Vec<u8> {
    // Keys of varying length with a shared prefix, as the store's keys are.
    let mut key = vec![0, 1, 0, (k % 3) as u8];
    key.extend(postcard::to_stdvec(&k).unwrap());
    key
}

fn everything(store: &Store) -> Result<Model, StateError> {
    let mut all = Model::new();
    store.scan(&[], &[0xff], |k, v| {
        all.insert(k.to_vec(), v.to_vec());
        Ok(())
    })?;
    Ok(all)
}

fn frozen_contents(frozen: &FrozenStore) -> Model {
    let mut all = Model::new();
    frozen
        .scan(&[], &[0xff], |k, v| {
            all.insert(k.to_vec(), v.to_vec());
            Ok(())
        })
        .unwrap();
    all
}

fn open_store(storage: &MemStorage, options: EmbeddedOptions) -> Store {
    Store::open(storage.shared(), work_dir(), options).unwrap()
}

#[test]
fn a_sorted_file_reads_back_through_lookups_cursors_and_a_fresh_open() {
    block_on(async {
        let storage = MemStorage::new();
        let dir = PathBuf::from("/local/t");
        crate::seam::storage::Storage::create_dir_all(&storage, &dir).await.unwrap();
        let cache = Arc::new(BlockCache::new(1 << 20));
        let path = dir.join("00000001.sst");
        let options = TableOptions { block_bytes: 200, bloom_bits_per_key: 10 };
        let mut writer =
            TableWriter::create(&storage.shared(), 1, FileGuard::new(path.clone(), None), options).await.unwrap();
        let mut model: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)> = BTreeMap::new();
        let mut numbers = Numbers(7);
        for k in 0..2000u64 {
            let value = (!numbers.next().is_multiple_of(5)).then(|| vec![k as u8; (numbers.next() % 30) as usize]);
            model.insert(key(k * 2), (k + 1, value));
        }
        for (k, (seq, value)) in &model {
            writer.add(k, *seq, value.as_deref());
            writer.write_buffered().await.unwrap();
        }
        let written = writer.finish(0, storage.shared(), cache.clone()).await.unwrap();
        let bytes = storage.file(&path).unwrap();
        assert_eq!(written.meta().size_bytes, bytes.len() as u64);
        assert_eq!(written.meta().checksum_crc32, crc32fast::hash(&bytes));
        let opened = TableFile::open(storage.shared(), cache, 1, FileGuard::new(path.clone(), None)).await.unwrap();
        assert_eq!(opened.meta(), written.meta(), "a file's metadata is what the file itself says");
        for table in [&written, &opened] {
            for k in 0..4000u64 {
                let found = table.get(&key(k), super::bloom::key_hash(&key(k))).unwrap();
                let expected = model.get(&key(k)).map(|(seq, value)| (*seq, value.clone()));
                assert_eq!(found.map(|f| (f.seq, f.value)), expected, "key {k}");
            }
            // A bounded cursor from the middle yields exactly the model's range.
            let (start, end) = (key(1001), key(3001));
            let mut cursor = table.cursor(&start, Some(&end), true).unwrap();
            let mut seen = Vec::new();
            while let Some(entry) = cursor.entry() {
                seen.push((entry.key.to_vec(), (entry.seq, entry.value.map(<[u8]>::to_vec))));
                cursor.advance().unwrap();
            }
            let expected: Vec<_> =
                model.iter().filter(|(k, _)| **k >= start && **k < end).map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(seen, expected);
        }
    });
}

#[test]
fn a_corrupt_block_is_an_error_naming_the_file_and_the_block_offset() {
    block_on(async {
        let storage = MemStorage::new();
        let mut store = open_store(&storage, small_options());
        let mut model = Model::new();
        for k in 0..200u64 {
            store.put(&key(k), vec![k as u8; 10]);
            model.insert(key(k), vec![k as u8; 10]);
        }
        store.flush_all().await.unwrap();
        let files = store.files();
        let file = &files[0];
        let path = store.dir().unwrap().join(&file.meta.name);
        // The first data block starts at offset 0; damage a byte inside it.
        storage.damage(&path, 3);
        let first_key = file.meta.properties.smallest.clone();
        let err = store.get(&first_key).unwrap_err();
        assert_eq!(
            err,
            StateError::Corrupt {
                file: path.clone(),
                offset: 0,
                message: match &err {
                    StateError::Corrupt { message, .. } => message.clone(),
                    other => panic!("{other}"),
                },
            }
        );
        assert!(
            err.to_string().contains(&format!("corrupt file `{}` at offset 0: checksum mismatch", path.display())),
            "{err}"
        );
        let err = everything(&store).unwrap_err();
        assert!(matches!(&err, StateError::Corrupt { file, offset: 0, .. } if *file == path), "{err}");
        // A damaged footer is found by a fresh open, naming where the footer is.
        let len = storage.file(&path).unwrap().len() as u64;
        storage.damage(&path, len - 12);
        let cache = Arc::new(BlockCache::new(1 << 16));
        let err = TableFile::open(storage.shared(), cache, 9, FileGuard::new(path.clone(), None)).await.unwrap_err();
        assert_eq!(
            err,
            StateError::Corrupt { file: path.clone(), offset: len - 64, message: "footer checksum mismatch".into() }
        );
    });
}

#[test]
fn the_block_cache_stays_within_its_bound_while_serving_reads() {
    block_on(async {
        let storage = MemStorage::new();
        let options = small_options();
        let mut store = open_store(&storage, options.clone());
        let mut numbers = Numbers(3);
        for k in 0..3000u64 {
            store.put(&key(k), vec![k as u8; 16]);
            if k % 50 == 0 {
                store.maintain().await.unwrap();
            }
        }
        store.settle().await.unwrap();
        let on_disk: u64 = store.files().iter().map(|f| f.meta.size_bytes).sum();
        assert!(on_disk > 4 * options.cache_bytes() as u64, "the state is well beyond the cache");
        let before = store.cache_stats();
        for _ in 0..5000 {
            // Mostly a hot set, sometimes anywhere.
            let k = if numbers.next().is_multiple_of(4) { numbers.next() % 3000 } else { numbers.next() % 40 };
            assert_eq!(store.get(&key(k)).unwrap(), Some(vec![k as u8; 16]));
            let stats = store.cache_stats();
            assert!(stats.used_bytes <= options.cache_bytes(), "{stats:?}");
        }
        let stats = store.cache_stats();
        let (hits, misses) = (stats.hits - before.hits, stats.misses - before.misses);
        assert!(stats.evictions > before.evictions, "{stats:?}");
        assert!(hits > 2 * misses, "a hot set within the cache is mostly hits: {hits} hits, {misses} misses");
    });
}

#[test]
fn compaction_keeps_the_contents_within_its_write_amplification_bound() {
    block_on(async {
        let storage = MemStorage::new();
        let options = EmbeddedOptions {
            memory_budget_bytes: 32 * 1024,
            target_file_bytes: 4 * 1024,
            level1_target_bytes: 16 * 1024,
            level0_compaction_trigger_files: 4,
            level0_stop_files: 12,
            ..small_options()
        };
        let mut store = open_store(&storage, options.clone());
        let mut model = Model::new();
        let mut numbers = Numbers(11);
        for i in 0..60_000u64 {
            let k = numbers.next() % 8000;
            let value = vec![(i % 251) as u8; 24];
            store.put(&key(k), value.clone());
            model.insert(key(k), value);
            if i % 64 == 63 {
                store.maintain().await.unwrap();
            }
        }
        store.settle().await.unwrap();
        let stats = store.stats();
        let deepest = store.version().deepest_level().unwrap();
        assert!(deepest >= 2, "the workload reaches level 2 at least: {:?}", store.files().len());
        let flush_bytes = stats.bytes_flushed / stats.flushes;
        let bound = write_amplification_bound(&options, deepest, flush_bytes);
        let measured = stats.write_amplification();
        println!("write amplification {measured:.2} (bound {bound:.2}, deepest level {deepest}): {stats:?}");
        assert!(measured <= bound, "write amplification {measured} over its bound {bound}: {stats:?}");
        // What the store wrote is what the storage received.
        assert_eq!(stats.bytes_flushed + stats.bytes_compacted, storage.bytes_written());
        assert_eq!(everything(&store).unwrap(), model);
        for (k, v) in model.iter().take(500) {
            assert_eq!(store.get(k).unwrap().as_ref(), Some(v));
        }
        // Every live file is durable, and the directory holds the live files only.
        let dir = store.dir().unwrap().to_path_buf();
        let live: Vec<PathBuf> = store.files().iter().map(|f| dir.join(&f.meta.name)).collect();
        assert!(live.iter().all(|p| storage.is_durable(p)));
        let mut sorted = live.clone();
        sorted.sort();
        assert_eq!(storage.files_under(&dir), sorted);
    });
}

#[test]
fn memtables_stay_within_their_budget_after_every_maintenance() {
    block_on(async {
        let storage = MemStorage::new();
        let options = small_options();
        let mut store = open_store(&storage, options.clone());
        let mut model = Model::new();
        for batch in 0..100u64 {
            // One large batch between maintenance calls overshoots the budget...
            for i in 0..200u64 {
                let k = batch * 200 + i;
                store.put(&key(k), vec![1; 20]);
                model.insert(key(k), vec![1; 20]);
            }
            assert!(store.needs_maintenance(), "a full memtable needs maintenance");
            store.maintain().await.unwrap();
            // ...and maintenance brings it back before the next one.
            assert!(
                store.memtable_bytes() <= options.memtable_bytes(),
                "{} > {}",
                store.memtable_bytes(),
                options.memtable_bytes()
            );
            assert!(store.version().level(0).len() < options.level0_stop_files);
        }
        assert!(store.stats().stalls > 0, "batches this size stall the operator");
        store.settle().await.unwrap();
        assert!(!store.needs_maintenance(), "a settled store has nothing to do");
        assert_eq!(everything(&store).unwrap(), model);
    });
}

#[test]
fn a_failed_flush_is_an_error_and_loses_nothing() {
    block_on(async {
        let storage = MemStorage::new();
        let mut store = open_store(&storage, small_options());
        let mut model = Model::new();
        for k in 0..300u64 {
            store.put(&key(k), vec![2; 20]);
            model.insert(key(k), vec![2; 20]);
        }
        storage.set_fail_writes(true);
        let err = store.settle().await.unwrap_err();
        assert!(matches!(&err, StateError::Storage(e) if e.to_string().contains("injected")), "{err}");
        assert_eq!(everything(&store).unwrap(), model, "the memtables are still there");
        storage.set_fail_writes(false);
        store.settle().await.unwrap();
        assert_eq!(everything(&store).unwrap(), model);
        assert!(!store.files().is_empty());
    });
}

#[test]
fn file_names_are_never_reused_and_dead_files_go_once_no_snapshot_holds_them() {
    block_on(async {
        let storage = MemStorage::new();
        let mut store = open_store(&storage, small_options());
        for k in 0..400u64 {
            store.put(&key(k), vec![3; 20]);
        }
        store.flush_all().await.unwrap();
        let dir = store.dir().unwrap().to_path_buf();
        let frozen = store.freeze();
        let pinned: Vec<PathBuf> = frozen.files().iter().map(|f| dir.join(&f.meta.name)).collect();
        // What an incremental checkpoint would list: each file's name, size and checksum,
        // as the files on disk have them.
        let manifest = frozen.manifest();
        assert!(!manifest.files.is_empty() && manifest.tombstones.is_empty());
        for file in &manifest.files {
            let bytes = storage.file(&dir.join(&file.meta.name)).unwrap();
            assert_eq!((file.meta.size_bytes, file.meta.checksum_crc32), (bytes.len() as u64, crc32fast::hash(&bytes)));
        }
        let encoded = postcard::to_stdvec(&manifest).unwrap();
        assert_eq!(postcard::from_bytes::<super::version::Manifest>(&encoded).unwrap(), manifest);
        let at_freeze = frozen_contents(&frozen);
        // Rewrite everything: every pinned file is compacted away from the live version.
        for k in 0..400u64 {
            store.put(&key(k), vec![4; 20]);
        }
        store.compact_all().await.unwrap();
        let live: Vec<String> = store.files().iter().map(|f| f.meta.name.clone()).collect();
        assert!(pinned.iter().all(|p| !live.contains(&p.file_name().unwrap().to_string_lossy().into_owned())));
        assert!(pinned.iter().all(|p| storage.file(p).is_some()), "a frozen store keeps its files");
        assert_eq!(frozen_contents(&frozen), at_freeze);
        drop(frozen);
        store.settle().await.unwrap();
        assert!(pinned.iter().all(|p| storage.file(p).is_none()), "and they go once it is dropped");
        let mut numbers: Vec<String> =
            storage.files_under(&dir).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        numbers.sort();
        let mut live = live;
        live.sort();
        assert_eq!(numbers, live);
        // A store opened again in the same work directory (a restore) writes elsewhere and
        // removes the old incarnation's directory.
        drop(store);
        let mut again = open_store(&storage, small_options());
        again.put(&key(1), vec![5]);
        again.flush_all().await.unwrap();
        let new_dir = again.dir().unwrap().to_path_buf();
        assert_ne!(new_dir, dir);
        assert!(new_dir.file_name().unwrap().to_string_lossy().starts_with(STORE_DIR_PREFIX));
        assert!(storage.files_under(&dir).is_empty());
        assert_eq!(storage.files_under(&work_dir()).len(), 1);
    });
}

#[derive(Debug, Clone)]
enum Op {
    Put(u16, u8),
    Delete(u16),
    DeleteRange(u16, u16),
    Get(u16),
    Scan(u16, u16),
    Maintain,
    Flush,
    Compact,
    Freeze,
    CheckFrozen(usize),
    DropFrozen(usize),
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0u16..300, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        8 => (0u16..300).prop_map(Op::Delete),
        2 => (0u16..300, 0u16..60).prop_map(|(k, len)| Op::DeleteRange(k, k + len)),
        8 => (0u16..300).prop_map(Op::Get),
        2 => (0u16..300, 0u16..100).prop_map(|(k, len)| Op::Scan(k, k + len)),
        6 => Just(Op::Maintain),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        2 => Just(Op::Freeze),
        2 => any::<usize>().prop_map(Op::CheckFrozen),
        1 => any::<usize>().prop_map(Op::DropFrozen),
        1 => Just(Op::Restore),
    ]
}

fn model_key(k: u16) -> Vec<u8> {
    // Keys of two lengths, so that ranges cut through both.
    let mut key = vec![0, (k >> 8) as u8, k as u8];
    if k.is_multiple_of(2) {
        key.push(7);
    }
    key
}

fn model_value(k: u16, v: u8) -> Vec<u8> {
    let mut value = vec![v; usize::from(v % 40)];
    value.extend(k.to_be_bytes());
    value
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    start <= key && key < end
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_reads_as_a_btreemap_model_under_random_operations(ops in proptest::collection::vec(op(), 1..250)) {
        block_on(async move {
            let storage = MemStorage::new();
            let mut store = open_store(&storage, small_options());
            let mut model = Model::new();
            let mut frozen: Vec<(FrozenStore, Model)> = Vec::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        store.put(&model_key(k), model_value(k, v));
                        model.insert(model_key(k), model_value(k, v));
                    }
                    Op::Delete(k) => {
                        store.delete(&model_key(k));
                        model.remove(&model_key(k));
                    }
                    Op::DeleteRange(a, b) => {
                        let (start, end) = (model_key(a), model_key(b));
                        store.delete_range(&start, &end);
                        model.retain(|k, _| !in_range(k, &start, &end));
                    }
                    Op::Get(k) => assert_eq!(store.get(&model_key(k)).unwrap().as_ref(), model.get(&model_key(k)), "get {k}"),
                    Op::Scan(a, b) => {
                        let (start, end) = (model_key(a), model_key(b));
                        let mut seen = Vec::new();
                        store.scan(&start, &end, |k, v| { seen.push((k.to_vec(), v.to_vec())); Ok(()) }).unwrap();
                        let expected: Vec<_> = model.iter().filter(|(k, _)| in_range(k, &start, &end)).map(|(k, v)| (k.clone(), v.clone())).collect();
                        assert_eq!(seen, expected, "scan {a}..{b}");
                    }
                    Op::Maintain => store.maintain().await.unwrap(),
                    Op::Flush => store.flush_all().await.unwrap(),
                    Op::Compact => {
                        store.compact_all().await.unwrap();
                        // One sorted run: no file left above the deepest level.
                        let deepest = store.version().deepest_level();
                        if let Some(deepest) = deepest {
                            for level in 0..deepest {
                                assert!(store.version().level(level).is_empty(), "level {level} after a full compaction");
                            }
                        }
                        // Range tombstones are gone once no file or memtable predates them.
                        assert!(store.version().tombstones().is_empty(), "{:?}", store.version().tombstones());
                    }
                    Op::Freeze => {
                        let snapshot = store.freeze();
                        assert_eq!(frozen_contents(&snapshot), model);
                        frozen.push((snapshot, model.clone()));
                    }
                    Op::CheckFrozen(i) => {
                        if !frozen.is_empty() {
                            let (snapshot, expected) = &frozen[i % frozen.len()];
                            assert_eq!(&frozen_contents(snapshot), expected);
                        }
                    }
                    Op::DropFrozen(i) => {
                        if !frozen.is_empty() {
                            let len = frozen.len();
                            frozen.remove(i % len);
                        }
                    }
                    Op::Restore => {
                        let snapshot = store.freeze();
                        let contents = frozen_contents(&snapshot);
                        drop(snapshot);
                        frozen.clear();
                        drop(store);
                        store = open_store(&storage, small_options());
                        for (k, v) in contents {
                            store.put(&k, v);
                        }
                    }
                }
            }
            for (snapshot, expected) in &frozen {
                assert_eq!(&frozen_contents(snapshot), expected);
            }
            assert_eq!(everything(&store).unwrap(), model);
            frozen.clear();
            store.settle().await.unwrap();
            assert_eq!(everything(&store).unwrap(), model);
            // Settled, with no snapshot in flight: the directory holds exactly the live files.
            if let Some(dir) = store.dir() {
                let mut live: Vec<PathBuf> = store.files().iter().map(|f| dir.join(&f.meta.name)).collect();
                live.sort();
                assert_eq!(storage.files_under(dir), live);
                assert!(live.iter().all(|p| storage.is_durable(p)));
            }
        });
    }
}

#[test]
fn a_store_on_the_local_file_system_keeps_its_contents_through_flushes_and_compactions() {
    if crate::seam::runtime::SIMULATED {
        // The local file system is real mode's; under simulation the memory storage serves.
        return;
    }
    block_on(async {
        let storage: crate::seam::storage::StorageRef = Arc::new(crate::seam::storage::LocalStorage);
        let root = std::env::temp_dir().join(format!("weir-embedded-{:016x}", crate::seam::runtime::random_u64()));
        let mut store = Store::open(storage.clone(), root.join("op"), small_options()).unwrap();
        let mut model = Model::new();
        let mut numbers = Numbers(5);
        for i in 0..5000u64 {
            let k = numbers.next() % 1500;
            if i % 7 == 0 {
                store.delete(&key(k));
                model.remove(&key(k));
            } else {
                store.put(&key(k), vec![i as u8; 12]);
                model.insert(key(k), vec![i as u8; 12]);
            }
            if i % 100 == 99 {
                store.maintain().await.unwrap();
            }
        }
        store.settle().await.unwrap();
        assert!(store.version().deepest_level() >= Some(1));
        assert_eq!(everything(&store).unwrap(), model);
        store.compact_all().await.unwrap();
        assert_eq!(everything(&store).unwrap(), model);
        let dir = store.dir().unwrap().to_path_buf();
        let mut live: Vec<String> = store.files().iter().map(|f| f.meta.name.clone()).collect();
        live.sort();
        assert_eq!(storage.list(&dir).await.unwrap(), live, "dead files are removed");
        drop(store);
        storage.remove_dir_all(&root).await.unwrap();
    });
}

/// Two subtasks' stores, written through files (the states registered in different orders, so that
/// their namespaces differ), restored at parallelism 1, 2 and 3: every subtask reads exactly its key
/// groups' values, whatever stores it combined and clipped.
#[test]
fn stores_restore_from_their_files_at_another_parallelism_combined_and_clipped() {
    use super::EmbeddedKeyedBackend;
    use crate::ids::{CheckpointId, SubtaskIndex};
    use crate::keygroup::{KeyGroupRange, key_group_for_key};
    use crate::seam::storage::Storage;
    use crate::state::backend::{KeyedStateBackend, StateKind};
    use crate::state::snapshot::{FrozenKeyedState, StoreSnapshot, UploadTarget};
    const MAX: u32 = 16;
    block_on(async {
        let storage = MemStorage::new();
        let chk = PathBuf::from("/ckpt/job/chk-7");
        storage.create_dir_all(&chk).await.unwrap();
        let mut model: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut stores = Vec::new();
        for subtask in 0..2u32 {
            let range = KeyGroupRange::for_subtask(SubtaskIndex(subtask), 2, MAX);
            let work = PathBuf::from(format!("/local/old-{subtask}"));
            let mut backend = EmbeddedKeyedBackend::<String>::open(
                storage.shared(),
                work,
                range,
                super::testing::small_options(),
                &[],
            )
            .unwrap();
            let names = if subtask == 0 { ["a", "b"] } else { ["b", "a"] };
            let states: Vec<_> = names.iter().map(|n| backend.register::<u64>(n, StateKind::Value).unwrap()).collect();
            for k in 0..3000u64 {
                let key = format!("k{k}");
                let group = key_group_for_key(&key, MAX);
                if !range.contains(group) {
                    continue;
                }
                for (state, name) in states.iter().zip(names) {
                    let value = k * 7 + u64::from(name == "b");
                    backend.put(*state, group, &key, value).unwrap();
                    model.insert((name.to_string(), key.clone()), value);
                }
                if backend.needs_maintenance() {
                    backend.maintain().await.unwrap();
                }
            }
            backend.settle().await.unwrap();
            let FrozenKeyedState::Store(frozen) = backend.freeze().unwrap() else {
                panic!("a store freezes its files")
            };
            let target = UploadTarget {
                storage: storage.shared(),
                dir: chk.clone(),
                checkpoint: CheckpointId(7),
                incremental: false,
            };
            let snapshot = frozen.upload(&target).await.unwrap();
            assert!(snapshot.files.len() > 1, "the store wrote several files");
            stores.push(StoreSnapshot { snapshot, dir: chk.clone(), owned: None });
        }
        for parallelism in 1..=3u32 {
            let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
            for subtask in 0..parallelism {
                let range = KeyGroupRange::for_subtask(SubtaskIndex(subtask), parallelism, MAX);
                let sources: Vec<StoreSnapshot> =
                    stores.iter().filter(|s| s.snapshot.key_groups.overlaps(range)).cloned().collect();
                let work = PathBuf::from(format!("/local/new-{parallelism}-{subtask}"));
                let mut backend = EmbeddedKeyedBackend::<String>::restore(
                    storage.shared(),
                    work,
                    range,
                    super::testing::small_options(),
                    &sources,
                    &[],
                )
                .await
                .unwrap();
                for name in ["b", "a"] {
                    let state = backend.register::<u64>(name, StateKind::Value).unwrap();
                    backend
                        .for_each::<u64>(state, |key, value| {
                            assert!(range.contains(key_group_for_key(key, MAX)), "{key} outside {range:?}");
                            assert!(seen.insert((name.to_string(), key.clone()), *value).is_none(), "{key} twice");
                        })
                        .unwrap();
                }
            }
            assert_eq!(seen, model, "parallelism {parallelism}");
        }
    });
}
