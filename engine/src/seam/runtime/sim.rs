//! The simulated runtime: madsim's deterministic scheduler, clock, randomness and nodes.

use super::{NodeError, NodeInit};
use std::future::Future;
use std::time::Duration;

/// Whether this build runs under simulation.
pub const SIMULATED: bool = true;

/// Milliseconds since the Unix epoch, from the simulated clock.
pub fn wall_clock_ms() -> u64 {
    madsim::time::TimeHandle::current()
        .now_time()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// A random `u64` drawn from the simulation's seeded generator. Outside a simulation (a unit test of the simulation
/// build that opens a store directly) there is no generator: numbers then come from a counter, the same on every
/// run of the test, and never reach a simulated run.
pub fn random_u64() -> u64 {
    if madsim::runtime::Handle::try_current().is_ok() {
        return madsim::rand::random();
    }
    static OUTSIDE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    OUTSIDE.fetch_add(1, std::sync::atomic::Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The simulated clock starts with the simulation; there is nothing to start.
pub fn start_clock() {}

/// Simulated time since the simulation started; zero outside a simulation (madsim logs
/// while it builds its runtime, before its clock exists).
pub fn elapsed() -> Duration {
    madsim::time::TimeHandle::try_current().map(|time| time.elapsed()).unwrap_or_default()
}

/// A simulated node: its tasks die together when it is killed, and its init runs again
/// when it is restarted.
#[derive(Clone)]
pub struct Node {
    name: String,
    id: madsim::task::NodeId,
}

impl Node {
    pub fn start(name: &str, init: NodeInit) -> Node {
        let node = madsim::runtime::Handle::current().create_node().name(name).init(move || init()).build();
        Node { name: name.to_string(), id: node.id() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kill(&self) -> Result<(), NodeError> {
        madsim::runtime::Handle::current().kill(self.id);
        Ok(())
    }

    pub fn restart(&self) -> Result<(), NodeError> {
        madsim::runtime::Handle::current().restart(self.id);
        Ok(())
    }

    /// Stops the world on this node: none of its tasks runs until [`Node::resume`] (time goes on elsewhere).
    pub fn pause(&self) -> Result<(), NodeError> {
        madsim::runtime::Handle::current().pause(self.id);
        Ok(())
    }

    pub fn resume(&self) -> Result<(), NodeError> {
        madsim::runtime::Handle::current().resume(self.id);
        Ok(())
    }
}

/// Spawns a subtask as a task of the current node: under simulation every task shares the
/// one deterministic scheduler (real mode gives each subtask a thread).
pub fn spawn_subtask<F>(_name: String, future: F) -> super::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future)
}

/// Runs `future` as it is: under simulation a panic is a bug that must stop the whole run
/// (madsim reports it with the seed), not a task failure to restart from, so nothing is
/// caught (real mode turns it into `Err`).
pub async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    Ok(future.await)
}

/// Under simulation nothing runs while a task spins, so there is nothing to wait for: the
/// caller parks at once (real mode polls `attempt` for a few microseconds first).
pub fn spin_for<R>(_attempt: impl FnMut() -> Option<R>) -> Option<R> {
    None
}

/// Spawns work that must not stall the calling subtask (a snapshot's asynchronous part) as
/// a task of the current node, so that it dies with the node.
pub fn spawn_background<F>(future: F) -> super::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future)
}

/// Runs `future` to completion in a fresh simulation driven by `seed`.
pub fn run<F>(seed: u64, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.block_on(future)
}

/// Simulations have no Ctrl-C: cancellation is a scenario step.
pub async fn ctrl_c() {
    std::future::pending::<()>().await
}

/// How long ago, in the runtime's time, `since` was.
pub fn millis_since(since: super::Instant) -> u64 {
    since.elapsed().as_millis() as u64
}
