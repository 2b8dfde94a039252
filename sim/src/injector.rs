//! The fault injector: the engine's fault hook, driven by a scenario's faults and the seed.
//!
//! Scripted faults fire once: at a simulated time, when a checkpoint reaches a phase, some time after an event (a
//! savepoint, a stop, the final checkpoint, a restore, a failover), or the `nth` time a fault point is reached in
//! its scope. Random ones fire with their rate at every opportunity (each RPC, each barrier on each channel, each
//! snapshot, each point in scope). When the healing phase starts, every fault stops, except a slow disk declared
//! to persist.
//!
//! Every fault draws its random decisions (whether it fires, its delay, a `random` node) from a stream of its own,
//! seeded by the run's seed and the fault itself, never from the simulation's generator: removing one fault from a
//! scenario (what shrinking does) leaves the others' decisions as they were, and the faults' draws do not move the
//! simulation's own.
//!
//! Nodes die where the fault strikes: the injector kills them synchronously, inside the fault point, so the dying
//! node does nothing after the point (see `engine::faults`). Restarts, resumptions and faults due later are the
//! controller's, a task on the simulation's main node, since a task of the dying node never runs again.

use crate::points::{self, PointAction, PointName};
use crate::scenario::{DurationRange, Event, FaultSpec, Scope};
use crate::storage::{CrashMode, FaultWindow, SimStorage, StorageFaults};
use engine::faults::{CheckpointPhase, Fate, FaultHook, FaultPoint, JobEvent, PointKind, RpcKind, SnapshotClass};
use engine::ids::CheckpointId;
use engine::seam::runtime::{self, Node};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// Work for the controller, on the simulation's main node.
#[derive(Debug)]
pub enum NodeAction {
    /// Restart a killed node after a while.
    Restart { node: String, after: Duration },
    /// Resume a paused node after a while.
    Resume { node: String, after: Duration },
    /// Fire scripted fault `index` after a while.
    Fire { index: usize, after: Duration },
}

/// The cluster's nodes, by name, for the injector and the controller.
pub type Nodes = BTreeMap<String, Node>;

/// How long a node crashed at a fault point stays down unless the fault says.
const DEFAULT_RESTART_AFTER: Duration = Duration::from_secs(1);

pub use crate::stream::{Stream, fnv};

/// Each fault's stream: keyed by what the fault is (its description), and by how many identical faults come before
/// it, so that a fault keeps its stream whatever other faults are added or removed.
fn streams(seed: u64, faults: &[FaultSpec]) -> Vec<Mutex<Stream>> {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    faults
        .iter()
        .map(|fault| {
            let description = format!("{fault:?}");
            let twin = seen.entry(description.clone()).or_default();
            let key = fnv(description.as_bytes()) ^ twin.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            *twin += 1;
            Mutex::new(Stream::new(seed, key))
        })
        .collect()
}

struct State {
    enabled: bool,
    fired: BTreeSet<usize>,
    /// Task managers cut off, by name, until a simulated time in milliseconds.
    partitioned: BTreeMap<String, u64>,
    /// Subtasks (vertex, subtask) to fail at their next batch.
    failing: BTreeSet<(u32, u32)>,
    /// How often each `at_point` fault's point was reached in scope.
    reached: BTreeMap<usize, u64>,
    /// Events seen so far.
    events: BTreeSet<Event>,
    /// Each volume's base faults, by mount point.
    storage_base: BTreeMap<PathBuf, StorageFaults>,
    /// Slow disks that stay slow after the faults phase.
    persistent: BTreeMap<PathBuf, StorageFaults>,
}

/// The engine's fault hook in a simulated run.
pub struct Injector {
    faults: Vec<FaultSpec>,
    streams: Vec<Mutex<Stream>>,
    task_managers: u32,
    storage: SimStorage,
    nodes: Arc<Mutex<Nodes>>,
    actions: UnboundedSender<NodeAction>,
    state: Mutex<State>,
    /// Set by `heal`; read without the lock on every point.
    healed: AtomicBool,
    /// The points some `at_point` fault watches, by [`PointName::index`]: the others pass at once.
    watched: [bool; PointName::ALL.len()],
}

impl Injector {
    /// A new injector over `faults` for `seed`, and the receiver its controller drains.
    pub fn new(
        seed: u64,
        faults: Vec<FaultSpec>,
        task_managers: u32,
        storage: SimStorage,
        nodes: Arc<Mutex<Nodes>>,
    ) -> (Injector, tokio::sync::mpsc::UnboundedReceiver<NodeAction>) {
        let (actions, receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut storage_base: BTreeMap<PathBuf, StorageFaults> = BTreeMap::new();
        let mut watched = [false; PointName::ALL.len()];
        for fault in &faults {
            match fault {
                FaultSpec::StorageErrors { write_rate, fsync_rate, read_rate, volume, from, until } => {
                    let errors = StorageFaults {
                        write_error_rate: *write_rate,
                        fsync_error_rate: *fsync_rate,
                        read_error_rate: *read_rate,
                        ..StorageFaults::default()
                    };
                    for path in crate::layout::volume_paths(volume, task_managers) {
                        match (from, until) {
                            (None, None) => {
                                let base = storage_base.entry(path).or_default();
                                *base = base.combined(&errors);
                            }
                            (from, until) => storage.add_fault_window(
                                &path,
                                FaultWindow {
                                    from: from.unwrap_or_default(),
                                    until: until.unwrap_or(Duration::MAX),
                                    faults: errors.clone(),
                                },
                            ),
                        }
                    }
                }
                FaultSpec::AtPoint { point, .. } => watched[point.index()] = true,
                _ => {}
            }
        }
        for (path, faults) in &storage_base {
            storage.set_volume_faults(path, faults.clone());
        }
        let state = State {
            enabled: true,
            fired: BTreeSet::new(),
            partitioned: BTreeMap::new(),
            failing: BTreeSet::new(),
            reached: BTreeMap::new(),
            events: BTreeSet::new(),
            storage_base,
            persistent: BTreeMap::new(),
        };
        let streams = streams(seed, &faults);
        let injector = Injector {
            faults,
            streams,
            task_managers,
            storage,
            nodes,
            actions,
            state: Mutex::new(state),
            healed: AtomicBool::new(false),
            watched,
        };
        (injector, receiver)
    }

    fn enabled(&self) -> bool {
        !self.healed.load(Ordering::Relaxed)
    }

    fn stream(&self, index: usize) -> std::sync::MutexGuard<'_, Stream> {
        self.streams[index].lock().expect("stream lock")
    }

    /// The healing phase: every fault stops, storage becomes healthy and fast (but for slow disks that persist).
    pub fn heal(&self) {
        let mut state = self.state.lock().expect("injector lock");
        if self.healed.swap(true, Ordering::SeqCst) {
            return;
        }
        state.enabled = false;
        state.partitioned.clear();
        state.failing.clear();
        // Every volume's faults and fault windows end.
        self.storage.heal();
        for (path, faults) in &state.persistent {
            self.storage.set_volume_faults(path, faults.clone());
        }
        tracing::info!(target: "weir::trace", "healing: faults stop");
    }

    /// The scripted faults that fire at a time from the start, with their index.
    pub fn timed(&self) -> Vec<(usize, Duration)> {
        self.faults
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.when().filter(|w| w.after.is_none() && w.phase.is_none()).and_then(|w| w.at).map(|at| (i, at))
            })
            .collect()
    }

    /// The faults, by index, that fire at a time, an event, a checkpoint's phase or a fault point and have not
    /// fired in this run. (Faults that act at a rate on every message, barrier or storage operation are left out:
    /// whether they did anything is not one event.)
    pub fn unfired(&self) -> Vec<usize> {
        let state = self.state.lock().expect("injector lock");
        let trackable = |fault: &FaultSpec| fault.when().is_some() || matches!(fault, FaultSpec::AtPoint { .. });
        (0..self.faults.len()).filter(|&i| trackable(&self.faults[i]) && !state.fired.contains(&i)).collect()
    }

    /// Fires scripted fault `index` (once).
    pub fn fire(&self, index: usize) {
        let mut state = self.state.lock().expect("injector lock");
        if !state.enabled || !state.fired.insert(index) {
            return;
        }
        let fault = &self.faults[index];
        tracing::info!(target: "weir::trace", fault = %describe(fault), "fault: firing");
        let now = runtime::elapsed();
        match fault {
            FaultSpec::CrashTaskManager { node, restart_after, .. } => {
                let node = self.pick(index, node);
                drop(state);
                self.kill(&node, *restart_after);
            }
            FaultSpec::FailSubtask { vertex, subtask, .. } => {
                state.failing.insert((vertex.expect("resolved when the scenario was loaded"), *subtask));
            }
            FaultSpec::CrashJobManager { restart_after, .. } => {
                drop(state);
                self.kill("jm", *restart_after);
            }
            FaultSpec::PauseNode { node, duration, .. } => {
                let node = self.pick(index, node);
                drop(state);
                self.pause(&node, *duration);
            }
            FaultSpec::StorageFull { duration, volume, .. } => {
                let full = StorageFaults { capacity_bytes: Some(0), ..StorageFaults::default() };
                self.window(volume, now, *duration, full);
            }
            FaultSpec::StorageStall { duration, volume, .. } => {
                let stall = StorageFaults { stall: true, ..StorageFaults::default() };
                self.window(volume, now, *duration, stall);
            }
            FaultSpec::SlowStorage { latency, volume, persists, .. } => {
                for path in crate::layout::volume_paths(volume, self.task_managers) {
                    let base = state.storage_base.entry(path.clone()).or_default();
                    base.latency = Some((latency.min, latency.max));
                    let base = base.clone();
                    if *persists {
                        let slow = StorageFaults { latency: base.latency, ..StorageFaults::default() };
                        state.persistent.insert(path.clone(), slow);
                    }
                    self.storage.set_volume_faults(&path, base);
                }
            }
            FaultSpec::StorageCrash { volume, .. } => self.crash_storage(volume),
            FaultSpec::PartitionNode { node, duration, .. } => {
                let node = self.pick(index, node);
                state.partitioned.insert(node, now.as_millis() as u64 + duration.as_millis() as u64);
            }
            FaultSpec::AtPoint { .. }
            | FaultSpec::DelayBarriers { .. }
            | FaultSpec::DropRpc { .. }
            | FaultSpec::DelayRpc { .. }
            | FaultSpec::StallSnapshot { .. }
            | FaultSpec::StorageErrors { .. } => {}
        }
    }

    /// Faults on every volume `volume` names, from `now` for `duration`.
    fn window(&self, volume: &str, now: Duration, duration: Duration, faults: StorageFaults) {
        for path in crate::layout::volume_paths(volume, self.task_managers) {
            let window = FaultWindow { from: now, until: now + duration, faults: faults.clone() };
            self.storage.add_fault_window(&path, window);
        }
    }

    /// Kills `node` now, wiping its local disk; the controller restarts it after `restart_after`.
    fn kill(&self, node: &str, restart_after: Duration) {
        let Some(handle) = self.nodes.lock().expect("nodes lock").get(node).cloned() else { return };
        tracing::info!(target: "weir::trace", %node, restart_after = %format_args!("{restart_after:?}"), "fault: node killed");
        if let Err(error) = handle.kill() {
            tracing::warn!(%error, "cannot inject a node fault");
            return;
        }
        wipe_local_disk(&self.storage, node);
        let _ = self.actions.send(NodeAction::Restart { node: node.to_string(), after: restart_after });
    }

    /// Pauses `node` now; the controller resumes it after `duration`.
    fn pause(&self, node: &str, duration: Duration) {
        let Some(handle) = self.nodes.lock().expect("nodes lock").get(node).cloned() else { return };
        tracing::info!(target: "weir::trace", %node, duration = %format_args!("{duration:?}"), "fault: node paused");
        if let Err(error) = handle.pause() {
            tracing::warn!(%error, "cannot pause a node");
            return;
        }
        let _ = self.actions.send(NodeAction::Resume { node: node.to_string(), after: duration });
    }

    /// The node a fault names: `random` is drawn from the fault's own stream.
    fn pick(&self, index: usize, node: &str) -> String {
        match node {
            "random" => format!("tm-{}", self.stream(index).below(u64::from(self.task_managers))),
            name => name.to_string(),
        }
    }
}

/// A fault in one line, as the trace shows it.
pub fn describe(fault: &FaultSpec) -> String {
    match toml::to_string(fault) {
        Ok(text) => text.lines().map(str::trim).collect::<Vec<_>>().join(", "),
        Err(_) => format!("{fault:?}"),
    }
}

/// A whole-job restart in one line.
pub fn describe_restart(restart: &crate::scenario::RestartSpec) -> String {
    match toml::to_string(restart) {
        Ok(text) => text.lines().map(str::trim).collect::<Vec<_>>().join(", "),
        Err(_) => format!("{restart:?}"),
    }
}

/// The event a point is, if it is one faults can count from.
fn event_of(point: &FaultPoint<'_>) -> Option<Event> {
    match *point {
        FaultPoint::Snapshot { class: SnapshotClass::Savepoint, phase: CheckpointPhase::Completed, .. } => {
            Some(Event::Savepoint)
        }
        FaultPoint::Snapshot { class: SnapshotClass::Stop, phase: CheckpointPhase::Completed, .. } => Some(Event::Stop),
        FaultPoint::Snapshot { class: SnapshotClass::Final, phase: CheckpointPhase::Triggered, .. } => {
            Some(Event::Final)
        }
        FaultPoint::Job { event: JobEvent::Deployed, restored: Some(_), .. } => Some(Event::Restore),
        FaultPoint::Job { event: JobEvent::FailingOver, .. } => Some(Event::Failover),
        _ => None,
    }
}

impl FaultHook for Injector {
    fn at(&self, node: &str, point: FaultPoint<'_>) -> Fate {
        if !self.enabled() {
            return Fate::Proceed;
        }
        let name = points::name_of(&point);
        if self.watched[name.index()]
            && let Some(fate) = self.at_point(node, name, &point)
        {
            return fate;
        }
        match point {
            FaultPoint::Snapshot { id, class, phase, .. } => {
                self.on_snapshot_phase(id, class, phase);
                self.on_event(&point);
                Fate::Proceed
            }
            FaultPoint::Job { .. } => {
                self.on_event(&point);
                Fate::Proceed
            }
            FaultPoint::Rpc { kind, host, .. } => self.rpc_fate(kind, host),
            FaultPoint::Barrier { .. } => self.delay_drawn(|fault| match fault {
                FaultSpec::DelayBarriers { rate, delay } => Some((*rate, *delay)),
                _ => None,
            }),
            FaultPoint::SnapshotAsync { .. } => self.delay_drawn(|fault| match fault {
                FaultSpec::StallSnapshot { rate, delay } => Some((*rate, *delay)),
                _ => None,
            }),
            FaultPoint::Batch { task, .. } => {
                let mut state = self.state.lock().expect("injector lock");
                match state.enabled && state.failing.remove(&(task.vertex.0, task.subtask.0)) {
                    true => Fate::Fail,
                    false => Fate::Proceed,
                }
            }
            FaultPoint::Acknowledge { .. }
            | FaultPoint::Discard { .. }
            | FaultPoint::Recovery { .. }
            | FaultPoint::RestoreState { .. }
            | FaultPoint::Deploy { .. }
            | FaultPoint::Sink { .. }
            | FaultPoint::Interleave { .. } => Fate::Proceed,
        }
    }

    fn listens(&self, kind: PointKind) -> bool {
        let aimed_at = PointName::ALL.iter().any(|name| self.watched[name.index()] && name.kind() == kind);
        aimed_at
            || match kind {
                // Snapshot phases and job events start faults timed after them; RPCs, barriers and snapshots'
                // asynchronous parts draw the faults of their own kinds.
                PointKind::Snapshot
                | PointKind::Job
                | PointKind::Rpc
                | PointKind::Barrier
                | PointKind::SnapshotAsync => true,
                PointKind::Batch => self.faults.iter().any(|fault| matches!(fault, FaultSpec::FailSubtask { .. })),
                // Only `at_point` faults act at these, as `at` shows.
                PointKind::Acknowledge
                | PointKind::Discard
                | PointKind::Recovery
                | PointKind::RestoreState
                | PointKind::Deploy
                | PointKind::Sink
                | PointKind::Interleave => false,
            }
    }
}

/// Whether `point`, reached on `node` now, is within `scope`.
fn in_scope(scope: &Scope, node: &str, point: &FaultPoint<'_>) -> bool {
    let now = runtime::elapsed();
    if scope.from.is_some_and(|from| now < from) || scope.until.is_some_and(|until| now >= until) {
        return false;
    }
    if scope.node.as_deref().is_some_and(|wanted| wanted != node) {
        return false;
    }
    let attributes = points::attributes_of(point);
    let task_ok = match (scope.vertex, scope.subtask) {
        (None, None) => true,
        (vertex, subtask) => attributes.task.is_some_and(|task| {
            vertex.is_none_or(|v| v == task.vertex.0) && subtask.is_none_or(|s| s == task.subtask.0)
        }),
    };
    task_ok
        && scope.checkpoint.is_none_or(|id| attributes.checkpoint == Some(CheckpointId(id)))
        && scope.class.is_none_or(|class| attributes.class == Some(class))
        && scope.channel.is_none_or(|channel| attributes.channel == Some(channel))
}

impl Injector {
    /// Power-cycles every volume `volume` names, keeping what the seed keeps of their unsynced operations.
    fn crash_storage(&self, volume: &str) {
        for path in crate::layout::volume_paths(volume, self.task_managers) {
            self.storage.crash_volume(&path, CrashMode::Seeded);
        }
    }

    /// The fate the `at_point` faults give `point` (named `name`) on `node`, if one fires.
    fn at_point(&self, node: &str, name: PointName, point: &FaultPoint<'_>) -> Option<Fate> {
        for (index, fault) in self.faults.iter().enumerate() {
            let FaultSpec::AtPoint { point: wanted, action, nth, rate, delay, restart_after, scope } = fault else {
                continue;
            };
            if *wanted != name || !in_scope(scope, node, point) {
                continue;
            }
            let fires = match (nth, rate) {
                (Some(nth), _) => {
                    let mut state = self.state.lock().expect("injector lock");
                    let reached = state.reached.entry(index).or_default();
                    *reached += 1;
                    *reached == *nth && state.fired.insert(index)
                }
                (None, Some(rate)) => {
                    let fires = self.stream(index).chance(*rate);
                    if fires {
                        self.state.lock().expect("injector lock").fired.insert(index);
                    }
                    fires
                }
                (None, None) => false,
            };
            if !fires {
                continue;
            }
            tracing::info!(target: "weir::trace", fault = %describe(fault), %node, at = %point, "fault: firing");
            return Some(match action {
                PointAction::Crash => {
                    self.kill(node, restart_after.unwrap_or(DEFAULT_RESTART_AFTER));
                    Fate::Crash
                }
                PointAction::Fail => Fate::Fail,
                PointAction::Drop => Fate::Drop,
                PointAction::Delay => {
                    let range = delay.unwrap_or(DurationRange { min: Duration::ZERO, max: Duration::ZERO });
                    Fate::Delay(self.stream(index).between(range.min, range.max))
                }
                PointAction::CrashStorage => {
                    self.crash_storage("dfs");
                    match delay {
                        Some(range) => Fate::Delay(self.stream(index).between(range.min, range.max)),
                        None => Fate::Proceed,
                    }
                }
            });
        }
        None
    }

    fn on_snapshot_phase(&self, checkpoint: CheckpointId, class: SnapshotClass, phase: CheckpointPhase) {
        let due: Vec<usize> = self
            .faults
            .iter()
            .enumerate()
            .filter(|(_, f)| f.when().is_some_and(|w| w.after.is_none() && w.matches(checkpoint.0, class, phase)))
            .map(|(i, _)| i)
            .collect();
        for index in due {
            match self.faults[index].when().and_then(|w| w.at) {
                Some(after) => {
                    let _ = self.actions.send(NodeAction::Fire { index, after });
                }
                None => self.fire(index),
            }
        }
    }

    /// The first time an event happens, the faults counting from it are set off.
    fn on_event(&self, point: &FaultPoint<'_>) {
        let Some(event) = event_of(point) else { return };
        if !self.state.lock().expect("injector lock").events.insert(event) {
            return;
        }
        tracing::info!(target: "weir::trace", event = ?event, "fault: event seen");
        for (index, fault) in self.faults.iter().enumerate() {
            if let Some(when) = fault.when().filter(|w| w.after == Some(event)) {
                let after = when.at.unwrap_or_default();
                let _ = self.actions.send(NodeAction::Fire { index, after });
            }
        }
    }

    fn rpc_fate(&self, kind: RpcKind, host: &str) -> Fate {
        let now_ms = runtime::elapsed().as_millis() as u64;
        {
            let state = self.state.lock().expect("injector lock");
            if state.partitioned.get(host).is_some_and(|&until| now_ms < until) {
                return Fate::Drop;
            }
        }
        for (index, fault) in self.faults.iter().enumerate() {
            match fault {
                FaultSpec::DropRpc { message, rate } if message.matches(kind) && self.stream(index).chance(*rate) => {
                    return Fate::Drop;
                }
                FaultSpec::DelayRpc { message, rate, delay } if message.matches(kind) => {
                    let mut stream = self.stream(index);
                    if stream.chance(*rate) {
                        return Fate::Delay(stream.between(delay.min, delay.max));
                    }
                }
                _ => {}
            }
        }
        Fate::Proceed
    }

    /// The first random delay fault `select` picks that fires at this opportunity.
    fn delay_drawn(&self, select: impl Fn(&FaultSpec) -> Option<(f64, DurationRange)>) -> Fate {
        for (index, fault) in self.faults.iter().enumerate() {
            if let Some((rate, delay)) = select(fault) {
                let mut stream = self.stream(index);
                if stream.chance(rate) {
                    return Fate::Delay(stream.between(delay.min, delay.max));
                }
            }
        }
        Fate::Proceed
    }
}

/// Wipes task manager `node`'s local disk, if it has one mounted.
pub fn wipe_local_disk(storage: &SimStorage, node: &str) {
    let disk = std::path::Path::new(crate::layout::LOCAL_DIR).join(node);
    if storage.volumes().contains(&disk) {
        storage.wipe(&disk);
    }
}

/// Carries out node actions until the channel closes: restarts and resumptions after a delay, and faults due some
/// time after an event.
pub async fn controller(
    mut actions: tokio::sync::mpsc::UnboundedReceiver<NodeAction>,
    nodes: Arc<Mutex<Nodes>>,
    injector: std::sync::Weak<Injector>,
) {
    while let Some(action) = actions.recv().await {
        let nodes = nodes.clone();
        let injector = injector.clone();
        runtime::spawn(async move {
            match action {
                NodeAction::Restart { node, after } => {
                    runtime::sleep(after).await;
                    let Some(handle) = nodes.lock().expect("nodes lock").get(&node).cloned() else { return };
                    tracing::info!(target: "weir::trace", node = handle.name(), "node restarted");
                    if let Err(error) = handle.restart() {
                        tracing::warn!(%error, "cannot restart a node");
                    }
                }
                NodeAction::Resume { node, after } => {
                    runtime::sleep(after).await;
                    let Some(handle) = nodes.lock().expect("nodes lock").get(&node).cloned() else { return };
                    tracing::info!(target: "weir::trace", node = handle.name(), "node resumed");
                    if let Err(error) = handle.resume() {
                        tracing::warn!(%error, "cannot resume a node");
                    }
                }
                NodeAction::Fire { index, after } => {
                    runtime::sleep(after).await;
                    if let Some(injector) = injector.upgrade() {
                        injector.fire(index);
                    }
                }
            }
        });
    }
}
