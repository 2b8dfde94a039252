//! Executing the coordinator's actions: preparing a snapshot's directory and sending its trigger, writing
//! `_metadata`, aborting, notifying, discarding, finishing, failing the job. The coordinator decided; this only
//! does the IO, and reports outcomes back to it.

use super::{Discarding, InFlightWrite, JobManager, JobRun};
use crate::api::graph::JobGraph;
use crate::checkpoint::coordinator::{AbortReason, Action, Failure, TriggerKind};
use crate::checkpoint::metadata::{
    self, CheckpointMetadata, OperatorState, SnapshotFormat, SnapshotKind, SubtaskState,
};
use crate::checkpoint::restore::LoadedCheckpoint;
use crate::checkpoint::storage;
use crate::cluster::JobError;
use crate::cluster::messages::{CheckpointStats, JobManagerMessage};
use crate::config::StateBackendKind;
use crate::element::CheckpointBarrier;
use crate::faults::{CheckpointPhase, FaultPoint};
use crate::ids::{Attempt, CheckpointId, JobId, SubtaskIndex, TaskRef};
use crate::seam::runtime;
use crate::task::control::{AckedState, TaskCommand};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

/// The barrier of snapshot `id`.
pub(super) fn barrier(id: CheckpointId, kind: &TriggerKind, triggered_at_ms: u64) -> CheckpointBarrier {
    CheckpointBarrier { checkpoint: id, triggered_at_ms, kind: kind.class() }
}

impl JobManager {
    /// Carries out the coordinator's actions, in order. Actions that the execution itself causes (an abort when a
    /// directory cannot be made) join the queue; a failover the actions ask for happens after the whole batch, so
    /// that no abort queued behind it is dropped.
    pub(super) async fn execute(&mut self, job: JobId, actions: Vec<Action<AckedState>>) {
        let mut queue: VecDeque<Action<AckedState>> = actions.into();
        let mut failure: Option<JobError> = None;
        while let Some(action) = queue.pop_front() {
            if !self.jobs.contains_key(&job) {
                return;
            }
            // Actions the execution itself causes are decided by the coordinator like any other: they are stored
            // before they are carried out.
            let caused = match action {
                Action::Trigger { id, kind } => self.trigger(job, id, kind).await,
                Action::Complete { id, kind, states } => self.complete(job, id, kind, states),
                Action::Abort { id, kind, reason } => {
                    self.abort(job, id, kind, reason);
                    Vec::new()
                }
                Action::Notify { id, kind } => {
                    self.notify(job, id, kind);
                    Vec::new()
                }
                Action::Discard { id } => {
                    self.discard(job, id);
                    Vec::new()
                }
                Action::DiscardShared { files, after } => {
                    self.discard_shared(job, files, after);
                    Vec::new()
                }
                Action::Finish { last, task } => {
                    self.finish(job, last, task);
                    Vec::new()
                }
                Action::FailJob { consecutive_failures, cause, fatal } => {
                    let cause = cause.to_string();
                    failure = Some(if fatal {
                        JobError::FatalCheckpointFailure { cause }
                    } else {
                        JobError::TooManyCheckpointFailures { consecutive: consecutive_failures, cause }
                    });
                    Vec::new()
                }
            };
            if !caused.is_empty() {
                self.persist(job);
                queue.extend(caused);
            }
        }
        self.persist(job);
        if let Some(failure) = failure {
            // Boxed: failing over executes the coordinator's abort actions in turn.
            Box::pin(self.fail_over(job, failure)).await;
        }
    }

    /// Where snapshot `id`'s files go: the savepoint's directory, or `chk-<n>` under the job's checkpoint
    /// directory (`None` for checkpoints kept in memory).
    pub(super) fn snapshot_dir(&self, run: &JobRun, id: CheckpointId, kind: &TriggerKind) -> Option<PathBuf> {
        match kind.savepoint_dir() {
            Some(dir) => Some(dir.clone()),
            None => run.writer.as_ref().and_then(|w| w.job_dir.as_ref()).map(|dir| storage::checkpoint_dir(dir, id)),
        }
    }

    /// Prepares snapshot `id`'s directory and sends its trigger; the abort if the directory cannot be made.
    async fn trigger(&mut self, job: JobId, id: CheckpointId, kind: TriggerKind) -> Vec<Action<AckedState>> {
        let now_ms = self.now_ms();
        let run = self.jobs.get(&job).expect("checked by execute");
        let dir = self.snapshot_dir(run, id, &kind);
        tracing::info!(target: "weir::trace", %job, checkpoint = %id, class = ?kind.class(), "checkpoint triggered");
        if let Some(dir) = &dir {
            // The new directory's entry is made durable with its parent's fsync.
            let parent = dir.parent().map(PathBuf::from).unwrap_or_default();
            let created = match self.storage.create_dir_all(dir).await {
                Ok(()) => self.storage.sync_dir(&parent).await,
                Err(error) => Err(error),
            };
            if let Err(error) = created {
                let reason = AbortReason::TriggerFailed { reason: error.to_string() };
                let Some(run) = self.jobs.get_mut(&job) else { return Vec::new() };
                return run.coordinator().abort(now_ms, id, reason, Failure::Counted);
            }
        }
        let run = self.jobs.get_mut(&job).expect("checked by execute");
        if let (Some(dir), Some(writer)) = (kind.savepoint_dir(), &run.writer) {
            writer.savepoints.lock().expect("savepoints lock").insert(id, dir.clone());
        }
        let _ =
            self.faults.at(FaultPoint::Snapshot { job, id, class: kind.class(), phase: CheckpointPhase::Triggered });
        let run = self.jobs.get(&job).expect("checked by execute");
        let barrier =
            barrier(id, &kind, run.coordinator.as_ref().and_then(|c| c.triggered_at_ms(id)).unwrap_or(now_ms));
        for (task, deployed) in &run.tasks {
            if (deployed.is_source && !deployed.finished) || deployed.end_of_data {
                super::rpc::command(&self.faults, *task, deployed, TaskCommand::TriggerCheckpoint(barrier));
            }
        }
        Vec::new()
    }

    /// Every task acked snapshot `id`: writes its `_metadata` in a task of its own (or, for checkpoints kept in
    /// memory, completes it at once: the actions that follow).
    fn complete(
        &mut self,
        job: JobId,
        id: CheckpointId,
        kind: TriggerKind,
        states: BTreeMap<TaskRef, AckedState>,
    ) -> Vec<Action<AckedState>> {
        tracing::info!(target: "weir::trace", %job, checkpoint = %id, "checkpoint acked by every task");
        let _ = self.faults.at(FaultPoint::Snapshot { job, id, class: kind.class(), phase: CheckpointPhase::Acked });
        let now_ms = self.now_ms();
        let run = self.jobs.get(&job).expect("checked by execute");
        let mut metadata = build_metadata(&run.graph, job, id, states, runtime::wall_clock_ms());
        if kind.is_savepoint() {
            metadata.kind = SnapshotKind::Savepoint;
            metadata.format = SnapshotFormat::Canonical;
        }
        let triggered_at_ms = run.coordinator.as_ref().and_then(|c| c.triggered_at_ms(id)).unwrap_or(now_ms);
        let Some(dir) = self.snapshot_dir(run, id, &kind) else {
            // A checkpoint kept in the job manager's memory only: complete, and recorded where a job manager
            // taking over finds it.
            let loaded = Arc::new(LoadedCheckpoint {
                metadata_path: PathBuf::from("<memory>"),
                dir: PathBuf::from("."),
                metadata,
            });
            self.directory.store_in_memory(job, id, loaded.clone());
            let run = self.jobs.get_mut(&job).expect("checked by execute");
            let size_bytes = loaded.metadata.state_size_bytes();
            run.checkpoint_stats.push(CheckpointStats { id: id.0, duration_ms: now_ms - triggered_at_ms, size_bytes });
            run.loaded.insert(id, loaded);
            return run.coordinator().completion_succeeded(now_ms, id);
        };
        let loaded = Arc::new(LoadedCheckpoint {
            metadata_path: dir.join(metadata::METADATA_FILE_NAME),
            dir: dir.clone(),
            metadata: metadata.clone(),
        });
        let (storage, mailbox, faults) = (self.storage.clone(), self.mailbox.clone(), self.faults.clone());
        let attempt: Attempt = run.attempt;
        let target = dir.clone();
        let class = kind.class();
        let handle = runtime::spawn(async move {
            // The new shared files first: `_metadata` may only refer to files that are where it says.
            let result = match storage::register_shared_files(&storage, &target, &metadata).await {
                Ok(()) => {
                    faults.checkpoint_phase(job, id, class, CheckpointPhase::SharedRegistered).await;
                    storage::write_metadata(&storage, &target, &metadata, class, &faults).await
                }
                Err(error) => Err(error),
            };
            let result = result.map_err(|e| e.to_string());
            let _ = mailbox.send(JobManagerMessage::MetadataWritten { job, attempt, checkpoint: id, result }).await;
        });
        let run = self.jobs.get_mut(&job).expect("checked by execute");
        run.writes.insert(id, InFlightWrite { dir, loaded, triggered_at_ms, handle, discard_after: Vec::new() });
        Vec::new()
    }

    fn abort(&mut self, job: JobId, id: CheckpointId, kind: TriggerKind, reason: AbortReason) {
        tracing::info!(target: "weir::trace", %job, checkpoint = %id, %reason, "checkpoint aborted");
        let phase = if reason == AbortReason::Expired { CheckpointPhase::Expired } else { CheckpointPhase::Aborted };
        let _ = self.faults.at(FaultPoint::Snapshot { job, id, class: kind.class(), phase });
        let run = self.jobs.get_mut(&job).expect("checked by execute");
        if let Some(writer) = &run.writer {
            writer.savepoints.lock().expect("savepoints lock").remove(&id);
        }
        if let Some(reply) = run.savepoint_replies.remove(&id) {
            let _ = reply.send(Err(JobError::SavepointFailed { id: id.0, reason: reason.to_string() }));
        }
        for (task, deployed) in &run.tasks {
            super::rpc::command(&self.faults, *task, deployed, TaskCommand::NotifyAborted(id));
        }
        // Its directory goes now, even while its `_metadata` write is in flight: the write never creates a
        // directory, so once this one is gone it can only fail.
        let run = self.jobs.get(&job).expect("checked by execute");
        if let Some(dir) = self.snapshot_dir(run, id, &kind) {
            let discard = self.discard_dir(job, id, dir);
            self.jobs.get_mut(&job).expect("checked by execute").discards.push(discard);
        }
    }

    fn notify(&mut self, job: JobId, id: CheckpointId, kind: TriggerKind) {
        tracing::info!(target: "weir::trace", %job, checkpoint = %id, class = ?kind.class(), "checkpoint complete");
        let faults = self.faults.clone();
        let class = kind.class();
        let _ = faults.at(FaultPoint::Snapshot { job, id, class, phase: CheckpointPhase::Completed });
        let run = self.jobs.get_mut(&job).expect("checked by execute");
        run.completed_ids.push(id);
        if kind.is_savepoint() {
            tracing::info!(target: "weir::trace", %job, savepoint = %id, "savepoint complete");
            if let Some(writer) = &run.writer {
                writer.savepoints.lock().expect("savepoints lock").remove(&id);
            }
            if let (Some(reply), Some(dir)) = (run.savepoint_replies.remove(&id), kind.savepoint_dir()) {
                let _ = reply.send(Ok(dir.clone()));
            }
        }
        for (task, deployed) in &run.tasks {
            super::rpc::command(&faults, *task, deployed, TaskCommand::NotifyComplete(id));
        }
        let _ = faults.at(FaultPoint::Snapshot { job, id, class, phase: CheckpointPhase::Notified });
    }

    /// Retention: checkpoint `id` fell out of the retained set; its directory goes.
    fn discard(&mut self, job: JobId, id: CheckpointId) {
        let run = self.jobs.get_mut(&job).expect("checked by execute");
        run.loaded.remove(&id);
        let run = self.jobs.get(&job).expect("checked by execute");
        if let Some(dir) = self.snapshot_dir(run, id, &TriggerKind::Periodic) {
            tracing::info!(target: "weir::trace", %job, checkpoint = %id, "checkpoint discarded");
            let discard = self.discard_dir(job, id, dir);
            self.jobs.get_mut(&job).expect("checked by execute").discards.push(discard);
        }
    }

    /// Deletes shared files nothing refers to any more; those of a snapshot whose write is still running once it ends.
    fn discard_shared(&mut self, job: JobId, files: Vec<String>, after: Option<CheckpointId>) {
        let run = self.jobs.get_mut(&job).expect("checked by execute");
        if let Some(write) = after.and_then(|id| run.writes.get_mut(&id)) {
            write.discard_after.extend(files);
            return;
        }
        self.delete_shared(job, files);
    }

    /// Deletes `files` from the job's `shared/` directory in a task of its own, until they are durably gone.
    pub(super) fn delete_shared(&mut self, job: JobId, files: Vec<String>) {
        let run = self.jobs.get_mut(&job).expect("checked by execute");
        let Some(job_dir) = run.writer.as_ref().and_then(|w| w.job_dir.clone()) else { return };
        tracing::info!(target: "weir::trace", %job, files = files.len(), "shared files discarded");
        let storage = self.storage.clone();
        let shared = storage::shared_dir(&job_dir);
        let discard =
            runtime::spawn(async move { super::recovery::remove_shared_until_done(&storage, &shared, &files).await });
        run.discards.push(Discarding { newest: None, handle: discard });
    }

    fn finish(&mut self, job: JobId, last: CheckpointId, task: Option<TaskRef>) {
        let faults = self.faults.clone();
        let run = self.jobs.get(&job).expect("checked by execute");
        match task {
            None => {
                tracing::info!(target: "weir::trace", %job, checkpoint = %last, "job finishing");
                let class = run
                    .coordinator
                    .as_ref()
                    .and_then(|c| c.stopped_at())
                    .map_or(crate::element::SnapshotClass::Final, |_| crate::element::SnapshotClass::Stop);
                let _ = faults.at(FaultPoint::Snapshot { job, id: last, class, phase: CheckpointPhase::Finishing });
                for (task, deployed) in &run.tasks {
                    super::rpc::command(&faults, *task, deployed, TaskCommand::Finish { last_completed: Some(last) });
                }
            }
            // The task repeats its end of data: it missed `Finish`.
            Some(task) => {
                if let Some(deployed) = run.tasks.get(&task) {
                    super::rpc::command(&faults, task, deployed, TaskCommand::Finish { last_completed: Some(last) });
                }
            }
        }
    }

    /// The asynchronous `_metadata` write of snapshot `id` ended.
    pub(super) async fn on_metadata_written(
        &mut self,
        job: JobId,
        _attempt: Attempt,
        id: CheckpointId,
        result: Result<(), String>,
    ) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else { return };
        let Some(write) = run.writes.remove(&id) else { return };
        if !write.discard_after.is_empty() {
            // Aborted while it was being written: what the write moved into `shared/` goes now.
            self.delete_shared(job, write.discard_after.clone());
        }
        let Some(run) = self.jobs.get_mut(&job) else { return };
        let Some(coordinator) = run.coordinator.as_mut() else { return };
        let still_pending = coordinator.pending().contains(&id);
        if !still_pending {
            // Aborted while it was being written (subsumed, or the job restarted): its directory was deleted with the
            // abort, so the write left nothing behind.
            return;
        }
        let actions = match result {
            Ok(()) => {
                let size_bytes = write.loaded.metadata.state_size_bytes();
                let duration_ms = now_ms.saturating_sub(write.triggered_at_ms);
                run.checkpoint_stats.push(CheckpointStats { id: id.0, duration_ms, size_bytes });
                run.loaded.insert(id, write.loaded);
                coordinator.completion_succeeded(now_ms, id)
            }
            Err(reason) => {
                let dir = write.dir;
                let actions = coordinator.completion_failed(now_ms, id, reason);
                let discard = self.discard_dir(job, id, dir);
                self.jobs.get_mut(&job).expect("present").discards.push(discard);
                actions
            }
        };
        self.decided(job, actions).await;
        self.prune_loaded(job);
        self.schedule_wake(job);
    }

    /// Drops loaded metadata of snapshots the coordinator no longer keeps.
    fn prune_loaded(&mut self, job: JobId) {
        let Some(run) = self.jobs.get_mut(&job) else { return };
        let Some(coordinator) = run.coordinator.as_ref() else { return };
        let mut kept = coordinator.retained();
        kept.extend(coordinator.durable().latest_savepoint.map(|(id, _)| id));
        run.loaded.retain(|id, _| kept.contains(id));
    }
}

/// The `_metadata` of a snapshot from its acknowledgements: every operator that snapshotted anything, with one
/// entry per subtask.
fn build_metadata(
    graph: &JobGraph,
    job: JobId,
    id: CheckpointId,
    mut states: BTreeMap<TaskRef, AckedState>,
    timestamp_ms: u64,
) -> CheckpointMetadata {
    let mut operators = Vec::new();
    for vertex in &graph.vertices {
        for uid in &vertex.operators {
            let subtasks: Vec<Option<SubtaskState>> = (0..vertex.parallelism)
                .map(|i| {
                    states.get_mut(&TaskRef { vertex: vertex.id, subtask: SubtaskIndex(i) }).and_then(|s| s.remove(uid))
                })
                .collect();
            if subtasks.iter().all(Option::is_none) {
                continue;
            }
            operators.push(OperatorState {
                uid: uid.clone(),
                parallelism: vertex.parallelism,
                max_parallelism: graph.max_parallelism,
                subtasks: subtasks.into_iter().map(Option::unwrap_or_default).collect(),
            });
        }
    }
    operators.sort_by(|a, b| a.uid.cmp(&b.uid));
    let format = match graph.config.state_backend {
        StateBackendKind::JobManager => SnapshotFormat::JobManager,
        StateBackendKind::FileSystem => SnapshotFormat::FileSystem,
        StateBackendKind::Embedded => SnapshotFormat::Embedded,
    };
    CheckpointMetadata {
        checkpoint_id: id,
        job_id: job,
        job_name: graph.name.clone(),
        kind: SnapshotKind::Checkpoint,
        format,
        timestamp_ms,
        operators,
    }
}
