//! The job manager: accepts jobs, deploys their subtasks into task manager slots, drives
//! their checkpoints, restarts them from the latest completed checkpoint when a subtask
//! fails, and finishes them once the final checkpoint has committed everything.
//!
//! Slot sharing as in Flink: slot `k` hosts subtask `k` of every vertex, so a job needs as
//! many slots as its highest parallelism; slots are spread over task managers round robin.
//! The checkpoint rules live in the coordinator state machine; this module executes its
//! actions. Storage IO that may be slow (the `_metadata` write) runs in its own task, so
//! that a stalled write never stops the job manager from expiring checkpoints.

use super::Directory;
use super::messages::{JobManagerMessage, JobOutcome, RestoreRequest, TaskDeployment, TaskManagerMessage};
use crate::api::graph::JobGraph;
use crate::checkpoint::coordinator::{Action, Coordinator, CoordinatorSettings, TaskRef, TriggerKind};
use crate::checkpoint::metadata::{CheckpointMetadata, OperatorState, SnapshotFormat, SnapshotKind, SubtaskState};
use crate::checkpoint::restore::{self, LoadedCheckpoint, RestorePlan};
use crate::checkpoint::storage::{self, CheckpointWriter};
use crate::config::{ExternalizedRetention, RestartStrategy, StateBackendKind};
use crate::element::{CheckpointBarrier, CheckpointKind};
use crate::error::{JobError, TaskError};
use crate::faults::{CheckpointPhase, FaultHookRef, RpcFate, RpcKind};
use crate::ids::{Attempt, CheckpointId, JobId, SubtaskIndex, VertexId};
use crate::operators::{BuildContext, SubtaskInfo, TaskServices};
use crate::seam::runtime::{self, Instant};
use crate::seam::storage::{StorageError, StorageRef};
use crate::state::snapshot::SubtaskSnapshot;
use crate::task::control::{self, AckedState, Reporter, TaskCommand, TaskReport};
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;

const MAILBOX_CAPACITY_MESSAGES: usize = 4096;
/// How long a submitted job waits for enough task manager slots.
const SLOT_WAIT_MS: u64 = 30_000;

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

/// A requested savepoint.
struct SavepointRequest {
    dir: PathBuf,
    stop: bool,
    reply: Option<oneshot::Sender<Result<PathBuf, JobError>>>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    WaitingForSlots { since_ms: u64 },
    Running,
    Restarting { at_ms: u64 },
}

/// How a job ended, for the retention policy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Terminal {
    Finished,
    Canceled,
    Failed,
}

/// A job from submission to its end.
struct JobRun {
    job: JobId,
    graph: Arc<JobGraph>,
    attempt: Attempt,
    phase: Phase,
    tasks: BTreeMap<TaskRef, DeployedTask>,
    coordinator: Option<Coordinator<AckedState>>,
    writer: Option<Arc<CheckpointWriter>>,
    /// Barriers of pending checkpoints, and which tasks acked them.
    pending: BTreeMap<CheckpointId, (CheckpointBarrier, BTreeSet<TaskRef>)>,
    /// Metadata of checkpoints whose `_metadata` is being written.
    completing: BTreeMap<CheckpointId, CheckpointMetadata>,
    /// Completed checkpoints still retained, ascending.
    completed: BTreeMap<CheckpointId, LoadedCheckpoint>,
    /// The checkpoint or savepoint the job was started from, until one of its own completes.
    initial_restore: Option<LoadedCheckpoint>,
    allow_non_restored_state: bool,
    /// Once every task reached the end of its data: the first checkpoint id whose completion
    /// finishes the job.
    finishing_from: Option<CheckpointId>,
    /// The checkpoint `Finish` was sent with; a task that reports its end of data again
    /// missed it and gets it again.
    finished_with: Option<CheckpointId>,
    /// Savepoints in progress, by checkpoint id.
    savepoints: BTreeMap<CheckpointId, SavepointRequest>,
    /// A stop-with-savepoint: the job finishes once this savepoint completed.
    stop_with: Option<CheckpointId>,
    /// A stop-with-savepoint in progress: no checkpoint after this savepoint may commit,
    /// since the job resumed from the savepoint will replay what follows it.
    stopping_at: Option<CheckpointId>,
    /// The first checkpoint id of this job manager's coordinator: past every id an earlier
    /// one used, complete or not.
    first_checkpoint_id: CheckpointId,
    restarts: u32,
    /// Every checkpoint completed over the job's life, ascending.
    completed_ids: Vec<CheckpointId>,
    /// When each pending checkpoint was triggered, and the stats of completed ones.
    triggered_at_ms: BTreeMap<CheckpointId, u64>,
    checkpoint_stats: Vec<super::messages::CheckpointStats>,
    started_at: Option<Instant>,
    wake_at_ms: Option<u64>,
}

struct JobManager {
    directory: Arc<Directory>,
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
    let recovered = directory.take_jobs();
    let mut job_manager = JobManager {
        directory,
        storage,
        mailbox,
        epoch: runtime::now(),
        task_managers: BTreeMap::new(),
        jobs: BTreeMap::new(),
    };
    if !recovered.is_empty() {
        tracing::info!(target: "weir::trace", leader_epoch, jobs = recovered.len(), "job manager recovering jobs");
    }
    for (job, stored) in recovered {
        job_manager.recover(job, stored).await;
    }
    while let Some(message) = messages.recv().await {
        job_manager.handle(message).await;
    }
}

/// Sends a subtask's reports to the job manager's mailbox.
struct ClusterReporter {
    directory: Arc<Directory>,
    job: JobId,
    attempt: Attempt,
    task: TaskRef,
}

impl Reporter for ClusterReporter {
    fn report(&self, report: TaskReport) {
        let Some(mailbox) = self.directory.job_manager() else { return };
        let kind = match &report {
            TaskReport::Ack { .. } => RpcKind::Ack,
            TaskReport::Decline { .. } => RpcKind::Decline,
            TaskReport::EndOfData => RpcKind::EndOfData,
        };
        let message = JobManagerMessage::TaskReport { job: self.job, attempt: self.attempt, task: self.task, report };
        match self.directory.faults.on_rpc(kind, self.task) {
            RpcFate::Deliver => {
                if let Err(tokio::sync::mpsc::error::TrySendError::Full(message)) = mailbox.try_send(message) {
                    runtime::spawn(async move {
                        let _ = mailbox.send(message).await;
                    });
                }
            }
            RpcFate::Drop => {
                tracing::info!(target: "weir::trace", ?kind, vertex = %self.task.vertex, subtask = self.task.subtask.0, "fault: rpc dropped")
            }
            RpcFate::Delay(delay) => {
                runtime::spawn(async move {
                    runtime::sleep(delay).await;
                    let _ = mailbox.send(message).await;
                });
            }
        }
    }
}

/// Sends a command to a subtask through the fault hook: delivered, dropped or delayed.
fn send_command(faults: &FaultHookRef, task: TaskRef, deployed: &DeployedTask, command: TaskCommand) {
    let kind = match &command {
        TaskCommand::TriggerCheckpoint(_) => RpcKind::Trigger,
        TaskCommand::NotifyComplete(_) => RpcKind::Notify,
        TaskCommand::NotifyAborted(_) => RpcKind::Abort,
        TaskCommand::Finish { .. } => RpcKind::Finish,
    };
    match faults.on_rpc(kind, task) {
        RpcFate::Deliver => {
            let _ = deployed.commands.try_send(command);
        }
        RpcFate::Drop => {
            tracing::info!(target: "weir::trace", ?kind, vertex = %task.vertex, subtask = task.subtask.0, "fault: rpc dropped")
        }
        RpcFate::Delay(delay) => {
            let commands = deployed.commands.clone();
            runtime::spawn(async move {
                runtime::sleep(delay).await;
                let _ = commands.send(command).await;
            });
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
                tracing::info!(target: "weir::trace", task_manager = %name, slots, "task manager registered");
                let again = self.task_managers.insert(name.clone(), RegisteredTaskManager { slots, mailbox }).is_some();
                if again {
                    // A task manager that registers again lost its tasks: fail over the
                    // jobs it hosted rather than wait for their checkpoints to time out.
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
            JobManagerMessage::SubmitJob { job, graph, restore, reply } => {
                self.submit(job, graph, restore, reply).await
            }
            JobManagerMessage::CancelJob { job, reply } => {
                let result = match self.jobs.contains_key(&job) {
                    true => {
                        self.terminate(job, Terminal::Canceled, Err(JobError::Canceled)).await;
                        Ok(())
                    }
                    false => Err(JobError::UnknownJob(job)),
                };
                let _ = reply.send(result);
            }
            JobManagerMessage::TriggerSavepoint { job, target_dir, stop, reply } => {
                self.trigger_savepoint(job, target_dir, stop, reply).await;
            }
            JobManagerMessage::Status { job, reply } => {
                let status = self.jobs.get(&job).map(|run| super::messages::JobStatus {
                    job: job.to_string(),
                    name: run.graph.name.clone(),
                    state: match run.phase {
                        Phase::Running if run.stop_with.is_some() => "STOPPING".into(),
                        Phase::Running => "RUNNING".into(),
                        Phase::WaitingForSlots { .. } => "CREATED".into(),
                        Phase::Restarting { .. } => "RESTARTING".into(),
                    },
                    attempt: run.attempt.0,
                    completed_checkpoints: run.completed_ids.iter().map(|c| c.0).collect(),
                });
                let _ = reply.send(status.ok_or(JobError::UnknownJob(job)));
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

    async fn submit(
        &mut self,
        job: JobId,
        graph: Arc<JobGraph>,
        restore: Option<RestoreRequest>,
        reply: oneshot::Sender<Result<JobOutcome, JobError>>,
    ) {
        tracing::info!(target: "weir::trace", %job, name = %graph.name, "job submitted");
        let prepared = self.prepare(job, &graph, restore.clone()).await;
        let (writer, initial_restore, allow_non_restored_state) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let stored = super::StoredJob { graph: graph.clone(), restore, reply: Some(reply), next_attempt: 0 };
        self.directory.store_job(job, stored);
        let first_id =
            initial_restore.as_ref().map_or(CheckpointId(1), |c| CheckpointId(c.metadata.checkpoint_id.0 + 1));
        let run = self.new_run(job, graph, Attempt(0), writer, initial_restore, allow_non_restored_state, first_id);
        self.jobs.insert(job, run);
        self.try_deploy(job).await;
    }

    /// Takes over a job that a crashed job manager was running: from its latest complete
    /// checkpoint on storage, else from where it was started.
    async fn recover(&mut self, job: JobId, stored: super::StoredJob) {
        let graph = stored.graph.clone();
        let attempt = Attempt(stored.next_attempt);
        let restore = stored.restore.clone();
        self.directory.store_job(job, stored);
        let (writer, mut initial_restore, allow) = match self.prepare(job, &graph, restore).await {
            Ok(prepared) => prepared,
            Err(error) => {
                self.reply(job, Err(error));
                return;
            }
        };
        let mut first_id =
            initial_restore.as_ref().map_or(CheckpointId(1), |c| CheckpointId(c.metadata.checkpoint_id.0 + 1));
        let mut recovered = BTreeMap::new();
        if let Some(dir) = writer.as_ref().and_then(|w| w.job_dir.clone()) {
            match self.scan_checkpoints(&dir).await {
                Ok((complete, highest)) => {
                    first_id = first_id.max(CheckpointId(highest + 1));
                    if let Some(latest) = complete.values().next_back() {
                        initial_restore = Some(latest.clone());
                    }
                    recovered = complete;
                }
                Err(error) => {
                    self.reply(job, Err(JobError::CheckpointStorage(error)));
                    return;
                }
            }
        }
        let from = initial_restore.as_ref().map(|c| c.metadata.checkpoint_id.0);
        tracing::info!(target: "weir::trace", %job, attempt = attempt.0, ?from, "job recovered");
        let mut run = self.new_run(job, graph, attempt, writer, initial_restore, allow, first_id);
        run.completed = recovered;
        self.jobs.insert(job, run);
        self.try_deploy(job).await;
    }

    /// The complete checkpoints under a job directory, and the highest `chk-<n>` id seen.
    /// Incomplete ones (no readable `_metadata`: in progress when a job manager died) are
    /// removed, since no one will complete them.
    async fn scan_checkpoints(
        &self,
        job_dir: &Path,
    ) -> Result<(BTreeMap<CheckpointId, LoadedCheckpoint>, u64), StorageError> {
        let mut complete = BTreeMap::new();
        let mut highest = 0;
        for name in self.storage.list(job_dir).await? {
            let Some(id) = storage::parse_checkpoint_dir_name(&name) else { continue };
            highest = highest.max(id.0);
            let dir = job_dir.join(&name);
            match restore::load(&self.storage, &dir).await {
                Ok(loaded) => {
                    complete.insert(id, loaded);
                }
                Err(error) => {
                    tracing::info!(target: "weir::trace", checkpoint = %id, %error, "discarding an incomplete checkpoint");
                    remove_dir(&self.storage, &dir).await;
                }
            }
        }
        Ok((complete, highest))
    }

    /// Replies to whoever submitted `job`, once, and forgets the job.
    fn reply(&self, job: JobId, result: Result<JobOutcome, JobError>) {
        if let Some(reply) = self.directory.finish_job(job) {
            let _ = reply.send(result);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_run(
        &self,
        job: JobId,
        graph: Arc<JobGraph>,
        attempt: Attempt,
        writer: Option<Arc<CheckpointWriter>>,
        initial_restore: Option<LoadedCheckpoint>,
        allow_non_restored_state: bool,
        first_checkpoint_id: CheckpointId,
    ) -> JobRun {
        JobRun {
            job,
            graph,
            attempt,
            phase: Phase::WaitingForSlots { since_ms: self.now_ms() },
            tasks: BTreeMap::new(),
            coordinator: None,
            writer,
            pending: BTreeMap::new(),
            completing: BTreeMap::new(),
            completed: BTreeMap::new(),
            initial_restore,
            allow_non_restored_state,
            finishing_from: None,
            finished_with: None,
            savepoints: BTreeMap::new(),
            stop_with: None,
            stopping_at: None,
            first_checkpoint_id,
            restarts: 0,
            completed_ids: Vec::new(),
            triggered_at_ms: BTreeMap::new(),
            checkpoint_stats: Vec::new(),
            started_at: None,
            wake_at_ms: None,
        }
    }

    /// Checks the restore source and prepares checkpoint storage, before anything runs.
    async fn prepare(
        &self,
        job: JobId,
        graph: &JobGraph,
        restore: Option<RestoreRequest>,
    ) -> Result<(Option<Arc<CheckpointWriter>>, Option<LoadedCheckpoint>, bool), JobError> {
        let mut initial_restore = None;
        let mut allow = false;
        if let Some(request) = restore {
            let loaded = restore::load(&self.storage, &request.path).await?;
            // Plan once now so that every problem is reported before the job starts.
            restore::plan(&self.storage, &loaded, graph, request.allow_non_restored_state).await?;
            tracing::info!(%job, checkpoint = %loaded.metadata.checkpoint_id, path = %loaded.metadata_path.display(), "restoring");
            initial_restore = Some(loaded);
            allow = request.allow_non_restored_state;
        }
        let settings = &graph.config.checkpoint;
        if settings.interval_ms.is_none() {
            return Ok((None, initial_restore, allow));
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
            inline_threshold_bytes: settings.inline_threshold_bytes,
            jobmanager_max_state_bytes: settings.jobmanager_max_state_bytes,
            savepoints: Default::default(),
        };
        Ok((Some(Arc::new(writer)), initial_restore, allow))
    }

    /// Deploys every subtask of the job if the registered slots suffice.
    async fn try_deploy(&mut self, job: JobId) {
        let Some(run) = self.jobs.get(&job) else { return };
        let graph = run.graph.clone();
        let hosts: Vec<String> = self.task_managers.keys().cloned().collect();
        let needed = graph.slots_needed();
        let host_count = hosts.len().max(1);
        let mut per_host = vec![0u32; host_count];
        for slot in 0..needed {
            per_host[slot as usize % host_count] += 1;
        }
        let enough = !hosts.is_empty()
            && hosts.iter().zip(&per_host).all(|(name, &wanted)| self.task_managers[name].slots >= wanted);
        if !enough {
            self.schedule_wake(job);
            return;
        }

        // The state to start from: the latest completed checkpoint, else the one the job
        // was started from, else nothing.
        let source = run.completed.values().next_back().or(run.initial_restore.as_ref()).cloned();
        let allow = run.allow_non_restored_state;
        if let Some(checkpoint) = &source {
            let (id, path) = (checkpoint.metadata.checkpoint_id, checkpoint.metadata_path.display().to_string());
            tracing::info!(target: "weir::trace", %job, checkpoint = %id, %path, "restoring state");
        }
        let plan: RestorePlan = match &source {
            Some(checkpoint) => match restore::plan(&self.storage, checkpoint, &graph, allow).await {
                Ok(plan) => plan,
                Err(error) => {
                    self.terminate(job, Terminal::Failed, Err(error.into())).await;
                    return;
                }
            },
            None => graph.vertices.iter().map(|v| vec![SubtaskSnapshot::default(); v.parallelism as usize]).collect(),
        };

        let now_ms = self.now_ms();
        let run = self.jobs.get_mut(&job).expect("checked above");
        let capacity = graph.config.channel_capacity_batches as usize;
        let mut inputs: BTreeMap<(VertexId, u32), Vec<Box<dyn Any + Send>>> = BTreeMap::new();
        let mut outputs: BTreeMap<(VertexId, u32), Vec<Box<dyn Any + Send>>> = BTreeMap::new();
        for edge in &graph.edges {
            let (from_p, to_p) = (graph.vertex(edge.from).parallelism, graph.vertex(edge.to).parallelism);
            for i in 0..from_p {
                for j in 0..to_p {
                    let (sender, receiver) = (edge.make_channel)(capacity);
                    outputs.entry((edge.from, i)).or_default().push(sender);
                    inputs.entry((edge.to, j)).or_default().push(receiver);
                }
            }
        }

        run.tasks.clear();
        run.pending.clear();
        run.finishing_from = None;
        run.started_at.get_or_insert_with(runtime::now);
        let mut deployments = Vec::new();
        let mut plan = plan;
        for vertex in &graph.vertices {
            for index in 0..vertex.parallelism {
                let subtask = SubtaskIndex(index);
                let task = TaskRef { vertex: vertex.id, subtask };
                let host = hosts[index as usize % hosts.len()].clone();
                let (commands, command_receiver) = control::command_channel();
                let reporter = ClusterReporter { directory: self.directory.clone(), job, attempt: run.attempt, task };
                let restored = std::mem::take(&mut plan[vertex.id.0 as usize][index as usize]);
                let context = BuildContext {
                    info: SubtaskInfo {
                        job,
                        job_name: graph.name.clone(),
                        vertex: vertex.id,
                        vertex_name: vertex.name.clone(),
                        subtask,
                        parallelism: vertex.parallelism,
                        max_parallelism: graph.max_parallelism,
                        attempt: run.attempt,
                    },
                    config: graph.config.clone(),
                    storage: self.storage.clone(),
                    restored,
                    inputs: inputs.remove(&(vertex.id, index)).unwrap_or_default(),
                    outputs: outputs.remove(&(vertex.id, index)).unwrap_or_default(),
                    services: TaskServices {
                        commands: command_receiver,
                        reporter: Arc::new(reporter),
                        checkpoints: run.writer.clone(),
                        faults: self.directory.faults.clone(),
                    },
                };
                run.tasks.insert(
                    task,
                    DeployedTask {
                        host: host.clone(),
                        is_source: vertex.is_source,
                        commands,
                        end_of_data: false,
                        finished: false,
                    },
                );
                let deployment = TaskDeployment {
                    job,
                    attempt: run.attempt,
                    vertex: vertex.id,
                    subtask,
                    factory: vertex.factory.clone(),
                    context,
                };
                deployments.push((host, deployment));
            }
        }
        run.phase = Phase::Running;

        // The coordinator outlives restarts: checkpoint ids keep increasing.
        if run.writer.is_some() && run.coordinator.is_none() {
            let tasks: BTreeSet<TaskRef> = run.tasks.keys().copied().collect();
            run.coordinator =
                Some(Coordinator::new(coordinator_settings(&graph), tasks, run.first_checkpoint_id, now_ms));
        }
        // Attempts never repeat, across job managers too: reports of older ones are ignored.
        self.directory.set_next_attempt(job, run.attempt.0 + 1);
        for (host, deployment) in deployments {
            let mailbox = &self.task_managers[&host].mailbox;
            if mailbox.send(TaskManagerMessage::Deploy(Box::new(deployment))).await.is_err() {
                // The task manager died since registering; the subtask's peers find their
                // channels closed and fail, which restarts the job.
                tracing::warn!(task_manager = %host, "deployment to a dead task manager");
            }
        }
        tracing::info!(%job, attempt = run.attempt.0, subtasks = run.tasks.len(), "job deployed");
        self.schedule_wake(job);
    }

    async fn trigger_savepoint(
        &mut self,
        job: JobId,
        target_dir: Option<PathBuf>,
        stop: bool,
        reply: oneshot::Sender<Result<PathBuf, JobError>>,
    ) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else {
            let _ = reply.send(Err(JobError::UnknownJob(job)));
            return;
        };
        let (Some(writer), Some(coordinator), Phase::Running) =
            (run.writer.clone(), run.coordinator.as_mut(), run.phase)
        else {
            let _ = reply.send(Err(JobError::Setup("a savepoint needs a running job that checkpoints".into())));
            return;
        };
        let Some(base) = target_dir.or_else(|| run.graph.config.checkpoint.savepoint_dir.as_ref().map(PathBuf::from))
        else {
            let _ = reply
                .send(Err(JobError::Setup("no savepoint directory: give one, or set state.savepoints.dir".into())));
            return;
        };
        let dir = base.join(format!("savepoint-{}-{:012x}", job.short(), runtime::random_u64() & 0xffff_ffff_ffff));
        let id = coordinator.next_id();
        let created = match self.storage.create_dir_all(&dir).await {
            Ok(()) => self.storage.sync_dir(&base).await,
            Err(error) => Err(error),
        };
        if let Err(error) = created {
            let _ = reply.send(Err(JobError::CheckpointStorage(error)));
            return;
        }
        tracing::info!(target: "weir::trace", %job, savepoint = %id, dir = %dir.display(), stop, "savepoint triggered");
        writer.savepoints.lock().expect("savepoints lock").insert(id, dir.clone());
        let run = self.jobs.get_mut(&job).expect("present");
        run.savepoints.insert(id, SavepointRequest { dir, stop, reply: Some(reply) });
        if stop {
            run.stopping_at = Some(id);
            run.coordinator.as_mut().expect("checked").pause_periodic(true);
        }
        let actions = run.coordinator.as_mut().expect("checked").trigger_forced(now_ms);
        self.execute(job, actions).await;
    }

    async fn on_report(&mut self, job: JobId, task: TaskRef, report: TaskReport) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else { return };
        let Some(coordinator) = run.coordinator.as_mut() else { return };
        let actions = match report {
            TaskReport::Ack { checkpoint, state } => {
                if let Some((_, acked)) = run.pending.get_mut(&checkpoint) {
                    acked.insert(task);
                }
                coordinator.ack(now_ms, checkpoint, task, state)
            }
            TaskReport::Decline { checkpoint, reason, counts_as_failure } => {
                tracing::warn!(%job, %checkpoint, vertex = %task.vertex, subtask = task.subtask.0, %reason, "checkpoint declined");
                coordinator.decline(now_ms, checkpoint, task, reason, counts_as_failure)
            }
            TaskReport::EndOfData => {
                let faults = self.directory.faults.clone();
                let Some(deployed) = run.tasks.get_mut(&task) else { return };
                deployed.end_of_data = true;
                if let Some(last_completed) = run.finished_with {
                    // The task repeats its report: it missed `Finish`.
                    send_command(&faults, task, deployed, TaskCommand::Finish { last_completed: Some(last_completed) });
                    return;
                }
                // Pending checkpoints whose barrier can no longer reach this task: it
                // snapshots its final state for them directly (the task ignores ids it
                // has snapshotted already).
                for (barrier, acked) in run.pending.values() {
                    if !acked.contains(&task) {
                        send_command(&faults, task, deployed, TaskCommand::TriggerCheckpoint(*barrier));
                    }
                }
                if run.finishing_from.is_none() && run.tasks.values().all(|t| t.end_of_data) {
                    // Every task is done: a final checkpoint commits what is left.
                    run.finishing_from = Some(coordinator.next_id());
                    coordinator.trigger_forced(now_ms)
                } else {
                    Vec::new()
                }
            }
        };
        self.execute(job, actions).await;
    }

    async fn on_task_finished(&mut self, job: JobId, task: TaskRef, result: Result<(), TaskError>) {
        let Some(run) = self.jobs.get_mut(&job) else { return };
        // After a stop's `Finish`, subtasks end in any order, and those still reading see
        // their finished peers' channels close: that is the job stopping, not failing.
        let result = if run.stop_with.is_some() { Ok(()) } else { result };
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
                    self.terminate(job, Terminal::Finished, Ok(outcome)).await;
                }
            }
            Err(error) => {
                let vertex = run.graph.vertex(task.vertex).name.clone();
                let failure = JobError::TaskFailed { vertex, subtask: task.subtask, error };
                self.fail_over(job, failure).await;
            }
        }
    }

    /// A subtask failed or too many checkpoints did: restart from the latest completed
    /// checkpoint if the restart strategy allows, else fail the job.
    async fn fail_over(&mut self, job: JobId, failure: JobError) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else { return };
        tracing::warn!(%job, attempt = run.attempt.0, %failure, "job failure");
        let delay_ms = match run.graph.config.restart {
            RestartStrategy::FixedDelay { attempts, delay_ms } if run.restarts < attempts => delay_ms,
            RestartStrategy::FixedDelay { .. } => {
                let error =
                    JobError::RestartsExhausted { attempts: run.restarts + 1, last_failure: failure.to_string() };
                self.terminate(job, Terminal::Failed, Err(error)).await;
                return;
            }
            RestartStrategy::None => {
                self.terminate(job, Terminal::Failed, Err(failure)).await;
                return;
            }
        };
        run.restarts += 1;
        self.cancel_tasks(job).await;
        let run = self.jobs.get_mut(&job).expect("present");
        let actions = run.coordinator.as_mut().map(|c| c.restart(now_ms)).unwrap_or_default();
        run.phase = Phase::Restarting { at_ms: now_ms + delay_ms };
        self.execute(job, actions).await;
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

    /// Ends the job: stops its subtasks, applies the retention policy, replies.
    async fn terminate(&mut self, job: JobId, terminal: Terminal, result: Result<JobOutcome, JobError>) {
        self.cancel_tasks(job).await;
        let Some(run) = self.jobs.remove(&job) else { return };
        // Checkpoints still pending can never complete now: discard their partial files.
        if let Some(dir) = run.writer.as_ref().and_then(|w| w.job_dir.clone()) {
            for id in run.pending.keys().chain(run.completing.keys()) {
                tracing::info!(target: "weir::trace", %job, checkpoint = %id, "checkpoint aborted: the job ended");
                remove_dir(&self.storage, &storage::checkpoint_dir(&dir, *id)).await;
            }
        }
        let retention = run.graph.config.checkpoint.externalized;
        let discard = match (retention, terminal) {
            (ExternalizedRetention::RetainOnCancellation, _) => false,
            (ExternalizedRetention::DeleteOnCancellation, Terminal::Failed) => false,
            (ExternalizedRetention::DeleteOnCancellation, _) => true,
            (ExternalizedRetention::NoExternalizedCheckpoints, _) => true,
        };
        if discard && let Some(dir) = run.writer.as_ref().and_then(|w| w.job_dir.clone()) {
            remove_dir(&self.storage, &dir).await;
        }
        if let Err(error) = &result {
            tracing::warn!(%job, ?terminal, %error, "job ended");
        }
        self.reply(job, result);
    }

    async fn on_wake(&mut self, job: JobId) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else { return };
        run.wake_at_ms = None;
        match run.phase {
            Phase::WaitingForSlots { since_ms } if now_ms >= since_ms + SLOT_WAIT_MS => {
                let available = self.task_managers.values().map(|tm| tm.slots).sum();
                let error = JobError::NotEnoughSlots { needed: run.graph.slots_needed(), available };
                self.terminate(job, Terminal::Failed, Err(error)).await;
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
                self.execute(job, actions).await;
                self.schedule_wake(job);
            }
        }
    }

    /// Sets a timer for the job's next deadline, unless an earlier one is set.
    fn schedule_wake(&mut self, job: JobId) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else { return };
        let at_ms = match run.phase {
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

    /// Carries out the coordinator's actions, in order. A failover the actions ask for
    /// happens after the whole batch, so that no abort queued behind it is dropped.
    async fn execute(&mut self, job: JobId, actions: Vec<Action<AckedState>>) {
        let mut queue: std::collections::VecDeque<Action<AckedState>> = actions.into();
        let mut fail_over = None;
        while let Some(action) = queue.pop_front() {
            let now_ms = self.now_ms();
            let Some(run) = self.jobs.get_mut(&job) else { return };
            match action {
                Action::Trigger { id, kind } => {
                    let barrier = CheckpointBarrier {
                        checkpoint: id,
                        triggered_at_ms: now_ms,
                        kind: match kind {
                            TriggerKind::Forced if run.savepoints.contains_key(&id) => CheckpointKind::Savepoint,
                            TriggerKind::Periodic | TriggerKind::Forced => CheckpointKind::Checkpoint,
                        },
                    };
                    // A savepoint's directory exists already; a checkpoint's is made here.
                    let is_savepoint = run.savepoints.contains_key(&id);
                    tracing::info!(target: "weir::trace", %job, checkpoint = %id, ?kind, "checkpoint triggered");
                    let created = match run.writer.as_ref().and_then(|w| w.job_dir.clone()).filter(|_| !is_savepoint) {
                        // The new directory's entry is made durable with its parent's fsync.
                        Some(dir) => match self.storage.create_dir_all(&storage::checkpoint_dir(&dir, id)).await {
                            Ok(()) => self.storage.sync_dir(&dir).await,
                            Err(error) => Err(error),
                        },
                        None => Ok(()),
                    };
                    if let Err(error) = created {
                        let run = self.jobs.get_mut(&job).expect("present");
                        let task = *run.tasks.keys().next().expect("a job has tasks");
                        let coordinator = run.coordinator.as_mut().expect("checkpointing");
                        queue.extend(coordinator.decline(now_ms, id, task, error.to_string(), true));
                        continue;
                    }
                    self.directory.faults.on_checkpoint_phase(id, CheckpointPhase::Triggered);
                    let faults = self.directory.faults.clone();
                    let run = self.jobs.get_mut(&job).expect("present");
                    run.pending.insert(id, (barrier, BTreeSet::new()));
                    run.triggered_at_ms.insert(id, now_ms);
                    for (task, deployed) in &run.tasks {
                        if (deployed.is_source && !deployed.finished) || deployed.end_of_data {
                            send_command(&faults, *task, deployed, TaskCommand::TriggerCheckpoint(barrier));
                        }
                    }
                }
                Action::Complete { id, states } => {
                    tracing::info!(target: "weir::trace", %job, checkpoint = %id, "checkpoint acked by every task");
                    self.directory.faults.on_checkpoint_phase(id, CheckpointPhase::Acked);
                    let run = self.jobs.get_mut(&job).expect("present");
                    run.pending.remove(&id);
                    let mut metadata = build_metadata(&run.graph, job, id, states, runtime::wall_clock_ms());
                    let savepoint_dir = run.savepoints.get(&id).map(|request| request.dir.clone());
                    if savepoint_dir.is_some() {
                        metadata.kind = SnapshotKind::Savepoint;
                        metadata.format = SnapshotFormat::Canonical;
                    }
                    let job_dir = run.writer.as_ref().and_then(|w| w.job_dir.clone());
                    match savepoint_dir.or(job_dir.map(|dir| storage::checkpoint_dir(&dir, id))) {
                        Some(chk) => {
                            run.completing.insert(id, metadata.clone());
                            let (storage, mailbox, attempt) = (self.storage.clone(), self.mailbox.clone(), run.attempt);
                            let faults = self.directory.faults.clone();
                            runtime::spawn(async move {
                                let result = storage::write_metadata(&storage, &chk, &metadata, &faults)
                                    .await
                                    .map_err(|e| e.to_string());
                                let _ = mailbox
                                    .send(JobManagerMessage::MetadataWritten { job, attempt, checkpoint: id, result })
                                    .await;
                            });
                        }
                        None => {
                            // Checkpoints kept in the job manager's memory only.
                            let loaded = LoadedCheckpoint {
                                metadata_path: PathBuf::from("<memory>"),
                                dir: PathBuf::from("."),
                                metadata,
                            };
                            run.completed.insert(id, loaded);
                            let coordinator = run.coordinator.as_mut().expect("checkpointing");
                            queue.extend(coordinator.completion_succeeded(now_ms, id));
                        }
                    }
                }
                Action::Abort { id, reason } => {
                    tracing::info!(target: "weir::trace", %job, checkpoint = %id, ?reason, "checkpoint aborted");
                    run.pending.remove(&id);
                    run.completing.remove(&id);
                    if let Some(mut request) = run.savepoints.remove(&id) {
                        if let Some(writer) = &run.writer {
                            writer.savepoints.lock().expect("savepoints lock").remove(&id);
                        }
                        if run.stopping_at == Some(id) {
                            // The stop failed: the job keeps running, checkpointing and committing.
                            run.stopping_at = None;
                            if let Some(coordinator) = run.coordinator.as_mut() {
                                coordinator.pause_periodic(false);
                            }
                        }
                        if let Some(reply) = request.reply.take() {
                            let _ =
                                reply.send(Err(JobError::SavepointFailed { id: id.0, reason: format!("{reason:?}") }));
                        }
                        remove_dir(&self.storage, &request.dir).await;
                    }
                    let faults = self.directory.faults.clone();
                    for (task, deployed) in &run.tasks {
                        send_command(&faults, *task, deployed, TaskCommand::NotifyAborted(id));
                    }
                    if let Some(dir) = run.writer.as_ref().and_then(|w| w.job_dir.clone()) {
                        remove_dir(&self.storage, &storage::checkpoint_dir(&dir, id)).await;
                    }
                }
                Action::Notify { id } => {
                    tracing::info!(target: "weir::trace", %job, checkpoint = %id, "checkpoint complete");
                    self.directory.faults.on_checkpoint_phase(id, CheckpointPhase::Completed);
                    let faults = self.directory.faults.clone();
                    let run = self.jobs.get_mut(&job).expect("present");
                    run.completed_ids.push(id);
                    if let Some(triggered) = run.triggered_at_ms.remove(&id) {
                        let size_bytes = run.completed.get(&id).map_or(0, |c| c.metadata.state_size_bytes());
                        let duration_ms = now_ms.saturating_sub(triggered);
                        run.checkpoint_stats.push(super::messages::CheckpointStats {
                            id: id.0,
                            duration_ms,
                            size_bytes,
                        });
                    }
                    if run.stopping_at.is_some_and(|savepoint| id > savepoint) {
                        // Completed after the stop's savepoint: durable, but never committed.
                        continue;
                    }
                    let finishing = run.finishing_from.is_some_and(|from| id >= from) || run.stop_with == Some(id);
                    if finishing {
                        run.finished_with = Some(id);
                    }
                    for (task, deployed) in &run.tasks {
                        send_command(&faults, *task, deployed, TaskCommand::NotifyComplete(id));
                        if finishing {
                            send_command(&faults, *task, deployed, TaskCommand::Finish { last_completed: Some(id) });
                        }
                    }
                    // Retention covers checkpoints an earlier job manager completed, too.
                    let retained = run.graph.config.checkpoint.num_retained as usize;
                    while run.completed.len() > retained {
                        let (oldest, _) = run.completed.pop_first().expect("non-empty");
                        if let Some(dir) = run.writer.as_ref().and_then(|w| w.job_dir.clone()) {
                            remove_dir(&self.storage, &storage::checkpoint_dir(&dir, oldest)).await;
                        }
                    }
                }
                Action::Discard { .. } => {
                    // Retention is enforced over the job manager's own completed set (on
                    // `Notify`), which also holds checkpoints an earlier job manager made
                    // and never holds savepoints: those are the user's.
                }
                Action::FailJob { consecutive_failures } => {
                    fail_over = Some(JobError::TooManyCheckpointFailures { consecutive: consecutive_failures });
                }
            }
        }
        if let Some(failure) = fail_over {
            // Boxed: failing over executes the coordinator's abort actions in turn.
            Box::pin(self.fail_over(job, failure)).await;
        }
    }

    async fn on_metadata_written(
        &mut self,
        job: JobId,
        attempt: Attempt,
        id: CheckpointId,
        result: Result<(), String>,
    ) {
        let now_ms = self.now_ms();
        let Some(run) = self.jobs.get_mut(&job) else { return };
        let Some(metadata) = run.completing.remove(&id) else { return };
        if run.attempt != attempt {
            return;
        }
        let Some(coordinator) = run.coordinator.as_mut() else { return };
        if let Some(mut request) = run.savepoints.remove(&id) {
            if let Some(writer) = &run.writer {
                writer.savepoints.lock().expect("savepoints lock").remove(&id);
            }
            let actions = match result {
                Ok(()) => {
                    tracing::info!(target: "weir::trace", %job, savepoint = %id, dir = %request.dir.display(), "savepoint complete");
                    if request.stop {
                        run.stop_with = Some(id);
                    }
                    if let Some(reply) = request.reply.take() {
                        let _ = reply.send(Ok(request.dir.clone()));
                    }
                    drop(metadata);
                    coordinator.completion_succeeded(now_ms, id)
                }
                Err(reason) => coordinator.completion_failed(now_ms, id, reason),
            };
            self.execute(job, actions).await;
            self.schedule_wake(job);
            return;
        }
        let actions = match result {
            Ok(()) => {
                let dir =
                    run.writer.as_ref().and_then(|w| w.job_dir.clone()).expect("metadata is written to a directory");
                let chk = storage::checkpoint_dir(&dir, id);
                let loaded = LoadedCheckpoint {
                    metadata_path: chk.join(crate::checkpoint::metadata::METADATA_FILE_NAME),
                    dir: chk,
                    metadata,
                };
                run.completed.insert(id, loaded);
                coordinator.completion_succeeded(now_ms, id)
            }
            Err(reason) => coordinator.completion_failed(now_ms, id, reason),
        };
        self.execute(job, actions).await;
        self.schedule_wake(job);
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

/// The `_metadata` of a checkpoint from its acknowledgements: every operator that
/// snapshotted anything, with one entry per subtask.
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

/// Removes a directory tree durably (a missing one is fine: it may never have been
/// created), so that a discarded checkpoint cannot reappear after a storage crash.
async fn remove_dir(storage: &StorageRef, dir: &Path) {
    match storage.remove_dir_all(dir).await {
        Ok(()) => {
            if let Some(parent) = dir.parent()
                && let Err(error) = storage.sync_dir(parent).await
            {
                tracing::warn!(%error, "cannot sync a directory after removing a checkpoint");
            }
        }
        Err(StorageError::NotFound { .. }) => {}
        Err(error) => tracing::warn!(%error, "cannot remove a discarded checkpoint"),
    }
}
