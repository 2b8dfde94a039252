//! A replayable line source over a text file, split into partitions by line.
//!
//! The file is cut into `partitions` byte ranges of equal size; a partition owns every line
//! that starts inside its range (a line starts at offset 0 or right after a `\n`). Each
//! partition's position is the offset of its next unread line, kept in operator state, so a
//! restore resumes exactly at the first line not covered by the checkpoint.

use super::initial_partitions;
use crate::error::{TaskError, TaskFailure};
use crate::ids::{CheckpointId, OperatorUid};
use crate::operators::OperatorContext;
use crate::operators::source::{Source, SourcePoll};
use crate::seam::storage::StorageRef;
use crate::state::operator::{OperatorListDescriptor, OperatorStateStore};
use async_trait::async_trait;
use std::path::PathBuf;

/// `(partition, offset of the next unread line)` pairs.
const POSITIONS: OperatorListDescriptor<(u32, u64)> = OperatorListDescriptor::even_split("positions");

/// How much of the file one read brings in.
const READ_CHUNK_BYTES: usize = 256 * 1024;

struct Partition {
    index: u32,
    /// Offset of the next unread line.
    offset: u64,
    /// Lines starting at or after this offset belong to the next partition.
    end: u64,
    /// Bytes read ahead, starting at `offset`.
    buffer: Vec<u8>,
    /// How far into `buffer` lines have been emitted.
    cursor: usize,
}

impl Partition {
    fn done(&self, file_len: u64) -> bool {
        self.offset >= self.end || self.offset >= file_len
    }
}

pub struct LineSource {
    path: PathBuf,
    partitions: u32,
    file_len: u64,
    owned: Vec<Partition>,
    next: usize,
    storage: Option<StorageRef>,
    uid: Option<OperatorUid>,
}

impl LineSource {
    pub fn new(path: PathBuf, partitions: u32) -> Self {
        assert!(partitions >= 1);
        LineSource { path, partitions, file_len: 0, owned: Vec::new(), next: 0, storage: None, uid: None }
    }

    fn range_start(&self, partition: u32) -> u64 {
        (u128::from(self.file_len) * u128::from(partition) / u128::from(self.partitions)) as u64
    }

    /// The offset of the first line starting at or after `position`.
    async fn first_line_at_or_after(&self, storage: &StorageRef, position: u64) -> Result<u64, TaskError> {
        if position == 0 {
            return Ok(0);
        }
        // A line starts at `position` iff the byte before it is a newline.
        let mut at = position - 1;
        loop {
            let chunk = storage.read_range(&self.path, at, READ_CHUNK_BYTES).await?;
            if chunk.is_empty() {
                return Ok(self.file_len);
            }
            if let Some(newline) = chunk.iter().position(|&b| b == b'\n') {
                return Ok(at + newline as u64 + 1);
            }
            at += chunk.len() as u64;
        }
    }

    fn uid(&self) -> OperatorUid {
        self.uid.clone().expect("the source is opened before use")
    }
}

#[async_trait]
impl Source for LineSource {
    type Out = String;

    async fn open(
        &mut self,
        context: OperatorContext<'_>,
        restored: Option<&OperatorStateStore>,
    ) -> Result<(), TaskError> {
        let storage = context.storage.clone();
        self.uid = Some(context.uid.clone());
        self.file_len = storage.file_len(&self.path).await?;
        let positions: Vec<(u32, u64)> = match restored {
            Some(restored) => restored.get(&POSITIONS).map_err(|e| context.state_error(e))?,
            None => {
                let mut fresh = Vec::new();
                for partition in initial_partitions(self.partitions, context.info.subtask, context.info.parallelism) {
                    let start = self.first_line_at_or_after(&storage, self.range_start(partition)).await?;
                    fresh.push((partition, start));
                }
                fresh
            }
        };
        self.owned.clear();
        for (index, offset) in positions {
            if index >= self.partitions {
                let message = format!(
                    "restored position for partition {index}, but the source has {} partitions",
                    self.partitions
                );
                return Err(TaskFailure::User { operator: context.uid.clone(), message }.into());
            }
            let end = if index + 1 == self.partitions {
                self.file_len
            } else {
                self.first_line_at_or_after(&storage, self.range_start(index + 1)).await?
            };
            self.owned.push(Partition { index, offset, end, buffer: Vec::new(), cursor: 0 });
        }
        self.storage = Some(storage);
        Ok(())
    }

    async fn poll(&mut self, out: &mut Vec<String>, max_records: usize) -> Result<SourcePoll, TaskError> {
        let file_len = self.file_len;
        let Some(position) = (0..self.owned.len())
            .map(|i| (self.next + i) % self.owned.len().max(1))
            .find(|&i| !self.owned[i].done(file_len))
        else {
            return Ok(SourcePoll::Finished);
        };
        self.next = position + 1;
        let storage = self.storage.clone().expect("opened");
        let path = self.path.clone();
        let partition = &mut self.owned[position];
        let mut emitted = 0;
        while emitted < max_records && !partition.done(file_len) {
            let unread = &partition.buffer[partition.cursor..];
            match unread.iter().position(|&b| b == b'\n') {
                Some(newline) => {
                    out.push(String::from_utf8_lossy(&unread[..newline]).into_owned());
                    partition.cursor += newline + 1;
                    partition.offset += newline as u64 + 1;
                    emitted += 1;
                }
                None => {
                    // Refill: keep the partial line, read the next chunk after it.
                    partition.buffer.drain(..partition.cursor);
                    partition.cursor = 0;
                    let read_at = partition.offset + partition.buffer.len() as u64;
                    let chunk = storage.read_range(&path, read_at, READ_CHUNK_BYTES).await?;
                    if chunk.is_empty() {
                        // The last line of the file has no newline.
                        if !partition.buffer.is_empty() {
                            out.push(String::from_utf8_lossy(&partition.buffer).into_owned());
                            partition.offset += partition.buffer.len() as u64;
                            partition.buffer.clear();
                        }
                        partition.offset = partition.offset.max(file_len);
                        break;
                    }
                    partition.buffer.extend_from_slice(&chunk);
                }
            }
        }
        if partition.done(file_len) {
            partition.buffer = Vec::new();
            partition.cursor = 0;
        }
        Ok(SourcePoll::More)
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId, state: &mut OperatorStateStore) -> Result<(), TaskError> {
        let positions: Vec<(u32, u64)> = self.owned.iter().map(|p| (p.index, p.offset)).collect();
        state
            .set(&POSITIONS, &positions)
            .map_err(|source| TaskError::from(TaskFailure::State { operator: self.uid(), source }))
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> Result<(), TaskError> {
        Ok(())
    }
}
