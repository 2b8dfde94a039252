//! What `weir checkpoints list` and `weir checkpoints inspect` print: a checkpoint
//! directory's contents and one checkpoint's metadata, as text or JSON.

use crate::checkpoint::metadata::{METADATA_FILE_NAME, StateHandle};
use crate::checkpoint::restore::{self, LoadedCheckpoint, RestoreError};
use crate::checkpoint::storage::parse_checkpoint_dir_name;
use crate::seam::storage::{StorageError, StorageRef};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One `chk-<n>` directory found by `list`.
#[derive(Clone, Debug)]
pub struct ListedCheckpoint {
    pub path: PathBuf,
    pub id: u64,
    /// `None` when the directory has no readable `_metadata` (in progress or abandoned).
    pub summary: Option<String>,
}

/// Every `chk-<n>` directory under `dir`, which is a job's checkpoint directory or a
/// checkpoint root holding one directory per job.
pub async fn list(storage: &StorageRef, dir: &Path) -> Result<Vec<ListedCheckpoint>, RestoreError> {
    if !storage.is_dir(dir).await? {
        return Err(RestoreError::NotFound { path: dir.to_path_buf() });
    }
    let mut job_dirs = vec![dir.to_path_buf()];
    let names = storage.list(dir).await?;
    if !names.iter().any(|n| parse_checkpoint_dir_name(n).is_some()) {
        job_dirs = Vec::new();
        for name in names {
            if storage.is_dir(&dir.join(&name)).await? {
                job_dirs.push(dir.join(name));
            }
        }
    }
    let mut listed = Vec::new();
    for job_dir in job_dirs {
        let mut ids: Vec<u64> =
            storage.list(&job_dir).await?.iter().filter_map(|n| parse_checkpoint_dir_name(n)).map(|c| c.0).collect();
        ids.sort_unstable();
        for id in ids {
            let path = job_dir.join(format!("chk-{id}"));
            let summary = match storage.exists(&path.join(METADATA_FILE_NAME)).await? {
                false => None,
                true => match restore::load(storage, &path).await {
                    Ok(loaded) => Some(format!(
                        "{} operators, {} bytes of state, {}",
                        loaded.metadata.operators.len(),
                        loaded.metadata.state_size_bytes(),
                        if loaded.metadata.is_self_contained() { "self-contained" } else { "references files" }
                    )),
                    Err(error) => Some(format!("unreadable: {error}")),
                },
            };
            listed.push(ListedCheckpoint { path, id, summary });
        }
    }
    Ok(listed)
}

/// Loads a checkpoint for inspection, with the sizes of the files it references.
pub async fn load(
    storage: &StorageRef,
    path: &Path,
) -> Result<(LoadedCheckpoint, Vec<(String, Option<u64>)>), RestoreError> {
    let loaded = restore::load(storage, path).await?;
    let mut files = Vec::new();
    for file in loaded.metadata.referenced_files() {
        let full = loaded.file_path(file);
        let size = match storage.file_len(&full).await {
            Ok(len) => Some(len),
            Err(StorageError::NotFound { .. }) => None,
            Err(other) => return Err(other.into()),
        };
        if !files.iter().any(|(p, _): &(String, Option<u64>)| *p == file.path) {
            files.push((file.path.clone(), size));
        }
    }
    Ok((loaded, files))
}

/// A readable description of a checkpoint.
pub fn describe(loaded: &LoadedCheckpoint, files: &[(String, Option<u64>)]) -> String {
    let m = &loaded.metadata;
    let mut text = String::new();
    let _ = writeln!(text, "{}", loaded.metadata_path.display());
    let _ = writeln!(
        text,
        "{:?} {} of job {} (`{}`), taken at {} ms since the epoch",
        m.kind, m.checkpoint_id, m.job_id, m.job_name, m.timestamp_ms
    );
    let _ = writeln!(
        text,
        "format: {:?}; state: {} bytes; self-contained: {}",
        m.format,
        m.state_size_bytes(),
        m.is_self_contained()
    );
    for operator in &m.operators {
        let _ = writeln!(
            text,
            "operator `{}`: parallelism {}, max parallelism {}",
            operator.uid, operator.parallelism, operator.max_parallelism
        );
        for (index, subtask) in operator.subtasks.iter().enumerate() {
            let (mut inline, mut referenced) = (0u64, 0u64);
            for group in &subtask.key_groups {
                match &group.handle {
                    StateHandle::Inline(bytes) => inline += bytes.len() as u64,
                    StateHandle::File(file) => referenced += file.length,
                }
            }
            let lists: Vec<String> = subtask
                .lists
                .iter()
                .map(|l| format!("{} ({:?}, {} elements)", l.name, l.mode, l.elements.len()))
                .collect();
            let _ = writeln!(
                text,
                "  subtask {index}: {} key groups ({inline} bytes inline, {referenced} bytes in files); lists: {}",
                subtask.key_groups.len(),
                if lists.is_empty() { "none".to_string() } else { lists.join(", ") }
            );
        }
    }
    let _ = writeln!(text, "files referenced: {}", files.len());
    for (path, size) in files {
        match size {
            Some(size) => {
                let _ = writeln!(text, "  {path} ({size} bytes)");
            }
            None => {
                let _ = writeln!(text, "  {path} (MISSING)");
            }
        }
    }
    text
}

/// The same description as JSON.
pub fn describe_json(loaded: &LoadedCheckpoint, files: &[(String, Option<u64>)]) -> serde_json::Value {
    let m = &loaded.metadata;
    let operators: Vec<serde_json::Value> = m
        .operators
        .iter()
        .map(|operator| {
            let subtasks: Vec<serde_json::Value> = operator
                .subtasks
                .iter()
                .enumerate()
                .map(|(index, subtask)| {
                    let handles: Vec<serde_json::Value> = subtask
                        .key_groups
                        .iter()
                        .map(|group| match &group.handle {
                            StateHandle::Inline(bytes) => serde_json::json!({"key_group": group.key_group.0, "inline_bytes": bytes.len()}),
                            StateHandle::File(file) => serde_json::json!({
                                "key_group": group.key_group.0, "file": file.path, "offset": file.offset,
                                "length": file.length, "checksum": format!("{:08x}", file.checksum),
                            }),
                        })
                        .collect();
                    let lists: Vec<serde_json::Value> = subtask
                        .lists
                        .iter()
                        .map(|l| serde_json::json!({"name": l.name, "mode": format!("{:?}", l.mode), "elements": l.elements.len()}))
                        .collect();
                    serde_json::json!({"subtask": index, "key_groups": handles, "lists": lists})
                })
                .collect();
            serde_json::json!({
                "uid": operator.uid.0, "parallelism": operator.parallelism,
                "max_parallelism": operator.max_parallelism, "subtasks": subtasks,
            })
        })
        .collect();
    let files: Vec<serde_json::Value> = files
        .iter()
        .map(|(path, size)| serde_json::json!({"path": path, "size_bytes": size, "exists": size.is_some()}))
        .collect();
    serde_json::json!({
        "path": loaded.metadata_path.display().to_string(),
        "checkpoint_id": m.checkpoint_id.0,
        "job_id": m.job_id.to_string(),
        "job_name": m.job_name,
        "kind": format!("{:?}", m.kind),
        "format": format!("{:?}", m.format),
        "timestamp_ms": m.timestamp_ms,
        "state_size_bytes": m.state_size_bytes(),
        "self_contained": m.is_self_contained(),
        "operators": operators,
        "files": files,
    })
}
