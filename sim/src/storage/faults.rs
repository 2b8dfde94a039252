//! What a volume injects: its base faults, the windows of simulated time in which more
//! faults apply, and the counters that say what happened.

use engine::seam::runtime;
use std::time::Duration;

/// Storage faults to inject. The default injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageFaults {
    /// Probability that a `write_all` fails with an injected IO error.
    pub write_error_rate: f64,
    /// Probability that a `sync` or `sync_dir` fails with an injected IO error.
    pub fsync_error_rate: f64,
    /// Probability that a `read`, `read_range` or `read_range_now` fails with an injected IO
    /// error.
    pub read_error_rate: f64,
    /// Total bytes the volume's files may hold; a write beyond it fails with `NoSpace`.
    pub capacity_bytes: Option<u64>,
    /// Every asynchronous operation first sleeps a duration drawn uniformly from `[min, max]`.
    pub latency: Option<(Duration, Duration)>,
    /// While true, every asynchronous operation waits until it is false again. In a
    /// [`FaultWindow`], until the window ends.
    pub stall: bool,
}

impl StorageFaults {
    /// Whether these faults inject nothing.
    pub fn is_none(&self) -> bool {
        *self == StorageFaults::default()
    }

    /// The harsher of two fault sets, field by field: the higher error rates, the lower
    /// capacity, the longer latency bounds, and a stall if either stalls. Overlapping windows
    /// (and a window over the base faults) combine this way.
    pub fn combined(&self, other: &StorageFaults) -> StorageFaults {
        let capacity_bytes = match (self.capacity_bytes, other.capacity_bytes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let latency = match (self.latency, other.latency) {
            (Some((min_a, max_a)), Some((min_b, max_b))) => Some((min_a.max(min_b), max_a.max(max_b))),
            (a, b) => a.or(b),
        };
        StorageFaults {
            write_error_rate: self.write_error_rate.max(other.write_error_rate),
            fsync_error_rate: self.fsync_error_rate.max(other.fsync_error_rate),
            read_error_rate: self.read_error_rate.max(other.read_error_rate),
            capacity_bytes,
            latency,
            stall: self.stall || other.stall,
        }
    }
}

/// Faults that apply to one volume only while the simulated time
/// ([`runtime::elapsed`]) is in `from .. until`, on top of the volume's base faults
/// ([`StorageFaults::combined`]). An operation is subject to a window when it executes
/// within it: after waiting out any stall and sleeping its latency, except that latency is
/// drawn when the operation starts. A window's `stall` holds every operation that starts
/// within the window until the window ends, and no longer: the operation sleeps until
/// `until` instead of polling.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultWindow {
    /// Simulated time since the simulation started at which the faults begin to apply.
    pub from: Duration,
    /// Simulated time at which they stop applying (exclusive).
    pub until: Duration,
    pub faults: StorageFaults,
}

impl FaultWindow {
    /// Whether the window covers the simulated time `now`.
    pub fn contains(&self, now: Duration) -> bool {
        self.from <= now && now < self.until
    }
}

/// Counters for checkers and traces, per volume ([`super::SimStorage::volume_stats`]) or
/// summed over every volume ([`super::SimStorage::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Asynchronous operations executed, file writes and fsyncs included, and synchronous
    /// reads.
    pub operations: u64,
    pub injected_write_errors: u64,
    pub injected_fsync_errors: u64,
    pub injected_read_errors: u64,
    /// Writes refused because they would have exceeded `capacity_bytes`.
    pub no_space_errors: u64,
    /// Writes or fsyncs through a handle opened before a crash or a wipe.
    pub stale_handle_errors: u64,
    /// Directory fsyncs refused because the directory had unsynced changes at a crash.
    pub stale_directory_errors: u64,
    /// Power losses ([`super::CrashMode`] other than `Wipe`).
    pub crashes: u64,
    /// Volumes lost whole ([`super::CrashMode::Wipe`]).
    pub wipes: u64,
    /// Unsynced directory changes (creates, renames, removals) that crashes kept.
    pub changes_kept: u64,
    /// Unsynced directory changes that crashes lost.
    pub changes_lost: u64,
    /// Files a crash left with part of their unsynced data: a strict prefix of it, or with
    /// zero-filled blocks in it.
    pub torn_writes: u64,
    /// Blocks of unsynced data that crashes left zero-filled: the file's size survived,
    /// its data did not.
    pub zeroed_blocks: u64,
}

impl StorageStats {
    /// All injected IO errors, of every kind.
    pub fn injected_errors(&self) -> u64 {
        self.injected_write_errors + self.injected_fsync_errors + self.injected_read_errors
    }

    /// Field by field sum, for totals over volumes.
    pub fn plus(self, other: StorageStats) -> StorageStats {
        StorageStats {
            operations: self.operations + other.operations,
            injected_write_errors: self.injected_write_errors + other.injected_write_errors,
            injected_fsync_errors: self.injected_fsync_errors + other.injected_fsync_errors,
            injected_read_errors: self.injected_read_errors + other.injected_read_errors,
            no_space_errors: self.no_space_errors + other.no_space_errors,
            stale_handle_errors: self.stale_handle_errors + other.stale_handle_errors,
            stale_directory_errors: self.stale_directory_errors + other.stale_directory_errors,
            crashes: self.crashes + other.crashes,
            wipes: self.wipes + other.wipes,
            changes_kept: self.changes_kept + other.changes_kept,
            changes_lost: self.changes_lost + other.changes_lost,
            torn_writes: self.torn_writes + other.torn_writes,
            zeroed_blocks: self.zeroed_blocks + other.zeroed_blocks,
        }
    }
}

/// How long a stalled operation must wait before it looks again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stall {
    /// The base faults stall: until someone changes them.
    UntilChanged,
    /// Only windows stall: until this simulated time, when the last of them ends.
    Until(Duration),
}

/// The faults in force on a volume at simulated time `now`: its base faults combined with
/// every window that covers `now`.
pub(super) fn effective(base: &StorageFaults, windows: &[FaultWindow], now: Duration) -> StorageFaults {
    windows.iter().filter(|window| window.contains(now)).fold(base.clone(), |faults, w| faults.combined(&w.faults))
}

/// Whether, and how long, an operation starting at `now` must wait.
pub(super) fn stall(base: &StorageFaults, windows: &[FaultWindow], now: Duration) -> Option<Stall> {
    if base.stall {
        return Some(Stall::UntilChanged);
    }
    windows
        .iter()
        .filter(|window| window.faults.stall && window.contains(now))
        .map(|window| window.until)
        .max()
        .map(Stall::Until)
}

/// Draws whether an operation with failure probability `rate` fails. Draws nothing when
/// the rate is zero, so that a fault-free storage consumes no randomness.
pub(super) fn draw_failure(rate: f64) -> bool {
    rate > 0.0 && unit_interval(runtime::random_u64()) < rate
}

/// Maps a random `u64` to `[0, 1)` using its top 53 bits, the precision of an `f64`.
fn unit_interval(random: u64) -> f64 {
    (random >> 11) as f64 / (1u64 << 53) as f64
}

/// A duration drawn uniformly from `[min, max]`; `min`, drawing nothing, when the range is
/// empty.
pub(super) fn draw_duration(min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    let span_nanos = u64::try_from((max - min).as_nanos()).unwrap_or(u64::MAX);
    min + Duration::from_nanos(runtime::random_u64() % span_nanos.saturating_add(1))
}
