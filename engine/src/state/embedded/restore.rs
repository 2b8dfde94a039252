//! Restoring the embedded store from checkpoints' files: the files are downloaded into the
//! store's directory and checked (size and checksum against the snapshot, then every block),
//! and the store is rebuilt on them.
//!
//! At the same key-group range the snapshot's files become the store's version as they were
//! (levels and range tombstones included). At another parallelism several old subtasks'
//! snapshots meet a new range (Flink's RocksDB rescaling): the one that shares most key groups
//! with it becomes the base, clipped to the new range with range deletions; from each of the
//! others, the entries of the key groups the new range takes are copied in, key group by key
//! group, their namespaces renamed to the base's by state name.

use super::files::{FileGuard, table_name};
use super::key::{self, Namespace, PREFIX_BYTES};
use super::options::EmbeddedOptions;
use super::store::{Store, scan_sources};
use super::table::TableFile;
use super::tombstone::RangeTombstone;
use super::upload::UploadLedger;
use super::version::{LEVELS, Version};
use crate::keygroup::KeyGroupRange;
use crate::seam::storage::{StorageError, StorageRef};
use crate::state::StateError;
use crate::state::snapshot::{EmbeddedFile, FileScope, StoreSnapshot};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A store rebuilt from snapshots' files, with what the backend needs beside it.
pub struct RestoredStore {
    pub store: Store,
    /// The states' names by namespace.
    pub namespaces: BTreeMap<u16, String>,
    /// What the next incremental checkpoint builds on: the restored checkpoint's files, when
    /// the job owns it and the store holds exactly them.
    pub ledger: UploadLedger,
}

/// Downloads `file` of `source` into the store's directory under a new number and opens it.
async fn download(store: &Store, source: &StoreSnapshot, file: &EmbeddedFile) -> Result<Arc<TableFile>, StateError> {
    let storage: &StorageRef = &store.storage_ref();
    let remote = file.path(&source.dir);
    let bytes = match storage.read(&remote).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound { .. }) => return Err(StateError::MissingSnapshotFile { path: remote }),
        Err(error) => return Err(error.into()),
    };
    let actual = (bytes.len() as u64, crc32fast::hash(&bytes));
    if actual != (file.size_bytes, file.checksum) {
        return Err(StateError::SnapshotFileMismatch {
            path: remote,
            expected_bytes: file.size_bytes,
            actual_bytes: actual.0,
            expected_crc: file.checksum,
            actual_crc: actual.1,
        });
    }
    let context = store.context_now();
    let number = context.file_numbers.fetch_add(1, Ordering::Relaxed);
    let local: PathBuf = context.dir.join(table_name(number));
    let guard = FileGuard::new(local.clone(), Some(context.graveyard.clone()));
    let mut out = storage.create(&local).await?;
    out.write_all(&bytes).await?;
    out.sync().await?;
    drop(out);
    Ok(Arc::new(TableFile::open(storage.clone(), context.cache.clone(), number, guard).await?))
}

/// A version of `source`'s files, downloaded into the store's directory.
async fn version_of(
    store: &Store,
    source: &StoreSnapshot,
) -> Result<(Version, BTreeMap<u64, EmbeddedFile>), StateError> {
    let mut levels: Vec<Vec<Arc<TableFile>>> = vec![Vec::new(); LEVELS];
    let mut by_number = BTreeMap::new();
    for file in &source.snapshot.files {
        let level = file.level as usize;
        if level >= LEVELS {
            return Err(StateError::Corrupt {
                file: file.path(&source.dir),
                offset: 0,
                message: format!("the snapshot puts it at level {level}, beyond the store's {LEVELS} levels"),
            });
        }
        let table = download(store, source, file).await?;
        by_number.insert(table.meta().number, file.clone());
        levels[level].push(table);
    }
    let tombstones = source
        .snapshot
        .tombstones
        .iter()
        .map(|t| RangeTombstone { start: t.start.clone(), end: t.end.clone(), seq: t.seq })
        .collect();
    Ok((Version::from_parts(levels, tombstones), by_number))
}

/// Rebuilds a store over `range` in `work_dir` from `sources` (each meets `range`).
pub async fn restore_store(
    storage: StorageRef,
    work_dir: PathBuf,
    options: EmbeddedOptions,
    range: KeyGroupRange,
    sources: &[StoreSnapshot],
) -> Result<RestoredStore, StateError> {
    let mut store = Store::open(storage, work_dir, options)?;
    store.prepare_dir().await?;
    let Some(base_index) = (0..sources.len()).max_by_key(|&i| {
        // The most shared key groups; the first such source on a tie.
        (sources[i].snapshot.key_groups.intersection(range).len(), std::cmp::Reverse(i))
    }) else {
        return Ok(RestoredStore { store, namespaces: BTreeMap::new(), ledger: UploadLedger::default() });
    };
    let base = &sources[base_index];
    let (version, by_number) = version_of(&store, base).await?;
    store.install_restored(version);
    let dir = store.context_now().dir;
    store.storage_ref().sync_dir(&dir).await?;
    let mut namespaces: BTreeMap<u16, String> = base.snapshot.namespaces.iter().cloned().collect();
    // Clip the base to the new range: what lies outside it belongs to other subtasks now.
    let held = base.snapshot.key_groups;
    if held.start < range.start {
        let (low, _) = key::key_group_range_bounds(KeyGroupRange { start: held.start, end: range.start });
        let (high, _) = key::key_group_range_bounds(range);
        store.delete_range(&low, &high);
    }
    if held.end > range.end {
        let (_, low) = key::key_group_range_bounds(range);
        let (_, high) = key::key_group_range_bounds(KeyGroupRange { start: range.end, end: held.end });
        store.delete_range(&low, &high);
    }
    for (index, source) in sources.iter().enumerate() {
        if index != base_index {
            copy_in(&mut store, source, range, &mut namespaces).await?;
        }
    }
    // Only shared files can be referred to by a later checkpoint: an exclusive one goes with its checkpoint.
    let mut by_number = by_number;
    by_number.retain(|_, file| file.scope == FileScope::Shared);
    let ledger = match base.owned {
        Some(checkpoint) if sources.len() == 1 && held == range => UploadLedger::restored(checkpoint, by_number),
        _ => UploadLedger::default(),
    };
    Ok(RestoredStore { store, namespaces, ledger })
}

/// The namespace `name` has in the restored store, given a new one if it has none.
fn namespace_for(namespaces: &mut BTreeMap<u16, String>, name: &str) -> u16 {
    if let Some((namespace, _)) = namespaces.iter().find(|(_, n)| n.as_str() == name) {
        return *namespace;
    }
    let next = namespaces.keys().next_back().map_or(0, |last| last + 1);
    assert!(next < Namespace::RESTORED.0, "more than {} keyed states in one operator", Namespace::RESTORED.0);
    namespaces.insert(next, name.to_string());
    next
}

/// Copies the entries of `source` in the key groups `range` takes from it into `store`.
async fn copy_in(
    store: &mut Store,
    source: &StoreSnapshot,
    range: KeyGroupRange,
    namespaces: &mut BTreeMap<u16, String>,
) -> Result<(), StateError> {
    let taken = source.snapshot.key_groups.intersection(range);
    if taken.is_empty() {
        return Ok(());
    }
    let (version, _) = version_of(store, source).await?;
    let renamed: BTreeMap<u16, u16> = source
        .snapshot
        .namespaces
        .iter()
        .map(|(namespace, name)| (*namespace, namespace_for(namespaces, name)))
        .collect();
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for key_group in taken.iter() {
        let (start, end) = key::key_group_range_bounds(KeyGroupRange { start: key_group.0, end: key_group.0 + 1 });
        scan_sources(None, &[], &version, (&start, &end), false, |stored_key, value| {
            let decoded = key::decode(stored_key).expect("every stored key has its prefix");
            let namespace = if decoded.namespace == Namespace::RESTORED {
                Namespace::RESTORED
            } else {
                let Some(renamed) = renamed.get(&decoded.namespace.0) else {
                    return Err(StateError::Corrupt {
                        file: source.dir.clone(),
                        offset: 0,
                        message: format!("key group {key_group}: namespace {} has no state name", decoded.namespace.0),
                    });
                };
                Namespace(*renamed)
            };
            let mut key = Vec::with_capacity(stored_key.len());
            key::start_key(&mut key, key_group, namespace);
            key.extend_from_slice(&stored_key[PREFIX_BYTES..]);
            entries.push((key, value.to_vec()));
            Ok(())
        })?;
        for (key, value) in entries.drain(..) {
            store.put(&key, value);
        }
        if store.needs_maintenance() {
            store.maintain().await?;
        }
    }
    Ok(())
}
