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
    /// Periodic triggers are held (a stop-with-savepoint is in progress); expiry goes on.
    periodic_paused: bool,
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
            periodic_paused: false,
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

    /// Holds (or resumes) periodic triggers: while a stop-with-savepoint is in progress no
    /// checkpoint may follow the savepoint, as in Flink, where the sources stop with it.
    pub fn pause_periodic(&mut self, paused: bool) {
        self.periodic_paused = paused;
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
        if self.periodic_paused {
            return false;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type A = Action<String>;

    fn task(vertex: u32, subtask: u32) -> TaskRef {
        TaskRef { vertex: VertexId(vertex), subtask: SubtaskIndex(subtask) }
    }

    /// Three tasks over two vertices, so that completion needs acks from more than one vertex.
    fn tasks() -> BTreeSet<TaskRef> {
        [task(0, 0), task(0, 1), task(1, 0)].into_iter().collect()
    }

    fn ck(n: u64) -> CheckpointId {
        CheckpointId(n)
    }

    /// Defaults that keep each test focused on one rule; tests override what they exercise.
    fn settings() -> CoordinatorSettings {
        CoordinatorSettings {
            interval_ms: Some(100),
            min_pause_ms: 0,
            timeout_ms: 1_000,
            max_concurrent: 1,
            tolerable_failed_checkpoints: 0,
            num_retained: 5,
        }
    }

    fn state_of(id: CheckpointId, task: TaskRef) -> String {
        format!("ck{}:v{}/{}", id.0, task.vertex.0, task.subtask.0)
    }

    fn trigger(n: u64) -> A {
        Action::Trigger { id: ck(n), kind: TriggerKind::Periodic }
    }

    fn forced(n: u64) -> A {
        Action::Trigger { id: ck(n), kind: TriggerKind::Forced }
    }

    fn abort(n: u64, reason: AbortReason) -> A {
        Action::Abort { id: ck(n), reason }
    }

    fn expired(n: u64) -> A {
        abort(n, AbortReason::Expired)
    }

    fn subsumed(n: u64, by: u64) -> A {
        abort(n, AbortReason::Subsumed { by: ck(by) })
    }

    fn declined(n: u64, task: TaskRef, reason: &str) -> A {
        abort(n, AbortReason::Declined { task, reason: reason.to_string() })
    }

    fn notify(n: u64) -> A {
        Action::Notify { id: ck(n) }
    }

    fn discard(n: u64) -> A {
        Action::Discard { id: ck(n) }
    }

    fn fail_job(consecutive_failures: u32) -> A {
        Action::FailJob { consecutive_failures }
    }

    /// The `Complete` for checkpoint `n` when every task acked with its canonical state.
    fn complete(n: u64) -> A {
        Action::Complete { id: ck(n), states: tasks().into_iter().map(|t| (t, state_of(ck(n), t))).collect() }
    }

    /// A stand-in for the job manager that acks with canonical states.
    struct Driver {
        c: Coordinator<String>,
    }

    impl Driver {
        fn new(settings: CoordinatorSettings, start_ms: u64) -> Self {
            Driver { c: Coordinator::new(settings, tasks(), ck(1), start_ms) }
        }

        fn ack(&mut self, t: u64, n: u64, task: TaskRef) -> Vec<A> {
            self.c.ack(t, ck(n), task, state_of(ck(n), task))
        }

        /// Acks `n` from every task at `t`; every ack but the last must yield nothing.
        fn ack_all(&mut self, t: u64, n: u64) -> Vec<A> {
            let all: Vec<TaskRef> = tasks().into_iter().collect();
            let (last, rest) = all.split_last().unwrap();
            for &task in rest {
                assert_eq!(self.ack(t, n, task), vec![]);
            }
            self.ack(t, n, *last)
        }

        /// Acks `n` from every task and reports its metadata as written, all at `t`.
        fn complete(&mut self, t: u64, n: u64) -> Vec<A> {
            assert_eq!(self.ack_all(t, n), vec![complete(n)]);
            self.c.completion_succeeded(t, ck(n))
        }
    }

    #[test]
    fn first_trigger_at_start_plus_interval_then_periodic() {
        let mut d = Driver::new(settings(), 1_000);
        assert_eq!(d.c.next_wake_ms(), Some(1_100));
        assert_eq!(d.c.poll(1_099), vec![]);
        assert_eq!(d.c.poll(1_100), vec![trigger(1)]);
        // max_concurrent 1 blocks the next trigger, so only the deadline 1100 + 1000 can wake us.
        assert_eq!(d.c.next_wake_ms(), Some(2_100));
        assert_eq!(d.complete(1_150, 1), vec![notify(1)]);
        // The next trigger is due at max(1100 + 100, 1150 + 0), the last trigger plus the interval.
        assert_eq!(d.c.next_wake_ms(), Some(1_200));
        assert_eq!(d.c.poll(1_199), vec![]);
        assert_eq!(d.c.poll(1_200), vec![trigger(2)]);
        assert_eq!(d.complete(1_210, 2), vec![notify(2)]);
        assert_eq!(d.c.poll(1_299), vec![]);
        assert_eq!(d.c.poll(1_300), vec![trigger(3)]);
        assert_eq!(d.c.pending(), vec![ck(3)]);
        assert_eq!(d.c.latest_completed(), Some(ck(2)));
        assert_eq!(d.c.retained(), vec![ck(1), ck(2)]);
    }

    #[test]
    fn delayed_trigger_does_not_burst() {
        let mut d = Driver::new(settings(), 0);
        // Due at 100, 200 and 300 by the interval, but polled only at 350: one trigger, then 100 ms after it.
        assert_eq!(d.c.poll(350), vec![trigger(1)]);
        assert_eq!(d.complete(360, 1), vec![notify(1)]);
        assert_eq!(d.c.next_wake_ms(), Some(450));
        assert_eq!(d.c.poll(449), vec![]);
        assert_eq!(d.c.poll(450), vec![trigger(2)]);
    }

    #[test]
    fn blocked_trigger_fires_on_the_first_poll_it_is_allowed() {
        let mut d = Driver::new(settings(), 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        // Due at 200 but checkpoint 1 fills the only slot.
        assert_eq!(d.c.poll(200), vec![]);
        assert_eq!(d.c.poll(250), vec![]);
        assert_eq!(d.complete(260, 1), vec![notify(1)]);
        // The due time max(100 + 100, 260 + 0) is now, so the coordinator asks to be polled at once.
        assert_eq!(d.c.next_wake_ms(), Some(260));
        assert_eq!(d.c.poll(260), vec![trigger(2)]);
        assert_eq!(d.c.next_wake_ms(), Some(260 + 1_000));
        assert_eq!(d.complete(270, 2), vec![notify(2)]);
        assert_eq!(d.c.next_wake_ms(), Some(360));
    }

    #[test]
    fn min_pause_counts_from_the_last_completion() {
        let s = CoordinatorSettings { min_pause_ms: 50, max_concurrent: 5, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        // With a min pause only one checkpoint may be pending, whatever max_concurrent says.
        assert_eq!(d.c.poll(200), vec![]);
        assert_eq!(d.c.next_wake_ms(), Some(1_100));
        assert_eq!(d.complete(260, 1), vec![notify(1)]);
        // The min pause after the completion at 260 wins over the interval: max(100 + 100, 260 + 50).
        assert_eq!(d.c.next_wake_ms(), Some(310));
        assert_eq!(d.c.poll(309), vec![]);
        assert_eq!(d.c.poll(310), vec![trigger(2)]);
        assert_eq!(d.complete(320, 2), vec![notify(2)]);
        // A quick completion leaves the interval in charge: max(310 + 100, 320 + 50).
        assert_eq!(d.c.next_wake_ms(), Some(410));
        assert_eq!(d.c.poll(410), vec![trigger(3)]);
    }

    #[test]
    fn min_pause_longer_than_interval_wins() {
        let s = CoordinatorSettings { interval_ms: Some(100), min_pause_ms: 250, ..settings() };
        let mut d = Driver::new(s, 0);
        // The base interval is max(100, 250).
        assert_eq!(d.c.next_wake_ms(), Some(250));
        assert_eq!(d.c.poll(100), vec![]);
        assert_eq!(d.c.poll(249), vec![]);
        assert_eq!(d.c.poll(250), vec![trigger(1)]);
        assert_eq!(d.complete(300, 1), vec![notify(1)]);
        // The pause after the completion at 300 decides: max(250 + 250, 300 + 250).
        assert_eq!(d.c.next_wake_ms(), Some(550));
        assert_eq!(d.c.poll(500), vec![]);
        assert_eq!(d.c.poll(549), vec![]);
        assert_eq!(d.c.poll(550), vec![trigger(2)]);
    }

    #[test]
    fn timeout_expires_a_stalled_checkpoint_and_the_next_succeeds() {
        let s = CoordinatorSettings { timeout_ms: 50, tolerable_failed_checkpoints: 5, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        assert_eq!(d.ack(120, 1, task(0, 0)), vec![]);
        assert_eq!(d.ack(130, 1, task(0, 1)), vec![]);
        assert_eq!(d.c.next_wake_ms(), Some(150));
        assert_eq!(d.c.poll(149), vec![]);
        assert_eq!(d.c.poll(150), vec![expired(1)]);
        assert_eq!(d.c.consecutive_failures(), 1);
        assert_eq!(d.c.pending(), vec![]);
        // The missing ack arrives too late.
        assert_eq!(d.ack(160, 1, task(1, 0)), vec![]);
        assert_eq!(d.c.next_wake_ms(), Some(200));
        assert_eq!(d.c.poll(200), vec![trigger(2)]);
        assert_eq!(d.complete(230, 2), vec![notify(2)]);
        assert_eq!(d.c.consecutive_failures(), 0);
        assert_eq!(d.c.latest_completed(), Some(ck(2)));
    }

    #[test]
    fn expiry_comes_before_its_fail_job_and_before_the_trigger_it_makes_room_for() {
        let s = CoordinatorSettings { timeout_ms: 100, tolerable_failed_checkpoints: 0, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        assert_eq!(d.c.poll(200), vec![expired(1), fail_job(1), trigger(2)]);
        assert_eq!(d.c.consecutive_failures(), 0);
    }

    #[test]
    fn acked_checkpoint_does_not_expire_while_its_metadata_is_written() {
        let s = CoordinatorSettings { timeout_ms: 50, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        assert_eq!(d.ack_all(120, 1), vec![complete(1)]);
        // Nothing can expire and the only slot is taken, so only the write's outcome can move things on.
        assert_eq!(d.c.next_wake_ms(), None);
        assert_eq!(d.c.poll(500), vec![]);
        assert_eq!(d.c.completion_succeeded(510, ck(1)), vec![notify(1)]);
    }

    #[test]
    fn max_concurrent_is_respected_with_slow_acks() {
        let s = CoordinatorSettings { interval_ms: Some(10), timeout_ms: 10_000, max_concurrent: 2, ..settings() };
        let mut d = Driver::new(s, 0);
        let mut triggered = Vec::new();
        for t in (10..=100).step_by(10) {
            triggered.extend(d.c.poll(t));
            assert!(d.c.pending().len() <= 2);
        }
        assert_eq!(triggered, vec![trigger(1), trigger(2)]);
        assert_eq!(d.c.pending(), vec![ck(1), ck(2)]);
        assert_eq!(d.complete(105, 1), vec![notify(1)]);
        // The trigger was due long ago, max(20 + 10, 105 + 0), and now has a free slot.
        assert_eq!(d.c.next_wake_ms(), Some(105));
        assert_eq!(d.c.poll(105), vec![trigger(3)]);
        assert_eq!(d.c.pending(), vec![ck(2), ck(3)]);
        assert_eq!(d.c.poll(115), vec![]);
    }

    #[test]
    fn third_consecutive_failure_fails_the_job_when_two_are_tolerated() {
        let s = CoordinatorSettings { timeout_ms: 50, tolerable_failed_checkpoints: 2, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        assert_eq!(d.c.poll(150), vec![expired(1)]);
        assert_eq!(d.c.consecutive_failures(), 1);
        assert_eq!(d.c.poll(200), vec![trigger(2)]);
        assert_eq!(d.c.poll(250), vec![expired(2)]);
        assert_eq!(d.c.consecutive_failures(), 2);
        assert_eq!(d.c.poll(300), vec![trigger(3)]);
        assert_eq!(d.c.poll(350), vec![expired(3), fail_job(3)]);
        assert_eq!(d.c.consecutive_failures(), 0);
        // The count starts over after FailJob.
        assert_eq!(d.c.poll(400), vec![trigger(4)]);
        assert_eq!(d.c.poll(450), vec![expired(4)]);
        assert_eq!(d.c.consecutive_failures(), 1);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let s = CoordinatorSettings { timeout_ms: 50, tolerable_failed_checkpoints: 2, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        assert_eq!(d.c.poll(150), vec![expired(1)]);
        assert_eq!(d.c.poll(200), vec![trigger(2)]);
        assert_eq!(d.c.poll(250), vec![expired(2)]);
        assert_eq!(d.c.consecutive_failures(), 2);
        assert_eq!(d.c.poll(300), vec![trigger(3)]);
        assert_eq!(d.complete(320, 3), vec![notify(3)]);
        assert_eq!(d.c.consecutive_failures(), 0);
        // The next trigger is due at max(300 + 100, 320 + 0).
        assert_eq!(d.c.poll(400), vec![trigger(4)]);
        assert_eq!(d.c.poll(450), vec![expired(4)]);
        assert_eq!(d.c.poll(500), vec![trigger(5)]);
        assert_eq!(d.c.poll(550), vec![expired(5)]);
        assert_eq!(d.c.poll(600), vec![trigger(6)]);
        assert_eq!(d.c.poll(650), vec![expired(6), fail_job(3)]);
    }

    #[test]
    fn completion_subsumes_lower_pending_and_keeps_higher_ones() {
        let s = CoordinatorSettings { timeout_ms: 10_000, max_concurrent: 2, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        assert_eq!(d.c.poll(200), vec![trigger(2)]);
        assert_eq!(d.c.trigger_forced(250), vec![forced(3)]);
        assert_eq!(d.c.pending(), vec![ck(1), ck(2), ck(3)]);
        assert_eq!(d.ack_all(260, 2), vec![complete(2)]);
        // Checkpoint 2 stays pending while its metadata is written.
        assert_eq!(d.c.pending(), vec![ck(1), ck(2), ck(3)]);
        assert_eq!(d.c.completion_succeeded(270, ck(2)), vec![subsumed(1, 2), notify(2)]);
        assert_eq!(d.c.pending(), vec![ck(3)]);
        assert_eq!(d.ack(280, 1, task(0, 0)), vec![]);
        assert_eq!(d.complete(290, 3), vec![notify(3)]);
        assert_eq!(d.c.retained(), vec![ck(2), ck(3)]);
        assert_eq!(d.c.consecutive_failures(), 0);
    }

    #[test]
    fn subsumed_checkpoint_being_completed_ignores_its_late_outcome() {
        let s = CoordinatorSettings { timeout_ms: 10_000, max_concurrent: 2, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        assert_eq!(d.c.poll(200), vec![trigger(2)]);
        assert_eq!(d.ack_all(210, 1), vec![complete(1)]);
        assert_eq!(d.ack_all(220, 2), vec![complete(2)]);
        // The write for 2 finishes first.
        assert_eq!(d.c.completion_succeeded(230, ck(2)), vec![subsumed(1, 2), notify(2)]);
        assert_eq!(d.c.completion_succeeded(240, ck(1)), vec![]);
        assert_eq!(d.c.completion_failed(250, ck(1), "late".to_string()), vec![]);
        assert_eq!(d.c.latest_completed(), Some(ck(2)));
        assert_eq!(d.c.retained(), vec![ck(2)]);
        assert_eq!(d.c.consecutive_failures(), 0);
    }

    #[test]
    fn retains_num_retained_and_discards_oldest_first() {
        let s = CoordinatorSettings { num_retained: 3, ..settings() };
        let mut d = Driver::new(s, 0);
        let mut outcomes = Vec::new();
        for k in 1..=5 {
            assert_eq!(d.c.poll(k * 100), vec![trigger(k)]);
            outcomes.push(d.complete(k * 100 + 10, k));
        }
        assert_eq!(
            outcomes,
            vec![
                vec![notify(1)],
                vec![notify(2)],
                vec![notify(3)],
                vec![discard(1), notify(4)],
                vec![discard(2), notify(5)],
            ]
        );
        assert_eq!(d.c.retained(), vec![ck(3), ck(4), ck(5)]);
        assert_eq!(d.c.latest_completed(), Some(ck(5)));
    }

    #[test]
    fn completion_orders_subsume_then_discard_then_notify() {
        let s = CoordinatorSettings { num_retained: 1, max_concurrent: 2, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        assert_eq!(d.complete(110, 1), vec![notify(1)]);
        assert_eq!(d.c.poll(200), vec![trigger(2)]);
        assert_eq!(d.c.poll(300), vec![trigger(3)]);
        assert_eq!(d.complete(310, 3), vec![subsumed(2, 3), discard(1), notify(3)]);
        assert_eq!(d.c.retained(), vec![ck(3)]);
    }

    #[test]
    fn ids_strictly_increase_from_first_id_and_across_restart() {
        let s = CoordinatorSettings { tolerable_failed_checkpoints: 5, ..settings() };
        let mut c: Coordinator<String> = Coordinator::new(s.clone(), tasks(), ck(42), 0);
        assert_eq!(c.next_id(), ck(42));
        assert_eq!(c.poll(100), vec![trigger(42)]);
        assert_eq!(c.next_id(), ck(43));
        for t in tasks() {
            c.ack(150, ck(42), t, state_of(ck(42), t));
        }
        assert_eq!(c.completion_succeeded(150, ck(42)), vec![notify(42)]);
        assert_eq!(c.poll(200), vec![trigger(43)]);
        assert_eq!(c.restart(250), vec![abort(43, AbortReason::JobRestart)]);
        assert_eq!(c.consecutive_failures(), 0);
        assert_eq!(c.pending(), vec![]);
        assert_eq!(c.next_id(), ck(44));
        assert_eq!(c.retained(), vec![ck(42)]);
        // The schedule restarts from 250, so the old slot at 300 is gone.
        assert_eq!(c.next_wake_ms(), Some(350));
        assert_eq!(c.poll(300), vec![]);
        assert_eq!(c.poll(350), vec![trigger(44)]);
        assert_eq!(c.trigger_forced(360), vec![forced(45)]);
        assert_eq!(c.next_id(), ck(46));
        // A new job manager restoring the job continues from the id after the last one used.
        let mut restored: Coordinator<String> = Coordinator::new(s, tasks(), c.next_id(), 1_000);
        assert_eq!(restored.poll(1_100), vec![trigger(46)]);
    }

    #[test]
    fn restart_keeps_the_failure_count() {
        let s =
            CoordinatorSettings { timeout_ms: 50, tolerable_failed_checkpoints: 5, max_concurrent: 2, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        assert_eq!(d.c.poll(150), vec![expired(1)]);
        assert_eq!(d.c.poll(200), vec![trigger(2)]);
        assert_eq!(d.c.trigger_forced(210), vec![forced(3)]);
        assert_eq!(d.c.restart(220), vec![abort(2, AbortReason::JobRestart), abort(3, AbortReason::JobRestart)]);
        assert_eq!(d.c.consecutive_failures(), 1);
    }

    #[test]
    fn late_duplicate_and_unknown_acks_are_ignored() {
        let s = CoordinatorSettings { interval_ms: None, tolerable_failed_checkpoints: 10, ..settings() };
        let mut c: Coordinator<String> = Coordinator::new(s, tasks(), ck(1), 0);
        assert_eq!(c.trigger_forced(10), vec![forced(1)]);
        // These ids were never triggered: one above and one below the ids in use.
        assert_eq!(c.ack(20, ck(7), task(0, 0), "x".into()), vec![]);
        assert_eq!(c.ack(20, ck(0), task(0, 0), "x".into()), vec![]);
        // This task is not part of the job.
        assert_eq!(c.ack(20, ck(1), task(9, 0), "x".into()), vec![]);
        assert_eq!(c.ack(20, ck(1), task(0, 0), "first".into()), vec![]);
        // A duplicate must not replace the first state.
        assert_eq!(c.ack(21, ck(1), task(0, 0), "dup".into()), vec![]);
        assert_eq!(c.ack(22, ck(1), task(0, 1), "b".into()), vec![]);
        let states: BTreeMap<TaskRef, String> =
            [(task(0, 0), "first".to_string()), (task(0, 1), "b".to_string()), (task(1, 0), "c".to_string())]
                .into_iter()
                .collect();
        assert_eq!(c.ack(23, ck(1), task(1, 0), "c".into()), vec![Action::Complete { id: ck(1), states }]);
        // Acks and declines while the metadata is written are stale.
        assert_eq!(c.ack(30, ck(1), task(0, 0), "again".into()), vec![]);
        assert_eq!(c.decline(30, ck(1), task(0, 0), "stale".into(), true), vec![]);
        assert_eq!(c.completion_succeeded(40, ck(1)), vec![notify(1)]);
        assert_eq!(c.ack(50, ck(1), task(0, 0), "after".into()), vec![]);
        assert_eq!(c.trigger_forced(60), vec![forced(2)]);
        assert_eq!(c.decline(70, ck(2), task(0, 1), "io".into(), true), vec![declined(2, task(0, 1), "io")]);
        assert_eq!(c.ack(80, ck(2), task(0, 0), "aborted".into()), vec![]);
        assert_eq!(c.decline(90, ck(2), task(0, 0), "again".into(), true), vec![]);
        assert_eq!(c.decline(90, ck(99), task(0, 0), "unknown".into(), true), vec![]);
        assert_eq!(c.trigger_forced(100), vec![forced(3)]);
        assert_eq!(c.decline(110, ck(3), task(9, 9), "stranger".into(), true), vec![]);
        assert_eq!(c.pending(), vec![ck(3)]);
        assert_eq!(c.consecutive_failures(), 1);
    }

    #[test]
    fn decline_counts_as_failure_only_when_flagged() {
        let s = CoordinatorSettings { interval_ms: None, tolerable_failed_checkpoints: 1, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.trigger_forced(0), vec![forced(1)]);
        let not_ready = d.c.decline(10, ck(1), task(0, 0), "not ready".into(), false);
        assert_eq!(not_ready, vec![declined(1, task(0, 0), "not ready")]);
        assert_eq!(d.c.consecutive_failures(), 0);
        assert_eq!(d.c.trigger_forced(20), vec![forced(2)]);
        assert_eq!(d.c.decline(30, ck(2), task(0, 1), "io".into(), true), vec![declined(2, task(0, 1), "io")]);
        assert_eq!(d.c.consecutive_failures(), 1);
        assert_eq!(d.c.trigger_forced(40), vec![forced(3)]);
        assert_eq!(
            d.c.decline(50, ck(3), task(1, 0), "io".into(), true),
            vec![declined(3, task(1, 0), "io"), fail_job(2)]
        );
        assert_eq!(d.c.consecutive_failures(), 0);
        assert_eq!(d.c.pending(), vec![]);
    }

    #[test]
    fn completion_failed_counts_as_failure() {
        let s = CoordinatorSettings { interval_ms: None, tolerable_failed_checkpoints: 1, ..settings() };
        let mut d = Driver::new(s, 0);
        let disk_full = || abort(1, AbortReason::CompletionFailed { reason: "disk full".into() });
        assert_eq!(d.c.trigger_forced(0), vec![forced(1)]);
        assert_eq!(d.ack_all(10, 1), vec![complete(1)]);
        assert_eq!(d.c.completion_failed(20, ck(1), "disk full".into()), vec![disk_full()]);
        assert_eq!(d.c.consecutive_failures(), 1);
        assert_eq!(d.c.pending(), vec![]);
        assert_eq!(d.c.latest_completed(), None);
        assert_eq!(d.c.trigger_forced(30), vec![forced(2)]);
        assert_eq!(d.ack_all(40, 2), vec![complete(2)]);
        let timeout = abort(2, AbortReason::CompletionFailed { reason: "timeout".into() });
        assert_eq!(d.c.completion_failed(50, ck(2), "timeout".into()), vec![timeout, fail_job(2)]);
        assert_eq!(d.c.consecutive_failures(), 0);
    }

    #[test]
    fn forced_trigger_ignores_interval_min_pause_and_max_concurrent() {
        let s = CoordinatorSettings { min_pause_ms: 1_000, timeout_ms: 10_000, ..settings() };
        let mut d = Driver::new(s, 0);
        // This is long before the first periodic time, max(100, 1000).
        assert_eq!(d.c.trigger_forced(5), vec![forced(1)]);
        // With one pending, max_concurrent 1 and the min pause would both block a periodic trigger.
        assert_eq!(d.c.trigger_forced(6), vec![forced(2)]);
        assert_eq!(d.complete(10, 2), vec![subsumed(1, 2), notify(2)]);
        // This is within the min pause after that completion.
        assert_eq!(d.c.trigger_forced(11), vec![forced(3)]);
        assert_eq!(d.c.next_wake_ms(), Some(11 + 10_000));
        assert_eq!(d.complete(20, 3), vec![notify(3)]);
        // The periodic schedule still counts from the start: max(0 + 1000, 20 + 1000).
        assert_eq!(d.c.next_wake_ms(), Some(1_020));
    }

    #[test]
    fn forced_trigger_does_not_move_the_periodic_schedule() {
        let s = CoordinatorSettings { max_concurrent: 2, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.trigger_forced(50), vec![forced(1)]);
        assert_eq!(d.c.next_wake_ms(), Some(100));
        assert_eq!(d.c.poll(100), vec![trigger(2)]);
    }

    #[test]
    fn without_interval_only_forced_checkpoints_happen() {
        let s = CoordinatorSettings { interval_ms: None, timeout_ms: 500, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.next_wake_ms(), None);
        assert_eq!(d.c.poll(1_000_000), vec![]);
        assert_eq!(d.c.trigger_forced(1_000_010), vec![forced(1)]);
        assert_eq!(d.c.next_wake_ms(), Some(1_000_510));
        assert_eq!(d.ack_all(1_000_020, 1), vec![complete(1)]);
        assert_eq!(d.c.next_wake_ms(), None);
        assert_eq!(d.c.completion_succeeded(1_000_030, ck(1)), vec![notify(1)]);
        assert_eq!(d.c.next_wake_ms(), None);
    }

    #[test]
    fn next_wake_is_the_earlier_of_trigger_time_and_deadline() {
        let s = CoordinatorSettings { max_concurrent: 2, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.next_wake_ms(), Some(100));
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        // The next trigger comes before the deadline: min(100 + 100, 100 + 1000).
        assert_eq!(d.c.next_wake_ms(), Some(200));

        let s = CoordinatorSettings { max_concurrent: 2, timeout_ms: 50, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        // The deadline comes before the next trigger: min(100 + 100, 100 + 50).
        assert_eq!(d.c.next_wake_ms(), Some(150));

        let s = CoordinatorSettings { max_concurrent: 2, min_pause_ms: 10, ..settings() };
        let mut d = Driver::new(s, 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        // The min pause forbids a second pending checkpoint, so only the deadline counts.
        assert_eq!(d.c.next_wake_ms(), Some(1_100));
    }

    #[test]
    #[should_panic(expected = "timeout")]
    fn zero_timeout_is_rejected() {
        let _: Coordinator<String> =
            Coordinator::new(CoordinatorSettings { timeout_ms: 0, ..settings() }, tasks(), ck(1), 0);
    }

    #[test]
    #[should_panic(expected = "max_concurrent")]
    fn zero_max_concurrent_is_rejected() {
        let s = CoordinatorSettings { max_concurrent: 0, ..settings() };
        let _: Coordinator<String> = Coordinator::new(s, tasks(), ck(1), 0);
    }

    #[test]
    #[should_panic(expected = "num_retained")]
    fn zero_num_retained_is_rejected() {
        let s = CoordinatorSettings { num_retained: 0, ..settings() };
        let _: Coordinator<String> = Coordinator::new(s, tasks(), ck(1), 0);
    }

    #[test]
    #[should_panic(expected = "interval")]
    fn zero_interval_is_rejected() {
        let s = CoordinatorSettings { interval_ms: Some(0), ..settings() };
        let _: Coordinator<String> = Coordinator::new(s, tasks(), ck(1), 0);
    }

    #[test]
    #[should_panic(expected = "at least one task")]
    fn empty_job_is_rejected() {
        let _: Coordinator<String> = Coordinator::new(settings(), BTreeSet::new(), ck(1), 0);
    }

    #[test]
    #[should_panic(expected = "before every task acked")]
    fn completion_before_all_acks_is_a_bug() {
        let mut d = Driver::new(settings(), 0);
        assert_eq!(d.c.poll(100), vec![trigger(1)]);
        d.c.completion_succeeded(110, ck(1));
    }

    #[test]
    #[should_panic(expected = "never triggered")]
    fn completion_of_an_id_never_issued_is_a_bug() {
        let mut d = Driver::new(settings(), 0);
        d.c.completion_failed(110, ck(1), "x".into());
    }

    #[test]
    #[should_panic(expected = "time went backwards")]
    fn time_going_backwards_is_a_bug() {
        let mut d = Driver::new(settings(), 100);
        d.c.poll(99);
    }

    /// One event of a random run; `pick` and `task` choose among what exists, with one extra slot for a stranger.
    #[derive(Clone, Debug)]
    enum Event {
        Poll { dt: u64 },
        Forced { dt: u64 },
        Ack { dt: u64, pick: usize, task: usize, duplicate: bool },
        AckAll { dt: u64, pick: usize },
        Decline { dt: u64, pick: usize, task: usize, counts: bool },
        Succeed { dt: u64, pick: usize },
        Fail { dt: u64, pick: usize },
        Restart { dt: u64 },
    }

    fn event() -> impl Strategy<Value = Event> {
        let dt = 0u64..120;
        prop_oneof![
            6 => dt.clone().prop_map(|dt| Event::Poll { dt }),
            1 => dt.clone().prop_map(|dt| Event::Forced { dt }),
            4 => (dt.clone(), any::<usize>(), any::<usize>(), proptest::bool::weighted(0.2))
                .prop_map(|(dt, pick, task, duplicate)| Event::Ack { dt, pick, task, duplicate }),
            4 => (dt.clone(), any::<usize>()).prop_map(|(dt, pick)| Event::AckAll { dt, pick }),
            1 => (dt.clone(), any::<usize>(), any::<usize>(), any::<bool>())
                .prop_map(|(dt, pick, task, counts)| Event::Decline { dt, pick, task, counts }),
            3 => (dt.clone(), any::<usize>()).prop_map(|(dt, pick)| Event::Succeed { dt, pick }),
            1 => (dt.clone(), any::<usize>()).prop_map(|(dt, pick)| Event::Fail { dt, pick }),
            1 => dt.prop_map(|dt| Event::Restart { dt }),
        ]
    }

    fn random_settings() -> impl Strategy<Value = (CoordinatorSettings, u32)> {
        (
            proptest::option::weighted(0.9, 1u64..200),
            prop_oneof![2 => Just(0u64), 1 => 1u64..150],
            1u64..400,
            1u32..4,
            0u32..4,
            1u32..4,
            1u32..4,
        )
            .prop_map(
                |(interval_ms, min_pause_ms, timeout_ms, max_concurrent, tolerable, num_retained, n_tasks)| {
                    let s = CoordinatorSettings {
                        interval_ms,
                        min_pause_ms,
                        timeout_ms,
                        max_concurrent,
                        tolerable_failed_checkpoints: tolerable,
                        num_retained,
                    };
                    (s, n_tasks)
                },
            )
    }

    /// What the test remembers of a run, to check the coordinator's actions against the rules.
    struct Observer {
        s: CoordinatorSettings,
        tasks: Vec<TaskRef>,
        now: u64,
        triggered_at: BTreeMap<CheckpointId, u64>,
        /// Ids whose `Complete` went out and whose write outcome has not been reported, aborted or not.
        writing: BTreeSet<CheckpointId>,
        last_trigger: Option<CheckpointId>,
        notified: Vec<CheckpointId>,
        discarded: Vec<CheckpointId>,
        periodic_anchor: u64,
        last_completion: Option<u64>,
        failures: u32,
    }

    impl Observer {
        fn pick(items: &[CheckpointId], pick: usize, stranger: CheckpointId) -> CheckpointId {
            if pick % (items.len() + 1) == items.len() { stranger } else { items[pick % (items.len() + 1)] }
        }

        fn task(&self, index: usize) -> TaskRef {
            self.tasks.get(index % (self.tasks.len() + 1)).copied().unwrap_or(task(99, 0))
        }

        /// Checks the actions of one call, made at `self.now`, against the rules; `counts` is the decline's flag.
        fn check(&mut self, c: &Coordinator<String>, before: &[CheckpointId], actions: &[A], call: &str, counts: bool) {
            let after = c.pending();
            let mut i = 0;
            while i < actions.len() {
                match &actions[i] {
                    Action::Trigger { id, kind } => {
                        assert!(self.last_trigger.is_none_or(|last| last < *id), "trigger ids must increase");
                        self.last_trigger = Some(*id);
                        self.triggered_at.insert(*id, self.now);
                        assert!(after.contains(id));
                        match kind {
                            TriggerKind::Periodic => {
                                assert_eq!(call, "poll");
                                assert_eq!(i, actions.len() - 1, "the periodic trigger comes last");
                                assert!(after.len() <= self.s.max_concurrent as usize, "too many pending");
                                if self.s.min_pause_ms > 0 {
                                    assert_eq!(after.len(), 1, "with a min pause only one may be pending");
                                }
                                let base = self.s.interval_ms.unwrap().max(self.s.min_pause_ms);
                                assert!(self.now >= self.periodic_anchor + base, "triggered before the interval");
                                if let Some(done) = self.last_completion {
                                    assert!(self.now >= done + self.s.min_pause_ms, "triggered within the min pause");
                                }
                                self.periodic_anchor = self.now;
                            }
                            TriggerKind::Forced => assert_eq!(call, "forced"),
                        }
                    }
                    Action::Complete { id, states } => {
                        assert_eq!(call, "ack");
                        assert!(before.contains(id) && after.contains(id), "Complete for a pending id");
                        let expected: BTreeMap<TaskRef, String> =
                            self.tasks.iter().map(|&t| (t, state_of(*id, t))).collect();
                        assert_eq!(states, &expected);
                        assert!(self.writing.insert(*id));
                    }
                    Action::Abort { id, reason } => {
                        assert!(before.contains(id) && !after.contains(id), "Abort for a pending id");
                        let counted = match reason {
                            AbortReason::Expired => {
                                assert_eq!(call, "poll");
                                assert!(!self.writing.contains(id), "a checkpoint being written cannot expire");
                                assert!(self.now >= self.triggered_at[id] + self.s.timeout_ms);
                                true
                            }
                            AbortReason::Declined { .. } => {
                                assert_eq!(call, "decline");
                                counts
                            }
                            AbortReason::Subsumed { by } => {
                                assert_eq!(call, "succeed");
                                assert!(id < by);
                                false
                            }
                            AbortReason::CompletionFailed { .. } => {
                                assert_eq!(call, "fail");
                                true
                            }
                            AbortReason::JobRestart => {
                                assert_eq!(call, "restart");
                                false
                            }
                        };
                        if counted {
                            self.failures += 1;
                            if self.failures > self.s.tolerable_failed_checkpoints {
                                assert_eq!(actions.get(i + 1), Some(&fail_job(self.failures)));
                                self.failures = 0;
                                i += 1;
                            }
                        }
                    }
                    Action::Notify { id } => {
                        assert_eq!(call, "succeed");
                        assert!(self.notified.last().is_none_or(|last| last < id), "Notify ids must increase");
                        self.notified.push(*id);
                        self.failures = 0;
                        self.last_completion = Some(self.now);
                    }
                    Action::Discard { id } => {
                        assert_eq!(call, "succeed");
                        self.discarded.push(*id);
                    }
                    Action::FailJob { .. } => panic!("FailJob without a counted failure before it: {actions:?}"),
                }
                i += 1;
            }
            assert_eq!(c.consecutive_failures(), self.failures);
            assert!(self.failures <= self.s.tolerable_failed_checkpoints);
            assert!(after.iter().all(|id| *id < c.next_id()));
            assert_eq!(c.latest_completed(), self.notified.last().copied());
            let keep = self.notified.len().min(self.s.num_retained as usize);
            assert_eq!(c.retained(), self.notified[self.notified.len() - keep..].to_vec());
            assert_eq!(self.discarded, self.notified[..self.notified.len() - keep].to_vec());
            for id in &after {
                if !self.writing.contains(id) {
                    assert!(self.triggered_at[id] + self.s.timeout_ms > self.now || call != "poll", "left expired");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn random_runs_keep_the_invariants(
            (s, n_tasks) in random_settings(),
            start in 0u64..1_000,
            first_id in 1u64..100,
            events in proptest::collection::vec(event(), 1..150),
        ) {
            let tasks: BTreeSet<TaskRef> = (0..n_tasks).map(|i| task(i % 2, i / 2)).collect();
            let mut c: Coordinator<String> = Coordinator::new(s.clone(), tasks.clone(), ck(first_id), start);
            let mut o = Observer {
                s,
                tasks: tasks.into_iter().collect(),
                now: start,
                triggered_at: BTreeMap::new(),
                writing: BTreeSet::new(),
                last_trigger: None,
                notified: Vec::new(),
                discarded: Vec::new(),
                periodic_anchor: start,
                last_completion: None,
                failures: 0,
            };
            for e in events {
                let before = c.pending();
                let wake = c.next_wake_ms();
                let stranger = CheckpointId(c.next_id().0 + 3);
                // Checkpoints still waiting for acks: the useful targets of acks and declines.
                let acking: Vec<CheckpointId> = before.iter().copied().filter(|id| !o.writing.contains(id)).collect();
                let writing: Vec<CheckpointId> = o.writing.iter().copied().collect();
                let (dt, call, counts, actions) = match e {
                    Event::Poll { dt } => {
                        let actions = c.poll(o.now + dt);
                        // next_wake_ms must be exact: poll acts at or after it, and never before.
                        match wake {
                            Some(w) if o.now + dt >= w => prop_assert!(!actions.is_empty(), "idle at wake time"),
                            _ => prop_assert!(actions.is_empty(), "acted before wake time {wake:?}"),
                        }
                        (dt, "poll", false, actions)
                    }
                    Event::Forced { dt } => (dt, "forced", false, c.trigger_forced(o.now + dt)),
                    Event::Ack { dt, pick, task, duplicate } => {
                        let id = Observer::pick(&acking, pick, stranger);
                        let t = o.task(task);
                        let first = c.ack(o.now + dt, id, t, state_of(id, t));
                        prop_assert!(first.len() <= 1);
                        if duplicate {
                            // A duplicate never completes anything and never replaces the first state.
                            prop_assert_eq!(c.ack(o.now + dt, id, t, "dup".into()), vec![]);
                        }
                        if !o.tasks.contains(&t) || !acking.contains(&id) {
                            prop_assert_eq!(&first, &vec![]);
                        }
                        (dt, "ack", false, first)
                    }
                    Event::AckAll { dt, pick } => {
                        let id = Observer::pick(&acking, pick, stranger);
                        let mut actions = Vec::new();
                        for t in o.tasks.clone() {
                            actions.extend(c.ack(o.now + dt, id, t, state_of(id, t)));
                        }
                        (dt, "ack", false, actions)
                    }
                    Event::Decline { dt, pick, task, counts } => {
                        let id = Observer::pick(&acking, pick, stranger);
                        let t = o.task(task);
                        (dt, "decline", counts, c.decline(o.now + dt, id, t, "no".into(), counts))
                    }
                    Event::Succeed { dt, pick } => {
                        if writing.is_empty() {
                            continue;
                        }
                        let id = writing[pick % writing.len()];
                        o.writing.remove(&id);
                        let actions = c.completion_succeeded(o.now + dt, id);
                        if !before.contains(&id) {
                            prop_assert_eq!(&actions, &vec![], "late outcome must be ignored");
                        }
                        (dt, "succeed", false, actions)
                    }
                    Event::Fail { dt, pick } => {
                        if writing.is_empty() {
                            continue;
                        }
                        let id = writing[pick % writing.len()];
                        o.writing.remove(&id);
                        let actions = c.completion_failed(o.now + dt, id, "io".into());
                        if !before.contains(&id) {
                            prop_assert_eq!(&actions, &vec![], "late outcome must be ignored");
                        }
                        (dt, "fail", false, actions)
                    }
                    Event::Restart { dt } => {
                        let actions = c.restart(o.now + dt);
                        o.periodic_anchor = o.now + dt;
                        (dt, "restart", false, actions)
                    }
                };
                o.now += dt;
                o.check(&c, &before, &actions, call, counts);
            }
        }
    }
}
