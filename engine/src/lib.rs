//! weir: a Flink-style stateful stream processor built to be tested under deterministic
//! simulation.
//!
//! The same engine runs for real on tokio and, with `--cfg madsim`, under madsim's
//! deterministic scheduler. All time, spawning, randomness and file IO go through [`seam`].

pub mod api;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod connectors;
pub mod element;
pub mod error;
pub mod faults;
pub mod ids;
pub mod inspect;
pub mod jobs;
pub mod keygroup;
pub mod local;
pub mod logging;
pub mod operators;
pub mod seam;
pub mod state;
pub mod task;
