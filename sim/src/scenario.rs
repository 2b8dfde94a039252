//! Scenario files: a simulation test as data. A TOML file names a job and its parameters,
//! the cluster, the configuration (Flink's keys), the faults, full-job restarts from
//! externalized checkpoints, the healing bound and the invariants to check.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere): a misspelt key is an error naming
//! the file, the line and the key, never an option silently ignored. A file that parses is
//! then validated (references to nodes, phases, rates), again with the file and line.

use crate::points::{PointAction, PointName};
use crate::workload::{Prepared, Registry, WorkloadEnv};
use engine::config::{self, ConfigEntry, JobConfig, RawValue};
use engine::faults::{CheckpointPhase, RpcKind, SnapshotClass};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A scenario file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario `{path}`: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Invalid { path: PathBuf, line: usize, message: String },
    /// A `[config]` entry: the configuration reader names the file, the line and the key.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// A parsed, validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub path: PathBuf,
    pub file: ScenarioFile,
    /// The job configuration, from `[config]` (Flink's keys).
    pub config: JobConfig,
    /// The workload `[job]` names, with its parameters checked.
    pub workload: Arc<dyn Prepared>,
    /// The configuration of the job each `[[restart]]` starts: `config` with the restart's `config` on top.
    pub restart_configs: Vec<JobConfig>,
}

impl Scenario {
    pub fn name(&self) -> &str {
        &self.file.name
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    pub about: String,
    pub job: JobSpec,
    /// Flink configuration keys and values, as in a `flink-conf.yaml`.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Faults drawn per seed (swarm testing), on top of `faults`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<crate::swarm::SwarmSpec>,
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
    /// Whole-job crashes or cancels, each followed by a new job started from the latest
    /// externalized checkpoint (what `weir run -s` does).
    #[serde(default, rename = "restart")]
    pub restarts: Vec<RestartSpec>,
    /// Savepoints taken while the job keeps running (`weir savepoint`).
    #[serde(default, rename = "savepoint")]
    pub savepoints: Vec<SavepointSpec>,
    pub healing: HealingSpec,
    pub checks: ChecksSpec,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The workload: a built-in job (`sequence`, `wordcount`, `keyed-sum`), a canary, or one a user registered.
    pub name: String,
    /// The workload's parameters, checked by the workload.
    #[serde(default)]
    pub params: toml::Table,
    pub parallelism: u32,
    pub task_managers: u32,
}

/// When a scripted fault fires: at a simulated time, when checkpoint `n` reaches a phase, when the first
/// snapshot of a class (`stop`, `savepoint`, `final`, `checkpoint`) reaches a phase, or `at` after the first time
/// an event happened (`after`). With a phase, `at` is an offset from it: `{ checkpoint = 3, phase = "completed",
/// at = "4 ms" }` fires 4 ms after checkpoint 3 completed, while its sinks commit.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default, deserialize_with = "duration_opt", serialize_with = "duration_opt_out")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CheckpointPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<SnapshotClass>,
    /// `at` counts from the first time this happened, not from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Event>,
}

/// Something a fault's time can count from.
#[derive(Copy, Clone, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A user's savepoint completed.
    Savepoint,
    /// A stop-with-savepoint's savepoint completed.
    Stop,
    /// The final checkpoint was triggered (every source reached the end of its data).
    Final,
    /// A deployment restored state from a snapshot.
    Restore,
    /// The job failed and is about to be redeployed.
    Failover,
}

/// Where a fault at a fault point applies: a node, an operator's subtask, a checkpoint, a snapshot class, an output
/// channel, and a window of simulated time. Everything left out matches anything.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeName>,
    /// An operator's uid: the point must concern one of its subtasks (`subtask`, or any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<SnapshotClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u32>,
    #[serde(default, deserialize_with = "duration_opt", serialize_with = "duration_opt_out")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt", serialize_with = "duration_opt_out")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Duration>,
    /// The vertex `operator` runs in, resolved from the job graph when the scenario is loaded.
    #[serde(skip)]
    pub vertex: Option<u32>,
}

/// A storage volume, as faults name it: `dfs` (the shared storage: checkpoints, savepoints, input and output
/// together), one of them (`checkpoints`, `savepoints`, `input`, `output`), `local` (every task manager's local
/// disk) or one task manager's disk (`tm-<n>`).
pub type VolumeName = String;

fn dfs() -> VolumeName {
    "dfs".to_string()
}

fn is_dfs(volume: &VolumeName) -> bool {
    volume == "dfs"
}

impl When {
    /// Whether snapshot `id` of `class` reaching `phase` is this moment.
    pub fn matches(&self, id: u64, class: SnapshotClass, phase: CheckpointPhase) -> bool {
        self.phase == Some(phase)
            && self.checkpoint.is_none_or(|n| n == id)
            && self.class.is_none_or(|c| c == class)
            && (self.checkpoint.is_some() || self.class.is_some())
    }
}

/// The `when` of a [`FaultSpec`], by reference or by mutable reference: one list of the kinds that have one.
macro_rules! when_of {
    ($fault:expr) => {
        match $fault {
            FaultSpec::CrashTaskManager { when, .. }
            | FaultSpec::FailSubtask { when, .. }
            | FaultSpec::CrashJobManager { when, .. }
            | FaultSpec::PauseNode { when, .. }
            | FaultSpec::StorageStall { when, .. }
            | FaultSpec::StorageFull { when, .. }
            | FaultSpec::SlowStorage { when, .. }
            | FaultSpec::StorageCrash { when, .. }
            | FaultSpec::PartitionNode { when, .. } => Some(when),
            FaultSpec::AtPoint { .. }
            | FaultSpec::DelayBarriers { .. }
            | FaultSpec::DropRpc { .. }
            | FaultSpec::DelayRpc { .. }
            | FaultSpec::StallSnapshot { .. }
            | FaultSpec::StorageErrors { .. } => None,
        }
    };
}

impl FaultSpec {
    /// When a scripted fault fires; `None` for the kinds that fire at a fault point or at a rate.
    pub fn when(&self) -> Option<&When> {
        when_of!(self)
    }

    /// [`FaultSpec::when`], to change.
    pub fn when_mut(&mut self) -> Option<&mut When> {
        when_of!(self)
    }
}

/// A node: `jm`, `tm-<n>`, or `random` (a task manager drawn from the seed).
pub type NodeName = String;

/// One fault. Scripted ones fire once (`when`); random ones fire at `rate` per opportunity
/// during the faults phase.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// A fault at one of the engine's fault points (`point`, see `sim/src/points.rs`): `action` there, the `nth`
    /// time the point is reached within `scope` (scripted, once), or with probability `rate` each time (random).
    AtPoint {
        point: PointName,
        action: PointAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nth: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<f64>,
        /// How long a `delay` waits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay: Option<DurationRange>,
        /// When a crashed node restarts (default 1 s).
        #[serde(default, deserialize_with = "duration_opt", serialize_with = "duration_opt_out")]
        #[serde(skip_serializing_if = "Option::is_none")]
        restart_after: Option<Duration>,
        #[serde(default, skip_serializing_if = "scope_is_empty")]
        scope: Scope,
    },
    /// Stop the world on a node (`jm`, `tm-<n>`, `random`): none of its tasks runs for `duration`, while time goes
    /// on elsewhere (a long GC pause, a VM migration).
    PauseNode {
        node: NodeName,
        when: When,
        #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
        duration: Duration,
    },
    /// Every operation on `volume` hangs from `when` for `duration`, then goes on (a storage stall).
    StorageStall {
        #[serde(default = "dfs", skip_serializing_if = "is_dfs")]
        volume: VolumeName,
        when: When,
        #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
        duration: Duration,
    },
    /// Kill a task manager (its subtasks die with it) and restart it after a while.
    CrashTaskManager {
        node: NodeName,
        when: When,
        #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
        restart_after: Duration,
    },
    /// Fail one subtask (an operator error, not a node crash): the subtask of `operator` numbered `subtask` fails at
    /// its next batch after `when`.
    FailSubtask {
        /// An operator's uid: the subtask that runs it fails.
        operator: String,
        subtask: u32,
        when: When,
        /// The vertex `operator` runs in, resolved from the job graph when the scenario is loaded.
        #[serde(skip)]
        vertex: Option<u32>,
    },
    /// Kill the job manager and restart it after a while; it recovers its jobs.
    CrashJobManager {
        when: When,
        #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
        restart_after: Duration,
    },
    /// Hold barriers on output channels: each barrier, on each channel, with probability
    /// `rate`, for a duration drawn from `delay`.
    DelayBarriers { rate: f64, delay: DurationRange },
    /// Lose RPC messages of one kind (or `any`) with probability `rate`.
    DropRpc { message: RpcSelector, rate: f64 },
    /// Delay RPC messages of one kind (or `any`) with probability `rate`.
    DelayRpc { message: RpcSelector, rate: f64, delay: DurationRange },
    /// Stall the asynchronous part of snapshots with probability `rate`.
    StallSnapshot { rate: f64, delay: DurationRange },
    /// Seeded IO errors on write, fsync and read on `volume` (default: the shared storage), within `from ..
    /// until` of simulated time if given (else during the whole faults phase).
    StorageErrors {
        #[serde(default)]
        write_rate: f64,
        #[serde(default)]
        fsync_rate: f64,
        #[serde(default)]
        read_rate: f64,
        #[serde(default = "dfs", skip_serializing_if = "is_dfs")]
        volume: VolumeName,
        #[serde(default, deserialize_with = "duration_opt", serialize_with = "duration_opt_out")]
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<Duration>,
        #[serde(default, deserialize_with = "duration_opt", serialize_with = "duration_opt_out")]
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<Duration>,
    },
    /// `volume` is full (every write fails) from `when` for `duration`.
    StorageFull {
        when: When,
        #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
        duration: Duration,
        #[serde(default = "dfs", skip_serializing_if = "is_dfs")]
        volume: VolumeName,
    },
    /// Every operation on `volume` takes a duration drawn from `latency`, from `when` on; with `persists`, also
    /// after the faults phase (a disk that stays slow: the healing bound must allow for it).
    SlowStorage {
        when: When,
        latency: DurationRange,
        #[serde(default = "dfs", skip_serializing_if = "is_dfs")]
        volume: VolumeName,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        persists: bool,
    },
    /// `volume` (default: the shared storage) loses power: unsynced writes and renames are lost, as the crash
    /// model decides.
    StorageCrash {
        when: When,
        #[serde(default = "dfs", skip_serializing_if = "is_dfs")]
        volume: VolumeName,
    },
    /// Cut a task manager off: RPCs to and from its subtasks are lost for `duration`.
    PartitionNode {
        node: NodeName,
        when: When,
        #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
        duration: Duration,
    },
}

/// Which RPC messages a fault applies to.
#[derive(Copy, Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RpcSelector {
    Any,
    Trigger,
    Notify,
    Abort,
    Finish,
    Ack,
    Decline,
    EndOfData,
}

impl RpcSelector {
    pub fn matches(self, kind: RpcKind) -> bool {
        matches!(
            (self, kind),
            (RpcSelector::Any, _)
                | (RpcSelector::Trigger, RpcKind::Trigger)
                | (RpcSelector::Notify, RpcKind::Notify)
                | (RpcSelector::Abort, RpcKind::Abort)
                | (RpcSelector::Finish, RpcKind::Finish)
                | (RpcSelector::Ack, RpcKind::Ack)
                | (RpcSelector::Decline, RpcKind::Decline)
                | (RpcSelector::EndOfData, RpcKind::EndOfData)
        )
    }
}

/// `"50..800 ms"`: a range of durations, drawn uniformly; or one duration.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl Serialize for DurationRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = if self.min == self.max {
            format_duration(self.min)
        } else {
            format!("{}..{} ms", self.min.as_millis(), self.max.as_millis())
        };
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for DurationRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_range(&text).map_err(serde::de::Error::custom)
    }
}

fn parse_range(text: &str) -> Result<DurationRange, String> {
    let expected = || format!("expected a duration or a range such as `50..800 ms`, got `{text}`");
    match text.split_once("..") {
        None => {
            let d = config::parse_duration(text).map_err(|_| expected())?;
            Ok(DurationRange { min: d, max: d })
        }
        Some((low, high)) => {
            // The unit may be written once, after the upper bound.
            let unit: String = high.trim().trim_start_matches(|c: char| c.is_ascii_digit()).to_string();
            let low = if low.trim().chars().all(|c| c.is_ascii_digit()) {
                format!("{}{unit}", low.trim())
            } else {
                low.to_string()
            };
            let min = config::parse_duration(&low).map_err(|_| expected())?;
            let max = config::parse_duration(high).map_err(|_| expected())?;
            if min > max {
                return Err(format!("the range `{text}` is empty"));
            }
            Ok(DurationRange { min, max })
        }
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    config::parse_duration(&text)
        .map_err(|_| serde::de::Error::custom(format!("expected a duration such as `500 ms`, got `{text}`")))
}

fn duration_opt<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// A duration as scenario files write it: `250 ms`, `2 s`.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) && ms > 0 { format!("{} s", ms / 1000) } else { format!("{ms} ms") }
}

fn duration_out<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*duration))
}

fn duration_opt_out<S: serde::Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => duration_out(duration, serializer),
        None => serializer.serialize_none(),
    }
}

fn scope_is_empty(scope: &Scope) -> bool {
    *scope == Scope::default()
}

/// A whole-job restart: at `at` after the job started, `cancel` it (Ctrl-C), `crash` it
/// (every node dies, as with `kill -9`) or `stop_with_savepoint`, then start a new job from
/// the latest externalized checkpoint (or the savepoint), possibly at another parallelism,
/// with another backend, after moving what it restores from elsewhere.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSpec {
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub at: Duration,
    pub how: RestartHow,
    /// Which snapshot the new job starts from (default: the newest, checkpoint or savepoint).
    #[serde(default, skip_serializing_if = "RestartFrom::is_newest")]
    pub from: RestartFrom,
    /// The new job's parallelism (default: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// The new job's state backend, `jobmanager` or `filesystem` (default: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Move the checkpoint or savepoint directory elsewhere before restoring from it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relocate: bool,
    /// Configuration the new job changes (Flink's keys, as in `[config]`), on top of the scenario's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, toml::Value>,
}

/// The snapshot a whole-job restart resumes from.
#[derive(Copy, Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RestartFrom {
    /// The newest snapshot, checkpoint or savepoint (what a user resuming after a crash picks).
    #[default]
    Newest,
    /// The newest retained checkpoint, ignoring savepoints.
    NewestCheckpoint,
    /// The oldest retained checkpoint (a user rolling back).
    OldestCheckpoint,
    /// The newest savepoint.
    NewestSavepoint,
}

impl RestartFrom {
    fn is_newest(&self) -> bool {
        *self == RestartFrom::Newest
    }
}

/// A savepoint of the running job at `at`; the job goes on.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SavepointSpec {
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub at: Duration,
    /// A step the swarm drew: it may meet a job that is finishing or restarting and take nothing, so
    /// `savepoints_kept` does not ask that it took one (an authored step must). Kept in a saved scenario, so
    /// that it gives the verdict its swarm seed gave.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Copy, Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RestartHow {
    Cancel,
    Crash,
    StopWithSavepoint,
}

/// The shortest healing phase a scenario may give: with less, every seed fails for want of time.
const FINISH_WITHIN_MIN: Duration = Duration::from_millis(100);

/// The two phases: faults until `faults_until`, then healing: faults stop, and the job must
/// finish within `finish_within`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealingSpec {
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub faults_until: Duration,
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub finish_within: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksSpec {
    pub invariants: Vec<crate::invariants::Invariant>,
    /// A canary: the scenario passes only if this invariant is violated (the harness must
    /// be able to fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_violation: Option<crate::invariants::Invariant>,
}

/// Reads and validates a scenario file whose workload is one of [`Registry::standard`]'s.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    load_with(path, &Registry::standard())
}

/// Reads and validates a scenario file whose workload is one of `registry`'s.
pub fn load_with(path: &Path, registry: &Registry) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ScenarioError::Read { path: path.to_path_buf(), message: e.to_string() })?;
    parse_with(&text, path, registry)
}

/// Parses and validates scenario `text`, read from `path`, with [`Registry::standard`]'s workloads.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    parse_with(text, path, &Registry::standard())
}

/// Parses and validates scenario `text`, read from `path`, with `registry`'s workloads.
pub fn parse_with(text: &str, path: &Path, registry: &Registry) -> Result<Scenario, ScenarioError> {
    let file = parse_file(text, path)?;
    let job_line = find_line(text, "[job]").unwrap_or(1);
    let workload = registry.prepare(&file.job.name, &file.job.params).map_err(|message| ScenarioError::Invalid {
        path: path.to_path_buf(),
        line: job_line,
        message,
    })?;
    validate(file, text, path, workload)
}

/// Parses scenario `text`, read from `path`, strictly, without validating it.
pub fn parse_file(text: &str, path: &Path) -> Result<ScenarioFile, ScenarioError> {
    let invalid = |line: usize, message: String| ScenarioError::Invalid { path: path.to_path_buf(), line, message };
    toml::from_str(text).map_err(|e| {
        let mut line = e.span().map_or(1, |span| line_of(text, span.start));
        // For a bad key or value inside a table, toml points at the table; name the line of
        // the offending key or value itself when the message quotes it.
        if let Some(start) = e.span().map(|span| span.start)
            && let Some(offset) =
                e.message().split('`').skip(1).step_by(2).find_map(|quoted| text[start..].find(quoted))
        {
            line = line_of(text, start + offset);
        }
        invalid(line, e.message().replace('\n', " "))
    })
}

/// `base` with `overrides` on top: an override replaces a base entry that sets the same thing, whichever of its
/// keys either spells.
pub fn merge_config(
    base: &BTreeMap<String, toml::Value>,
    overrides: &BTreeMap<String, toml::Value>,
) -> BTreeMap<String, toml::Value> {
    let canonical = |key: &str| config::canonical_key(key).map_or_else(|| key.to_string(), str::to_string);
    let replaced: std::collections::BTreeSet<String> = overrides.keys().map(|k| canonical(k)).collect();
    let mut merged: BTreeMap<String, toml::Value> = base
        .iter()
        .filter(|(key, _)| !replaced.contains(&canonical(key)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    merged.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
}

/// The configuration of `entries` (Flink's keys and values, as in `[config]`) read from `text`.
fn read_config(
    entries: &BTreeMap<String, toml::Value>,
    text: &str,
    path: &Path,
    parallelism: u32,
) -> Result<JobConfig, ScenarioError> {
    let entries: Vec<ConfigEntry> = entries
        .iter()
        .map(|(key, value)| ConfigEntry {
            key: key.clone(),
            value: raw_value(value),
            line: find_line(text, &format!("\"{key}\"")),
        })
        .collect();
    let mut config = config::from_entries(entries, &path.display().to_string())?;
    config.parallelism = Some(parallelism);
    Ok(config)
}

/// Validates a parsed scenario file (`text`, read from `path`) whose workload is `workload`.
pub fn validate(
    file: ScenarioFile,
    text: &str,
    path: &Path,
    workload: Arc<dyn Prepared>,
) -> Result<Scenario, ScenarioError> {
    let invalid = |line: usize, message: String| ScenarioError::Invalid { path: path.to_path_buf(), line, message };
    // `[config]`: Flink's keys, checked by the engine's configuration reader.
    let config = read_config(&file.config, text, path, file.job.parallelism)?;
    let job_line = find_line(text, "[job]").unwrap_or(1);
    if file.job.task_managers == 0 || file.job.parallelism == 0 {
        return Err(invalid(job_line, "parallelism and task_managers must be at least 1".into()));
    }
    if file.job.task_managers > TASK_MANAGERS_MAX || file.job.parallelism > PARALLELISM_MAX {
        return Err(invalid(
            job_line,
            format!(
                "a simulated cluster has at most {TASK_MANAGERS_MAX} task managers and parallelism {PARALLELISM_MAX}"
            ),
        ));
    }
    // A job that cannot be built is the scenario's error, reported before any seed runs.
    let graph =
        workload.build(&WorkloadEnv::default(), config.clone()).map_err(|e| invalid(job_line, e.to_string()))?;
    let max_parallelism = graph.max_parallelism;
    let mut file = file;
    // An operator's uid, found in the job graph: its vertex, after checking `subtask` is one of its subtasks.
    let resolve = |operator: &str, subtask: Option<u32>| -> Result<u32, String> {
        let Some(found) = graph.vertices.iter().find(|v| v.operators.iter().any(|uid| uid.0 == operator)) else {
            let uids: Vec<String> =
                graph.vertices.iter().flat_map(|v| v.operators.iter().map(|u| u.0.clone())).collect();
            return Err(format!("no operator `{operator}` in the job (its operators: {})", uids.join(", ")));
        };
        match subtask {
            Some(subtask) if subtask >= found.parallelism => {
                Err(format!("operator `{operator}` has subtasks 0..{}, not {subtask}", found.parallelism))
            }
            _ => Ok(found.id.0),
        }
    };
    for (index, fault) in file.faults.iter_mut().enumerate() {
        let line = nth_line(text, "[[fault]]", index).unwrap_or(1);
        match fault {
            FaultSpec::FailSubtask { operator, subtask, vertex, .. } => {
                *vertex = Some(resolve(operator, Some(*subtask)).map_err(|message| invalid(line, message))?);
            }
            FaultSpec::AtPoint { scope, .. } => {
                if let Some(operator) = &scope.operator {
                    scope.vertex = Some(resolve(operator, scope.subtask).map_err(|message| invalid(line, message))?);
                }
            }
            _ => {}
        }
    }
    if file.healing.finish_within < FINISH_WITHIN_MIN {
        let line = find_line(text, "finish_within").unwrap_or(1);
        return Err(invalid(
            line,
            format!(
                "`finish_within` is {:?}, but the job needs at least {FINISH_WITHIN_MIN:?} to finish after the faults stop",
                file.healing.finish_within
            ),
        ));
    }
    let faults_until = file.healing.faults_until;
    let run_ends = faults_until + file.healing.finish_within;
    for (index, fault) in file.faults.iter().enumerate() {
        let line = nth_line(text, "[[fault]]", index).unwrap_or(1);
        validate_fault(fault, file.job.task_managers, faults_until).map_err(|message| invalid(line, message))?;
        if let Some(kind) = random_kind(fault)
            && let Some(earlier) = file.faults[..index].iter().position(|f| random_kind(f).as_ref() == Some(&kind))
        {
            let earlier_line = nth_line(text, "[[fault]]", earlier).unwrap_or(1);
            return Err(invalid(
                line,
                format!("a second `{kind}` block (the first is at line {earlier_line}): merge them into one"),
            ));
        }
    }
    let mut previous_at = Duration::ZERO;
    for (index, restart) in file.restarts.iter().enumerate() {
        let line = nth_line(text, "[[restart]]", index).unwrap_or(1);
        if restart.parallelism == Some(0) {
            return Err(invalid(line, "a restart's parallelism must be at least 1".into()));
        }
        if let Some(parallelism) = restart.parallelism.filter(|&p| p > max_parallelism || p > PARALLELISM_MAX) {
            return Err(invalid(
                line,
                format!(
                    "a restart's parallelism {parallelism} is above the job's max parallelism {max_parallelism} (max parallelism cannot change across a restore)"
                ),
            ));
        }
        if let Some(backend) = &restart.backend
            && backend != "jobmanager"
            && backend != "filesystem"
        {
            return Err(invalid(line, format!("unknown backend `{backend}` (jobmanager or filesystem)")));
        }
        if restart.from == RestartFrom::NewestSavepoint
            && restart.how != RestartHow::StopWithSavepoint
            && file.savepoints.iter().all(|s| s.at >= restart.at)
        {
            return Err(invalid(
                line,
                "`from = \"newest_savepoint\"`, but no `[[savepoint]]` step comes before this restart".into(),
            ));
        }
        if restart.at < previous_at {
            return Err(invalid(line, "restarts must be listed in time order".into()));
        }
        if restart.at >= run_ends {
            return Err(invalid(
                line,
                format!(
                    "this restart at {:?} comes after the run ends (faults_until + finish_within = {run_ends:?})",
                    restart.at
                ),
            ));
        }
        previous_at = restart.at;
    }
    for (index, step) in file.savepoints.iter().enumerate() {
        if step.at >= run_ends {
            let line = nth_line(text, "[[savepoint]]", index).unwrap_or(1);
            return Err(invalid(
                line,
                format!("this savepoint at {:?} comes after the run ends ({run_ends:?})", step.at),
            ));
        }
    }
    let mut restart_configs = Vec::with_capacity(file.restarts.len());
    for restart in &file.restarts {
        let entries = merge_config(&file.config, &restart.config);
        restart_configs.push(read_config(&entries, text, path, restart.parallelism.unwrap_or(file.job.parallelism))?);
    }
    let checks_line = find_line(text, "[checks]").unwrap_or(1);
    if file.checks.invariants.is_empty() {
        return Err(invalid(checks_line, "no invariants to check".into()));
    }
    for invariant in &file.checks.invariants {
        if let Some(reason) = workload.not_applicable(*invariant).or_else(|| not_applicable(*invariant, &file, &config))
        {
            return Err(invalid(checks_line, format!("invariant `{invariant}` cannot apply here: {reason}")));
        }
    }
    if let Some(swarm) = &file.swarm {
        let line = find_line(text, "[swarm]").unwrap_or(1);
        swarm.validate(&file).map_err(|message| invalid(line, message))?;
        // Each value a seed may draw must be one the workload takes.
        for (name, values) in &swarm.params {
            for value in values {
                let mut params = file.job.params.clone();
                params.insert(name.clone(), value.clone());
                workload.with_params(&params).map_err(|message| {
                    invalid(
                        line,
                        format!("the swarm may draw `{name} = {value}`, which the workload refuses: {message}"),
                    )
                })?;
            }
        }
    }
    Ok(Scenario { path: path.to_path_buf(), file, config, workload, restart_configs })
}

/// The most task managers and the highest parallelism a simulated cluster has: beyond them a seed takes minutes.
const TASK_MANAGERS_MAX: u32 = 64;
const PARALLELISM_MAX: u32 = 256;

/// The name of a random fault's kind, which a scenario may give once.
fn random_kind(fault: &FaultSpec) -> Option<String> {
    match fault {
        FaultSpec::DelayBarriers { .. } => Some("delay_barriers".into()),
        FaultSpec::DropRpc { message, .. } => Some(format!("drop_rpc of {message:?}")),
        FaultSpec::DelayRpc { message, .. } => Some(format!("delay_rpc of {message:?}")),
        FaultSpec::StallSnapshot { .. } => Some("stall_snapshot".into()),
        FaultSpec::StorageErrors { .. } => Some("storage_errors".into()),
        FaultSpec::AtPoint { .. }
        | FaultSpec::PauseNode { .. }
        | FaultSpec::StorageStall { .. }
        | FaultSpec::CrashTaskManager { .. }
        | FaultSpec::FailSubtask { .. }
        | FaultSpec::CrashJobManager { .. }
        | FaultSpec::StorageFull { .. }
        | FaultSpec::SlowStorage { .. }
        | FaultSpec::StorageCrash { .. }
        | FaultSpec::PartitionNode { .. } => None,
    }
}

/// Why `invariant` cannot say anything about this scenario, whatever its workload, if it cannot.
fn not_applicable(invariant: crate::invariants::Invariant, file: &ScenarioFile, config: &JobConfig) -> Option<String> {
    use crate::invariants::Invariant;
    let at_least_once = config.checkpoint.mode == config::CheckpointingMode::AtLeastOnce;
    match invariant {
        Invariant::NoLossNoDupInOrder | Invariant::ExactlyOnceOutput | Invariant::StateEqualsReference
            if at_least_once =>
        {
            Some("AT_LEAST_ONCE may duplicate records; check `nothing_lost`".into())
        }
        Invariant::SavepointsKept if file.savepoints.is_empty() => {
            Some("no `[[savepoint]]` step takes a savepoint to keep".into())
        }
        Invariant::SelfContained
            if config.state_backend != engine::config::StateBackendKind::JobManager
                && !file.restarts.iter().any(|r| r.backend.as_deref() == Some("jobmanager")) =>
        {
            Some("no job of the scenario uses the jobmanager backend".into())
        }
        Invariant::NoDanglingSharedFiles | Invariant::NoLeakedSharedFiles
            if !(config.state_backend == engine::config::StateBackendKind::Embedded && config.embedded.incremental) =>
        {
            Some("no job of the scenario takes incremental checkpoints (`state.backend: rocksdb` with `state.backend.incremental: true`)".into())
        }
        Invariant::ExactlyOnceOutput
        | Invariant::NoLossNoDupInOrder
        | Invariant::StateEqualsReference
        | Invariant::CheckpointIdsIncrease
        | Invariant::RetainedCount
        | Invariant::NoOrphanFiles
        | Invariant::MetadataReadable
        | Invariant::SelfContained
        | Invariant::Liveness
        | Invariant::NothingLost
        | Invariant::SavepointsKept
        | Invariant::NoDanglingSharedFiles
        | Invariant::NoLeakedSharedFiles
        | Invariant::CommitsFollowCompletion
        | Invariant::NoCompletionAfterAbort
        | Invariant::AcksFollowDurability
        | Invariant::IdsTriggeredOnce
        | Invariant::ConsistentCut => None,
    }
}

fn validate_fault(fault: &FaultSpec, task_managers: u32, faults_until: Duration) -> Result<(), String> {
    let rate_ok =
        |rate: f64| if (0.0..=1.0).contains(&rate) { Ok(()) } else { Err(format!("rate {rate} is not in 0..=1")) };
    // Names are spelt as the cluster spells them: `tm-1`, never `tm-01`.
    let task_manager = |node: &str| {
        node.strip_prefix("tm-")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n < task_managers && node == format!("tm-{n}"))
    };
    let unknown = |node: &str| format!("unknown node `{node}` (task managers are tm-0..tm-{})", task_managers - 1);
    let node_ok = |node: &str| if node == "random" || task_manager(node) { Ok(()) } else { Err(unknown(node)) };
    let any_node_ok =
        |node: &str| if node == "jm" || node == "random" || task_manager(node) { Ok(()) } else { Err(unknown(node)) };
    let volume_ok = |volume: &str| {
        if crate::layout::volume_paths(volume, task_managers).is_empty() {
            let names: Vec<&str> = crate::layout::SHARED_VOLUMES.iter().map(|(name, _)| *name).collect();
            Err(format!("unknown volume `{volume}` (dfs, {}, local, or tm-<n>)", names.join(", ")))
        } else {
            Ok(())
        }
    };
    let window_ok = |from: Option<Duration>, until: Option<Duration>| match (from, until) {
        (Some(from), _) if from >= faults_until => {
            Err(format!("this window starts at {from:?}, after faults stop (faults_until = {faults_until:?})"))
        }
        (Some(from), Some(until)) if from >= until => Err(format!("the window {from:?}..{until:?} is empty")),
        _ => Ok(()),
    };
    let when_ok = |when: &When| {
        match (when.at, when.checkpoint, when.phase, when.class, when.after) {
        (_, None, None, None, Some(_)) => Ok(()),
        (_, _, _, _, Some(_)) => Err("`after` counts `at` from an event: it takes no `checkpoint`, `phase` or `class`".to_string()),
        (Some(at), None, None, None, None) if at >= faults_until => {
            Err(format!("this fault at {at:?} would never fire: faults stop at faults_until = {faults_until:?}"))
        }
        (Some(_), None, None, None, None) => Ok(()),
        (_, Some(0), _, _, None) => Err("checkpoint ids start at 1: `checkpoint = 0` never happens".to_string()),
        (_, Some(_), Some(_), _, None) | (_, None, Some(_), Some(_), None) => Ok(()),
        _ => Err("`when` needs `at = \"<duration>\"`, or `checkpoint` and `phase`, or `class` and `phase` (and an `at` counted from that phase), or `after` an event".to_string()),
    }
    };
    match fault {
        FaultSpec::AtPoint { point, action, nth, rate, delay, restart_after, scope } => {
            let name = point.as_str();
            if !point.actions().contains(action) {
                let can: Vec<String> = point.actions().iter().map(|a| format!("{a:?}").to_lowercase()).collect();
                return Err(format!(
                    "at `{name}` a fault cannot `{}` (it can: {})",
                    format!("{action:?}").to_lowercase(),
                    can.join(", ")
                ));
            }
            match (nth, rate) {
                (Some(0), _) => return Err("`nth` counts from 1".into()),
                (Some(_), None) => {}
                (None, Some(rate)) => rate_ok(*rate)?,
                _ => return Err("give exactly one of `nth` (scripted, once) and `rate` (random)".into()),
            }
            match action {
                PointAction::Delay if delay.is_none() => return Err("`action = \"delay\"` needs a `delay`".into()),
                PointAction::CrashStorage if delay.is_some() && !point.actions().contains(&PointAction::Delay) => {
                    return Err(format!("`{name}` cannot wait: a `crash_storage` there takes no `delay`"));
                }
                PointAction::Delay | PointAction::CrashStorage => {}
                _ if delay.is_some() => {
                    return Err("`delay` goes with `action = \"delay\"` or `\"crash_storage\"` only".into());
                }
                _ => {}
            }
            if restart_after.is_some() && *action != PointAction::Crash {
                return Err("`restart_after` goes with `action = \"crash\"` only".into());
            }
            if let Some(node) = &scope.node {
                if node == "random" {
                    return Err("a scope names a node, not `random`".into());
                }
                any_node_ok(node)?;
                if point.on_job_manager() != (node == "jm") {
                    return Err(format!("`{name}` is never reached on `{node}`"));
                }
            }
            if scope.checkpoint == Some(0) {
                return Err("checkpoint ids start at 1: `checkpoint = 0` never happens".into());
            }
            window_ok(scope.from, scope.until)
        }
        FaultSpec::CrashTaskManager { node, when, .. } | FaultSpec::PartitionNode { node, when, .. } => {
            node_ok(node)?;
            when_ok(when)
        }
        FaultSpec::PauseNode { node, when, .. } => {
            any_node_ok(node)?;
            when_ok(when)
        }
        FaultSpec::FailSubtask { when, .. } | FaultSpec::CrashJobManager { when, .. } => when_ok(when),
        FaultSpec::StorageFull { when, volume, .. }
        | FaultSpec::SlowStorage { when, volume, .. }
        | FaultSpec::StorageStall { when, volume, .. }
        | FaultSpec::StorageCrash { when, volume } => {
            volume_ok(volume)?;
            when_ok(when)
        }
        FaultSpec::DelayBarriers { rate, .. }
        | FaultSpec::DropRpc { rate, .. }
        | FaultSpec::DelayRpc { rate, .. }
        | FaultSpec::StallSnapshot { rate, .. } => rate_ok(*rate),
        FaultSpec::StorageErrors { write_rate, fsync_rate, read_rate, volume, from, until } => {
            rate_ok(*write_rate)?;
            rate_ok(*fsync_rate)?;
            rate_ok(*read_rate)?;
            volume_ok(volume)?;
            window_ok(*from, *until)
        }
    }
}

fn raw_value(value: &toml::Value) -> RawValue {
    match value {
        toml::Value::String(s) => RawValue::String(s.clone()),
        toml::Value::Integer(i) => RawValue::Integer(*i),
        toml::Value::Float(f) => RawValue::Float(*f),
        toml::Value::Boolean(b) => RawValue::Bool(*b),
        other => RawValue::String(other.to_string()),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|offset| line_of(text, offset))
}

fn nth_line(text: &str, needle: &str, n: usize) -> Option<usize> {
    text.match_indices(needle).nth(n).map(|(offset, _)| line_of(text, offset))
}

/// Every scenario file under `path` (a file, or a directory searched recursively), sorted. Symbolic links are
/// followed, but every directory and file is visited once, by its real path: a link loop ends, and a scenario
/// reachable twice runs once.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let read_error =
        |path: &Path, e: std::io::Error| ScenarioError::Read { path: path.to_path_buf(), message: e.to_string() };
    let metadata = std::fs::metadata(path).map_err(|e| read_error(path, e))?;
    if metadata.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut visited = std::collections::BTreeSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let real = std::fs::canonicalize(&dir).map_err(|e| read_error(&dir, e))?;
        if !visited.insert(real) {
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| read_error(&dir, e))?;
        for entry in entries.flatten() {
            let entry_path = entry.path();
            // A dangling link is skipped, as `find -L` would report it: it names no scenario.
            let Ok(metadata) = std::fs::metadata(&entry_path) else { continue };
            if metadata.is_dir() {
                stack.push(entry_path);
            } else if entry_path.extension().is_some_and(|e| e == "toml") {
                let real = std::fs::canonicalize(&entry_path).map_err(|e| read_error(&entry_path, e))?;
                found.entry(real).or_insert(entry_path);
            }
        }
    }
    let mut found: Vec<PathBuf> = found.into_values().collect();
    found.sort();
    Ok(found)
}
