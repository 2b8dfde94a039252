//! The subtask runtime: one async task per subtask pulls from its head (a source or the
//! input gate), pushes batches through its chain of operators, and hands them to its tail
//! (network output or sink).
//!
//! A subtask lives in two phases. Running: it processes input, snapshots at barriers (a
//! source injects its barrier on command), and takes notifications between batches. End of
//! data: with checkpointing on, it reports that it is done and waits for the final
//! checkpoint, so that a transactional sink can commit its last records; `Finish` ends it.

pub mod channel;
pub mod context;
pub mod control;
pub mod gate;
pub mod tail;
pub mod upstream;

use crate::checkpoint::coordinator::Failure;
use crate::checkpoint::storage::WriteError;
use crate::element::CheckpointBarrier;
use crate::error::{TaskError, TaskFailure};
use crate::faults::{Fate, FaultPoint, Interleaving, PointKind};
use crate::ids::CheckpointId;
use crate::ids::SubtaskInfo;
use crate::seam::runtime;
use crate::state::snapshot::SyncSnapshot;
use context::{DeployMode, TaskServices};
use control::{TaskCommand, TaskReport};
use std::time::Duration;
use tail::Tail;
use upstream::{Pulled, Upstream};

/// How often a subtask waiting for the final checkpoint repeats its end-of-data report.
const END_OF_DATA_REPEAT_MS: u64 = 200;

/// One subtask: its chain and its links to the job manager.
struct Subtask<T> {
    info: SubtaskInfo,
    upstream: Box<dyn Upstream<T>>,
    tail: Box<dyn Tail<T>>,
    services: TaskServices,
    /// The highest checkpoint snapshotted. A trigger for it or a lower one is a repeat (a
    /// direct trigger racing the barrier, or a resent command) and must be ignored: a second
    /// snapshot would pre-commit records that follow the barrier under its id.
    last_snapshot: Option<CheckpointId>,
    /// The uids of the vertex's operators, head first.
    operators: std::sync::Arc<Vec<crate::ids::OperatorUid>>,
}

/// What a command asks of the task loop.
enum Next {
    Continue,
    Exit,
}

/// How a subtask starts: what its deployment says beyond its chain.
pub struct Start {
    pub batch_size_records: usize,
    pub mode: DeployMode,
    /// Every operator of the vertex had finished when the restored snapshot was taken.
    pub finished_on_restore: bool,
    /// The uids of the vertex's operators, head first.
    pub operators: std::sync::Arc<Vec<crate::ids::OperatorUid>>,
}

/// Runs one subtask to its end.
pub async fn run_task<T: Send + 'static>(
    info: SubtaskInfo,
    upstream: Box<dyn Upstream<T>>,
    tail: Box<dyn Tail<T>>,
    services: TaskServices,
    start: Start,
) -> Result<(), TaskError> {
    let Start { batch_size_records, mode, finished_on_restore, operators } = start;
    let mut task = Subtask { info, upstream, tail, services, last_snapshot: None, operators };
    let mut out: Vec<T> = Vec::with_capacity(batch_size_records);
    if let DeployMode::FinishAt(stop) = mode {
        // The job was stopped with a savepoint and this deployment restored from it: opening restores every
        // operator (a sink commits the savepoint's pending transactions), then everything up to the savepoint is
        // committed and the subtask ends. Nothing after the savepoint may be processed: the job ends at it.
        tracing::info!(target: "weir::trace", vertex = %task.info.vertex_name, subtask = task.info.subtask.0, savepoint = %stop, "finishing at the stop's savepoint");
        task.upstream.open().await?;
        task.tail.open().await?;
        task.notify_complete(stop).await?;
        return Ok(());
    }
    if finished_on_restore {
        // Every operator had finished when the restored checkpoint was taken: its
        // end-of-input results are in that checkpoint's committed or pending output, so
        // nothing is processed or emitted again (FLIP-147's finished-on-restore).
        tracing::info!(target: "weir::trace", vertex = %task.info.vertex_name, subtask = task.info.subtask.0, "finished on restore");
        task.upstream.open().await?;
        task.tail.finish_on_restore().await?;
    } else if let Next::Exit = process(&mut task, &mut out).await? {
        return Ok(());
    }
    if task.services.checkpoints.is_none() {
        return Ok(());
    }
    task.services.reporter.report(TaskReport::EndOfData);
    let repeat = Duration::from_millis(END_OF_DATA_REPEAT_MS);
    let mut next_report = runtime::now() + repeat;
    loop {
        // The report may be lost: repeat it until the job manager answers with `Finish`, on a clock of its own, so
        // that commands (a trigger for every checkpoint) cannot keep putting it off.
        let wait = next_report.saturating_duration_since(runtime::now());
        let command = tokio::select! {
            biased;
            command = task.services.commands.recv() => command,
            _ = runtime::sleep(wait) => {
                task.services.reporter.report(TaskReport::EndOfData);
                next_report = runtime::now() + repeat;
                continue;
            }
        };
        let Some(command) = command else { return Err(TaskFailure::Canceled.into()) };
        match command {
            // All input is processed and the end forwarded: nothing goes downstream any
            // more, so the final state is snapshotted without a barrier.
            TaskCommand::TriggerCheckpoint(barrier) => task.checkpoint(barrier, false).await?,
            TaskCommand::NotifyComplete(checkpoint) => task.notify_complete(checkpoint).await?,
            TaskCommand::NotifyAborted(_) => {}
            TaskCommand::Finish { last_completed } => {
                if let Some(checkpoint) = last_completed {
                    task.notify_complete(checkpoint).await?;
                }
                return Ok(());
            }
        }
    }
}

/// The running phase: processes input until its end (or an exit command).
/// `Continue` when the input ended, `Exit` when a command ended the subtask.
async fn process<T: Send + 'static>(task: &mut Subtask<T>, out: &mut Vec<T>) -> Result<Next, TaskError> {
    let (job, task_ref) = (task.info.job, task.info.task_ref());
    loop {
        // Checked first: the common case (nothing aimed at the gate) makes no asynchronous call per batch.
        if task.services.faults.may_act(PointKind::Interleave) {
            task.services.faults.interleave(task_ref, Interleaving::Gate).await;
        }
        if task.services.faults.at(FaultPoint::Batch { job, task: task_ref }) == Fate::Fail {
            tracing::info!(target: "weir::trace", vertex = %task.info.vertex_name, subtask = task.info.subtask.0, "fault: subtask failed");
            return Err(
                TaskFailure::Injected { vertex: task.info.vertex_name.clone(), subtask: task.info.subtask }.into()
            );
        }
        while let Ok(command) = task.services.commands.try_recv() {
            if let Next::Exit = task.on_command_running(command).await? {
                return Ok(Next::Exit);
            }
        }
        // Pulled in place rather than through a helper's future: this is every batch's path.
        let pulled = match task.upstream.pull_now(out) {
            Some(pulled) => pulled?,
            None => task.upstream.pull(out).await?,
        };
        if pulled.processed() && task.upstream.needs_maintenance() {
            task.upstream.maintain().await?;
        }
        match pulled {
            Pulled::Records => task.tail.emit(out).await?,
            Pulled::Idle => {
                if task.tail.buffered() {
                    task.tail.flush().await?;
                }
                tokio::select! {
                    biased;
                    command = task.services.commands.recv() => match command {
                        Some(command) => {
                            if let Next::Exit = task.on_command_running(command).await? {
                                return Ok(Next::Exit);
                            }
                        }
                        None => return Err(TaskFailure::Canceled.into()),
                    },
                    ready = std::future::poll_fn(|cx| task.upstream.poll_ready(cx)) => ready?,
                }
            }
            Pulled::Barrier(barrier) => task.checkpoint(barrier, true).await?,
            pulled @ (Pulled::Final | Pulled::End) => {
                emit_final(task, out, pulled).await?;
                return Ok(Next::Continue);
            }
        }
    }
}

/// The next pull, without an asynchronous call when it needs no waiting; then, after a pull that processed records,
/// the IO the chain's operators have to do (an on-disk backend's flushes), before the batch goes downstream. The
/// running loop does the same in place.
async fn pull<T: Send + 'static>(task: &mut Subtask<T>, out: &mut Vec<T>) -> Result<Pulled, TaskError> {
    let pulled = match task.upstream.pull_now(out) {
        Some(pulled) => pulled?,
        None => task.upstream.pull(out).await?,
    };
    if pulled.processed() && task.upstream.needs_maintenance() {
        task.upstream.maintain().await?;
    }
    Ok(pulled)
}

/// Emits the final results, every part of them (`pulled` says whether more follow), then
/// finishes the tail. No command is taken between two parts, as none could be within
/// results that came in one: a snapshot there would hold half of them.
async fn emit_final<T: Send + 'static>(
    task: &mut Subtask<T>,
    out: &mut Vec<T>,
    mut pulled: Pulled,
) -> Result<(), TaskError> {
    loop {
        task.tail.emit(out).await?;
        match pulled {
            Pulled::Final => pulled = pull(task, out).await?,
            Pulled::End => return task.tail.finish().await,
            other => unreachable!("{other:?} after the end of input"),
        }
    }
}

impl<T: Send + 'static> Subtask<T> {
    async fn on_command_running(&mut self, command: TaskCommand) -> Result<Next, TaskError> {
        match command {
            TaskCommand::TriggerCheckpoint(barrier) if self.upstream.is_source() => {
                // Between polls every record pulled so far has been emitted: the source's
                // position and the chain's state are consistent with the barrier.
                self.checkpoint(barrier, true).await?;
            }
            TaskCommand::TriggerCheckpoint(barrier) => {
                // Barriers reach running non-source tasks in line with records.
                tracing::debug!(checkpoint = %barrier.checkpoint, "ignoring a direct trigger while running");
            }
            TaskCommand::NotifyComplete(checkpoint) => self.notify_complete(checkpoint).await?,
            TaskCommand::NotifyAborted(_) => {}
            TaskCommand::Finish { last_completed } => {
                // A stop with savepoint: commit exactly up to the savepoint, then stop.
                if let Some(checkpoint) = last_completed {
                    self.notify_complete(checkpoint).await?;
                }
                return Ok(Next::Exit);
            }
        }
        Ok(Next::Continue)
    }

    /// The synchronous part of a snapshot (operator state, keyed state frozen copy-on-write),
    /// the barrier downstream, then the asynchronous part (encoding and writing state) off
    /// the subtask's thread, which acks or declines when done.
    async fn checkpoint(&mut self, barrier: CheckpointBarrier, forward: bool) -> Result<(), TaskError> {
        let Some(writer) = self.services.checkpoints.clone() else {
            // A barrier without checkpointing is a bug of the sender.
            panic!(
                "{}[{}]: barrier {} in a job that does not checkpoint",
                self.info.vertex_name, self.info.subtask, barrier.checkpoint
            );
        };
        if self.last_snapshot.is_some_and(|last| last >= barrier.checkpoint) {
            tracing::debug!(checkpoint = %barrier.checkpoint, "ignoring a repeated trigger");
            return Ok(());
        }
        self.last_snapshot = Some(barrier.checkpoint);
        // A trigger may come before the first pull, which opens the head: a source that has not opened has not
        // taken its positions (restored, or its initial partitions) yet, and would snapshot none at all.
        self.upstream.open().await?;
        let mut snapshot = SyncSnapshot::default();
        self.upstream.snapshot(barrier.checkpoint, &mut snapshot)?;
        self.tail.snapshot(barrier.checkpoint, &mut snapshot).await?;
        if !forward {
            // Taken in the end-of-data phase: every operator, stateless ones included, has
            // processed all its input.
            for uid in self.operators.iter() {
                snapshot.operators.entry(uid.clone()).or_default().finished = true;
            }
        }
        if forward {
            self.tail.forward_barrier(barrier).await?;
        }
        let info = self.info.clone();
        let reporter = self.services.reporter.clone();
        let faults = self.services.faults.clone();
        let checkpoint = barrier.checkpoint;
        tracing::info!(target: "weir::trace", vertex = %info.vertex_name, subtask = info.subtask.0, %checkpoint, "snapshot taken");
        runtime::spawn_background(async move {
            let task = info.task_ref();
            if let Some(stall) = faults.at(FaultPoint::SnapshotAsync { id: checkpoint, task }).delay() {
                tracing::info!(target: "weir::trace", vertex = %info.vertex_name, subtask = info.subtask.0, %checkpoint, ?stall, "fault: snapshot stalled");
                runtime::sleep(stall).await;
            }
            faults.interleave(task, Interleaving::SnapshotAsync).await;
            let written = writer.write(checkpoint, &info, snapshot).await.map_err(|e| {
                // State over the jobmanager backend's limit would be over it on every attempt.
                let failure =
                    if matches!(e, WriteError::StateTooLarge { .. }) { Failure::Fatal } else { Failure::Counted };
                (e.to_string(), failure)
            });
            let report = match written {
                Ok((state, files)) => {
                    tracing::info!(target: "weir::trace", vertex = %info.vertex_name, subtask = info.subtask.0, %checkpoint, "snapshot written, acking");
                    let acknowledge = FaultPoint::Acknowledge { job: info.job, id: checkpoint, task, files: &files };
                    if faults.at(acknowledge) == Fate::Crash {
                        return;
                    }
                    TaskReport::Ack { checkpoint, state }
                }
                Err((reason, failure)) => {
                    tracing::warn!(%checkpoint, %reason, "declining checkpoint");
                    TaskReport::Decline { checkpoint, reason, failure }
                }
            };
            reporter.report(report);
        });
        Ok(())
    }

    async fn notify_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.upstream.notify_checkpoint_complete(checkpoint)?;
        self.tail.notify_checkpoint_complete(checkpoint).await
    }
}
