//! Flushes and compactions: the background work that writes sorted files. Each runs as a
//! task of its own over inputs it holds (frozen memtables, pinned files), so processing
//! goes on meanwhile; maintenance installs its result into the next version.
//!
//! A job writes files under new numbers, fsyncs each and then the directory, and only then
//! returns them: nothing it wrote is used before it is durable. A job that fails or is
//! dropped midway leaves its unfinished file to the graveyard (its guard buries it).

use super::cache::BlockCache;
use super::entry::EntryRef;
use super::files::{FileGuard, Graveyard, table_name};
use super::memtable::Memtable;
use super::merge::{Cursor, MergeCursor};
use super::table::{TableFile, TableOptions, TableWriter};
use super::tombstone::{RangeTombstone, covers, newest_seq};
use crate::seam::storage::StorageRef;
use crate::state::StateError;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a job needs to write files.
#[derive(Clone)]
pub struct JobContext {
    pub storage: StorageRef,
    pub dir: PathBuf,
    pub cache: Arc<BlockCache>,
    pub graveyard: Arc<Graveyard>,
    pub file_numbers: Arc<AtomicU64>,
    pub table: TableOptions,
}

/// The files a job wrote.
#[derive(Debug, Default)]
pub struct JobOutput {
    pub files: Vec<Arc<TableFile>>,
    pub bytes_written: u64,
    pub bytes_read: u64,
}

/// Writes `memtables` (all the store's immutable ones, oldest first) into one level-0 file
/// (none if nothing survives the tombstones).
pub async fn flush(
    context: JobContext,
    memtables: Vec<Arc<Memtable>>,
    tombstones: Vec<RangeTombstone>,
    drop_point_tombstones: bool,
) -> Result<JobOutput, StateError> {
    let sources: Vec<Box<dyn Cursor + '_>> =
        memtables.iter().rev().map(|m| Box::new(m.cursor(&[], None)) as Box<dyn Cursor + '_>).collect();
    let mut merge = MergeCursor::new(sources);
    write_merged(&context, &mut merge, &tombstones, drop_point_tombstones, None).await
}

/// Merges `inputs` into files of about `target_file_bytes` each.
pub async fn compact(
    context: JobContext,
    inputs: Vec<Arc<TableFile>>,
    tombstones: Vec<RangeTombstone>,
    drop_point_tombstones: bool,
    target_file_bytes: u64,
) -> Result<JobOutput, StateError> {
    let mut sources: Vec<Box<dyn Cursor + '_>> = Vec::with_capacity(inputs.len());
    for input in &inputs {
        sources.push(Box::new(input.cursor(&[], None, false)?));
    }
    let mut merge = MergeCursor::new(sources);
    let mut output =
        write_merged(&context, &mut merge, &tombstones, drop_point_tombstones, Some(target_file_bytes)).await?;
    output.bytes_read = inputs.iter().map(|f| f.meta().size_bytes).sum();
    Ok(output)
}

/// Whether a merged entry goes into the output: not if a range tombstone covers it, nor
/// if it is a point tombstone nothing below the output needs.
fn survivor(entry: EntryRef<'_>, tombstones: &[RangeTombstone], drop_point_tombstones: bool) -> bool {
    if covers(tombstones, entry.key, entry.seq) {
        return false;
    }
    entry.value.is_some() || !drop_point_tombstones
}

async fn write_merged(
    context: &JobContext,
    merge: &mut MergeCursor<'_>,
    tombstones: &[RangeTombstone],
    drop_point_tombstones: bool,
    split_bytes: Option<u64>,
) -> Result<JobOutput, StateError> {
    let applied = newest_seq(tombstones);
    let mut output = JobOutput::default();
    let mut writer: Option<TableWriter> = None;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    loop {
        let step = merge.step(|entry| {
            if !survivor(entry, tombstones, drop_point_tombstones) {
                return None;
            }
            key.clear();
            key.extend_from_slice(entry.key);
            value.clear();
            let is_put = entry.value.map(|v| value.extend_from_slice(v)).is_some();
            Some((entry.seq, is_put))
        })?;
        let Some(step) = step else { break };
        let Some((seq, is_put)) = step else { continue };
        if writer.is_none() {
            let number = context.file_numbers.fetch_add(1, Ordering::Relaxed);
            let path = context.dir.join(table_name(number));
            let guard = FileGuard::new(path, Some(context.graveyard.clone()));
            writer = Some(TableWriter::create(&context.storage, number, guard, context.table).await?);
        }
        let current = writer.as_mut().expect("created just above");
        current.add(&key, seq, is_put.then_some(value.as_slice()));
        if split_bytes.is_some_and(|limit| current.estimated_file_bytes() >= limit) {
            let full = writer.take().expect("the current writer");
            let file = full.finish(applied, context.storage.clone(), context.cache.clone()).await?;
            output.bytes_written += file.meta().size_bytes;
            output.files.push(Arc::new(file));
        } else {
            current.write_buffered().await?;
        }
    }
    if let Some(last) = writer.take() {
        let file = last.finish(applied, context.storage.clone(), context.cache.clone()).await?;
        output.bytes_written += file.meta().size_bytes;
        output.files.push(Arc::new(file));
    }
    if !output.files.is_empty() {
        // The new files' directory entries: durable before anything refers to the files.
        context.storage.sync_dir(&context.dir).await?;
    }
    Ok(output)
}
