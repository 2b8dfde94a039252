//! The checkpoint coordinator, a pure and deterministic state machine: it must never do IO, read a clock or block.
//!
//! The job manager owns the IO: it feeds the coordinator events (time passing, acks, declines, the outcome of a
//! metadata write, a failover) and executes the [`Action`]s each call returns. Because the coordinator only sees
//! `now_ms` values handed to it and keeps everything in ordered maps, the same event sequence always yields the same
//! actions, which is what lets the engine test checkpointing under deterministic simulation.
//!
//! Apache Flink's `CheckpointCoordinator` and `CheckpointFailureManager` are the reference; the rules are:
//!
//! - **Periodic schedule.** With `interval_ms = Some(i)` the base interval is `max(i, min_pause_ms)`. The first
//!   periodic checkpoint is due at `start + base`, where start is the time of [`Coordinator::new`] or the last
//!   [`Coordinator::restart`]. After a periodic trigger at `t` the next is due at
//!   `max(t + base, last_completion + min_pause_ms)`, where `last_completion` is the time of the last
//!   [`Coordinator::completion_succeeded`]. A due trigger is skipped while `pending >= max_concurrent`, and also while
//!   anything is pending if `min_pause_ms > 0`; it is re-evaluated on the next [`Coordinator::poll`]. Only one
//!   periodic trigger fires per poll, so a delayed trigger never causes a burst.
//! - **Forced triggers** ignore interval, min pause and max concurrent, and do not move the periodic schedule.
//! - **Expiry.** A checkpoint triggered at `t` expires at the first poll with `now_ms >= t + timeout_ms`, unless every
//!   task has acked it already (its metadata write is then in progress and only its outcome can end it).
//! - **Completion.** [`Action::Complete`] goes out on the last ack; the checkpoint stays pending until the job manager
//!   reports the outcome of the metadata write. On success, every pending checkpoint with a lower id is subsumed.
//! - **Failures.** Expiry, a failed metadata write, and declines flagged as counting increment a counter of
//!   consecutive failures; a success resets it. When it exceeds `tolerable_failed_checkpoints`, one
//!   [`Action::FailJob`] goes out and the counter restarts from 0. Subsumption and restart aborts never count.
//!
//! # Action order
//!
//! Every call returns its actions in this order, so that the job manager can execute them front to back:
//!
//! - [`Coordinator::poll`]: `Abort{Expired}` for each expired checkpoint in ascending id order, each immediately
//!   followed by `FailJob` if that failure exceeded the tolerance; then at most one `Trigger{Periodic}`. Expiry comes
//!   first because it can free the slot the trigger needs.
//! - [`Coordinator::trigger_forced`]: exactly one `Trigger{Forced}`.
//! - [`Coordinator::ack`]: nothing, or exactly one `Complete`.
//! - [`Coordinator::decline`]: nothing (ignored), or `Abort{Declined}` followed by `FailJob` if it exceeded the
//!   tolerance.
//! - [`Coordinator::completion_succeeded`]: `Abort{Subsumed}` for each lower pending checkpoint in ascending id order,
//!   then `Discard` for each checkpoint that fell out of the retained set, oldest first, then `Notify`.
//! - [`Coordinator::completion_failed`]: nothing (ignored), or `Abort{CompletionFailed}` followed by `FailJob` if it
//!   exceeded the tolerance.
//! - [`Coordinator::restart`]: `Abort{JobRestart}` for each pending checkpoint in ascending id order.
//!
//! # Contract with the job manager
//!
//! After every call the job manager re-arms its single timer from [`Coordinator::next_wake_ms`] and calls
//! [`Coordinator::poll`] when it fires. `now_ms` must never decrease from one call to the next. An `Abort` can hit a
//! checkpoint whose `Complete` is still being written (a newer one completed first, or the job restarted): the job
//! manager must then delete whatever that write produces, and the coordinator ignores the late outcome it reports.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{CheckpointId, SubtaskIndex, VertexId};

/// One task that must ack every checkpoint: a subtask of a vertex.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskRef {
    pub vertex: VertexId,
    pub subtask: SubtaskIndex,
}

/// How often and how patiently the coordinator checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorSettings {
    /// The periodic interval; `None` disables periodic checkpoints, while forced ones still work.
    pub interval_ms: Option<u64>,
    /// The least time between the completion of one checkpoint and the trigger of the next periodic one.
    pub min_pause_ms: u64,
    /// How long a checkpoint may wait for its acks before it expires; must be positive.
    pub timeout_ms: u64,
    /// The most checkpoints pending at once for a periodic trigger to be allowed; at least 1.
    pub max_concurrent: u32,
    /// How many consecutive failed checkpoints are tolerated before the job is failed.
    pub tolerable_failed_checkpoints: u32,
    /// How many completed checkpoints are kept; at least 1.
    pub num_retained: u32,
}

/// Why a checkpoint was started.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TriggerKind {
    /// Started by the periodic schedule.
    Periodic,
    /// A savepoint or the final checkpoint, requested by the job manager.
    Forced,
}

/// Why a pending checkpoint was given up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// Not every task acked before the timeout.
    Expired,
    /// A task could not take its snapshot.
    Declined { task: TaskRef, reason: String },
    /// A newer checkpoint completed, which makes this one useless.
    Subsumed { by: CheckpointId },
    /// Every task acked, but persisting the metadata failed.
    CompletionFailed { reason: String },
    /// The job failed over; the tasks that took part are gone.
    JobRestart,
}

/// What the job manager must do next; see the module docs for the order in which actions come out.
#[derive(Clone, Debug, PartialEq)]
pub enum Action<S> {
    /// Start checkpoint `id`: the job manager prepares its storage location and sends the trigger.
    Trigger { id: CheckpointId, kind: TriggerKind },
    /// Every task acked: persist the metadata from `states`, then call `completion_succeeded` or `completion_failed`.
    Complete { id: CheckpointId, states: BTreeMap<TaskRef, S> },
    /// Give up on `id`: delete its partial files, tell the tasks (best effort).
    Abort { id: CheckpointId, reason: AbortReason },
    /// `id` is durable: tell every task `notify_checkpoint_complete(id)`.
    Notify { id: CheckpointId },
    /// A completed checkpoint fell out of the retained set: delete it.
    Discard { id: CheckpointId },
    /// More consecutive failures than tolerated: fail the job (it fails over / restarts).
    FailJob { consecutive_failures: u32 },
}

/// Where a pending checkpoint is in its life.
#[derive(Debug)]
enum Phase<S> {
    /// Waiting for acks; holds the states acked so far.
    Acking { acked: BTreeMap<TaskRef, S> },
    /// Every task acked and `Complete` went out, so the job manager is writing the metadata.
    Completing,
}

/// A checkpoint that was triggered and has not yet completed or been aborted.
#[derive(Debug)]
struct PendingCheckpoint<S> {
    deadline_ms: u64,
    phase: Phase<S>,
}

impl<S> PendingCheckpoint<S> {
    /// Only a checkpoint still waiting for acks can expire: once its metadata write is in progress, cutting it off
    /// would race with the write, so only the write's outcome ends it.
    fn expires_at(&self) -> Option<u64> {
        match self.phase {
            Phase::Acking { .. } => Some(self.deadline_ms),
            Phase::Completing => None,
        }
    }
}

/// Decides when checkpoints start, complete, expire, get subsumed or discarded, and when the job must fail.
#[derive(Debug)]
pub struct Coordinator<S> {
    settings: CoordinatorSettings,
    tasks: BTreeSet<TaskRef>,
    next_id: CheckpointId,
    pending: BTreeMap<CheckpointId, PendingCheckpoint<S>>,
    /// Completed checkpoints still kept, so the first is the oldest and the last is the latest completed.
    retained: BTreeSet<CheckpointId>,
    consecutive_failures: u32,
    /// The start, the last restart or the last periodic trigger, whichever is latest: the interval counts from here.
    periodic_anchor_ms: u64,
    last_completion_ms: Option<u64>,
    /// The latest `now_ms` seen, kept to catch a job manager whose clock runs backwards.
    last_now_ms: u64,
}

impl<S> Coordinator<S> {
    /// A coordinator for a job made of `tasks`, started at `now_ms`.
    ///
    /// `first_id` lets ids continue after a restore, because ids must strictly increase across the whole life of a
    /// job, and the storage keys checkpoints by id.
    pub fn new(settings: CoordinatorSettings, tasks: BTreeSet<TaskRef>, first_id: CheckpointId, now_ms: u64) -> Self {
        assert!(settings.timeout_ms > 0, "checkpoint timeout must be positive");
        assert!(settings.max_concurrent >= 1, "max_concurrent must be at least 1");
        assert!(settings.num_retained >= 1, "num_retained must be at least 1");
        assert!(settings.interval_ms != Some(0), "a periodic interval of 0 would trigger on every poll");
        assert!(!tasks.is_empty(), "a job has at least one task to checkpoint");
        Coordinator {
            settings,
            tasks,
            next_id: first_id,
            pending: BTreeMap::new(),
            retained: BTreeSet::new(),
            consecutive_failures: 0,
            periodic_anchor_ms: now_ms,
            last_completion_ms: None,
            last_now_ms: now_ms,
        }
    }

    /// Expires pending checkpoints past their deadline, then triggers a periodic checkpoint if one is due and allowed.
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
            self.pending.remove(&id);
            actions.push(Action::Abort { id, reason: AbortReason::Expired });
            self.count_failure(&mut actions);
        }
        if self.periodic_allowed() && self.periodic_due_ms().is_some_and(|due| now_ms >= due) {
            // The schedule restarts from the actual trigger time, so a trigger that was held back does not cause a
            // burst of catch-up triggers afterwards.
            self.periodic_anchor_ms = now_ms;
            let id = self.start_checkpoint(now_ms);
            actions.push(Action::Trigger { id, kind: TriggerKind::Periodic });
        }
        actions
    }

    /// Triggers a forced checkpoint now, ignoring interval, min pause and max concurrent as Flink does for savepoints.
    ///
    /// The periodic schedule is left alone, because Flink's periodic timer runs independently of savepoints.
    pub fn trigger_forced(&mut self, now_ms: u64) -> Vec<Action<S>> {
        self.observe(now_ms);
        let id = self.start_checkpoint(now_ms);
        vec![Action::Trigger { id, kind: TriggerKind::Forced }]
    }

    /// Records `task`'s state for checkpoint `id`; the last missing ack yields `Complete`.
    ///
    /// Acks for unknown, aborted or completing checkpoints, from tasks outside the job, and duplicates are ignored,
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
        acked.insert(task, state);
        if acked.len() < self.tasks.len() {
            return Vec::new();
        }
        let states = std::mem::take(acked);
        pending.phase = Phase::Completing;
        vec![Action::Complete { id, states }]
    }

    /// Aborts checkpoint `id` because `task` could not snapshot; it counts as a failure only if `counts_as_failure`.
    ///
    /// Flink does not count declines such as "task not ready", which say nothing about the health of the job. A
    /// decline for an unknown, aborted or completing checkpoint, or from a task outside the job, is ignored: once
    /// every task has acked, a decline can only be stale.
    pub fn decline(
        &mut self,
        now_ms: u64,
        id: CheckpointId,
        task: TaskRef,
        reason: String,
        counts_as_failure: bool,
    ) -> Vec<Action<S>> {
        self.observe(now_ms);
        if !self.tasks.contains(&task) {
            return Vec::new();
        }
        if !self.pending.get(&id).is_some_and(|p| matches!(p.phase, Phase::Acking { .. })) {
            return Vec::new();
        }
        self.pending.remove(&id);
        let mut actions = vec![Action::Abort { id, reason: AbortReason::Declined { task, reason } }];
        if counts_as_failure {
            self.count_failure(&mut actions);
        }
        actions
    }

    /// The metadata of checkpoint `id` is durable: subsume older pending ones, retain it, and notify the tasks.
    ///
    /// A report for a checkpoint that is no longer pending is ignored, because it was aborted while its metadata was
    /// being written (subsumed by a newer one, or by a restart), and the job manager already deleted it.
    pub fn completion_succeeded(&mut self, now_ms: u64, id: CheckpointId) -> Vec<Action<S>> {
        self.observe(now_ms);
        if !self.take_completing(id, "completion_succeeded") {
            return Vec::new();
        }
        // Every lower pending checkpoint is subsumed below, so completions arrive in id order.
        assert!(self.retained.last().is_none_or(|&latest| latest < id), "checkpoint {id} completed after a newer one");
        let mut actions = Vec::new();
        // Flink aborts older pending checkpoints when a newer one completes: restoring would never pick them.
        let newer = self.pending.split_off(&id);
        let older = std::mem::replace(&mut self.pending, newer);
        for older_id in older.into_keys() {
            actions.push(Action::Abort { id: older_id, reason: AbortReason::Subsumed { by: id } });
        }
        self.retained.insert(id);
        while self.retained.len() > self.settings.num_retained as usize {
            let oldest = self.retained.pop_first().expect("more retained than num_retained >= 1, so not empty");
            actions.push(Action::Discard { id: oldest });
        }
        actions.push(Action::Notify { id });
        self.consecutive_failures = 0;
        self.last_completion_ms = Some(now_ms);
        actions
    }

    /// Persisting the metadata of checkpoint `id` failed: abort it, counting a failure.
    ///
    /// A report for a checkpoint that is no longer pending is ignored, for the same reason as in
    /// [`Coordinator::completion_succeeded`].
    pub fn completion_failed(&mut self, now_ms: u64, id: CheckpointId, reason: String) -> Vec<Action<S>> {
        self.observe(now_ms);
        if !self.take_completing(id, "completion_failed") {
            return Vec::new();
        }
        let mut actions = vec![Action::Abort { id, reason: AbortReason::CompletionFailed { reason } }];
        self.count_failure(&mut actions);
        actions
    }

    /// The job failed over: abort every pending checkpoint and restart the periodic schedule from `now_ms`.
    ///
    /// Restart aborts do not count as failures, because the failure that caused the restart is handled elsewhere.
    /// Completed checkpoints, the id counter and the failure counter stay, because they describe the job, not one
    /// deployment of it.
    pub fn restart(&mut self, now_ms: u64) -> Vec<Action<S>> {
        self.observe(now_ms);
        let aborted = std::mem::take(&mut self.pending);
        self.periodic_anchor_ms = now_ms;
        aborted.into_keys().map(|id| Action::Abort { id, reason: AbortReason::JobRestart }).collect()
    }

    /// The earliest time at which [`Coordinator::poll`] could do something, or `None` if only an event can.
    ///
    /// This is the next periodic trigger time if a trigger would be allowed now, or the earliest deadline of a
    /// checkpoint still waiting for acks, whichever is earlier. It may lie in the past, meaning "poll now".
    pub fn next_wake_ms(&self) -> Option<u64> {
        let trigger = if self.periodic_allowed() { self.periodic_due_ms() } else { None };
        let deadline = self.pending.values().filter_map(PendingCheckpoint::expires_at).min();
        trigger.into_iter().chain(deadline).min()
    }

    /// The pending checkpoints in ascending order, including those whose metadata is being written.
    pub fn pending(&self) -> Vec<CheckpointId> {
        self.pending.keys().copied().collect()
    }

    /// The newest completed checkpoint, if any completed since this coordinator was created.
    pub fn latest_completed(&self) -> Option<CheckpointId> {
        self.retained.last().copied()
    }

    /// The completed checkpoints still retained, ascending.
    pub fn retained(&self) -> Vec<CheckpointId> {
        self.retained.iter().copied().collect()
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

    /// The time the next periodic checkpoint is due, ignoring whether it would be allowed.
    fn periodic_due_ms(&self) -> Option<u64> {
        let base = self.settings.interval_ms?.max(self.settings.min_pause_ms);
        let by_interval = self.periodic_anchor_ms.saturating_add(base);
        // Flink measures the min pause from the end of the last completed checkpoint.
        let by_pause = self.last_completion_ms.map_or(0, |t| t.saturating_add(self.settings.min_pause_ms));
        Some(by_interval.max(by_pause))
    }

    /// Whether the pending checkpoints leave room for a periodic trigger.
    fn periodic_allowed(&self) -> bool {
        let pending = self.pending.len();
        // With a min pause, Flink allows effectively one checkpoint at a time, because the pause is measured from the
        // completion of the previous one.
        pending < self.settings.max_concurrent as usize && (self.settings.min_pause_ms == 0 || pending == 0)
    }

    /// Takes the next id and registers a pending checkpoint for it.
    fn start_checkpoint(&mut self, now_ms: u64) -> CheckpointId {
        let id = self.next_id;
        self.next_id = CheckpointId(id.0.checked_add(1).expect("checkpoint ids exhausted"));
        let pending = PendingCheckpoint {
            deadline_ms: now_ms.saturating_add(self.settings.timeout_ms),
            phase: Phase::Acking { acked: BTreeMap::new() },
        };
        let previous = self.pending.insert(id, pending);
        assert!(previous.is_none(), "checkpoint id {id} reused");
        id
    }

    /// Removes checkpoint `id` if it is pending, for a report on its metadata write; false if it is gone already.
    fn take_completing(&mut self, id: CheckpointId, call: &str) -> bool {
        assert!(id < self.next_id, "{call}({id}) for a checkpoint that was never triggered");
        let Some(pending) = self.pending.get(&id) else {
            return false;
        };
        assert!(
            matches!(pending.phase, Phase::Completing),
            "{call}({id}) before every task acked: no Complete was issued for it"
        );
        self.pending.remove(&id);
        true
    }

    /// Counts one failed checkpoint and fails the job once the tolerance is exceeded, like Flink's failure manager.
    fn count_failure(&mut self, actions: &mut Vec<Action<S>>) {
        // Saturating keeps `tolerable_failed_checkpoints = u32::MAX` meaning "never fail", as in Flink.
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures > self.settings.tolerable_failed_checkpoints {
            actions.push(Action::FailJob { consecutive_failures: self.consecutive_failures });
            // Flink resets the counter when it fails the job, so the next deployment starts with a clean slate.
            self.consecutive_failures = 0;
        }
    }
}
