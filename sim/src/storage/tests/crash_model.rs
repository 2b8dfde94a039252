//! The crash model, case by case: what survives before and after each barrier, the two ends,
//! and protocols that skip a barrier being caught.

use super::*;
use engine::seam::storage::write_atomic;

#[test]
fn fsynced_data_survives_and_unsynced_data_can_be_lost() {
    simulate(1, async {
        let mut lost_everything_pending = 0;
        for _ in 0..64 {
            let storage = storage_with_dir().await;
            let mut file = storage.create(path("/d/f")).await.unwrap();
            file.write_all(b"synced ").await.unwrap();
            file.sync().await.unwrap();
            storage.sync_dir(path("/d")).await.unwrap();
            file.write_all(b"pending").await.unwrap();
            assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"synced pending", "reads see pending data");
            storage.crash();
            let after = storage.read(path("/d/f")).await.unwrap();
            assert!(after.starts_with(b"synced "), "fsynced data survives: {after:?}");
            assert!(after.len() <= b"synced pending".len(), "no bytes beyond what was written: {after:?}");
            if after == b"synced " {
                lost_everything_pending += 1;
            }
        }
        assert!(lost_everything_pending > 0, "unsynced data is lost in some crashes");

        // A truncation is pending like any write: at the pessimistic end the durable content
        // comes back.
        let storage = storage_with_dir().await;
        write_durably(&storage, path("/d/f"), b"old content").await;
        let mut file = storage.create(path("/d/f")).await.unwrap();
        file.write_all(b"new").await.unwrap();
        crash_root(&storage, CrashMode::LoseUnsynced);
        assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"old content");
    });
}

#[test]
fn the_two_ends_are_the_durable_and_the_current_view() {
    simulate(2, async {
        for mode in [CrashMode::LoseUnsynced, CrashMode::KeepUnsynced] {
            let storage = storage_with_dir().await;
            storage.create_dir_all(path("/e")).await.unwrap();
            write_durably(&storage, path("/d/kept"), b"kept").await;
            write_durably(&storage, path("/d/renamed"), b"renamed").await;
            write_durably(&storage, path("/d/removed"), b"removed").await;
            let mut unsynced = storage.create(path("/d/new")).await.unwrap();
            unsynced.write_all(b"new data").await.unwrap();
            let mut appended = storage.create(path("/e/appended")).await.unwrap();
            appended.write_all(b"base").await.unwrap();
            appended.sync().await.unwrap();
            storage.sync_dir(path("/e")).await.unwrap();
            appended.write_all(b"+tail").await.unwrap();
            storage.rename(path("/d/renamed"), path("/e/moved")).await.unwrap();
            storage.remove_file(path("/d/removed")).await.unwrap();
            let (durable, current) = (storage.durable_files(), storage.current_files());
            crash_root(&storage, mode);
            let expected = if mode == CrashMode::LoseUnsynced { durable } else { current };
            assert_eq!(storage.current_files(), expected, "{mode:?}");
            let appended_after = storage.read(path("/e/appended")).await.unwrap();
            match mode {
                CrashMode::LoseUnsynced => assert_eq!(appended_after, b"base"),
                _ => {
                    assert_eq!(appended_after, b"base+tail");
                    assert_eq!(storage.read(path("/d/new")).await.unwrap(), b"new data");
                    assert_eq!(storage.read(path("/e/moved")).await.unwrap(), b"renamed");
                }
            }
            assert_eq!(storage.read(path("/d/kept")).await.unwrap(), b"kept");
        }
    });
}

#[test]
fn a_new_file_needs_its_directory_synced_to_survive() {
    simulate(3, async {
        let storage = storage_with_dir().await;
        let mut file = storage.create(path("/d/f")).await.unwrap();
        file.write_all(b"data").await.unwrap();
        file.sync().await.unwrap();
        assert_eq!(storage.current_files(), vec![PathBuf::from("/d/f")]);
        assert!(storage.durable_files().is_empty(), "the entry is not durable yet");
        crash_root(&storage, CrashMode::LoseUnsynced);
        assert!(!storage.exists(path("/d/f")).await.unwrap(), "fsync alone does not make the entry durable");

        let storage = storage_with_dir().await;
        write_durably(&storage, path("/d/f"), b"data").await;
        assert_eq!(storage.durable_files(), vec![PathBuf::from("/d/f")]);
        storage.crash();
        assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"data");
        assert_eq!(storage.stats().crashes, 1);
    });
}

/// "Create without sync_dir": a protocol that fsyncs a new file but never its directory
/// loses the file under some seeds, and keeps it under others.
#[test]
fn create_without_a_directory_sync_loses_the_file_under_some_seeds() {
    simulate(4, async {
        let (mut lost, mut kept) = (0, 0);
        for _ in 0..100 {
            let storage = storage_with_dir().await;
            let mut file = storage.create(path("/d/f")).await.unwrap();
            file.write_all(b"data").await.unwrap();
            file.sync().await.unwrap();
            drop(file);
            storage.crash();
            match read_if_exists(&storage, path("/d/f")).await {
                None => lost += 1,
                Some(bytes) => {
                    assert_eq!(bytes, b"data", "the data was fsynced");
                    kept += 1;
                }
            }
        }
        assert!(lost > 0 && kept > 0, "lost {lost}, kept {kept}");
    });
}

#[test]
fn removals_and_renames_need_their_directories_synced() {
    simulate(5, async {
        let storage = SimStorage::new();
        storage.put_file(path("/d/removed"), b"r");
        storage.put_file(path("/a/x"), b"x");
        storage.remove_file(path("/d/removed")).await.unwrap();
        storage.rename(path("/a"), path("/b")).await.unwrap();
        crash_root(&storage, CrashMode::LoseUnsynced);
        assert_eq!(storage.current_files(), vec![PathBuf::from("/a/x"), PathBuf::from("/d/removed")]);
        // Both directories had a change the crash straddled: each owes one stale error.
        assert_stale(storage.sync_dir(path("/d")).await);
        assert_stale(storage.sync_dir(path("/")).await);

        storage.remove_file(path("/d/removed")).await.unwrap();
        storage.sync_dir(path("/d")).await.unwrap();
        storage.rename(path("/a"), path("/b")).await.unwrap();
        storage.sync_dir(path("/")).await.unwrap();
        crash_root(&storage, CrashMode::LoseUnsynced);
        assert_eq!(storage.current_files(), vec![PathBuf::from("/b/x")], "the subtree moves with its directory");
        assert_eq!(storage.read(path("/b/x")).await.unwrap(), b"x");

        // Across directories a rename is one change: syncing either directory makes both
        // halves durable, never one alone.
        for synced in ["/c", "/b"] {
            let storage = SimStorage::new();
            storage.put_file(path("/b/x"), b"x");
            storage.create_dir_all(path("/c")).await.unwrap();
            storage.rename(path("/b/x"), path("/c/x")).await.unwrap();
            assert_eq!(storage.durable_files(), vec![PathBuf::from("/b/x")]);
            storage.sync_dir(path(synced)).await.unwrap();
            assert_eq!(storage.durable_files(), vec![PathBuf::from("/c/x")], "synced {synced}");
        }
    });
}

/// A rename is atomic: after any crash the target names the old or the new inode, the
/// moved inode sits at exactly one of the two names, and both outcomes occur.
#[test]
fn a_rename_survives_whole_or_not_at_all() {
    simulate(6, async {
        let (mut renamed, mut not_renamed) = (0, 0);
        for _ in 0..100 {
            let storage = storage_with_dir().await;
            storage.create_dir_all(path("/e")).await.unwrap();
            write_durably(&storage, path("/d/source"), b"new").await;
            write_durably(&storage, path("/e/target"), b"old").await;
            storage.rename(path("/d/source"), path("/e/target")).await.unwrap();
            storage.crash();
            let source = read_if_exists(&storage, path("/d/source")).await;
            let target = read_if_exists(&storage, path("/e/target")).await;
            match (source.as_deref(), target.as_deref()) {
                (None, Some(b"new")) => renamed += 1,
                (Some(b"new"), Some(b"old")) => not_renamed += 1,
                other => panic!("half a rename: {other:?}"),
            }
        }
        assert!(renamed > 0 && not_renamed > 0, "renamed {renamed}, not renamed {not_renamed}");
    });
}

/// The operations of `write_atomic`, one at a time, so a test can crash between any two.
#[derive(Clone, Copy, Debug)]
enum Step {
    Create,
    Write,
    Sync,
    Rename,
    SyncDir,
}

const WRITE_ATOMIC_STEPS: [Step; 5] = [Step::Create, Step::Write, Step::Sync, Step::Rename, Step::SyncDir];

/// Runs `steps` of a write-then-rename protocol of `target`; a `Sync` missing from `steps`
/// is a protocol that skips the fsync of the data.
async fn run_steps(storage: &SimStorage, target: &Path, bytes: &[u8], steps: &[Step]) {
    let dir = target.parent().unwrap();
    let temporary = dir.join(".target.inprogress");
    let mut file = None;
    for step in steps {
        match step {
            Step::Create => file = Some(storage.create(&temporary).await.unwrap()),
            Step::Write => file.as_mut().unwrap().write_all(bytes).await.unwrap(),
            Step::Sync => file.as_mut().unwrap().sync().await.unwrap(),
            Step::Rename => {
                file = None;
                storage.rename(&temporary, target).await.unwrap();
            }
            Step::SyncDir => storage.sync_dir(dir).await.unwrap(),
        }
    }
}

/// Three blocks and a bit, so that torn and zero-filled outcomes have room.
fn new_content() -> Vec<u8> {
    (0..3 * 4096 + 100u32).map(|i| (i % 251) as u8 + 1).collect()
}

#[test]
fn write_atomic_is_all_or_nothing_across_a_crash_at_every_step() {
    simulate(7, async {
        let new = new_content();
        let target = path("/d/target");
        for round in 0..64 {
            for done in 0..=WRITE_ATOMIC_STEPS.len() {
                for old in [None, Some(b"old content".as_slice())] {
                    let storage = storage_with_dir().await;
                    if let Some(old) = old {
                        storage.put_file(target, old);
                    }
                    run_steps(&storage, target, &new, &WRITE_ATOMIC_STEPS[..done]).await;
                    storage.crash();
                    let after = read_if_exists(&storage, target).await;
                    let expected = if done == WRITE_ATOMIC_STEPS.len() { Some(new.as_slice()) } else { old };
                    if done == WRITE_ATOMIC_STEPS.len() - 1 {
                        // Renamed but not synced: either version, whole.
                        assert!(after.as_deref() == old || after.as_deref() == Some(&new), "round {round}");
                    } else {
                        assert_eq!(after.as_deref(), expected, "round {round}, crash after {done} steps, old {old:?}");
                    }
                }
            }
        }

        for mode in [CrashMode::Seeded, CrashMode::LoseUnsynced, CrashMode::KeepUnsynced] {
            let storage = storage_with_dir().await;
            storage.put_file(target, b"old content");
            write_atomic(&storage, target, &new).await.unwrap();
            crash_root(&storage, mode);
            assert_eq!(storage.read(target).await.unwrap(), new, "{mode:?}");
        }
    });
}

/// "Rename without fsync of the data first": the rename can reach the disk before the data,
/// so under some seeds the target is neither version: empty, a prefix, or zero-filled.
#[test]
fn a_rename_before_the_data_is_fsynced_exposes_a_partial_file_under_some_seeds() {
    simulate(8, async {
        let new = new_content();
        let old = b"old content".as_slice();
        let target = path("/d/target");
        let steps = [Step::Create, Step::Write, Step::Rename, Step::SyncDir];
        let (mut exposed, mut zero_filled, mut whole) = (0, 0, 0);
        for _ in 0..200 {
            let storage = storage_with_dir().await;
            storage.put_file(target, old);
            run_steps(&storage, target, &new, &steps).await;
            storage.crash();
            let after = storage.read(target).await.expect("the rename was synced");
            assert!(after.len() <= new.len(), "no bytes beyond what was written");
            assert!(after.iter().zip(&new).all(|(a, n)| a == n || *a == 0), "written bytes or zeros only");
            if after == new {
                whole += 1;
            } else {
                assert_ne!(after, old, "the synced rename is not undone");
                exposed += 1;
                zero_filled += u32::from(after.contains(&0));
            }
        }
        assert!(exposed > 0 && zero_filled > 0 && whole > 0, "exposed {exposed}, zeros {zero_filled}, whole {whole}");
    });
}

/// Overwriting in place (truncate, write, fsync) instead of through a temporary file: a
/// crash before the fsync can leave neither the old nor the new content.
#[test]
fn an_overwrite_in_place_can_leave_neither_version() {
    simulate(9, async {
        let new = new_content();
        let old = b"old content".as_slice();
        let target = path("/d/target");
        let (mut neither, mut old_back) = (0, 0);
        for _ in 0..200 {
            let storage = storage_with_dir().await;
            storage.put_file(target, old);
            let mut file = storage.create(target).await.unwrap();
            file.write_all(&new).await.unwrap();
            storage.crash();
            let after = storage.read(target).await.unwrap();
            if after == old {
                old_back += 1;
            } else {
                assert!(after.iter().zip(&new).all(|(a, n)| a == n || *a == 0), "written bytes or zeros only");
                neither += u32::from(after != new);
            }
        }
        assert!(neither > 0 && old_back > 0, "neither {neither}, old {old_back}");
    });
}

#[test]
fn torn_writes_keep_written_bytes_or_zeros_and_never_touch_durable_ones() {
    simulate(10, async {
        let base = b"durable base|".to_vec();
        let pending: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 250) as u8 + 1).collect();
        let (mut strict_prefixes, mut nothing_kept, mut zero_filled) = (0, 0, 0);
        let mut torn_writes = 0;
        for _ in 0..300 {
            let storage = storage_with_dir().await;
            let mut file = storage.create(path("/d/f")).await.unwrap();
            file.write_all(&base).await.unwrap();
            file.sync().await.unwrap();
            storage.sync_dir(path("/d")).await.unwrap();
            file.write_all(&pending[..4000]).await.unwrap();
            file.write_all(&pending[4000..]).await.unwrap();
            storage.crash();
            let after = storage.read(path("/d/f")).await.unwrap();
            let (kept_base, kept_tail) = after.split_at(base.len().min(after.len()));
            assert_eq!(kept_base, base, "the durable content survives");
            assert!(kept_tail.len() <= pending.len());
            assert!(kept_tail.iter().zip(&pending).all(|(k, p)| k == p || *k == 0), "written bytes or zeros only");
            match kept_tail.len() {
                0 => nothing_kept += 1,
                len if len < pending.len() && pending.starts_with(kept_tail) => strict_prefixes += 1,
                _ => {}
            }
            zero_filled += u32::from(kept_tail.contains(&0));
            torn_writes += storage.stats().torn_writes;
        }
        assert!(strict_prefixes > 0, "some crashes keep a prefix of the pending tail");
        assert!(nothing_kept > 0, "some crashes lose the whole pending tail");
        assert!(zero_filled > 0, "some crashes keep the size but zero-fill blocks");
        assert!(torn_writes > 0);
    });
}

/// A crash with nothing unsynced decides nothing: every file and entry is as it was.
#[test]
fn a_crash_with_nothing_unsynced_changes_nothing() {
    simulate(11, async {
        let storage = storage_with_dir().await;
        write_durably(&storage, path("/d/a"), b"a").await;
        write_durably(&storage, path("/d/b"), b"bb").await;
        for _ in 0..10 {
            storage.crash();
            assert_eq!(storage.current_files(), vec![PathBuf::from("/d/a"), PathBuf::from("/d/b")]);
            assert_eq!(storage.read(path("/d/b")).await.unwrap(), b"bb");
        }
        let stats = storage.stats();
        assert_eq!((stats.crashes, stats.changes_kept + stats.changes_lost, stats.torn_writes), (10, 0, 0));
    });
}

/// Under simulation the randomness is the seed's: a run that uses the storage without
/// faults, and crashes it with nothing unsynced, draws exactly what a run without storage
/// draws, so existing seeds keep their behaviour.
#[test]
fn a_storage_without_faults_draws_no_randomness() {
    if !runtime::SIMULATED {
        return;
    }
    let drawn_after_storage = std::sync::Arc::new(std::sync::Mutex::new(0));
    let drawn = drawn_after_storage.clone();
    simulate(12, async move {
        let storage = storage_with_dir().await;
        storage.mount(path("/local"), VolumeOptions::default());
        for dir in ["/d", "/local"] {
            write_durably(&storage, &Path::new(dir).join("f"), b"data").await;
            let mut file = storage.create(&Path::new(dir).join("g")).await.unwrap();
            file.write_all(b"more").await.unwrap();
            file.sync().await.unwrap();
            storage.rename(&Path::new(dir).join("g"), &Path::new(dir).join("h")).await.unwrap();
            storage.sync_dir(path(dir)).await.unwrap();
            storage.read(&Path::new(dir).join("h")).await.unwrap();
        }
        storage.crash();
        storage.crash_volume(path("/local"), CrashMode::Seeded);
        *drawn.lock().unwrap() = runtime::random_u64();
    });
    let fresh = std::sync::Arc::new(std::sync::Mutex::new(0));
    let drawn = fresh.clone();
    simulate(12, async move {
        *drawn.lock().unwrap() = runtime::random_u64();
    });
    assert_eq!(*drawn_after_storage.lock().unwrap(), *fresh.lock().unwrap());
}

#[test]
fn unsynced_directory_changes_beyond_the_bound_are_committed_oldest_first() {
    let storage = SimStorage::new();
    block_on(async {
        storage.create_dir_all(path("/d")).await.unwrap();
        for index in 0..volume::UNSYNCED_CHANGES_MAX + 10 {
            drop(storage.create(&Path::new("/d").join(format!("f{index:05}"))).await.unwrap());
        }
        let state = storage.lock();
        assert_eq!(state.volumes[0].journal.len(), volume::UNSYNCED_CHANGES_MAX);
        assert_eq!(state.files(View::Durable).len(), 10, "the ten oldest creates were committed");
        assert_eq!(state.files(View::Durable)[0], PathBuf::from("/d/f00000"));
        state.volumes[0].assert_journal_matches();
    });
}
