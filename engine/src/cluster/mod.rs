//! The cluster: a job manager node and task manager nodes with slots.
//!
//! Under simulation each is a madsim node that can be killed and restarted; for real, they
//! are tasks of the one process. Nodes find each other through the [`Directory`], the way
//! Flink's task managers find the resource manager through high-availability services.

mod error;
pub mod job_manager;
pub mod messages;
pub mod task_manager;

use crate::api::graph::JobGraph;
use crate::checkpoint::coordinator::Durable;
use crate::checkpoint::restore::LoadedCheckpoint;
use crate::faults::{self, FaultHookRef};
use crate::ids::{CheckpointId, JobId};
use crate::seam::runtime::{self, Node, NodeInit};
use crate::seam::storage::StorageRef;
pub use error::JobError;
use messages::{JobManagerMessage, JobOutcome, RestoreRequest};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// The shape of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub task_managers: u32,
    pub slots_per_task_manager: u32,
    /// Where task managers keep local working files (one directory per task manager below it): the embedded
    /// state backend's stores. A task manager's directory is scratch space, lost when it crashes.
    pub local_dir: std::path::PathBuf,
}

/// What survives a job manager crash, as Flink's high-availability services (ZooKeeper) do: where nodes find the
/// job manager's mailbox, and the submitted jobs with what their checkpoint coordinators made durable (the id
/// counter, the retained checkpoints, the newest savepoint, a completed stop). A restarted job manager replaces the
/// mailbox and takes the jobs over from there.
pub struct Directory {
    job_manager: Mutex<Option<(u64, Sender<JobManagerMessage>)>>,
    /// Bumped by every job manager start, so task managers notice a new leader.
    epoch: std::sync::atomic::AtomicU64,
    jobs: Mutex<BTreeMap<JobId, StoredJob>>,
    /// Jobs that ended, as Flink's JobResultStore keeps them (FLIP-194): recorded before the job's cleanup starts,
    /// so that a job manager taking over after a crash finishes the cleanup and answers the submitter instead of
    /// forgetting the job, and answers later requests that it ended. At most [`ENDED_JOBS_KEPT`] clean ones stay.
    ended: Mutex<BTreeMap<JobId, EndedJob>>,
    /// The fault hook every node's [`crate::faults::Faults`] asks.
    pub hook: FaultHookRef,
}

/// How a job ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum JobEnd {
    Finished,
    Canceled,
    Failed,
}

/// The clean jobs the store remembers: beyond them the oldest is forgotten.
const ENDED_JOBS_KEPT: usize = 64;

/// What is left to delete of an ended job: snapshots that can no longer complete, subsumed ones whose deletion was
/// in flight, and the job's whole checkpoint directory if the retention policy says so.
#[derive(Clone, Debug)]
pub struct Cleanup {
    /// Snapshot directories to delete, by id.
    pub dirs: Vec<(CheckpointId, PathBuf)>,
    /// The job's checkpoint directory, and whether it goes entirely (else only what no retained checkpoint owns).
    pub job_dir: Option<(PathBuf, bool)>,
    /// The checkpoints the retention policy keeps, and the first id the job never used.
    pub retained: Vec<CheckpointId>,
    pub next_id: CheckpointId,
    /// Files of `shared/` that no retained checkpoint refers to (uploaded by snapshots that never completed, or let
    /// go by subsumed ones), deleted when the job directory is kept.
    pub shared: Vec<String>,
}

impl Cleanup {
    /// Nothing to delete.
    pub fn nothing() -> Cleanup {
        Cleanup { dirs: Vec::new(), job_dir: None, retained: Vec::new(), next_id: CheckpointId(1), shared: Vec::new() }
    }
}

/// Where a job's submitter waits for its outcome.
pub type Reply = tokio::sync::oneshot::Sender<Result<JobOutcome, JobError>>;

/// An ended job in the store.
pub struct EndedJob {
    pub how: JobEnd,
    /// The submitter's answer, until it is given (once the cleanup is done).
    pub answer: Option<(Reply, Result<JobOutcome, JobError>)>,
    /// What is left to delete; `None` once the job is clean.
    pub cleanup: Option<Cleanup>,
    /// When it ended, in the store's order: the oldest clean entries are forgotten first.
    pub order: u64,
}

/// A submitted job, as the high-availability store keeps it.
pub struct StoredJob {
    pub graph: Arc<JobGraph>,
    pub restore: Option<RestoreRequest>,
    pub reply: Option<tokio::sync::oneshot::Sender<Result<JobOutcome, JobError>>>,
    /// The next deployment attempt: attempts never repeat, across job managers too.
    pub next_attempt: u32,
    /// What the job's checkpoint coordinator last made durable; `None` before its first deployment.
    pub snapshots: Option<Durable>,
    /// Completed checkpoints that live only in the job manager's memory (no checkpoint directory), by id.
    pub in_memory: BTreeMap<CheckpointId, Arc<LoadedCheckpoint>>,
}

impl Directory {
    pub fn new(hook: FaultHookRef) -> Self {
        Directory {
            job_manager: Mutex::new(None),
            epoch: Default::default(),
            jobs: Mutex::new(BTreeMap::new()),
            ended: Mutex::new(BTreeMap::new()),
            hook,
        }
    }

    pub fn job_manager(&self) -> Option<Sender<JobManagerMessage>> {
        self.job_manager.lock().expect("directory lock").as_ref().map(|(_, mailbox)| mailbox.clone())
    }

    /// The current job manager's epoch (0 before any started).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set_job_manager(&self, mailbox: Sender<JobManagerMessage>) -> u64 {
        let epoch = self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        *self.job_manager.lock().expect("directory lock") = Some((epoch, mailbox));
        epoch
    }

    fn store_job(&self, job: JobId, stored: StoredJob) {
        self.jobs.lock().expect("directory lock").insert(job, stored);
    }

    /// Records what job `job`'s coordinator made durable, before the job manager acts on it.
    fn store_snapshots(&self, job: JobId, durable: Durable) {
        if let Some(stored) = self.jobs.lock().expect("directory lock").get_mut(&job) {
            stored.in_memory.retain(|id, _| durable.retained.contains(id));
            stored.snapshots = Some(durable);
        }
    }

    /// Records a completed checkpoint kept in the job manager's memory.
    fn store_in_memory(&self, job: JobId, id: CheckpointId, checkpoint: Arc<LoadedCheckpoint>) {
        if let Some(stored) = self.jobs.lock().expect("directory lock").get_mut(&job) {
            stored.in_memory.insert(id, checkpoint);
        }
    }

    /// The jobs in the store, for a new job manager to take over.
    fn job_ids(&self) -> Vec<JobId> {
        self.jobs.lock().expect("directory lock").keys().copied().collect()
    }

    /// What the store holds of job `job`, for a job manager taking it over; the submitter's reply channel stays.
    fn stored(&self, job: JobId) -> Option<StoredView> {
        self.jobs.lock().expect("directory lock").get(&job).map(|stored| StoredView {
            graph: stored.graph.clone(),
            restore: stored.restore.clone(),
            next_attempt: stored.next_attempt,
            snapshots: stored.snapshots.clone(),
            in_memory: stored.in_memory.clone(),
        })
    }

    /// Records that job `job` ended `how` with `result`, and what is left to delete: it leaves the running jobs,
    /// and its submitter is answered once [`Directory::cleaned`] says the cleanup is done.
    fn end_job(&self, job: JobId, how: JobEnd, result: Result<JobOutcome, JobError>, cleanup: Cleanup) {
        let reply = self.jobs.lock().expect("directory lock").remove(&job).and_then(|stored| stored.reply);
        let answer = reply.map(|reply| (reply, result));
        let mut ended = self.ended.lock().expect("directory lock");
        let order = ended.values().map(|e| e.order + 1).max().unwrap_or(0);
        ended.insert(job, EndedJob { how, answer, cleanup: Some(cleanup), order });
    }

    /// Job `job`'s cleanup is done: its submitter gets the answer, and the entry stays (bounded) to say it ended.
    fn cleaned(&self, job: JobId) {
        let mut ended = self.ended.lock().expect("directory lock");
        if let Some(entry) = ended.get_mut(&job) {
            entry.cleanup = None;
            if let Some((reply, result)) = entry.answer.take() {
                let _ = reply.send(result);
            }
        }
        while ended.values().filter(|e| e.cleanup.is_none()).count() > ENDED_JOBS_KEPT {
            let oldest = ended.iter().filter(|(_, e)| e.cleanup.is_none()).min_by_key(|(_, e)| e.order);
            let Some(oldest) = oldest.map(|(id, _)| *id) else { break };
            ended.remove(&oldest);
        }
    }

    /// How job `job` ended, if the store knows it did.
    fn ended(&self, job: JobId) -> Option<JobEnd> {
        self.ended.lock().expect("directory lock").get(&job).map(|e| e.how)
    }

    /// Ended jobs whose cleanup a dead job manager did not finish, with what is left.
    fn unclean(&self) -> Vec<(JobId, Cleanup)> {
        let ended = self.ended.lock().expect("directory lock");
        ended.iter().filter_map(|(id, e)| e.cleanup.clone().map(|c| (*id, c))).collect()
    }

    /// Records the next deployment attempt of a job.
    fn set_next_attempt(&self, job: JobId, attempt: u32) {
        if let Some(stored) = self.jobs.lock().expect("directory lock").get_mut(&job) {
            stored.next_attempt = attempt;
        }
    }
}

/// A job as the store holds it, without its reply channel.
pub struct StoredView {
    pub graph: Arc<JobGraph>,
    pub restore: Option<RestoreRequest>,
    pub next_attempt: u32,
    pub snapshots: Option<Durable>,
    pub in_memory: BTreeMap<CheckpointId, Arc<LoadedCheckpoint>>,
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
        Self::start_with_faults(spec, storage, faults::none())
    }

    /// Starts a cluster whose fault points call `faults` (simulation only).
    pub fn start_with_faults(spec: &ClusterSpec, storage: StorageRef, faults: FaultHookRef) -> Cluster {
        assert!(spec.task_managers >= 1 && spec.slots_per_task_manager >= 1);
        let directory = Arc::new(Directory::new(faults));
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
                let local_dir = spec.local_dir.join(&name);
                let init: NodeInit = Arc::new(move || {
                    Box::pin(task_manager::run(tm_name.clone(), slots, local_dir.clone(), tm_directory.clone()))
                });
                Node::start(&name, init)
            })
            .collect();
        Cluster { directory, job_manager, task_managers }
    }

    pub fn job_manager(&self) -> &Node {
        &self.job_manager
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
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

    /// Takes a savepoint of a running job into `target_dir` (default:
    /// `state.savepoints.dir`); with `stop`, the job finishes once it completed. Returns the
    /// savepoint's directory.
    pub async fn trigger_savepoint(
        &self,
        job: JobId,
        target_dir: Option<std::path::PathBuf>,
        stop: bool,
    ) -> Result<std::path::PathBuf, JobError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(JobManagerMessage::TriggerSavepoint { job, target_dir, stop, reply }).await?;
        done.await.map_err(|_| JobError::JobManagerUnreachable)?
    }

    /// A running job's status.
    pub async fn status(&self, job: JobId) -> Result<messages::JobStatus, JobError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(JobManagerMessage::Status { job, reply }).await?;
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
