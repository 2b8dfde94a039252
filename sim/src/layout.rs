//! Where things are in a simulated run's storage: the volumes, their mount points, and the names faults give
//! them. A leaf: scenarios, the injector and the runner all read it.

use std::path::{Path, PathBuf};

/// The directory the sink writes to in simulated runs.
pub const OUTPUT_DIR: &str = "/output";
/// The checkpoint directory in simulated runs (`state.checkpoints.dir`).
pub const CHECKPOINT_DIR: &str = "/checkpoints";
/// Where savepoints go in simulated runs (`state.savepoints.dir`).
pub const SAVEPOINT_DIR: &str = "/savepoints";
/// Where relocated checkpoints and savepoints are moved to.
pub const RELOCATED_DIR: &str = "/relocated";
/// Where the task managers' local disks are mounted, one volume each: `/local/tm-<n>`.
pub const LOCAL_DIR: &str = "/local";
/// Where the workload's input files are.
pub const INPUT_DIR: &str = "/input";

/// The shared storage's volumes, each mounted where the run uses it: `(volume name, mount point)`. Faults name
/// them one by one, or all of them as `dfs`.
pub const SHARED_VOLUMES: [(&str, &str); 5] = [
    ("checkpoints", CHECKPOINT_DIR),
    ("savepoints", SAVEPOINT_DIR),
    ("input", INPUT_DIR),
    ("output", OUTPUT_DIR),
    ("relocated", RELOCATED_DIR),
];

/// The mount points a fault's volume name stands for (see [`crate::scenario::VolumeName`]); empty for a name that
/// is none of them.
pub fn volume_paths(volume: &str, task_managers: u32) -> Vec<PathBuf> {
    match volume {
        "dfs" => SHARED_VOLUMES.iter().map(|(_, path)| PathBuf::from(path)).collect(),
        "local" => (0..task_managers).map(|n| Path::new(LOCAL_DIR).join(format!("tm-{n}"))).collect(),
        name => match SHARED_VOLUMES.iter().find(|(known, _)| *known == name) {
            Some((_, path)) => vec![PathBuf::from(path)],
            None => match name.strip_prefix("tm-").and_then(|n| n.parse::<u32>().ok()) {
                Some(n) if n < task_managers && name == format!("tm-{n}") => vec![Path::new(LOCAL_DIR).join(name)],
                _ => Vec::new(),
            },
        },
    }
}
