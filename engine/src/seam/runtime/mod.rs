//! The runtime seam: spawn, sleep, time, seeded randomness and nodes that can be killed and
//! restarted. The only module in weir that mentions `cfg(madsim)`.
//!
//! Time, spawning and sleeping go through `tokio`, which is madsim's simulated tokio under
//! `--cfg madsim` and plain tokio otherwise. What differs between the two worlds (nodes,
//! seeded runtimes, the wall clock) is mirrored in `sim.rs` and `real.rs`.

#[cfg(not(madsim))]
mod real;
#[cfg(madsim)]
mod sim;

#[cfg(not(madsim))]
pub use real::*;
#[cfg(madsim)]
pub use sim::*;

use std::future::Future;
use std::time::Duration;

pub use tokio::task::JoinHandle;
pub use tokio::time::Instant;

/// Spawns a task on the current node.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future)
}

/// Sleeps for `duration` of (simulated or real) time.
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// The current instant of the runtime's monotonic clock.
pub fn now() -> Instant {
    tokio::time::Instant::now()
}

/// Lets other tasks run. Under simulation this is a scheduling point the seed decides.
pub async fn yield_now() {
    tokio::task::yield_now().await
}

/// Errors of the node facility.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node `{0}`: killing and restarting nodes is only possible under simulation")]
    Unsupported(String),
}

/// What a node runs when it starts, and again each time it restarts.
pub type NodeInit = std::sync::Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The default base directory of task managers' local working files: a scratch directory of the machine in real
/// mode, a volume of the simulated storage under simulation.
pub fn default_local_dir() -> std::path::PathBuf {
    if SIMULATED { std::path::PathBuf::from("/local") } else { std::env::temp_dir().join("weir-local") }
}
