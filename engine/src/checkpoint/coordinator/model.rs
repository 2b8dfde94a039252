//! A property test: random event sequences (time passing, acks, declines, metadata outcomes, savepoints, stops,
//! ends of data, failovers and job manager takeovers) against an independent observer that checks every action
//! the coordinator returns against the rules in the module docs.

use super::tests::{A, ck, task};
use super::*;
use crate::checkpoint::registry::SharedReferences;
use proptest::prelude::*;

/// One event of a random run; `pick` and `task` choose among what exists, with one extra slot for a stranger.
#[derive(Clone, Debug)]
enum Event {
    Poll {
        dt: u64,
    },
    Savepoint {
        dt: u64,
        stop: bool,
    },
    Ack {
        dt: u64,
        pick: usize,
        task: usize,
        duplicate: bool,
    },
    AckAll {
        dt: u64,
        pick: usize,
    },
    Decline {
        dt: u64,
        pick: usize,
        task: usize,
        failure: Failure,
    },
    Abort {
        dt: u64,
        pick: usize,
    },
    Succeed {
        dt: u64,
        pick: usize,
    },
    Fail {
        dt: u64,
        pick: usize,
    },
    EndOfData {
        dt: u64,
        task: usize,
    },
    Restart {
        dt: u64,
    },
    /// The job manager dies and a new one takes the job over from what the coordinator made durable.
    Takeover {
        dt: u64,
    },
}

fn failure() -> impl Strategy<Value = Failure> {
    prop_oneof![3 => Just(Failure::Counted), 2 => Just(Failure::NotCounted), 1 => Just(Failure::Fatal)]
}

fn event() -> impl Strategy<Value = Event> {
    let dt = 0u64..120;
    prop_oneof![
        6 => dt.clone().prop_map(|dt| Event::Poll { dt }),
        1 => (dt.clone(), proptest::bool::weighted(0.4)).prop_map(|(dt, stop)| Event::Savepoint { dt, stop }),
        4 => (dt.clone(), any::<usize>(), any::<usize>(), proptest::bool::weighted(0.2))
            .prop_map(|(dt, pick, task, duplicate)| Event::Ack { dt, pick, task, duplicate }),
        4 => (dt.clone(), any::<usize>()).prop_map(|(dt, pick)| Event::AckAll { dt, pick }),
        1 => (dt.clone(), any::<usize>(), any::<usize>(), failure())
            .prop_map(|(dt, pick, task, failure)| Event::Decline { dt, pick, task, failure }),
        1 => (dt.clone(), any::<usize>()).prop_map(|(dt, pick)| Event::Abort { dt, pick }),
        3 => (dt.clone(), any::<usize>()).prop_map(|(dt, pick)| Event::Succeed { dt, pick }),
        1 => (dt.clone(), any::<usize>()).prop_map(|(dt, pick)| Event::Fail { dt, pick }),
        1 => (dt.clone(), any::<usize>()).prop_map(|(dt, task)| Event::EndOfData { dt, task }),
        1 => dt.clone().prop_map(|dt| Event::Restart { dt }),
        1 => dt.prop_map(|dt| Event::Takeover { dt }),
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
        .prop_map(|(interval_ms, min_pause_ms, timeout_ms, max_concurrent, tolerable, num_retained, n_tasks)| {
            let s = CoordinatorSettings {
                interval_ms,
                min_pause_ms,
                timeout_ms,
                max_concurrent,
                tolerable_failed_checkpoints: tolerable,
                num_retained,
            };
            (s, n_tasks)
        })
}

/// What the test remembers of a run, to check the coordinator's actions against the rules.
struct Observer {
    s: CoordinatorSettings,
    tasks: Vec<TaskRef>,
    now: u64,
    triggered: BTreeMap<CheckpointId, (u64, TriggerKind)>,
    /// Ids whose `Complete` went out and whose write outcome has not been reported, aborted or not.
    writing: BTreeSet<CheckpointId>,
    last_trigger: Option<CheckpointId>,
    /// Completed checkpoints (not savepoints), in completion order, over the whole run.
    completed_checkpoints: Vec<CheckpointId>,
    discarded: Vec<CheckpointId>,
    latest_savepoint: Option<CheckpointId>,
    periodic_anchor: u64,
    last_completion: Option<u64>,
    failures: u32,
    stopping: Option<CheckpointId>,
    stopped: Option<CheckpointId>,
    ended: BTreeSet<TaskRef>,
    finishing_from: Option<CheckpointId>,
    finished_with: Option<CheckpointId>,
    /// The state each task acked each snapshot with, for acks the coordinator took.
    sent: BTreeMap<CheckpointId, BTreeMap<TaskRef, String>>,
    /// The shared files each snapshot's taken acks refer to (pending, completed, or gone).
    refs: BTreeMap<CheckpointId, BTreeSet<String>>,
    /// Shared files some taken ack referred to, and those deleted since.
    registered: BTreeSet<String>,
    deleted: BTreeSet<String>,
}

impl Observer {
    /// The state `t` acks `id` with: a new shared file of its own, and the files it acked a completed checkpoint
    /// with, if `base` picks one (it may be subsumed by now: then the coordinator must refuse the ack).
    fn state(&self, id: CheckpointId, t: TaskRef, base: usize) -> String {
        // Savepoints are canonical: they share nothing.
        if self.triggered.get(&id).is_some_and(|(_, kind)| kind.is_savepoint()) {
            return format!("ck{}:v{}/{}", id.0, t.vertex.0, t.subtask.0);
        }
        let mut files = vec![format!("n{}x{}x{}@{}", id.0, t.vertex.0, t.subtask.0, id.0)];
        let completed = &self.completed_checkpoints;
        if !base.is_multiple_of(3) && !completed.is_empty() {
            let base = completed[base % completed.len()];
            if let Some(state) = self.sent.get(&base).and_then(|states| states.get(&t)) {
                files.extend(state.split_once('|').map(|(_, f)| f.split(',').map(String::from)).into_iter().flatten());
            }
        }
        files.sort();
        files.dedup();
        format!("ck{}:v{}/{}|{}", id.0, t.vertex.0, t.subtask.0, files.join(","))
    }

    /// Records an ack the coordinator took.
    fn took(&mut self, id: CheckpointId, t: TaskRef, state: String) {
        let files: Vec<String> = state.shared_files().into_iter().map(|f| f.name).collect();
        self.registered.extend(files.iter().cloned());
        self.refs.entry(id).or_default().extend(files);
        self.sent.entry(id).or_default().insert(t, state);
    }

    /// What the retained checkpoints and the pending snapshots refer to.
    fn referenced(&self, c: &Coordinator<String>) -> BTreeSet<String> {
        c.retained()
            .iter()
            .chain(c.pending().iter())
            .flat_map(|id| self.refs.get(id).into_iter().flatten())
            .cloned()
            .collect()
    }

    /// Every shared file that something refers to is registered, and every other one was deleted, once.
    fn check_shared(&self, c: &Coordinator<String>) {
        let referenced = self.referenced(c);
        let live: BTreeSet<String> = self.registered.difference(&self.deleted).cloned().collect();
        assert_eq!(c.shared_registry().live(), live, "the registry holds what was registered and not deleted");
        assert_eq!(live, referenced, "a file is live exactly while a retained or pending checkpoint refers to it");
    }
    fn pick(items: &[CheckpointId], pick: usize, stranger: CheckpointId) -> CheckpointId {
        if pick % (items.len() + 1) == items.len() { stranger } else { items[pick % (items.len() + 1)] }
    }

    fn task(&self, index: usize) -> TaskRef {
        self.tasks.get(index % (self.tasks.len() + 1)).copied().unwrap_or(task(99, 0))
    }

    fn all_ended(&self) -> bool {
        self.ended.len() == self.tasks.len()
    }

    /// Whether a savepoint request is accepted now.
    fn savepoint_allowed(&self) -> bool {
        self.stopping.is_none() && self.stopped.is_none() && self.finishing_from.is_none() && !self.all_ended()
    }

    /// A failover or a new job manager: what belongs to one deployment is gone (a pending stop's abort is checked
    /// with the actions).
    fn new_deployment(&mut self) {
        self.ended.clear();
        self.finishing_from = None;
        self.finished_with = self.stopped;
        self.periodic_anchor = self.now;
    }

    /// Checks the actions of one call, made at `self.now`, against the rules; `failure` is how the abort counts.
    fn check(&mut self, c: &Coordinator<String>, before: &[CheckpointId], actions: &[A], call: &str, failure: Failure) {
        let after = c.pending();
        let mut i = 0;
        while i < actions.len() {
            match &actions[i] {
                Action::Trigger { id, kind } => {
                    assert!(self.last_trigger.is_none_or(|last| last < *id), "trigger ids must increase");
                    self.last_trigger = Some(*id);
                    self.triggered.insert(*id, (self.now, kind.clone()));
                    assert!(after.contains(id));
                    match kind {
                        TriggerKind::Periodic => {
                            assert_eq!(call, "poll");
                            assert_eq!(i, actions.len() - 1, "the periodic trigger comes last");
                            assert!(self.stopping.is_none() && self.stopped.is_none(), "periodic during a stop");
                            assert!(self.finished_with.is_none(), "periodic after Finish");
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
                        TriggerKind::Savepoint { stop, .. } => {
                            assert_eq!(call, "savepoint");
                            if *stop {
                                self.stopping = Some(*id);
                            }
                        }
                        TriggerKind::Final => {
                            assert!(self.all_ended(), "the final checkpoint before every task ended");
                            assert!(
                                self.stopping.is_none() && self.stopped.is_none(),
                                "final checkpoint during a stop"
                            );
                            assert!(self.finishing_from.is_none(), "two final checkpoints");
                            self.finishing_from = Some(*id);
                        }
                    }
                }
                Action::Complete { id, kind, states } => {
                    assert_eq!(call, "ack");
                    assert!(before.contains(id) && after.contains(id), "Complete for a pending id");
                    assert_eq!(kind, &self.triggered[id].1);
                    assert_eq!(Some(states), self.sent.get(id));
                    assert_eq!(states.len(), self.tasks.len());
                    assert!(self.writing.insert(*id));
                }
                Action::DiscardShared { files, after: by } => {
                    let referenced = self.referenced(c);
                    for file in files {
                        assert!(!referenced.contains(file), "deleted `{file}`, which a checkpoint refers to");
                        assert!(self.registered.contains(file), "deleted `{file}`, which was never registered");
                        assert!(self.deleted.insert(file.clone()), "deleted `{file}` twice");
                    }
                    if let Some(by) = by {
                        assert!(before.contains(by) && !after.contains(by), "shared files of a pending snapshot");
                    }
                }
                Action::Abort { id, kind, reason } => {
                    assert!(before.contains(id) && !after.contains(id), "Abort for a pending id");
                    assert_eq!(kind, &self.triggered[id].1);
                    let counted = match reason {
                        AbortReason::Expired => {
                            assert_eq!(call, "poll");
                            assert!(!self.writing.contains(id), "a snapshot being written cannot expire");
                            assert!(self.now >= self.triggered[id].0 + self.s.timeout_ms);
                            Failure::Counted
                        }
                        AbortReason::Declined { .. } => {
                            assert_eq!(call, "decline");
                            failure
                        }
                        AbortReason::TriggerFailed { .. } => {
                            assert_eq!(call, "abort");
                            failure
                        }
                        AbortReason::Subsumed { by } => {
                            assert_eq!(call, "succeed");
                            assert!(id < by);
                            assert!(!kind.is_savepoint(), "savepoints are never subsumed");
                            Failure::NotCounted
                        }
                        AbortReason::CompletionFailed { .. } => {
                            assert_eq!(call, "fail");
                            Failure::Counted
                        }
                        AbortReason::JobRestart => {
                            assert_eq!(call, "restart");
                            Failure::NotCounted
                        }
                        AbortReason::SharedStateGone { file, .. } => {
                            assert_eq!(call, "ack");
                            assert!(self.deleted.contains(file), "refused a reference to `{file}`, which is live");
                            Failure::NotCounted
                        }
                    };
                    match counted {
                        Failure::Fatal => {
                            assert!(
                                matches!(actions.get(i + 1), Some(Action::FailJob { fatal: true, cause, .. }) if cause == reason)
                            );
                            self.failures = 0;
                            i += 1;
                        }
                        Failure::Counted if !kind.is_savepoint() => {
                            self.failures += 1;
                            if self.failures > self.s.tolerable_failed_checkpoints {
                                let expected = Action::FailJob {
                                    consecutive_failures: self.failures,
                                    cause: reason.clone(),
                                    fatal: false,
                                };
                                assert_eq!(actions.get(i + 1), Some(&expected));
                                self.failures = 0;
                                i += 1;
                            }
                        }
                        Failure::Counted | Failure::NotCounted => {}
                    }
                    if kind.is_stop() {
                        assert_eq!(self.stopping, Some(*id));
                        self.stopping = None;
                    }
                }
                Action::Notify { id, kind } => {
                    assert_eq!(call, "succeed");
                    assert_eq!(kind, &self.triggered[id].1);
                    if let Some(stop) = self.stopped {
                        assert!(*id <= stop, "notified {id} after the stop at {stop}");
                    }
                    match kind {
                        TriggerKind::Savepoint { stop, .. } => {
                            self.latest_savepoint = self.latest_savepoint.max(Some(*id));
                            if *stop {
                                assert_eq!(self.stopping, Some(*id));
                                self.stopping = None;
                                self.stopped = Some(*id);
                            }
                        }
                        TriggerKind::Periodic | TriggerKind::Final => {
                            assert!(
                                self.completed_checkpoints.last().is_none_or(|last| last < id),
                                "checkpoints complete in id order"
                            );
                            self.completed_checkpoints.push(*id);
                            self.failures = 0;
                            self.last_completion = Some(self.now);
                        }
                    }
                }
                Action::Discard { id } => {
                    assert_eq!(call, "succeed");
                    self.discarded.push(*id);
                }
                Action::Finish { last, task } => match task {
                    None => {
                        assert_eq!(call, "succeed");
                        let kind = &self.triggered[last].1;
                        assert!(
                            kind.is_stop() || (!kind.is_savepoint() && self.finishing_from.is_some_and(|f| *last >= f)),
                            "Finish with {last} of {kind:?}"
                        );
                        assert!(self.finished_with.is_none_or(|f| f < *last));
                        self.finished_with = Some(*last);
                    }
                    Some(t) => {
                        assert_eq!(call, "end_of_data");
                        assert!(self.tasks.contains(t));
                        assert_eq!(self.finished_with, Some(*last), "a repeated Finish carries the first's id");
                    }
                },
                Action::FailJob { .. } => panic!("FailJob without a failure before it: {actions:?}"),
            }
            i += 1;
        }
        assert_eq!(c.consecutive_failures(), self.failures);
        assert!(self.failures <= self.s.tolerable_failed_checkpoints);
        assert!(after.iter().all(|id| *id < c.next_id()));
        assert_eq!(c.stopping(), self.stopping);
        assert_eq!(c.stopped_at(), self.stopped);
        assert_eq!(c.finished_with(), self.finished_with);
        let keep = self.completed_checkpoints.len().min(self.s.num_retained as usize);
        let retained = &self.completed_checkpoints[self.completed_checkpoints.len() - keep..];
        assert_eq!(c.retained(), retained.to_vec());
        assert_eq!(self.discarded, self.completed_checkpoints[..self.completed_checkpoints.len() - keep].to_vec());
        assert_eq!(c.latest_completed(), retained.last().copied());
        assert_eq!(c.latest_snapshot().map(|s| s.id), retained.last().copied().max(self.latest_savepoint));
        for id in &after {
            if !self.writing.contains(id) {
                assert!(self.triggered[id].0 + self.s.timeout_ms > self.now || call != "poll", "left expired");
            }
        }
        self.check_shared(c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn random_runs_keep_the_invariants(
        (s, n_tasks) in random_settings(),
        start in 0u64..1_000,
        first_id in 1u64..100,
        events in proptest::collection::vec(event(), 1..150),
    ) {
        let tasks: BTreeSet<TaskRef> = (0..n_tasks).map(|i| task(i % 2, i / 2)).collect();
        let dir = PathBuf::from("/savepoints/sp");
        let mut c: Coordinator<String> = Coordinator::new(s.clone(), tasks.clone(), Durable::fresh(ck(first_id)), start);
        let mut o = Observer {
            s: s.clone(),
            tasks: tasks.iter().copied().collect(),
            now: start,
            triggered: BTreeMap::new(),
            writing: BTreeSet::new(),
            last_trigger: None,
            completed_checkpoints: Vec::new(),
            discarded: Vec::new(),
            latest_savepoint: None,
            periodic_anchor: start,
            last_completion: None,
            failures: 0,
            stopping: None,
            stopped: None,
            ended: BTreeSet::new(),
            finishing_from: None,
            finished_with: None,
            sent: BTreeMap::new(),
            refs: BTreeMap::new(),
            registered: BTreeSet::new(),
            deleted: BTreeSet::new(),
        };
        for e in events {
            let before = c.pending();
            let wake = c.next_wake_ms();
            let stranger = CheckpointId(c.next_id().0 + 3);
            // Snapshots still waiting for acks: the useful targets of acks and declines.
            let acking: Vec<CheckpointId> = before.iter().copied().filter(|id| !o.writing.contains(id)).collect();
            let writing: Vec<CheckpointId> = o.writing.iter().copied().collect();
            let (dt, call, failure, actions) = match e {
                Event::Poll { dt } => {
                    let actions = c.poll(o.now + dt);
                    // next_wake_ms must be exact: poll acts at or after it, and never before.
                    match wake {
                        Some(w) if o.now + dt >= w => prop_assert!(!actions.is_empty(), "idle at wake time"),
                        _ => prop_assert!(actions.is_empty(), "acted before wake time {wake:?}"),
                    }
                    (dt, "poll", Failure::NotCounted, actions)
                }
                Event::Savepoint { dt, stop } => {
                    let allowed = o.savepoint_allowed();
                    match c.trigger_savepoint(o.now + dt, dir.clone(), stop) {
                        Ok(actions) => {
                            prop_assert!(allowed, "a savepoint accepted while it should be refused");
                            (dt, "savepoint", Failure::NotCounted, actions)
                        }
                        Err(_) => {
                            prop_assert!(!allowed, "a savepoint refused while it should be accepted");
                            (dt, "savepoint", Failure::NotCounted, Vec::new())
                        }
                    }
                }
                Event::Ack { dt, pick, task, duplicate } => {
                    let id = Observer::pick(&acking, pick, stranger);
                    let t = o.task(task);
                    let state = o.state(id, t, pick / 7);
                    let fresh = o.tasks.contains(&t)
                        && acking.contains(&id)
                        && !o.sent.get(&id).is_some_and(|states| states.contains_key(&t));
                    let first = c.ack(o.now + dt, id, t, state.clone());
                    let refused = first.iter().any(|a| matches!(a, Action::Abort { .. }));
                    if fresh && !refused {
                        o.took(id, t, state);
                    }
                    if duplicate {
                        // A duplicate never completes anything and never replaces the first state.
                        prop_assert_eq!(c.ack(o.now + dt, id, t, "dup".into()), vec![]);
                    }
                    if !fresh {
                        prop_assert_eq!(&first, &vec![]);
                    }
                    (dt, "ack", Failure::NotCounted, first)
                }
                Event::AckAll { dt, pick } => {
                    let id = Observer::pick(&acking, pick, stranger);
                    let mut actions = Vec::new();
                    for t in o.tasks.clone() {
                        if !c.pending().contains(&id) {
                            break;
                        }
                        let state = o.state(id, t, pick / 7 + t.subtask.0 as usize);
                        let fresh = o.tasks.contains(&t)
                            && acking.contains(&id)
                            && !o.sent.get(&id).is_some_and(|states| states.contains_key(&t));
                        let taken = c.ack(o.now + dt, id, t, state.clone());
                        if fresh && !taken.iter().any(|a| matches!(a, Action::Abort { .. })) {
                            o.took(id, t, state);
                        }
                        actions.extend(taken);
                    }
                    (dt, "ack", Failure::NotCounted, actions)
                }
                Event::Decline { dt, pick, task, failure } => {
                    let id = Observer::pick(&acking, pick, stranger);
                    let t = o.task(task);
                    (dt, "decline", failure, c.decline(o.now + dt, id, t, "no".into(), failure))
                }
                Event::Abort { dt, pick } => {
                    let id = Observer::pick(&acking, pick, stranger);
                    let reason = AbortReason::TriggerFailed { reason: "io".into() };
                    (dt, "abort", Failure::Counted, c.abort(o.now + dt, id, reason, Failure::Counted))
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
                    (dt, "succeed", Failure::NotCounted, actions)
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
                    (dt, "fail", Failure::NotCounted, actions)
                }
                Event::EndOfData { dt, task } => {
                    let t = o.task(task);
                    if o.tasks.contains(&t) && o.finished_with.is_none() {
                        o.ended.insert(t);
                    }
                    (dt, "end_of_data", Failure::NotCounted, c.end_of_data(o.now + dt, t))
                }
                Event::Restart { dt } => {
                    o.now += dt;
                    let actions = c.restart(o.now);
                    o.new_deployment();
                    o.writing.clear();
                    o.check(&c, &before, &actions, "restart", Failure::NotCounted);
                    continue;
                }
                Event::Takeover { dt } => {
                    o.now += dt;
                    let durable = c.durable();
                    c = Coordinator::new(s.clone(), tasks.clone(), durable.clone(), o.now);
                    // Savepoints still being written are the job manager's to adopt or lose, not the coordinator's.
                    prop_assert_eq!(c.durable(), Durable { completing_savepoints: Vec::new(), ..durable });
                    // The new job manager rebuilds the registry from the retained checkpoints' `_metadata`, and
                    // sweeps what nothing retained refers to (files of snapshots the old one had in flight).
                    let retained: Vec<(CheckpointId, Vec<crate::checkpoint::registry::SharedFile>)> = c
                        .retained()
                        .into_iter()
                        .map(|id| {
                            let files = o.sent.get(&id).into_iter().flat_map(|s| s.values()).flat_map(|s| s.shared_files());
                            let mut files: Vec<_> = files.collect();
                            files.sort();
                            files.dedup();
                            (id, files)
                        })
                        .collect();
                    c.rebuild_registry(retained);
                    let kept: BTreeSet<String> =
                        c.retained().iter().flat_map(|id| o.refs.get(id).into_iter().flatten()).cloned().collect();
                    let swept: Vec<String> = o.registered.difference(&o.deleted).filter(|f| !kept.contains(*f)).cloned().collect();
                    o.deleted.extend(swept);
                    // What was pending is lost with the old job manager: its outcomes never arrive.
                    o.writing.clear();
                    o.stopping = None;
                    o.new_deployment();
                    o.last_completion = None;
                    o.failures = 0;
                    o.check(&c, &[], &[], "takeover", Failure::NotCounted);
                    continue;
                }
            };
            o.now += dt;
            o.check(&c, &before, &actions, call, failure);
        }
    }
}
