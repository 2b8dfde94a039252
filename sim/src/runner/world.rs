//! What one simulated run is made of: the simulated storage with a volume per task manager's local disk, the fault
//! injector and its controller, the recorder every fault point passes through, and the cluster (started again
//! after a whole-cluster crash).

use crate::checkers::{Abandoned, Completion};
use crate::injector::{self, Injector, Nodes};
use crate::layout::{LOCAL_DIR, SHARED_VOLUMES};
use crate::scenario::Scenario;
use crate::storage::{SimStorage, VolumeOptions};
use crate::workload::{Prepared, WorkloadEnv};
use engine::cluster::{Cluster, ClusterSpec};
use engine::faults::{CheckpointPhase, Fate, FaultHook, FaultPoint, PointKind};
use engine::ids::{CheckpointId, JobId};
use engine::local;
use engine::seam::runtime;
use engine::seam::storage::StorageRef;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Records completions, in order, across every job manager and job of the run, and the directories being
/// discarded, then hands every fault point to the injector.
pub struct Recorder {
    injector: Arc<Injector>,
    /// The protocol's rules, checked at every point.
    pub monitor: crate::monitor::Monitor,
    completions: Mutex<Vec<Completion>>,
    /// Snapshots whose directories are being deleted, by job.
    discarding: Mutex<BTreeSet<(JobId, CheckpointId)>>,
}

impl Recorder {
    /// What a crash abandons of `job` now.
    pub fn abandoned(&self, job: JobId) -> Abandoned {
        let completions = self.completions.lock().expect("recorder lock");
        let completed = completions.iter().filter(|c| c.job == job).map(|c| c.id).max();
        let discarding = self.discarding.lock().expect("recorder lock");
        Abandoned { completed, discarding: discarding.iter().filter(|(j, _)| *j == job).map(|(_, id)| *id).collect() }
    }

    /// Every snapshot completed so far, in order, with its job.
    pub fn completions(&self) -> Vec<Completion> {
        self.completions.lock().expect("recorder lock").clone()
    }
}

impl FaultHook for Recorder {
    fn at(&self, node: &str, point: FaultPoint<'_>) -> Fate {
        self.monitor.observe(node, &point);
        match point {
            FaultPoint::Snapshot { job, id, class, phase: CheckpointPhase::Completed } => {
                self.completions.lock().expect("recorder lock").push(Completion { job, id, class })
            }
            FaultPoint::Discard { job, id, done, .. } => {
                let mut discarding = self.discarding.lock().expect("recorder lock");
                if done {
                    discarding.remove(&(job, id));
                } else {
                    discarding.insert((job, id));
                }
            }
            // Nothing else is recorded; every point goes on to the injector below.
            FaultPoint::Snapshot { .. }
            | FaultPoint::Rpc { .. }
            | FaultPoint::Barrier { .. }
            | FaultPoint::SnapshotAsync { .. }
            | FaultPoint::Acknowledge { .. }
            | FaultPoint::Recovery { .. }
            | FaultPoint::RestoreState { .. }
            | FaultPoint::Deploy { .. }
            | FaultPoint::Batch { .. }
            | FaultPoint::Sink { .. }
            | FaultPoint::Job { .. }
            | FaultPoint::Interleave { .. } => {}
        }
        self.injector.at(node, point)
    }

    fn listens(&self, kind: PointKind) -> bool {
        // Completions and discards are recorded above; the rest is the monitor's and the injector's.
        matches!(kind, PointKind::Snapshot | PointKind::Discard)
            || crate::monitor::Monitor::concerns(kind)
            || self.injector.listens(kind)
    }
}

/// One run's storage, faults and cluster.
pub struct World {
    pub storage: SimStorage,
    pub storage_ref: StorageRef,
    pub injector: Arc<Injector>,
    pub recorder: Arc<Recorder>,
    pub env: WorkloadEnv,
    pub workload: Arc<dyn Prepared>,
    nodes: Arc<Mutex<Nodes>>,
    spec: ClusterSpec,
}

impl World {
    /// Storage with the workload's input, a volume per task manager, the injector (inert without `faults`), and
    /// its controller task.
    pub fn new(scenario: &Scenario, seed: u64, faults: bool) -> World {
        let file = &scenario.file;
        let storage = SimStorage::new();
        let env = WorkloadEnv::default();
        for (name, path) in SHARED_VOLUMES {
            storage.mount(Path::new(path), VolumeOptions { name: name.to_string(), ..VolumeOptions::default() });
        }
        for (path, bytes) in scenario.workload.input(&env) {
            storage.put_file(&path, &bytes);
        }
        for index in 0..file.job.task_managers {
            let disk = Path::new(LOCAL_DIR).join(format!("tm-{index}"));
            storage.mount(&disk, VolumeOptions { name: format!("tm-{index}-disk"), ..VolumeOptions::default() });
        }
        let faults = if faults { file.faults.clone() } else { Vec::new() };
        let nodes: Arc<Mutex<Nodes>> = Arc::new(Mutex::new(BTreeMap::new()));
        let (injector, actions) = Injector::new(seed, faults, file.job.task_managers, storage.clone(), nodes.clone());
        let injector = Arc::new(injector);
        let recorder = Arc::new(Recorder {
            injector: injector.clone(),
            monitor: {
                let monitor = crate::monitor::Monitor::new(seed, storage.clone());
                // A cut is consistent only where barriers align: exactly-once runs.
                let exactly_once = std::iter::once(&scenario.config)
                    .chain(&scenario.restart_configs)
                    .all(|c| c.checkpoint.mode == engine::config::CheckpointingMode::ExactlyOnce);
                match exactly_once {
                    true => {
                        monitor.with_cut_oracle(scenario.workload.clone(), PathBuf::from(crate::layout::CHECKPOINT_DIR))
                    }
                    false => monitor,
                }
            },
            completions: Mutex::new(Vec::new()),
            discarding: Mutex::new(BTreeSet::new()),
        });
        runtime::spawn(injector::controller(actions, nodes.clone(), Arc::downgrade(&injector)));
        // Slots for the highest parallelism any of the run's jobs uses.
        let most_parallel =
            file.restarts.iter().filter_map(|r| r.parallelism).chain([file.job.parallelism]).max().unwrap_or(1);
        let mut spec = local::cluster_spec(most_parallel, file.job.task_managers);
        spec.local_dir = Path::new(LOCAL_DIR).to_path_buf();
        let storage_ref: StorageRef = Arc::new(storage.clone());
        World { storage, storage_ref, injector, recorder, env, workload: scenario.workload.clone(), nodes, spec }
    }

    /// The end of the run, once its evidence is collected: every node is killed, so that the runtime drops its
    /// tasks (madsim drops a parked task only if something wakes it, which killing its node does), and the
    /// storage lets go of the run's files, whatever task still holds it.
    pub async fn tear_down(&self) {
        let nodes: Vec<runtime::Node> = self.nodes.lock().expect("nodes lock").values().cloned().collect();
        for node in nodes {
            let _ = node.kill();
        }
        runtime::yield_now().await;
        self.storage.release();
    }

    /// Starts a cluster whose nodes the injector's controller can kill.
    pub fn start_cluster(&self) -> Arc<Cluster> {
        let cluster = Cluster::start_with_faults(&self.spec, self.storage_ref.clone(), self.recorder.clone());
        let mut nodes = self.nodes.lock().expect("nodes lock");
        nodes.insert("jm".to_string(), cluster.job_manager().clone());
        for node in cluster.task_managers() {
            nodes.insert(node.name().to_string(), node.clone());
        }
        Arc::new(cluster)
    }

    /// The scripted faults that fire at a time, and the healing phase.
    pub fn schedule_faults(&self, scenario: &Scenario) {
        for (index, at) in self.injector.timed() {
            let injector = self.injector.clone();
            runtime::spawn(async move {
                runtime::sleep(at).await;
                injector.fire(index);
            });
        }
        let healer = self.injector.clone();
        let faults_until = scenario.file.healing.faults_until;
        runtime::spawn(async move {
            runtime::sleep(faults_until).await;
            healer.heal();
        });
    }
}
