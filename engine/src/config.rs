//! Reads a job's configuration, written with Apache Flink's configuration keys, into weir's `JobConfig`.
//!
//! A configuration comes either from a YAML file or from a list of `(key, value)` entries that
//! another format (such as a scenario's TOML) has already split up. Both the flat
//! `flink-conf.yaml` style (`execution.checkpointing.interval: 100 ms`) and Flink 2.x's nested
//! style (`execution: {checkpointing: {interval: 100 ms}}`) are accepted, because users copy
//! configurations from both generations of Flink's documentation. Where Flink 1.x and 2.x spell a
//! setting differently, both spellings are accepted, and giving both with different values is an
//! error rather than a silent choice.
//!
//! Values follow Flink's own syntax: durations as in Flink's `TimeUtils` (`10 min`, `500ms`, a
//! bare number of milliseconds) and memory sizes as in Flink's `MemorySize` (`20 kb`, `5 mb`, a
//! bare number of bytes, all powers of 1024). Every error names the origin and, where known, the
//! line, so that a user can go straight to the mistake.

use std::fmt;

use serde_yaml_ng::{Mapping, Value};

/// Flink's default checkpoint timeout is ten minutes.
const DEFAULT_CHECKPOINT_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// Flink inlines state handles smaller than 20 KiB into the checkpoint metadata.
const DEFAULT_INLINE_THRESHOLD_BYTES: u64 = 20 * 1024;
/// Flink's `MemoryStateBackend` refused state larger than 5 MiB per task, and weir keeps that limit.
const DEFAULT_JOBMANAGER_MAX_STATE_BYTES: u64 = 5 * 1024 * 1024;
/// Flink's fixed-delay restart strategy waits one second between attempts by default.
const DEFAULT_RESTART_DELAY_MS: u64 = 1000;
/// Flink's fixed-delay restart strategy tries once by default when it is chosen explicitly.
const DEFAULT_RESTART_ATTEMPTS: u32 = 1;
/// Flink restarts "forever" (Integer.MAX_VALUE times) when checkpointing is on and no strategy is set.
const IMPLIED_RESTART_ATTEMPTS: u32 = i32::MAX as u32;
const DEFAULT_CHANNEL_CAPACITY_BATCHES: u32 = 8;
const DEFAULT_BATCH_SIZE_RECORDS: u32 = 1024;
/// The embedded store's default memory (memtables and block cache) per keyed operator subtask.
pub const DEFAULT_EMBEDDED_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// The embedded store's memory bound within which it still works (memtables of 1 KiB at least).
const EMBEDDED_MEMORY_BYTES_MIN: u64 = 64 * 1024;
const EMBEDDED_MEMORY_BYTES_MAX: u64 = 1 << 40;
/// Flink's upper bound for the number of key groups.
const MAX_MAX_PARALLELISM: u32 = 32768;
/// Flink stores integer options in Java `int`s, so nothing larger is a valid Flink value.
const JAVA_INT_MAX: u32 = i32::MAX as u32;
/// The highest parallelism weir runs (`parallelism.default`, `weir run -p`). In real mode each
/// subtask is a thread of its own, and an all-to-all edge has a channel per pair of subtasks:
/// at 2048, about 4,000 threads and 4 million channels (about 1 GiB) for a job of two vertices.
pub const PARALLELISM_MAX: u32 = 2048;
/// Each retained checkpoint's metadata stays in the job manager's memory.
const NUM_RETAINED_MAX: u32 = 1000;
/// A channel holds this many batches at most; every pair of subtasks has one.
const CHANNEL_CAPACITY_BATCHES_MAX: u32 = 1024;
/// Buffers of a batch's size are allocated per channel and subtask.
const BATCH_SIZE_RECORDS_MAX: u32 = 65_536;
/// Flink's own upper bound for `state.storage.fs.memory-threshold`.
const INLINE_THRESHOLD_BYTES_MAX: u64 = 1 << 20;
/// The jobmanager backend keeps a snapshot's state inline in `_metadata`, read whole.
const JOBMANAGER_MAX_STATE_BYTES_MAX: u64 = 1 << 30;

const DURATION_EXPECTED: &str = "a duration such as `10 min` or `500 ms`";
const POSITIVE_DURATION_EXPECTED: &str = "a positive duration such as `10 min` or `500 ms`";
const DURATION_OVERFLOW_EXPECTED: &str = "a duration of at most 18446744073709551615 ms";
const MEMORY_EXPECTED: &str = "a memory size such as `20 kb` or `5 mb`";
const MEMORY_OVERFLOW_EXPECTED: &str = "a memory size of at most 18446744073709551615 bytes";
const PATH_EXPECTED: &str = "a non-empty local path or `file:///` URI";
/// A retention that keeps or deletes checkpoints on cancellation needs somewhere to keep them.
const RETENTION_NEEDS_DIR: &str = "externalized checkpoints are written to the checkpoint directory, but none is \
     set (`execution.checkpointing.dir`, or Flink 1.x's `state.checkpoints.dir`)";

/// One scalar value as a configuration source supplies it, before it is interpreted for a key.
#[derive(Clone, Debug, PartialEq)]
pub enum RawValue {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::String(s) => f.write_str(s),
            RawValue::Integer(i) => write!(f, "{i}"),
            // Debug formatting keeps the `.0` of whole floats, which shows the user why an
            // integer key rejected `1000.0`.
            RawValue::Float(x) => write!(f, "{x:?}"),
            RawValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One configuration setting as given by its source.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigEntry {
    pub key: String,
    pub value: RawValue,
    /// The 1-based line in the origin, if the source knows it.
    pub line: Option<usize>,
}

/// Everything a job's configuration decides, with Flink's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobConfig {
    /// `parallelism.default`; `None` leaves the choice to the runner.
    pub parallelism: Option<u32>,
    /// `pipeline.max-parallelism`, within 1..=32768.
    pub max_parallelism: Option<u32>,
    pub checkpoint: CheckpointSettings,
    pub state_backend: StateBackendKind,
    /// The embedded backend's settings (used when `state_backend` is `Embedded`).
    pub embedded: EmbeddedSettings,
    pub restart: RestartStrategy,
    /// `weir.channel.capacity-batches`: how many batches a channel buffers before it pushes back.
    pub channel_capacity_batches: u32,
    /// `weir.channel.batch-size-records`: how many records travel together in one batch.
    pub batch_size_records: u32,
    /// On a restore from a checkpoint older than the newest committed output, the built-in
    /// sinks delete the newer parts instead of refusing (`weir run --discard-newer-output`).
    /// Not a configuration key: it is a decision about one restore, not about the job.
    pub restore_discards_newer_output: bool,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            parallelism: None,
            max_parallelism: None,
            checkpoint: CheckpointSettings::default(),
            state_backend: StateBackendKind::default(),
            embedded: EmbeddedSettings::default(),
            restart: RestartStrategy::None,
            channel_capacity_batches: DEFAULT_CHANNEL_CAPACITY_BATCHES,
            batch_size_records: DEFAULT_BATCH_SIZE_RECORDS,
            restore_discards_newer_output: false,
        }
    }
}

/// How and where checkpoints and savepoints are taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// `None` means checkpointing is off.
    pub interval_ms: Option<u64>,
    pub mode: CheckpointingMode,
    pub min_pause_ms: u64,
    pub timeout_ms: u64,
    pub max_concurrent: u32,
    pub tolerable_failed_checkpoints: u32,
    pub externalized: ExternalizedRetention,
    /// The checkpoint directory as a plain path; a `file://` prefix has been removed.
    pub dir: Option<String>,
    pub num_retained: u32,
    pub inline_threshold_bytes: u64,
    /// The savepoint directory as a plain path; a `file://` prefix has been removed.
    pub savepoint_dir: Option<String>,
    /// The most state the JobManager backend accepts in one snapshot.
    pub jobmanager_max_state_bytes: u64,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            interval_ms: None,
            mode: CheckpointingMode::default(),
            min_pause_ms: 0,
            timeout_ms: DEFAULT_CHECKPOINT_TIMEOUT_MS,
            max_concurrent: 1,
            tolerable_failed_checkpoints: 0,
            externalized: ExternalizedRetention::default(),
            dir: None,
            num_retained: 1,
            inline_threshold_bytes: DEFAULT_INLINE_THRESHOLD_BYTES,
            savepoint_dir: None,
            jobmanager_max_state_bytes: DEFAULT_JOBMANAGER_MAX_STATE_BYTES,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CheckpointingMode {
    #[default]
    ExactlyOnce,
    AtLeastOnce,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExternalizedRetention {
    #[default]
    NoExternalizedCheckpoints,
    RetainOnCancellation,
    DeleteOnCancellation,
}

/// Where operator state lives and where its checkpoints go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateBackendKind {
    /// Heap state, checkpoints kept in the JobManager's memory.
    #[default]
    JobManager,
    /// Heap state, checkpoints written to the checkpoint directory.
    FileSystem,
    /// Weir's embedded on-disk backend, which plays RocksDB's role.
    Embedded,
}

/// How the embedded on-disk backend (weir's own store in RocksDB's role) runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedSettings {
    /// `state.backend.incremental`: checkpoints upload only files no completed checkpoint
    /// has, into `shared/`, and refer to the others.
    pub incremental: bool,
    /// `state.backend.rocksdb.localdir`: where stores keep their files; `None` is the task
    /// manager's local directory (a scratch directory of the machine, `<temp>/weir-local`).
    pub local_dir: Option<String>,
    /// `state.backend.rocksdb.memory.fixed-per-slot`: memory for memtables and block cache of
    /// one keyed operator subtask's store.
    pub memory_bytes: u64,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        EmbeddedSettings { incremental: false, local_dir: None, memory_bytes: DEFAULT_EMBEDDED_MEMORY_BYTES }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartStrategy {
    None,
    FixedDelay { attempts: u32, delay_ms: u64 },
}

/// Describes one accepted setting, for documentation and `weir jobs` help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The preferred key (Flink 2.x's spelling where Flink has two).
    pub key: &'static str,
    /// Other keys that set the same thing, such as Flink 1.x spellings.
    pub aliases: &'static [&'static str],
    pub value_type: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
    // The setting is private so that the table can grow without breaking callers.
    setting: Setting,
}

/// Everything that can go wrong while reading a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: invalid YAML: {message}")]
    Yaml { origin: String, message: String },
    #[error("{origin}: the top level must be a mapping from configuration keys to values")]
    NotAMapping { origin: String },
    #[error(
        "{origin}{}: unknown configuration key `{key}`{}",
        at_line(*.line),
        did_you_mean(.suggestion.as_deref())
    )]
    UnknownKey { origin: String, line: Option<usize>, key: String, suggestion: Option<String> },
    #[error("{origin}{}: invalid value `{value}` for `{key}`: expected {expected}", at_line(*.line))]
    InvalidValue { origin: String, line: Option<usize>, key: String, value: String, expected: String },
    #[error("{origin}: {}", conflict_message(.key, .other_key))]
    Conflict { origin: String, key: String, other_key: String },
    #[error("{origin}{}: `{key}: {value}` cannot be honoured: {problem}", at_line(*.line))]
    Unsatisfied { origin: String, line: Option<usize>, key: String, value: String, problem: String },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|n| format!(":{n}")).unwrap_or_default()
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
}

fn conflict_message(key: &str, other_key: &str) -> String {
    if key == other_key {
        format!("`{key}` is given twice with different values")
    } else {
        format!("`{key}` and `{other_key}` set the same option to different values")
    }
}

/// Returns the table of accepted keys, in the order the documentation lists them.
pub fn known_keys() -> &'static [KeyInfo] {
    KEYS
}

/// The key that `key` (an alias, or the key itself) spells, if it is a known setting: two keys with the same
/// canonical key set the same thing.
pub fn canonical_key(key: &str) -> Option<&'static str> {
    lookup(key).map(|info| info.key)
}

/// Parses a YAML configuration; `origin` names the file in error messages.
///
/// A YAML file is a whole job's configuration, so settings that need another one must have
/// it: keeping or deleting checkpoints on cancellation needs a checkpoint directory.
pub fn parse_yaml(text: &str, origin: &str) -> Result<JobConfig, ConfigError> {
    let (config, items) = parse_yaml_settings(text, origin)?;
    if config.checkpoint.externalized != ExternalizedRetention::NoExternalizedCheckpoints
        && config.checkpoint.dir.is_none()
        && let Some((key, value, line)) =
            items.into_iter().find(|(key, _, _)| lookup(key).is_some_and(|info| info.setting == Setting::Externalized))
    {
        let problem = RETENTION_NEEDS_DIR.to_string();
        return Err(ConfigError::Unsatisfied { origin: origin.to_string(), line, key, value, problem });
    }
    Ok(config)
}

/// A key as a file gave it: the key, its value as text, its line.
type GivenKey = (String, String, Option<usize>);

/// Parses a YAML configuration without the checks across settings: the keys given, with
/// their values and lines, and the configuration they make.
fn parse_yaml_settings(text: &str, origin: &str) -> Result<(JobConfig, Vec<GivenKey>), ConfigError> {
    let document: Value = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e, text, origin))?;
    let mapping = match document {
        // An empty file, or one holding only comments, asks for nothing but the defaults.
        Value::Null => return Ok((JobConfig::default(), Vec::new())),
        Value::Mapping(mapping) => mapping,
        _ => {
            return Err(ConfigError::NotAMapping { origin: origin.to_string() });
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    flatten(&mapping, &mut Vec::new(), &lines, &mut items, origin)?;
    let given = items
        .iter()
        .map(|item| {
            let value = match &item.value {
                Val::Raw(raw) => raw.to_string(),
                Val::Other(text) => text.clone(),
            };
            (item.key.clone(), value, item.line)
        })
        .collect();
    Ok((build(items, origin)?, given))
}

/// Parses configuration entries that another format has already split into keys and values.
///
/// Unlike [`parse_yaml`], settings that need another one are not checked: the caller may
/// supply it (the simulator gives every job a checkpoint directory).
pub fn from_entries(entries: Vec<ConfigEntry>, origin: &str) -> Result<JobConfig, ConfigError> {
    let items = entries.into_iter().map(|e| Item { key: e.key, value: Val::Raw(e.value), line: e.line }).collect();
    build(items, origin)
}

/// One setting identified by its role, whichever key spelled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setting {
    Parallelism,
    MaxParallelism,
    CheckpointInterval,
    CheckpointMode,
    MinPause,
    CheckpointTimeout,
    MaxConcurrent,
    TolerableFailed,
    Externalized,
    CheckpointDir,
    NumRetained,
    Backend,
    Storage,
    InlineThreshold,
    SavepointDir,
    JobManagerMaxState,
    Incremental,
    LocalDir,
    EmbeddedMemory,
    RestartType,
    RestartAttempts,
    RestartDelay,
    ChannelCapacity,
    BatchSize,
}

static KEYS: &[KeyInfo] = &[
    KeyInfo {
        key: "parallelism.default",
        aliases: &[],
        value_type: "integer from 1 to 2048",
        default: "unset (the runner decides)",
        meaning: "Number of parallel instances of each operator.",
        setting: Setting::Parallelism,
    },
    KeyInfo {
        key: "pipeline.max-parallelism",
        aliases: &[],
        value_type: "integer from 1 to 32768",
        default: "unset",
        meaning: "Number of key groups, which bounds how far the job can be rescaled.",
        setting: Setting::MaxParallelism,
    },
    KeyInfo {
        key: "execution.checkpointing.interval",
        aliases: &[],
        value_type: "positive duration",
        default: "unset (checkpointing off)",
        meaning: "Time between the starts of two checkpoints; setting it turns checkpointing on.",
        setting: Setting::CheckpointInterval,
    },
    KeyInfo {
        key: "execution.checkpointing.mode",
        aliases: &[],
        value_type: "EXACTLY_ONCE or AT_LEAST_ONCE",
        default: "EXACTLY_ONCE",
        meaning: "Whether barriers are aligned (exactly once) or not (at least once).",
        setting: Setting::CheckpointMode,
    },
    KeyInfo {
        key: "execution.checkpointing.min-pause",
        aliases: &[],
        value_type: "duration",
        default: "0 ms",
        meaning: "Least time between the end of one checkpoint and the start of the next.",
        setting: Setting::MinPause,
    },
    KeyInfo {
        key: "execution.checkpointing.timeout",
        aliases: &[],
        value_type: "positive duration",
        default: "10 min",
        meaning: "Time after which an unfinished checkpoint is abandoned.",
        setting: Setting::CheckpointTimeout,
    },
    KeyInfo {
        key: "execution.checkpointing.max-concurrent-checkpoints",
        aliases: &[],
        value_type: "integer from 1 to 2147483647",
        default: "1",
        meaning: "Most checkpoints that may be in progress at once.",
        setting: Setting::MaxConcurrent,
    },
    KeyInfo {
        key: "execution.checkpointing.tolerable-failed-checkpoints",
        aliases: &[],
        value_type: "integer from 0 to 2147483647",
        default: "0",
        meaning: "Consecutive checkpoint failures tolerated before the job fails.",
        setting: Setting::TolerableFailed,
    },
    KeyInfo {
        key: "execution.checkpointing.externalized-checkpoint-retention",
        aliases: &["execution.checkpointing.externalized-checkpoints"],
        value_type: "RETAIN_ON_CANCELLATION, DELETE_ON_CANCELLATION or NO_EXTERNALIZED_CHECKPOINTS",
        default: "NO_EXTERNALIZED_CHECKPOINTS",
        meaning: "Whether completed checkpoints outlive a cancelled job; keeping or deleting them needs a checkpoint directory.",
        setting: Setting::Externalized,
    },
    KeyInfo {
        key: "execution.checkpointing.dir",
        aliases: &["state.checkpoints.dir", "state.backend.fs.checkpointdir"],
        value_type: "local path or file:// URI",
        default: "unset",
        meaning: "Directory that checkpoints are written to; other schemes (s3://, hdfs://) are errors.",
        setting: Setting::CheckpointDir,
    },
    KeyInfo {
        key: "execution.checkpointing.num-retained",
        aliases: &["state.checkpoints.num-retained"],
        value_type: "integer from 1 to 1000",
        default: "1",
        meaning: "Number of completed checkpoints kept.",
        setting: Setting::NumRetained,
    },
    KeyInfo {
        key: "state.backend.type",
        aliases: &["state.backend"],
        value_type: "hashmap, jobmanager, filesystem, rocksdb or embedded",
        default: "hashmap",
        meaning: "Where state lives: `hashmap` keeps it on the heap and checkpoints it to the JobManager, \
                  or to the checkpoint directory when `execution.checkpointing.storage` is `filesystem` \
                  or a checkpoint directory is set; `jobmanager` and `filesystem` are Flink 1.x's names for \
                  those two; `rocksdb` and `embedded` choose weir's embedded on-disk backend.",
        setting: Setting::Backend,
    },
    KeyInfo {
        key: "execution.checkpointing.storage",
        aliases: &["state.checkpoint-storage"],
        value_type: "jobmanager or filesystem",
        default: "unset",
        meaning: "Where the `hashmap` backend sends its checkpoints.",
        setting: Setting::Storage,
    },
    KeyInfo {
        key: "execution.checkpointing.data-inline-threshold",
        aliases: &["state.backend.fs.memory-threshold"],
        value_type: "memory size from 0 b to 1 mb",
        default: "20 kb",
        meaning: "State smaller than this is stored inside the checkpoint metadata instead of its own file.",
        setting: Setting::InlineThreshold,
    },
    KeyInfo {
        key: "execution.checkpointing.savepoint-dir",
        aliases: &["state.savepoints.dir"],
        value_type: "local path or file:// URI",
        default: "unset",
        meaning: "Default directory for savepoints; other schemes (s3://, hdfs://) are errors.",
        setting: Setting::SavepointDir,
    },
    KeyInfo {
        key: "weir.state.jobmanager.max-state-size",
        aliases: &[],
        value_type: "memory size from 1 b to 1 gb",
        default: "5 mb",
        meaning: "Most state the JobManager backend accepts in one snapshot.",
        setting: Setting::JobManagerMaxState,
    },
    KeyInfo {
        key: "state.backend.incremental",
        aliases: &["execution.checkpointing.incremental"],
        value_type: "true or false",
        default: "false",
        meaning: "Whether the embedded (rocksdb) backend's checkpoints upload only new files into `shared/` and refer to the files of earlier checkpoints.",
        setting: Setting::Incremental,
    },
    KeyInfo {
        key: "state.backend.rocksdb.localdir",
        aliases: &["state.backend.rocksdb.checkpointdir"],
        value_type: "local path or file:// URI",
        default: "the task manager's local directory (`<temp>/weir-local`)",
        meaning: "Where the embedded (rocksdb) backend keeps its working files; they are rebuilt from the checkpoint after a restart.",
        setting: Setting::LocalDir,
    },
    KeyInfo {
        key: "state.backend.rocksdb.memory.fixed-per-slot",
        aliases: &[],
        value_type: "memory size from 64 kb to 1024 gb",
        default: "64 mb",
        meaning: "Memory of one keyed operator subtask's embedded store: memtables and block cache together.",
        setting: Setting::EmbeddedMemory,
    },
    KeyInfo {
        key: "restart-strategy.type",
        aliases: &["restart-strategy"],
        value_type: "none, off, disable, fixed-delay or fixeddelay",
        default: "fixed-delay forever with 1 s delay if checkpointing is on, otherwise none",
        meaning: "What happens when a task fails.",
        setting: Setting::RestartType,
    },
    KeyInfo {
        key: "restart-strategy.fixed-delay.attempts",
        aliases: &[],
        value_type: "integer from 0 to 2147483647",
        default: "1",
        meaning: "Restarts tried before the job fails, when the strategy is fixed-delay.",
        setting: Setting::RestartAttempts,
    },
    KeyInfo {
        key: "restart-strategy.fixed-delay.delay",
        aliases: &[],
        value_type: "duration",
        default: "1 s",
        meaning: "Wait before each restart, when the strategy is fixed-delay.",
        setting: Setting::RestartDelay,
    },
    KeyInfo {
        key: "weir.channel.capacity-batches",
        aliases: &[],
        value_type: "integer from 1 to 1024",
        default: "8",
        meaning: "Batches a channel buffers before the sender waits.",
        setting: Setting::ChannelCapacity,
    },
    KeyInfo {
        key: "weir.channel.batch-size-records",
        aliases: &[],
        value_type: "integer from 1 to 65536",
        default: "1024",
        meaning: "Records sent together in one batch.",
        setting: Setting::BatchSize,
    },
];

fn lookup(key: &str) -> Option<&'static KeyInfo> {
    KEYS.iter().find(|info| info.key == key || info.aliases.contains(&key))
}

/// Finds the known key nearest to a mistyped one, if it is close enough to be a likely typo.
fn suggest(key: &str) -> Option<String> {
    KEYS.iter()
        .flat_map(|info| std::iter::once(info.key).chain(info.aliases.iter().copied()))
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, _)| *distance <= 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// A value as the parser sees it: a scalar, or something else (a list, a null) shown as text.
enum Val {
    Raw(RawValue),
    Other(String),
}

struct Item {
    key: String,
    value: Val,
    line: Option<usize>,
}

/// Which backend a key asked for, before `hashmap` is resolved against the checkpoint storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BackendChoice {
    HashMap,
    JobManager,
    FileSystem,
    Embedded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StorageChoice {
    JobManager,
    FileSystem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RestartChoice {
    None,
    FixedDelay,
}

/// A value interpreted for its setting; equal values from two aliases are not a conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Parsed {
    Count(u32),
    Millis(u64),
    Bytes(u64),
    Bool(bool),
    Path(String),
    Mode(CheckpointingMode),
    Retention(ExternalizedRetention),
    Backend(BackendChoice),
    Storage(StorageChoice),
    Restart(RestartChoice),
}

fn parse_value(setting: Setting, raw: &RawValue) -> Result<Parsed, String> {
    use Setting as S;
    match setting {
        S::Parallelism => parse_count(raw, 1, PARALLELISM_MAX).map(Parsed::Count),
        S::MaxConcurrent => parse_count(raw, 1, JAVA_INT_MAX).map(Parsed::Count),
        S::NumRetained => parse_count(raw, 1, NUM_RETAINED_MAX).map(Parsed::Count),
        S::ChannelCapacity => parse_count(raw, 1, CHANNEL_CAPACITY_BATCHES_MAX).map(Parsed::Count),
        S::BatchSize => parse_count(raw, 1, BATCH_SIZE_RECORDS_MAX).map(Parsed::Count),
        S::TolerableFailed | S::RestartAttempts => parse_count(raw, 0, JAVA_INT_MAX).map(Parsed::Count),
        S::MaxParallelism => parse_count(raw, 1, MAX_MAX_PARALLELISM).map(Parsed::Count),
        S::CheckpointInterval | S::CheckpointTimeout => match parse_duration_ms(raw)? {
            0 => Err(POSITIVE_DURATION_EXPECTED.to_string()),
            ms => Ok(Parsed::Millis(ms)),
        },
        S::MinPause | S::RestartDelay => parse_duration_ms(raw).map(Parsed::Millis),
        S::InlineThreshold => parse_size(raw, 0, INLINE_THRESHOLD_BYTES_MAX).map(Parsed::Bytes),
        S::JobManagerMaxState => parse_size(raw, 1, JOBMANAGER_MAX_STATE_BYTES_MAX).map(Parsed::Bytes),
        S::CheckpointDir | S::SavepointDir | S::LocalDir => parse_path(raw).map(Parsed::Path),
        S::EmbeddedMemory => parse_size(raw, EMBEDDED_MEMORY_BYTES_MIN, EMBEDDED_MEMORY_BYTES_MAX).map(Parsed::Bytes),
        S::Incremental => parse_bool(raw).map(Parsed::Bool),
        S::CheckpointMode => parse_choice(
            raw,
            &[("exactly-once", CheckpointingMode::ExactlyOnce), ("at-least-once", CheckpointingMode::AtLeastOnce)],
            "`EXACTLY_ONCE` or `AT_LEAST_ONCE`",
        )
        .map(Parsed::Mode),
        S::Externalized => parse_choice(
            raw,
            &[
                ("retain-on-cancellation", ExternalizedRetention::RetainOnCancellation),
                ("delete-on-cancellation", ExternalizedRetention::DeleteOnCancellation),
                ("no-externalized-checkpoints", ExternalizedRetention::NoExternalizedCheckpoints),
            ],
            "`RETAIN_ON_CANCELLATION`, `DELETE_ON_CANCELLATION` or `NO_EXTERNALIZED_CHECKPOINTS`",
        )
        .map(Parsed::Retention),
        S::Backend => parse_choice(
            raw,
            &[
                ("hashmap", BackendChoice::HashMap),
                ("jobmanager", BackendChoice::JobManager),
                ("filesystem", BackendChoice::FileSystem),
                ("rocksdb", BackendChoice::Embedded),
                ("embedded", BackendChoice::Embedded),
            ],
            "`hashmap`, `jobmanager`, `filesystem`, `rocksdb` or `embedded`",
        )
        .map(Parsed::Backend),
        S::Storage => parse_choice(
            raw,
            &[("jobmanager", StorageChoice::JobManager), ("filesystem", StorageChoice::FileSystem)],
            "`jobmanager` or `filesystem`",
        )
        .map(Parsed::Storage),
        S::RestartType => parse_choice(
            raw,
            &[
                ("none", RestartChoice::None),
                ("off", RestartChoice::None),
                ("disable", RestartChoice::None),
                ("fixed-delay", RestartChoice::FixedDelay),
                ("fixeddelay", RestartChoice::FixedDelay),
            ],
            "`none`, `off`, `disable`, `fixed-delay` or `fixeddelay` (weir has no other restart strategy)",
        )
        .map(Parsed::Restart),
    }
}

/// Describes what a setting wants, for values that are not even scalars.
fn expected_for(setting: Setting) -> String {
    // Parsing a boolean never succeeds for any setting that is not a path, and a path accepts it,
    // so the path case needs its own text.
    match setting {
        Setting::CheckpointDir | Setting::SavepointDir | Setting::LocalDir => PATH_EXPECTED.to_string(),
        Setting::Incremental => "`true` or `false`".to_string(),
        _ => parse_value(setting, &RawValue::Bool(false)).err().unwrap_or_default(),
    }
}

/// Reads a boolean given as a YAML/TOML boolean or as the text `true` or `false`.
fn parse_bool(raw: &RawValue) -> Result<bool, String> {
    match raw {
        RawValue::Bool(b) => Ok(*b),
        RawValue::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        RawValue::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        _ => Err("`true` or `false`".to_string()),
    }
}

/// Reads an integer given as a YAML/TOML integer or as a string of digits.
fn parse_count(raw: &RawValue, min: u32, max: u32) -> Result<u32, String> {
    let expected = || format!("an integer from {min} to {max}");
    let number: Option<i128> = match raw {
        RawValue::Integer(i) => Some(i128::from(*i)),
        RawValue::String(s) => parse_digits(s.trim()).and_then(|n| i128::try_from(n).ok()),
        _ => None,
    };
    number
        .filter(|n| (i128::from(min)..=i128::from(max)).contains(n))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(expected)
}

/// Parses a non-empty run of ASCII digits; `None` if it is not one or does not fit.
fn parse_digits(s: &str) -> Option<u128> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits `"100 ms"` into the number and the lower-cased unit, as Flink's parsers do.
fn split_number_unit(s: &str) -> Option<(&str, String)> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return None;
    }
    Some((&s[..digits_end], s[digits_end..].trim().to_lowercase()))
}

/// Parses a duration written the Flink way (`100 ms`, `2 s`, `10 min`; a bare number is
/// milliseconds), for other formats that reuse Flink's syntax, such as scenario files.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    parse_duration_ms(&RawValue::String(text.to_string())).map(std::time::Duration::from_millis)
}

/// Parses a duration the way Flink's `TimeUtils.parseDuration` does, in whole milliseconds.
///
/// Weir schedules in milliseconds, so a sub-millisecond duration is rounded up to the next whole
/// millisecond rather than rejected; that keeps `1 us` from silently becoming zero.
fn parse_duration_ms(raw: &RawValue) -> Result<u64, String> {
    let text = match raw {
        RawValue::Integer(i) => {
            return u64::try_from(*i).map_err(|_| DURATION_EXPECTED.to_string());
        }
        RawValue::String(s) => s,
        _ => return Err(DURATION_EXPECTED.to_string()),
    };
    let (digits, unit) = split_number_unit(text).ok_or_else(|| DURATION_EXPECTED.to_string())?;
    let nanos_per_unit: u128 = match unit.as_str() {
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => 1,
        "us" | "µs" | "μs" | "micro" | "micros" | "microsecond" | "microseconds" => 1_000,
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
        "h" | "hour" | "hours" => 3_600_000_000_000,
        "d" | "day" | "days" => 86_400_000_000_000,
        _ => return Err(DURATION_EXPECTED.to_string()),
    };
    let overflow = || DURATION_OVERFLOW_EXPECTED.to_string();
    let number: u128 = digits.parse().map_err(|_| overflow())?;
    let nanos = number.checked_mul(nanos_per_unit).ok_or_else(overflow)?;
    u64::try_from(nanos.div_ceil(1_000_000)).map_err(|_| overflow())
}

/// Parses a memory size the way Flink's `MemorySize.parse` does: every unit is a power of 1024.
fn parse_memory_bytes(raw: &RawValue) -> Result<u64, String> {
    let text = match raw {
        RawValue::Integer(i) => return u64::try_from(*i).map_err(|_| MEMORY_EXPECTED.to_string()),
        RawValue::String(s) => s,
        _ => return Err(MEMORY_EXPECTED.to_string()),
    };
    let (digits, unit) = split_number_unit(text).ok_or_else(|| MEMORY_EXPECTED.to_string())?;
    let bytes_per_unit: u128 = match unit.as_str() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kibibytes" => 1 << 10,
        "m" | "mb" | "mebibytes" => 1 << 20,
        "g" | "gb" | "gibibytes" => 1 << 30,
        "t" | "tb" | "tebibytes" => 1 << 40,
        _ => return Err(MEMORY_EXPECTED.to_string()),
    };
    let overflow = || MEMORY_OVERFLOW_EXPECTED.to_string();
    let number: u128 = digits.parse().map_err(|_| overflow())?;
    let bytes = number.checked_mul(bytes_per_unit).ok_or_else(overflow)?;
    u64::try_from(bytes).map_err(|_| overflow())
}

/// A memory size within `min..=max` bytes.
fn parse_size(raw: &RawValue, min: u64, max: u64) -> Result<u64, String> {
    let bytes = parse_memory_bytes(raw)?;
    if !(min..=max).contains(&bytes) {
        return Err(format!("a memory size from {} to {}", show_size(min), show_size(max)));
    }
    Ok(bytes)
}

/// A size as Flink writes it: the largest unit that divides it.
fn show_size(bytes: u64) -> String {
    for (unit, size) in [("gb", 1u64 << 30), ("mb", 1 << 20), ("kb", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} b")
}

/// Reads a directory; a `file://` URI becomes its path because weir only writes local files,
/// and any other scheme (`s3://`, `hdfs://`) is an error naming it, rather than a local
/// directory called `s3:`.
fn parse_path(raw: &RawValue) -> Result<String, String> {
    // YAML reads `dir: 2024` as a number, but a configuration file means the text.
    parse_local_path(raw.to_string().trim())
}

/// The check `parse_path` applies to a directory setting, for a directory given elsewhere
/// (`weir savepoint <job> <dir>`): the local path `text` names, or what was expected instead.
pub fn parse_local_path(text: &str) -> Result<String, String> {
    if let Some((scheme, _)) = text.split_once("://")
        && !scheme.eq_ignore_ascii_case("file")
        && !scheme.is_empty()
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(format!(
            "{PATH_EXPECTED}: the `{scheme}://` scheme is not supported (weir reads and writes local files only)"
        ));
    }
    let file_scheme = text.get(..7).is_some_and(|prefix| prefix.eq_ignore_ascii_case("file://"));
    let path = match text.get(7..).filter(|_| file_scheme) {
        // `file://host/path` names another machine, which weir cannot write to.
        Some(rest) if !rest.starts_with('/') => return Err(PATH_EXPECTED.to_string()),
        Some(rest) => rest,
        None => text,
    };
    if path.is_empty() {
        return Err(PATH_EXPECTED.to_string());
    }
    Ok(path.to_string())
}

/// Matches an enumerated value case-insensitively, with `_` and `-` treated alike as Flink does.
fn parse_choice<T: Copy>(raw: &RawValue, choices: &[(&str, T)], names: &str) -> Result<T, String> {
    let expected = || format!("one of {names}");
    let RawValue::String(s) = raw else {
        return Err(expected());
    };
    let normalized = s.trim().to_lowercase().replace('_', "-");
    choices.iter().find(|(name, _)| *name == normalized).map(|(_, value)| *value).ok_or_else(expected)
}

/// The settings given so far, remembering which key gave each so conflicts can name both.
struct Given {
    values: Vec<(Setting, String, Parsed)>,
    /// Backends are compared only after `hashmap` is resolved, so every one given is kept.
    backends: Vec<(String, BackendChoice)>,
}

impl Given {
    fn get(&self, setting: Setting) -> Option<&Parsed> {
        self.values.iter().find(|(s, _, _)| *s == setting).map(|(_, _, parsed)| parsed)
    }

    fn count(&self, setting: Setting) -> Option<u32> {
        match self.get(setting) {
            Some(Parsed::Count(n)) => Some(*n),
            _ => None,
        }
    }

    fn millis(&self, setting: Setting) -> Option<u64> {
        match self.get(setting) {
            Some(Parsed::Millis(ms)) => Some(*ms),
            _ => None,
        }
    }

    fn bytes(&self, setting: Setting) -> Option<u64> {
        match self.get(setting) {
            Some(Parsed::Bytes(b)) => Some(*b),
            _ => None,
        }
    }

    fn flag(&self, setting: Setting) -> Option<bool> {
        match self.get(setting) {
            Some(Parsed::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn path(&self, setting: Setting) -> Option<String> {
        match self.get(setting) {
            Some(Parsed::Path(p)) => Some(p.clone()),
            _ => None,
        }
    }
}

fn build(items: Vec<Item>, origin: &str) -> Result<JobConfig, ConfigError> {
    let mut given = Given { values: Vec::new(), backends: Vec::new() };
    // Items arrive in document order, so returning at the first problem reports the earliest one.
    for item in items {
        let Some(info) = lookup(&item.key) else {
            return Err(ConfigError::UnknownKey {
                origin: origin.to_string(),
                line: item.line,
                suggestion: suggest(&item.key),
                key: item.key,
            });
        };
        let parsed = match &item.value {
            Val::Raw(raw) => parse_value(info.setting, raw).map_err(|expected| (raw.to_string(), expected)),
            Val::Other(text) => Err((text.clone(), expected_for(info.setting))),
        };
        let parsed = parsed.map_err(|(value, expected)| ConfigError::InvalidValue {
            origin: origin.to_string(),
            line: item.line,
            key: item.key.clone(),
            value,
            expected,
        })?;
        if let Parsed::Backend(choice) = parsed {
            given.backends.push((item.key, choice));
            continue;
        }
        match given.values.iter().find(|(s, _, _)| *s == info.setting) {
            Some((_, first_key, first)) if *first != parsed => {
                return Err(ConfigError::Conflict {
                    origin: origin.to_string(),
                    key: first_key.clone(),
                    other_key: item.key,
                });
            }
            Some(_) => {}
            None => given.values.push((info.setting, item.key, parsed)),
        }
    }

    let interval_ms = given.millis(Setting::CheckpointInterval);
    let dir = given.path(Setting::CheckpointDir);
    let storage = match given.get(Setting::Storage) {
        Some(Parsed::Storage(s)) => Some(*s),
        _ => None,
    };
    // Flink 1.x's `jobmanager` and `filesystem` backends carry their own checkpoint storage and
    // override the storage setting, as Flink's loader does; only `hashmap` consults it. With no
    // storage setting, Flink picks file storage exactly when a checkpoint directory is set.
    let resolve = |choice: BackendChoice| match choice {
        BackendChoice::JobManager => StateBackendKind::JobManager,
        BackendChoice::FileSystem => StateBackendKind::FileSystem,
        BackendChoice::Embedded => StateBackendKind::Embedded,
        BackendChoice::HashMap => match (storage, &dir) {
            (Some(StorageChoice::FileSystem), _) | (None, Some(_)) => StateBackendKind::FileSystem,
            (Some(StorageChoice::JobManager), _) | (None, None) => StateBackendKind::JobManager,
        },
    };
    let mut backend: Option<(String, StateBackendKind)> = None;
    for (key, choice) in given.backends.iter() {
        let kind = resolve(*choice);
        match &backend {
            Some((first_key, first)) if *first != kind => {
                return Err(ConfigError::Conflict {
                    origin: origin.to_string(),
                    key: first_key.clone(),
                    other_key: key.clone(),
                });
            }
            Some(_) => {}
            None => backend = Some((key.clone(), kind)),
        }
    }
    // Flink's default backend has been `hashmap` since 1.13, which is why a bare checkpoint
    // directory or storage setting is enough to get file-based checkpoints.
    let state_backend = backend.map(|(_, kind)| kind).unwrap_or_else(|| resolve(BackendChoice::HashMap));

    let restart = match given.get(Setting::RestartType) {
        Some(Parsed::Restart(RestartChoice::None)) => RestartStrategy::None,
        Some(Parsed::Restart(RestartChoice::FixedDelay)) => RestartStrategy::FixedDelay {
            attempts: given.count(Setting::RestartAttempts).unwrap_or(DEFAULT_RESTART_ATTEMPTS),
            delay_ms: given.millis(Setting::RestartDelay).unwrap_or(DEFAULT_RESTART_DELAY_MS),
        },
        // Flink restarts a checkpointed job indefinitely unless told otherwise, because a
        // checkpoint makes restarting cheap; without checkpoints it does not restart at all.
        _ if interval_ms.is_some() => {
            RestartStrategy::FixedDelay { attempts: IMPLIED_RESTART_ATTEMPTS, delay_ms: DEFAULT_RESTART_DELAY_MS }
        }
        _ => RestartStrategy::None,
    };

    let defaults = CheckpointSettings::default();
    let checkpoint = CheckpointSettings {
        interval_ms,
        mode: match given.get(Setting::CheckpointMode) {
            Some(Parsed::Mode(mode)) => *mode,
            _ => defaults.mode,
        },
        min_pause_ms: given.millis(Setting::MinPause).unwrap_or(defaults.min_pause_ms),
        timeout_ms: given.millis(Setting::CheckpointTimeout).unwrap_or(defaults.timeout_ms),
        max_concurrent: given.count(Setting::MaxConcurrent).unwrap_or(defaults.max_concurrent),
        tolerable_failed_checkpoints: given
            .count(Setting::TolerableFailed)
            .unwrap_or(defaults.tolerable_failed_checkpoints),
        externalized: match given.get(Setting::Externalized) {
            Some(Parsed::Retention(retention)) => *retention,
            _ => defaults.externalized,
        },
        dir,
        num_retained: given.count(Setting::NumRetained).unwrap_or(defaults.num_retained),
        inline_threshold_bytes: given.bytes(Setting::InlineThreshold).unwrap_or(defaults.inline_threshold_bytes),
        savepoint_dir: given.path(Setting::SavepointDir),
        jobmanager_max_state_bytes: given
            .bytes(Setting::JobManagerMaxState)
            .unwrap_or(defaults.jobmanager_max_state_bytes),
    };

    Ok(JobConfig {
        parallelism: given.count(Setting::Parallelism),
        max_parallelism: given.count(Setting::MaxParallelism),
        checkpoint,
        state_backend,
        embedded: EmbeddedSettings {
            incremental: given.flag(Setting::Incremental).unwrap_or(false),
            local_dir: given.path(Setting::LocalDir),
            memory_bytes: given.bytes(Setting::EmbeddedMemory).unwrap_or(DEFAULT_EMBEDDED_MEMORY_BYTES),
        },
        restart,
        channel_capacity_batches: given.count(Setting::ChannelCapacity).unwrap_or(DEFAULT_CHANNEL_CAPACITY_BATCHES),
        batch_size_records: given.count(Setting::BatchSize).unwrap_or(DEFAULT_BATCH_SIZE_RECORDS),
        restore_discards_newer_output: false,
    })
}

/// Turns nested mappings into dotted keys, keeping document order.
fn flatten(
    mapping: &Mapping,
    path: &mut Vec<String>,
    lines: &[&str],
    out: &mut Vec<Item>,
    origin: &str,
) -> Result<(), ConfigError> {
    for (key, value) in mapping {
        let segment = match key {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(ConfigError::Yaml {
                    origin: origin.to_string(),
                    message: format!("mapping key `{}` is not a plain string", render(other)),
                });
            }
        };
        path.push(segment);
        match value {
            Value::Mapping(inner) => flatten(inner, path, lines, out, origin)?,
            _ => out.push(Item { key: path.join("."), value: to_val(value), line: find_line(lines, path) }),
        }
        path.pop();
    }
    Ok(())
}

fn to_val(value: &Value) -> Val {
    match value {
        Value::String(s) => Val::Raw(RawValue::String(s.clone())),
        Value::Bool(b) => Val::Raw(RawValue::Bool(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Val::Raw(RawValue::Integer(i)),
            // An integer beyond i64 keeps its digits so the range check can report it as given.
            _ if n.is_u64() => Val::Raw(RawValue::String(n.to_string())),
            (None, Some(x)) => Val::Raw(RawValue::Float(x)),
            (None, None) => Val::Other(n.to_string()),
        },
        other => Val::Other(render(other)),
    }
}

/// Shows any YAML value on one line, for error messages.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(mapping) => {
            let entries: Vec<String> = mapping.iter().map(|(k, v)| format!("{}: {}", render(k), render(v))).collect();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, render(&tagged.value)),
    }
}

fn yaml_error(error: &serde_yaml_ng::Error, text: &str, origin: &str) -> ConfigError {
    let raw = error.to_string();
    let message = duplicate_key_message(&raw, error, text).unwrap_or_else(|| {
        // serde_yaml_ng leaves the position out of some messages; the user still needs it.
        match error.location() {
            Some(at) if !raw.contains(" at line ") => {
                format!("{raw} at line {} column {}", at.line(), at.column())
            }
            _ => raw,
        }
    });
    ConfigError::Yaml { origin: origin.to_string(), message }
}

/// Rewrites serde_yaml_ng's duplicate-key error, which points at the start of the mapping, to
/// name the lines of both occurrences.
fn duplicate_key_message(raw: &str, error: &serde_yaml_ng::Error, text: &str) -> Option<String> {
    const MARKER: &str = "duplicate entry with key \"";
    let start = raw.find(MARKER)?;
    let rest = &raw[start + MARKER.len()..];
    let key = &rest[..rest.find('"')?];
    let parent = raw[..start].strip_suffix(": ").unwrap_or("");
    let full_key = if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") };
    let at = error.location()?;
    let indent = at.column().checked_sub(1)?;
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (row, line) in lines.iter().enumerate().skip(at.line().checked_sub(1)?) {
        if !is_content(line) {
            continue;
        }
        if indent_of(line) < indent {
            break;
        }
        if indent_of(line) == indent && key_at(line, key, indent).is_some() {
            found.push(row + 1);
        }
    }
    match found[..] {
        [first, second, ..] => {
            Some(format!("duplicate key `{full_key}` at line {second} (first given at line {first})"))
        }
        _ => None,
    }
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim_start();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Where to look for the next segment of a key path.
enum Scope {
    /// Lines `lo..hi` of a block mapping, whose keys share one indentation.
    Block { lo: usize, hi: usize },
    /// The rest of one line after `col`, holding a flow mapping such as `{interval: 1 s}`.
    Inline { row: usize, col: usize },
}

/// Finds the 1-based line of a key path, best effort, because serde_yaml_ng's values keep no
/// positions. Block mappings are followed by indentation; a flow mapping is searched on its line.
fn find_line(lines: &[&str], path: &[String]) -> Option<usize> {
    let mut scope = Scope::Block { lo: 0, hi: lines.len() };
    let mut row = None;
    for segment in path {
        let (r, end) = match scope {
            Scope::Block { lo, hi } => {
                let mut indent = None;
                let mut hit = None;
                for (r, line) in lines.iter().enumerate().take(hi).skip(lo) {
                    let trimmed = line.trim_start();
                    if !is_content(line) || trimmed.starts_with("---") || trimmed.starts_with('%') {
                        continue;
                    }
                    // The first key of a block mapping fixes the indentation of its siblings.
                    let want = *indent.get_or_insert(indent_of(line));
                    if indent_of(line) != want {
                        continue;
                    }
                    if let Some(end) = key_at(line, segment, want) {
                        hit = Some((r, end));
                        break;
                    }
                }
                hit?
            }
            Scope::Inline { row, col } => (row, key_in_line(lines[row], segment, col)?),
        };
        row = Some(r);
        let rest = lines[r][end..].trim();
        scope = if rest.is_empty() || rest.starts_with('#') {
            let parent_indent = indent_of(lines[r]);
            let hi = (r + 1..lines.len())
                .find(|&i| is_content(lines[i]) && indent_of(lines[i]) <= parent_indent)
                .unwrap_or(lines.len());
            Scope::Block { lo: r + 1, hi }
        } else {
            Scope::Inline { row: r, col: end }
        };
    }
    row.map(|r| r + 1)
}

/// If `line` holds `key:` (possibly quoted) starting exactly at byte `col`, returns the byte
/// just after the colon.
fn key_at(line: &str, key: &str, col: usize) -> Option<usize> {
    let text = line.get(col..)?;
    let key_len = ["", "\"", "'"].iter().find_map(|quote| {
        let inner = text.strip_prefix(quote)?.strip_prefix(key)?;
        inner.strip_prefix(quote)?;
        Some(key.len() + 2 * quote.len())
    })?;
    let after_key = &text[key_len..];
    let after_spaces = after_key.trim_start_matches([' ', '\t']);
    let after_colon = after_spaces.strip_prefix(':')?;
    // YAML needs a space (or the line end) after the colon of a key; `a:1` is one plain scalar.
    if !(after_colon.is_empty() || after_colon.starts_with([' ', '\t'])) {
        return None;
    }
    Some(line.len() - after_colon.len())
}

/// Finds `key:` anywhere in `line` from byte `from` on, as a key of a flow mapping.
fn key_in_line(line: &str, key: &str, from: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    (from..line.len()).find_map(|col| {
        let boundary = col == 0 || matches!(bytes[col - 1], b' ' | b'\t' | b'{' | b',');
        if boundary && line.is_char_boundary(col) { key_at(line, key, col) } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "flink-conf.yaml";

    fn entry(key: &str, value: RawValue) -> ConfigEntry {
        ConfigEntry { key: key.to_string(), value, line: None }
    }

    fn s(text: &str) -> RawValue {
        RawValue::String(text.to_string())
    }

    fn yaml(text: &str) -> JobConfig {
        parse_yaml(text, ORIGIN).unwrap_or_else(|e| panic!("{text:?} failed: {e}"))
    }

    fn yaml_err(text: &str) -> String {
        match parse_yaml(text, ORIGIN) {
            Ok(config) => panic!("{text:?} unexpectedly parsed to {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn one(key: &str, value: RawValue) -> Result<JobConfig, ConfigError> {
        from_entries(vec![entry(key, value)], "job.toml")
    }

    #[test]
    fn defaults_match_flink() {
        let config = JobConfig::default();
        assert_eq!(config.parallelism, None);
        assert_eq!(config.max_parallelism, None);
        assert_eq!(config.state_backend, StateBackendKind::JobManager);
        assert_eq!(config.restart, RestartStrategy::None);
        assert_eq!(config.channel_capacity_batches, 8);
        assert_eq!(config.batch_size_records, 1024);
        let cp = &config.checkpoint;
        assert_eq!(cp.interval_ms, None);
        assert_eq!(cp.mode, CheckpointingMode::ExactlyOnce);
        assert_eq!(cp.min_pause_ms, 0);
        assert_eq!(cp.timeout_ms, 600_000);
        assert_eq!(cp.max_concurrent, 1);
        assert_eq!(cp.tolerable_failed_checkpoints, 0);
        assert_eq!(cp.externalized, ExternalizedRetention::NoExternalizedCheckpoints);
        assert_eq!(cp.dir, None);
        assert_eq!(cp.num_retained, 1);
        assert_eq!(cp.inline_threshold_bytes, 20 * 1024);
        assert_eq!(cp.savepoint_dir, None);
        assert_eq!(cp.jobmanager_max_state_bytes, 5 * 1024 * 1024);
    }

    #[test]
    fn empty_sources_give_defaults() {
        assert_eq!(yaml(""), JobConfig::default());
        assert_eq!(yaml("# nothing here\n\n"), JobConfig::default());
        assert_eq!(yaml("~"), JobConfig::default());
        assert_eq!(yaml("{}"), JobConfig::default());
        assert_eq!(from_entries(vec![], "x").unwrap(), JobConfig::default());
    }

    /// Checks that a parsed configuration holds what one test case set.
    type Check = Box<dyn Fn(&JobConfig) -> bool>;

    /// A valid value for each key and what it must produce, so that every key and alias is tried.
    fn every_key_cases() -> Vec<(&'static str, RawValue, Check)> {
        let dir = |c: &JobConfig| c.checkpoint.dir.as_deref() == Some("/tmp/cp");
        let retained = |c: &JobConfig| c.checkpoint.num_retained == 3;
        let threshold = |c: &JobConfig| c.checkpoint.inline_threshold_bytes == 1024;
        let savepoints = |c: &JobConfig| c.checkpoint.savepoint_dir.as_deref() == Some("/tmp/sp");
        let retention = |c: &JobConfig| c.checkpoint.externalized == ExternalizedRetention::RetainOnCancellation;
        let embedded = |c: &JobConfig| c.state_backend == StateBackendKind::Embedded;
        let fixed = |c: &JobConfig| c.restart == RestartStrategy::FixedDelay { attempts: 1, delay_ms: 1000 };
        let storage = |c: &JobConfig| c.state_backend == StateBackendKind::FileSystem;
        vec![
            ("parallelism.default", RawValue::Integer(4), Box::new(|c| c.parallelism == Some(4))),
            ("pipeline.max-parallelism", s("128"), Box::new(|c| c.max_parallelism == Some(128))),
            ("execution.checkpointing.interval", s("100 ms"), Box::new(|c| c.checkpoint.interval_ms == Some(100))),
            (
                "execution.checkpointing.mode",
                s("at-least_once"),
                Box::new(|c| c.checkpoint.mode == CheckpointingMode::AtLeastOnce),
            ),
            ("execution.checkpointing.min-pause", s("2s"), Box::new(|c| c.checkpoint.min_pause_ms == 2000)),
            ("execution.checkpointing.timeout", s("1 min"), Box::new(|c| c.checkpoint.timeout_ms == 60_000)),
            (
                "execution.checkpointing.max-concurrent-checkpoints",
                RawValue::Integer(2),
                Box::new(|c| c.checkpoint.max_concurrent == 2),
            ),
            (
                "execution.checkpointing.tolerable-failed-checkpoints",
                RawValue::Integer(5),
                Box::new(|c| c.checkpoint.tolerable_failed_checkpoints == 5),
            ),
            (
                "execution.checkpointing.externalized-checkpoint-retention",
                s("RETAIN_ON_CANCELLATION"),
                Box::new(retention),
            ),
            ("execution.checkpointing.externalized-checkpoints", s("retain_on_cancellation"), Box::new(retention)),
            ("execution.checkpointing.dir", s("file:///tmp/cp"), Box::new(dir)),
            ("state.checkpoints.dir", s("/tmp/cp"), Box::new(dir)),
            ("state.backend.fs.checkpointdir", s("file:///tmp/cp"), Box::new(dir)),
            ("execution.checkpointing.num-retained", RawValue::Integer(3), Box::new(retained)),
            ("state.checkpoints.num-retained", s("3"), Box::new(retained)),
            ("state.backend.type", s("rocksdb"), Box::new(embedded)),
            ("state.backend", s("RocksDB"), Box::new(embedded)),
            ("execution.checkpointing.storage", s("filesystem"), Box::new(storage)),
            ("state.checkpoint-storage", s("FILESYSTEM"), Box::new(storage)),
            ("execution.checkpointing.data-inline-threshold", s("1kb"), Box::new(threshold)),
            ("state.backend.fs.memory-threshold", RawValue::Integer(1024), Box::new(threshold)),
            ("execution.checkpointing.savepoint-dir", s("/tmp/sp"), Box::new(savepoints)),
            ("state.savepoints.dir", s("file:///tmp/sp"), Box::new(savepoints)),
            (
                "weir.state.jobmanager.max-state-size",
                s("10 mb"),
                Box::new(|c| c.checkpoint.jobmanager_max_state_bytes == 10 << 20),
            ),
            ("restart-strategy.type", s("fixed-delay"), Box::new(fixed)),
            ("restart-strategy", s("FixedDelay"), Box::new(fixed)),
            // Attempts and delay only matter for fixed-delay, which is off by default, so they
            // parse but leave the default strategy alone.
            (
                "restart-strategy.fixed-delay.attempts",
                RawValue::Integer(3),
                Box::new(|c| c.restart == RestartStrategy::None),
            ),
            ("restart-strategy.fixed-delay.delay", s("5 s"), Box::new(|c| c.restart == RestartStrategy::None)),
            ("weir.channel.capacity-batches", RawValue::Integer(16), Box::new(|c| c.channel_capacity_batches == 16)),
            ("weir.channel.batch-size-records", s("256"), Box::new(|c| c.batch_size_records == 256)),
            ("state.backend.incremental", RawValue::Bool(true), Box::new(|c| c.embedded.incremental)),
            ("execution.checkpointing.incremental", s("TRUE"), Box::new(|c| c.embedded.incremental)),
            (
                "state.backend.rocksdb.localdir",
                s("file:///var/weir/local"),
                Box::new(|c| c.embedded.local_dir.as_deref() == Some("/var/weir/local")),
            ),
            (
                "state.backend.rocksdb.checkpointdir",
                s("/scratch"),
                Box::new(|c| c.embedded.local_dir.as_deref() == Some("/scratch")),
            ),
            (
                "state.backend.rocksdb.memory.fixed-per-slot",
                s("128 mb"),
                Box::new(|c| c.embedded.memory_bytes == 128 << 20),
            ),
        ]
    }

    #[test]
    fn every_key_and_alias_parses() {
        let cases = every_key_cases();
        for info in known_keys() {
            for key in std::iter::once(&info.key).chain(info.aliases.iter()) {
                assert!(cases.iter().any(|(k, _, _)| k == key), "no test case for `{key}`");
            }
        }
        for (key, value, check) in cases {
            let config = one(key, value.clone()).unwrap_or_else(|e| panic!("{e}"));
            assert!(check(&config), "`{key}: {value}` gave {config:?}");
            // The same key through YAML must behave the same.
            let text = match &value {
                RawValue::String(v) => format!("{key}: \"{v}\"\n"),
                other => format!("{key}: {other}\n"),
            };
            let (from_yaml, _) = parse_yaml_settings(&text, ORIGIN).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(from_yaml, config, "YAML {text:?}");
        }
    }

    #[test]
    fn restart_attempts_and_delay_apply_to_fixed_delay() {
        let config = yaml(
            "restart-strategy: fixed-delay\n\
             restart-strategy.fixed-delay.attempts: 3\n\
             restart-strategy.fixed-delay.delay: 10 s\n",
        );
        assert_eq!(config.restart, RestartStrategy::FixedDelay { attempts: 3, delay_ms: 10_000 });
        let config = yaml("restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 0\n");
        assert_eq!(config.restart, RestartStrategy::FixedDelay { attempts: 0, delay_ms: 1000 });
    }

    const FLINK_1_4: &str = "\
# Flink 1.4 style
parallelism.default: 4
pipeline.max-parallelism: 128
execution.checkpointing.interval: 30 s
execution.checkpointing.mode: AT_LEAST_ONCE
execution.checkpointing.externalized-checkpoints: RETAIN_ON_CANCELLATION
state.backend: filesystem
state.backend.fs.checkpointdir: file:///var/weir/checkpoints
state.checkpoints.num-retained: 3
state.backend.fs.memory-threshold: 1024
state.savepoints.dir: /var/weir/savepoints
restart-strategy: fixed-delay
restart-strategy.fixed-delay.attempts: 5
restart-strategy.fixed-delay.delay: 10 s
";

    const FLINK_2_NESTED: &str = "\
# Flink 2.x style
parallelism:
  default: 4
pipeline:
  max-parallelism: 128
execution:
  checkpointing:
    interval: 30s
    mode: at_least_once
    externalized-checkpoint-retention: retain_on_cancellation
    dir: /var/weir/checkpoints
    num-retained: 3
    storage: filesystem
    data-inline-threshold: 1 kb
    savepoint-dir: file:///var/weir/savepoints
state:
  backend:
    type: hashmap
restart-strategy:
  type: fixed-delay
  fixed-delay:
    attempts: 5
    delay: 10000
";

    #[test]
    fn flink_1_4_and_2_x_forms_agree() {
        let old = yaml(FLINK_1_4);
        let new = yaml(FLINK_2_NESTED);
        assert_eq!(old, new);
        assert_eq!(old.parallelism, Some(4));
        assert_eq!(old.checkpoint.interval_ms, Some(30_000));
        assert_eq!(old.checkpoint.dir.as_deref(), Some("/var/weir/checkpoints"));
        assert_eq!(old.checkpoint.savepoint_dir.as_deref(), Some("/var/weir/savepoints"));
        assert_eq!(old.state_backend, StateBackendKind::FileSystem);
        assert_eq!(old.restart, RestartStrategy::FixedDelay { attempts: 5, delay_ms: 10_000 });
    }

    #[test]
    fn nested_yaml_equals_flat_yaml_and_entries() {
        let flat = yaml(
            "execution.checkpointing.interval: 100 ms\n\
             execution.checkpointing.timeout: 1 min\n\
             weir.channel.capacity-batches: 4\n",
        );
        let nested = yaml(
            "execution:\n  checkpointing:\n    interval: 100 ms\n    timeout: 1 min\n\
             weir:\n  channel:\n    capacity-batches: 4\n",
        );
        let flow = yaml(
            "execution: {checkpointing: {interval: 100 ms, timeout: 1 min}}\n\
             weir.channel: {capacity-batches: 4}\n",
        );
        let entries = from_entries(
            vec![
                entry("execution.checkpointing.interval", s("100 ms")),
                entry("execution.checkpointing.timeout", s("1 min")),
                entry("weir.channel.capacity-batches", RawValue::Integer(4)),
            ],
            "job.toml",
        )
        .unwrap();
        assert_eq!(flat, nested);
        assert_eq!(flat, flow);
        assert_eq!(flat, entries);
        assert_eq!(flat.checkpoint.interval_ms, Some(100));
        assert_eq!(flat.channel_capacity_batches, 4);
    }

    #[test]
    fn durations_follow_flink_time_utils() {
        let ok: &[(RawValue, u64)] = &[
            (s("100 ms"), 100),
            (s("100ms"), 100),
            (s("  7  "), 7),
            (RawValue::Integer(250), 250),
            (RawValue::Integer(0), 0),
            (s("1s"), 1000),
            (s("2 sec"), 2000),
            (s("3 secs"), 3000),
            (s("1 second"), 1000),
            (s("2 seconds"), 2000),
            (s("10 min"), 600_000),
            (s("1m"), 60_000),
            (s("2 minutes"), 120_000),
            (s("2 h"), 7_200_000),
            (s("1 hour"), 3_600_000),
            (s("1 d"), 86_400_000),
            (s("2 days"), 172_800_000),
            (s("5 MS"), 5),
            (s("1 milli"), 1),
            (s("3 millis"), 3),
            (s("4 milliseconds"), 4),
            (s("1 ns"), 1),
            (s("1000000 ns"), 1),
            (s("1000001 ns"), 2),
            (s("1500 us"), 2),
            (s("2000 µs"), 2),
            (s("3 micros"), 1),
            (s("0 s"), 0),
            (s("18446744073709551615"), u64::MAX),
        ];
        for (raw, want) in ok {
            assert_eq!(parse_duration_ms(raw), Ok(*want), "{raw}");
        }
        let bad: &[(RawValue, &str)] = &[
            (s("abc"), DURATION_EXPECTED),
            (s(""), DURATION_EXPECTED),
            (s("ms"), DURATION_EXPECTED),
            (s("1.5 s"), DURATION_EXPECTED),
            (s("-1 s"), DURATION_EXPECTED),
            (s("10 fortnights"), DURATION_EXPECTED),
            (s("1 s 5 ms"), DURATION_EXPECTED),
            (RawValue::Integer(-1), DURATION_EXPECTED),
            (RawValue::Float(1.5), DURATION_EXPECTED),
            (RawValue::Bool(true), DURATION_EXPECTED),
            (s("99999999999999999999 d"), DURATION_OVERFLOW_EXPECTED),
            (s("18446744073709551616"), DURATION_OVERFLOW_EXPECTED),
            (s("213503982334601 d"), DURATION_OVERFLOW_EXPECTED),
            (s(&"9".repeat(60)), DURATION_OVERFLOW_EXPECTED),
        ];
        for (raw, want) in bad {
            assert_eq!(parse_duration_ms(raw), Err(want.to_string()), "{raw}");
        }
    }

    #[test]
    fn memory_sizes_follow_flink_memory_size() {
        let ok: &[(RawValue, u64)] = &[
            (RawValue::Integer(512), 512),
            (s("512"), 512),
            (s("512 b"), 512),
            (s("512bytes"), 512),
            (s("1k"), 1024),
            (s("20 KB"), 20 * 1024),
            (s("2 kibibytes"), 2048),
            (s("5m"), 5 << 20),
            (s("5 Mb"), 5 << 20),
            (s("1 mebibytes"), 1 << 20),
            (s("1g"), 1 << 30),
            (s("2 GB"), 2 << 30),
            (s("1 gibibytes"), 1 << 30),
            (s("1t"), 1 << 40),
            (s("1 tb"), 1 << 40),
            (s("1 tebibytes"), 1 << 40),
            (s("0"), 0),
        ];
        for (raw, want) in ok {
            assert_eq!(parse_memory_bytes(raw), Ok(*want), "{raw}");
        }
        let bad: &[(RawValue, &str)] = &[
            (s("lots"), MEMORY_EXPECTED),
            (s("1.5 mb"), MEMORY_EXPECTED),
            (s("1 kib"), MEMORY_EXPECTED),
            (s("1 pb"), MEMORY_EXPECTED),
            (RawValue::Integer(-1), MEMORY_EXPECTED),
            (RawValue::Float(2.0), MEMORY_EXPECTED),
            (s("16777216 tb"), MEMORY_OVERFLOW_EXPECTED),
            (s("99999999999999999999 b"), MEMORY_OVERFLOW_EXPECTED),
        ];
        for (raw, want) in bad {
            assert_eq!(parse_memory_bytes(raw), Err(want.to_string()), "{raw}");
        }
        assert_eq!(parse_memory_bytes(&s("16777215 tb")), Ok(16_777_215u64 << 40));
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(one("parallelism.default", s(" 8 ")).unwrap().parallelism, Some(8));
        assert_eq!(one("pipeline.max-parallelism", RawValue::Integer(32768)).unwrap().max_parallelism, Some(32768));
        let cases: &[(&str, RawValue, &str)] = &[
            ("parallelism.default", RawValue::Integer(0), "an integer from 1 to 2048"),
            ("parallelism.default", s("-2"), "an integer from 1 to 2048"),
            ("parallelism.default", RawValue::Float(2.0), "an integer from 1 to 2048"),
            ("parallelism.default", s("2049"), "an integer from 1 to 2048"),
            ("pipeline.max-parallelism", RawValue::Integer(0), "an integer from 1 to 32768"),
            ("pipeline.max-parallelism", s("32769"), "an integer from 1 to 32768"),
            ("execution.checkpointing.max-concurrent-checkpoints", s("0"), "an integer from 1 to 2147483647"),
            ("execution.checkpointing.num-retained", RawValue::Integer(0), "an integer from 1 to 1000"),
            ("execution.checkpointing.num-retained", RawValue::Integer(1001), "an integer from 1 to 1000"),
            ("weir.channel.capacity-batches", RawValue::Integer(0), "an integer from 1 to 1024"),
            ("weir.channel.capacity-batches", RawValue::Integer(1025), "an integer from 1 to 1024"),
            ("weir.channel.batch-size-records", s("0"), "an integer from 1 to 65536"),
            ("weir.channel.batch-size-records", s("4294967295"), "an integer from 1 to 65536"),
            ("weir.channel.batch-size-records", s("99999999999999999999"), "an integer from 1 to 65536"),
            ("restart-strategy.fixed-delay.attempts", RawValue::Integer(-1), "an integer from 0 to 2147483647"),
            (
                "execution.checkpointing.tolerable-failed-checkpoints",
                RawValue::Bool(true),
                "an integer from 0 to 2147483647",
            ),
        ];
        for (key, raw, expected) in cases {
            match one(key, raw.clone()) {
                Err(ConfigError::InvalidValue { expected: got, key: k, .. }) => {
                    assert_eq!(&got, expected, "{key}: {raw}");
                    assert_eq!(&k, key);
                }
                other => panic!("{key}: {raw} gave {other:?}"),
            }
        }
        // A YAML integer too big for i64 is still reported as the digits the user wrote.
        assert_eq!(
            yaml_err("weir.channel.batch-size-records: 18446744073709551615\n"),
            "flink-conf.yaml:1: invalid value `18446744073709551615` for \
             `weir.channel.batch-size-records`: expected an integer from 1 to 65536"
        );
        // The largest values are accepted.
        assert_eq!(one("weir.channel.batch-size-records", s("65536")).unwrap().batch_size_records, 65536);
        assert_eq!(one("parallelism.default", s("2048")).unwrap().parallelism, Some(2048));
    }

    #[test]
    fn a_batch_size_that_would_not_fit_in_memory_is_an_error_naming_file_line_key_and_range() {
        assert_eq!(
            yaml_err("parallelism.default: 2\nweir.channel.batch-size-records: 4294967295\n"),
            "flink-conf.yaml:2: invalid value `4294967295` for `weir.channel.batch-size-records`: \
             expected an integer from 1 to 65536"
        );
    }

    #[test]
    fn memory_sizes_are_range_checked() {
        assert_eq!(
            yaml_err("state.backend.fs.memory-threshold: 2 mb\n"),
            "flink-conf.yaml:1: invalid value `2 mb` for `state.backend.fs.memory-threshold`: \
             expected a memory size from 0 b to 1 mb"
        );
        assert_eq!(
            yaml_err("weir.state.jobmanager.max-state-size: 0\n"),
            "flink-conf.yaml:1: invalid value `0` for `weir.state.jobmanager.max-state-size`: \
             expected a memory size from 1 b to 1 gb"
        );
        assert_eq!(yaml("state.backend.fs.memory-threshold: 1 mb\n").checkpoint.inline_threshold_bytes, 1 << 20);
        assert_eq!(
            yaml_err("state.backend.rocksdb.memory.fixed-per-slot: 1 kb\n"),
            "flink-conf.yaml:1: invalid value `1 kb` for `state.backend.rocksdb.memory.fixed-per-slot`: \
             expected a memory size from 64 kb to 1024 gb"
        );
        assert_eq!(
            yaml_err("state.backend.incremental: sometimes\n"),
            "flink-conf.yaml:1: invalid value `sometimes` for `state.backend.incremental`: expected `true` or `false`"
        );
        assert_eq!(show_size(20 * 1024), "20 kb");
        assert_eq!(show_size(1000), "1000 b");
    }

    #[test]
    fn a_directory_with_another_scheme_than_file_is_an_error_naming_the_scheme() {
        assert_eq!(
            yaml_err("state.checkpoints.dir: s3://bucket/x\n"),
            "flink-conf.yaml:1: invalid value `s3://bucket/x` for `state.checkpoints.dir`: expected a \
             non-empty local path or `file:///` URI: the `s3://` scheme is not supported (weir reads and \
             writes local files only)"
        );
        assert!(yaml_err("state.savepoints.dir: hdfs://nn:8020/sp\n").contains("the `hdfs://` scheme"));
        assert_eq!(yaml("state.checkpoints.dir: FILE:///data/cp\n").checkpoint.dir.as_deref(), Some("/data/cp"));
    }

    #[test]
    fn keeping_checkpoints_on_cancellation_needs_a_checkpoint_directory() {
        for retention in ["RETAIN_ON_CANCELLATION", "DELETE_ON_CANCELLATION"] {
            let text = format!(
                "execution.checkpointing.interval: 1 s\n\
                 execution.checkpointing.externalized-checkpoint-retention: {retention}\n"
            );
            assert_eq!(
                yaml_err(&text),
                format!(
                    "flink-conf.yaml:2: `execution.checkpointing.externalized-checkpoint-retention: {retention}` \
                     cannot be honoured: externalized checkpoints are written to the checkpoint directory, but \
                     none is set (`execution.checkpointing.dir`, or Flink 1.x's `state.checkpoints.dir`)"
                )
            );
            yaml(&format!("{text}state.checkpoints.dir: /cp\n"));
        }
        yaml("execution.checkpointing.externalized-checkpoint-retention: NO_EXTERNALIZED_CHECKPOINTS\n");
        // Entries from another format may leave the directory to their caller.
        one("execution.checkpointing.externalized-checkpoint-retention", s("RETAIN_ON_CANCELLATION")).unwrap();
    }

    #[test]
    fn durations_that_must_be_positive() {
        for key in ["execution.checkpointing.interval", "execution.checkpointing.timeout"] {
            match one(key, s("0 ms")) {
                Err(ConfigError::InvalidValue { expected, .. }) => {
                    assert_eq!(expected, POSITIVE_DURATION_EXPECTED);
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        // Half a millisecond is rounded up, so it does not turn checkpointing into a zero interval.
        assert_eq!(one("execution.checkpointing.interval", s("500 us")).unwrap().checkpoint.interval_ms, Some(1));
        assert_eq!(one("execution.checkpointing.min-pause", RawValue::Integer(0)).unwrap().checkpoint.min_pause_ms, 0);
    }

    #[test]
    fn paths_strip_file_scheme() {
        let dir = |v: &str| one("state.checkpoints.dir", s(v)).map(|c| c.checkpoint.dir);
        assert_eq!(dir("file:///data/cp"), Ok(Some("/data/cp".to_string())));
        assert_eq!(dir("relative/cp"), Ok(Some("relative/cp".to_string())));
        assert_eq!(dir(" /data/cp "), Ok(Some("/data/cp".to_string())));
        for bad in ["", "   ", "file://", "file://otherhost/cp"] {
            match dir(bad) {
                Err(ConfigError::InvalidValue { expected, .. }) => {
                    assert_eq!(expected, PATH_EXPECTED)
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // YAML reads a bare number as an integer, but a directory name is meant.
        assert_eq!(yaml("state.savepoints.dir: 2024\n").checkpoint.savepoint_dir.as_deref(), Some("2024"));
    }

    #[test]
    fn enumerations_are_case_and_dash_insensitive() {
        let mode = |v: &str| one("execution.checkpointing.mode", s(v)).map(|c| c.checkpoint.mode);
        assert_eq!(mode("EXACTLY_ONCE"), Ok(CheckpointingMode::ExactlyOnce));
        assert_eq!(mode("exactly-once"), Ok(CheckpointingMode::ExactlyOnce));
        assert_eq!(mode("At_Least-Once"), Ok(CheckpointingMode::AtLeastOnce));
        assert!(mode("twice").is_err());
        let retention = |v: &str| {
            one("execution.checkpointing.externalized-checkpoint-retention", s(v)).map(|c| c.checkpoint.externalized)
        };
        assert_eq!(retention("DELETE_ON_CANCELLATION"), Ok(ExternalizedRetention::DeleteOnCancellation));
        assert_eq!(retention("no-externalized-checkpoints"), Ok(ExternalizedRetention::NoExternalizedCheckpoints));
        let restart = |v: &str| {
            from_entries(
                vec![entry("execution.checkpointing.interval", s("1 s")), entry("restart-strategy", s(v))],
                "job.toml",
            )
            .map(|c| c.restart)
        };
        for off in ["none", "off", "disable", "NONE", "Off"] {
            assert_eq!(restart(off), Ok(RestartStrategy::None), "{off}");
        }
        assert_eq!(
            restart("exponential-delay").unwrap_err().to_string(),
            "job.toml: invalid value `exponential-delay` for `restart-strategy`: expected one of \
             `none`, `off`, `disable`, `fixed-delay` or `fixeddelay` (weir has no other restart strategy)"
        );
    }

    #[test]
    fn restart_defaults_follow_checkpointing() {
        assert_eq!(yaml("parallelism.default: 2\n").restart, RestartStrategy::None);
        assert_eq!(
            yaml("execution.checkpointing.interval: 1 s\n").restart,
            RestartStrategy::FixedDelay { attempts: i32::MAX as u32, delay_ms: 1000 }
        );
        assert_eq!(
            yaml("execution.checkpointing.interval: 1 s\nrestart-strategy: none\n").restart,
            RestartStrategy::None
        );
        // Choosing fixed-delay without attempts gets Flink's one attempt, not the implied forever.
        assert_eq!(
            yaml("execution.checkpointing.interval: 1 s\nrestart-strategy.type: fixed-delay\n").restart,
            RestartStrategy::FixedDelay { attempts: 1, delay_ms: 1000 }
        );
        assert_eq!(
            yaml("restart-strategy: fixed-delay\n").restart,
            RestartStrategy::FixedDelay { attempts: 1, delay_ms: 1000 }
        );
    }

    #[test]
    fn backend_mapping_with_hashmap_and_storage() {
        let backend = |text: &str| yaml(text).state_backend;
        use StateBackendKind::*;
        assert_eq!(backend(""), JobManager);
        assert_eq!(backend("state.backend: jobmanager\n"), JobManager);
        assert_eq!(backend("state.backend: filesystem\n"), FileSystem);
        assert_eq!(backend("state.backend: rocksdb\n"), Embedded);
        assert_eq!(backend("state.backend.type: embedded\n"), Embedded);
        assert_eq!(backend("state.backend.type: hashmap\n"), JobManager);
        assert_eq!(backend("state.backend.type: hashmap\nexecution.checkpointing.storage: filesystem\n"), FileSystem);
        assert_eq!(backend("state.backend.type: hashmap\nexecution.checkpointing.storage: jobmanager\n"), JobManager);
        assert_eq!(backend("state.backend.type: hashmap\nexecution.checkpointing.dir: /cp\n"), FileSystem);
        assert_eq!(
            backend(
                "state.backend.type: hashmap\nexecution.checkpointing.dir: /cp\n\
                 execution.checkpointing.storage: jobmanager\n"
            ),
            JobManager
        );
        // No backend key means Flink's default `hashmap`, so storage and directory still count.
        assert_eq!(backend("execution.checkpointing.storage: filesystem\n"), FileSystem);
        assert_eq!(backend("state.checkpoints.dir: /cp\n"), FileSystem);
        // Flink 1.x's named backends bring their own storage, as Flink's loader lets them.
        assert_eq!(backend("state.backend: jobmanager\nexecution.checkpointing.dir: /cp\n"), JobManager);
        assert_eq!(backend("state.backend: rocksdb\nexecution.checkpointing.storage: jobmanager\n"), Embedded);
        // Two spellings that end in the same backend are not a conflict.
        assert_eq!(
            backend(
                "state.backend: filesystem\nstate.backend.type: hashmap\n\
                 execution.checkpointing.storage: filesystem\n"
            ),
            FileSystem
        );
        assert_eq!(
            yaml_err("state.backend: filesystem\nstate.backend.type: hashmap\n"),
            "flink-conf.yaml: `state.backend` and `state.backend.type` set the same option to different values"
        );
    }

    #[test]
    fn conflicting_aliases_are_reported() {
        assert_eq!(
            yaml_err(
                "state.checkpoints.dir: /a\n\
                 execution.checkpointing.dir: /b\n"
            ),
            "flink-conf.yaml: `state.checkpoints.dir` and `execution.checkpointing.dir` set the \
             same option to different values"
        );
        // Equal values through two spellings agree, even when written differently.
        let config = yaml(
            "state.checkpoints.dir: file:///a\n\
             execution.checkpointing.dir: /a\n\
             restart-strategy: fixeddelay\n\
             restart-strategy.type: FIXED_DELAY\n",
        );
        assert_eq!(config.checkpoint.dir.as_deref(), Some("/a"));
        let err = from_entries(
            vec![entry("parallelism.default", RawValue::Integer(2)), entry("parallelism.default", s("3"))],
            "job.toml",
        )
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::Conflict {
                origin: "job.toml".to_string(),
                key: "parallelism.default".to_string(),
                other_key: "parallelism.default".to_string(),
            }
        );
        assert_eq!(err.to_string(), "job.toml: `parallelism.default` is given twice with different values");
        // A flat key and a nested one can spell the same key in one YAML file.
        assert_eq!(
            yaml_err("execution.checkpointing.interval: 1 s\nexecution:\n  checkpointing:\n    interval: 2 s\n"),
            "flink-conf.yaml: `execution.checkpointing.interval` is given twice with different values"
        );
    }

    #[test]
    fn unknown_key_message_and_suggestion() {
        let text = "parallelism.default: 2\n\n# comment\nexecution.checkpointing.intervall: 1 s\n";
        assert_eq!(
            parse_yaml(text, ORIGIN),
            Err(ConfigError::UnknownKey {
                origin: ORIGIN.to_string(),
                line: Some(4),
                key: "execution.checkpointing.intervall".to_string(),
                suggestion: Some("execution.checkpointing.interval".to_string()),
            })
        );
        assert_eq!(
            yaml_err("parallelism.default: 2\n\nexecution.checkpointing.intervall: 1 s\n"),
            "flink-conf.yaml:3: unknown configuration key `execution.checkpointing.intervall` \
             (did you mean `execution.checkpointing.interval`?)"
        );
        assert_eq!(
            one("taskmanager.numberOfTaskSlots", RawValue::Integer(2)).unwrap_err().to_string(),
            "job.toml: unknown configuration key `taskmanager.numberOfTaskSlots`"
        );
        // Aliases are suggested too, since a user of Flink 1.x types Flink 1.x keys.
        assert_eq!(suggest("state.checkpoint.dir").as_deref(), Some("state.checkpoints.dir"));
        assert_eq!(suggest("restart-strategy.typ").as_deref(), Some("restart-strategy.type"));
        assert_eq!(suggest("completely.different"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn invalid_value_message() {
        let text = "parallelism.default: 2\n\n\n\nexecution.checkpointing.timeout: abc\n";
        assert_eq!(
            yaml_err(text),
            "flink-conf.yaml:5: invalid value `abc` for `execution.checkpointing.timeout`: \
             expected a duration such as `10 min` or `500 ms`"
        );
        let err = from_entries(
            vec![ConfigEntry { key: "execution.checkpointing.timeout".to_string(), value: s("abc"), line: Some(12) }],
            "scenario.toml",
        )
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::InvalidValue {
                origin: "scenario.toml".to_string(),
                line: Some(12),
                key: "execution.checkpointing.timeout".to_string(),
                value: "abc".to_string(),
                expected: DURATION_EXPECTED.to_string(),
            }
        );
        assert_eq!(
            one("execution.checkpointing.timeout", s("abc")).unwrap_err().to_string(),
            "job.toml: invalid value `abc` for `execution.checkpointing.timeout`: \
             expected a duration such as `10 min` or `500 ms`"
        );
        assert_eq!(
            one("execution.checkpointing.interval", s("99999999999999999999 d")).unwrap_err().to_string(),
            "job.toml: invalid value `99999999999999999999 d` for `execution.checkpointing.interval`: \
             expected a duration of at most 18446744073709551615 ms"
        );
    }

    #[test]
    fn non_scalar_values_are_invalid() {
        assert_eq!(
            yaml_err("parallelism.default:\n  - 1\n  - 2\n"),
            "flink-conf.yaml:1: invalid value `[1, 2]` for `parallelism.default`: expected an integer from 1 to 2048"
        );
        assert_eq!(
            yaml_err("state.checkpoints.dir: [a]\n"),
            "flink-conf.yaml:1: invalid value `[a]` for `state.checkpoints.dir`: \
             expected a non-empty local path or `file:///` URI"
        );
        assert_eq!(
            yaml_err("execution.checkpointing.mode:\n"),
            "flink-conf.yaml:1: invalid value `null` for `execution.checkpointing.mode`: \
             expected one of `EXACTLY_ONCE` or `AT_LEAST_ONCE`"
        );
        assert_eq!(
            yaml_err("execution.checkpointing.interval: !custom 5\n"),
            "flink-conf.yaml:1: invalid value `!custom 5` for `execution.checkpointing.interval`: \
             expected a duration such as `10 min` or `500 ms`"
        );
        assert_eq!(
            yaml_err("weir.channel.capacity-batches: 2.5\n"),
            "flink-conf.yaml:1: invalid value `2.5` for `weir.channel.capacity-batches`: expected an integer from 1 to 1024"
        );
    }

    #[test]
    fn yaml_errors_are_one_line_with_position() {
        let err = parse_yaml("parallelism.default: [1\n", ORIGIN).unwrap_err();
        assert!(matches!(err, ConfigError::Yaml { .. }));
        assert_eq!(
            err.to_string(),
            "flink-conf.yaml: invalid YAML: did not find expected ',' or ']' at line 2 column 1, \
             while parsing a flow sequence at line 1 column 22"
        );
        assert_eq!(
            yaml_err("parallelism.default: 1\nparallelism.default: 2\n"),
            "flink-conf.yaml: invalid YAML: duplicate key `parallelism.default` at line 2 (first given at line 1)"
        );
        assert_eq!(
            yaml_err("# c\n\nweir.channel.capacity-batches: 1\nparallelism.default: 1\nparallelism.default: 2\n"),
            "flink-conf.yaml: invalid YAML: duplicate key `parallelism.default` at line 5 (first given at line 4)"
        );
        assert_eq!(
            yaml_err("execution:\n  checkpointing:\n    interval: 1 s\n    timeout: 1 s\n    interval: 2 s\n"),
            "flink-conf.yaml: invalid YAML: duplicate key `execution.checkpointing.interval` at line 5 \
             (first given at line 3)"
        );
        // A duplicate inside a flow mapping falls back to serde_yaml_ng's own words and position.
        let flow = yaml_err("{a: 1, a: 2}\n");
        assert!(flow.starts_with("flink-conf.yaml: invalid YAML: duplicate entry with key \"a\""), "{flow}");
        assert!(flow.contains("line 1"), "{flow}");
        assert_eq!(
            yaml_err("a: 1\n---\nb: 2\n"),
            "flink-conf.yaml: invalid YAML: deserializing from YAML containing more than one document is not supported"
        );
        for e in [flow, yaml_err("a: 'x\n")] {
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn top_level_must_be_a_mapping() {
        for text in ["- 1\n- 2\n", "just text\n", "42\n"] {
            assert_eq!(parse_yaml(text, ORIGIN), Err(ConfigError::NotAMapping { origin: ORIGIN.to_string() }));
        }
        assert_eq!(
            yaml_err("- a\n"),
            "flink-conf.yaml: the top level must be a mapping from configuration keys to values"
        );
    }

    #[test]
    fn first_problem_in_document_order_is_reported() {
        let text = "weir.channel.capacity-batches: 0\nbogus.key: 1\nparallelism.default: x\n";
        assert!(matches!(parse_yaml(text, ORIGIN), Err(ConfigError::InvalidValue { line: Some(1), .. })));
        let text = "zzz.key: 1\nweir.channel.capacity-batches: 0\n";
        assert!(matches!(parse_yaml(text, ORIGIN), Err(ConfigError::UnknownKey { line: Some(1), .. })));
    }

    #[test]
    fn nested_keys_get_their_own_lines() {
        let text = "\
execution:
  checkpointing:
    dir: /cp
    interval: 1 s
  interval: 5
";
        assert_eq!(yaml_err(text), "flink-conf.yaml:5: unknown configuration key `execution.interval`");
        let text = "\
state:
  backend:
    type: hashmap
execution:
  checkpointing:
    mode: sometimes
";
        assert_eq!(
            yaml_err(text),
            "flink-conf.yaml:6: invalid value `sometimes` for `execution.checkpointing.mode`: \
             expected one of `EXACTLY_ONCE` or `AT_LEAST_ONCE`"
        );
        let text = "weir.channel.capacity-batches: 2\nexecution: {checkpointing: {timeout: 0 s}}\n";
        assert!(matches!(parse_yaml(text, ORIGIN), Err(ConfigError::InvalidValue { line: Some(2), .. })));
        let text = "\"parallelism.default\": 0\n";
        assert!(matches!(parse_yaml(text, ORIGIN), Err(ConfigError::InvalidValue { line: Some(1), .. })));
        // A key whose value is a mapping of unknowns is reported at the unknown inner key.
        let text = "parallelism.default: 1\nexecution.checkpointing.interval:\n  every: 1 s\n";
        assert_eq!(
            yaml_err(text),
            "flink-conf.yaml:3: unknown configuration key `execution.checkpointing.interval.every`"
        );
    }

    #[test]
    fn odd_input_gives_errors_not_panics() {
        let inputs = [
            "ä: 1\n",
            "execution:\n  ä: {µ: 1}\n",
            "\"µs\": [1, {a: b}]\n",
            "? [a, b]\n: 1\n",
            "~: 1\n",
            "1: 2\n",
            "execution: {checkpointing:\n   {interval: 1 s}}\nbad: 1\n",
            "---\nexecution:\n\tinterval: 1\n",
            "x: &a 1\ny: *a\n",
            "   \n  execution.checkpointing.interval: 1 s\n  bogus: 1\n",
            "execution.checkpointing.interval: 1 µs\n",
            "parallelism.default: 1 # trailing comment\nbogus:  # nothing\n",
        ];
        for text in inputs {
            if let Err(e) = parse_yaml(text, ORIGIN) {
                assert!(!e.to_string().contains('\n'), "{text:?}: {e}");
            }
        }
        assert_eq!(
            yaml_err("parallelism.default: 1 # why\nbogus:  # nothing\n"),
            "flink-conf.yaml:2: unknown configuration key `bogus`"
        );
        assert_eq!(
            yaml_err("   \n  parallelism.default: 1\n  bogus: 1\n"),
            "flink-conf.yaml:3: unknown configuration key `bogus`"
        );
    }

    #[test]
    fn key_table_is_consistent() {
        let mut seen = Vec::new();
        for info in known_keys() {
            for key in std::iter::once(&info.key).chain(info.aliases.iter()) {
                assert!(!seen.contains(key), "`{key}` listed twice");
                seen.push(key);
                assert_eq!(lookup(key).map(|i| i.setting), Some(info.setting));
            }
            assert!(!info.value_type.is_empty() && !info.default.is_empty() && info.meaning.ends_with('.'));
        }
        assert_eq!(known_keys().len(), 24);
    }
}
