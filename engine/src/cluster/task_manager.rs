//! A task manager: registers its slots with the job manager and runs the subtasks deployed
//! to it, reporting how each ended.

use super::Directory;
use super::messages::{JobManagerMessage, TaskDeployment, TaskManagerMessage};
use crate::ids::{Attempt, JobId, SubtaskIndex, VertexId};
use crate::seam::runtime::{self, JoinHandle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

const MAILBOX_CAPACITY_MESSAGES: usize = 1024;
const REGISTRATION_RETRY_MS: u64 = 100;

/// How often a task manager checks whether the job manager changed.
const LEADER_CHECK_MS: u64 = 50;

/// The task manager's main loop; runs until its node dies.
pub async fn run(name: String, slots: u32, local_dir: std::path::PathBuf, directory: Arc<Directory>) {
    let (mailbox, mut messages) = tokio::sync::mpsc::channel(MAILBOX_CAPACITY_MESSAGES);
    let mut running: BTreeMap<(JobId, Attempt, VertexId, SubtaskIndex), JoinHandle<()>> = BTreeMap::new();
    loop {
        let epoch = register(&name, slots, &directory, &mailbox).await;
        tracing::debug!(task_manager = %name, slots, epoch, "registered");
        loop {
            let message = tokio::select! {
                biased;
                message = messages.recv() => message,
                _ = runtime::sleep(Duration::from_millis(LEADER_CHECK_MS)) => {
                    if directory.epoch() == epoch {
                        continue;
                    }
                    // A new job manager took over: tasks of the old one's deployments are
                    // orphans it will redeploy, so they stop here (Flink's task managers
                    // fail their tasks when they lose the leader).
                    tracing::info!(target: "weir::trace", task_manager = %name, tasks = running.len(), "job manager changed: canceling tasks");
                    for (_, handle) in std::mem::take(&mut running) {
                        handle.abort();
                    }
                    break;
                }
            };
            let Some(message) = message else { return };
            running.retain(|_, handle| !handle.is_finished());
            match message {
                TaskManagerMessage::Deploy(mut deployment) => {
                    deployment.context.local_dir = local_dir.join(deployment.job.to_string());
                    let key = (deployment.job, deployment.attempt, deployment.vertex, deployment.subtask);
                    let thread = format!("{}-{}", deployment.context.info.vertex_name, deployment.subtask);
                    running.insert(key, runtime::spawn_subtask(thread, run_subtask(*deployment, directory.clone())));
                }
                TaskManagerMessage::CancelJob { job, attempt } => {
                    for (_, handle) in running.extract_if(.., |key, _| key.0 == job && key.1 == attempt) {
                        handle.abort();
                    }
                }
            }
        }
    }
}

/// Registers with the current job manager, retrying until one answers; returns its epoch.
async fn register(
    name: &str,
    slots: u32,
    directory: &Directory,
    mailbox: &tokio::sync::mpsc::Sender<TaskManagerMessage>,
) -> u64 {
    loop {
        let epoch = directory.epoch();
        if let Some(job_manager) = directory.job_manager() {
            let registration =
                JobManagerMessage::RegisterTaskManager { name: name.to_string(), slots, mailbox: mailbox.clone() };
            if job_manager.send(registration).await.is_ok() {
                return epoch;
            }
        }
        runtime::sleep(Duration::from_millis(REGISTRATION_RETRY_MS)).await;
    }
}

async fn run_subtask(deployment: TaskDeployment, directory: Arc<Directory>) {
    let TaskDeployment { job, attempt, vertex, subtask, factory, context } = deployment;
    let name = context.info.vertex_name.clone();
    let span = tracing::info_span!("task", vertex = %name, subtask = subtask.0, attempt = attempt.0);
    // Names the vertex's id beside its name: job manager events (RPC faults) know a subtask by its id only.
    span.in_scope(|| tracing::info!(target: "weir::trace", id = %vertex, attempt = attempt.0, "task started"));
    let result = factory(context).instrument(span).await;
    match &result {
        // A cancel (the job ended, failed over, or the user asked) is the task doing as told.
        Err(error) if error.is_cancellation() => tracing::info!(vertex = %name, subtask = subtask.0, "task canceled"),
        Err(error) => tracing::warn!(vertex = %name, subtask = subtask.0, %error, "task failed"),
        Ok(()) => {}
    }
    if let Some(job_manager) = directory.job_manager() {
        // If the job manager is gone, the report is lost; its successor redeploys anyway.
        let _ = job_manager.send(JobManagerMessage::TaskFinished { job, attempt, vertex, subtask, result }).await;
    }
}
