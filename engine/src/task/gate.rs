//! The input gate: merges a subtask's input channels and aligns checkpoint barriers.
//!
//! With EXACTLY_ONCE, a channel that delivered barrier `n` is blocked until every channel
//! has, so no record after the barrier is processed before the snapshot. With AT_LEAST_ONCE
//! nothing is blocked; the snapshot happens when the last barrier arrives, and records after
//! the barrier on the fast channels may be replayed after a restore.

use super::channel::{Receiver, TryRecvError};
use super::upstream::{Pulled, Upstream};
use crate::config::CheckpointingMode;
use crate::element::{CheckpointBarrier, StreamElement};
use crate::error::{TaskError, TaskFailure};
use crate::faults::{CheckpointPhase, FaultPoint, Faults};
use crate::ids::CheckpointId;
use crate::operators::SubtaskInfo;
use crate::seam::runtime;
use crate::state::snapshot::SyncSnapshot;
use async_trait::async_trait;
use std::task::{Context, Poll};

/// Alignment of one checkpoint in progress.
struct Alignment {
    barrier: CheckpointBarrier,
    /// Which channels have delivered the barrier.
    arrived: Vec<bool>,
}

pub struct InputGate<T> {
    info: SubtaskInfo,
    faults: Faults,
    mode: CheckpointingMode,
    channels: Vec<Receiver<StreamElement<T>>>,
    ended: Vec<bool>,
    alignment: Option<Alignment>,
    /// Rotates the first channel looked at, so that no channel starves another.
    next_channel: usize,
    /// An element received by `ready`, handed out by the next pull.
    stash: Option<(usize, StreamElement<T>)>,
}

impl<T: Send> InputGate<T> {
    pub fn new(
        info: SubtaskInfo,
        mode: CheckpointingMode,
        channels: Vec<Receiver<StreamElement<T>>>,
        faults: Faults,
    ) -> Self {
        assert!(!channels.is_empty(), "an input gate needs at least one channel");
        let ended = vec![false; channels.len()];
        InputGate { info, faults, mode, channels, ended, alignment: None, next_channel: 0, stash: None }
    }

    fn closed(&self) -> TaskError {
        TaskError::from(TaskFailure::ChannelClosed {
            vertex: self.info.vertex_name.clone(),
            subtask: self.info.subtask,
            what: "input",
        })
    }

    fn readable(&self, channel: usize) -> bool {
        let blocked =
            self.mode == CheckpointingMode::ExactlyOnce && self.alignment.as_ref().is_some_and(|a| a.arrived[channel]);
        !self.ended[channel] && !blocked
    }

    /// Takes the next element from any readable channel without waiting.
    fn try_next(&mut self) -> Result<Option<(usize, StreamElement<T>)>, TaskError> {
        let n = self.channels.len();
        for step in 0..n {
            let channel = (self.next_channel + step) % n;
            if !self.readable(channel) {
                continue;
            }
            match self.channels[channel].try_recv() {
                Ok(element) => {
                    self.next_channel = (channel + 1) % n;
                    return Ok(Some((channel, element)));
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(self.closed()),
            }
        }
        Ok(None)
    }

    /// The next element from any readable channel, or `Pending` with `cx` woken when one arrives.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<(usize, StreamElement<T>), TaskError>> {
        let n = self.channels.len();
        assert!(
            (0..n).any(|c| self.readable(c)),
            "{}[{}]: waiting with no readable channel",
            self.info.vertex_name,
            self.info.subtask
        );
        for step in 0..n {
            let channel = (self.next_channel + step) % n;
            if !self.readable(channel) {
                continue;
            }
            match self.channels[channel].poll_recv(cx) {
                Poll::Ready(Some(element)) => {
                    self.next_channel = (channel + 1) % n;
                    return Poll::Ready(Ok((channel, element)));
                }
                Poll::Ready(None) => return Poll::Ready(Err(self.closed())),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    /// Registers barrier arrival on `channel`; returns the barrier once aligned.
    fn on_barrier(&mut self, channel: usize, barrier: CheckpointBarrier) -> Option<CheckpointBarrier> {
        match &mut self.alignment {
            Some(alignment) if alignment.barrier.checkpoint == barrier.checkpoint => {
                assert!(!alignment.arrived[channel], "barrier {} twice on channel {channel}", barrier.checkpoint);
                alignment.arrived[channel] = true;
            }
            Some(alignment) if alignment.barrier.checkpoint > barrier.checkpoint => {
                // A late barrier of an older, already superseded checkpoint: ignore it.
                return None;
            }
            _ => {
                // A newer checkpoint supersedes an unfinished alignment (its checkpoint can
                // no longer complete here): start over with the newer barrier.
                let mut arrived = vec![false; self.channels.len()];
                arrived[channel] = true;
                self.alignment = Some(Alignment { barrier, arrived });
                if self.channels.len() > 1 {
                    let (vertex, subtask) = (&self.info.vertex_name, self.info.subtask.0);
                    tracing::info!(target: "weir::trace", %vertex, subtask, checkpoint = %barrier.checkpoint, "aligning");
                    // A crash here kills the task manager at once: this subtask stops at its next await.
                    let _ = self.faults.at(FaultPoint::Snapshot {
                        job: self.info.job,
                        id: barrier.checkpoint,
                        class: barrier.kind,
                        phase: CheckpointPhase::Aligning,
                    });
                }
            }
        }
        self.complete_alignment()
    }

    fn complete_alignment(&mut self) -> Option<CheckpointBarrier> {
        let alignment = self.alignment.as_ref()?;
        let done = alignment.arrived.iter().zip(&self.ended).all(|(&arrived, &ended)| arrived || ended);
        if done { self.alignment.take().map(|a| a.barrier) } else { None }
    }

    /// The next batch, barrier or end that the channels hold, or `Idle`: a gate never waits to pull.
    fn pull_queued(&mut self, out: &mut Vec<T>) -> Result<Pulled, TaskError> {
        loop {
            if self.ended.iter().all(|&e| e) {
                return Ok(Pulled::End);
            }
            let next = match self.stash.take() {
                Some(stashed) => Some(stashed),
                None => match self.try_next()? {
                    Some(next) => Some(next),
                    None => runtime::spin_for(|| self.try_next().transpose()).transpose()?,
                },
            };
            let Some((channel, element)) = next else { return Ok(Pulled::Idle) };
            match element {
                StreamElement::Records(records) => {
                    assert!(out.is_empty(), "pull into a non-empty batch");
                    *out = records;
                    return Ok(Pulled::Records);
                }
                StreamElement::Barrier(barrier) => {
                    if let Some(aligned) = self.on_barrier(channel, barrier) {
                        return Ok(Pulled::Barrier(aligned));
                    }
                }
                StreamElement::EndOfInput => {
                    self.ended[channel] = true;
                    if let Some(aligned) = self.complete_alignment() {
                        return Ok(Pulled::Barrier(aligned));
                    }
                }
                // No built-in operator uses event time yet; watermarks pass no further.
                StreamElement::Watermark(_) => {}
            }
        }
    }
}

#[async_trait]
impl<T: Send> Upstream<T> for InputGate<T> {
    fn pull_now(&mut self, out: &mut Vec<T>) -> Option<Result<Pulled, TaskError>> {
        Some(self.pull_queued(out))
    }

    async fn pull(&mut self, out: &mut Vec<T>) -> Result<Pulled, TaskError> {
        self.pull_queued(out)
    }

    fn needs_maintenance(&self) -> bool {
        false
    }

    async fn maintain(&mut self) -> Result<(), TaskError> {
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TaskError>> {
        if self.stash.is_some() || self.ended.iter().all(|&e| e) {
            return Poll::Ready(Ok(()));
        }
        // An element is taken only by the poll that is ready with it, and it goes straight into the stash, so
        // giving up the wait never loses one.
        let next = std::task::ready!(self.poll_next(cx))?;
        self.stash = Some(next);
        Poll::Ready(Ok(()))
    }

    fn is_source(&self) -> bool {
        false
    }

    async fn open(&mut self) -> Result<(), TaskError> {
        Ok(())
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId, _snapshot: &mut SyncSnapshot) -> Result<(), TaskError> {
        // The gate holds no state: aligned barriers mean no in-flight records are captured.
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> Result<(), TaskError> {
        Ok(())
    }
}
