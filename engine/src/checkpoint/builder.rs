//! A Rust builder that mirrors Flink's `env.enableCheckpointing(ms)` and `CheckpointConfig`
//! setters, for jobs configured in code rather than YAML.
//!
//! ```
//! use engine::config::{CheckpointingMode, ExternalizedRetention, JobConfig};
//! let mut config = JobConfig::default();
//! config
//!     .enable_checkpointing(200)
//!     .set_checkpointing_mode(CheckpointingMode::ExactlyOnce)
//!     .set_min_pause_between_checkpoints(50)
//!     .set_checkpoint_timeout(60_000)
//!     .set_max_concurrent_checkpoints(1)
//!     .set_tolerable_checkpoint_failure_number(3)
//!     .enable_externalized_checkpoints(ExternalizedRetention::RetainOnCancellation)
//!     .set_checkpoint_storage("/var/weir/checkpoints")
//!     .set_num_retained_checkpoints(3);
//! assert_eq!(config.checkpoint.interval_ms, Some(200));
//! ```

use crate::config::{CheckpointSettings, CheckpointingMode, ExternalizedRetention, JobConfig, RestartStrategy};

impl JobConfig {
    /// Turns periodic checkpoints on (Flink's `enableCheckpointing(ms)`); with no restart
    /// strategy chosen, failures then restart the job with a fixed delay, as in Flink.
    pub fn enable_checkpointing(&mut self, interval_ms: u64) -> &mut CheckpointSettings {
        assert!(interval_ms > 0, "a checkpoint interval must be positive");
        self.checkpoint.interval_ms = Some(interval_ms);
        if self.restart == RestartStrategy::None {
            self.restart = RestartStrategy::FixedDelay { attempts: i32::MAX as u32, delay_ms: 1000 };
        }
        &mut self.checkpoint
    }
}

impl CheckpointSettings {
    pub fn set_checkpointing_mode(&mut self, mode: CheckpointingMode) -> &mut Self {
        self.mode = mode;
        self
    }

    pub fn set_min_pause_between_checkpoints(&mut self, min_pause_ms: u64) -> &mut Self {
        self.min_pause_ms = min_pause_ms;
        self
    }

    pub fn set_checkpoint_timeout(&mut self, timeout_ms: u64) -> &mut Self {
        assert!(timeout_ms > 0, "a checkpoint timeout must be positive");
        self.timeout_ms = timeout_ms;
        self
    }

    pub fn set_max_concurrent_checkpoints(&mut self, max_concurrent: u32) -> &mut Self {
        assert!(max_concurrent >= 1, "at least one checkpoint must be allowed at a time");
        self.max_concurrent = max_concurrent;
        self
    }

    pub fn set_tolerable_checkpoint_failure_number(&mut self, failures: u32) -> &mut Self {
        self.tolerable_failed_checkpoints = failures;
        self
    }

    /// Flink 1.4's `enableExternalizedCheckpoints(cleanup)`.
    pub fn enable_externalized_checkpoints(&mut self, retention: ExternalizedRetention) -> &mut Self {
        self.externalized = retention;
        self
    }

    /// The checkpoint directory (`state.checkpoints.dir`).
    pub fn set_checkpoint_storage(&mut self, dir: impl Into<String>) -> &mut Self {
        self.dir = Some(dir.into());
        self
    }

    pub fn set_num_retained_checkpoints(&mut self, retained: u32) -> &mut Self {
        assert!(retained >= 1, "at least one checkpoint is retained");
        self.num_retained = retained;
        self
    }
}
