//! Checks of what a run left in its checkpoint directory: which checkpoints are retained and
//! which were left incomplete, that each `_metadata` parses and every file it references
//! exists and is intact, and that no file is left that no retained checkpoint references,
//! in a checkpoint's directory or in the job's `shared/` directory.

use engine::checkpoint::metadata::{METADATA_FILE_NAME, SnapshotFormat};
use engine::checkpoint::restore::{self, RestoreError};
use engine::checkpoint::storage::{parse_checkpoint_dir_name, shared_dir, shared_file_checkpoint};
use engine::ids::CheckpointId;
use engine::local::RunError;
use engine::seam::storage::StorageRef;
use engine::state::snapshot::FileScope;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What one job's checkpoint directory holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointDirReport {
    pub job_dir: PathBuf,
    /// Retained `chk-<n>` ids (those with a `_metadata`), ascending.
    pub retained: Vec<CheckpointId>,
    /// `chk-<n>` ids without a `_metadata`, ascending: checkpoints that never completed and
    /// whose directory no one discarded.
    pub incomplete: Vec<CheckpointId>,
    /// Violations found: unreadable metadata, missing or corrupt files, orphan files.
    pub problems: Vec<String>,
    /// Each readable retained checkpoint's path, the format its writer used, and whether it is self-contained.
    pub self_contained: Vec<(String, SnapshotFormat, bool)>,
    /// Shared files a retained checkpoint refers to that are missing or not the size it recorded: `chk-<n>: name`.
    pub dangling: Vec<String>,
    /// Files in `shared/` no retained checkpoint refers to, with the checkpoint that uploaded each (from its name).
    pub leaked: Vec<(String, Option<CheckpointId>)>,
}

/// The `chk-<n>` directories under `job_dir`, ascending by id.
pub async fn checkpoint_ids(storage: &StorageRef, job_dir: &Path) -> Result<Vec<CheckpointId>, RunError> {
    if !storage.exists(job_dir).await? {
        return Ok(Vec::new());
    }
    let mut ids: Vec<CheckpointId> =
        storage.list(job_dir).await?.iter().filter_map(|n| parse_checkpoint_dir_name(n)).collect();
    ids.sort();
    Ok(ids)
}

/// The latest complete checkpoint under `job_dir` (one whose `_metadata` exists).
pub async fn latest_checkpoint(storage: &StorageRef, job_dir: &Path) -> Result<Option<PathBuf>, RunError> {
    for id in checkpoint_ids(storage, job_dir).await?.into_iter().rev() {
        let dir = job_dir.join(format!("chk-{}", id.0));
        if storage.exists(&dir.join(METADATA_FILE_NAME)).await? {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

/// The snapshot in `dir`, read again after a storage error as a user would; an error that persists, or one that
/// is not the storage's (a corrupt `_metadata`), is returned.
pub async fn load_despite_errors(storage: &StorageRef, dir: &Path) -> Result<restore::LoadedCheckpoint, RunError> {
    let mut attempts = 0;
    loop {
        match restore::load(storage, dir).await {
            Ok(loaded) => return Ok(loaded),
            Err(error) if error.is_transient() && attempts < READ_ATTEMPTS => {
                attempts += 1;
                engine::seam::runtime::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(error) => return Err(engine::cluster::JobError::Restore(error).into()),
        }
    }
}

/// Whether `path` exists, asking again after a storage error as a user would (an error is no answer).
async fn exists_despite_errors(storage: &StorageRef, path: &Path) -> Result<bool, RunError> {
    let mut attempts = 0;
    loop {
        match storage.exists(path).await {
            Ok(exists) => return Ok(exists),
            Err(_) if attempts < READ_ATTEMPTS => {
                attempts += 1;
                engine::seam::runtime::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// How often a user reads a `_metadata` again after a storage error before giving up.
const READ_ATTEMPTS: u32 = 200;

/// The newest (or, with `oldest`, the oldest) complete snapshot a user could resume from: of every `chk-<n>` under
/// every job directory of `checkpoint_root` and every snapshot directory right under `snapshot_roots` (savepoints,
/// relocated snapshots), the one with the highest (lowest) id whose `_metadata` reads. Ids increase along a job's
/// lineage, across restores, so the highest is the newest.
pub async fn pick_snapshot(
    storage: &StorageRef,
    checkpoint_root: Option<&Path>,
    snapshot_roots: &[&Path],
    oldest: bool,
) -> Result<Option<(PathBuf, CheckpointId)>, RunError> {
    let mut candidates = Vec::new();
    if let Some(checkpoint_root) = checkpoint_root
        && storage.exists(checkpoint_root).await?
    {
        for job in storage.list(checkpoint_root).await? {
            let job_dir = checkpoint_root.join(job);
            for id in checkpoint_ids(storage, &job_dir).await? {
                candidates.push(job_dir.join(format!("chk-{}", id.0)));
            }
        }
    }
    for root in snapshot_roots {
        if storage.exists(root).await? {
            for name in storage.list(root).await? {
                candidates.push(root.join(name));
            }
        }
    }
    let mut newest: Option<(PathBuf, CheckpointId)> = None;
    for dir in candidates {
        if !exists_despite_errors(storage, &dir.join(METADATA_FILE_NAME)).await? {
            continue;
        }
        // A read error says nothing about whether the snapshot is there: read again (storage faults pass), and
        // give up with the error rather than settle for an older snapshot.
        let loaded = match load_despite_errors(storage, &dir).await {
            Ok(loaded) => Some(loaded),
            // Unreadable for good: not a snapshot to resume from (the checkers report it).
            Err(RunError::Job(job)) if matches!(&*job, engine::cluster::JobError::Restore(e) if !e.is_transient()) => {
                None
            }
            Err(error) => return Err(error),
        };
        let Some(loaded) = loaded else { continue };
        let id = loaded.metadata.checkpoint_id;
        if newest.as_ref().is_none_or(|(_, picked)| if oldest { id < *picked } else { id > *picked }) {
            newest = Some((dir, id));
        }
    }
    Ok(newest)
}

/// Inspects every job directory under the checkpoint root.
pub async fn inspect_checkpoint_root(storage: &StorageRef, root: &Path) -> Result<Vec<CheckpointDirReport>, RunError> {
    let mut reports = Vec::new();
    if !storage.exists(root).await? {
        return Ok(reports);
    }
    for name in storage.list(root).await? {
        reports.push(inspect_job_dir(storage, &root.join(name)).await?);
    }
    Ok(reports)
}

/// Inspects one job's checkpoint directory.
pub async fn inspect_job_dir(storage: &StorageRef, job_dir: &Path) -> Result<CheckpointDirReport, RunError> {
    let mut retained = Vec::new();
    let mut incomplete = Vec::new();
    let mut problems = Vec::new();
    let mut self_contained = Vec::new();
    let mut dangling = Vec::new();
    let mut shared_referenced: BTreeSet<String> = BTreeSet::new();
    for id in checkpoint_ids(storage, job_dir).await? {
        let dir = job_dir.join(format!("chk-{}", id.0));
        if !storage.exists(&dir.join(METADATA_FILE_NAME)).await? {
            incomplete.push(id);
            continue;
        }
        retained.push(id);
        let loaded = match restore::load(storage, &dir).await {
            Ok(loaded) => loaded,
            Err(error) => {
                problems.push(format!("chk-{}: {error}", id.0));
                continue;
            }
        };
        self_contained.push((dir.display().to_string(), loaded.metadata.format, loaded.metadata.is_self_contained()));
        let shared_here = loaded.metadata.shared_files();
        for (_, _, file) in loaded.metadata.embedded_files().filter(|(_, _, f)| f.scope == FileScope::Shared) {
            let path = file.path(&dir);
            let present = match storage.file_len(&path).await {
                Ok(len) => len == file.size_bytes,
                Err(error) if error.is_not_found() => false,
                Err(error) => return Err(error.into()),
            };
            if !present && !dangling.contains(&format!("chk-{}: {}", id.0, file.name)) {
                dangling.push(format!("chk-{}: {}", id.0, file.name));
            }
        }
        shared_referenced.extend(shared_here.iter().cloned());
        match restore::resolve(storage, &loaded, false, &engine::faults::Faults::none()).await {
            Ok(_) => {}
            // A missing shared file is a dangling reference, reported as one.
            Err(RestoreError::MissingFile { file, .. } | RestoreError::FileSizeMismatch { file, .. })
                if file.file_name().and_then(|n| n.to_str()).is_some_and(|n| shared_here.contains(n))
                    && file.parent() == Some(shared_dir(job_dir).as_path()) => {}
            Err(error) => problems.push(format!("chk-{}: {error}", id.0)),
        }
        let mut referenced: BTreeSet<PathBuf> =
            loaded.metadata.referenced_files().iter().map(|f| loaded.file_path(f)).collect();
        referenced.extend(
            loaded
                .metadata
                .embedded_files()
                .filter(|(_, _, f)| f.scope == FileScope::Exclusive)
                .map(|(_, _, f)| f.path(&dir)),
        );
        for name in storage.list(&dir).await? {
            let path = dir.join(&name);
            if name != METADATA_FILE_NAME && !referenced.contains(&path) {
                problems.push(format!("chk-{}: orphan file `{name}`", id.0));
            }
        }
    }
    let shared = shared_dir(job_dir);
    let mut leaked = Vec::new();
    if storage.exists(&shared).await? {
        for name in storage.list(&shared).await? {
            if !shared_referenced.contains(&name) {
                leaked.push((name.clone(), shared_file_checkpoint(&name)));
            }
        }
    }
    Ok(CheckpointDirReport {
        job_dir: job_dir.to_path_buf(),
        retained,
        incomplete,
        problems,
        self_contained,
        dangling,
        leaked,
    })
}
