//! What a job restores from, and taking a job over from a dead job manager.
//!
//! A deployment restores from the newest completed snapshot the coordinator knows (checkpoint or savepoint), else
//! from the snapshot the job was started from (`-s`), else from nothing. A job manager that takes a job over reads
//! what the old one stored in the high-availability directory: the coordinator's durable view (the id counter, the
//! retained checkpoints, the newest savepoint, a completed stop), so it never reuses an id, never forgets a
//! savepoint whose commits may have begun, and never recovers from a snapshot older than what was committed.
//!
//! A read error is never evidence that a snapshot does not exist: a restore source that cannot be read for a
//! passing reason (a storage error) is retried later, never replaced by an older one or by nothing. What the dead
//! job manager left in the job's checkpoint directory and no retained checkpoint owns (snapshots in flight, a
//! subsumed one half deleted) is deleted, by id, never by guessing from a failed read; and before the job is
//! redeployed from an older checkpoint, which aborts their transactions (see `deploy.rs`).

use super::{Discarding, JobManager, RECOVERY_RETRY_MS};
use crate::api::graph::JobGraph;
use crate::checkpoint::coordinator::Durable;
use crate::checkpoint::restore::{self, LoadedCheckpoint, RestoreError};
use crate::checkpoint::storage::{self, CheckpointWriter};
use crate::cluster::JobError;
use crate::cluster::messages::RestoreRequest;
use crate::cluster::{Cleanup, JobEnd};
use crate::config::StateBackendKind;
use crate::faults::{Fate, FaultPoint, Faults, RecoveryStep};
use crate::ids::{Attempt, CheckpointId, JobId};
use crate::seam::runtime::{self, JoinHandle};
use crate::seam::storage::{StorageError, StorageRef};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a deployment restores from.
pub(super) enum RestoreSource {
    Snapshot(Arc<LoadedCheckpoint>),
    Nothing,
}

/// The longest pause between two attempts to delete a directory.
const REMOVE_RETRY_MAX_MS: u64 = 1_000;
/// How many times a submission reads the snapshot it starts from before a read error fails it.
const INITIAL_RESTORE_ATTEMPTS: u32 = 5;

/// Waits out a fault at recovery step `step`: `Err` if the step must fail now (an injected error).
async fn recovery_point(faults: &Faults, step: RecoveryStep, path: &Path) -> Result<(), StorageError> {
    faults.obey(FaultPoint::Recovery { step }).await.map_err(|injected| StorageError::Io {
        op: "read",
        path: path.to_path_buf(),
        message: injected.to_string(),
    })
}

impl JobManager {
    /// Prepares the job's checkpoint storage (`<dir>/<job-id>/{shared,taskowned}`) before anything runs.
    pub(super) async fn prepare_storage(
        &self,
        job: JobId,
        graph: &JobGraph,
    ) -> Result<Option<Arc<CheckpointWriter>>, JobError> {
        let settings = &graph.config.checkpoint;
        if settings.interval_ms.is_none() {
            return Ok(None);
        }
        let job_dir = settings.dir.as_ref().map(|dir| storage::job_dir(Path::new(dir), job));
        if job_dir.is_none() && graph.config.state_backend != StateBackendKind::JobManager {
            return Err(JobError::Setup(
                "the filesystem state backend needs a checkpoint directory (state.checkpoints.dir)".into(),
            ));
        }
        if let Some(dir) = &job_dir {
            for sub in ["shared", "taskowned"] {
                self.storage.create_dir_all(&dir.join(sub)).await.map_err(JobError::CheckpointStorage)?;
            }
        }
        let writer = CheckpointWriter {
            storage: self.storage.clone(),
            job_dir,
            backend: graph.config.state_backend,
            incremental: graph.config.embedded.incremental,
            inline_threshold_bytes: settings.inline_threshold_bytes,
            jobmanager_max_state_bytes: settings.jobmanager_max_state_bytes,
            savepoints: Default::default(),
        };
        Ok(Some(Arc::new(writer)))
    }

    /// Loads and checks the snapshot a job is started from (`-s`), so that every problem is reported before it
    /// runs.
    pub(super) async fn load_initial(
        &self,
        job: JobId,
        graph: &JobGraph,
        restore: Option<&RestoreRequest>,
    ) -> Result<(Option<Arc<LoadedCheckpoint>>, bool), RestoreError> {
        let Some(request) = restore else { return Ok((None, false)) };
        // A read error says nothing about the snapshot: it is read again, a few times, before the submission
        // fails on it. What is wrong with the snapshot itself fails it at once.
        let mut attempt = 1;
        let loaded = loop {
            let checked = async {
                let loaded = restore::load(&self.storage, &request.path).await?;
                let layout = graph.layout();
                restore::plan(&self.storage, &loaded, &layout, request.allow_non_restored_state, false, &self.faults)
                    .await?;
                Ok::<_, RestoreError>(loaded)
            };
            match checked.await {
                Ok(loaded) => break loaded,
                Err(error) if error.is_transient() && attempt < INITIAL_RESTORE_ATTEMPTS => {
                    tracing::info!(target: "weir::trace", %job, %error, attempt, "cannot read the snapshot to start from; trying again");
                    runtime::sleep(Duration::from_millis(RECOVERY_RETRY_MS << (attempt - 1).min(4))).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        tracing::info!(target: "weir::trace", %job, checkpoint = %loaded.metadata.checkpoint_id, path = %loaded.metadata_path.display(), "restoring from a snapshot given at submission");
        Ok((Some(Arc::new(loaded)), request.allow_non_restored_state))
    }

    /// Checks the restore source and prepares checkpoint storage for a submitted job.
    pub(super) async fn prepare(
        &self,
        job: JobId,
        graph: &JobGraph,
        restore: Option<RestoreRequest>,
    ) -> Result<(Option<Arc<CheckpointWriter>>, Option<Arc<LoadedCheckpoint>>, bool), JobError> {
        let (initial, allow) = self.load_initial(job, graph, restore.as_ref()).await?;
        let writer = self.prepare_storage(job, graph).await?;
        Ok((writer, initial, allow))
    }

    /// What the job restores from now: the coordinator's newest completed snapshot, else the snapshot it was
    /// started from, else nothing.
    pub(super) async fn restore_source(&mut self, job: JobId) -> Result<RestoreSource, RestoreError> {
        let run = self.jobs.get(&job).expect("the caller checked");
        let latest = run.coordinator.as_ref().and_then(|c| c.latest_snapshot());
        let Some(latest) = latest else {
            return Ok(run.initial_restore.clone().map_or(RestoreSource::Nothing, RestoreSource::Snapshot));
        };
        if let Some(loaded) = run.loaded.get(&latest.id) {
            return Ok(RestoreSource::Snapshot(loaded.clone()));
        }
        // Not loaded by this job manager: a checkpoint or savepoint an earlier one completed.
        let dir = match &latest.savepoint_dir {
            Some(dir) => dir.clone(),
            None => match run.writer.as_ref().and_then(|w| w.job_dir.clone()) {
                Some(job_dir) => storage::checkpoint_dir(&job_dir, latest.id),
                None => {
                    let stored = self.directory.stored(job).and_then(|s| s.in_memory.get(&latest.id).cloned());
                    let loaded = stored.expect("a retained in-memory checkpoint is in the store");
                    self.jobs.get_mut(&job).expect("present").loaded.insert(latest.id, loaded.clone());
                    return Ok(RestoreSource::Snapshot(loaded));
                }
            },
        };
        recovery_point(&self.faults, RecoveryStep::ReadMetadata, &dir).await?;
        let loaded = Arc::new(restore::load(&self.storage, &dir).await?);
        if loaded.metadata.checkpoint_id != latest.id {
            return Err(RestoreError::Storage(StorageError::Io {
                op: "read",
                path: loaded.metadata_path.clone(),
                message: format!(
                    "holds checkpoint {}, but the job's store says checkpoint {} completed here",
                    loaded.metadata.checkpoint_id, latest.id
                ),
            }));
        }
        self.jobs.get_mut(&job).expect("present").loaded.insert(latest.id, loaded.clone());
        Ok(RestoreSource::Snapshot(loaded))
    }

    /// Takes over a job that a crashed job manager was running, from what it stored.
    pub(super) async fn take_over(&mut self, job: JobId) {
        let faults = self.faults.clone();
        // The store is the only record of the job: if it cannot be read now, it is read again later.
        while recovery_point(&faults, RecoveryStep::ReadStore, Path::new("<store>")).await.is_err() {
            tracing::info!(target: "weir::trace", %job, "cannot read the job store; trying again");
            runtime::sleep(Duration::from_millis(RECOVERY_RETRY_MS)).await;
        }
        let Some(mut stored) = self.directory.stored(job) else { return };
        // A savepoint whose `_metadata` the dead job manager was writing completed if that file is there: it is
        // the user's now, and the newest snapshot, so recovery restores from it and commits its transactions
        // instead of aborting them under it.
        if let Some(durable) = stored.snapshots.as_mut() {
            for (id, dir, stop) in durable.completing_savepoints.clone() {
                let read = loop {
                    let read = match recovery_point(&faults, RecoveryStep::ReadMetadata, &dir).await {
                        Ok(()) => restore::load(&self.storage, &dir).await,
                        Err(error) => Err(error.into()),
                    };
                    match read {
                        Err(error) if error.is_transient() => {
                            tracing::info!(target: "weir::trace", %job, %error, "cannot read a savepoint being written; trying again");
                            runtime::sleep(Duration::from_millis(RECOVERY_RETRY_MS)).await;
                        }
                        other => break other,
                    }
                };
                match read {
                    Ok(loaded) if loaded.metadata.checkpoint_id == id => {
                        tracing::info!(target: "weir::trace", %job, checkpoint = %id, dir = %dir.display(), "savepoint found complete on takeover");
                        durable.adopt_savepoint(id, dir, stop);
                    }
                    // Never completed: lost with the job manager, as any pending snapshot.
                    _ => durable.completing_savepoints.retain(|(pending, _, _)| *pending != id),
                }
            }
        }
        let graph = stored.graph.clone();
        let writer = loop {
            match self.prepare_storage(job, &graph).await {
                Ok(writer) => break writer,
                Err(JobError::CheckpointStorage(error)) => {
                    tracing::info!(target: "weir::trace", %job, %error, "cannot prepare checkpoint storage; trying again");
                    runtime::sleep(Duration::from_millis(RECOVERY_RETRY_MS)).await;
                }
                Err(error) => {
                    self.fail_taken_over(job, error);
                    return;
                }
            }
        };
        // The snapshot the job was started from matters only until one of its own completed.
        let (initial, allow) = if stored
            .snapshots
            .as_ref()
            .is_some_and(|d| !d.retained.is_empty() || d.latest_savepoint.is_some())
        {
            (None, stored.restore.as_ref().is_some_and(|r| r.allow_non_restored_state))
        } else {
            loop {
                match self.load_initial(job, &graph, stored.restore.as_ref()).await {
                    Ok(initial) => break initial,
                    Err(error) if error.is_transient() => {
                        tracing::info!(target: "weir::trace", %job, %error, "cannot read the job's initial snapshot; trying again");
                        runtime::sleep(Duration::from_millis(RECOVERY_RETRY_MS)).await;
                    }
                    Err(error) => {
                        self.fail_taken_over(job, error.into());
                        return;
                    }
                }
            }
        };
        let durable = stored.snapshots.clone().unwrap_or_else(|| {
            let first = initial.as_ref().map_or(CheckpointId(1), |c| CheckpointId(c.metadata.checkpoint_id.0 + 1));
            Durable::fresh(first)
        });
        tracing::info!(target: "weir::trace", %job, next_id = %durable.next_id, retained = ?durable.retained, latest_savepoint = ?durable.latest_savepoint.as_ref().map(|(id, _)| id), stopped_at = ?durable.stopped_at, "job taken over");
        let leftovers_below = durable.next_id;
        let keep: Vec<CheckpointId> = durable.retained.clone();
        let mut run = self.new_run(job, graph, Attempt(stored.next_attempt), writer, initial, allow, durable);
        run.loaded.extend(stored.in_memory.iter().map(|(id, loaded)| (*id, loaded.clone())));
        if let Some(job_dir) = run.writer.as_ref().and_then(|w| w.job_dir.clone()) {
            // The shared-state registry, rebuilt from the retained checkpoints' `_metadata`: nothing is deleted or
            // completed before it knows what they refer to.
            let mut references = Vec::new();
            for &id in &keep {
                let dir = storage::checkpoint_dir(&job_dir, id);
                let loaded = loop {
                    let read = match recovery_point(&faults, RecoveryStep::ReadMetadata, &dir).await {
                        Ok(()) => restore::load(&self.storage, &dir).await,
                        Err(error) => Err(error.into()),
                    };
                    match read {
                        Ok(loaded) => break Some(Arc::new(loaded)),
                        Err(error) if error.is_transient() => {
                            tracing::info!(target: "weir::trace", %job, %error, "cannot read a retained checkpoint; trying again");
                            runtime::sleep(Duration::from_millis(RECOVERY_RETRY_MS)).await;
                        }
                        // Unreadable for good: a restore from it fails and says why; it refers to nothing here.
                        Err(error) => {
                            tracing::warn!(%job, %error, "a retained checkpoint is unreadable");
                            break None;
                        }
                    }
                };
                if let Some(loaded) = loaded {
                    references.push((id, loaded.metadata.shared_references()));
                    run.loaded.insert(id, loaded);
                }
            }
            let coordinator = run.coordinator();
            coordinator.rebuild_registry(references);
            let live = coordinator.shared_registry().live();
            let handle = self.clean_up_leftovers(job, job_dir, leftovers_below, keep, live);
            let newest = leftovers_below.0.checked_sub(1).map(CheckpointId);
            run.discards.push(Discarding { newest, handle });
        }
        self.jobs.insert(job, run);
        self.persist(job);
        self.try_deploy(job).await;
    }

    /// A job that cannot be taken over for a reason that will not pass: its submitter learns why.
    fn fail_taken_over(&self, job: JobId, error: JobError) {
        tracing::warn!(%job, %error, "cannot take the job over");
        self.directory.end_job(job, JobEnd::Failed, Err(error), Cleanup::nothing());
        self.directory.cleaned(job);
    }

    /// Finishes, in tasks of their own, the cleanups of ended jobs that a dead job manager left unfinished, and
    /// answers their submitters.
    pub(super) fn finish_cleanups(&self) {
        for (job, cleanup) in self.directory.unclean() {
            tracing::info!(target: "weir::trace", %job, "finishing the cleanup of an ended job");
            self.clean_up(job, cleanup, Vec::new());
        }
    }

    /// Deletes what `cleanup` lists of ended job `job` in a task of its own, after the deletions already in flight,
    /// then records the job clean, which answers its submitter.
    pub(super) fn clean_up(&self, job: JobId, cleanup: Cleanup, in_flight: Vec<JoinHandle<()>>) {
        let (storage, faults, directory) = (self.storage.clone(), self.faults.clone(), self.directory.clone());
        runtime::spawn(async move {
            for discarding in in_flight {
                let _ = discarding.await;
            }
            for (id, dir) in &cleanup.dirs {
                discard(&storage, &faults, job, *id, dir).await;
            }
            match &cleanup.job_dir {
                Some((dir, true)) => remove_dir_until_done(&storage, dir).await,
                // Kept: but not what a subsumed checkpoint left, whose deletion may have died with a job manager.
                Some((dir, false)) => {
                    discard_leftovers(&storage, &faults, job, dir, cleanup.next_id, &cleanup.retained, None).await;
                    if !cleanup.shared.is_empty() {
                        remove_shared_until_done(&storage, &storage::shared_dir(dir), &cleanup.shared).await;
                    }
                }
                None => {}
            }
            directory.cleaned(job);
        });
    }

    /// Deletes, in a task of its own, the `chk-<n>` directories below `below` that no retained checkpoint owns:
    /// snapshots a dead job manager had in flight or was discarding. Ids from `below` on are this job manager's.
    /// Likewise the files in `shared/` uploaded by a checkpoint below `below` that no retained checkpoint refers to
    /// (not in `live`): files the dead job manager registered for a checkpoint whose `_metadata` it never wrote, or
    /// was deleting.
    fn clean_up_leftovers(
        &self,
        job: JobId,
        job_dir: PathBuf,
        below: CheckpointId,
        keep: Vec<CheckpointId>,
        live: BTreeSet<String>,
    ) -> JoinHandle<()> {
        let (storage, faults) = (self.storage.clone(), self.faults.clone());
        runtime::spawn(
            async move { discard_leftovers(&storage, &faults, job, &job_dir, below, &keep, Some(&live)).await },
        )
    }

    /// Deletes snapshot `id`'s directory in a task of its own, retrying until it is durably gone. The deletion's
    /// fault point is reached here, as it is decided: a crash right after the decision leaves a snapshot being
    /// discarded, never one that looks retained.
    pub(super) fn discard_dir(&self, job: JobId, id: CheckpointId, dir: PathBuf) -> Discarding {
        let (storage, faults) = (self.storage.clone(), self.faults.clone());
        let first = faults.at(FaultPoint::Discard { job, id, dir: &dir, done: false });
        let handle = runtime::spawn(async move { discard_decided(&storage, &faults, job, id, &dir, first).await });
        Discarding { newest: Some(id), handle }
    }
}

/// Deletes the `chk-<n>` directories of `job_dir` below `below` that no checkpoint of `keep` owns, and, given the
/// shared files still `live`, the files of `shared/` uploaded below `below` that are not.
async fn discard_leftovers(
    storage: &StorageRef,
    faults: &Faults,
    job: JobId,
    job_dir: &Path,
    below: CheckpointId,
    keep: &[CheckpointId],
    live: Option<&BTreeSet<String>>,
) {
    let Some(names) = list_until_done(storage, faults, job_dir).await else { return };
    for name in names {
        let Some(id) = storage::parse_checkpoint_dir_name(&name) else { continue };
        if id < below && !keep.contains(&id) {
            let dir = job_dir.join(&name);
            tracing::info!(target: "weir::trace", checkpoint = %id, dir = %dir.display(), "discarding what a dead job manager left");
            discard(storage, faults, job, id, &dir).await;
        }
    }
    let Some(live) = live else { return };
    let shared = storage::shared_dir(job_dir);
    let Some(names) = list_until_done(storage, faults, &shared).await else { return };
    let orphans: Vec<String> = names
        .into_iter()
        .filter(|name| !live.contains(name))
        .filter(|name| storage::shared_file_checkpoint(name).is_some_and(|id| id < below))
        .collect();
    if !orphans.is_empty() {
        tracing::info!(target: "weir::trace", files = orphans.len(), "discarding shared files a dead job manager left");
        remove_shared_until_done(storage, &shared, &orphans).await;
    }
}

/// Lists `dir` through the recovery fault point, retrying until the storage answers; `None` if it does not exist.
async fn list_until_done(storage: &StorageRef, faults: &Faults, dir: &Path) -> Option<Vec<String>> {
    let mut pause_ms = 50;
    loop {
        let listed = match recovery_point(faults, RecoveryStep::ScanDirectory, dir).await {
            Ok(()) => storage.list(dir).await,
            Err(error) => Err(error),
        };
        match listed {
            Ok(names) => return Some(names),
            Err(StorageError::NotFound { .. }) => return None,
            Err(error) => {
                tracing::info!(target: "weir::trace", dir = %dir.display(), %error, "cannot list a checkpoint directory; trying again");
                runtime::sleep(Duration::from_millis(pause_ms)).await;
                pause_ms = (pause_ms * 2).min(REMOVE_RETRY_MAX_MS);
            }
        }
    }
}

/// Deletes snapshot `id`'s directory durably, through the fault hook.
async fn discard(storage: &StorageRef, faults: &Faults, job: JobId, id: CheckpointId, dir: &Path) {
    let first = faults.at(FaultPoint::Discard { job, id, dir, done: false });
    discard_decided(storage, faults, job, id, dir, first).await
}

/// [`discard`], its start's fate already decided (`first`). A failed start is a deletion that did not happen yet:
/// it is tried again, as a failed removal is.
async fn discard_decided(storage: &StorageRef, faults: &Faults, job: JobId, id: CheckpointId, dir: &Path, first: Fate) {
    let mut pause_ms = 50;
    let mut fate = first;
    loop {
        match fate {
            Fate::Crash => std::future::pending::<()>().await,
            Fate::Delay(delay) => {
                runtime::sleep(delay).await;
                break;
            }
            Fate::Fail => {
                tracing::info!(target: "weir::trace", dir = %dir.display(), "cannot delete a discarded snapshot yet (injected); trying again");
                runtime::sleep(Duration::from_millis(pause_ms)).await;
                pause_ms = (pause_ms * 2).min(REMOVE_RETRY_MAX_MS);
                fate = faults.at(FaultPoint::Discard { job, id, dir, done: false });
            }
            Fate::Proceed | Fate::Drop => break,
        }
    }
    remove_dir_until_done(storage, dir).await;
    let _ = faults.at(FaultPoint::Discard { job, id, dir, done: true });
}

/// Removes a directory tree durably (a missing one is fine: it may never have been created), so that a
/// discarded snapshot cannot reappear after a storage crash; a failure is retried, with a growing pause, until
/// the storage lets it happen.
pub(super) async fn remove_dir_until_done(storage: &StorageRef, dir: &Path) {
    until_done(dir, "cannot delete a discarded snapshot yet; trying again", || remove_dir_once(storage, dir)).await
}

/// Removes `files` from the shared directory `dir` durably (a missing one is fine), retrying with a growing pause
/// until the storage lets it happen, like [`remove_dir_until_done`].
pub(super) async fn remove_shared_until_done(storage: &StorageRef, dir: &Path, files: &[String]) {
    until_done(dir, "cannot delete discarded shared files yet; trying again", || remove_files_once(storage, dir, files))
        .await
}

/// Runs `attempt` until it succeeds, pausing longer after each failure (up to [`REMOVE_RETRY_MAX_MS`]).
async fn until_done<F, Fut>(dir: &Path, retrying: &'static str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StorageError>>,
{
    let mut pause_ms = 50;
    while let Err(error) = attempt().await {
        tracing::info!(target: "weir::trace", dir = %dir.display(), %error, "{retrying}");
        runtime::sleep(Duration::from_millis(pause_ms)).await;
        pause_ms = (pause_ms * 2).min(REMOVE_RETRY_MAX_MS);
    }
}

/// One attempt to remove `dir` durably.
async fn remove_dir_once(storage: &StorageRef, dir: &Path) -> Result<(), StorageError> {
    match storage.remove_dir_all(dir).await {
        Ok(()) | Err(StorageError::NotFound { .. }) => {}
        // A directory that does not exist has nothing to remove, whatever the error says: a savepoint asked for
        // under a regular file fails to start, and its directory, never made, must not be retried forever.
        Err(error) => {
            if storage.exists(dir).await? {
                return Err(error);
            }
        }
    }
    if let Some(parent) = dir.parent() {
        match storage.sync_dir(parent).await {
            Ok(()) | Err(StorageError::NotFound { .. }) => {}
            // A parent that is no directory holds no entry to make durable.
            Err(error) => {
                if storage.is_dir(parent).await? {
                    return Err(error);
                }
            }
        }
    }
    // A storage crash between the removal and the fsync may bring the directory back while the fsync, issued
    // after the crash, succeeds: it is gone only if it is gone now.
    gone(storage, dir).await
}

/// One attempt to remove `files` from `dir` durably.
async fn remove_files_once(storage: &StorageRef, dir: &Path, files: &[String]) -> Result<(), StorageError> {
    for name in files {
        match storage.remove_file(&dir.join(name)).await {
            Ok(()) | Err(StorageError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    match storage.sync_dir(dir).await {
        Ok(()) | Err(StorageError::NotFound { .. }) => {}
        Err(error) => return Err(error),
    }
    // As for directories: a storage crash before the fsync may bring a file back; gone is what is gone now.
    for name in files {
        gone(storage, &dir.join(name)).await?;
    }
    Ok(())
}

/// `Ok` if `path` does not exist now; a stale error if it does.
async fn gone(storage: &StorageRef, path: &Path) -> Result<(), StorageError> {
    match storage.exists(path).await? {
        false => Ok(()),
        true => Err(StorageError::Stale { op: "remove", path: path.to_path_buf() }),
    }
}
