//! Protocol monitors: the checkpoint and commit protocol's rules, checked at each fault point as the engine reaches
//! it (TigerBeetle-style), so a rule broken for an instant is caught even when nothing crashes afterwards to expose
//! it. Every fault point passes through the run's recorder, which hands it here before the injector decides its
//! fate; a broken rule becomes a violation stamped with the simulated time it happened at.
//!
//! The rules, each an invariant of its own (always checked, whatever a scenario lists):
//!
//! - [`Invariant::CommitsFollowCompletion`]: a sink commits (on notification, or when a restored subtask recovers
//!   pending transactions) only the transaction of a snapshot at or below the newest one its job completed, or
//!   the one it was restored from: anything newer may still be aborted, and its output replayed. (A job without
//!   checkpointing commits once, at the end of its input, under the sentinel `END_OF_INPUT_COMMIT`.)
//! - [`Invariant::NoCompletionAfterAbort`]: a snapshot aborted or expired never completes afterwards.
//! - [`Invariant::AcksFollowDurability`]: when a subtask acks, every state file its handles name has its content
//!   fsynced; when the snapshot completes, every such file is durable where `_metadata` says it is (its entry
//!   too: the `_metadata` commit syncs the directory), or, for an embedded store's new file, in `shared/`.
//! - [`Invariant::IdsTriggeredOnce`]: each snapshot id is triggered once per job, above every id the job
//!   triggered before and above the snapshot it was restored from: ids name transactions and directories, so a
//!   reused id commits or deletes what another snapshot owns.
//! - [`Invariant::ConsistentCut`]: as a checkpoint completes, its state, decoded ([`crate::cut`]), is what the
//!   workload's reference model gives for exactly the input its sources recorded (exactly-once runs of workloads
//!   that check cuts; savepoints are checked at the end of the run).

use crate::invariants::{Invariant, Violation};
use crate::storage::SimStorage;
use crate::workload::Prepared;
use engine::faults::{CheckpointPhase, FaultPoint, JobEvent, PointKind, SinkStep, SnapshotClass};
use engine::ids::{CheckpointId, JobId};
use engine::seam::runtime;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The invariants the monitors check, in every scenario.
pub const PROTOCOL: [Invariant; 5] = Invariant::PROTOCOL;

/// What the monitors know of one job.
#[derive(Default)]
struct JobProtocol {
    /// Every id the job triggered.
    triggered: BTreeSet<CheckpointId>,
    /// The newest snapshot the job completed.
    completed: Option<CheckpointId>,
    /// The newest snapshot a deployment of the job was restored from.
    restored: Option<CheckpointId>,
    /// Snapshots aborted or expired, and which.
    ended: BTreeMap<CheckpointId, CheckpointPhase>,
    /// The files each pending snapshot's acks named.
    acked: BTreeMap<CheckpointId, Vec<PathBuf>>,
}

impl JobProtocol {
    /// The newest snapshot whose transactions the job may commit.
    fn committable(&self) -> Option<CheckpointId> {
        self.completed.max(self.restored)
    }
}

/// The monitors of one run.
pub struct Monitor {
    seed: u64,
    storage: SimStorage,
    /// The consistent-cut oracle: the workload, and the directory job directories are in.
    cuts: Option<(Arc<dyn Prepared>, PathBuf)>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<JobId, JobProtocol>,
    violations: Vec<Violation>,
}

impl State {
    fn violated(&mut self, seed: u64, invariant: Invariant, event: String) {
        let time_ms = runtime::elapsed().as_millis() as u64;
        self.violations.push(Violation { invariant, seed, time_ms, event });
    }
}

impl Monitor {
    pub fn new(seed: u64, storage: SimStorage) -> Monitor {
        Monitor { seed, storage, cuts: None, state: Mutex::new(State::default()) }
    }

    /// Also checks each completed checkpoint under `checkpoints/<job>/chk-<n>` against `workload`'s cut oracle.
    pub fn with_cut_oracle(self, workload: Arc<dyn Prepared>, checkpoints: PathBuf) -> Monitor {
        Monitor { cuts: Some((workload, checkpoints)), ..self }
    }

    /// Checks the savepoint in `dir` against the cut oracle, if there is one.
    pub fn check_savepoint(&self, dir: &Path) {
        let Some((workload, _)) = &self.cuts else { return };
        if let Some(problem) = Self::check_cut(workload.as_ref(), &self.storage, dir) {
            self.state.lock().expect("monitor lock").violated(self.seed, Invariant::ConsistentCut, problem);
        }
    }

    /// The cut oracle's verdict on the snapshot in `dir`, if it breaks the rule.
    pub fn check_cut(workload: &dyn Prepared, storage: &SimStorage, dir: &Path) -> Option<String> {
        match crate::cut::read(storage, dir) {
            Ok(Some(cut)) => workload.check_cut(&cut).map(|problem| format!("{}: {problem}", dir.display())),
            Ok(None) => None,
            Err(error) => Some(format!("{}: cannot be read: {error}", dir.display())),
        }
    }

    /// The rules broken so far, in the order they broke.
    pub fn violations(&self) -> Vec<Violation> {
        self.state.lock().expect("monitor lock").violations.clone()
    }

    /// Whether the rules look at points of `kind` at all: the per-batch points (most of a run's) are not even
    /// passed on by the recorder.
    pub fn concerns(kind: PointKind) -> bool {
        match kind {
            PointKind::Snapshot | PointKind::Acknowledge | PointKind::Sink | PointKind::Job => true,
            PointKind::Rpc
            | PointKind::Barrier
            | PointKind::SnapshotAsync
            | PointKind::Discard
            | PointKind::Recovery
            | PointKind::RestoreState
            | PointKind::Deploy
            | PointKind::Batch
            | PointKind::Interleave => false,
        }
    }

    /// Checks the rules at `point`, reached on `node`.
    pub fn observe(&self, node: &str, point: &FaultPoint<'_>) {
        if !Self::concerns(point.kind()) {
            return;
        }
        let seed = self.seed;
        let mut state = self.state.lock().expect("monitor lock");
        let state = &mut *state;
        match *point {
            FaultPoint::Snapshot { job, id, class, phase } => {
                let protocol = state.jobs.entry(job).or_default();
                match phase {
                    CheckpointPhase::Triggered => {
                        let bound = protocol.triggered.last().copied().max(protocol.restored);
                        let again = protocol.triggered.contains(&id);
                        protocol.triggered.insert(id);
                        if again {
                            let event = format!("{class:?} {id} of job {job} was triggered a second time");
                            state.violated(seed, Invariant::IdsTriggeredOnce, event);
                        } else if let Some(bound) = bound.filter(|bound| id <= *bound) {
                            let event = format!(
                                "{class:?} {id} of job {job} was triggered after {bound} (an id it triggered or was \
                                 restored from): ids must increase along the lineage"
                            );
                            state.violated(seed, Invariant::IdsTriggeredOnce, event);
                        }
                    }
                    CheckpointPhase::Aborted | CheckpointPhase::Expired => {
                        protocol.ended.entry(id).or_insert(phase);
                        protocol.acked.remove(&id);
                    }
                    CheckpointPhase::Completed => {
                        protocol.completed = protocol.completed.max(Some(id));
                        let ended = protocol.ended.get(&id).copied();
                        let files = protocol.acked.remove(&id).unwrap_or_default();
                        if let Some(ended) = ended {
                            let event = format!("{class:?} {id} of job {job} completed after it was {ended:?}");
                            state.violated(seed, Invariant::NoCompletionAfterAbort, event);
                        }
                        if let Some((workload, root)) = &self.cuts
                            && class == SnapshotClass::Checkpoint
                        {
                            let dir = engine::checkpoint::storage::checkpoint_dir(
                                &engine::checkpoint::storage::job_dir(root, job),
                                id,
                            );
                            if let Some(problem) = Self::check_cut(workload.as_ref(), &self.storage, &dir) {
                                state.violated(seed, Invariant::ConsistentCut, problem);
                            }
                        }
                        for file in files {
                            if let Some(problem) = self.not_durable_at_completion(&file) {
                                let event = format!("{class:?} {id} of job {job} completed, but {problem}");
                                state.violated(seed, Invariant::AcksFollowDurability, event);
                            }
                        }
                    }
                    CheckpointPhase::Aligning
                    | CheckpointPhase::Acked
                    | CheckpointPhase::SharedRegistered
                    | CheckpointPhase::WritingMetadata
                    | CheckpointPhase::Notified
                    | CheckpointPhase::Finishing => {}
                }
            }
            FaultPoint::Acknowledge { job, id, task, files } => {
                // The ack of a snapshot that ended already acknowledges nothing: its directory may be gone.
                let ended = state.jobs.get(&job).is_some_and(|p| p.ended.contains_key(&id));
                for file in files.iter().filter(|_| !ended) {
                    let problem = match self.storage.durability(file) {
                        None => Some("does not exist"),
                        Some(durability) if !durability.content => Some("holds unsynced bytes"),
                        Some(_) => None,
                    };
                    if let Some(problem) = problem {
                        let event =
                            format!("{task} on {node} acked snapshot {id} while `{}` {problem}", file.display());
                        state.violated(seed, Invariant::AcksFollowDurability, event);
                    }
                }
                state.jobs.entry(job).or_default().acked.entry(id).or_default().extend(files.iter().cloned());
            }
            // Without checkpointing a sink commits what it wrote once its input ends, under a sentinel id.
            FaultPoint::Sink { id: engine::operators::two_phase::END_OF_INPUT_COMMIT, .. } => {}
            FaultPoint::Sink { job, task, id, step: step @ (SinkStep::Commit | SinkStep::RecoverCommit) } => {
                let committable = state.jobs.get(&job).and_then(JobProtocol::committable);
                if committable.is_none_or(|newest| id > newest) {
                    let newest = committable.map_or("none".to_string(), |c| c.to_string());
                    let event = format!(
                        "{task} on {node} commits the transaction of snapshot {id} ({step:?}), but the newest snapshot \
                         job {job} completed or was restored from is {newest}"
                    );
                    state.violated(seed, Invariant::CommitsFollowCompletion, event);
                }
            }
            FaultPoint::Job { job, event: JobEvent::Deployed, restored: Some((_, id)) } => {
                let protocol = state.jobs.entry(job).or_default();
                protocol.restored = protocol.restored.max(Some(id));
            }
            FaultPoint::Job { .. }
            | FaultPoint::Sink { .. }
            | FaultPoint::Rpc { .. }
            | FaultPoint::Barrier { .. }
            | FaultPoint::SnapshotAsync { .. }
            | FaultPoint::Discard { .. }
            | FaultPoint::Recovery { .. }
            | FaultPoint::RestoreState { .. }
            | FaultPoint::Deploy { .. }
            | FaultPoint::Batch { .. }
            | FaultPoint::Interleave { .. } => {}
        }
    }

    /// Why acked state file `file` is not durable as its completed snapshot's `_metadata` says, if it is not. An
    /// embedded store's new file has moved from the snapshot's directory into the job's `shared/`.
    fn not_durable_at_completion(&self, file: &Path) -> Option<String> {
        let shared = file
            .parent()
            .zip(file.file_name())
            .map(|(dir, name)| engine::state::snapshot::shared_path(dir, &name.to_string_lossy()));
        let (path, durability) = match self.storage.durability(file) {
            Some(durability) => (file.to_path_buf(), durability),
            None => match shared.and_then(|path| self.storage.durability(&path).map(|d| (path, d))) {
                Some(found) => found,
                None => return Some(format!("the state file `{}` it acked is gone", file.display())),
            },
        };
        match (durability.content, durability.entry) {
            (true, true) => None,
            (false, _) => Some(format!("the state file `{}` holds unsynced bytes", path.display())),
            (true, false) => Some(format!("the state file `{}` has no durable directory entry", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::ids::{SubtaskIndex, TaskRef, VertexId};
    use engine::seam::storage::Storage;

    const JOB: JobId = JobId(7);
    const TASK: TaskRef = TaskRef { vertex: VertexId(1), subtask: SubtaskIndex(0) };

    fn snapshot(id: u64, phase: CheckpointPhase) -> FaultPoint<'static> {
        FaultPoint::Snapshot { job: JOB, id: CheckpointId(id), class: SnapshotClass::Checkpoint, phase }
    }

    fn commit(id: u64, step: SinkStep) -> FaultPoint<'static> {
        FaultPoint::Sink { job: JOB, task: TASK, id: CheckpointId(id), step }
    }

    /// The invariants `points`, in order, break.
    fn broken(monitor: &Monitor, points: &[FaultPoint<'_>]) -> Vec<Invariant> {
        for point in points {
            monitor.observe("jm", point);
        }
        monitor.violations().iter().map(|v| v.invariant).collect()
    }

    fn monitor() -> Monitor {
        Monitor::new(3, SimStorage::new())
    }

    #[test]
    fn a_commit_waits_for_its_snapshot_to_complete_or_be_restored() {
        use CheckpointPhase::{Completed, Triggered};
        let in_order = [snapshot(1, Triggered), snapshot(1, Completed), commit(1, SinkStep::Commit)];
        assert_eq!(broken(&monitor(), &in_order), []);
        let early =
            [snapshot(1, Triggered), snapshot(2, Triggered), snapshot(1, Completed), commit(2, SinkStep::Commit)];
        assert_eq!(broken(&monitor(), &early), [Invariant::CommitsFollowCompletion]);
        // A job restored from another's snapshot 5 may commit what that snapshot left pending.
        let restored =
            FaultPoint::Job { job: JOB, event: JobEvent::Deployed, restored: Some((JobId(1), CheckpointId(5))) };
        assert_eq!(broken(&monitor(), &[restored, commit(5, SinkStep::RecoverCommit)]), []);
        assert_eq!(
            broken(&monitor(), &[restored, commit(6, SinkStep::RecoverCommit)]),
            [Invariant::CommitsFollowCompletion]
        );
    }

    #[test]
    fn nothing_completes_after_its_abort_or_expiry() {
        use CheckpointPhase::{Aborted, Completed, Expired, Triggered};
        for ended in [Aborted, Expired] {
            let points = [snapshot(1, Triggered), snapshot(1, ended), snapshot(1, Completed)];
            assert_eq!(broken(&monitor(), &points), [Invariant::NoCompletionAfterAbort]);
        }
        let other = [snapshot(1, Triggered), snapshot(2, Triggered), snapshot(1, Expired), snapshot(2, Completed)];
        assert_eq!(broken(&monitor(), &other), []);
    }

    #[test]
    fn ids_are_triggered_once_and_above_the_restored_snapshot() {
        use CheckpointPhase::Triggered;
        assert_eq!(broken(&monitor(), &[snapshot(1, Triggered), snapshot(2, Triggered)]), []);
        assert_eq!(
            broken(&monitor(), &[snapshot(1, Triggered), snapshot(1, Triggered)]),
            [Invariant::IdsTriggeredOnce]
        );
        assert_eq!(
            broken(&monitor(), &[snapshot(3, Triggered), snapshot(2, Triggered)]),
            [Invariant::IdsTriggeredOnce]
        );
        let restored =
            FaultPoint::Job { job: JOB, event: JobEvent::Deployed, restored: Some((JobId(1), CheckpointId(4))) };
        assert_eq!(broken(&monitor(), &[restored, snapshot(4, Triggered)]), [Invariant::IdsTriggeredOnce]);
        assert_eq!(broken(&monitor(), &[restored, snapshot(5, Triggered)]), []);
    }

    #[test]
    fn an_ack_names_fsynced_files_and_completion_needs_their_entries_durable() {
        let storage = SimStorage::new();
        let dir = Path::new("/checkpoints/job/chk-1");
        let file = dir.join("state-1-0-0");
        let poll = |future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>| {
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            let mut future = future;
            assert!(future.as_mut().poll(&mut context).is_ready(), "the simulated storage awaited");
        };
        let files = [file.clone()];
        let ack = FaultPoint::Acknowledge { job: JOB, id: CheckpointId(1), task: TASK, files: &files };
        // Written, not fsynced: the ack is early.
        poll(Box::pin(async {
            storage.create_dir_all(dir).await.unwrap();
            let mut handle = storage.create(&file).await.unwrap();
            handle.write_all(b"state").await.unwrap();
        }));
        let early = Monitor::new(3, storage.clone());
        assert_eq!(broken(&early, &[ack]), [Invariant::AcksFollowDurability]);
        // Fsynced: the ack is in time, but completing before the directory is synced is not.
        poll(Box::pin(async {
            let mut handle = storage.create(&file).await.unwrap();
            handle.write_all(b"state").await.unwrap();
            handle.sync().await.unwrap();
        }));
        let monitor = Monitor::new(3, storage.clone());
        assert_eq!(broken(&monitor, &[ack]), []);
        assert_eq!(broken(&monitor, &[snapshot(1, CheckpointPhase::Completed)]), [Invariant::AcksFollowDurability]);
        poll(Box::pin(async { storage.sync_dir(dir).await.unwrap() }));
        let monitor = Monitor::new(3, storage.clone());
        assert_eq!(broken(&monitor, &[ack, snapshot(1, CheckpointPhase::Completed)]), []);
    }
}
