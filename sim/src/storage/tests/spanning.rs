//! Operations that span a crash fail with `StorageError::Stale`.

use super::*;

#[test]
fn a_write_handle_from_before_a_crash_is_stale() {
    simulate(30, async {
        let storage = storage_with_dir().await;
        write_durably(&storage, path("/d/f"), b"before").await;
        let mut file = storage.create(path("/d/f")).await.unwrap();
        file.write_all(b"lost").await.unwrap();
        crash_root(&storage, CrashMode::LoseUnsynced);
        assert_stale(file.write_all(b"resurrected").await);
        assert_stale(file.sync().await);
        drop(file);
        assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"before");
        assert_eq!(storage.stats().stale_handle_errors, 2);

        let mut fresh = storage.create(path("/d/f")).await.unwrap();
        fresh.write_all(b"after").await.unwrap();
        fresh.sync().await.unwrap();
        assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"after");
        let message = StorageError::Stale { op: "fsync", path: PathBuf::from("/d/f") }.to_string();
        assert!(message.contains("stale after a storage crash"), "{message}");
    });
}

/// A caller that renamed, then syncs the directory after a crash, learns that its rename
/// may be gone, whether or not the crash kept it.
#[test]
fn a_directory_sync_after_a_crash_fails_for_changes_made_before_it() {
    simulate(31, async {
        for mode in [CrashMode::Seeded, CrashMode::LoseUnsynced, CrashMode::KeepUnsynced] {
            let storage = storage_with_dir().await;
            write_durably(&storage, path("/d/.tmp"), b"data").await;
            storage.rename(path("/d/.tmp"), path("/d/target")).await.unwrap();
            crash_root(&storage, mode);
            assert_stale(storage.sync_dir(path("/d")).await);
            assert_eq!(storage.stats().stale_directory_errors, 1);
            // The rename was the directory's one unsynced change: it owed one error.
            storage.sync_dir(path("/d")).await.unwrap();
        }
    });
}

#[test]
fn a_directory_owes_one_stale_error_per_change_the_crash_straddled() {
    simulate(32, async {
        let storage = storage_with_dir().await;
        storage.create_dir_all(path("/clean")).await.unwrap();
        storage.create_dir_all(path("/e")).await.unwrap();
        write_durably(&storage, path("/d/removed"), b"r").await;
        drop(storage.create(path("/d/created")).await.unwrap());
        storage.remove_file(path("/d/removed")).await.unwrap();
        write_durably(&storage, path("/e/moved"), b"m").await;
        storage.rename(path("/e/moved"), path("/d/moved")).await.unwrap();
        crash_root(&storage, CrashMode::KeepUnsynced);

        assert!(storage.sync_dir(path("/clean")).await.is_ok(), "a directory with nothing unsynced is not stale");
        for _ in 0..3 {
            assert_stale(storage.sync_dir(path("/d")).await);
        }
        storage.sync_dir(path("/d")).await.unwrap();
        assert_stale(storage.sync_dir(path("/e")).await);
        storage.sync_dir(path("/e")).await.unwrap();

        // Changes after the crash sync as usual.
        drop(storage.create(path("/d/later")).await.unwrap());
        storage.sync_dir(path("/d")).await.unwrap();
        crash_root(&storage, CrashMode::LoseUnsynced);
        assert!(storage.exists(path("/d/later")).await.unwrap());
    });
}

/// A stale barrier makes nothing durable: the change made after the crash stays unsynced
/// until a barrier succeeds.
#[test]
fn a_stale_directory_sync_persists_nothing() {
    simulate(33, async {
        let storage = storage_with_dir().await;
        drop(storage.create(path("/d/before")).await.unwrap());
        crash_root(&storage, CrashMode::LoseUnsynced);
        drop(storage.create(path("/d/after")).await.unwrap());
        assert_stale(storage.sync_dir(path("/d")).await);
        assert!(storage.durable_files().is_empty(), "{:?}", storage.durable_files());
        storage.sync_dir(path("/d")).await.unwrap();
        assert_eq!(storage.durable_files(), vec![PathBuf::from("/d/after")]);
    });
}

/// After a crash, the namespace is the post-crash one: a rename whose source the crash lost
/// is `NotFound`, not a rename of nothing.
#[test]
fn namespace_operations_after_a_crash_see_what_it_left() {
    simulate(34, async {
        let storage = storage_with_dir().await;
        let mut file = storage.create(path("/d/.tmp")).await.unwrap();
        file.write_all(b"x").await.unwrap();
        file.sync().await.unwrap();
        crash_root(&storage, CrashMode::LoseUnsynced);
        assert!(storage.rename(path("/d/.tmp"), path("/d/target")).await.unwrap_err().is_not_found());
        assert!(StorageError::Stale { op: "x", path: PathBuf::new() }.is_stale());
    });
}
