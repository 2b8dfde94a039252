//! RPCs between the job manager and subtasks: commands down, reports up, each through the fault hook, which
//! decides whether it is delivered, lost or delayed. Both directions go through [`deliver`], so a fate is
//! handled in one place.

use super::DeployedTask;
use crate::cluster::Directory;
use crate::cluster::messages::JobManagerMessage;
use crate::faults::{Fate, FaultPoint, Faults, RpcKind};
use crate::ids::{Attempt, JobId, TaskRef};
use crate::seam::runtime;
use crate::task::control::{Reporter, TaskCommand, TaskReport};
use std::sync::Arc;
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

/// Sends `message` to `to` as RPC `kind` to or from `task` on `host`: now, never, or after a delay, as the fault
/// hook says. A full mailbox never blocks the sender: the message waits in a task of its own.
fn deliver<M: Send + 'static>(faults: &Faults, kind: RpcKind, task: TaskRef, host: &str, to: &Sender<M>, message: M) {
    match faults.at(FaultPoint::Rpc { kind, task, host }) {
        Fate::Proceed | Fate::Fail => {
            if let Err(TrySendError::Full(message)) = to.try_send(message) {
                let to = to.clone();
                runtime::spawn(async move {
                    let _ = to.send(message).await;
                });
            }
        }
        // A node that crashed sends nothing more.
        Fate::Crash => {}
        Fate::Drop => {
            tracing::info!(target: "weir::trace", ?kind, vertex = %task.vertex, subtask = task.subtask.0, %host, "fault: rpc dropped")
        }
        Fate::Delay(delay) => {
            tracing::info!(target: "weir::trace", ?kind, vertex = %task.vertex, subtask = task.subtask.0, %host, ?delay, "fault: rpc delayed");
            let to = to.clone();
            runtime::spawn(async move {
                runtime::sleep(delay).await;
                let _ = to.send(message).await;
            });
        }
    }
}

/// Sends a command to a deployed subtask.
pub(super) fn command(faults: &Faults, task: TaskRef, deployed: &DeployedTask, command: TaskCommand) {
    let kind = match &command {
        TaskCommand::TriggerCheckpoint(_) => RpcKind::Trigger,
        TaskCommand::NotifyComplete(_) => RpcKind::Notify,
        TaskCommand::NotifyAborted(_) => RpcKind::Abort,
        TaskCommand::Finish { .. } => RpcKind::Finish,
    };
    deliver(faults, kind, task, &deployed.host, &deployed.commands, command);
}

/// Sends a subtask's reports to whichever job manager leads now.
pub(super) struct ClusterReporter {
    pub directory: Arc<Directory>,
    /// The subtask's own fault points, on its task manager.
    pub faults: Faults,
    pub job: JobId,
    pub attempt: Attempt,
    pub task: TaskRef,
    pub host: String,
}

impl Reporter for ClusterReporter {
    fn report(&self, report: TaskReport) {
        let Some(mailbox) = self.directory.job_manager() else { return };
        let kind = match &report {
            TaskReport::Ack { .. } => RpcKind::Ack,
            TaskReport::Decline { .. } => RpcKind::Decline,
            TaskReport::EndOfData => RpcKind::EndOfData,
        };
        let message = JobManagerMessage::TaskReport { job: self.job, attempt: self.attempt, task: self.task, report };
        deliver(&self.faults, kind, self.task, &self.host, &mailbox, message);
    }
}
