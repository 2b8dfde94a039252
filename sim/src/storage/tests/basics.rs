//! The storage as a POSIX file system, and its injected faults.

use super::*;
use std::time::Duration;

fn assert_injected(result: Result<(), StorageError>) -> bool {
    match result {
        Ok(()) => false,
        Err(StorageError::Io { message, .. }) if message.starts_with("injected") => true,
        Err(other) => panic!("not an injected error: {other}"),
    }
}

#[test]
fn files_and_directories_behave_like_posix() {
    let storage = SimStorage::new();
    block_on(async {
        assert!(storage.create(Path::new("/a/b/file")).await.is_err(), "parent must exist");
        storage.create_dir_all(Path::new("/a/b")).await.unwrap();
        let mut file = storage.create(Path::new("/a/b/file")).await.unwrap();
        file.write_all(b"hello ").await.unwrap();
        file.write_all(b"world").await.unwrap();
        drop(file);
        assert_eq!(storage.read(Path::new("/a/b/file")).await.unwrap(), b"hello world");
        assert_eq!(storage.read_range(Path::new("/a/b/file"), 6, 100).await.unwrap(), b"world");
        storage.rename(Path::new("/a/b/file"), Path::new("/a/moved")).await.unwrap();
        assert_eq!(storage.list(Path::new("/a")).await.unwrap(), vec!["b", "moved"]);
        assert!(storage.read(Path::new("/a/b/file")).await.unwrap_err().is_not_found());
        storage.remove_dir_all(Path::new("/a")).await.unwrap();
        assert!(!storage.exists(Path::new("/a/moved")).await.unwrap());
    });
}

#[test]
fn posix_errors_for_misuse() {
    let storage = SimStorage::new();
    block_on(async {
        storage.create_dir_all(path("/a/sub")).await.unwrap();
        storage.put_file(path("/a/file"), b"x");
        let is_io = |result: Result<(), StorageError>| matches!(result, Err(StorageError::Io { .. }));
        assert!(storage.rename(path("/missing"), path("/a/x")).await.unwrap_err().is_not_found());
        assert!(storage.rename(path("/a/file"), path("/nowhere/x")).await.unwrap_err().is_not_found());
        assert!(is_io(storage.rename(path("/a"), path("/a/sub/a")).await), "a directory into itself");
        assert!(is_io(storage.rename(path("/a/file"), path("/a/sub")).await), "a file over a directory");
        assert!(is_io(storage.remove_file(path("/a/sub")).await));
        assert!(storage.create(path("/a/sub")).await.is_err());
        assert!(matches!(storage.create_dir_all(path("/a/file/below")).await, Err(StorageError::AlreadyExists { .. })));
        assert!(storage.sync_dir(path("/a/file")).await.unwrap_err().is_not_found());
        assert!(storage.list(path("/missing")).await.unwrap_err().is_not_found());
        assert!(storage.file_len(path("/a/sub")).await.is_err());
        assert_eq!(storage.file_len(path("/a/file")).await.unwrap(), 1);
        assert!(storage.is_dir(path("/")).await.unwrap() && storage.exists(path("/")).await.unwrap());
        assert_eq!(storage.stats().injected_errors(), 0);
    });
}

#[test]
fn injected_errors_happen_at_the_configured_rate() {
    simulate(7, async {
        const OPERATIONS: u64 = 1000;
        let storage = storage_with_dir().await;
        write_durably(&storage, path("/d/read"), b"readable").await;
        storage.set_faults(StorageFaults {
            write_error_rate: 0.5,
            fsync_error_rate: 0.5,
            read_error_rate: 0.5,
            ..StorageFaults::default()
        });
        let mut file = storage.create(path("/d/f")).await.unwrap();
        let (mut write_errors, mut fsync_errors, mut read_errors) = (0, 0, 0);
        for _ in 0..OPERATIONS {
            write_errors += u64::from(assert_injected(file.write_all(b"x").await));
            fsync_errors += u64::from(assert_injected(file.sync().await));
            read_errors += u64::from(assert_injected(storage.read(path("/d/read")).await.map(drop)));
        }
        for errors in [write_errors, fsync_errors, read_errors] {
            assert!((350..=650).contains(&errors), "{errors} errors in {OPERATIONS} operations at rate 0.5");
        }
        assert_eq!(
            storage.file_len(path("/d/f")).await.unwrap(),
            OPERATIONS - write_errors,
            "failed writes append nothing"
        );
        let stats = storage.stats();
        assert_eq!(
            (stats.injected_write_errors, stats.injected_fsync_errors, stats.injected_read_errors),
            (write_errors, fsync_errors, read_errors)
        );

        storage.set_faults(StorageFaults::default());
        file.write_all(b"y").await.unwrap();
        file.sync().await.unwrap();
        assert_eq!(storage.stats().injected_errors(), write_errors + fsync_errors + read_errors);
    });
}

#[test]
fn a_full_storage_refuses_writes_until_space_is_freed() {
    let storage = SimStorage::new();
    block_on(async {
        storage.create_dir_all(path("/d")).await.unwrap();
        storage.set_faults(StorageFaults { capacity_bytes: Some(10), ..StorageFaults::default() });
        let mut first = storage.create(path("/d/first")).await.unwrap();
        first.write_all(b"123456").await.unwrap();
        drop(first);
        let mut second = storage.create(path("/d/second")).await.unwrap();
        second.write_all(b"7890").await.unwrap();
        match second.write_all(b"!").await {
            Err(StorageError::NoSpace { .. }) => {}
            other => panic!("a write beyond the capacity must fail with NoSpace: {other:?}"),
        }
        assert_eq!(storage.read(path("/d/second")).await.unwrap(), b"7890", "nothing was appended");
        storage.remove_file(path("/d/first")).await.unwrap();
        second.write_all(b"!").await.unwrap();
        assert_eq!(storage.read(path("/d/second")).await.unwrap(), b"7890!");
        assert_eq!(storage.stats().no_space_errors, 1);
    });
}

#[test]
fn latency_delays_every_operation() {
    simulate(8, async {
        let storage = storage_with_dir().await;
        let latency = Duration::from_millis(100);
        storage.set_faults(StorageFaults { latency: Some((latency, latency)), ..StorageFaults::default() });
        let start = runtime::now();
        assert!(storage.exists(path("/d")).await.unwrap());
        assert!(start.elapsed() >= latency, "one operation took {:?}", start.elapsed());

        let start = runtime::now();
        let mut file = storage.create(path("/d/f")).await.unwrap();
        file.write_all(b"slow").await.unwrap();
        file.sync().await.unwrap();
        assert!(start.elapsed() >= 3 * latency, "three operations took {:?}", start.elapsed());
    });
}

#[test]
fn a_stall_blocks_operations_until_it_ends() {
    simulate(9, async {
        let storage = storage_with_dir().await;
        storage.set_faults(StorageFaults { stall: true, ..StorageFaults::default() });
        let writer = storage.clone();
        let task = runtime::spawn(async move {
            let mut file = writer.create(path("/d/f")).await.unwrap();
            file.write_all(b"eventually").await.unwrap();
        });
        runtime::sleep(Duration::from_millis(500)).await;
        assert!(storage.current_files().is_empty(), "a stalled operation does not run");
        let released = runtime::elapsed();
        storage.set_faults(StorageFaults::default());
        task.await.unwrap();
        if runtime::SIMULATED {
            let waited = runtime::elapsed() - released;
            assert!(waited < Duration::from_millis(1), "released when the stall ends, not at a poll: {waited:?}");
        }
        assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"eventually");
    });
}

#[test]
fn unlinked_open_files_are_kept_until_closed() {
    let storage = SimStorage::new();
    block_on(async {
        storage.create_dir_all(path("/d")).await.unwrap();
        let mut file = storage.create(path("/d/f")).await.unwrap();
        storage.remove_file(path("/d/f")).await.unwrap();
        // Synced, so that no unsynced change names the file: only the handle keeps it.
        storage.sync_dir(path("/d")).await.unwrap();
        file.write_all(b"into the void").await.unwrap();
        file.sync().await.unwrap();
        // Sweeps are amortized: force one on each side of the close.
        storage.lock().volumes[0].sweep();
        let inodes = storage.lock().volumes[0].inodes.len();
        assert_eq!(inodes, 3, "the root, `/d` and the open, unlinked file");
        drop(file);
        storage.lock().volumes[0].sweep();
        assert_eq!(storage.lock().volumes[0].inodes.len(), inodes - 1, "the closed, unlinked inode is freed");
        assert!(storage.current_files().is_empty());
    });
}

#[test]
fn garbage_is_collected_as_it_accumulates() {
    let storage = SimStorage::new();
    block_on(async {
        storage.create_dir_all(path("/d")).await.unwrap();
        storage.put_file(path("/d/kept"), b"kept");
        for round in 0..1000 {
            let mut file = storage.create(path("/d/f")).await.unwrap();
            file.write_all(b"garbage soon").await.unwrap();
            drop(file);
            storage.remove_file(path("/d/f")).await.unwrap();
            storage.sync_dir(path("/d")).await.unwrap();
            let inodes = storage.lock().volumes[0].inodes.len();
            // A sweep during a round also keeps the round's file, which the journal names until
            // the directory is synced: four live inodes at most.
            assert!(inodes <= 2 * 4 + 64 + 1, "round {round}: {inodes} inodes for 3 live ones");
        }
        assert_eq!(storage.current_files(), vec![PathBuf::from("/d/kept")]);
    });
}
