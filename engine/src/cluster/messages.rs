//! The messages between the client, the job manager and the task managers.

use crate::api::graph::{JobGraph, VertexFactory};
use crate::error::{JobError, TaskError};
use crate::ids::{Attempt, JobId, SubtaskIndex, VertexId};
use crate::operators::BuildContext;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;

/// How a finished job went.
#[derive(Clone, Debug)]
pub struct JobOutcome {
    pub job: JobId,
    /// Deployments, 1 when nothing failed.
    pub attempts: u32,
    /// From deployment to the last task's end, in runtime time.
    pub duration: Duration,
}

pub enum JobManagerMessage {
    RegisterTaskManager {
        name: String,
        slots: u32,
        mailbox: Sender<TaskManagerMessage>,
    },
    SubmitJob {
        job: JobId,
        graph: Arc<JobGraph>,
        reply: oneshot::Sender<Result<JobOutcome, JobError>>,
    },
    TaskFinished {
        job: JobId,
        attempt: Attempt,
        vertex: VertexId,
        subtask: SubtaskIndex,
        result: Result<(), TaskError>,
    },
    /// Waiting for slots took too long.
    SlotWaitExpired {
        job: JobId,
    },
}

pub enum TaskManagerMessage {
    Deploy(Box<TaskDeployment>),
    CancelJob { job: JobId, attempt: Attempt },
}

/// Everything a task manager needs to run one subtask.
pub struct TaskDeployment {
    pub job: JobId,
    pub attempt: Attempt,
    pub vertex: VertexId,
    pub subtask: SubtaskIndex,
    pub factory: VertexFactory,
    pub context: BuildContext,
}
