//! The scenario's steps against the running job: the job's submission, `[[savepoint]]` steps, and `[[restart]]`
//! steps (cancel, crash every node, or stop with a savepoint; then a new job from the newest snapshot, as a user
//! resumes with `weir run -s`), then the wait for the job's end within the healing bound.

use super::world::World;
use crate::checkers::Abandoned;
use crate::checks;
use crate::layout::{CHECKPOINT_DIR, RELOCATED_DIR, SAVEPOINT_DIR};
use crate::scenario::{RestartFrom, RestartHow, RestartSpec, Scenario};
use engine::cluster::messages::RestoreRequest;
use engine::cluster::{Cluster, JobError, JobHandle};
use engine::config::{JobConfig, StateBackendKind};
use engine::ids::{CheckpointId, JobId};
use engine::seam::runtime::{self, Instant};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The job running now, for steps that act on it.
type RunningJob = (Arc<Cluster>, JobId);

/// What the steps did, for the evidence.
pub struct Steps {
    /// Savepoints taken by `[[savepoint]]` steps.
    pub savepoints: Vec<PathBuf>,
    /// Every job of the run and the snapshot id it was restored from.
    pub lineage: BTreeMap<JobId, Option<CheckpointId>>,
    pub restores: u32,
    /// Jobs a whole-cluster crash abandoned, by job directory.
    pub abandoned: BTreeMap<PathBuf, Abandoned>,
    /// When the last job finished, in milliseconds of the run; `None` if it did not within the bound.
    pub finished_at_ms: Option<u64>,
    /// Deployments of the last job, once it finished.
    pub attempts: u32,
    pub error: Option<String>,
}

impl Steps {
    fn failed(message: String) -> Steps {
        Steps {
            savepoints: Vec::new(),
            lineage: BTreeMap::new(),
            restores: 0,
            abandoned: BTreeMap::new(),
            finished_at_ms: None,
            attempts: 0,
            error: Some(message),
        }
    }
}

/// Submits the workload's job, runs the scenario's steps (if `faults`), and waits for the job to end.
pub async fn run_job(scenario: &Scenario, world: &World, config: JobConfig, faults: bool) -> Steps {
    // Times are measured from this run's start: on tokio the runtime's clock is the process's.
    let started = runtime::now();
    let file = &scenario.file;
    let deadline = file.healing.faults_until + file.healing.finish_within;
    let current: Arc<Mutex<Option<RunningJob>>> = Arc::new(Mutex::new(None));
    let taken: Arc<Mutex<Vec<PathBuf>>> = Arc::new(Mutex::new(Vec::new()));
    if faults {
        schedule_savepoints(scenario, started, &current, &taken);
    }
    let submit = async |cluster: &Cluster, config: &JobConfig, restore: Option<RestoreRequest>| {
        let graph = scenario.workload.build(&world.env, config.clone()).map_err(|e| e.to_string())?;
        cluster.submit(graph, restore).await.map_err(|e| e.to_string())
    };
    let mut cluster = world.start_cluster();
    let mut config = config;
    let mut handle: JobHandle = match submit(&cluster, &config, None).await {
        Ok(handle) => handle,
        Err(error) => return Steps::failed(error),
    };
    *current.lock().expect("current lock") = Some((cluster.clone(), handle.job));
    let mut lineage = BTreeMap::from([(handle.job, None)]);
    // What the running job was submitted with: a lost submission is made again.
    let mut submitted: (Option<RestoreRequest>, Option<CheckpointId>) = (None, None);
    let mut restores = 0;
    let mut abandoned = BTreeMap::new();
    let restarts: &[RestartSpec] = if faults { &file.restarts } else { &[] };
    // How the run ends once the last job did: when it finished, in how many attempts, or why it failed.
    let end = |outcome: Result<engine::cluster::messages::JobOutcome, JobError>| match outcome {
        Ok(outcome) => (Some(started.elapsed().as_millis() as u64), outcome.attempts, None),
        Err(error) => (None, 0, Some(format!("the job failed: {error}"))),
    };
    for (index, restart) in restarts.iter().enumerate() {
        let now = started.elapsed();
        if restart.at > now {
            runtime::sleep(restart.at - now).await;
        }
        let job = handle.job;
        let mut savepoint = None;
        match restart.how {
            RestartHow::Cancel => {
                tracing::info!(target: "weir::trace", %job, "restart: canceling the job");
                let canceled = cluster.cancel(job).await;
                // As a user would, wait until the canceled job is gone, its cleanup (the retention policy) included.
                // A cancel that failed may still have taken effect: its answer is lost when the job manager dies
                // at the job's end, before it answers. The job's own end says which: canceled, it is restarted as
                // planned; no job manager knows it (its submission was lost), it is started anew as planned;
                // ended otherwise (it finished first, or the cancel never arrived), that is the run's end.
                let outcome = handle.wait().await;
                if let Err(error) = canceled {
                    let lost = matches!(outcome, Err(JobError::JobManagerUnreachable))
                        && matches!(cluster.status(job).await, Err(JobError::UnknownJob(_)));
                    if !lost && !matches!(outcome, Err(JobError::Canceled)) {
                        tracing::info!(target: "weir::trace", %job, %error, "restart: the job ended before the cancel");
                        let (finished_at_ms, attempts, error) = end(outcome);
                        let savepoints = taken.lock().expect("taken lock").clone();
                        return Steps { savepoints, lineage, restores, abandoned, finished_at_ms, attempts, error };
                    }
                    tracing::info!(target: "weir::trace", %job, %error, "restart: the cancel failed, but the job is gone");
                }
            }
            RestartHow::StopWithSavepoint => {
                tracing::info!(target: "weir::trace", %job, "restart: stopping the job with a savepoint");
                match cluster.trigger_savepoint(job, Some(PathBuf::from(SAVEPOINT_DIR)), true).await {
                    Ok(path) => {
                        let _ = handle.wait().await;
                        savepoint = Some(path);
                    }
                    // The savepoint failed (faults), its answer was lost with a job manager, or the job ended:
                    // cancel (if it still runs) and resume from the newest snapshot, as a user would.
                    Err(error) => {
                        tracing::info!(target: "weir::trace", %job, %error, "restart: the stop failed, canceling");
                        if cluster.cancel(job).await.is_err() {
                            tracing::info!(target: "weir::trace", %job, "restart: the job had ended already");
                        }
                        let _ = handle.wait().await;
                    }
                }
            }
            RestartHow::Crash => {
                if let Err(engine::cluster::JobError::JobEnded { .. }) = cluster.status(job).await {
                    // A job that ended is not restarted: a user would find it finished.
                    tracing::info!(target: "weir::trace", %job, "restart: the job had ended already");
                    break;
                }
                tracing::info!(target: "weir::trace", %job, "restart: every node of the job crashes");
                let _ = cluster.job_manager().kill();
                for node in cluster.task_managers() {
                    let _ = node.kill();
                    crate::injector::wipe_local_disk(&world.storage, node.name());
                }
                // The new cluster does not know the job: no one completes or discards the snapshots it had in
                // flight or was deleting, as after a Flink job manager's crash without HA.
                abandoned.insert(Path::new(CHECKPOINT_DIR).join(job.to_string()), world.recorder.abandoned(job));
                cluster = world.start_cluster();
            }
        }
        // The stop's savepoint, else the newest snapshot under the checkpoint and savepoint directories,
        // whichever job of the run wrote it (a job restarted from a checkpoint may have none of its own yet).
        // Snapshots a restart relocated are where the user put them.
        let (checkpoints, savepoints, relocated) =
            (Some(Path::new(CHECKPOINT_DIR)), Path::new(SAVEPOINT_DIR), Path::new(RELOCATED_DIR));
        let storage = &world.storage_ref;
        let (roots, oldest): (Vec<&Path>, bool) = match restart.from {
            RestartFrom::Newest => (vec![savepoints, relocated], false),
            RestartFrom::NewestCheckpoint => (vec![], false),
            RestartFrom::OldestCheckpoint => (vec![], true),
            RestartFrom::NewestSavepoint => (vec![savepoints], false),
        };
        let checkpoints = checkpoints.filter(|_| restart.from != RestartFrom::NewestSavepoint);
        let picked = checks::pick_snapshot(storage, checkpoints, &roots, oldest);
        let mut latest = match savepoint.filter(|_| restart.from == RestartFrom::Newest) {
            Some(path) => Some(path),
            None => match picked.await {
                Ok(newest) => newest.map(|(path, _)| path),
                Err(error) => return Steps::failed(error.to_string()),
            },
        };
        if restart.relocate
            && let Some(from) = latest.take()
        {
            latest = Some(match refers_outside(storage, &from).await {
                // Only a snapshot whose files are all in its own directory moves: an incremental checkpoint's
                // shared files belong to the job directory it came from, as in Flink.
                true => {
                    tracing::info!(target: "weir::trace", from = %from.display(), "restart: not relocated: the checkpoint refers to shared files");
                    from
                }
                false => {
                    let to = relocate(world, &from, restores).await;
                    // A savepoint a step took and the user moved is still the user's, where they put it.
                    for path in taken.lock().expect("taken lock").iter_mut() {
                        if let Ok(rest) = path.strip_prefix(&from) {
                            *path = to.join(rest);
                        }
                    }
                    to
                }
            });
        }
        // The restart's configuration; what it does not set stays as the job before had it (the parallelism and
        // backend earlier restarts chose, the settings the seed chose).
        let mut next = scenario.restart_configs[index].clone();
        let sets = |key: &str| restart.config.keys().any(|k| engine::config::canonical_key(k) == Some(key));
        if !sets("weir.channel.batch-size-records") {
            next.batch_size_records = config.batch_size_records;
        }
        if !sets("weir.channel.capacity-batches") {
            next.channel_capacity_batches = config.channel_capacity_batches;
        }
        if !sets("state.backend.type") {
            next.state_backend = config.state_backend;
        }
        next.parallelism = config.parallelism;
        if next.checkpoint.dir.is_none() {
            next.checkpoint.dir = config.checkpoint.dir.clone();
        }
        config = next;
        if let Some(parallelism) = restart.parallelism {
            config.parallelism = Some(parallelism);
        }
        match restart.backend.as_deref() {
            Some("jobmanager") => config.state_backend = StateBackendKind::JobManager,
            Some("filesystem") => config.state_backend = StateBackendKind::FileSystem,
            _ => {}
        }
        tracing::info!(target: "weir::trace", from = %latest.as_ref().map_or("nothing".to_string(), |p| p.display().to_string()), "restart: new job from the newest snapshot");
        restores += 1;
        let restored_from = match &latest {
            Some(path) => match crate::checks::load_despite_errors(&world.storage_ref, path).await {
                Ok(loaded) => Some(loaded.metadata.checkpoint_id),
                Err(error) => return Steps::failed(format!("cannot read the snapshot to resume from: {error}")),
            },
            None => None,
        };
        let restore = latest.map(|path| RestoreRequest { path, allow_non_restored_state: false });
        submitted = (restore.clone(), restored_from);
        handle = match submit(&cluster, &config, restore).await {
            Ok(handle) => handle,
            Err(error) => return Steps::failed(error),
        };
        lineage.insert(handle.job, restored_from);
        *current.lock().expect("current lock") = Some((cluster.clone(), handle.job));
    }
    let (finished_at_ms, attempts, error) = loop {
        let remaining = deadline.saturating_sub(started.elapsed());
        let job = handle.job;
        let outcome = tokio::select! {
            biased;
            outcome = handle.wait() => outcome,
            _ = runtime::sleep(remaining) => break (None, 0, None),
        };
        match outcome {
            Ok(outcome) => break end(Ok(outcome)),
            // The job manager died before it had taken the job in: the submission is lost, and a client submits it
            // again once a job manager answers that it does not know the job.
            Err(JobError::JobManagerUnreachable)
                if matches!(cluster.status(job).await, Err(JobError::UnknownJob(_))) =>
            {
                tracing::info!(target: "weir::trace", %job, "the submission was lost with the job manager; submitting again");
                let (restore, restored_from) = submitted.clone();
                handle = match submit(&cluster, &config, restore).await {
                    Ok(handle) => handle,
                    Err(error) => return Steps::failed(error),
                };
                lineage.insert(handle.job, restored_from);
                *current.lock().expect("current lock") = Some((cluster.clone(), handle.job));
            }
            Err(error) => break end(Err(error)),
        }
    };
    let savepoints = taken.lock().expect("taken lock").clone();
    Steps { savepoints, lineage, restores, abandoned, finished_at_ms, attempts, error }
}

/// `[[savepoint]]` steps: beside the restarts, each asks whichever job runs at its time.
fn schedule_savepoints(
    scenario: &Scenario,
    started: Instant,
    current: &Arc<Mutex<Option<RunningJob>>>,
    taken: &Arc<Mutex<Vec<PathBuf>>>,
) {
    for step in scenario.file.savepoints.clone() {
        let (current, taken) = (current.clone(), taken.clone());
        runtime::spawn(async move {
            let now = started.elapsed();
            if step.at > now {
                runtime::sleep(step.at - now).await;
            }
            let target = current.lock().expect("current lock").clone();
            if let Some((cluster, job)) = target {
                match cluster.trigger_savepoint(job, Some(PathBuf::from(SAVEPOINT_DIR)), false).await {
                    Ok(path) => taken.lock().expect("taken lock").push(path),
                    Err(error) => tracing::info!(target: "weir::trace", %error, "savepoint step failed"),
                }
            }
        });
    }
}

/// Whether the snapshot in `dir` refers to files outside it (an incremental checkpoint's `shared/`). One that
/// cannot be read is left for the restore to report.
async fn refers_outside(storage: &engine::seam::storage::StorageRef, dir: &Path) -> bool {
    engine::checkpoint::restore::load(storage, dir).await.is_ok_and(|l| !l.metadata.shared_references().is_empty())
}

/// Moves a snapshot directory to another volume, durably, as a user moving a savepoint would: copies every file
/// (fsynced, and its directory), then deletes the original. A step that fails (storage faults) is tried again
/// until it works, as a user would; a copy is complete before the original goes.
async fn relocate(world: &World, from: &Path, restores: u32) -> PathBuf {
    let storage = &world.storage_ref;
    let name = from.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let to = Path::new(RELOCATED_DIR).join(format!("{restores}-{name}"));
    let copy = async || {
        copy_tree(storage, from, &to).await?;
        storage.sync_dir(Path::new(RELOCATED_DIR)).await
    };
    until_done(&format!("copy {} to {}", from.display(), to.display()), copy).await;
    let remove = async || match storage.remove_dir_all(from).await {
        Ok(()) | Err(engine::seam::storage::StorageError::NotFound { .. }) => {
            storage.sync_dir(from.parent().unwrap_or(Path::new("/"))).await
        }
        Err(error) => Err(error),
    };
    until_done(&format!("delete {}", from.display()), remove).await;
    tracing::info!(target: "weir::trace", from = %from.display(), to = %to.display(), "restart: relocated");
    to
}

/// Runs `step` until it succeeds, pausing between tries.
async fn until_done<F, Fut>(what: &str, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), engine::seam::storage::StorageError>>,
{
    while let Err(error) = step().await {
        tracing::info!(target: "weir::trace", %error, "restart: cannot {what} yet; trying again");
        runtime::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Copies the tree at `from` to `to`, every file and directory durable.
async fn copy_tree(
    storage: &engine::seam::storage::StorageRef,
    from: &Path,
    to: &Path,
) -> Result<(), engine::seam::storage::StorageError> {
    let mut pending = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((source, target)) = pending.pop() {
        storage.create_dir_all(&target).await?;
        for name in storage.list(&source).await? {
            let (inner_source, inner_target) = (source.join(&name), target.join(&name));
            if storage.is_dir(&inner_source).await? {
                pending.push((inner_source, inner_target));
                continue;
            }
            let bytes = storage.read(&inner_source).await?;
            let mut file = storage.create(&inner_target).await?;
            file.write_all(&bytes).await?;
            file.sync().await?;
        }
        storage.sync_dir(&target).await?;
    }
    Ok(())
}
