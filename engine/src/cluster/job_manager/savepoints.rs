//! Savepoint and stop-with-savepoint requests: the coordinator decides whether one may be taken now; this picks
//! its directory, `savepoint-<shortjobid>-<id>` under the target, and keeps the requester's reply channel until the
//! savepoint completes or is aborted (see `actions.rs`).
//!
//! A stop's savepoint ends the job once it completes: sinks commit up to it, nothing after it is checkpointed or
//! committed, and this holds through failovers and a job manager's crash (the coordinator makes the stop durable).
//! The requester hears back when the savepoint is complete, not when the job has finished: from then on, the job
//! ends at it whatever happens.

use super::{JobManager, Phase};
use crate::cluster::JobError;
use crate::ids::JobId;
use crate::seam::runtime;
use std::path::PathBuf;
use tokio::sync::oneshot;

impl JobManager {
    pub(super) async fn trigger_savepoint(
        &mut self,
        job: JobId,
        target_dir: Option<PathBuf>,
        stop: bool,
        reply: oneshot::Sender<Result<PathBuf, JobError>>,
    ) {
        let now_ms = self.now_ms();
        let unknown = self.unknown(job);
        let Some(run) = self.jobs.get_mut(&job) else {
            let _ = reply.send(Err(unknown));
            return;
        };
        let (Some(coordinator), Phase::Running) = (run.coordinator.as_mut(), run.phase) else {
            let _ = reply.send(Err(JobError::Setup("a savepoint needs a running job that checkpoints".into())));
            return;
        };
        let Some(base) = target_dir.or_else(|| run.graph.config.checkpoint.savepoint_dir.as_ref().map(PathBuf::from))
        else {
            let _ = reply
                .send(Err(JobError::Setup("no savepoint directory: give one, or set state.savepoints.dir".into())));
            return;
        };
        let id = coordinator.next_id();
        let dir = base.join(format!("savepoint-{}-{:012x}", job.short(), runtime::random_u64() & 0xffff_ffff_ffff));
        let actions = match coordinator.trigger_savepoint(now_ms, dir.clone(), stop) {
            Ok(actions) => actions,
            Err(refused) => {
                let _ = reply.send(Err(JobError::SavepointRefused { job, reason: refused.to_string() }));
                return;
            }
        };
        tracing::info!(target: "weir::trace", %job, savepoint = %id, dir = %dir.display(), stop, "savepoint triggered");
        run.savepoint_replies.insert(id, reply);
        self.decided(job, actions).await;
        self.schedule_wake(job);
    }
}
