//! An example of testing your own job with weir's simulator, written as a crate outside the engine would be: a job
//! that is not built in (per-user click counts, [`job`]), a transactional sink of its own writing to a simulated
//! key-value table ([`table`]), the job as a workload with its own reference model ([`workload`]), and a canary
//! whose sink commits early ([`canary`]). [`registry`] is what its scenario test and its `clicks-sim` binary run.

pub mod canary;
pub mod job;
pub mod table;
pub mod workload;

use sim::workload::Registry;

/// The built-in workloads with this crate's two: `clicks` and its canary `clicks-canary-eager-commit`.
pub fn registry() -> Registry {
    Registry::builtin().with(workload::Clicks).with(canary::ClicksEagerCommit)
}
