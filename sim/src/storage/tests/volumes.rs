//! Volumes: independent storages in one namespace.

use super::*;

fn with_local_disk() -> SimStorage {
    let storage = SimStorage::new();
    storage.mount(path("/local/tm-0"), VolumeOptions { name: "tm-0-disk".into(), ..VolumeOptions::default() });
    storage
}

#[test]
fn a_mounted_volume_shares_the_namespace() {
    let storage = with_local_disk();
    block_on(async {
        assert_eq!(storage.volumes(), vec![PathBuf::from("/"), PathBuf::from("/local/tm-0")]);
        assert_eq!(storage.list(path("/local")).await.unwrap(), vec!["tm-0"], "the mount point is a directory");
        assert!(storage.is_dir(path("/local/tm-0")).await.unwrap());
        storage.create_dir_all(path("/local/tm-0/work")).await.unwrap();
        write_durably(&storage, path("/local/tm-0/work/state"), b"local").await;
        storage.put_file(path("/shared/input"), b"shared");
        assert_eq!(
            storage.current_files(),
            vec![PathBuf::from("/local/tm-0/work/state"), PathBuf::from("/shared/input")]
        );
        assert_eq!(storage.read(path("/local/tm-0/work/state")).await.unwrap(), b"local");
        assert_eq!(
            storage.volume_stats(path("/local/tm-0")).operations,
            7,
            "is_dir of the mount point is on the volume"
        );

        let is_io = |result: Result<(), StorageError>| matches!(result, Err(StorageError::Io { .. }));
        assert!(is_io(storage.rename(path("/local/tm-0/work/state"), path("/shared/state")).await), "cross-device");
        assert!(is_io(storage.rename(path("/local"), path("/elsewhere")).await), "a volume is mounted below");
        assert!(is_io(storage.remove_dir_all(path("/local")).await), "a volume is mounted below");
        assert!(is_io(storage.remove_dir_all(path("/local/tm-0")).await), "a volume's root");
        storage.sync_dir(path("/local/tm-0")).await.unwrap();
    });
}

#[test]
fn each_volume_crashes_on_its_own() {
    simulate(40, async {
        let storage = with_local_disk();
        storage.create_dir_all(path("/shared")).await.unwrap();
        for dir in ["/shared", "/local/tm-0"] {
            drop(storage.create(&Path::new(dir).join("unsynced")).await.unwrap());
        }
        storage.crash_volume(path("/local/tm-0"), CrashMode::LoseUnsynced);
        assert_eq!(storage.current_files(), vec![PathBuf::from("/shared/unsynced")], "the root volume did not crash");
        storage.sync_dir(path("/shared")).await.unwrap();
        assert_stale(storage.sync_dir(path("/local/tm-0")).await);

        let mut handle = storage.create(path("/local/tm-0/open")).await.unwrap();
        storage.crash();
        handle.write_all(b"still fine").await.unwrap();
        assert_eq!(storage.volume_stats(path("/")).crashes, 1);
        assert_eq!(storage.volume_stats(path("/local/tm-0")).crashes, 1);
        assert_eq!(storage.stats().crashes, 2);
    });
}

#[test]
fn a_wiped_volume_comes_back_empty_and_its_handles_are_stale() {
    simulate(41, async {
        let storage = with_local_disk();
        storage.put_file(path("/shared/kept"), b"kept");
        storage.create_dir_all(path("/local/tm-0/work")).await.unwrap();
        write_durably(&storage, path("/local/tm-0/work/synced"), b"synced").await;
        let mut handle = storage.create(path("/local/tm-0/work/open")).await.unwrap();
        handle.write_all(b"x").await.unwrap();
        storage.wipe(path("/local/tm-0"));
        assert_eq!(storage.current_files(), vec![PathBuf::from("/shared/kept")], "synced or not, all gone");
        assert!(storage.list(path("/local/tm-0")).await.unwrap().is_empty(), "the mount point stays");
        assert!(storage.sync_dir(path("/local/tm-0/work")).await.unwrap_err().is_not_found());
        assert!(storage.read_range_now(path("/local/tm-0/work/synced"), 0, 1).unwrap_err().is_not_found());
        assert_stale(handle.write_all(b"y").await);
        assert_eq!(storage.volume_stats(path("/local/tm-0")).wipes, 1);
        drop(handle);
        storage.create_dir_all(path("/local/tm-0/work")).await.unwrap();
        write_durably(&storage, path("/local/tm-0/work/again"), b"again").await;
        assert_eq!(storage.read(path("/local/tm-0/work/again")).await.unwrap(), b"again");
    });
}

#[test]
fn faults_are_per_volume() {
    simulate(42, async {
        let storage = with_local_disk();
        storage.create_dir_all(path("/shared")).await.unwrap();
        storage.set_volume_faults(
            path("/local/tm-0"),
            StorageFaults { write_error_rate: 1.0, capacity_bytes: Some(0), ..StorageFaults::default() },
        );
        let mut shared = storage.create(path("/shared/f")).await.unwrap();
        shared.write_all(b"fine").await.unwrap();
        let mut local = storage.create(path("/local/tm-0/f")).await.unwrap();
        assert!(matches!(local.write_all(b"fails").await, Err(StorageError::Io { .. })));
        assert_eq!(storage.faults(), StorageFaults::default(), "the root volume's faults are its own");
        assert_eq!(storage.volume_faults(path("/local/tm-0")).capacity_bytes, Some(0));
        storage.heal();
        local.write_all(b"healed").await.unwrap();
        assert_eq!(storage.volume_stats(path("/local/tm-0")).injected_write_errors, 1);
    });
}

#[test]
#[should_panic(expected = "no volume is mounted at `/nowhere`")]
fn naming_a_volume_that_is_not_mounted_is_a_harness_bug() {
    SimStorage::new().wipe(path("/nowhere"));
}
