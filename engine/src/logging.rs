//! Log setup: every log line is stamped with the runtime's time (simulated time under
//! simulation), never the wall clock, and with the simulation's seed, so that a replayed
//! seed logs identically and every line says which seed it came from.

use std::fmt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

thread_local! {
    /// The seed of the simulation running on this thread. A simulation runs all its nodes
    /// on the one thread that drives it, so this reaches every task of the run.
    static SEED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Marks this thread's log lines with `seed` (or with none).
pub fn set_seed(seed: Option<u64>) {
    SEED.with(|s| s.set(seed));
}

/// Stamps log lines with the seed, if any, and the runtime's elapsed time, as
/// `[seed 7    12.345678s]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RuntimeClock;

impl FormatTime for RuntimeClock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let elapsed = crate::seam::runtime::elapsed();
        match SEED.with(|s| s.get()) {
            Some(seed) => write!(w, "[seed {seed} {:>6}.{:06}s]", elapsed.as_secs(), elapsed.subsec_micros()),
            None => write!(w, "[{:>6}.{:06}s]", elapsed.as_secs(), elapsed.subsec_micros()),
        }
    }
}

/// Installs a subscriber writing to stderr, filtered by the `WEIR_LOG` environment variable
/// (default `warn`). Does nothing if one is installed already.
pub fn init() {
    let _ = builder()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Like [`init`], but through the test harness's output capture, so that a passing test
/// stays quiet and a failing one shows its log.
pub fn init_for_tests() {
    let _ = builder().with_ansi(false).with_test_writer().try_init();
}

type Builder = tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, RuntimeClock>,
    tracing_subscriber::EnvFilter,
>;

fn builder() -> Builder {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_timer(RuntimeClock)
}
