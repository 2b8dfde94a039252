//! Placing a job's subtasks on task managers and deploying them, restored from what the coordinator says is the
//! newest completed snapshot.
//!
//! Slot sharing as in Flink: slot `k` hosts subtask `k` of every vertex, so a job needs as many slots as its
//! highest parallelism; slots go to the registered task managers round robin, in the order of their names, the
//! number in a name compared as a number (`tm-2` before `tm-10`). [`host_for_slot`] is the one function that says
//! where a slot runs; the fault hook hears the host of every RPC from the deployment itself.

use super::recovery::RestoreSource;
use super::rpc::ClusterReporter;
use super::{DeployedTask, JobManager, Phase, RECOVERY_RETRY_MS};
use crate::checkpoint::restore::{self, RestorePlan};
use crate::cluster::JobEnd;
use crate::cluster::messages::{JobManagerMessage, TaskDeployment, TaskManagerMessage};
use crate::error::TaskFailure;
use crate::faults::{Fate, FaultPoint, Faults};
use crate::ids::{CheckpointId, JobId, SubtaskIndex, SubtaskInfo, TaskRef, VertexId};
use crate::seam::runtime;
use crate::state::snapshot::SubtaskSnapshot;
use crate::task::context::{BuildContext, DeployMode, TaskServices};
use crate::task::control;
use std::any::Any;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Orders task manager names as people read them: the trailing number compared as a number.
fn natural_key(name: &str) -> (&str, u64, &str) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, number) = name.split_at(name.len() - digits);
    (stem, number.parse().unwrap_or(0), name)
}

/// The task manager that hosts slot `slot`, given the registered task managers' names.
pub fn host_for_slot(slot: u32, hosts: &[String]) -> &str {
    assert!(!hosts.is_empty(), "placing a slot needs a task manager");
    let mut ordered: Vec<&String> = hosts.iter().collect();
    ordered.sort_by_key(|name| natural_key(name));
    ordered[slot as usize % ordered.len()]
}

impl JobManager {
    /// The job's restore source cannot be read now: deployment is tried again a little later.
    fn retry_recovery(&mut self, job: JobId) {
        let retry_at_ms = self.now_ms() + RECOVERY_RETRY_MS;
        if let Some(run) = self.jobs.get_mut(&job) {
            run.phase = Phase::Recovering { retry_at_ms };
        }
        self.schedule_wake(job);
    }

    /// Deploys every subtask of the job if the registered slots suffice.
    pub(super) async fn try_deploy(&mut self, job: JobId) {
        let Some(run) = self.jobs.get(&job) else { return };
        let graph = run.graph.clone();
        let hosts: Vec<String> = self.task_managers.keys().cloned().collect();
        let needed = graph.slots_needed();
        let mut wanted: BTreeMap<&str, u32> = BTreeMap::new();
        if !hosts.is_empty() {
            for slot in 0..needed {
                *wanted.entry(host_for_slot(slot, &hosts)).or_default() += 1;
            }
        }
        let enough = !hosts.is_empty() && wanted.iter().all(|(name, &n)| self.task_managers[*name].slots >= n);
        if !enough {
            self.schedule_wake(job);
            return;
        }

        // The state to start from: the newest completed snapshot, else the one the job was started from.
        let source = match self.restore_source(job).await {
            Ok(source) => source,
            Err(error) if error.is_transient() => {
                tracing::info!(target: "weir::trace", %job, %error, "cannot read the snapshot to restore from; trying again");
                self.retry_recovery(job);
                return;
            }
            Err(error) => {
                self.terminate(job, JobEnd::Failed, Err(error.into())).await;
                return;
            }
        };
        // A deployment aborts the transactions of every snapshot newer than the one it restores from. One of those
        // whose `_metadata` is still there (a checkpoint whose write failed after its rename, or that a dead job
        // manager wrote but never recorded) would be left for a user to resume from, its transactions gone: it
        // must be durably deleted first.
        let restoring = match &source {
            RestoreSource::Snapshot(checkpoint) => checkpoint.metadata.checkpoint_id,
            RestoreSource::Nothing => CheckpointId(0),
        };
        let run = self.jobs.get_mut(&job).expect("checked above");
        run.discards.retain(|discarding| !discarding.handle.is_finished());
        if let Some(newer) = run.discards.iter().filter_map(|d| d.newest).filter(|&id| id > restoring).max() {
            tracing::info!(target: "weir::trace", %job, checkpoint = %newer, restoring = %restoring, "waiting for a newer snapshot's deletion before restoring");
            self.retry_recovery(job);
            return;
        }
        let run = self.jobs.get(&job).expect("checked above");
        let (plan, mode): (RestorePlan, DeployMode) = match &source {
            RestoreSource::Snapshot(checkpoint) => {
                let (id, path) = (checkpoint.metadata.checkpoint_id, checkpoint.metadata_path.display().to_string());
                tracing::info!(target: "weir::trace", %job, checkpoint = %id, %path, "restoring state");
                let mode = match run.coordinator.as_ref().and_then(|c| c.stopped_at()) {
                    Some(stop) => DeployMode::FinishAt(stop),
                    None => DeployMode::Run,
                };
                // A checkpoint of this job's own that it still retains: its stores may build their next
                // incremental checkpoint on its files. Anything else (`-s`, a savepoint) is not the job's to share.
                let owned = checkpoint.metadata.job_id == job
                    && checkpoint.metadata.kind == crate::checkpoint::metadata::SnapshotKind::Checkpoint
                    && run.coordinator.as_ref().is_some_and(|c| c.retained().contains(&id));
                match restore::plan(
                    &self.storage,
                    checkpoint,
                    &graph.layout(),
                    run.allow_non_restored_state,
                    owned,
                    &self.faults,
                )
                .await
                {
                    Ok(plan) => (plan, mode),
                    Err(error) if error.is_transient() => {
                        tracing::info!(target: "weir::trace", %job, %error, "cannot read the state to restore; trying again");
                        self.retry_recovery(job);
                        return;
                    }
                    Err(error) => {
                        self.terminate(job, JobEnd::Failed, Err(error.into())).await;
                        return;
                    }
                }
            }
            RestoreSource::Nothing => (
                graph.vertices.iter().map(|v| vec![SubtaskSnapshot::default(); v.parallelism as usize]).collect(),
                DeployMode::Run,
            ),
        };

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
        run.started_at.get_or_insert_with(runtime::now);
        let mut deployments = Vec::new();
        let mut plan = plan;
        for vertex in &graph.vertices {
            for index in 0..vertex.parallelism {
                let subtask = SubtaskIndex(index);
                let task = TaskRef { vertex: vertex.id, subtask };
                let host = host_for_slot(index, &hosts).to_string();
                let (commands, command_receiver) = control::command_channel();
                // The subtask's fault points are on its task manager, shared with its reporter: once it crashes
                // there, no report leaves.
                let task_faults = Faults::on(&host, self.directory.hook.clone());
                let reporter = ClusterReporter {
                    directory: self.directory.clone(),
                    faults: task_faults.clone(),
                    job,
                    attempt: run.attempt,
                    task,
                    host: host.clone(),
                };
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
                    // The task manager sets its own local directory.
                    local_dir: PathBuf::new(),
                    restored,
                    prepared: Default::default(),
                    mode,
                    inputs: inputs.remove(&(vertex.id, index)).unwrap_or_default(),
                    outputs: outputs.remove(&(vertex.id, index)).unwrap_or_default(),
                    services: TaskServices {
                        commands: command_receiver,
                        reporter: Arc::new(reporter),
                        checkpoints: run.writer.clone(),
                        faults: task_faults,
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
        let restored = match &source {
            RestoreSource::Snapshot(checkpoint) => {
                Some((checkpoint.metadata.job_id, checkpoint.metadata.checkpoint_id))
            }
            RestoreSource::Nothing => None,
        };
        let attempt = run.attempt;
        let subtasks = run.tasks.len();
        // Attempts never repeat, across job managers too: reports of older ones are ignored.
        self.directory.set_next_attempt(job, attempt.0 + 1);
        self.job_event(job, crate::faults::JobEvent::Deployed, restored).await;
        for (host, deployment) in deployments {
            let task = TaskRef { vertex: deployment.vertex, subtask: deployment.subtask };
            match self.faults.at(FaultPoint::Deploy { task, host: &host }) {
                Fate::Proceed | Fate::Drop => {}
                Fate::Delay(delay) => runtime::sleep(delay).await,
                // A deployment that fails is a subtask that failed before it started: the job fails over.
                Fate::Fail => {
                    tracing::info!(target: "weir::trace", %task, task_manager = %host, "fault: deployment failed");
                    let vertex_name = deployment.context.info.vertex_name.clone();
                    let error = TaskFailure::Injected { vertex: vertex_name, subtask: task.subtask };
                    let failed = JobManagerMessage::TaskFinished {
                        job,
                        attempt,
                        vertex: task.vertex,
                        subtask: task.subtask,
                        result: Err(error.into()),
                    };
                    let mailbox = self.mailbox.clone();
                    runtime::spawn(async move {
                        let _ = mailbox.send(failed).await;
                    });
                    continue;
                }
                Fate::Crash => return std::future::pending().await,
            }
            let Some(task_manager) = self.task_managers.get(&host) else { continue };
            if task_manager.mailbox.send(TaskManagerMessage::Deploy(Box::new(deployment))).await.is_err() {
                // The task manager died since registering; the subtask's peers find their channels closed and
                // fail, which restarts the job.
                tracing::warn!(task_manager = %host, "deployment to a dead task manager");
            }
        }
        tracing::info!(%job, attempt = attempt.0, subtasks, ?mode, "job deployed");
        self.schedule_wake(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn slots_go_round_robin_in_the_order_people_read_task_manager_names() {
        let hosts =
            names(&["tm-10", "tm-2", "tm-0", "tm-1", "tm-11", "tm-3", "tm-4", "tm-5", "tm-6", "tm-7", "tm-8", "tm-9"]);
        let placed: Vec<&str> = (0..13).map(|slot| host_for_slot(slot, &hosts)).collect();
        assert_eq!(
            placed,
            ["tm-0", "tm-1", "tm-2", "tm-3", "tm-4", "tm-5", "tm-6", "tm-7", "tm-8", "tm-9", "tm-10", "tm-11", "tm-0"]
        );
    }

    #[test]
    fn placement_does_not_depend_on_the_order_hosts_registered_in() {
        let a = names(&["tm-1", "tm-0", "tm-2"]);
        let b = names(&["tm-2", "tm-1", "tm-0"]);
        for slot in 0..9 {
            assert_eq!(host_for_slot(slot, &a), host_for_slot(slot, &b));
        }
    }
}
