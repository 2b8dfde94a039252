//! The pull side of a subtask: its head (a source or the input gate) and the chained
//! operators after it, erased to "something that yields batches of `T`".
//!
//! A pull that needs no waiting is made synchronously ([`Upstream::pull_now`]): the input gate
//! only takes what its channels hold, and chained operators are synchronous, so a subtask behind
//! a gate pulls batch after batch without an asynchronous call (and its boxed future) per
//! operator. Only a source's poll waits, through [`Upstream::pull`]. An operator's IO after a
//! batch (an on-disk backend's flushes) is the subtask loop's to start, right after the pull.

use crate::element::CheckpointBarrier;
use crate::error::TaskError;
use crate::faults::Faults;
use crate::ids::{CheckpointId, OperatorUid};
use crate::operators::source::{Source, SourcePoll};
use crate::operators::{ChainOp, Finish, OperatorContext, SubtaskInfo};
use crate::seam::storage::StorageRef;
use crate::state::operator::OperatorStateStore;
use crate::state::snapshot::{OperatorSnapshot, SyncSnapshot};
use crate::task::context::BuildContext;
use async_trait::async_trait;
use std::task::{Context, Poll};

/// What a pull produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    /// `out` holds records (possibly none, after a filter).
    Records,
    /// No input is ready right now; the next pull waits. `out` is empty.
    Idle,
    /// Barrier `n` reached this point; every record before it has been pulled. `out` is
    /// empty.
    Barrier(CheckpointBarrier),
    /// The input is exhausted and `out` holds final records, with more to come: the next
    /// pull goes on with them. Nothing may come between (no barrier, no command): a snapshot
    /// there would cut the final results in two.
    Final,
    /// The input is exhausted; `out` holds any final records.
    End,
}

impl Pulled {
    /// Whether the pull ran the chain's operators over records (after which they may have IO to do).
    pub fn processed(&self) -> bool {
        matches!(self, Pulled::Records | Pulled::Final | Pulled::End)
    }
}

/// A head with the operators chained after it.
#[async_trait]
pub trait Upstream<T>: Send {
    /// A pull made now, without waiting: `None`, having taken nothing, when this head only pulls by waiting (a
    /// source's poll); then the caller awaits [`Upstream::pull`].
    fn pull_now(&mut self, out: &mut Vec<T>) -> Option<Result<Pulled, TaskError>>;
    async fn pull(&mut self, out: &mut Vec<T>) -> Result<Pulled, TaskError>;
    /// Whether an operator of the chain has IO to do after the batches it processed (an on-disk backend's flushes
    /// and compactions): cheap, asked after every pull.
    fn needs_maintenance(&self) -> bool;
    /// Does that IO, head first; it may stall while an operator's memory is over its budget.
    async fn maintain(&mut self) -> Result<(), TaskError>;
    /// Ready when a pull would make progress (after `Idle`), else `Pending` with `cx` woken when it would. A poll
    /// rather than a future, so that waiting costs no allocation; dropping the wait loses nothing.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TaskError>>;
    /// Whether the head is a source (sources inject barriers on command).
    fn is_source(&self) -> bool;
    /// Opens the head without pulling (a source restores its positions): for a subtask
    /// that finished before its checkpoint and must only snapshot from now on.
    async fn open(&mut self) -> Result<(), TaskError>;
    /// Snapshots the head and every chained operator, head first.
    fn snapshot(&mut self, checkpoint: CheckpointId, snapshot: &mut SyncSnapshot) -> Result<(), TaskError>;
    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError>;
}

/// An upstream followed by one more chained operator.
pub struct Chained<Mid, T> {
    inner: Box<dyn Upstream<Mid>>,
    op: Box<dyn ChainOp<Mid, T>>,
    buffer: Vec<Mid>,
    /// The inner upstream has ended and `op` is emitting its final results in parts.
    finishing: bool,
}

impl<Mid, T> Chained<Mid, T> {
    pub fn new(inner: Box<dyn Upstream<Mid>>, op: Box<dyn ChainOp<Mid, T>>) -> Self {
        Chained { inner, op, buffer: Vec::new(), finishing: false }
    }

    /// The next part of the operator's final results: `Final` while more follow, then `End`.
    fn finish(&mut self, out: &mut Vec<T>) -> Result<Pulled, TaskError> {
        let finish = self.op.finish(out)?;
        self.finishing = finish == Finish::More;
        Ok(if self.finishing { Pulled::Final } else { Pulled::End })
    }

    /// Runs the operator over what the inner upstream pulled into `buffer`.
    fn apply(&mut self, pulled: Pulled, out: &mut Vec<T>) -> Result<Pulled, TaskError> {
        match pulled {
            Pulled::Records | Pulled::Final => self.op.process_batch(&mut self.buffer, out)?,
            Pulled::End => {
                self.op.process_batch(&mut self.buffer, out)?;
                return self.finish(out);
            }
            Pulled::Idle | Pulled::Barrier(_) => assert!(self.buffer.is_empty()),
        }
        Ok(pulled)
    }
}

#[async_trait]
impl<Mid: Send, T: Send> Upstream<T> for Chained<Mid, T> {
    fn pull_now(&mut self, out: &mut Vec<T>) -> Option<Result<Pulled, TaskError>> {
        if self.finishing {
            return Some(self.finish(out));
        }
        let pulled = self.inner.pull_now(&mut self.buffer)?;
        Some(pulled.and_then(|pulled| self.apply(pulled, out)))
    }

    async fn pull(&mut self, out: &mut Vec<T>) -> Result<Pulled, TaskError> {
        if self.finishing {
            return self.finish(out);
        }
        let pulled = self.inner.pull(&mut self.buffer).await?;
        self.apply(pulled, out)
    }

    fn needs_maintenance(&self) -> bool {
        self.inner.needs_maintenance() || self.op.needs_maintenance()
    }

    async fn maintain(&mut self) -> Result<(), TaskError> {
        if self.inner.needs_maintenance() {
            self.inner.maintain().await?;
        }
        if self.op.needs_maintenance() {
            self.op.maintain().await?;
        }
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TaskError>> {
        self.inner.poll_ready(cx)
    }

    fn is_source(&self) -> bool {
        self.inner.is_source()
    }

    async fn open(&mut self) -> Result<(), TaskError> {
        self.inner.open().await
    }

    fn snapshot(&mut self, checkpoint: CheckpointId, snapshot: &mut SyncSnapshot) -> Result<(), TaskError> {
        self.inner.snapshot(checkpoint, snapshot)?;
        self.op.snapshot(checkpoint, snapshot)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.inner.notify_checkpoint_complete(checkpoint)?;
        self.op.notify_checkpoint_complete(checkpoint)
    }
}

/// A source as the head of a subtask.
pub struct SourceHead<S: Source> {
    uid: OperatorUid,
    source: S,
    info: SubtaskInfo,
    storage: StorageRef,
    /// Taken by the first pull, which opens the source.
    restored: Option<Option<OperatorStateStore>>,
    batch_size_records: usize,
    checkpointing: bool,
    faults: Faults,
}

impl<S: Source> SourceHead<S> {
    /// Source `source` of operator `uid`, restored from `restored`, in the subtask `context` builds.
    pub fn new(uid: OperatorUid, source: S, restored: Option<OperatorSnapshot>, context: &BuildContext) -> Self {
        let restored = Some(restored.map(|r| OperatorStateStore::restore(&r.lists)));
        SourceHead {
            uid,
            source,
            info: context.info.clone(),
            storage: context.storage.clone(),
            restored,
            batch_size_records: context.batch_size_records(),
            checkpointing: context.services.checkpoints.is_some(),
            faults: context.services.faults.clone(),
        }
    }
}

#[async_trait]
impl<S: Source> Upstream<S::Out> for SourceHead<S> {
    fn pull_now(&mut self, _out: &mut Vec<S::Out>) -> Option<Result<Pulled, TaskError>> {
        // A source's poll is asynchronous: it may wait for its pacing or its IO.
        None
    }

    fn needs_maintenance(&self) -> bool {
        false
    }

    async fn maintain(&mut self) -> Result<(), TaskError> {
        Ok(())
    }

    async fn pull(&mut self, out: &mut Vec<S::Out>) -> Result<Pulled, TaskError> {
        // The first pull opens the source (a no-op afterwards).
        self.open().await?;
        match self.source.poll(out, self.batch_size_records).await? {
            SourcePoll::More => {
                let (vertex, subtask) = (&self.info.vertex_name, self.info.subtask.0);
                tracing::info!(target: "weir::trace", %vertex, subtask, records = out.len(), "records emitted");
                Ok(Pulled::Records)
            }
            SourcePoll::Finished => Ok(Pulled::End),
        }
    }

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TaskError>> {
        // A source never idles: it is always ready to poll.
        Poll::Ready(Ok(()))
    }

    async fn open(&mut self) -> Result<(), TaskError> {
        if let Some(restored) = self.restored.take() {
            let context = OperatorContext {
                uid: &self.uid,
                info: &self.info,
                storage: &self.storage,
                checkpointing: self.checkpointing,
                faults: &self.faults,
            };
            self.source.open(context, restored.as_ref()).await?;
        }
        Ok(())
    }

    fn is_source(&self) -> bool {
        true
    }

    fn snapshot(&mut self, checkpoint: CheckpointId, snapshot: &mut SyncSnapshot) -> Result<(), TaskError> {
        let mut store = OperatorStateStore::default();
        self.source.snapshot(checkpoint, &mut store)?;
        let operator = OperatorSnapshot { lists: store.snapshot(), ..OperatorSnapshot::default() };
        snapshot.insert(&self.uid, operator, None);
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.source.notify_checkpoint_complete(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::MaintenanceFuture;
    use async_trait::async_trait;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A head with one batch, then the end.
    struct OneBatch(Option<Vec<u32>>);

    #[async_trait]
    impl Upstream<u32> for OneBatch {
        fn pull_now(&mut self, out: &mut Vec<u32>) -> Option<Result<Pulled, TaskError>> {
            Some(Ok(match self.0.take() {
                Some(batch) => {
                    out.extend(batch);
                    Pulled::Records
                }
                None => Pulled::End,
            }))
        }
        async fn pull(&mut self, out: &mut Vec<u32>) -> Result<Pulled, TaskError> {
            self.pull_now(out).expect("pulls at once")
        }
        fn needs_maintenance(&self) -> bool {
            false
        }
        async fn maintain(&mut self) -> Result<(), TaskError> {
            Ok(())
        }
        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TaskError>> {
            Poll::Ready(Ok(()))
        }
        fn is_source(&self) -> bool {
            true
        }
        async fn open(&mut self) -> Result<(), TaskError> {
            Ok(())
        }
        fn snapshot(&mut self, _: CheckpointId, _: &mut SyncSnapshot) -> Result<(), TaskError> {
            Ok(())
        }
        fn notify_checkpoint_complete(&mut self, _: CheckpointId) -> Result<(), TaskError> {
            Ok(())
        }
    }

    /// Passes records on and counts its maintenance calls.
    struct Counting {
        wants_maintenance: bool,
        maintained: Arc<AtomicUsize>,
    }

    impl Counting {
        /// Never needs maintenance.
        fn passing() -> Self {
            Counting { wants_maintenance: false, maintained: Arc::new(AtomicUsize::new(0)) }
        }
    }

    impl ChainOp<u32, u32> for Counting {
        fn process_batch(&mut self, input: &mut Vec<u32>, out: &mut Vec<u32>) -> Result<(), TaskError> {
            out.append(input);
            Ok(())
        }
        fn finish(&mut self, _: &mut Vec<u32>) -> Result<Finish, TaskError> {
            Ok(Finish::Done)
        }
        fn snapshot(&mut self, _: CheckpointId, _: &mut SyncSnapshot) -> Result<(), TaskError> {
            Ok(())
        }
        fn notify_checkpoint_complete(&mut self, _: CheckpointId) -> Result<(), TaskError> {
            Ok(())
        }
        fn needs_maintenance(&self) -> bool {
            self.wants_maintenance
        }
        fn maintain(&mut self) -> MaintenanceFuture<'_> {
            self.maintained.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::ready(Ok(())))
        }
    }

    #[test]
    fn the_chain_says_an_operator_needs_maintenance_and_maintains_it_only_when_it_asks() {
        for wants_maintenance in [true, false] {
            let maintained = Arc::new(AtomicUsize::new(0));
            let op = Counting { wants_maintenance, maintained: maintained.clone() };
            let calls = crate::seam::runtime::run(0, async move {
                let inner = Chained::new(Box::new(OneBatch(Some(vec![1, 2, 3]))), Box::new(op));
                let mut chain = Chained::new(Box::new(inner), Box::new(Counting::passing()));
                let mut out = Vec::new();
                // Pulling never maintains: that is the subtask loop's, after each pull.
                assert_eq!(chain.pull_now(&mut out).unwrap().unwrap(), Pulled::Records);
                assert_eq!(out, vec![1, 2, 3]);
                assert_eq!(maintained.load(Ordering::SeqCst), 0);
                assert_eq!(chain.needs_maintenance(), wants_maintenance);
                if chain.needs_maintenance() {
                    chain.maintain().await.unwrap();
                }
                let after_records = maintained.load(Ordering::SeqCst);
                assert_eq!(chain.pull(&mut out).await.unwrap(), Pulled::End);
                (after_records, maintained.load(Ordering::SeqCst))
            });
            let expected = if wants_maintenance { (1, 1) } else { (0, 0) };
            assert_eq!(calls, expected, "wants maintenance: {wants_maintenance}");
        }
    }

    /// Emits its final results in `parts` parts, `[0]`, `[1]`, ...
    struct InParts {
        parts: u32,
        emitted: u32,
    }

    impl ChainOp<u32, u32> for InParts {
        fn process_batch(&mut self, input: &mut Vec<u32>, out: &mut Vec<u32>) -> Result<(), TaskError> {
            out.append(input);
            Ok(())
        }
        fn finish(&mut self, out: &mut Vec<u32>) -> Result<Finish, TaskError> {
            out.push(self.emitted);
            self.emitted += 1;
            Ok(if self.emitted < self.parts { Finish::More } else { Finish::Done })
        }
        fn snapshot(&mut self, _: CheckpointId, _: &mut SyncSnapshot) -> Result<(), TaskError> {
            Ok(())
        }
        fn notify_checkpoint_complete(&mut self, _: CheckpointId) -> Result<(), TaskError> {
            Ok(())
        }
    }

    #[test]
    fn final_results_in_parts_pass_through_the_chain_part_by_part() {
        let pulls = crate::seam::runtime::run(0, async move {
            // Two operators that finish in parts, one after the other: the outer one's parts follow the inner one's.
            let inner = Chained::new(Box::new(OneBatch(Some(vec![7]))), Box::new(InParts { parts: 2, emitted: 0 }));
            let mut chain = Chained::new(Box::new(inner), Box::new(InParts { parts: 3, emitted: 0 }));
            let mut pulls = Vec::new();
            loop {
                let mut out = Vec::new();
                let pulled = chain.pull(&mut out).await.unwrap();
                let end = pulled == Pulled::End;
                pulls.push((pulled, out));
                if end {
                    return pulls;
                }
            }
        });
        // The inner operator's last part comes with its end, and the outer one's first part with it.
        let expected = vec![
            (Pulled::Records, vec![7]),
            (Pulled::Final, vec![0]),
            (Pulled::Final, vec![1, 0]),
            (Pulled::Final, vec![1]),
            (Pulled::End, vec![2]),
        ];
        assert_eq!(pulls, expected);
    }
}
