//! Random programs of creates, writes, fsyncs, renames, removals and directory syncs over a
//! small namespace, each ended by a crash; a model kept by the test, not by the storage,
//! checks every outcome against the invariants the crash model promises:
//!
//! - every byte of a file is durable data, unsynced data written at that offset, or a zero
//!   in the unsynced range; a file with nothing unsynced is exactly its fsynced content;
//! - an entry whose directory was synced after its last change names what it named;
//! - no inode is at two names (half a rename), and every entry names an inode that the
//!   program put at that name at some point;
//! - a file whose entry was ever durable and that the program never unlinked still exists.
//!
//! It also checks after every operation that the durable view plus the journal is the
//! current view, and that, over all programs, the crashes reached torn, zero-filled, kept
//! and lost outcomes.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

const DIRS: [&str; 2] = ["/a", "/b"];
const NAMES: [&str; 3] = ["x", "y", "z"];

fn draw(bound: usize) -> usize {
    (runtime::random_u64() % bound as u64) as usize
}

/// What the test knows of one inode's data.
#[derive(Clone, Debug, Default)]
struct Data {
    /// Everything `write_all` put there since the last truncation.
    current: Vec<u8>,
    /// The content at the last successful fsync.
    synced: Vec<u8>,
    /// Truncated by `create` since the last fsync.
    truncated: bool,
}

/// The test's model of the namespace and the data.
#[derive(Default)]
struct Model {
    data: BTreeMap<InodeId, Data>,
    /// Entries (directory, name) changed since their directory was last synced.
    dirty: BTreeSet<(usize, usize)>,
    /// Every inode seen at each entry.
    history: BTreeMap<(usize, usize), BTreeSet<InodeId>>,
    /// Inodes whose entry was durable at some point (clean after a sync).
    ever_durable: BTreeSet<InodeId>,
    /// Inodes the program unlinked (removed, or replaced by a rename).
    unlinked: BTreeSet<InodeId>,
}

fn entry_path(dir: usize, name: usize) -> PathBuf {
    Path::new(DIRS[dir]).join(NAMES[name])
}

fn entries() -> impl Iterator<Item = (usize, usize)> {
    (0..DIRS.len()).flat_map(|dir| (0..NAMES.len()).map(move |name| (dir, name)))
}

impl Model {
    fn observe(&mut self, storage: &SimStorage) {
        for (dir, name) in entries() {
            if let Some(inode) = inode_at(storage, &entry_path(dir, name)) {
                self.history.entry((dir, name)).or_default().insert(inode);
            }
        }
        storage.lock().volumes[0].assert_journal_matches();
    }

    fn synced_dir(&mut self, storage: &SimStorage, dir: usize) {
        self.dirty.retain(|(d, _)| *d != dir);
        for name in 0..NAMES.len() {
            if let Some(inode) = inode_at(storage, &entry_path(dir, name)) {
                self.ever_durable.insert(inode);
            }
        }
    }
}

/// Runs one random program and its crash, and checks the outcome.
async fn program(round: usize) -> StorageStats {
    let storage = SimStorage::new();
    let mut model = Model::default();
    let mut log = Vec::new();
    for dir in DIRS {
        storage.create_dir_all(path(dir)).await.unwrap();
    }
    // A durable starting point: one file per directory.
    for dir in 0..DIRS.len() {
        let bytes = vec![b'A' + dir as u8; 5000];
        storage.put_file(&entry_path(dir, 0), &bytes);
        let inode = inode_at(&storage, &entry_path(dir, 0)).unwrap();
        model.data.insert(inode, Data { current: bytes.clone(), synced: bytes, truncated: false });
        model.ever_durable.insert(inode);
    }
    model.observe(&storage);
    let mut handles: Vec<(InodeId, Box<dyn WriteFile>)> = Vec::new();
    let mut next_byte = 1u8;
    for _ in 0..(8 + draw(24)) {
        let (dir, name) = (draw(DIRS.len()), draw(NAMES.len()));
        let target = entry_path(dir, name);
        match draw(7) {
            0 => {
                log.push(format!("create {}", target.display()));
                let file = storage.create(&target).await.unwrap();
                let inode = inode_at(&storage, &target).unwrap();
                let data = model.data.entry(inode).or_default();
                if !data.current.is_empty() || !data.synced.is_empty() {
                    data.truncated = true;
                }
                data.current.clear();
                model.dirty.insert((dir, name));
                handles.push((inode, file));
            }
            1 | 2 if !handles.is_empty() => {
                let index = draw(handles.len());
                let len = [10, 3000, 5000][draw(3)];
                let bytes = vec![next_byte; len];
                next_byte = next_byte % 250 + 1;
                log.push(format!("write {len} bytes of {} to handle {index}", bytes[0]));
                let (inode, file) = &mut handles[index];
                file.write_all(&bytes).await.unwrap();
                model.data.get_mut(inode).unwrap().current.extend_from_slice(&bytes);
            }
            3 if !handles.is_empty() => {
                let index = draw(handles.len());
                log.push(format!("fsync handle {index}"));
                let (inode, file) = &mut handles[index];
                file.sync().await.unwrap();
                let data = model.data.get_mut(inode).unwrap();
                data.synced = data.current.clone();
                data.truncated = false;
            }
            4 => {
                let (to_dir, to_name) = (draw(DIRS.len()), draw(NAMES.len()));
                let to = entry_path(to_dir, to_name);
                let (moved, replaced) = (inode_at(&storage, &target), inode_at(&storage, &to));
                log.push(format!("rename {} {}", target.display(), to.display()));
                match storage.rename(&target, &to).await {
                    Ok(()) if target != to => {
                        model.dirty.insert((dir, name));
                        model.dirty.insert((to_dir, to_name));
                        model.unlinked.extend(replaced.filter(|r| Some(*r) != moved));
                    }
                    Ok(()) => {}
                    Err(error) => assert!(error.is_not_found() && moved.is_none(), "{error}"),
                }
            }
            5 => {
                let removed = inode_at(&storage, &target);
                log.push(format!("remove {}", target.display()));
                match storage.remove_file(&target).await {
                    Ok(()) => {
                        model.dirty.insert((dir, name));
                        model.unlinked.extend(removed);
                    }
                    Err(error) => assert!(error.is_not_found() && removed.is_none(), "{error}"),
                }
            }
            _ => {
                log.push(format!("sync_dir {}", DIRS[dir]));
                storage.sync_dir(path(DIRS[dir])).await.unwrap();
                model.synced_dir(&storage, dir);
            }
        }
        model.observe(&storage);
    }
    let before: BTreeMap<(usize, usize), Option<InodeId>> =
        entries().map(|(dir, name)| ((dir, name), inode_at(&storage, &entry_path(dir, name)))).collect();
    storage.crash();
    let context = format!("round {round}: {}", log.join("; "));

    let mut seen = BTreeSet::new();
    for (dir, name) in entries() {
        let entry = entry_path(dir, name);
        let Some(inode) = inode_at(&storage, &entry) else {
            assert!(
                model.dirty.contains(&(dir, name)) || before[&(dir, name)].is_none(),
                "{context}: {entry:?} vanished"
            );
            continue;
        };
        assert!(seen.insert(inode), "{context}: inode {inode} at two names");
        assert!(model.history[&(dir, name)].contains(&inode), "{context}: {entry:?} names a stranger");
        if !model.dirty.contains(&(dir, name)) {
            assert_eq!(before[&(dir, name)], Some(inode), "{context}: synced {entry:?} changed");
        }
        let content = storage.read(&entry).await.unwrap();
        let data = &model.data[&inode];
        let written_or_zero =
            |from: usize| content[from..].iter().zip(&data.current[from..]).all(|(c, w)| c == w || *c == 0);
        let ok = if !data.truncated && data.current.len() == data.synced.len() {
            content == data.synced
        } else if !data.truncated {
            content.len() <= data.current.len()
                && content.starts_with(&data.synced)
                && written_or_zero(data.synced.len())
        } else {
            content == data.synced || (content.len() <= data.current.len() && written_or_zero(0))
        };
        assert!(ok, "{context}: {entry:?} holds {} bytes, not allowed by {data:?}", content.len());
    }
    for inode in model.ever_durable.difference(&model.unlinked) {
        assert!(seen.contains(inode), "{context}: durable inode {inode}, never unlinked, is gone");
    }
    storage.stats()
}

#[test]
fn random_programs_end_in_crash_outcomes_the_model_allows() {
    simulate(20, async {
        let mut totals = StorageStats::default();
        for round in 0..500 {
            totals = totals.plus(program(round).await);
        }
        assert!(totals.changes_kept > 0 && totals.changes_lost > 0, "{totals:?}");
        assert!(totals.torn_writes > 0 && totals.zeroed_blocks > 0, "{totals:?}");
    });
}
