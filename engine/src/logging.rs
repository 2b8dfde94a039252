//! Log setup: every log line is stamped with the runtime's time (simulated time under
//! simulation), never the wall clock, and with the simulation's seed, so that a replayed
//! seed logs identically and every line says which seed it came from.
//!
//! Logging never fails the program: a closed or full stderr (`weir run ... 2>&1 | head`)
//! loses log lines, and nothing else. A failed write must not panic, because a panic in a
//! subtask's thread used to leave the job waiting forever for a subtask that was gone.

use std::fmt;
use std::io::Write;
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

/// Stderr that swallows write errors: a log line that cannot be written is lost, and the
/// program goes on (tracing's own fallback, `eprintln!`, would panic on a closed stderr).
#[derive(Clone, Copy, Debug, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // Claiming the whole buffer written ends `write_all` at once, whatever happened.
        let _ = std::io::stderr().write_all(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Installs a subscriber writing to stderr, filtered by the `WEIR_LOG` environment variable
/// (default `warn`), and starts the process's log clock: every line of the process carries
/// the time since it started. Does nothing if a subscriber is installed already.
/// A `WEIR_LOG` that is no filter is said once, as a warning, and the default applies.
pub fn init() {
    crate::seam::runtime::start_clock();
    let (builder, problem) = builder();
    let installed =
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).with_writer(|| LossyStderr).try_init();
    if let (Ok(()), Some(problem)) = (installed, problem) {
        tracing::warn!("{problem}");
    }
}

/// Like [`init`], but through the test harness's output capture, so that a passing test
/// stays quiet and a failing one shows its log.
pub fn init_for_tests() {
    let _ = builder().0.with_ansi(false).with_test_writer().try_init();
}

type Builder = tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, RuntimeClock>,
    tracing_subscriber::EnvFilter,
>;

/// The subscriber's builder, and why `WEIR_LOG` was not taken, if it was set but is no filter.
fn builder() -> (Builder, Option<String>) {
    let (filter, problem) = filter_from(std::env::var("WEIR_LOG").ok().as_deref());
    // No internal error reports: they are `eprintln!`s, which panic when stderr is closed.
    (tracing_subscriber::fmt().with_env_filter(filter).with_timer(RuntimeClock).log_internal_errors(false), problem)
}

/// The filter `WEIR_LOG` gives (`warn` if unset or invalid), and what is wrong with it, if it is invalid.
fn filter_from(value: Option<&str>) -> (tracing_subscriber::EnvFilter, Option<String>) {
    let default = || tracing_subscriber::EnvFilter::new("warn");
    match value.map(tracing_subscriber::EnvFilter::try_new) {
        None => (default(), None),
        Some(Ok(filter)) => (filter, None),
        Some(Err(error)) => (
            default(),
            Some(format!("WEIR_LOG={:?} is not a log filter ({error}); logging at `warn`", value.unwrap_or_default())),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_weir_log_is_named_and_the_default_applies() {
        assert!(filter_from(None).1.is_none());
        let (filter, problem) = filter_from(Some("weir=debug"));
        assert!(problem.is_none());
        assert_eq!(filter.to_string(), "weir=debug");
        let (filter, problem) = filter_from(Some("weir=loud"));
        let problem = problem.expect("an invalid filter is reported");
        assert!(problem.contains("WEIR_LOG=\"weir=loud\"") && problem.contains("`warn`"), "{problem}");
        assert_eq!(filter.to_string(), "warn");
    }

    #[test]
    fn writing_a_log_line_never_fails() {
        let mut writer = LossyStderr;
        assert_eq!(writer.write(b"").unwrap(), 0);
        writer.write_all(b"a log line the test harness may swallow\n").unwrap();
        writer.flush().unwrap();
    }
}
