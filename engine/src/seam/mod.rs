//! The seams through which all nondeterminism enters the engine: the runtime (time, sleep,
//! spawn, randomness, nodes) and storage (files).
//!
//! Engine code never reaches past these two modules for any of those things. That is what
//! lets the same engine run for real on tokio and deterministically under madsim.

pub mod runtime;
pub mod storage;
