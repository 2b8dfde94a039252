//! Tests of the simulated storage: POSIX behaviour and faults (`basics`), the crash model
//! (`crash_model`, with a randomized check of its invariants in `crash_invariants`),
//! operations that span a crash (`spanning`), volumes and fault windows.

use super::*;
use engine::seam::storage::Storage;

mod basics;
mod crash_invariants;
mod crash_model;
mod spanning;
mod volumes;
mod windows;

pub(super) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    // Without latency or a stall the storage never awaits anything, so one poll
    // finishes every operation.
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("simulated storage awaited"),
    }
}

/// Runs a test inside a runtime: needed wherever randomness is drawn (crashes with
/// pending data, injected errors), since under madsim it comes from the simulation.
pub(super) fn simulate<F>(seed: u64, test: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    runtime::run(seed, test)
}

pub(super) fn path(text: &str) -> &Path {
    Path::new(text)
}

/// A fresh storage holding the directory `/d`.
pub(super) async fn storage_with_dir() -> SimStorage {
    let storage = SimStorage::new();
    storage.create_dir_all(path("/d")).await.unwrap();
    storage
}

/// Creates `path` with `bytes`, fsynced, and syncs its directory.
pub(super) async fn write_durably(storage: &SimStorage, file: &Path, bytes: &[u8]) {
    let mut handle = storage.create(file).await.unwrap();
    handle.write_all(bytes).await.unwrap();
    handle.sync().await.unwrap();
    storage.sync_dir(file.parent().unwrap()).await.unwrap();
}

/// A file's content, or `None` when it does not exist.
pub(super) async fn read_if_exists(storage: &SimStorage, file: &Path) -> Option<Vec<u8>> {
    match storage.read(file).await {
        Ok(bytes) => Some(bytes),
        Err(error) if error.is_not_found() => None,
        Err(error) => panic!("{error}"),
    }
}

/// The root volume's inode at `path` in the current view, for tests about identity.
pub(super) fn inode_at(storage: &SimStorage, file: &Path) -> Option<InodeId> {
    storage.lock().volumes[0].resolve(View::Current, &components(file))
}

/// Crashes the root volume as `mode` says.
pub(super) fn crash_root(storage: &SimStorage, mode: CrashMode) {
    storage.crash_volume(path("/"), mode);
}

pub(super) fn assert_stale<T: std::fmt::Debug>(result: Result<T, StorageError>) {
    match result {
        Err(StorageError::Stale { .. }) => {}
        other => panic!("expected a stale error: {other:?}"),
    }
}
