//! The job manager: accepts jobs, deploys their subtasks into task manager slots, executes their checkpoint
//! coordinators' decisions, restarts them from the newest completed snapshot when a subtask fails, takes them over
//! after a job manager crash, and finishes them once everything is committed.
//!
//! It is a thin IO shell around the coordinator, the single source of truth about snapshots: what is pending,
//! acked, completed, retained, stopping or finishing lives there, never in a copy here. What this module keeps is
//! what the coordinator cannot: deployments (where each subtask runs, its command channel), IO in flight (metadata
//! writes, deletions), the requesters waiting for answers, and the loaded `_metadata` of completed snapshots.
//! After every coordinator call it stores the coordinator's durable view in the high-availability directory,
//! before it executes the call's actions, so that a job manager taking over never reuses an id and never forgets
//! a completed savepoint or stop.
//!
//! - `mod.rs`: the message loop and the job's life (submit, task reports, task ends, failover, termination).
//! - `deploy.rs`: placement of subtasks on task managers and deployment.
//! - `actions.rs`: executing the coordinator's actions.
//! - `savepoints.rs`: savepoint and stop requests.
//! - `recovery.rs`: what to restore from, taking a job over, cleaning up what a dead job manager left.
//! - `rpc.rs`: RPCs between the job manager and subtasks, through the fault hook.
//!
//! Storage IO that may be slow (a `_metadata` write, deleting a discarded checkpoint) runs in tasks of its own, so
//! that a stalled storage never stops the job manager from expiring checkpoints.

mod actions;
mod deploy;
mod recovery;
mod rpc;
mod savepoints;

pub use deploy::host_for_slot;

use super::messages::{CheckpointStats, JobManagerMessage, JobOutcome, JobStatus, RestoreRequest, TaskManagerMessage};
use super::{Cleanup, Directory, JobEnd};
use crate::api::graph::JobGraph;
use crate::checkpoint::coordinator::{Action, Coordinator, CoordinatorSettings, Durable};
use crate::checkpoint::restore::LoadedCheckpoint;
use crate::checkpoint::storage::CheckpointWriter;
use crate::cluster::JobError;
use crate::config::{ExternalizedRetention, RestartStrategy};
use crate::error::TaskError;
use crate::faults::{CheckpointPhase, Fate, FaultPoint, Faults, JobEvent};
use crate::ids::{Attempt, CheckpointId, JobId, SubtaskIndex, TaskRef};
use crate::seam::runtime::{self, Instant, JoinHandle};
use crate::seam::storage::StorageRef;
use crate::task::control::{AckedState, TaskCommand, TaskReport};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;

const MAILBOX_CAPACITY_MESSAGES: usize = 4096;
/// How long a submitted job waits for enough task manager slots.
const SLOT_WAIT_MS: u64 = 30_000;
/// How long a job whose takeover or restore failed for a passing reason waits before the next try.
const RECOVERY_RETRY_MS: u64 = 200;

struct RegisteredTaskManager {
    slots: u32,
    mailbox: Sender<TaskManagerMessage>,
}

/// One deployed subtask, as the job manager sees it.
struct DeployedTask {
    host: String,
    is_source: bool,
    commands: Sender<TaskCommand>,
    end_of_data: bool,
    finished: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// The job's restore source could not be read for a passing reason (a storage error): try again then.
    Recovering {
        retry_at_ms: u64,
    },
    WaitingForSlots {
        since_ms: u64,
    },
    Running,
    Restarting {
        at_ms: u64,
    },
}

/// A `_metadata` write in progress.
struct InFlightWrite {
    /// The snapshot's directory (`chk-<n>` or the savepoint's).
    dir: PathBuf,
    loaded: Arc<LoadedCheckpoint>,
    triggered_at_ms: u64,
    /// The task moving the snapshot's new shared files into `shared/` and writing its `_metadata`.
    handle: JoinHandle<()>,
    /// Shared files to delete once the write has ended (the snapshot was aborted meanwhile, and the write may
    /// still move some of them into `shared/`).
    discard_after: Vec<String>,
}

/// A deletion in progress, in a task of its own.
struct Discarding {
    /// The newest snapshot whose directory it may delete (`None`: shared files only). Until it is done, that
    /// snapshot's `_metadata` may still be there for a user to resume from, so no deployment may restore from an
    /// older snapshot and abort its transactions.
    newest: Option<CheckpointId>,
    handle: JoinHandle<()>,
}

/// A job from submission to its end.
struct JobRun {
    job: JobId,
    graph: Arc<JobGraph>,
    attempt: Attempt,
    phase: Phase,
    tasks: BTreeMap<TaskRef, DeployedTask>,
    /// Decides everything about the job's snapshots; `None` when the job does not checkpoint.
    coordinator: Option<Coordinator<AckedState>>,
    writer: Option<Arc<CheckpointWriter>>,
    writes: BTreeMap<CheckpointId, InFlightWrite>,
    /// The `_metadata` of completed snapshots the coordinator keeps (retained checkpoints, the newest savepoint), as
    /// written or loaded; one the coordinator no longer keeps is dropped.
    loaded: BTreeMap<CheckpointId, Arc<LoadedCheckpoint>>,
    /// The checkpoint or savepoint the job was started from (`-s`), until one of its own completes.
    initial_restore: Option<Arc<LoadedCheckpoint>>,
    allow_non_restored_state: bool,
    /// Requesters waiting for their savepoint, by id.
    savepoint_replies: BTreeMap<CheckpointId, oneshot::Sender<Result<PathBuf, JobError>>>,
    /// Deletions of discarded snapshots and shared files in progress; the job's end waits for them, and a
    /// deployment waits for those of snapshots newer than the one it restores from.
    discards: Vec<Discarding>,
    restarts: u32,
    /// Every snapshot completed over the job's life, ascending, and how each went.
    completed_ids: Vec<CheckpointId>,
    checkpoint_stats: Vec<CheckpointStats>,
    started_at: Option<Instant>,
    wake_at_ms: Option<u64>,
}

impl JobRun {
    fn coordinator(&mut self) -> &mut Coordinator<AckedState> {
        self.coordinator.as_mut().expect("a job with snapshots checkpoints")
    }
}

struct JobManager {
    directory: Arc<Directory>,
    /// This job manager's fault points (node `jm`).
    faults: Faults,
    storage: StorageRef,
    mailbox: Sender<JobManagerMessage>,
    epoch: Instant,
    task_managers: BTreeMap<String, RegisteredTaskManager>,
    jobs: BTreeMap<JobId, JobRun>,
}

/// The job manager's main loop; runs until its node dies.
pub async fn run(directory: Arc<Directory>, storage: StorageRef) {
    let (mailbox, mut messages) = tokio::sync::mpsc::channel(MAILBOX_CAPACITY_MESSAGES);
    let leader_epoch = directory.set_job_manager(mailbox.clone());
    let recovered = directory.job_ids();
    let faults = Faults::on("jm", directory.hook.clone());
    let mut job_manager = JobManager {
        directory,
        faults,
        storage,
        mailbox,
        epoch: runtime::now(),
        task_managers: BTreeMap::new(),
        jobs: BTreeMap::new(),
    };
    if !recovered.is_empty() {
        tracing::info!(target: "weir::trace", leader_epoch, jobs = recovered.len(), "job manager taking jobs over");
    }
    // Ended jobs first: a job whose cleanup a dead job manager left unfinished is finished, never run again.
    job_manager.finish_cleanups();
    for job in recovered {
        job_manager.take_over(job).await;
    }
    while let Some(message) = messages.recv().await {
        job_manager.handle(message).await;
        if job_manager.faults.crashed() {
            // The node was killed at a fault point: it handles nothing more.
            std::future::pending::<()>().await;
        }
    }
}

impl JobManager {
    fn now_ms(&self) -> u64 {
        runtime::millis_since(self.epoch)
    }

    async fn handle(&mut self, message: JobManagerMessage) {
        match message {
            JobManagerMessage::RegisterTaskManager { name, slots, mailbox } => {
                self.on_task_manager(name, slots, mailbox).await
            }
            JobManagerMessage::SubmitJob { job, graph, restore, reply } => {
                self.submit(job, graph, restore, reply).await
            }
            JobManagerMessage::CancelJob { job, reply } => {
                let result = match self.jobs.contains_key(&job) {
                    true => {
                        self.job_event(job, JobEvent::Canceled, None).await;
                        self.terminate(job, JobEnd::Canceled, Err(JobError::Canceled)).await;
                        Ok(())
                    }
                    false => Err(self.unknown(job)),
                };
                let _ = reply.send(result);
            }
            JobManagerMessage::TriggerSavepoint { job, target_dir, stop, reply } => {
                self.trigger_savepoint(job, target_dir, stop, reply).await;
            }
            JobManagerMessage::Status { job, reply } => {
                let status = self.jobs.get(&job).map(status_of);
                let _ = reply.send(status.ok_or_else(|| self.unknown(job)));
            }
            JobManagerMessage::TaskReport { job, attempt, task, report } => {
                if self.jobs.get(&job).is_some_and(|run| run.attempt == attempt && run.phase == Phase::Running) {
                    self.on_report(job, task, report).await;
                }
            }
            JobManagerMessage::TaskFinished { job, attempt, vertex, subtask, result } => {
                if self.jobs.get(&job).is_some_and(|run| run.attempt == attempt && run.phase == Phase::Running) {
                    self.on_task_finished(job, TaskRef { vertex, subtask }, result).await;
                }
            }
            JobManagerMessage::Wake { job } => self.on_wake(job).await,
            JobManagerMessage::MetadataWritten { job, attempt, checkpoint, result } => {
                self.on_metadata_written(job, attempt, checkpoint, result).await;
            }
        }
    }

    /// The error for a request about a job this job manager does not run: ended, or never known.
    fn unknown(&self, job: JobId) -> JobError {
        match self.directory.ended(job) {
            Some(JobEnd::Finished) => JobError::JobEnded { job, how: "finished".into() },
            Some(JobEnd::Canceled) => JobError::JobEnded { job, how: "was canceled".into() },
            Some(JobEnd::Failed) => JobError::JobEnded { job, how: "failed".into() },
            None => JobError::UnknownJob(job),
        }
    }

    async fn on_task_manager(&mut self, name: String, slots: u32, mailbox: Sender<TaskManagerMessage>) {
        tracing::info!(target: "weir::trace", task_manager = %name, slots, "task manager registered");
        let again = self.task_managers.insert(name.clone(), RegisteredTaskManager { slots, mailbox }).is_some();
        if again {
            // A task manager that registers again lost its tasks: fail over the jobs it hosted rather than wait
            // for their checkpoints to time out.
            let affected: Vec<JobId> = self
                .jobs
                .values()
                .filter(|run| run.phase == Phase::Running && run.tasks.values().any(|t| t.host == name))
                .map(|run| run.job)
                .collect();
            for job in affected {
                self.fail_over(job, JobError::Setup(format!("task manager `{name}` restarted"))).await;
            }
        }
        let waiting: Vec<JobId> = self
            .jobs
            .values()
            .filter(|run| matches!(run.phase, Phase::WaitingForSlots { .. }))
            .map(|run| run.job)
            .collect();
        for job in waiting {
            self.try_deploy(job).await;
        }
    }

    async fn submit(
        &mut self,
        job: JobId,
        graph: Arc<JobGraph>,
        restore: Option<RestoreRequest>,
        reply: oneshot::Sender<Result<JobOutcome, JobError>>,
    ) {
        tracing::info!(target: "weir::trace", %job, name = %graph.name, "job submitted");
        let (writer, initial_restore, allow) = match self.prepare(job, &graph, restore.clone()).await {
            Ok(prepared) => prepared,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let stored = super::StoredJob {
            graph: graph.clone(),
            restore,
            reply: Some(reply),
            next_attempt: 0,
            snapshots: None,
            in_memory: BTreeMap::new(),
        };
        self.directory.store_job(job, stored);
        let first_id =
            initial_restore.as_ref().map_or(CheckpointId(1), |c| CheckpointId(c.metadata.checkpoint_id.0 + 1));
        let run = self.new_run(job, graph, Attempt(0), writer, initial_restore, allow, Durable::fresh(first_id));
        self.jobs.insert(job, run);
        self.persist(job);
        self.try_deploy(job).await;
    }

    #[allow(clippy::too_many_arguments)]
    fn new_run(
        &self,
        job: JobId,
        graph: Arc<JobGraph>,
        attempt: Attempt,
        writer: Option<Arc<CheckpointWriter>>,
        initial_restore: Option<Arc<LoadedCheckpoint>>,
        allow_non_restored_state: bool,
        durable: Durable,
    ) -> JobRun {
        // The coordinator lives as long as the job: ids keep increasing across restarts.
        let coordinator = writer.as_ref().map(|_| {
            let tasks: BTreeSet<TaskRef> = graph
                .vertices
                .iter()
                .flat_map(|v| (0..v.parallelism).map(move |i| TaskRef { vertex: v.id, subtask: SubtaskIndex(i) }))
                .collect();
            Coordinator::new(coordinator_settings(&graph), tasks, durable, self.now_ms())
        });
        JobRun {
            job,
            graph,
            attempt,
            phase: Phase::WaitingForSlots { since_ms: self.now_ms() },
            tasks: BTreeMap::new(),
            coordinator,
            writer,
            writes: BTreeMap::new(),
            loaded: BTreeMap::new(),
            initial_restore,
            allow_non_restored_state,
            savepoint_replies: BTreeMap::new(),
            discards: Vec::new(),
            restarts: 0,
            completed_ids: Vec::new(),
            checkpoint_stats: Vec::new(),
            started_at: None,
            wake_at_ms: None,
        }
    }

    /// Stores what the job's coordinator made durable in the high-availability directory. Called after every
    /// coordinator call, before its actions are executed.
    fn persist(&self, job: JobId) {
        if let Some(coordinator) = self.jobs.get(&job).and_then(|run| run.coordinator.as_ref()) {
            self.directory.store_snapshots(job, coordinator.durable());
        }
    }

    /// Job `job` went through `event`: its fault point, where this job manager may die.
    pub(super) async fn job_event(&self, job: JobId, event: JobEvent, restored: Option<(JobId, CheckpointId)>) {
        if self.faults.at(FaultPoint::Job { job, event, restored }) == Fate::Crash {
            std::future::pending::<()>().await;
        }
    }

    /// Persists the coordinator's durable view, then executes `actions`.
    async fn decided(&mut self, job: JobId, actions: Vec<Action<AckedState>>) {
        self.persist(job);
        self.execute(job, actions).await;
    }

    async fn on_report(&mut self, job: JobId, task: TaskRef, report: TaskReport) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else { return };
        let Some(coordinator) = run.coordinator.as_mut() else { return };
        let actions = match report {
            TaskReport::Ack { checkpoint, state } => coordinator.ack(now_ms, checkpoint, task, state),
            TaskReport::Decline { checkpoint, reason, failure } => {
                tracing::warn!(%job, %checkpoint, vertex = %task.vertex, subtask = task.subtask.0, %reason, "checkpoint declined");
                coordinator.decline(now_ms, checkpoint, task, reason, failure)
            }
            TaskReport::EndOfData => {
                if let Some(deployed) = run.tasks.get_mut(&task) {
                    deployed.end_of_data = true;
                }
                // Snapshots whose barrier can no longer reach this task: it snapshots its final state for them
                // directly (a task ignores ids it has snapshotted already).
                let unacked = coordinator.unacked_by(task);
                if let Some(deployed) = run.tasks.get(&task) {
                    for pending in unacked {
                        let barrier = actions::barrier(pending.id, &pending.kind, pending.triggered_at_ms);
                        rpc::command(&self.faults, task, deployed, TaskCommand::TriggerCheckpoint(barrier));
                    }
                }
                run.coordinator().end_of_data(now_ms, task)
            }
        };
        self.decided(job, actions).await;
    }

    async fn on_task_finished(&mut self, job: JobId, task: TaskRef, result: Result<(), TaskError>) {
        let Some(run) = self.jobs.get_mut(&job) else { return };
        // After `Finish`, subtasks end in any order, and those still reading see their finished peers' channels
        // close: that is the job ending, not failing.
        let finishing = run.coordinator.as_ref().is_some_and(|c| c.finished_with().is_some());
        let result = if finishing { Ok(()) } else { result };
        match result {
            Ok(()) => {
                if let Some(deployed) = run.tasks.get_mut(&task) {
                    deployed.finished = true;
                }
                if run.tasks.values().all(|t| t.finished) {
                    let outcome = JobOutcome {
                        job,
                        attempts: run.attempt.0 + 1,
                        duration: run.started_at.map(|at| at.elapsed()).unwrap_or_default(),
                        completed: run.completed_ids.clone(),
                        checkpoint_stats: run.checkpoint_stats.clone(),
                    };
                    tracing::info!(%job, duration = ?outcome.duration, checkpoints = outcome.completed.len(), "job finished");
                    self.job_event(job, JobEvent::Finished, None).await;
                    self.terminate(job, JobEnd::Finished, Ok(outcome)).await;
                }
            }
            Err(error) => {
                let vertex = run.graph.vertex(task.vertex).name.clone();
                let failure = JobError::TaskFailed { vertex, subtask: task.subtask, error };
                self.fail_over(job, failure).await;
            }
        }
    }

    /// A subtask failed or too many checkpoints did: restart from the newest completed snapshot if the restart
    /// strategy allows and the failure can pass, else fail the job.
    async fn fail_over(&mut self, job: JobId, failure: JobError) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else { return };
        tracing::warn!(%job, attempt = run.attempt.0, %failure, "job failure");
        if failure.is_deterministic() {
            // It would fail the same way on every attempt: restarting would loop forever.
            self.terminate(job, JobEnd::Failed, Err(failure)).await;
            return;
        }
        let delay_ms = match run.graph.config.restart {
            RestartStrategy::FixedDelay { attempts, delay_ms } if run.restarts < attempts => delay_ms,
            RestartStrategy::FixedDelay { .. } => {
                let error =
                    JobError::RestartsExhausted { attempts: run.restarts + 1, last_failure: failure.to_string() };
                self.terminate(job, JobEnd::Failed, Err(error)).await;
                return;
            }
            RestartStrategy::None => {
                self.terminate(job, JobEnd::Failed, Err(failure)).await;
                return;
            }
        };
        run.restarts += 1;
        self.job_event(job, JobEvent::FailingOver, None).await;
        self.cancel_tasks(job).await;
        let run = self.jobs.get_mut(&job).expect("present");
        let actions = run.coordinator.as_mut().map(|c| c.restart(now_ms)).unwrap_or_default();
        run.phase = Phase::Restarting { at_ms: now_ms + delay_ms };
        self.decided(job, actions).await;
        self.schedule_wake(job);
    }

    /// Stops every subtask of the job's current deployment.
    async fn cancel_tasks(&mut self, job: JobId) {
        let Some(run) = self.jobs.get_mut(&job) else { return };
        let hosts: BTreeSet<String> = run.tasks.values().map(|t| t.host.clone()).collect();
        // Dropping the command senders ends subtasks waiting for the final checkpoint.
        run.tasks.clear();
        for host in hosts {
            if let Some(tm) = self.task_managers.get(&host) {
                let _ = tm.mailbox.send(TaskManagerMessage::CancelJob { job, attempt: run.attempt }).await;
            }
        }
    }

    /// Ends the job: stops its subtasks, records how it ended in the store (before anything is deleted), discards
    /// what can never complete, applies the retention policy, and answers the submitter once the deletions are
    /// done. A job manager that dies meanwhile leaves the rest to the next one ([`JobManager::finish_cleanups`]).
    async fn terminate(&mut self, job: JobId, terminal: JobEnd, result: Result<JobOutcome, JobError>) {
        self.cancel_tasks(job).await;
        let Some(mut run) = self.jobs.remove(&job) else { return };
        // Snapshots still pending can never complete now: discard their partial files. A savepoint's requester
        // learns that it failed.
        let mut dirs = Vec::new();
        let pending = run.coordinator.as_ref().map(|c| c.pending()).unwrap_or_default();
        for id in pending {
            tracing::info!(target: "weir::trace", %job, checkpoint = %id, "checkpoint aborted: the job ended");
            let kind = run.coordinator.as_ref().and_then(|c| c.pending_kind(id).cloned());
            if let Some(kind) = &kind {
                let aborted = FaultPoint::Snapshot { job, id, class: kind.class(), phase: CheckpointPhase::Aborted };
                if self.faults.at(aborted) == Fate::Crash {
                    return;
                }
            }
            if let Some(reply) = run.savepoint_replies.remove(&id) {
                let _ = reply.send(Err(JobError::SavepointFailed { id: id.0, reason: "the job ended".into() }));
            }
            if let Some(dir) = kind.and_then(|kind| self.snapshot_dir(&run, id, &kind)) {
                dirs.push((id, dir));
            }
        }
        let retention = run.graph.config.checkpoint.externalized;
        let discard = match (retention, terminal) {
            (ExternalizedRetention::RetainOnCancellation, _) => false,
            (ExternalizedRetention::DeleteOnCancellation, JobEnd::Failed) => false,
            (ExternalizedRetention::DeleteOnCancellation, _) => true,
            (ExternalizedRetention::NoExternalizedCheckpoints, _) => true,
        };
        let mut in_flight: Vec<JoinHandle<()>> =
            std::mem::take(&mut run.discards).into_iter().map(|d| d.handle).collect();
        // Writes in flight may still move their snapshots' new files into `shared/`: once they have ended, the
        // files that no retained checkpoint refers to go (whether or not the whole directory goes too).
        let mut shared = Vec::new();
        if let Some(coordinator) = &run.coordinator {
            for (id, write) in std::mem::take(&mut run.writes) {
                in_flight.push(write.handle);
                shared.extend(write.discard_after);
                shared.extend(coordinator.shared_registry().uploaded_by(id));
            }
            for id in coordinator.pending() {
                shared.extend(coordinator.shared_registry().uploaded_by(id));
            }
            shared.sort();
            shared.dedup();
        }
        let durable = run.coordinator.as_ref().map(|c| c.durable());
        let cleanup = Cleanup {
            dirs,
            job_dir: run.writer.as_ref().and_then(|w| w.job_dir.clone()).map(|dir| (dir, discard)),
            retained: durable.as_ref().map(|d| d.retained.clone()).unwrap_or_default(),
            next_id: durable.map_or(CheckpointId(1), |d| d.next_id),
            shared,
        };
        match &result {
            Err(JobError::Canceled) => tracing::info!(%job, "job canceled"),
            Err(error) => tracing::warn!(%job, ?terminal, %error, "job ended"),
            Ok(_) => {}
        }
        self.directory.end_job(job, terminal, result, cleanup.clone());
        // The end is recorded, the cleanup about to start: a job manager dying here leaves it to the next one.
        self.job_event(job, JobEvent::Ended, None).await;
        self.clean_up(job, cleanup, in_flight);
    }

    async fn on_wake(&mut self, job: JobId) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else { return };
        run.wake_at_ms = None;
        match run.phase {
            Phase::Recovering { retry_at_ms } if now_ms >= retry_at_ms => {
                run.phase = Phase::WaitingForSlots { since_ms: now_ms };
                self.try_deploy(job).await;
            }
            Phase::Recovering { .. } => self.schedule_wake(job),
            Phase::WaitingForSlots { since_ms } if now_ms >= since_ms + SLOT_WAIT_MS => {
                let available = self.task_managers.values().map(|tm| tm.slots).sum();
                let error = JobError::NotEnoughSlots { needed: run.graph.slots_needed(), available };
                self.terminate(job, JobEnd::Failed, Err(error)).await;
            }
            Phase::WaitingForSlots { .. } => self.schedule_wake(job),
            Phase::Restarting { at_ms } if now_ms >= at_ms => {
                run.attempt = Attempt(run.attempt.0 + 1);
                run.phase = Phase::WaitingForSlots { since_ms: now_ms };
                self.try_deploy(job).await;
            }
            Phase::Restarting { .. } => self.schedule_wake(job),
            Phase::Running => {
                let actions = run.coordinator.as_mut().map(|c| c.poll(now_ms)).unwrap_or_default();
                self.decided(job, actions).await;
                self.schedule_wake(job);
            }
        }
    }

    /// Sets a timer for the job's next deadline, unless an earlier one is set.
    fn schedule_wake(&mut self, job: JobId) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else { return };
        let at_ms = match run.phase {
            Phase::Recovering { retry_at_ms } => Some(retry_at_ms),
            Phase::WaitingForSlots { since_ms } => Some(since_ms + SLOT_WAIT_MS),
            Phase::Restarting { at_ms } => Some(at_ms),
            Phase::Running => run.coordinator.as_ref().and_then(|c| c.next_wake_ms()),
        };
        let Some(at_ms) = at_ms else { return };
        if run.wake_at_ms.is_some_and(|set| set <= at_ms && set >= now_ms) {
            return;
        }
        run.wake_at_ms = Some(at_ms);
        let mailbox = self.mailbox.clone();
        runtime::spawn(async move {
            runtime::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms))).await;
            let _ = mailbox.send(JobManagerMessage::Wake { job }).await;
        });
    }
}

/// What `weir list` shows of a job.
fn status_of(run: &JobRun) -> JobStatus {
    let stopping = run.coordinator.as_ref().is_some_and(|c| c.stopping().is_some() || c.stopped_at().is_some());
    JobStatus {
        job: run.job.to_string(),
        name: run.graph.name.clone(),
        state: match run.phase {
            Phase::Running if stopping => "STOPPING".into(),
            Phase::Running => "RUNNING".into(),
            Phase::Recovering { .. } | Phase::WaitingForSlots { .. } => "CREATED".into(),
            Phase::Restarting { .. } => "RESTARTING".into(),
        },
        attempt: run.attempt.0,
        completed_checkpoints: run.completed_ids.iter().map(|c| c.0).collect(),
    }
}

fn coordinator_settings(graph: &JobGraph) -> CoordinatorSettings {
    let settings = &graph.config.checkpoint;
    CoordinatorSettings {
        interval_ms: settings.interval_ms,
        min_pause_ms: settings.min_pause_ms,
        timeout_ms: settings.timeout_ms,
        max_concurrent: settings.max_concurrent,
        tolerable_failed_checkpoints: settings.tolerable_failed_checkpoints,
        num_retained: settings.num_retained,
    }
}
