//! The job manager: accepts jobs, deploys their subtasks into task manager slots, and
//! follows them to the end.
//!
//! Slot sharing as in Flink: slot `k` hosts subtask `k` of every vertex, so a job needs as
//! many slots as its highest parallelism; slots are spread over task managers round robin.

use super::Directory;
use super::messages::{JobManagerMessage, JobOutcome, TaskDeployment, TaskManagerMessage};
use crate::api::graph::JobGraph;
use crate::error::{JobError, TaskError};
use crate::ids::{Attempt, JobId, SubtaskIndex, VertexId};
use crate::operators::{BuildContext, SubtaskInfo};
use crate::seam::runtime::{self, Instant};
use crate::seam::storage::StorageRef;
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
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

/// A job waiting for slots or running.
struct JobRun {
    job: JobId,
    graph: Arc<JobGraph>,
    reply: Option<oneshot::Sender<Result<JobOutcome, JobError>>>,
    attempt: Attempt,
    /// Subtasks deployed and not yet finished.
    running: BTreeSet<(VertexId, SubtaskIndex)>,
    deployed_at: Option<Instant>,
    /// The task managers of the current deployment, by name.
    hosts: BTreeSet<String>,
}

/// The job manager's main loop; runs until its node dies.
pub async fn run(directory: Arc<Directory>, storage: StorageRef) {
    let (mailbox, mut messages) = tokio::sync::mpsc::channel(MAILBOX_CAPACITY_MESSAGES);
    directory.set_job_manager(mailbox.clone());
    let mut task_managers: BTreeMap<String, RegisteredTaskManager> = BTreeMap::new();
    let mut jobs: BTreeMap<JobId, JobRun> = BTreeMap::new();

    while let Some(message) = messages.recv().await {
        match message {
            JobManagerMessage::RegisterTaskManager { name, slots, mailbox } => {
                tracing::debug!(task_manager = %name, slots, "task manager registered");
                task_managers.insert(name, RegisteredTaskManager { slots, mailbox });
                for run in jobs.values_mut().filter(|run| run.deployed_at.is_none()) {
                    try_deploy(run, &task_managers, &storage).await;
                }
            }
            JobManagerMessage::SubmitJob { job, graph, reply } => {
                tracing::info!(%job, name = %graph.name, "job submitted");
                let mut run = JobRun {
                    job,
                    graph,
                    reply: Some(reply),
                    attempt: Attempt(0),
                    running: BTreeSet::new(),
                    deployed_at: None,
                    hosts: BTreeSet::new(),
                };
                if !try_deploy(&mut run, &task_managers, &storage).await {
                    let mailbox = mailbox.clone();
                    runtime::spawn(async move {
                        runtime::sleep(Duration::from_millis(SLOT_WAIT_MS)).await;
                        let _ = mailbox.send(JobManagerMessage::SlotWaitExpired { job }).await;
                    });
                }
                jobs.insert(job, run);
            }
            JobManagerMessage::SlotWaitExpired { job } => {
                if let Some(run) = jobs.get_mut(&job).filter(|run| run.deployed_at.is_none()) {
                    let available = task_managers.values().map(|tm| tm.slots).sum();
                    let error = JobError::NotEnoughSlots { needed: run.graph.slots_needed(), available };
                    if let Some(reply) = run.reply.take() {
                        let _ = reply.send(Err(error));
                    }
                    jobs.remove(&job);
                }
            }
            JobManagerMessage::TaskFinished { job, attempt, vertex, subtask, result } => {
                let Some(run) = jobs.get_mut(&job) else { continue };
                if attempt != run.attempt || !run.running.remove(&(vertex, subtask)) {
                    continue;
                }
                match result {
                    Ok(()) if run.running.is_empty() => {
                        let duration = run.deployed_at.map(|at| at.elapsed()).unwrap_or_default();
                        tracing::info!(%job, ?duration, "job finished");
                        let outcome = JobOutcome { job, attempts: run.attempt.0 + 1, duration };
                        if let Some(reply) = run.reply.take() {
                            let _ = reply.send(Ok(outcome));
                        }
                        jobs.remove(&job);
                    }
                    Ok(()) => {}
                    Err(error) => {
                        fail_job(run, &task_managers, vertex, subtask, error).await;
                        jobs.remove(&job);
                    }
                }
            }
        }
    }
}

/// Cancels what is left of a job's attempt and reports the failure.
async fn fail_job(
    run: &mut JobRun,
    task_managers: &BTreeMap<String, RegisteredTaskManager>,
    vertex: VertexId,
    subtask: SubtaskIndex,
    error: TaskError,
) {
    tracing::warn!(job = %run.job, %vertex, subtask = subtask.0, %error, "job failed");
    for name in &run.hosts {
        if let Some(tm) = task_managers.get(name) {
            let _ = tm.mailbox.send(TaskManagerMessage::CancelJob { job: run.job, attempt: run.attempt }).await;
        }
    }
    let vertex_name = run.graph.vertex(vertex).name.clone();
    if let Some(reply) = run.reply.take() {
        let _ = reply.send(Err(JobError::TaskFailed { vertex: vertex_name, subtask, error }));
    }
}

/// Deploys every subtask of `run` if the registered slots suffice; returns whether it did.
async fn try_deploy(
    run: &mut JobRun,
    task_managers: &BTreeMap<String, RegisteredTaskManager>,
    storage: &StorageRef,
) -> bool {
    let graph = run.graph.clone();
    let hosts: Vec<&String> = task_managers.keys().collect();
    if hosts.is_empty() {
        return false;
    }
    // Slot k lives on task manager k % n; each task manager must have enough slots.
    let needed = graph.slots_needed();
    let mut per_host = vec![0u32; hosts.len()];
    for slot in 0..needed {
        per_host[slot as usize % hosts.len()] += 1;
    }
    if hosts.iter().zip(&per_host).any(|(name, &wanted)| task_managers[*name].slots < wanted) {
        return false;
    }

    // Channels: for an edge a -> b, one channel per (upstream subtask, downstream subtask).
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

    run.running.clear();
    run.hosts.clear();
    run.deployed_at = Some(runtime::now());
    for vertex in &graph.vertices {
        for index in 0..vertex.parallelism {
            let subtask = SubtaskIndex(index);
            let host = hosts[index as usize % hosts.len()];
            run.hosts.insert(host.clone());
            let context = BuildContext {
                info: SubtaskInfo {
                    job: run.job,
                    job_name: graph.name.clone(),
                    vertex: vertex.id,
                    vertex_name: vertex.name.clone(),
                    subtask,
                    parallelism: vertex.parallelism,
                    max_parallelism: graph.max_parallelism,
                    attempt: run.attempt,
                },
                config: graph.config.clone(),
                storage: storage.clone(),
                restored: None,
                inputs: inputs.remove(&(vertex.id, index)).unwrap_or_default(),
                outputs: outputs.remove(&(vertex.id, index)).unwrap_or_default(),
            };
            let deployment = TaskDeployment {
                job: run.job,
                attempt: run.attempt,
                vertex: vertex.id,
                subtask,
                factory: vertex.factory.clone(),
                context,
            };
            run.running.insert((vertex.id, subtask));
            if task_managers[host].mailbox.send(TaskManagerMessage::Deploy(Box::new(deployment))).await.is_err() {
                // The task manager died since registering; its subtask never reports, and
                // the job fails when its peers find their channels closed.
                tracing::warn!(task_manager = %host, "deployment to a dead task manager");
            }
        }
    }
    tracing::info!(job = %run.job, subtasks = run.running.len(), "job deployed");
    true
}
