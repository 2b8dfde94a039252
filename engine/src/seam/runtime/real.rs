//! The real runtime: tokio, the system clock and OS randomness. Nodes are tasks in one
//! process and cannot be killed.

use super::{NodeError, NodeInit};
use std::future::Future;
use std::time::Duration;

/// Whether this build runs under simulation.
pub const SIMULATED: bool = false;

/// Milliseconds since the Unix epoch, from the system clock.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// A random `u64` from the OS.
pub fn random_u64() -> u64 {
    rand::random()
}

/// The process's clock: one monotonic clock for every line it logs, from every thread.
static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Starts the process's clock, if nothing has started it yet. The CLI calls it first thing
/// (through `logging::init`), so that log times count from the process's start: a clock
/// started by the first log line would stamp that line 0 however late it came.
pub fn start_clock() {
    START.get_or_init(std::time::Instant::now);
}

/// Time since the runtime started: since [`start_clock`], or else since the first call.
pub fn elapsed() -> Duration {
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// A named group of tasks. In real mode a node is a task of the one process.
#[derive(Clone, Debug)]
pub struct Node {
    name: String,
}

impl Node {
    pub fn start(name: &str, init: NodeInit) -> Node {
        tokio::spawn(init());
        Node { name: name.to_string() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kill(&self) -> Result<(), NodeError> {
        Err(NodeError::Unsupported(self.name.clone()))
    }

    pub fn restart(&self) -> Result<(), NodeError> {
        Err(NodeError::Unsupported(self.name.clone()))
    }

    pub fn pause(&self) -> Result<(), NodeError> {
        Err(NodeError::Unsupported(self.name.clone()))
    }

    pub fn resume(&self) -> Result<(), NodeError> {
        Err(NodeError::Unsupported(self.name.clone()))
    }
}

/// Runs `future` to completion on a fresh runtime. The seed is unused in real mode: real
/// runs are not reproducible, which is why weir has a simulator.
pub fn run<F>(_seed: u64, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the tokio runtime starts").block_on(future)
}

/// Spawns a subtask on a thread of its own with its own single-threaded runtime, as Flink
/// runs each task in its own thread: the subtasks of a pipeline work in parallel instead
/// of taking turns on one worker, and a blocking step of one subtask (writing a snapshot)
/// stalls only that subtask. The thread ends when the subtask ends or is aborted through
/// the returned handle; tasks the subtask spawned itself end with it.
pub fn spawn_subtask<F>(name: String, future: F) -> super::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a subtask's runtime starts");
    let (running, ended) = tokio::sync::oneshot::channel::<()>();
    let shared = tokio::runtime::Handle::try_current().ok();
    let thread = name.clone();
    let handle = runtime.spawn(async move {
        let _running = running;
        match catch_panic(future).await {
            Ok(output) => output,
            Err(message) => {
                // The subtask's own future reports its failures; reaching here means code
                // around it panicked, and all that can be done is to say so.
                tracing::error!(thread = %thread, %message, "a subtask's thread panicked");
                std::panic::panic_any(message)
            }
        }
    });
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            SHARED.with(|handle| *handle.borrow_mut() = shared);
            let _ = runtime.block_on(ended);
        })
        .expect("a subtask's thread starts");
    handle
}

/// Runs `future`, turning a panic inside it into `Err` with the panic's message, so that a
/// subtask whose code panics ends as a failed task that the job manager hears about (a
/// thread that dies silently leaves the job waiting for it forever). The future is not
/// polled again after it panicked.
pub async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    })
    .await
}

/// The message a panic was raised with, when it is text.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_string(),
        (None, Some(text)) => text.clone(),
        (None, None) => "a panic without a message".to_string(),
    }
}

/// How long a subtask polls for its peer's next batch before it parks its thread.
const SPIN_BEFORE_PARKING: Duration = Duration::from_micros(50);

/// Retries `attempt` for a few microseconds, until it yields something. A subtask's peer is
/// usually that close to its next batch, and parking a thread and waking it again (a futex,
/// and on a virtual machine an idle virtual CPU) costs more; batch by batch, that handoff
/// dominated a pipeline's throughput. Each retry first yields the CPU, so a peer that shares
/// this core runs instead of waiting out the spin.
pub fn spin_for<R>(mut attempt: impl FnMut() -> Option<R>) -> Option<R> {
    let started = std::time::Instant::now();
    while started.elapsed() < SPIN_BEFORE_PARKING {
        std::thread::yield_now();
        if let Some(result) = attempt() {
            return Some(result);
        }
    }
    None
}

thread_local! {
    /// On a subtask's thread: the runtime that deployed it, shared by the whole process.
    static SHARED: std::cell::RefCell<Option<tokio::runtime::Handle>> = const { std::cell::RefCell::new(None) };
}

/// Spawns work that must not stall the calling subtask, such as a snapshot's asynchronous
/// part (encoding and writing state): on a subtask's thread it goes to the process's shared
/// runtime, elsewhere to the current one.
pub fn spawn_background<F>(future: F) -> super::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match SHARED.with(|handle| handle.borrow().clone()) {
        Some(shared) => shared.spawn(future),
        None => tokio::spawn(future),
    }
}

/// Completes when the process receives Ctrl-C (SIGINT).
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // Without a signal handler, Ctrl-C keeps its default effect; wait forever here.
        std::future::pending::<()>().await
    }
}

/// How long ago, in the runtime's time, `since` was.
pub fn millis_since(since: super::Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_a_future_becomes_an_error_with_its_message() {
        let caught = run(
            0,
            catch_panic(async {
                super::super::yield_now().await;
                if std::hint::black_box(true) {
                    panic!("the subtask broke at record {}", 7);
                }
                1
            }),
        );
        assert_eq!(caught, Err("the subtask broke at record 7".to_string()));
        assert_eq!(run(0, catch_panic(async { 5 })), Ok(5));
    }
}
