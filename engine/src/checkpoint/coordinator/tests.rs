//! The coordinator's rules, one test each, with explicit time.

use super::*;
use crate::ids::{SubtaskIndex, VertexId};

pub(super) type A = Action<String>;

pub(super) fn task(vertex: u32, subtask: u32) -> TaskRef {
    TaskRef { vertex: VertexId(vertex), subtask: SubtaskIndex(subtask) }
}

/// Three tasks over two vertices, so that completion needs acks from more than one vertex.
fn tasks() -> BTreeSet<TaskRef> {
    [task(0, 0), task(0, 1), task(1, 0)].into_iter().collect()
}

pub(super) fn ck(n: u64) -> CheckpointId {
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

/// A test state may name shared files after a `|`: `name@uploading id`, separated by commas.
impl crate::checkpoint::registry::SharedReferences for String {
    fn shared_files(&self) -> Vec<crate::checkpoint::registry::SharedFile> {
        let Some((_, files)) = self.split_once('|') else { return Vec::new() };
        files
            .split(',')
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (name, by) = f.split_once('@').expect("name@id");
                crate::checkpoint::registry::SharedFile {
                    name: name.to_string(),
                    uploaded_by: CheckpointId(by.parse().expect("an id")),
                }
            })
            .collect()
    }
}

pub(super) fn state_of(id: CheckpointId, task: TaskRef) -> String {
    format!("ck{}:v{}/{}", id.0, task.vertex.0, task.subtask.0)
}

fn sp_dir() -> PathBuf {
    PathBuf::from("/savepoints/sp")
}

fn savepoint_kind() -> TriggerKind {
    TriggerKind::Savepoint { dir: sp_dir(), stop: false }
}

fn stop_kind() -> TriggerKind {
    TriggerKind::Savepoint { dir: sp_dir(), stop: true }
}

fn trigger(n: u64) -> A {
    Action::Trigger { id: ck(n), kind: TriggerKind::Periodic }
}

fn savepoint(n: u64) -> A {
    Action::Trigger { id: ck(n), kind: savepoint_kind() }
}

fn stop(n: u64) -> A {
    Action::Trigger { id: ck(n), kind: stop_kind() }
}

fn final_trigger(n: u64) -> A {
    Action::Trigger { id: ck(n), kind: TriggerKind::Final }
}

fn abort(n: u64, reason: AbortReason) -> A {
    Action::Abort { id: ck(n), kind: TriggerKind::Periodic, reason }
}

fn abort_of(n: u64, kind: TriggerKind, reason: AbortReason) -> A {
    Action::Abort { id: ck(n), kind, reason }
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
    Action::Notify { id: ck(n), kind: TriggerKind::Periodic }
}

fn notify_of(n: u64, kind: TriggerKind) -> A {
    Action::Notify { id: ck(n), kind }
}

fn discard(n: u64) -> A {
    Action::Discard { id: ck(n) }
}

fn fail_job(consecutive_failures: u32, cause: AbortReason) -> A {
    Action::FailJob { consecutive_failures, cause, fatal: false }
}

fn finish(n: u64) -> A {
    Action::Finish { last: ck(n), task: None }
}

/// The `Complete` for snapshot `n` of `kind` when every task acked with its canonical state.
fn complete_of(n: u64, kind: TriggerKind) -> A {
    Action::Complete { id: ck(n), kind, states: tasks().into_iter().map(|t| (t, state_of(ck(n), t))).collect() }
}

fn complete(n: u64) -> A {
    complete_of(n, TriggerKind::Periodic)
}

/// A stand-in for the job manager that acks with canonical states.
struct Driver {
    c: Coordinator<String>,
}

impl Driver {
    fn new(settings: CoordinatorSettings, start_ms: u64) -> Self {
        Driver { c: Coordinator::new(settings, tasks(), Durable::fresh(ck(1)), start_ms) }
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
        let kind = self.c.pending_kind(ck(n)).expect("completing a pending snapshot").clone();
        assert_eq!(self.ack_all(t, n), vec![complete_of(n, kind)]);
        self.c.completion_succeeded(t, ck(n))
    }

    fn savepoint(&mut self, t: u64) -> Vec<A> {
        self.c.trigger_savepoint(t, sp_dir(), false).expect("a savepoint may be taken")
    }

    fn stop(&mut self, t: u64) -> Vec<A> {
        self.c.trigger_savepoint(t, sp_dir(), true).expect("a stop may be requested")
    }

    /// Every task reports the end of its data at `t`; the actions of the last report.
    fn all_end(&mut self, t: u64) -> Vec<A> {
        let all: Vec<TaskRef> = tasks().into_iter().collect();
        let (last, rest) = all.split_last().unwrap();
        for &task in rest {
            assert_eq!(self.c.end_of_data(t, task), vec![]);
        }
        self.c.end_of_data(t, *last)
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
    assert_eq!(d.c.poll(200), vec![expired(1), fail_job(1, AbortReason::Expired), trigger(2)]);
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
    assert_eq!(d.c.poll(350), vec![expired(3), fail_job(3, AbortReason::Expired)]);
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
    assert_eq!(d.c.poll(650), vec![expired(6), fail_job(3, AbortReason::Expired)]);
}

#[test]
fn completion_subsumes_lower_pending_checkpoints_and_keeps_higher_ones() {
    let s = CoordinatorSettings { timeout_ms: 10_000, max_concurrent: 3, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.c.poll(100), vec![trigger(1)]);
    assert_eq!(d.c.poll(200), vec![trigger(2)]);
    assert_eq!(d.c.poll(300), vec![trigger(3)]);
    assert_eq!(d.c.pending(), vec![ck(1), ck(2), ck(3)]);
    assert_eq!(d.ack_all(310, 2), vec![complete(2)]);
    // Checkpoint 2 stays pending while its metadata is written.
    assert_eq!(d.c.pending(), vec![ck(1), ck(2), ck(3)]);
    assert_eq!(d.c.completion_succeeded(320, ck(2)), vec![subsumed(1, 2), notify(2)]);
    assert_eq!(d.c.pending(), vec![ck(3)]);
    assert_eq!(d.ack(330, 1, task(0, 0)), vec![]);
    assert_eq!(d.complete(340, 3), vec![notify(3)]);
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
fn ids_strictly_increase_from_first_id_and_across_restart_and_takeover() {
    let s = CoordinatorSettings { tolerable_failed_checkpoints: 5, ..settings() };
    let mut c: Coordinator<String> = Coordinator::new(s.clone(), tasks(), Durable::fresh(ck(42)), 0);
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
    assert_eq!(c.trigger_savepoint(360, sp_dir(), false), Ok(vec![savepoint(45)]));
    assert_eq!(c.next_id(), ck(46));
    // A new job manager taking the job over continues from the id after the last one handed out, and retains
    // what the old one retained.
    let durable = c.durable();
    assert_eq!(
        durable,
        Durable {
            next_id: ck(46),
            retained: vec![ck(42)],
            latest_savepoint: None,
            stopped_at: None,
            completing_savepoints: Vec::new()
        }
    );
    let mut taken_over: Coordinator<String> = Coordinator::new(s, tasks(), durable, 1_000);
    assert_eq!(taken_over.poll(1_100), vec![trigger(46)]);
    assert_eq!(taken_over.retained(), vec![ck(42)]);
    assert_eq!(taken_over.latest_snapshot(), Some(LatestSnapshot { id: ck(42), savepoint_dir: None }));
}

#[test]
fn retention_covers_checkpoints_an_earlier_job_manager_completed() {
    let s = CoordinatorSettings { num_retained: 2, ..settings() };
    let durable = Durable {
        next_id: ck(8),
        retained: vec![ck(5), ck(7)],
        latest_savepoint: None,
        stopped_at: None,
        completing_savepoints: Vec::new(),
    };
    let mut c: Coordinator<String> = Coordinator::new(s, tasks(), durable, 0);
    assert_eq!(c.poll(100), vec![trigger(8)]);
    for t in tasks() {
        c.ack(110, ck(8), t, state_of(ck(8), t));
    }
    assert_eq!(c.completion_succeeded(120, ck(8)), vec![discard(5), notify(8)]);
    assert_eq!(c.retained(), vec![ck(7), ck(8)]);
}

#[test]
fn restart_keeps_the_failure_count() {
    let s = CoordinatorSettings { timeout_ms: 50, tolerable_failed_checkpoints: 5, max_concurrent: 2, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.c.poll(100), vec![trigger(1)]);
    assert_eq!(d.c.poll(150), vec![expired(1)]);
    assert_eq!(d.c.poll(200), vec![trigger(2)]);
    assert_eq!(d.savepoint(210), vec![savepoint(3)]);
    assert_eq!(
        d.c.restart(220),
        vec![abort(2, AbortReason::JobRestart), abort_of(3, savepoint_kind(), AbortReason::JobRestart)]
    );
    assert_eq!(d.c.consecutive_failures(), 1);
}

#[test]
fn late_duplicate_and_unknown_acks_are_ignored() {
    let s = CoordinatorSettings { interval_ms: None, tolerable_failed_checkpoints: 10, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.savepoint(10), vec![savepoint(1)]);
    let c = &mut d.c;
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
    assert_eq!(
        c.ack(23, ck(1), task(1, 0), "c".into()),
        vec![Action::Complete { id: ck(1), kind: savepoint_kind(), states }]
    );
    // Acks and declines while the metadata is written are stale.
    assert_eq!(c.ack(30, ck(1), task(0, 0), "again".into()), vec![]);
    assert_eq!(c.decline(30, ck(1), task(0, 0), "stale".into(), Failure::Counted), vec![]);
    assert_eq!(c.completion_succeeded(40, ck(1)), vec![notify_of(1, savepoint_kind())]);
    assert_eq!(c.ack(50, ck(1), task(0, 0), "after".into()), vec![]);
    assert_eq!(d.savepoint(60), vec![savepoint(2)]);
    let c = &mut d.c;
    let declined_savepoint =
        abort_of(2, savepoint_kind(), AbortReason::Declined { task: task(0, 1), reason: "io".into() });
    assert_eq!(c.decline(70, ck(2), task(0, 1), "io".into(), Failure::Counted), vec![declined_savepoint]);
    assert_eq!(c.ack(80, ck(2), task(0, 0), "aborted".into()), vec![]);
    assert_eq!(c.decline(90, ck(2), task(0, 0), "again".into(), Failure::Counted), vec![]);
    assert_eq!(c.decline(90, ck(99), task(0, 0), "unknown".into(), Failure::Counted), vec![]);
    assert_eq!(d.savepoint(100), vec![savepoint(3)]);
    assert_eq!(d.c.decline(110, ck(3), task(9, 9), "stranger".into(), Failure::Counted), vec![]);
    assert_eq!(d.c.pending(), vec![ck(3)]);
    // Savepoint failures do not count against the job.
    assert_eq!(d.c.consecutive_failures(), 0);
}

#[test]
fn decline_counts_as_failure_only_when_flagged() {
    let s = CoordinatorSettings { tolerable_failed_checkpoints: 1, max_concurrent: 3, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.c.poll(100), vec![trigger(1)]);
    let not_ready = d.c.decline(110, ck(1), task(0, 0), "not ready".into(), Failure::NotCounted);
    assert_eq!(not_ready, vec![declined(1, task(0, 0), "not ready")]);
    assert_eq!(d.c.consecutive_failures(), 0);
    assert_eq!(d.c.poll(200), vec![trigger(2)]);
    assert_eq!(d.c.decline(210, ck(2), task(0, 1), "io".into(), Failure::Counted), vec![declined(2, task(0, 1), "io")]);
    assert_eq!(d.c.consecutive_failures(), 1);
    assert_eq!(d.c.poll(300), vec![trigger(3)]);
    let cause = AbortReason::Declined { task: task(1, 0), reason: "io".into() };
    assert_eq!(
        d.c.decline(310, ck(3), task(1, 0), "io".into(), Failure::Counted),
        vec![declined(3, task(1, 0), "io"), fail_job(2, cause)]
    );
    assert_eq!(d.c.consecutive_failures(), 0);
    assert_eq!(d.c.pending(), vec![]);
}

#[test]
fn a_fatal_decline_fails_the_job_for_good_whatever_the_tolerance() {
    let s = CoordinatorSettings { tolerable_failed_checkpoints: 100, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.c.poll(100), vec![trigger(1)]);
    let cause = AbortReason::Declined { task: task(1, 0), reason: "state too large".into() };
    assert_eq!(
        d.c.decline(110, ck(1), task(1, 0), "state too large".into(), Failure::Fatal),
        vec![abort(1, cause.clone()), Action::FailJob { consecutive_failures: 0, cause, fatal: true }]
    );
}

#[test]
fn a_failed_trigger_is_an_explicit_abort_that_counts() {
    let mut d = Driver::new(settings(), 0);
    assert_eq!(d.c.poll(100), vec![trigger(1)]);
    let cause = AbortReason::TriggerFailed { reason: "no space".into() };
    assert_eq!(
        d.c.abort(100, ck(1), cause.clone(), Failure::Counted),
        vec![abort(1, cause.clone()), fail_job(1, cause)]
    );
    // An abort of something no longer pending is ignored.
    assert_eq!(d.c.abort(100, ck(1), AbortReason::Expired, Failure::Counted), vec![]);
}

#[test]
fn completion_failed_counts_as_failure() {
    let s = CoordinatorSettings { tolerable_failed_checkpoints: 1, ..settings() };
    let mut d = Driver::new(s, 0);
    let disk_full = AbortReason::CompletionFailed { reason: "disk full".into() };
    assert_eq!(d.c.poll(100), vec![trigger(1)]);
    assert_eq!(d.ack_all(110, 1), vec![complete(1)]);
    assert_eq!(d.c.completion_failed(120, ck(1), "disk full".into()), vec![abort(1, disk_full)]);
    assert_eq!(d.c.consecutive_failures(), 1);
    assert_eq!(d.c.pending(), vec![]);
    assert_eq!(d.c.latest_completed(), None);
    assert_eq!(d.c.poll(200), vec![trigger(2)]);
    assert_eq!(d.ack_all(210, 2), vec![complete(2)]);
    let timeout = AbortReason::CompletionFailed { reason: "timeout".into() };
    assert_eq!(
        d.c.completion_failed(220, ck(2), "timeout".into()),
        vec![abort(2, timeout.clone()), fail_job(2, timeout)]
    );
    assert_eq!(d.c.consecutive_failures(), 0);
}

#[test]
fn a_savepoint_ignores_interval_min_pause_and_max_concurrent() {
    let s = CoordinatorSettings { min_pause_ms: 1_000, timeout_ms: 10_000, ..settings() };
    let mut d = Driver::new(s, 0);
    // This is long before the first periodic time, max(100, 1000).
    assert_eq!(d.savepoint(5), vec![savepoint(1)]);
    // With one pending, max_concurrent 1 and the min pause would both block a periodic trigger.
    assert_eq!(d.savepoint(6), vec![savepoint(2)]);
    // A savepoint does not subsume a lower pending savepoint: both are the user's.
    assert_eq!(d.complete(10, 2), vec![notify_of(2, savepoint_kind())]);
    assert_eq!(d.c.pending(), vec![ck(1)]);
    assert_eq!(d.complete(11, 1), vec![notify_of(1, savepoint_kind())]);
    // Savepoints are never retained nor discarded; the newest is what recovery would restore from.
    assert_eq!(d.c.retained(), vec![]);
    assert_eq!(d.c.latest_snapshot(), Some(LatestSnapshot { id: ck(2), savepoint_dir: Some(sp_dir()) }));
    // The periodic schedule still counts from the start.
    assert_eq!(d.c.next_wake_ms(), Some(1_000));
}

#[test]
fn a_completed_savepoint_subsumes_lower_pending_checkpoints_and_is_restored_from() {
    let s = CoordinatorSettings { timeout_ms: 10_000, max_concurrent: 2, num_retained: 1, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.c.poll(100), vec![trigger(1)]);
    assert_eq!(d.complete(110, 1), vec![notify(1)]);
    assert_eq!(d.c.poll(200), vec![trigger(2)]);
    assert_eq!(d.savepoint(210), vec![savepoint(3)]);
    assert_eq!(d.complete(220, 3), vec![subsumed(2, 3), notify_of(3, savepoint_kind())]);
    assert_eq!(d.c.retained(), vec![ck(1)]);
    assert_eq!(d.c.latest_snapshot(), Some(LatestSnapshot { id: ck(3), savepoint_dir: Some(sp_dir()) }));
    // A newer checkpoint takes over as the snapshot to restore from, and retention ignores the savepoint.
    assert_eq!(d.c.poll(300), vec![trigger(4)]);
    assert_eq!(d.complete(310, 4), vec![discard(1), notify(4)]);
    assert_eq!(d.c.latest_snapshot(), Some(LatestSnapshot { id: ck(4), savepoint_dir: None }));
    assert_eq!(d.c.durable().latest_savepoint, Some((ck(3), sp_dir())));
}

#[test]
fn a_savepoint_does_not_move_the_periodic_schedule() {
    let s = CoordinatorSettings { max_concurrent: 2, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.savepoint(50), vec![savepoint(1)]);
    assert_eq!(d.c.next_wake_ms(), Some(100));
    assert_eq!(d.c.poll(100), vec![trigger(2)]);
}

#[test]
fn without_interval_only_savepoints_and_the_final_checkpoint_happen() {
    let s = CoordinatorSettings { interval_ms: None, timeout_ms: 500, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.c.next_wake_ms(), None);
    assert_eq!(d.c.poll(1_000_000), vec![]);
    assert_eq!(d.savepoint(1_000_010), vec![savepoint(1)]);
    assert_eq!(d.c.next_wake_ms(), Some(1_000_510));
    assert_eq!(d.ack_all(1_000_020, 1), vec![complete_of(1, savepoint_kind())]);
    assert_eq!(d.c.next_wake_ms(), None);
    assert_eq!(d.c.completion_succeeded(1_000_030, ck(1)), vec![notify_of(1, savepoint_kind())]);
    assert_eq!(d.c.next_wake_ms(), None);
    assert_eq!(d.all_end(1_000_040), vec![final_trigger(2)]);
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
fn the_final_checkpoint_finishes_the_job_and_a_task_that_missed_finish_gets_it_again() {
    let s = CoordinatorSettings { max_concurrent: 2, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.c.poll(100), vec![trigger(1)]);
    assert_eq!(d.c.end_of_data(110, task(0, 0)), vec![]);
    // Checkpoint 1 is still waiting for this task, which can no longer receive its barrier.
    assert_eq!(
        d.c.unacked_by(task(0, 0)),
        vec![Unacked { id: ck(1), kind: TriggerKind::Periodic, triggered_at_ms: 100 }]
    );
    assert_eq!(d.ack(115, 1, task(0, 0)), vec![]);
    assert_eq!(d.c.unacked_by(task(0, 0)), vec![]);
    // A savepoint is refused once every task has ended.
    assert_eq!(d.all_end(120), vec![final_trigger(2)]);
    assert_eq!(d.c.trigger_savepoint(121, sp_dir(), false), Err(SavepointRefused::Finishing));
    // Checkpoint 1 was triggered before the end: it does not finish the job.
    assert_eq!(d.complete(130, 1), vec![notify(1)]);
    assert_eq!(d.complete(140, 2), vec![notify_of(2, TriggerKind::Final), finish(2)]);
    assert_eq!(d.c.finished_with(), Some(ck(2)));
    // No more periodic checkpoints: the tasks are going away.
    assert_eq!(d.c.next_wake_ms(), None);
    assert_eq!(d.c.end_of_data(150, task(1, 0)), vec![Action::Finish { last: ck(2), task: Some(task(1, 0)) }]);
}

#[test]
fn a_failed_final_checkpoint_is_followed_by_periodic_ones_that_finish_the_job() {
    let s = CoordinatorSettings { tolerable_failed_checkpoints: 5, timeout_ms: 50, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.all_end(10), vec![final_trigger(1)]);
    assert_eq!(d.c.poll(60), vec![abort_of(1, TriggerKind::Final, AbortReason::Expired)]);
    assert_eq!(d.c.poll(100), vec![trigger(2)]);
    assert_eq!(d.complete(110, 2), vec![notify(2), finish(2)]);
}

#[test]
fn a_completed_stop_ends_the_job_at_its_savepoint() {
    let s = CoordinatorSettings { max_concurrent: 2, timeout_ms: 10_000, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.c.poll(100), vec![trigger(1)]);
    assert_eq!(d.stop(150), vec![stop(2)]);
    // No periodic checkpoint, savepoint or final checkpoint while the stop is in progress: only the deadline of
    // checkpoint 1 can wake the coordinator.
    assert_eq!(d.c.next_wake_ms(), Some(10_100));
    assert_eq!(d.c.poll(300), vec![]);
    assert_eq!(d.c.trigger_savepoint(310, sp_dir(), false), Err(SavepointRefused::Stopping(ck(2))));
    assert_eq!(d.all_end(320), vec![]);
    assert_eq!(d.complete(330, 2), vec![subsumed(1, 2), notify_of(2, stop_kind()), finish(2)]);
    assert_eq!(d.c.stopped_at(), Some(ck(2)));
    assert_eq!(d.c.trigger_savepoint(340, sp_dir(), false), Err(SavepointRefused::Stopped(ck(2))));
    assert_eq!(d.c.next_wake_ms(), None);
    // The stop outlives a failover and a new job manager: the job ends at the savepoint, nothing else runs.
    assert_eq!(d.c.restart(400), vec![]);
    assert_eq!(d.c.finished_with(), Some(ck(2)));
    let durable = d.c.durable();
    assert_eq!(durable.stopped_at, Some(ck(2)));
    assert_eq!(durable.next_id, ck(3));
    let mut taken_over: Coordinator<String> = Coordinator::new(settings(), tasks(), durable, 500);
    assert_eq!(taken_over.poll(10_000), vec![]);
    assert_eq!(taken_over.latest_snapshot(), Some(LatestSnapshot { id: ck(2), savepoint_dir: Some(sp_dir()) }));
    assert_eq!(
        taken_over.end_of_data(10_600, task(0, 0)),
        vec![Action::Finish { last: ck(2), task: Some(task(0, 0)) }]
    );
}

#[test]
fn an_aborted_stop_lets_the_job_go_on_and_finish_normally() {
    let s = CoordinatorSettings { timeout_ms: 50, ..settings() };
    let mut d = Driver::new(s, 0);
    assert_eq!(d.stop(10), vec![stop(1)]);
    // Every task ends while the stop is pending: its outcome decides how the job ends.
    assert_eq!(d.all_end(20), vec![]);
    // The stop's savepoint expires: it does not count, and the deferred final checkpoint goes out.
    assert_eq!(d.c.poll(60), vec![abort_of(1, stop_kind(), AbortReason::Expired), final_trigger(2)]);
    assert_eq!(d.c.consecutive_failures(), 0);
    assert_eq!(d.c.stopping(), None);
    assert_eq!(d.complete(70, 2), vec![notify_of(2, TriggerKind::Final), finish(2)]);
}

#[test]
fn a_failover_during_a_stop_aborts_it() {
    let mut d = Driver::new(settings(), 0);
    assert_eq!(d.stop(10), vec![stop(1)]);
    assert_eq!(d.c.restart(20), vec![abort_of(1, stop_kind(), AbortReason::JobRestart)]);
    assert_eq!(d.c.stopping(), None);
    assert_eq!(d.c.poll(120), vec![trigger(2)]);
}

#[test]
#[should_panic(expected = "timeout")]
fn zero_timeout_is_rejected() {
    let _: Coordinator<String> =
        Coordinator::new(CoordinatorSettings { timeout_ms: 0, ..settings() }, tasks(), Durable::fresh(ck(1)), 0);
}

#[test]
#[should_panic(expected = "max_concurrent")]
fn zero_max_concurrent_is_rejected() {
    let s = CoordinatorSettings { max_concurrent: 0, ..settings() };
    let _: Coordinator<String> = Coordinator::new(s, tasks(), Durable::fresh(ck(1)), 0);
}

#[test]
#[should_panic(expected = "num_retained")]
fn zero_num_retained_is_rejected() {
    let s = CoordinatorSettings { num_retained: 0, ..settings() };
    let _: Coordinator<String> = Coordinator::new(s, tasks(), Durable::fresh(ck(1)), 0);
}

#[test]
#[should_panic(expected = "interval")]
fn zero_interval_is_rejected() {
    let s = CoordinatorSettings { interval_ms: Some(0), ..settings() };
    let _: Coordinator<String> = Coordinator::new(s, tasks(), Durable::fresh(ck(1)), 0);
}

#[test]
#[should_panic(expected = "at least one task")]
fn empty_job_is_rejected() {
    let _: Coordinator<String> = Coordinator::new(settings(), BTreeSet::new(), Durable::fresh(ck(1)), 0);
}

#[test]
#[should_panic(expected = "at or past")]
fn a_takeover_whose_counter_is_behind_its_snapshots_is_a_bug() {
    let durable = Durable {
        next_id: ck(3),
        retained: vec![ck(3)],
        latest_savepoint: None,
        stopped_at: None,
        completing_savepoints: Vec::new(),
    };
    let _: Coordinator<String> = Coordinator::new(settings(), tasks(), durable, 0);
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
