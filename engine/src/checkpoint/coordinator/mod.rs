//! The checkpoint coordinator, a pure and deterministic state machine over a job's snapshots (checkpoints,
//! savepoints, stop-with-savepoint and the final checkpoint): it must never do IO, read a clock or block.
//!
//! It is the single source of truth about snapshots. The job manager owns the IO: it feeds the coordinator events
//! (time passing, acks, declines, the outcome of a metadata write, a task's end of data, a failover) and executes
//! the [`Action`]s each call returns, keeping no copy of its own of what is pending, acked, completed or retained.
//! Because the coordinator only sees `now_ms` values handed to it and keeps everything in ordered maps, the same
//! event sequence always yields the same actions, which is what lets the engine test checkpointing under
//! deterministic simulation. What a new job manager needs to take a job over is [`Coordinator::durable`]: the job
//! manager stores it (Flink keeps the same in its high-availability services) after every call, before it executes
//! the call's actions.
//!
//! Apache Flink's `CheckpointCoordinator`, `CheckpointFailureManager` and `CheckpointSubsumeHelper` are the
//! reference; the rules are:
//!
//! - **Periodic schedule.** With `interval_ms = Some(i)` the base interval is `max(i, min_pause_ms)`. The first
//!   periodic checkpoint is due at `start + base`, where start is the time of [`Coordinator::new`] or the last
//!   [`Coordinator::restart`]. After a periodic trigger at `t` the next is due at
//!   `max(t + base, last_completion + min_pause_ms)`, where `last_completion` is the time the last checkpoint
//!   completed. A due trigger is skipped while `pending >= max_concurrent`, and also while anything is pending if
//!   `min_pause_ms > 0`; it is re-evaluated on the next [`Coordinator::poll`]. Only one periodic trigger fires per
//!   poll, so a delayed trigger never causes a burst. Periodic triggers stop while a stop-with-savepoint is in
//!   progress or done, and once the job was told to finish.
//! - **Savepoints** ([`Coordinator::trigger_savepoint`]) ignore interval, min pause and max concurrent, and do not
//!   move the periodic schedule. They are refused while a stop is in progress or done, and once every task reached
//!   the end of its data. A completed savepoint subsumes lower pending checkpoints (not lower pending savepoints,
//!   which belong to users); it is never retained nor discarded (savepoints are the user's), but it is the snapshot
//!   recovery restores from while it is the newest completed one ([`Coordinator::latest_snapshot`]), as in Flink
//!   (FLINK-10354): its sinks may have begun committing, so recovering from an older checkpoint would replay output
//!   already committed. Savepoint failures neither count as checkpoint failures nor reset the count.
//! - **Stop-with-savepoint.** A savepoint with `stop` pauses periodic triggers. If it completes, the job ends at
//!   it: [`Action::Finish`] goes out with it, nothing is triggered or notified after it, and this survives failovers
//!   and job manager changes ([`Durable::stopped_at`]). If it is aborted, the job goes on as before.
//! - **The final checkpoint.** When every task reported the end of its data ([`Coordinator::end_of_data`]), a
//!   final checkpoint is triggered at once (deferred while a stop is in progress: the stop's outcome decides). The
//!   first completed checkpoint with an id at or above it finishes the job with [`Action::Finish`].
//! - **Expiry.** A snapshot triggered at `t` expires at the first poll with `now_ms >= t + timeout_ms`, unless every
//!   task has acked it already (its metadata write is then in progress and only its outcome can end it).
//! - **Completion.** [`Action::Complete`] goes out on the last ack; the snapshot stays pending until the job manager
//!   reports the outcome of the metadata write. On success of a checkpoint, every lower pending snapshot but a
//!   savepoint is subsumed, the checkpoint is retained and retention discards the oldest beyond `num_retained`.
//! - **Failures.** Expiry, a failed metadata write, a failed trigger and declines flagged as counting increment a
//!   counter of consecutive checkpoint failures; a completed checkpoint resets it. When it exceeds
//!   `tolerable_failed_checkpoints`, one [`Action::FailJob`] goes out, naming the failure, and the counter restarts
//!   from 0. A fatal failure (one that would repeat on every attempt) fails the job at once. Subsumption and restart
//!   aborts never count.
//!
//! # Action order
//!
//! Every call returns its actions in this order, so that the job manager can execute them front to back:
//!
//! - [`Coordinator::poll`]: `Abort{Expired}` for each expired snapshot in ascending id order, each immediately
//!   followed by `FailJob` if that failure exceeded the tolerance (and, for an expired stop, the deferred final
//!   `Trigger`); then at most one `Trigger{Periodic}`. Expiry comes first because it can free the slot the trigger
//!   needs.
//! - [`Coordinator::trigger_savepoint`]: exactly one `Trigger{Savepoint}`.
//! - [`Coordinator::ack`]: nothing, or exactly one `Complete`.
//! - [`Coordinator::decline`], [`Coordinator::abort`], [`Coordinator::completion_failed`]: nothing (ignored), or
//!   `Abort` followed by `FailJob` if it failed the job, then the deferred final `Trigger` if a stop was aborted.
//! - [`Coordinator::completion_succeeded`]: `Abort{Subsumed}` for each lower pending checkpoint in ascending id
//!   order, then `Discard` for each checkpoint that fell out of the retained set, oldest first, then `Notify`, then
//!   `Finish` if the job is done. Each `Abort` may be followed by a `DiscardShared` of the files only it referred to,
//!   and the `Discard`s by one `DiscardShared` of the files only they referred to.
//! - [`Coordinator::end_of_data`]: nothing, a final `Trigger`, or a `Finish` for that task (it missed the first).
//! - [`Coordinator::restart`]: `Abort{JobRestart}` for each pending snapshot in ascending id order, each maybe
//!   followed by its `DiscardShared`.
//!
//! In every call, an `Abort` and whatever it fails are followed by a `DiscardShared` of the shared files that only
//! the aborted snapshot referred to, if there are any. Shared files are counted by the [`SharedStateRegistry`]
//! (see `registry.rs`): an ack registers what its state refers to, and an ack that refers to a file the registry
//! already let go aborts its snapshot (`SharedStateGone`, not counted).
//!
//! # Contract with the job manager
//!
//! After every call the job manager stores [`Coordinator::durable`], re-arms its single timer from
//! [`Coordinator::next_wake_ms`] and calls [`Coordinator::poll`] when it fires. `now_ms` must never decrease from
//! one call to the next. An `Abort` can hit a snapshot whose `Complete` is still being written (a newer one
//! completed first, or the job restarted): the job manager must then delete whatever that write produces, and the
//! coordinator ignores the late outcome it reports.

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::registry::{SharedFile, SharedReferences, SharedStateRegistry};
use crate::ids::CheckpointId;
pub use crate::ids::TaskRef;

/// How often and how patiently the coordinator checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorSettings {
    /// The periodic interval; `None` disables periodic checkpoints, while savepoints and the final one still work.
    pub interval_ms: Option<u64>,
    /// The least time between the completion of one checkpoint and the trigger of the next periodic one.
    pub min_pause_ms: u64,
    /// How long a snapshot may wait for its acks before it expires; must be positive.
    pub timeout_ms: u64,
    /// The most snapshots pending at once for a periodic trigger to be allowed; at least 1.
    pub max_concurrent: u32,
    /// How many consecutive failed checkpoints are tolerated before the job is failed.
    pub tolerable_failed_checkpoints: u32,
    /// How many completed checkpoints are kept; at least 1.
    pub num_retained: u32,
}

/// Why a snapshot was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TriggerKind {
    /// Started by the periodic schedule.
    Periodic,
    /// A user's savepoint, written to `dir`; with `stop`, the job ends at it (stop-with-savepoint).
    Savepoint { dir: PathBuf, stop: bool },
    /// Every task reached the end of its data: the checkpoint that commits what is left.
    Final,
}

impl TriggerKind {
    pub fn is_savepoint(&self) -> bool {
        matches!(self, TriggerKind::Savepoint { .. })
    }

    pub fn is_stop(&self) -> bool {
        matches!(self, TriggerKind::Savepoint { stop: true, .. })
    }

    /// What barriers and fault points call this snapshot.
    pub fn class(&self) -> crate::element::SnapshotClass {
        use crate::element::SnapshotClass;
        match self {
            TriggerKind::Periodic => SnapshotClass::Checkpoint,
            TriggerKind::Final => SnapshotClass::Final,
            TriggerKind::Savepoint { stop: false, .. } => SnapshotClass::Savepoint,
            TriggerKind::Savepoint { stop: true, .. } => SnapshotClass::Stop,
        }
    }

    /// The savepoint's directory, for a savepoint.
    pub fn savepoint_dir(&self) -> Option<&PathBuf> {
        match self {
            TriggerKind::Savepoint { dir, .. } => Some(dir),
            TriggerKind::Periodic | TriggerKind::Final => None,
        }
    }
}

/// Why a pending snapshot was given up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// Not every task acked before the timeout.
    Expired,
    /// A task could not take its snapshot.
    Declined { task: TaskRef, reason: String },
    /// A newer snapshot completed, which makes this one useless.
    Subsumed { by: CheckpointId },
    /// Every task acked, but persisting the metadata failed.
    CompletionFailed { reason: String },
    /// The job manager could not start it (its storage location could not be prepared).
    TriggerFailed { reason: String },
    /// The job failed over; the tasks that took part are gone.
    JobRestart,
    /// A task's state refers to a shared file of an older checkpoint that is no longer retained, so its files may
    /// be gone: the task built on a checkpoint it was told completed, and that one was subsumed since.
    SharedStateGone { task: TaskRef, file: String },
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbortReason::Expired => write!(f, "expired before every task acked"),
            AbortReason::Declined { task, reason } => write!(f, "declined by {task}: {reason}"),
            AbortReason::Subsumed { by } => write!(f, "subsumed by {by}"),
            AbortReason::CompletionFailed { reason } => write!(f, "its metadata could not be written: {reason}"),
            AbortReason::TriggerFailed { reason } => write!(f, "it could not be started: {reason}"),
            AbortReason::JobRestart => write!(f, "the job restarted"),
            AbortReason::SharedStateGone { task, file } => {
                write!(f, "{task} refers to shared file `{file}`, which no retained checkpoint holds any more")
            }
        }
    }
}

/// How a failed snapshot counts against the job.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Says nothing about the job's health (Flink's "task not ready").
    NotCounted,
    /// Counts toward `tolerable_failed_checkpoints`.
    Counted,
    /// Would fail the same way on every attempt (state over the jobmanager backend's limit): fails the job for good.
    Fatal,
}

/// What the job manager must do next; see the module docs for the order in which actions come out.
#[derive(Clone, Debug, PartialEq)]
pub enum Action<S> {
    /// Start snapshot `id`: the job manager prepares its storage location and sends the trigger.
    Trigger { id: CheckpointId, kind: TriggerKind },
    /// Every task acked: persist the metadata from `states`, then call `completion_succeeded` or `completion_failed`.
    Complete { id: CheckpointId, kind: TriggerKind, states: BTreeMap<TaskRef, S> },
    /// Give up on `id`: delete its partial files, tell the tasks (best effort), and a savepoint's requester.
    Abort { id: CheckpointId, kind: TriggerKind, reason: AbortReason },
    /// `id` is durable: tell every task `notify_checkpoint_complete(id)`.
    Notify { id: CheckpointId, kind: TriggerKind },
    /// A completed checkpoint fell out of the retained set: delete it.
    Discard { id: CheckpointId },
    /// Delete these files of the job's `shared/` directory: no retained or pending checkpoint refers to them. With
    /// `after`, the files were that aborted snapshot's: if its `_metadata` write (which moves its new files into
    /// `shared/`) is still running, delete them once it has ended.
    DiscardShared { files: Vec<String>, after: Option<CheckpointId> },
    /// The job is done at `last`: tell the tasks (one task, when `task` is set) to commit up to it and exit.
    Finish { last: CheckpointId, task: Option<TaskRef> },
    /// The job must fail: more consecutive failures than tolerated, or a fatal one. It fails over (restarts) unless
    /// `fatal`, which ends it.
    FailJob { consecutive_failures: u32, cause: AbortReason, fatal: bool },
}

/// Why a savepoint cannot be taken now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SavepointRefused {
    #[error("a stop-with-savepoint (savepoint {0}) is in progress")]
    Stopping(CheckpointId),
    #[error("the job was stopped with savepoint {0}")]
    Stopped(CheckpointId),
    #[error("the job already processed all its input and is finishing")]
    Finishing,
}

/// What a job manager taking a job over needs of its snapshots: what Flink keeps in its high-availability
/// services (the checkpoint id counter and the completed checkpoint store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durable {
    /// The id the next trigger takes: past every id handed out, complete or not.
    pub next_id: CheckpointId,
    /// The completed checkpoints still retained, ascending.
    pub retained: Vec<CheckpointId>,
    /// The newest completed savepoint and its directory.
    pub latest_savepoint: Option<(CheckpointId, PathBuf)>,
    /// The savepoint of a completed stop: the job ends at it, whatever happens next.
    pub stopped_at: Option<CheckpointId>,
    /// Savepoints whose `_metadata` is being written, their directories, and whether each ends a stop: a job
    /// manager that dies meanwhile may leave one complete on disk, which its successor must then count as
    /// completed ([`Durable::adopt_savepoint`]) rather than abort under it what it needs to be restored.
    pub completing_savepoints: Vec<(CheckpointId, PathBuf, bool)>,
}

impl Durable {
    /// A job that has no snapshot yet; its first id is `first_id` (past the checkpoint it was restored from).
    pub fn fresh(first_id: CheckpointId) -> Self {
        Durable {
            next_id: first_id,
            retained: Vec::new(),
            latest_savepoint: None,
            stopped_at: None,
            completing_savepoints: Vec::new(),
        }
    }

    /// A savepoint that was being written when the job manager died, found complete on disk: it completed, as the
    /// newest savepoint (and, for a stop's, the end of the job).
    pub fn adopt_savepoint(&mut self, id: CheckpointId, dir: PathBuf, stop: bool) {
        self.completing_savepoints.retain(|(pending, _, _)| *pending != id);
        if self.latest_savepoint.as_ref().is_none_or(|(latest, _)| *latest < id) {
            self.latest_savepoint = Some((id, dir));
            if stop {
                self.stopped_at = Some(id);
            }
        }
    }
}

/// The newest completed snapshot, which recovery restores from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestSnapshot {
    pub id: CheckpointId,
    /// The savepoint's directory, when the newest snapshot is a savepoint.
    pub savepoint_dir: Option<PathBuf>,
}

/// A pending snapshot a task has not acked, for a task that can no longer receive its barrier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unacked {
    pub id: CheckpointId,
    pub kind: TriggerKind,
    pub triggered_at_ms: u64,
}

/// Where a pending snapshot is in its life.
#[derive(Debug)]
enum Phase<S> {
    /// Waiting for acks; holds the states acked so far.
    Acking { acked: BTreeMap<TaskRef, S> },
    /// Every task acked and `Complete` went out, so the job manager is writing the metadata.
    Completing,
}

/// A snapshot that was triggered and has not yet completed or been aborted.
#[derive(Debug)]
struct PendingSnapshot<S> {
    kind: TriggerKind,
    triggered_at_ms: u64,
    deadline_ms: u64,
    phase: Phase<S>,
}

impl<S> PendingSnapshot<S> {
    /// Only a snapshot still waiting for acks can expire: once its metadata write is in progress, cutting it off
    /// would race with the write, so only the write's outcome ends it.
    fn expires_at(&self) -> Option<u64> {
        match self.phase {
            Phase::Acking { .. } => Some(self.deadline_ms),
            Phase::Completing => None,
        }
    }
}

/// Whether the job is being stopped with a savepoint.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Ending {
    Running,
    /// A stop's savepoint is pending.
    Stopping(CheckpointId),
    /// A stop's savepoint completed: the job ends at it.
    Stopped(CheckpointId),
}

/// Decides when snapshots start, complete, expire, get subsumed or discarded, when the job finishes, and when it
/// must fail.
#[derive(Debug)]
pub struct Coordinator<S> {
    settings: CoordinatorSettings,
    tasks: BTreeSet<TaskRef>,
    next_id: CheckpointId,
    pending: BTreeMap<CheckpointId, PendingSnapshot<S>>,
    /// Completed checkpoints still kept, so the first is the oldest and the last is the latest completed.
    retained: BTreeSet<CheckpointId>,
    latest_savepoint: Option<(CheckpointId, PathBuf)>,
    consecutive_failures: u32,
    /// The start, the last restart or the last periodic trigger, whichever is latest: the interval counts from here.
    periodic_anchor_ms: u64,
    last_completion_ms: Option<u64>,
    /// The latest `now_ms` seen, kept to catch a job manager whose clock runs backwards.
    last_now_ms: u64,
    ending: Ending,
    /// Tasks of the current deployment that reported the end of their data.
    ended: BTreeSet<TaskRef>,
    /// Once every task reached the end of its data: the first id whose completion finishes the job.
    finishing_from: Option<CheckpointId>,
    /// The snapshot `Finish` went out with.
    finished_with: Option<CheckpointId>,
    /// Which retained and pending checkpoints refer to each shared file.
    registry: SharedStateRegistry,
}

impl<S: SharedReferences> Coordinator<S> {
    /// A coordinator for a job made of `tasks`, started at `now_ms`, taking over what `durable` says (a fresh job:
    /// [`Durable::fresh`]).
    ///
    /// Ids continue from `durable.next_id`, because ids must strictly increase across the whole life of a job, and
    /// the storage keys checkpoints by id.
    pub fn new(settings: CoordinatorSettings, tasks: BTreeSet<TaskRef>, durable: Durable, now_ms: u64) -> Self {
        assert!(settings.timeout_ms > 0, "checkpoint timeout must be positive");
        assert!(settings.max_concurrent >= 1, "max_concurrent must be at least 1");
        assert!(settings.num_retained >= 1, "num_retained must be at least 1");
        assert!(settings.interval_ms != Some(0), "a periodic interval of 0 would trigger on every poll");
        assert!(!tasks.is_empty(), "a job has at least one task to checkpoint");
        // Savepoints still being written when a predecessor died are either adopted (`Durable::adopt_savepoint`) or
        // lost with it, as any pending snapshot is.
        let Durable { next_id, retained, latest_savepoint, stopped_at, completing_savepoints: _ } = durable;
        let retained: BTreeSet<CheckpointId> = retained.into_iter().collect();
        let newest = retained.last().copied().max(latest_savepoint.as_ref().map(|(id, _)| *id));
        assert!(newest.is_none_or(|newest| newest < next_id), "completed snapshot {newest:?} at or past {next_id}");
        if let Some(stop) = stopped_at {
            assert_eq!(latest_savepoint.as_ref().map(|(id, _)| *id), Some(stop), "a stop ends at the newest savepoint");
        }
        Coordinator {
            settings,
            tasks,
            next_id,
            pending: BTreeMap::new(),
            retained,
            latest_savepoint,
            consecutive_failures: 0,
            periodic_anchor_ms: now_ms,
            last_completion_ms: None,
            last_now_ms: now_ms,
            ending: stopped_at.map_or(Ending::Running, Ending::Stopped),
            ended: BTreeSet::new(),
            finishing_from: None,
            finished_with: stopped_at,
            registry: SharedStateRegistry::default(),
        }
    }

    /// A job manager taking the job over rebuilds the shared-state registry from the retained checkpoints'
    /// `_metadata` (each with the shared files it lists), before anything is triggered.
    pub fn rebuild_registry(&mut self, retained: Vec<(CheckpointId, Vec<SharedFile>)>) {
        assert!(self.pending.is_empty(), "the registry is rebuilt before anything is triggered");
        assert!(
            retained.iter().all(|(id, _)| self.retained.contains(id)),
            "the registry is rebuilt from retained checkpoints"
        );
        self.registry = SharedStateRegistry::rebuild(retained);
    }

    /// The shared-state registry: which files the retained and pending checkpoints refer to.
    pub fn shared_registry(&self) -> &SharedStateRegistry {
        &self.registry
    }

    /// Expires pending snapshots past their deadline, then triggers a periodic checkpoint if one is due and allowed.
    pub fn poll(&mut self, now_ms: u64) -> Vec<Action<S>> {
        self.observe(now_ms);
        let mut actions = Vec::new();
        let expired: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.expires_at().is_some_and(|deadline| now_ms >= deadline))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.fail_pending(now_ms, id, AbortReason::Expired, Failure::Counted, &mut actions);
        }
        if self.periodic_allowed() && self.periodic_due_ms().is_some_and(|due| now_ms >= due) {
            // The schedule restarts from the actual trigger time, so a trigger that was held back does not cause a
            // burst of catch-up triggers afterwards.
            self.periodic_anchor_ms = now_ms;
            let id = self.start_snapshot(now_ms, TriggerKind::Periodic);
            actions.push(Action::Trigger { id, kind: TriggerKind::Periodic });
        }
        actions
    }

    /// Triggers a savepoint into `dir` now, ignoring interval, min pause and max concurrent as Flink does; with
    /// `stop`, the job ends at it once it completes.
    ///
    /// The periodic schedule is left alone, because Flink's periodic timer runs independently of savepoints.
    pub fn trigger_savepoint(
        &mut self,
        now_ms: u64,
        dir: PathBuf,
        stop: bool,
    ) -> Result<Vec<Action<S>>, SavepointRefused> {
        self.observe(now_ms);
        match self.ending {
            Ending::Stopping(id) => return Err(SavepointRefused::Stopping(id)),
            Ending::Stopped(id) => return Err(SavepointRefused::Stopped(id)),
            Ending::Running => {}
        }
        if self.finishing_from.is_some() || self.all_ended() {
            return Err(SavepointRefused::Finishing);
        }
        let kind = TriggerKind::Savepoint { dir, stop };
        let id = self.start_snapshot(now_ms, kind.clone());
        if stop {
            self.ending = Ending::Stopping(id);
        }
        Ok(vec![Action::Trigger { id, kind }])
    }

    /// Records `task`'s state for snapshot `id`; the last missing ack yields `Complete`.
    ///
    /// Acks for unknown, aborted or completing snapshots, from tasks outside the job, and duplicates are ignored,
    /// because the network may deliver them late or twice; a duplicate never replaces the first state.
    pub fn ack(&mut self, now_ms: u64, id: CheckpointId, task: TaskRef, state: S) -> Vec<Action<S>> {
        self.observe(now_ms);
        if !self.tasks.contains(&task) {
            return Vec::new();
        }
        let Some(pending) = self.pending.get_mut(&id) else {
            return Vec::new();
        };
        let Phase::Acking { acked } = &mut pending.phase else {
            return Vec::new();
        };
        if acked.contains_key(&task) {
            return Vec::new();
        }
        let shared = state.shared_files();
        // Savepoints are canonical and self-contained: the user owns them, so they never share a file.
        assert!(shared.is_empty() || !pending.kind.is_savepoint(), "savepoint {id} acked with shared files");
        if let Err(gone) = self.registry.reference(id, &shared) {
            let mut actions = Vec::new();
            let reason = AbortReason::SharedStateGone { task, file: gone.name };
            self.fail_pending(now_ms, id, reason, Failure::NotCounted, &mut actions);
            return actions;
        }
        let Some(Phase::Acking { acked }) = self.pending.get_mut(&id).map(|p| &mut p.phase) else {
            unreachable!("checked above");
        };
        acked.insert(task, state);
        if acked.len() < self.tasks.len() {
            return Vec::new();
        }
        let states = std::mem::take(acked);
        let pending = self.pending.get_mut(&id).expect("checked above");
        pending.phase = Phase::Completing;
        vec![Action::Complete { id, kind: pending.kind.clone(), states }]
    }

    /// Aborts snapshot `id` because `task` could not take it.
    ///
    /// A decline for an unknown, aborted or completing snapshot, or from a task outside the job, is ignored: once
    /// every task has acked, a decline can only be stale.
    pub fn decline(
        &mut self,
        now_ms: u64,
        id: CheckpointId,
        task: TaskRef,
        reason: String,
        failure: Failure,
    ) -> Vec<Action<S>> {
        self.observe(now_ms);
        if !self.tasks.contains(&task) || !self.is_acking(id) {
            return Vec::new();
        }
        let mut actions = Vec::new();
        self.fail_pending(now_ms, id, AbortReason::Declined { task, reason }, failure, &mut actions);
        actions
    }

    /// Aborts snapshot `id` for a reason of the job manager's own (its storage location could not be prepared).
    /// Ignored unless the snapshot is still waiting for acks.
    pub fn abort(&mut self, now_ms: u64, id: CheckpointId, reason: AbortReason, failure: Failure) -> Vec<Action<S>> {
        self.observe(now_ms);
        if !self.is_acking(id) {
            return Vec::new();
        }
        let mut actions = Vec::new();
        self.fail_pending(now_ms, id, reason, failure, &mut actions);
        actions
    }

    /// The metadata of snapshot `id` is durable: subsume older pending checkpoints, retain it (a checkpoint) or
    /// remember it (a savepoint), notify the tasks, and finish the job if it is done.
    ///
    /// A report for a snapshot that is no longer pending is ignored, because it was aborted while its metadata was
    /// being written (subsumed by a newer one, or by a restart), and the job manager already deleted it.
    pub fn completion_succeeded(&mut self, now_ms: u64, id: CheckpointId) -> Vec<Action<S>> {
        self.observe(now_ms);
        let Some(kind) = self.take_completing(id, "completion_succeeded") else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        // Flink aborts older pending checkpoints when a newer snapshot completes: restoring would never pick them.
        // Savepoints are the user's and complete on their own.
        let subsumed: Vec<CheckpointId> =
            self.pending.range(..id).filter(|(_, p)| !p.kind.is_savepoint()).map(|(older, _)| *older).collect();
        for older in subsumed {
            let pending = self.pending.remove(&older).expect("listed just above");
            actions.push(Action::Abort { id: older, kind: pending.kind, reason: AbortReason::Subsumed { by: id } });
            self.discard_shared(older, &mut actions);
        }
        self.registry.complete(id);
        match &kind {
            TriggerKind::Savepoint { dir, stop } => {
                if self.latest_savepoint.as_ref().is_none_or(|(latest, _)| *latest < id) {
                    self.latest_savepoint = Some((id, dir.clone()));
                }
                if *stop {
                    assert_eq!(self.ending, Ending::Stopping(id), "a stop's savepoint completed while not stopping");
                    self.ending = Ending::Stopped(id);
                }
            }
            TriggerKind::Periodic | TriggerKind::Final => {
                // Lower pending checkpoints are subsumed above and savepoints never enter this set, so
                // checkpoints complete in id order.
                assert!(
                    self.retained.last().is_none_or(|&latest| latest < id),
                    "checkpoint {id} completed after a newer one"
                );
                self.retained.insert(id);
                let mut unreferenced = Vec::new();
                while self.retained.len() > self.settings.num_retained as usize {
                    let oldest = self.retained.pop_first().expect("more retained than num_retained >= 1");
                    actions.push(Action::Discard { id: oldest });
                    unreferenced.extend(self.registry.discard(oldest));
                }
                if !unreferenced.is_empty() {
                    unreferenced.sort();
                    actions.push(Action::DiscardShared { files: unreferenced, after: None });
                }
                self.consecutive_failures = 0;
                self.last_completion_ms = Some(now_ms);
            }
        }
        if let Ending::Stopped(stop) = self.ending {
            assert!(id <= stop, "snapshot {id} completed after the stop at {stop}");
        }
        actions.push(Action::Notify { id, kind: kind.clone() });
        let finishes = kind.is_stop() || (!kind.is_savepoint() && self.finishing_from.is_some_and(|from| id >= from));
        if finishes && self.finished_with.is_none_or(|last| last < id) {
            self.finished_with = Some(id);
            actions.push(Action::Finish { last: id, task: None });
        }
        actions
    }

    /// Persisting the metadata of snapshot `id` failed: abort it, counting a failure (for a checkpoint).
    ///
    /// A report for a snapshot that is no longer pending is ignored, for the same reason as in
    /// [`Coordinator::completion_succeeded`].
    pub fn completion_failed(&mut self, now_ms: u64, id: CheckpointId, reason: String) -> Vec<Action<S>> {
        self.observe(now_ms);
        let Some(kind) = self.take_completing(id, "completion_failed") else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        self.after_abort(now_ms, id, kind, AbortReason::CompletionFailed { reason }, Failure::Counted, &mut actions);
        actions
    }

    /// `task` processed all its input. Once every task has, the final checkpoint is triggered; a task that reports
    /// again after `Finish` went out missed it, and gets it again.
    pub fn end_of_data(&mut self, now_ms: u64, task: TaskRef) -> Vec<Action<S>> {
        self.observe(now_ms);
        if !self.tasks.contains(&task) {
            return Vec::new();
        }
        if let Some(last) = self.finished_with {
            return vec![Action::Finish { last, task: Some(task) }];
        }
        self.ended.insert(task);
        let mut actions = Vec::new();
        self.maybe_trigger_final(now_ms, &mut actions);
        actions
    }

    /// The job failed over: abort every pending snapshot and restart the periodic schedule from `now_ms`.
    ///
    /// Restart aborts do not count as failures, because the failure that caused the restart is handled elsewhere.
    /// Completed snapshots, the id counter, a completed stop and the failure counter stay, because they describe the
    /// job, not one deployment of it. Which tasks ended does not: the new deployment reports again.
    pub fn restart(&mut self, now_ms: u64) -> Vec<Action<S>> {
        self.observe(now_ms);
        let aborted = std::mem::take(&mut self.pending);
        self.periodic_anchor_ms = now_ms;
        self.ended.clear();
        self.finishing_from = None;
        if let Ending::Stopping(_) = self.ending {
            self.ending = Ending::Running;
        }
        self.finished_with = match self.ending {
            Ending::Stopped(stop) => Some(stop),
            Ending::Running | Ending::Stopping(_) => None,
        };
        let mut actions = Vec::new();
        for (id, pending) in aborted {
            actions.push(Action::Abort { id, kind: pending.kind, reason: AbortReason::JobRestart });
            self.discard_shared(id, &mut actions);
        }
        actions
    }

    /// The registry lets go of aborted snapshot `id`'s references: the files only it referred to go.
    fn discard_shared(&mut self, id: CheckpointId, actions: &mut Vec<Action<S>>) {
        let files = self.registry.abort(id);
        if !files.is_empty() {
            actions.push(Action::DiscardShared { files, after: Some(id) });
        }
    }

    /// The earliest time at which [`Coordinator::poll`] could do something, or `None` if only an event can.
    ///
    /// This is the next periodic trigger time if a trigger would be allowed now, or the earliest deadline of a
    /// snapshot still waiting for acks, whichever is earlier. It may lie in the past, meaning "poll now".
    pub fn next_wake_ms(&self) -> Option<u64> {
        let trigger = if self.periodic_allowed() { self.periodic_due_ms() } else { None };
        let deadline = self.pending.values().filter_map(PendingSnapshot::expires_at).min();
        trigger.into_iter().chain(deadline).min()
    }

    /// What a job manager taking the job over needs.
    pub fn durable(&self) -> Durable {
        Durable {
            next_id: self.next_id,
            retained: self.retained(),
            latest_savepoint: self.latest_savepoint.clone(),
            stopped_at: match self.ending {
                Ending::Stopped(stop) => Some(stop),
                Ending::Running | Ending::Stopping(_) => None,
            },
            completing_savepoints: self
                .pending
                .iter()
                .filter(|(_, p)| matches!(p.phase, Phase::Completing))
                .filter_map(|(id, p)| match &p.kind {
                    TriggerKind::Savepoint { dir, stop } => Some((*id, dir.clone(), *stop)),
                    TriggerKind::Periodic | TriggerKind::Final => None,
                })
                .collect(),
        }
    }

    /// The pending snapshots in ascending order, including those whose metadata is being written.
    pub fn pending(&self) -> Vec<CheckpointId> {
        self.pending.keys().copied().collect()
    }

    /// Why pending snapshot `id` was triggered, if it is pending.
    pub fn pending_kind(&self, id: CheckpointId) -> Option<&TriggerKind> {
        self.pending.get(&id).map(|p| &p.kind)
    }

    /// The snapshots waiting for acks that `task` has not acked, ascending: what a task that can no longer receive
    /// barriers (it reached the end of its data) must snapshot directly.
    pub fn unacked_by(&self, task: TaskRef) -> Vec<Unacked> {
        self.pending
            .iter()
            .filter(|(_, p)| matches!(&p.phase, Phase::Acking { acked } if !acked.contains_key(&task)))
            .map(|(id, p)| Unacked { id: *id, kind: p.kind.clone(), triggered_at_ms: p.triggered_at_ms })
            .collect()
    }

    /// When pending snapshot `id` was triggered.
    pub fn triggered_at_ms(&self, id: CheckpointId) -> Option<u64> {
        self.pending.get(&id).map(|p| p.triggered_at_ms)
    }

    /// The newest completed checkpoint, if any is retained.
    pub fn latest_completed(&self) -> Option<CheckpointId> {
        self.retained.last().copied()
    }

    /// The newest completed snapshot, checkpoint or savepoint: what a failover restores from.
    pub fn latest_snapshot(&self) -> Option<LatestSnapshot> {
        let checkpoint = self.retained.last().map(|&id| LatestSnapshot { id, savepoint_dir: None });
        let savepoint = self
            .latest_savepoint
            .as_ref()
            .map(|(id, dir)| LatestSnapshot { id: *id, savepoint_dir: Some(dir.clone()) });
        match (checkpoint, savepoint) {
            (Some(c), Some(s)) => Some(if s.id > c.id { s } else { c }),
            (c, s) => c.or(s),
        }
    }

    /// The completed checkpoints still retained, ascending.
    pub fn retained(&self) -> Vec<CheckpointId> {
        self.retained.iter().copied().collect()
    }

    /// The savepoint a completed stop ended the job at.
    pub fn stopped_at(&self) -> Option<CheckpointId> {
        match self.ending {
            Ending::Stopped(stop) => Some(stop),
            Ending::Running | Ending::Stopping(_) => None,
        }
    }

    /// The pending stop's savepoint, while a stop is in progress.
    pub fn stopping(&self) -> Option<CheckpointId> {
        match self.ending {
            Ending::Stopping(id) => Some(id),
            Ending::Running | Ending::Stopped(_) => None,
        }
    }

    /// The snapshot `Finish` went out with, if the job was told to finish.
    pub fn finished_with(&self) -> Option<CheckpointId> {
        self.finished_with
    }

    /// How many checkpoints failed in a row since the last success or the last `FailJob`.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The id the next trigger will take.
    pub fn next_id(&self) -> CheckpointId {
        self.next_id
    }

    /// Checks that time does not run backwards, since every rule here compares times.
    fn observe(&mut self, now_ms: u64) {
        assert!(now_ms >= self.last_now_ms, "time went backwards: {now_ms} ms after {} ms", self.last_now_ms);
        self.last_now_ms = now_ms;
    }

    fn all_ended(&self) -> bool {
        self.ended.len() == self.tasks.len()
    }

    fn is_acking(&self, id: CheckpointId) -> bool {
        self.pending.get(&id).is_some_and(|p| matches!(p.phase, Phase::Acking { .. }))
    }

    /// The time the next periodic checkpoint is due, ignoring whether it would be allowed.
    fn periodic_due_ms(&self) -> Option<u64> {
        let base = self.settings.interval_ms?.max(self.settings.min_pause_ms);
        let by_interval = self.periodic_anchor_ms.saturating_add(base);
        // Flink measures the min pause from the end of the last completed checkpoint.
        let by_pause = self.last_completion_ms.map_or(0, |t| t.saturating_add(self.settings.min_pause_ms));
        Some(by_interval.max(by_pause))
    }

    /// Whether the job's state and the pending snapshots leave room for a periodic trigger.
    fn periodic_allowed(&self) -> bool {
        // No checkpoint may follow a stop's savepoint, as in Flink, where the sources stop with it; and once the job
        // was told to finish, its tasks are going away.
        if self.ending != Ending::Running || self.finished_with.is_some() {
            return false;
        }
        let pending = self.pending.len();
        // With a min pause, Flink allows effectively one checkpoint at a time, because the pause is measured from the
        // completion of the previous one.
        pending < self.settings.max_concurrent as usize && (self.settings.min_pause_ms == 0 || pending == 0)
    }

    /// Triggers the final checkpoint once every task ended, unless a stop decides how the job ends.
    fn maybe_trigger_final(&mut self, now_ms: u64, actions: &mut Vec<Action<S>>) {
        if self.all_ended() && self.finishing_from.is_none() && self.ending == Ending::Running {
            self.finishing_from = Some(self.next_id);
            let id = self.start_snapshot(now_ms, TriggerKind::Final);
            actions.push(Action::Trigger { id, kind: TriggerKind::Final });
        }
    }

    /// Takes the next id and registers a pending snapshot for it.
    fn start_snapshot(&mut self, now_ms: u64, kind: TriggerKind) -> CheckpointId {
        let id = self.next_id;
        self.next_id = CheckpointId(id.0.checked_add(1).expect("checkpoint ids exhausted"));
        let pending = PendingSnapshot {
            kind,
            triggered_at_ms: now_ms,
            deadline_ms: now_ms.saturating_add(self.settings.timeout_ms),
            phase: Phase::Acking { acked: BTreeMap::new() },
        };
        let previous = self.pending.insert(id, pending);
        assert!(previous.is_none(), "checkpoint id {id} reused");
        id
    }

    /// Removes snapshot `id` if it is pending, for a report on its metadata write; `None` if it is gone already.
    fn take_completing(&mut self, id: CheckpointId, call: &str) -> Option<TriggerKind> {
        assert!(id < self.next_id, "{call}({id}) for a checkpoint that was never triggered");
        let pending = self.pending.get(&id)?;
        assert!(
            matches!(pending.phase, Phase::Completing),
            "{call}({id}) before every task acked: no Complete was issued for it"
        );
        self.pending.remove(&id).map(|p| p.kind)
    }

    /// Aborts pending snapshot `id` for `reason`.
    fn fail_pending(
        &mut self,
        now_ms: u64,
        id: CheckpointId,
        reason: AbortReason,
        failure: Failure,
        actions: &mut Vec<Action<S>>,
    ) {
        let pending = self.pending.remove(&id).expect("only pending snapshots fail");
        self.after_abort(now_ms, id, pending.kind, reason, failure, actions);
    }

    /// The `Abort` of a snapshot already removed from the pending set, what it fails, and what it unblocks.
    fn after_abort(
        &mut self,
        now_ms: u64,
        id: CheckpointId,
        kind: TriggerKind,
        reason: AbortReason,
        failure: Failure,
        actions: &mut Vec<Action<S>>,
    ) {
        let stop_aborted = kind.is_stop();
        let is_savepoint = kind.is_savepoint();
        actions.push(Action::Abort { id, kind, reason: reason.clone() });
        match failure {
            Failure::Fatal => {
                actions.push(Action::FailJob {
                    consecutive_failures: self.consecutive_failures,
                    cause: reason,
                    fatal: true,
                });
                self.consecutive_failures = 0;
            }
            // Flink does not count savepoint failures against the job: a user's savepoint says nothing about it.
            Failure::Counted if !is_savepoint => self.count_failure(reason, actions),
            Failure::Counted | Failure::NotCounted => {}
        }
        self.discard_shared(id, actions);
        if stop_aborted {
            assert_eq!(self.ending, Ending::Stopping(id), "an aborted stop's savepoint was the pending stop");
            // The stop failed: the job goes on, and if it reached its end meanwhile, finishes normally.
            self.ending = Ending::Running;
            self.maybe_trigger_final(now_ms, actions);
        }
    }

    /// Counts one failed checkpoint and fails the job once the tolerance is exceeded, like Flink's failure manager.
    fn count_failure(&mut self, cause: AbortReason, actions: &mut Vec<Action<S>>) {
        // Saturating keeps `tolerable_failed_checkpoints = u32::MAX` meaning "never fail", as in Flink.
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures > self.settings.tolerable_failed_checkpoints {
            actions.push(Action::FailJob { consecutive_failures: self.consecutive_failures, cause, fatal: false });
            // Flink resets the counter when it fails the job, so the next deployment starts with a clean slate.
            self.consecutive_failures = 0;
        }
    }
}
