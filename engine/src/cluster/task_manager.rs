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

/// The task manager's main loop; runs until its node dies.
pub async fn run(name: String, slots: u32, directory: Arc<Directory>) {
    let (mailbox, mut messages) = tokio::sync::mpsc::channel(MAILBOX_CAPACITY_MESSAGES);
    loop {
        if let Some(job_manager) = directory.job_manager() {
            let registration =
                JobManagerMessage::RegisterTaskManager { name: name.clone(), slots, mailbox: mailbox.clone() };
            if job_manager.send(registration).await.is_ok() {
                break;
            }
        }
        runtime::sleep(Duration::from_millis(REGISTRATION_RETRY_MS)).await;
    }
    tracing::debug!(task_manager = %name, slots, "registered");

    let mut running: BTreeMap<(JobId, Attempt, VertexId, SubtaskIndex), JoinHandle<()>> = BTreeMap::new();
    while let Some(message) = messages.recv().await {
        running.retain(|_, handle| !handle.is_finished());
        match message {
            TaskManagerMessage::Deploy(deployment) => {
                let key = (deployment.job, deployment.attempt, deployment.vertex, deployment.subtask);
                running.insert(key, runtime::spawn(run_subtask(*deployment, directory.clone())));
            }
            TaskManagerMessage::CancelJob { job, attempt } => {
                for (_, handle) in running.extract_if(.., |key, _| key.0 == job && key.1 == attempt) {
                    handle.abort();
                }
            }
        }
    }
}

async fn run_subtask(deployment: TaskDeployment, directory: Arc<Directory>) {
    let TaskDeployment { job, attempt, vertex, subtask, factory, context } = deployment;
    let span =
        tracing::info_span!("task", vertex = %context.info.vertex_name, subtask = subtask.0, attempt = attempt.0);
    let result = factory(context).instrument(span).await;
    if let Err(error) = &result {
        tracing::warn!(%vertex, subtask = subtask.0, %error, "task failed");
    }
    if let Some(job_manager) = directory.job_manager() {
        // If the job manager is gone, the report is lost; its successor redeploys anyway.
        let _ = job_manager.send(JobManagerMessage::TaskFinished { job, attempt, vertex, subtask, result }).await;
    }
}
