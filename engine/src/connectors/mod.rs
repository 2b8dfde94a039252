//! Built-in sources and sinks: a partitioned line reader over a text file, a deterministic
//! numbered sequence, and a file sink writing one part file per subtask.

pub mod file_sink;
pub mod generator_source;
pub mod line_source;
pub mod sequence_source;

use crate::ids::SubtaskIndex;

/// The partitions a subtask reads on a fresh start: partition `k` goes to subtask
/// `k % parallelism`.
pub fn initial_partitions(partitions: u32, subtask: SubtaskIndex, parallelism: u32) -> Vec<u32> {
    (0..partitions).filter(|k| k % parallelism == subtask.0).collect()
}
