//! The push side of a subtask: the network output (with its partitioner) or a sink.

use super::channel::Sender;
use crate::element::{CheckpointBarrier, StreamElement};
use crate::error::{TaskError, TaskFailure};
use crate::faults::Faults;
use crate::ids::{CheckpointId, OperatorUid, SubtaskIndex};
use crate::keygroup::{key_group_for_key, subtask_for_key_group};
use crate::operators::sink::Sink;
use crate::operators::{OperatorContext, SubtaskInfo};
use crate::seam::runtime;
use crate::seam::storage::StorageRef;
use crate::state::operator::OperatorStateStore;
use crate::state::snapshot::{OperatorSnapshot, SyncSnapshot};
use crate::state::{Key, KeySelector};
use async_trait::async_trait;
use std::sync::Arc;

/// Where a subtask's output batches go.
#[async_trait]
pub trait Tail<T>: Send {
    /// Opens the tail without writing (a sink restores and commits what its state says is pending): for a
    /// subtask that only commits and exits.
    async fn open(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
    /// Takes (drains) a batch of records.
    async fn emit(&mut self, records: &mut Vec<T>) -> Result<(), TaskError>;
    /// Sends partially filled buffers: the subtask's input went idle.
    async fn flush(&mut self) -> Result<(), TaskError>;
    /// Whether [`Tail::flush`] has anything to send: an idle subtask skips the call otherwise.
    fn buffered(&self) -> bool {
        true
    }
    /// Snapshots the tail's own state (a sink's pre-commit).
    async fn snapshot(&mut self, checkpoint: CheckpointId, snapshot: &mut SyncSnapshot) -> Result<(), TaskError>;
    /// Sends the barrier downstream, behind every record emitted before it.
    async fn forward_barrier(&mut self, barrier: CheckpointBarrier) -> Result<(), TaskError>;
    /// The input is exhausted: flush and signal the end downstream.
    async fn finish(&mut self) -> Result<(), TaskError>;
    /// As `finish`, for a subtask that was finished when its checkpoint was taken: its
    /// downstream subtasks may be finished on restore too and already gone.
    async fn finish_on_restore(&mut self) -> Result<(), TaskError> {
        self.finish().await
    }
    async fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError>;
}

/// Routes a record to a subtask, given the downstream parallelism and max parallelism.
pub type RouteFn<T> = Arc<dyn Fn(&T, u32, u32) -> SubtaskIndex + Send + Sync>;

/// How records choose a downstream subtask.
pub enum Partitioner<T> {
    /// To the downstream subtask with the same index (equal parallelism).
    Forward,
    /// Round robin over downstream subtasks.
    Rebalance,
    /// By key group: `subtask = key_group * parallelism / max_parallelism`.
    KeyGroups { route: RouteFn<T> },
}

impl<T: 'static> Partitioner<T> {
    /// The key-group partitioner for key selector `key_of`.
    pub fn key_groups<K: Key>(key_of: KeySelector<T, K>) -> Self {
        Partitioner::KeyGroups {
            route: Arc::new(move |record, parallelism, max_parallelism| {
                let key_group = key_group_for_key(&*key_of(record), max_parallelism);
                subtask_for_key_group(key_group, parallelism, max_parallelism)
            }),
        }
    }
}

/// The capacity a channel's first buffer starts with when nothing has been sent on it yet.
const FIRST_BUFFER_RECORDS: usize = 16;

/// Sends records to downstream subtasks in batches.
///
/// A buffer per channel, allocated when its first record arrives and handed over with the
/// batch it holds: at parallelism `p` there are `p` channels per subtask, and most of them
/// may never carry a record. A buffer starts at the size of the last batch sent on its
/// channel, so a busy channel allocates once per batch and an idle one not at all.
pub struct NetworkOutput<T> {
    info: SubtaskInfo,
    faults: Faults,
    channels: Vec<Sender<StreamElement<T>>>,
    buffers: Vec<Vec<T>>,
    /// The length of the last batch sent on each channel (0 before the first).
    last_batch_records: Vec<u32>,
    partitioner: Partitioner<T>,
    batch_size_records: usize,
    next_round_robin: usize,
}

impl<T: Send + 'static> NetworkOutput<T> {
    pub fn new(
        info: SubtaskInfo,
        channels: Vec<Sender<StreamElement<T>>>,
        partitioner: Partitioner<T>,
        batch_size_records: usize,
        faults: Faults,
    ) -> Self {
        assert!(!channels.is_empty());
        if matches!(partitioner, Partitioner::Forward) {
            assert_eq!(channels.len() as u32, info.parallelism, "a forward edge needs equal parallelism");
        }
        assert!(batch_size_records >= 1, "a batch holds at least one record");
        let buffers = channels.iter().map(|_| Vec::new()).collect();
        let last_batch_records = vec![0; channels.len()];
        // Start round robin at the subtask's own index so that subtasks spread their load.
        let next_round_robin = info.subtask.index() % channels.len();
        NetworkOutput {
            info,
            faults,
            channels,
            buffers,
            last_batch_records,
            partitioner,
            batch_size_records,
            next_round_robin,
        }
    }

    /// Appends `record` to `channel`'s buffer, allocating the buffer if it has none.
    fn buffer(&mut self, channel: usize, record: T) {
        let buffer = &mut self.buffers[channel];
        if buffer.capacity() == 0 {
            let expected = (self.last_batch_records[channel] as usize).max(FIRST_BUFFER_RECORDS);
            buffer.reserve_exact(expected.min(self.batch_size_records));
        }
        buffer.push(record);
    }

    fn closed(&self) -> TaskError {
        TaskError::from(TaskFailure::ChannelClosed {
            vertex: self.info.vertex_name.clone(),
            subtask: self.info.subtask,
            what: "output",
        })
    }

    async fn send(&mut self, channel: usize, element: StreamElement<T>) -> Result<(), TaskError> {
        if self.channels[channel].send(element).await.is_err() {
            return Err(self.closed());
        }
        Ok(())
    }

    async fn send_buffer(&mut self, channel: usize) -> Result<(), TaskError> {
        if self.buffers[channel].is_empty() {
            return Ok(());
        }
        // The batch takes the buffer's memory along; the next record allocates anew.
        let batch = std::mem::take(&mut self.buffers[channel]);
        self.last_batch_records[channel] = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        self.send(channel, StreamElement::Records(batch)).await
    }

    async fn send_all_buffers(&mut self) -> Result<(), TaskError> {
        for channel in 0..self.channels.len() {
            self.send_buffer(channel).await?;
        }
        Ok(())
    }

    async fn broadcast(&mut self, make: impl Fn() -> StreamElement<T>) -> Result<(), TaskError> {
        self.send_all_buffers().await?;
        for channel in 0..self.channels.len() {
            self.send(channel, make()).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl<T: Send + 'static> Tail<T> for NetworkOutput<T> {
    async fn emit(&mut self, records: &mut Vec<T>) -> Result<(), TaskError> {
        let parallelism = self.channels.len() as u32;
        for record in records.drain(..) {
            let channel = match &self.partitioner {
                Partitioner::Forward => self.info.subtask.index(),
                Partitioner::Rebalance => {
                    self.next_round_robin = (self.next_round_robin + 1) % self.channels.len();
                    self.next_round_robin
                }
                Partitioner::KeyGroups { route } => route(&record, parallelism, self.info.max_parallelism).index(),
            };
            self.buffer(channel, record);
            if self.buffers[channel].len() >= self.batch_size_records {
                self.send_buffer(channel).await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TaskError> {
        self.send_all_buffers().await
    }

    fn buffered(&self) -> bool {
        self.buffers.iter().any(|buffer| !buffer.is_empty())
    }

    async fn snapshot(&mut self, _checkpoint: CheckpointId, _snapshot: &mut SyncSnapshot) -> Result<(), TaskError> {
        // The network output holds no state: its buffers are sent before the barrier.
        Ok(())
    }

    async fn forward_barrier(&mut self, barrier: CheckpointBarrier) -> Result<(), TaskError> {
        self.send_all_buffers().await?;
        for channel in 0..self.channels.len() {
            // The channel is ordered: holding the barrier holds everything behind it too.
            if let Some(delay) = self.faults.barrier_delay(barrier.checkpoint, self.info.task_ref(), channel as u32) {
                tracing::info!(target: "weir::trace", vertex = %self.info.vertex_name, subtask = self.info.subtask.0, checkpoint = %barrier.checkpoint, channel, ?delay, "fault: barrier held");
                runtime::sleep(delay).await;
            }
            self.send(channel, StreamElement::Barrier(barrier)).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), TaskError> {
        self.broadcast(|| StreamElement::EndOfInput).await
    }

    async fn finish_on_restore(&mut self) -> Result<(), TaskError> {
        // A downstream subtask still running needs the end of its input. One that is gone
        // was finished on restore as well (it had all its input when the checkpoint was
        // taken), or failed and reports that itself.
        for channel in 0..self.channels.len() {
            let _ = self.channels[channel].send(StreamElement::EndOfInput).await;
        }
        Ok(())
    }

    async fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> Result<(), TaskError> {
        Ok(())
    }
}

/// A sink as the tail of a subtask.
pub struct SinkTail<T, S: Sink<T>> {
    uid: OperatorUid,
    sink: S,
    info: SubtaskInfo,
    storage: StorageRef,
    /// Taken by the first call, which opens the sink.
    restored: Option<Option<OperatorStateStore>>,
    checkpointing: bool,
    faults: Faults,
    _records: std::marker::PhantomData<fn(T)>,
}

impl<T: Send + 'static, S: Sink<T>> SinkTail<T, S> {
    pub fn new(
        uid: OperatorUid,
        sink: S,
        info: SubtaskInfo,
        storage: StorageRef,
        restored: Option<OperatorSnapshot>,
        checkpointing: bool,
        faults: Faults,
    ) -> Self {
        let restored = Some(restored.map(|r| OperatorStateStore::restore(&r.lists)));
        SinkTail { uid, sink, info, storage, restored, checkpointing, faults, _records: std::marker::PhantomData }
    }

    async fn ensure_open(&mut self) -> Result<(), TaskError> {
        if let Some(restored) = self.restored.take() {
            let context = OperatorContext {
                uid: &self.uid,
                info: &self.info,
                storage: &self.storage,
                checkpointing: self.checkpointing,
                faults: &self.faults,
            };
            self.sink.open(context, restored.as_ref()).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl<T: Send + 'static, S: Sink<T>> Tail<T> for SinkTail<T, S> {
    async fn open(&mut self) -> Result<(), TaskError> {
        self.ensure_open().await
    }

    async fn emit(&mut self, records: &mut Vec<T>) -> Result<(), TaskError> {
        self.ensure_open().await?;
        if records.is_empty() {
            return Ok(());
        }
        self.sink.write(records).await
    }

    async fn flush(&mut self) -> Result<(), TaskError> {
        Ok(())
    }

    fn buffered(&self) -> bool {
        // A sink writes what it is given; its own buffers are its transaction's.
        false
    }

    async fn snapshot(&mut self, checkpoint: CheckpointId, snapshot: &mut SyncSnapshot) -> Result<(), TaskError> {
        self.ensure_open().await?;
        let mut store = OperatorStateStore::default();
        self.sink.snapshot(checkpoint, &mut store).await?;
        let operator = OperatorSnapshot { lists: store.snapshot(), ..OperatorSnapshot::default() };
        snapshot.insert(&self.uid, operator, None);
        Ok(())
    }

    async fn forward_barrier(&mut self, _barrier: CheckpointBarrier) -> Result<(), TaskError> {
        // A sink is the end of the line.
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), TaskError> {
        self.ensure_open().await?;
        self.sink.finish().await
    }

    async fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.sink.notify_checkpoint_complete(checkpoint).await
    }
}
