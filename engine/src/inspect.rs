//! What `weir checkpoints list` and `weir checkpoints inspect` print: a checkpoint
//! directory's contents and one checkpoint's metadata, as text or JSON, and what
//! `inspect --verify` checks: every byte range of every file the state references, and
//! every file of an embedded store's snapshot (its size and checksum), shared or exclusive.

use crate::checkpoint::metadata::{self, METADATA_FILE_NAME, StateHandle};
use crate::checkpoint::restore::{self, LoadedCheckpoint, RestoreError};
use crate::checkpoint::storage::parse_checkpoint_dir_name;
use crate::seam::storage::{StorageError, StorageRef};
use crate::state::snapshot::FileScope;
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
        return Err(match storage.exists(dir).await? {
            true => RestoreError::NotADirectory { path: dir.to_path_buf() },
            false => RestoreError::NotFound { path: dir.to_path_buf() },
        });
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
                        if loaded.metadata.is_relocatable() { "self-contained" } else { "references files elsewhere" }
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
    for (_, _, file) in loaded.metadata.embedded_files() {
        let shown = embedded_name(file);
        if files.iter().any(|(p, _)| *p == shown) {
            continue;
        }
        let size = match storage.file_len(&file.path(&loaded.dir)).await {
            Ok(len) => Some(len),
            Err(StorageError::NotFound { .. }) => None,
            Err(other) => return Err(other.into()),
        };
        files.push((shown, size));
    }
    Ok((loaded, files))
}

/// An embedded store's file as inspect shows it: `shared/<name>`, or its name beside `_metadata`.
fn embedded_name(file: &crate::state::snapshot::EmbeddedFile) -> String {
    match file.scope {
        FileScope::Shared => format!("{}/{}", crate::state::snapshot::SHARED_DIR_NAME, file.name),
        FileScope::Exclusive => file.name.clone(),
    }
}

/// Files and bytes of the embedded stores' snapshots by scope, each file once: (shared, exclusive).
fn embedded_totals(m: &metadata::CheckpointMetadata) -> ((usize, u64), (usize, u64)) {
    let mut seen = std::collections::BTreeSet::new();
    let (mut shared, mut exclusive) = ((0, 0), (0, 0));
    for (_, _, file) in m.embedded_files() {
        if !seen.insert((file.scope, file.name.as_str())) {
            continue;
        }
        let total = if file.scope == FileScope::Shared { &mut shared } else { &mut exclusive };
        total.0 += 1;
        total.1 += file.size_bytes;
    }
    (shared, exclusive)
}

/// A readable description of a checkpoint.
pub fn describe(loaded: &LoadedCheckpoint, files: &[(String, Option<u64>)]) -> String {
    let m = &loaded.metadata;
    let mut text = String::new();
    let _ = writeln!(text, "{}", loaded.metadata_path.display());
    let _ = writeln!(
        text,
        "{:?} {} of job {} (`{}`), taken at {}",
        m.kind,
        m.checkpoint_id,
        m.job_id,
        m.job_name,
        utc_date_time(m.timestamp_ms)
    );
    let _ = writeln!(
        text,
        "format: {:?}; state: {} bytes{}; self-contained: {}",
        m.format,
        m.state_size_bytes(),
        if m.is_self_contained() { ", all inline in _metadata" } else { "" },
        if m.is_relocatable() {
            "true (every file it references is inside its directory: the directory can be moved)"
        } else {
            "false (it references files outside its directory: by absolute path, or in the job's shared/)"
        }
    );
    let ((shared, shared_bytes), (exclusive, exclusive_bytes)) = embedded_totals(m);
    if shared + exclusive > 0 {
        let _ = writeln!(
            text,
            "embedded store files: {shared} shared ({shared_bytes} bytes, in shared/), {exclusive} exclusive ({exclusive_bytes} bytes, beside _metadata)"
        );
    }
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
            if let Some(embedded) = &subtask.embedded {
                let count = |scope: FileScope| embedded.files.iter().filter(|f| f.scope == scope).count();
                let bytes = |scope: FileScope| -> u64 {
                    embedded.files.iter().filter(|f| f.scope == scope).map(|f| f.size_bytes).sum()
                };
                let _ = writeln!(
                    text,
                    "    embedded store (key groups {}..{}): {} shared files ({} bytes), {} exclusive ({} bytes), {} range tombstones",
                    embedded.key_groups.start,
                    embedded.key_groups.end,
                    count(FileScope::Shared),
                    bytes(FileScope::Shared),
                    count(FileScope::Exclusive),
                    bytes(FileScope::Exclusive),
                    embedded.tombstones.len()
                );
                for file in &embedded.files {
                    let _ = writeln!(
                        text,
                        "      level {} {:?} {} ({} bytes, crc32 {:08x}, uploaded by checkpoint {})",
                        file.level, file.scope, file.name, file.size_bytes, file.checksum, file.uploaded_by
                    );
                }
            }
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
                    let embedded = subtask.embedded.as_ref().map(|e| {
                        let files: Vec<serde_json::Value> = e
                            .files
                            .iter()
                            .map(|f| serde_json::json!({
                                "name": f.name, "scope": format!("{:?}", f.scope), "level": f.level,
                                "size_bytes": f.size_bytes, "checksum": format!("{:08x}", f.checksum),
                                "uploaded_by": f.uploaded_by.0,
                            }))
                            .collect();
                        serde_json::json!({
                            "key_groups": [e.key_groups.start, e.key_groups.end], "files": files,
                            "range_tombstones": e.tombstones.len(),
                        })
                    });
                    serde_json::json!({"subtask": index, "key_groups": handles, "lists": lists, "embedded": embedded})
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
        "timestamp_utc": utc_date_time(m.timestamp_ms),
        "state_size_bytes": m.state_size_bytes(),
        "self_contained": m.is_relocatable(),
        "all_inline": m.is_self_contained(),
        "embedded_files": {
            "shared": { "files": embedded_totals(m).0.0, "bytes": embedded_totals(m).0.1 },
            "exclusive": { "files": embedded_totals(m).1.0, "bytes": embedded_totals(m).1.1 },
        },
        "operators": operators,
        "files": files,
    })
}

/// What `inspect --verify` found: how much it read, and every range that failed.
#[derive(Debug)]
pub struct Verification {
    pub files: usize,
    pub ranges: usize,
    pub bytes: u64,
    /// Each failure, as the restore would report it, in metadata order.
    pub problems: Vec<RestoreError>,
}

/// Reads every file the checkpoint references and checks each range's bounds and checksum,
/// as a restore would, but reporting every failure rather than the first.
pub async fn verify(storage: &StorageRef, loaded: &LoadedCheckpoint) -> Result<Verification, RestoreError> {
    let mut contents: std::collections::BTreeMap<PathBuf, Option<Vec<u8>>> = std::collections::BTreeMap::new();
    let mut verification = Verification { files: 0, ranges: 0, bytes: 0, problems: Vec::new() };
    let metadata_path = loaded.metadata_path.clone();
    for operator in &loaded.metadata.operators {
        for (subtask, state) in operator.subtasks.iter().enumerate() {
            for group in &state.key_groups {
                let StateHandle::File(file) = &group.handle else { continue };
                let path = loaded.file_path(file);
                if !contents.contains_key(&path) {
                    let content = match storage.read(&path).await {
                        Ok(bytes) => Some(bytes),
                        Err(StorageError::NotFound { .. }) => None,
                        Err(other) => return Err(other.into()),
                    };
                    contents.insert(path.clone(), content);
                    verification.files += 1;
                }
                verification.ranges += 1;
                let problem = match &contents[&path] {
                    None => Some(RestoreError::MissingFile {
                        metadata: metadata_path.clone(),
                        file: path.clone(),
                        operator: operator.uid.clone(),
                        subtask: subtask as u32,
                    }),
                    Some(content) => {
                        // Validated metadata: the range's end does not overflow.
                        let end = file.offset + file.length;
                        match content.get(file.offset as usize..end as usize) {
                            None => Some(RestoreError::ShortFile {
                                metadata: metadata_path.clone(),
                                file: path.clone(),
                                operator: operator.uid.clone(),
                                needed: end,
                                actual: content.len() as u64,
                            }),
                            Some(bytes) if metadata::checksum(bytes) != file.checksum => {
                                Some(RestoreError::CorruptFile {
                                    metadata: metadata_path.clone(),
                                    file: path.clone(),
                                    operator: operator.uid.clone(),
                                    offset: file.offset,
                                })
                            }
                            Some(bytes) => {
                                verification.bytes += bytes.len() as u64;
                                None
                            }
                        }
                    }
                };
                // A missing file is one problem, however many ranges it held.
                let repeated = matches!(&problem, Some(RestoreError::MissingFile { file, .. })
                    if verification.problems.iter().any(|p| matches!(p, RestoreError::MissingFile { file: f, .. } if f == file)));
                if let Some(problem) = problem.filter(|_| !repeated) {
                    verification.problems.push(problem);
                }
            }
        }
    }
    // Embedded stores' files: each whole file against the size and checksum the snapshot recorded.
    let mut checked = std::collections::BTreeSet::new();
    for (uid, subtask, file) in loaded.metadata.embedded_files() {
        let path = file.path(&loaded.dir);
        if !checked.insert(path.clone()) {
            continue;
        }
        verification.files += 1;
        verification.ranges += 1;
        let problem = match storage.read(&path).await {
            Err(StorageError::NotFound { .. }) => Some(RestoreError::MissingFile {
                metadata: metadata_path.clone(),
                file: path,
                operator: uid.clone(),
                subtask: subtask as u32,
            }),
            Err(other) => return Err(other.into()),
            Ok(bytes) if bytes.len() as u64 != file.size_bytes => Some(RestoreError::FileSizeMismatch {
                metadata: metadata_path.clone(),
                file: path,
                operator: uid.clone(),
                expected: file.size_bytes,
                actual: bytes.len() as u64,
            }),
            Ok(bytes) if metadata::checksum(&bytes) != file.checksum => Some(RestoreError::CorruptFile {
                metadata: metadata_path.clone(),
                file: path,
                operator: uid.clone(),
                offset: 0,
            }),
            Ok(bytes) => {
                verification.bytes += bytes.len() as u64;
                None
            }
        };
        verification.problems.extend(problem);
    }
    Ok(verification)
}

/// `ms` since the Unix epoch as a UTC date and time: `2026-12-01 08:45:38.123 UTC`.
pub fn utc_date_time(ms: u64) -> String {
    let days = ms / 86_400_000;
    let in_day = ms % 86_400_000;
    let (year, month, day) = civil_from_days(days as i64);
    let (hours, minutes) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (seconds, millis) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02} {hours:02}:{minutes:02}:{seconds:02}.{millis:03} UTC")
}

/// The proleptic Gregorian date of day `days` since 1970-01-01, by Howard Hinnant's
/// `civil_from_days` (http://howardhinnant.github.io/date_algorithms.html): days are counted
/// in 400-year eras of 146,097 days, and years start on March 1 so that the leap day ends one.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29, a leap day of a year divisible by 400 (date -u -d 2000-02-29 +%s: 951782400).
        assert_eq!(civil_from_days(951_782_400 / 86_400), (2000, 2, 29));
        assert_eq!(civil_from_days(951_782_400 / 86_400 + 1), (2000, 3, 1));
        // 2100 is not a leap year: 2100-02-28 is followed by 2100-03-01 (4107542400).
        assert_eq!(civil_from_days(4_107_542_400 / 86_400), (2100, 3, 1));
        assert_eq!(civil_from_days(4_107_542_400 / 86_400 - 1), (2100, 2, 28));
        // The end of a year: 2026-12-31 (1798675200).
        assert_eq!(civil_from_days(1_798_675_200 / 86_400), (2026, 12, 31));
        assert_eq!(utc_date_time(0), "1970-01-01 00:00:00.000 UTC");
        // date -u -d @1796110806.304: Tue Dec  1 07:40:06 UTC 2026.
        assert_eq!(utc_date_time(1_796_110_806_304), "2026-12-01 07:40:06.304 UTC");
        assert_eq!(utc_date_time(1_700_000_000_000), "2023-11-14 22:13:20.000 UTC");
    }
}
