//! The cluster: a job manager node and task manager nodes with slots.
//!
//! Under simulation each is a madsim node that can be killed and restarted; for real, they
//! are tasks of the one process. Nodes find each other through the [`Directory`], the way
//! Flink's task managers find the resource manager through high-availability services.

pub mod job_manager;
pub mod messages;
pub mod task_manager;

use crate::api::graph::JobGraph;
use crate::error::JobError;
use crate::ids::JobId;
use crate::seam::runtime::{self, Node, NodeInit};
use crate::seam::storage::StorageRef;
use messages::{JobManagerMessage, JobOutcome, RestoreRequest};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// The shape of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub task_managers: u32,
    pub slots_per_task_manager: u32,
}

/// Where nodes find the job manager's mailbox. A restarted job manager replaces it.
#[derive(Default)]
pub struct Directory {
    job_manager: Mutex<Option<Sender<JobManagerMessage>>>,
}

impl Directory {
    pub fn job_manager(&self) -> Option<Sender<JobManagerMessage>> {
        self.job_manager.lock().expect("directory lock").clone()
    }

    fn set_job_manager(&self, mailbox: Sender<JobManagerMessage>) {
        *self.job_manager.lock().expect("directory lock") = Some(mailbox);
    }
}

/// A running cluster.
pub struct Cluster {
    directory: Arc<Directory>,
    job_manager: Node,
    task_managers: Vec<Node>,
}

impl Cluster {
    /// Starts the job manager and the task managers.
    pub fn start(spec: &ClusterSpec, storage: StorageRef) -> Cluster {
        assert!(spec.task_managers >= 1 && spec.slots_per_task_manager >= 1);
        let directory = Arc::new(Directory::default());
        let jm_directory = directory.clone();
        let jm_storage = storage.clone();
        let init: NodeInit = Arc::new(move || Box::pin(job_manager::run(jm_directory.clone(), jm_storage.clone())));
        let job_manager = Node::start("jm", init);
        let task_managers = (0..spec.task_managers)
            .map(|index| {
                let name = format!("tm-{index}");
                let tm_directory = directory.clone();
                let slots = spec.slots_per_task_manager;
                let tm_name = name.clone();
                let init: NodeInit =
                    Arc::new(move || Box::pin(task_manager::run(tm_name.clone(), slots, tm_directory.clone())));
                Node::start(&name, init)
            })
            .collect();
        Cluster { directory, job_manager, task_managers }
    }

    pub fn job_manager(&self) -> &Node {
        &self.job_manager
    }

    pub fn task_managers(&self) -> &[Node] {
        &self.task_managers
    }

    /// Submits a job and waits for it to finish.
    pub async fn run_job(&self, graph: JobGraph) -> Result<JobOutcome, JobError> {
        self.submit(graph, None).await?.wait().await
    }

    /// Submits a job, optionally restored from a checkpoint or savepoint.
    pub async fn submit(&self, graph: JobGraph, restore: Option<RestoreRequest>) -> Result<JobHandle, JobError> {
        let job = JobId(u128::from(runtime::random_u64()) << 64 | u128::from(runtime::random_u64()));
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.send(JobManagerMessage::SubmitJob { job, graph: Arc::new(graph), restore, reply }).await?;
        Ok(JobHandle { job, outcome })
    }

    /// Cancels a running job; its externalized checkpoints are kept or deleted per the
    /// retention setting.
    pub async fn cancel(&self, job: JobId) -> Result<(), JobError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(JobManagerMessage::CancelJob { job, reply }).await?;
        done.await.map_err(|_| JobError::JobManagerUnreachable)?
    }

    /// Sends to the job manager, which may still be starting: waits for its mailbox a
    /// bounded while.
    async fn send(&self, message: JobManagerMessage) -> Result<(), JobError> {
        let mut message = Some(message);
        for _ in 0..100 {
            if let Some(mailbox) = self.directory.job_manager() {
                match mailbox.send(message.take().expect("sent once")).await {
                    Ok(()) => return Ok(()),
                    Err(returned) => message = Some(returned.0),
                }
            }
            runtime::sleep(Duration::from_millis(50)).await;
        }
        Err(JobError::JobManagerUnreachable)
    }
}

/// A submitted job.
pub struct JobHandle {
    pub job: JobId,
    outcome: tokio::sync::oneshot::Receiver<Result<JobOutcome, JobError>>,
}

impl JobHandle {
    /// Waits for the job to end.
    pub async fn wait(self) -> Result<JobOutcome, JobError> {
        self.outcome.await.map_err(|_| JobError::JobManagerUnreachable)?
    }
}
