//! Why a job could not be built with the typed API.

/// Why a job could not be built from the typed API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("operator uid `{0}` is used twice; every operator needs its own uid")]
    DuplicateUid(String),
    #[error("parallelism must be at least 1, got {0}")]
    ZeroParallelism(u32),
    #[error("parallelism {parallelism} is above the most this build runs, {limit}")]
    ParallelismTooHigh { parallelism: u32, limit: u32 },
    #[error("parallelism {parallelism} is above max parallelism {max_parallelism}")]
    ParallelismAboveMax { parallelism: u32, max_parallelism: u32 },
    #[error("max parallelism must be in 1..=32768, got {0}")]
    MaxParallelismOutOfRange(u32),
    #[error("the job has no sink: a job must end in at least one sink")]
    NoSink,
    #[error("the `{0}` state backend is not available in this build")]
    BackendUnavailable(&'static str),
    #[error("checkpointing (`execution.checkpointing.interval`) is not available in this build yet")]
    CheckpointingUnavailable,
    #[error("job `{job}`: parameter `{parameter}`: {message}")]
    InvalidParameter { job: String, parameter: String, message: String },
}
