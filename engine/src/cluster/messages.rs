//! The messages between the client, the job manager and the task managers.

use crate::api::graph::{JobGraph, VertexFactory};
use crate::checkpoint::coordinator::TaskRef;
use crate::cluster::JobError;
use crate::error::TaskError;
use crate::ids::{Attempt, CheckpointId, JobId, SubtaskIndex, VertexId};
use crate::task::context::BuildContext;
use crate::task::control::TaskReport;
use std::path::PathBuf;
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
    /// From the first deployment to the last task's end, in runtime time.
    pub duration: Duration,
    /// The completed checkpoints, ascending.
    pub completed: Vec<CheckpointId>,
    /// Each completed checkpoint's duration (trigger to durable `_metadata`) and size.
    pub checkpoint_stats: Vec<CheckpointStats>,
}

/// How one checkpoint went.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CheckpointStats {
    pub id: u64,
    pub duration_ms: u64,
    pub size_bytes: u64,
}

/// What `weir list` shows of a job.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct JobStatus {
    pub job: String,
    pub name: String,
    pub state: String,
    pub attempt: u32,
    pub completed_checkpoints: Vec<u64>,
}

/// Restore a new job from a checkpoint or savepoint (`weir run -s`).
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    /// A `chk-<n>` or savepoint directory, or its `_metadata` file.
    pub path: PathBuf,
    pub allow_non_restored_state: bool,
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
        restore: Option<RestoreRequest>,
        reply: oneshot::Sender<Result<JobOutcome, JobError>>,
    },
    CancelJob {
        job: JobId,
        reply: oneshot::Sender<Result<(), JobError>>,
    },
    /// Take a savepoint (and, with `stop`, finish the job once it completed and the sinks
    /// committed up to it).
    TriggerSavepoint {
        job: JobId,
        target_dir: Option<PathBuf>,
        stop: bool,
        reply: oneshot::Sender<Result<PathBuf, JobError>>,
    },
    Status {
        job: JobId,
        reply: oneshot::Sender<Result<JobStatus, JobError>>,
    },
    TaskReport {
        job: JobId,
        attempt: Attempt,
        task: TaskRef,
        report: TaskReport,
    },
    TaskFinished {
        job: JobId,
        attempt: Attempt,
        vertex: VertexId,
        subtask: SubtaskIndex,
        result: Result<(), TaskError>,
    },
    /// A timer the job manager set for itself: re-evaluate the job's checkpoints, restarts
    /// and slot waits.
    Wake {
        job: JobId,
    },
    /// The asynchronous write of a checkpoint's `_metadata` ended.
    MetadataWritten {
        job: JobId,
        attempt: Attempt,
        checkpoint: CheckpointId,
        result: Result<(), String>,
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
