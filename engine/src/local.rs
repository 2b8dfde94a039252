//! Running a built-in job on a cluster in this process, and collecting its part files:
//! what the `weir` CLI does, and what tests compare.

use crate::api::BuildError;
use crate::cluster::JobError;
use crate::cluster::messages::JobOutcome;
use crate::cluster::{Cluster, ClusterSpec};
use crate::config::JobConfig;
use crate::jobs;
use crate::seam::storage::{StorageError, StorageRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a local run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("unknown job `{name}` (built-in jobs: {known})")]
    UnknownJob { name: String, known: String },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Job(Box<JobError>),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("part file `{path}` is not UTF-8")]
    NotUtf8 { path: String },
}

impl From<JobError> for RunError {
    fn from(error: JobError) -> Self {
        RunError::Job(Box::new(error))
    }
}

/// Builds built-in job `name` and runs it to the end on `cluster`.
pub async fn run_builtin(
    cluster: &Cluster,
    name: &str,
    parameters: &BTreeMap<String, String>,
    config: JobConfig,
) -> Result<JobOutcome, RunError> {
    let job = jobs::find(name).ok_or_else(|| RunError::UnknownJob {
        name: name.to_string(),
        known: jobs::BUILTIN_JOBS.iter().map(|j| j.name).collect::<Vec<_>>().join(", "),
    })?;
    let graph = job.build_graph(parameters, config)?;
    Ok(cluster.run_job(graph).await?)
}

/// The slots a cluster needs for a job of `parallelism`, spread over `task_managers`.
pub fn cluster_spec(parallelism: u32, task_managers: u32) -> ClusterSpec {
    ClusterSpec {
        task_managers,
        slots_per_task_manager: parallelism.div_ceil(task_managers).max(1),
        local_dir: crate::seam::runtime::default_local_dir(),
    }
}

/// The committed output under `dir`: every committed part file (`part-*`; in-progress
/// transactions are hidden files and never output), concatenated in commit order.
pub async fn read_parts(storage: &StorageRef, dir: &Path) -> Result<String, RunError> {
    Ok(read_part_files(storage, dir).await?.into_iter().map(|(_, text)| text).collect())
}

/// The names of the committed part files under `dir`, in commit order.
pub async fn part_names(storage: &StorageRef, dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut names: Vec<String> =
        storage.list(dir).await?.into_iter().filter(|name| name.starts_with("part-")).collect();
    // `part-<subtask>-<checkpoint>-…`: by checkpoint first, so that the order is commit
    // order even when a rescale moved keys between subtasks.
    names.sort_by_key(|name| (name.split('-').nth(2).map(str::to_string), name.clone()));
    Ok(names)
}

/// Writes the committed output under `dir` (as [`read_parts`] reads it) to `output`, atomically,
/// copying it a chunk at a time: an output as large as the job's state never sits in memory.
pub async fn write_parts(storage: &StorageRef, dir: &Path, output: &Path) -> Result<(), StorageError> {
    let parts: Vec<PathBuf> = part_names(storage, dir).await?.iter().map(|name| dir.join(name)).collect();
    crate::seam::storage::concat_atomic(storage.as_ref(), output, &parts).await
}

/// Every committed part file under `dir`, with its name, in commit order: the pieces [`read_parts`]
/// concatenates, each of which one commit made visible.
pub async fn read_part_files(storage: &StorageRef, dir: &Path) -> Result<Vec<(String, String)>, RunError> {
    let names = part_names(storage, dir).await?;
    let mut parts = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let bytes = storage.read(&path).await?;
        let text = String::from_utf8(bytes).map_err(|_| RunError::NotUtf8 { path: path.display().to_string() })?;
        parts.push((name, text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seam::storage::{COPY_CHUNK_BYTES, write_atomic};
    use crate::state::embedded::testing::{MemStorage, block_on};

    #[test]
    fn the_output_is_every_committed_part_in_commit_order_copied_chunk_by_chunk() {
        let memory = MemStorage::new();
        let storage = memory.shared();
        // Checkpoint 2's part is larger than a chunk, and not a whole number of them; checkpoint 10's comes after
        // it although its subtask's name sorts first (numbers in names are zero-padded); in-progress files are no
        // output.
        let large: Vec<u8> = (0..COPY_CHUNK_BYTES * 2 + 123).map(|i| b'a' + (i % 26) as u8).collect();
        let parts = [
            ("part-00000-00000000000000000010-j-0-0", b"late\n".to_vec()),
            ("part-00001-00000000000000000002-j-0-0", large.clone()),
            (".part-00000-j-0-1.inprogress", b"no".to_vec()),
        ];
        block_on(async move {
            let dir = Path::new("/out.parts");
            storage.create_dir_all(dir).await.unwrap();
            for (name, bytes) in &parts {
                write_atomic(storage.as_ref(), &dir.join(name), bytes).await.unwrap();
            }
            write_parts(&storage, dir, Path::new("/out.txt")).await.unwrap();
        });
        let mut expected = large;
        expected.extend_from_slice(b"late\n");
        let output = memory.file(Path::new("/out.txt")).expect("the output is written");
        assert!(output == expected, "{} bytes, expected {}", output.len(), expected.len());
    }
}
