//! The fault injector: the engine's fault hook, driven by a scenario's faults and the seed.
//!
//! Scripted faults fire once, at a simulated time or when a checkpoint reaches a phase;
//! random ones fire with their rate at every opportunity (each RPC, each barrier on each
//! channel, each snapshot). Killing and restarting nodes is done by a controller task on
//! the simulation's main node: a hook may run on the very node it is asked to kill.
//! When the healing phase starts, every fault stops.

use crate::scenario::{DurationRange, FaultSpec, When};
use crate::storage::{SimStorage, StorageFaults};
use engine::faults::{CheckpointPhase, Fate, FaultHook, FaultPoint, RpcKind, SnapshotClass};
use engine::ids::{CheckpointId, TaskRef};
use engine::seam::runtime::{self, Node};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// A node action for the controller.
#[derive(Debug)]
pub enum NodeAction {
    Kill { node: String, restart_after: Duration },
}

/// The cluster's nodes, by name, for the controller.
pub type Nodes = BTreeMap<String, Node>;

struct State {
    enabled: bool,
    fired: BTreeSet<usize>,
    /// Task managers cut off, by name, until a simulated time in milliseconds.
    partitioned: BTreeMap<String, u64>,
    /// Subtasks (vertex, subtask) to fail at their next batch.
    failing: BTreeSet<(u32, u32)>,
    storage_base: StorageFaults,
}

pub struct Injector {
    faults: Vec<FaultSpec>,
    task_managers: u32,
    storage: SimStorage,
    actions: UnboundedSender<NodeAction>,
    state: Mutex<State>,
    /// Set by `heal`; delayed fault ends check it so they never undo healing.
    healed: Arc<AtomicBool>,
}

/// Draws `true` with probability `rate`, from the simulation's seeded generator.
pub fn chance(rate: f64) -> bool {
    rate > 0.0 && (runtime::random_u64() >> 11) as f64 / (1u64 << 53) as f64 <= rate
}

/// Draws a duration uniformly from `range`.
pub fn draw(range: DurationRange) -> Duration {
    let span_ms = (range.max - range.min).as_millis() as u64;
    range.min + Duration::from_millis(if span_ms == 0 { 0 } else { runtime::random_u64() % (span_ms + 1) })
}

impl Injector {
    /// A new injector, and the receiver its controller drains.
    pub fn new(
        faults: Vec<FaultSpec>,
        task_managers: u32,
        storage: SimStorage,
    ) -> (Injector, tokio::sync::mpsc::UnboundedReceiver<NodeAction>) {
        let (actions, receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut storage_base = StorageFaults::default();
        for fault in &faults {
            if let FaultSpec::StorageErrors { write_rate, fsync_rate, read_rate } = fault {
                storage_base.write_error_rate = *write_rate;
                storage_base.fsync_error_rate = *fsync_rate;
                storage_base.read_error_rate = *read_rate;
            }
        }
        storage.set_faults(storage_base.clone());
        let state = State {
            enabled: true,
            fired: BTreeSet::new(),
            partitioned: BTreeMap::new(),
            failing: BTreeSet::new(),
            storage_base,
        };
        (
            Injector {
                faults,
                task_managers,
                storage,
                actions,
                state: Mutex::new(state),
                healed: Arc::new(AtomicBool::new(false)),
            },
            receiver,
        )
    }

    fn enabled(&self) -> bool {
        self.state.lock().expect("injector lock").enabled
    }

    /// The healing phase: every fault stops, storage becomes healthy and fast.
    pub fn heal(&self) {
        let mut state = self.state.lock().expect("injector lock");
        if self.healed.load(Ordering::SeqCst) {
            return;
        }
        state.enabled = false;
        state.partitioned.clear();
        self.healed.store(true, Ordering::SeqCst);
        // Every volume's faults and fault windows end.
        self.storage.heal();
        tracing::info!(target: "weir::trace", "healing: faults stop");
    }

    /// The scripted faults that fire at a time, with their index.
    pub fn timed(&self) -> Vec<(usize, Duration)> {
        self.faults.iter().enumerate().filter_map(|(i, f)| when_of(f).and_then(|w| w.at).map(|at| (i, at))).collect()
    }

    /// Fires scripted fault `index` (once).
    pub fn fire(&self, index: usize) {
        let mut state = self.state.lock().expect("injector lock");
        if !state.enabled || !state.fired.insert(index) {
            return;
        }
        let fault = &self.faults[index];
        tracing::info!(target: "weir::trace", fault = ?fault, "fault: firing");
        let now_ms = runtime::elapsed().as_millis() as u64;
        match fault {
            FaultSpec::CrashTaskManager { node, restart_after, .. } => {
                let node = self.pick(node);
                let _ = self.actions.send(NodeAction::Kill { node, restart_after: *restart_after });
            }
            FaultSpec::FailSubtask { vertex, subtask, .. } => {
                state.failing.insert((vertex.expect("resolved when the scenario was loaded"), *subtask));
            }
            FaultSpec::CrashJobManager { restart_after, .. } => {
                let _ = self.actions.send(NodeAction::Kill { node: "jm".into(), restart_after: *restart_after });
            }
            FaultSpec::StorageFull { duration, .. } => {
                let mut full = state.storage_base.clone();
                full.capacity_bytes = Some(0);
                self.storage.set_faults(full);
                self.after(*duration, state.storage_base.clone());
            }
            FaultSpec::SlowStorage { latency, .. } => {
                state.storage_base.latency = Some((latency.min, latency.max));
                self.storage.set_faults(state.storage_base.clone());
            }
            FaultSpec::StorageCrash { .. } => self.storage.crash(),
            FaultSpec::PartitionNode { node, duration, .. } => {
                let node = self.pick(node);
                state.partitioned.insert(node, now_ms + duration.as_millis() as u64);
            }
            FaultSpec::DelayBarriers { .. }
            | FaultSpec::DropRpc { .. }
            | FaultSpec::DelayRpc { .. }
            | FaultSpec::StallSnapshot { .. }
            | FaultSpec::StorageErrors { .. } => {}
        }
    }

    /// Restores storage faults to `base` after `delay` (unless healing came first).
    fn after(&self, delay: Duration, base: StorageFaults) {
        let (storage, healed) = (self.storage.clone(), self.healed.clone());
        runtime::spawn(async move {
            runtime::sleep(delay).await;
            if !healed.load(Ordering::SeqCst) {
                storage.set_faults(base);
            }
        });
    }

    fn pick(&self, node: &str) -> String {
        match node {
            "random" => format!("tm-{}", runtime::random_u64() % u64::from(self.task_managers)),
            name => name.to_string(),
        }
    }
}

fn when_of(fault: &FaultSpec) -> Option<&When> {
    match fault {
        FaultSpec::CrashTaskManager { when, .. }
        | FaultSpec::FailSubtask { when, .. }
        | FaultSpec::CrashJobManager { when, .. }
        | FaultSpec::StorageFull { when, .. }
        | FaultSpec::SlowStorage { when, .. }
        | FaultSpec::StorageCrash { when }
        | FaultSpec::PartitionNode { when, .. } => Some(when),
        _ => None,
    }
}

impl FaultHook for Injector {
    fn at(&self, point: FaultPoint<'_>) -> Fate {
        match point {
            FaultPoint::Snapshot { job: _, id, class, phase } => {
                self.on_snapshot_phase(id, class, phase);
                Fate::Proceed
            }
            FaultPoint::Rpc { kind, task, host } => self.rpc_fate(kind, task, host),
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
            FaultPoint::Discard { .. } | FaultPoint::Recovery { .. } | FaultPoint::Deploy { .. } => Fate::Proceed,
        }
    }
}

impl Injector {
    fn on_snapshot_phase(&self, checkpoint: CheckpointId, class: SnapshotClass, phase: CheckpointPhase) {
        if !self.enabled() {
            return;
        }
        let due: Vec<usize> = self
            .faults
            .iter()
            .enumerate()
            .filter(|(_, f)| when_of(f).is_some_and(|w| w.matches(checkpoint.0, class, phase)))
            .map(|(i, _)| i)
            .collect();
        for index in due {
            self.fire(index);
        }
    }

    fn rpc_fate(&self, kind: RpcKind, _task: TaskRef, host: &str) -> Fate {
        let now_ms = runtime::elapsed().as_millis() as u64;
        {
            let state = self.state.lock().expect("injector lock");
            if !state.enabled {
                return Fate::Proceed;
            }
            if state.partitioned.get(host).is_some_and(|&until| now_ms < until) {
                return Fate::Drop;
            }
        }
        for fault in &self.faults {
            match fault {
                FaultSpec::DropRpc { message, rate } if message.matches(kind) && chance(*rate) => return Fate::Drop,
                FaultSpec::DelayRpc { message, rate, delay } if message.matches(kind) && chance(*rate) => {
                    return Fate::Delay(draw(*delay));
                }
                _ => {}
            }
        }
        Fate::Proceed
    }

    /// The first random delay fault `select` picks that fires at this opportunity.
    fn delay_drawn(&self, select: impl Fn(&FaultSpec) -> Option<(f64, DurationRange)>) -> Fate {
        if !self.enabled() {
            return Fate::Proceed;
        }
        self.faults
            .iter()
            .filter_map(&select)
            .find_map(|(rate, delay)| chance(rate).then(|| draw(delay)))
            .map_or(Fate::Proceed, Fate::Delay)
    }
}

/// Wipes task manager `node`'s local disk, if it has one mounted.
pub fn wipe_local_disk(storage: &SimStorage, node: &str) {
    let disk = std::path::Path::new(crate::runner::LOCAL_DIR).join(node);
    if storage.volumes().contains(&disk) {
        storage.wipe(&disk);
    }
}

/// Carries out node actions until the channel closes: kills, and restarts after a delay.
/// A task manager's local disk is gone with it.
pub async fn controller(
    mut actions: tokio::sync::mpsc::UnboundedReceiver<NodeAction>,
    nodes: Arc<Mutex<Nodes>>,
    storage: SimStorage,
) {
    while let Some(action) = actions.recv().await {
        match action {
            NodeAction::Kill { node, restart_after } => {
                let Some(handle) = nodes.lock().expect("nodes lock").get(&node).cloned() else { continue };
                tracing::info!(target: "weir::trace", %node, restart_after = %format_args!("{restart_after:?}"), "fault: node killed");
                if let Err(error) = handle.kill() {
                    tracing::warn!(%error, "cannot inject a node fault");
                    continue;
                }
                wipe_local_disk(&storage, &node);
                runtime::spawn(async move {
                    runtime::sleep(restart_after).await;
                    tracing::info!(target: "weir::trace", node = handle.name(), "node restarted");
                    if let Err(error) = handle.restart() {
                        tracing::warn!(%error, "cannot restart a node");
                    }
                });
            }
        }
    }
}
