//! Faults scoped to a window of simulated time, and the synchronous read.

use super::*;
use std::time::Duration;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A window starting `from` and ending `until` from now, in milliseconds.
fn window_from_now(from_ms: u64, until_ms: u64, faults: StorageFaults) -> FaultWindow {
    let now = runtime::elapsed();
    FaultWindow { from: now + ms(from_ms), until: now + ms(until_ms), faults }
}

#[test]
fn a_window_injects_only_while_it_lasts() {
    simulate(50, async {
        let storage = storage_with_dir().await;
        write_durably(&storage, path("/d/f"), b"data").await;
        let failing = StorageFaults { read_error_rate: 1.0, ..StorageFaults::default() };
        storage.add_fault_window(path("/"), window_from_now(100, 200, failing));
        storage.read(path("/d/f")).await.expect("before the window");
        runtime::sleep(ms(120)).await;
        assert!(storage.read(path("/d/f")).await.is_err(), "within the window");
        assert!(storage.read_range_now(path("/d/f"), 0, 4).is_err(), "the synchronous read too");
        runtime::sleep(ms(100)).await;
        storage.read(path("/d/f")).await.expect("after the window");
        assert_eq!(storage.stats().injected_read_errors, 2);
        assert_eq!(storage.faults(), StorageFaults::default(), "windows leave the base faults alone");
    });
}

#[test]
fn a_stall_window_holds_operations_until_it_ends_exactly() {
    simulate(51, async {
        let storage = storage_with_dir().await;
        let window = window_from_now(0, 300, StorageFaults { stall: true, ..StorageFaults::default() });
        let until = window.until;
        storage.add_fault_window(path("/"), window);
        let started = runtime::elapsed();
        storage.create_dir_all(path("/d/e")).await.unwrap();
        let resumed = runtime::elapsed();
        assert!(resumed >= until, "held until the window's end: {resumed:?} < {until:?}");
        if runtime::SIMULATED {
            assert!(resumed - until < ms(1), "a sleep to the window's end, not a poll: {:?}", resumed - until);
        }
        assert!(resumed - started >= ms(299));
        // The synchronous read never waits.
        storage.put_file(path("/d/g"), b"g");
        storage.add_fault_window(
            path("/"),
            window_from_now(0, 10_000, StorageFaults { stall: true, ..StorageFaults::default() }),
        );
        let before = runtime::elapsed();
        assert_eq!(storage.read_range_now(path("/d/g"), 0, 1).unwrap(), b"g");
        assert!(runtime::elapsed() - before < ms(1), "no wait");
        storage.clear_fault_windows(path("/"));
        storage.read(path("/d/g")).await.unwrap();
        assert!(runtime::elapsed() - before < ms(1), "cleared windows stall nothing");
    });
}

#[test]
fn clearing_or_healing_releases_stalled_operations_at_once() {
    simulate(52, async {
        let storage = storage_with_dir().await;
        storage.mount(path("/local"), VolumeOptions::default());
        storage.add_fault_window(
            path("/local"),
            window_from_now(0, 60_000, StorageFaults { stall: true, ..StorageFaults::default() }),
        );
        let writer = storage.clone();
        let task = runtime::spawn(async move { writer.create_dir_all(path("/local/x")).await.unwrap() });
        runtime::sleep(ms(200)).await;
        // The root volume is not stalled.
        storage.create_dir_all(path("/d/y")).await.unwrap();
        assert!(storage.is_dir(path("/d/y")).await.unwrap(), "the root volume is not stalled");
        let healed = runtime::elapsed();
        storage.heal();
        task.await.unwrap();
        if runtime::SIMULATED {
            assert!(runtime::elapsed() - healed < ms(1));
        }
        assert!(storage.is_dir(path("/local/x")).await.unwrap());
    });
}

#[test]
fn windows_combine_with_base_faults_by_taking_the_harsher() {
    let base = StorageFaults { write_error_rate: 0.5, capacity_bytes: Some(100), ..StorageFaults::default() };
    let window = StorageFaults {
        write_error_rate: 0.1,
        fsync_error_rate: 0.2,
        capacity_bytes: Some(10),
        latency: Some((ms(1), ms(5))),
        ..StorageFaults::default()
    };
    let combined = base.combined(&window);
    assert_eq!(
        combined,
        StorageFaults {
            write_error_rate: 0.5,
            fsync_error_rate: 0.2,
            read_error_rate: 0.0,
            capacity_bytes: Some(10),
            latency: Some((ms(1), ms(5))),
            stall: false,
        }
    );
    let windows = [FaultWindow { from: ms(10), until: ms(20), faults: window }];
    assert_eq!(faults::effective(&base, &windows, ms(9)), base);
    assert_eq!(faults::effective(&base, &windows, ms(10)), combined);
    assert_eq!(faults::effective(&base, &windows, ms(20)), base, "the end is exclusive");
}

#[test]
fn a_windowed_latency_slows_only_the_operations_within_it() {
    simulate(53, async {
        let storage = storage_with_dir().await;
        let slow = StorageFaults { latency: Some((ms(50), ms(50))), ..StorageFaults::default() };
        storage.add_fault_window(path("/"), window_from_now(0, 100, slow));
        let start = runtime::elapsed();
        assert!(storage.exists(path("/d")).await.unwrap());
        assert!(runtime::elapsed() - start >= ms(50));
        runtime::sleep(ms(100)).await;
        let start = runtime::elapsed();
        assert!(storage.exists(path("/d")).await.unwrap());
        assert!(runtime::elapsed() - start < ms(50));
    });
}
