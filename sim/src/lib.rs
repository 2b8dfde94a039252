//! weir's simulation harness: the simulated storage and running built-in jobs on a
//! simulated cluster (a job manager and task manager nodes) for a given seed.
//!
//! Built with `--cfg madsim`, every run is a function of (scenario, seed, build): madsim's
//! scheduler, clock and randomness are driven by the seed. Built without it, the same code
//! runs on tokio, which is useful for checking semantics but not reproducible.

pub mod checkers;
pub mod checks;
pub mod cli;
pub mod cut;
pub mod divergence;
pub mod injector;
pub mod invariants;
pub mod layout;
pub mod monitor;
pub mod points;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod shard;
pub mod shrink;
pub mod storage;
pub mod stream;
pub mod suite;
pub mod swarm;
pub mod timeline;
pub mod workload;
