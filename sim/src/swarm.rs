//! Swarm testing: a scenario's `[swarm]` section says which faults may be drawn, and each seed draws its own fault
//! profile from it (after Groce et al., "Swarm Testing", ISSTA 2012, and TigerBeetle's VOPR): which fault kinds
//! take part, how many faults, their rates, targets, times and windows, and optionally the checkpoint settings,
//! the backend, the parallelism, whole-job restarts and savepoints. Leaving most kinds out of most seeds is the
//! point: a fault that masks another (a crash that restarts everything before a delayed barrier matters) is
//! absent often enough for the other to show.
//!
//! A drawn profile is an ordinary scenario: [`effective`] writes it as a scenario file's text and reads that back
//! through the same parser and validation as any file, so `--save-scenario` writes exactly what ran, and the saved
//! file replays the seed bit for bit. The profile is a function of the seed alone, drawn from a stream of its own
//! (never the simulation's generator).

use crate::invariants::Invariant;
use crate::points::{PointAction, PointName};
use crate::scenario::{
    self, DurationRange, Event, FaultSpec, RestartHow, RestartSpec, RpcSelector, SavepointSpec, Scenario,
    ScenarioError, ScenarioFile, Scope, When,
};
use crate::stream::{Stream, fnv};
use crate::workload::WorkloadEnv;
use engine::faults::SnapshotClass;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A kind of fault the swarm may draw.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwarmKind {
    CrashTaskManager,
    CrashJobManager,
    PauseNode,
    PartitionNode,
    FailSubtask,
    /// A node crashes at a fault point.
    PointCrash,
    /// A step fails at a fault point.
    PointFail,
    /// A step waits at a fault point (which includes yields at the engine's interleaving points).
    PointDelay,
    /// The shared storage loses power at a fault point, between two steps of a protocol; the step may then wait.
    PointCrashStorage,
    DropRpc,
    DelayRpc,
    DelayBarriers,
    StallSnapshot,
    StorageErrors,
    StorageFull,
    StorageStall,
    SlowStorage,
    StorageCrash,
}

/// `"a..b"`: a range of whole numbers, both ends included.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CountRange {
    pub min: u32,
    pub max: u32,
}

impl Serialize for CountRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}..{}", self.min, self.max))
    }
}

impl<'de> Deserialize<'de> for CountRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bad =
            || serde::de::Error::custom(format!("expected a range such as `1..4` (both ends included), got `{text}`"));
        let (min, max) = text.split_once("..").ok_or_else(bad)?;
        let (min, max) = (min.trim().parse().map_err(|_| bad())?, max.trim().parse().map_err(|_| bad())?);
        if min > max {
            return Err(bad());
        }
        Ok(CountRange { min, max })
    }
}

/// `"0.001..0.05"`: a range of probabilities, drawn log-uniformly.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct RateRange {
    pub min: f64,
    pub max: f64,
}

impl Serialize for RateRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}..{}", self.min, self.max))
    }
}

impl<'de> Deserialize<'de> for RateRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bad = || {
            serde::de::Error::custom(format!("expected a range of probabilities such as `0.001..0.05`, got `{text}`"))
        };
        let (min, max) = text.split_once("..").ok_or_else(bad)?;
        let (min, max): (f64, f64) = (min.trim().parse().map_err(|_| bad())?, max.trim().parse().map_err(|_| bad())?);
        if !(0.0 < min && min <= max && max <= 1.0) {
            return Err(bad());
        }
        Ok(RateRange { min, max })
    }
}

fn default_faults() -> CountRange {
    CountRange { min: 1, max: 4 }
}

fn default_rates() -> RateRange {
    RateRange { min: 0.002, max: 0.05 }
}

/// A scenario's `[swarm]` section.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmSpec {
    /// The fault kinds a seed may draw; each seed draws from a random subset of them.
    pub kinds: Vec<SwarmKind>,
    /// How many faults a seed draws.
    #[serde(default = "default_faults")]
    pub faults: CountRange,
    /// What rates random faults are drawn from.
    #[serde(default = "default_rates")]
    pub rates: RateRange,
    /// The fault points `point_*` faults may be drawn at (default: every point where the action can happen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<PointName>>,
    /// Draw the checkpoint settings (interval, timeout, min pause, max concurrent, tolerable failures, retained
    /// count, inline threshold), the state backend and the parallelism.
    #[serde(default)]
    pub settings: bool,
    /// At most this many whole-job restarts (cancel, crash, stop with savepoint; maybe at another parallelism,
    /// maybe relocated).
    #[serde(default)]
    pub restarts: u32,
    /// At most this many savepoints of the running job.
    #[serde(default)]
    pub savepoints: u32,
    /// Yields and short delays at the engine's interleaving points (madsim's buggify), with a drawn rate.
    #[serde(default)]
    pub buggify: bool,
    /// Workload parameters drawn per seed, each from its list of values (`keys = [4, 1000, 20000]`): key counts,
    /// state sizes, anything the workload takes. The fault-free run of each seed uses the seed's values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Vec<toml::Value>>,
}

impl SwarmSpec {
    /// Checks what types cannot, against the scenario it is in.
    pub fn validate(&self, file: &ScenarioFile) -> Result<(), String> {
        if self.kinds.is_empty() && !self.buggify && self.restarts == 0 && self.savepoints == 0 {
            return Err("a swarm that may draw nothing: give `kinds`, `restarts`, `savepoints` or `buggify`".into());
        }
        if self.kinds.is_empty() && (self.points.is_some() || self.faults != default_faults()) {
            return Err("`kinds` lists no fault kind, so `faults` and `points` draw nothing: list kinds, or leave `faults` and `points` out".into());
        }
        let kinds: BTreeSet<SwarmKind> = self.kinds.iter().copied().collect();
        if kinds.len() != self.kinds.len() {
            return Err("a kind is listed twice in `kinds`".into());
        }
        let point_kinds =
            [SwarmKind::PointCrash, SwarmKind::PointFail, SwarmKind::PointDelay, SwarmKind::PointCrashStorage];
        if self.points.as_ref().is_some_and(Vec::is_empty) && point_kinds.iter().any(|k| kinds.contains(k)) {
            return Err("`points = []` allows no point for the `point_*` kinds: list points, or leave `points` out to draw from every point".into());
        }
        for kind in point_kinds {
            if kinds.contains(&kind) && points_for(self, kind).is_empty() {
                return Err(format!("no point in `points` allows `{kind:?}`"));
            }
        }
        if let Some((name, _)) = self.params.iter().find(|(_, values)| values.is_empty()) {
            return Err(format!("`params.{name}` lists no value to draw"));
        }
        if self.restarts > 4 || self.savepoints > 8 || self.faults.max > 32 {
            return Err("a swarm draws at most 32 faults, 4 restarts and 8 savepoints per seed".into());
        }
        if file.healing.faults_until < Duration::from_millis(10) {
            return Err("a swarm needs a faults phase (`faults_until`) of at least 10 ms to draw times in".into());
        }
        Ok(())
    }
}

/// What a fault of point kind `kind` does at its point.
fn point_action(kind: SwarmKind) -> PointAction {
    match kind {
        SwarmKind::PointCrash => PointAction::Crash,
        SwarmKind::PointFail => PointAction::Fail,
        SwarmKind::PointCrashStorage => PointAction::CrashStorage,
        _ => PointAction::Delay,
    }
}

/// The points where a fault of `kind` can be drawn.
fn points_for(spec: &SwarmSpec, kind: SwarmKind) -> Vec<PointName> {
    let action = point_action(kind);
    let candidates: &[PointName] = spec.points.as_deref().unwrap_or(&PointName::ALL);
    candidates.iter().copied().filter(|p| p.actions().contains(&action)).collect()
}

/// The scenario seed `seed` runs: `scenario` itself without a `[swarm]` section, else its drawn profile, read back
/// as a scenario file.
pub fn effective(scenario: &Scenario, seed: u64) -> Result<Scenario, ScenarioError> {
    let Some(spec) = &scenario.file.swarm else { return Ok(scenario.clone()) };
    let file = draw(scenario, spec, seed);
    let text = to_text(&file);
    let parsed = scenario::parse_file(&text, &scenario.path)?;
    let workload = match spec.params.is_empty() {
        true => scenario.workload.clone(),
        false => scenario.workload.with_params(&parsed.job.params).map_err(|message| ScenarioError::Invalid {
            path: scenario.path.clone(),
            line: 1,
            message: format!("the swarm drew parameters for seed {seed} that the workload refuses: {message}"),
        })?,
    };
    let mut drawn = scenario::validate(parsed, &text, &scenario.path, workload)?;
    // Drawn savepoint steps are the user's: savepoints_kept applies.
    if !drawn.file.savepoints.is_empty() && !drawn.file.checks.invariants.contains(&Invariant::SavepointsKept) {
        drawn.file.checks.invariants.push(Invariant::SavepointsKept);
    }
    // A drawn incremental embedded backend shares files across checkpoints: their invariants apply.
    if drawn.config.state_backend == engine::config::StateBackendKind::Embedded && drawn.config.embedded.incremental {
        let invariants = &mut drawn.file.checks.invariants;
        for shared in [Invariant::NoDanglingSharedFiles, Invariant::NoLeakedSharedFiles] {
            if !invariants.contains(&shared) {
                invariants.push(shared);
            }
        }
    }
    Ok(drawn)
}

/// A scenario file's text, as `--save-scenario` writes it.
pub fn to_text(file: &ScenarioFile) -> String {
    toml::to_string(file).expect("a scenario serializes")
}

/// Where the drawn faults can land.
struct Targets {
    operators: Vec<(String, u32)>,
    task_managers: u32,
    faults_until_ms: u64,
    checkpoints: bool,
}

/// Draws seed `seed`'s profile.
fn draw(scenario: &Scenario, spec: &SwarmSpec, seed: u64) -> ScenarioFile {
    let mut rng = Stream::new(seed, fnv(b"swarm"));
    let base = &scenario.file;
    let mut file = base.clone();
    let mut config = scenario.config.clone();
    for (name, values) in &spec.params {
        file.job.params.insert(name.clone(), values[rng.below(values.len() as u64) as usize].clone());
    }
    if spec.settings {
        let overrides = draw_settings(&mut rng, scenario);
        file.config = scenario::merge_config(&file.config, &overrides.config);
        // A lost ack or report holds a snapshot until it expires: the healing bound waits out the drawn timeout
        // once more, as a healed cluster may still have to.
        let timeout = overrides.config.get("execution.checkpointing.timeout").and_then(|v| v.as_str());
        if let Some(timeout) = timeout.and_then(|t| engine::config::parse_duration(t).ok()) {
            file.healing.finish_within += timeout;
        }
        if let Some(parallelism) = overrides.parallelism {
            file.job.parallelism = parallelism;
            config.parallelism = Some(parallelism);
        }
    }
    // The faults' targets are the drawn job's.
    let graph = scenario.workload.build(&WorkloadEnv::default(), config).ok();
    let targets = Targets {
        operators: graph
            .iter()
            .flat_map(|g| g.vertices.iter())
            .flat_map(|v| v.operators.iter().map(move |uid| (uid.0.clone(), v.parallelism)))
            .collect(),
        task_managers: base.job.task_managers,
        faults_until_ms: base.healing.faults_until.as_millis() as u64,
        checkpoints: scenario.config.checkpoint.interval_ms.is_some(),
    };
    file.swarm = None;
    file.about = format!("{} (the swarm profile of seed {seed})", base.about);
    // Swarm testing: each seed leaves out about half of the kinds.
    let mut kinds: Vec<SwarmKind> = spec.kinds.iter().copied().filter(|_| rng.chance(0.5)).collect();
    if kinds.is_empty() && !spec.kinds.is_empty() {
        kinds.push(spec.kinds[rng.below(spec.kinds.len() as u64) as usize]);
    }
    let count = if kinds.is_empty() {
        0
    } else {
        spec.faults.min + rng.below(u64::from(spec.faults.max - spec.faults.min) + 1) as u32
    };
    let mut random_kinds = BTreeSet::new();
    // A fault at a checkpoint's completion strikes, half the time, a few milliseconds after it instead: while
    // the sinks commit that checkpoint's transactions (rename, then directory fsync). The offsets come from a
    // stream of their own, so that the rest of the profile is what it was without them.
    let mut offsets = Stream::new(seed, fnv(b"swarm-phase-offsets"));
    for _ in 0..count {
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        if let Some(mut fault) = draw_fault(&mut rng, spec, kind, &targets, &mut random_kinds) {
            if let Some(when) = fault.when_mut().filter(|w| w.at.is_none() && w.phase.is_some_and(commits_follow))
                && offsets.chance(0.5)
            {
                when.at = Some(ms(&mut offsets, 0, 40));
            }
            file.faults.push(fault);
        }
    }
    if spec.buggify {
        let rate = draw_rate(&mut rng, spec.rates);
        for point in [PointName::InterleaveGate, PointName::InterleaveSnapshotAsync, PointName::InterleaveSinkWrite] {
            if rng.chance(0.5) {
                file.faults.push(FaultSpec::AtPoint {
                    point,
                    action: PointAction::Delay,
                    nth: None,
                    rate: Some(rate),
                    delay: Some(DurationRange { min: Duration::ZERO, max: Duration::from_millis(1 + rng.below(20)) }),
                    restart_after: None,
                    scope: Scope::default(),
                });
            }
        }
    }
    let max_parallelism = graph.as_ref().map_or(file.job.parallelism, |g| g.max_parallelism).min(16);
    for _ in 0..rng.below(u64::from(spec.savepoints) + 1) {
        file.savepoints.push(SavepointSpec { at: draw_time(&mut rng, &targets), optional: true });
    }
    file.savepoints.sort_by_key(|s| s.at);
    // Checkpoints kept in the job manager's memory die with the job: a new job could only start over, which
    // duplicates what was committed, as it should. Whole-job restarts are drawn only where checkpoints outlive it.
    let in_memory = file.config.iter().any(|(key, value)| {
        engine::config::canonical_key(key) == Some("state.backend.type")
            && value.as_str().is_some_and(|v| v.eq_ignore_ascii_case("jobmanager"))
    });
    let restarts = if in_memory { 0 } else { rng.below(u64::from(spec.restarts) + 1) };
    // A user cancels to resume later only where canceling keeps the checkpoints (else starting over from nothing
    // duplicates what was committed, as it should); a stop whose savepoint fails ends in a cancel too.
    let retention = engine::config::canonical_key("execution.checkpointing.externalized-checkpoint-retention");
    let given_retention = file
        .config
        .iter()
        .find(|(k, _)| engine::config::canonical_key(k) == retention)
        .and_then(|(_, v)| v.as_str().map(str::to_string));
    let retains = match &given_retention {
        Some(value) => value.eq_ignore_ascii_case("RETAIN_ON_CANCELLATION"),
        None => scenario.config.checkpoint.externalized == engine::config::ExternalizedRetention::RetainOnCancellation,
    };
    let retention_given = given_retention.is_some();
    // A third of the restarts come just before the sources run dry (when the workload can tell): a stop there
    // races the end of input and the final checkpoint. Drawn from a stream of their own, as the phase offsets.
    let input_end = scenario
        .workload
        .with_params(&file.job.params)
        .ok()
        .and_then(|workload| workload.input_ends_at(file.job.parallelism));
    let last_ms = targets.faults_until_ms.saturating_sub(1).max(1);
    let mut aims = Stream::new(seed, fnv(b"swarm-input-end"));
    for _ in 0..restarts {
        let mut how = [RestartHow::Cancel, RestartHow::Crash, RestartHow::StopWithSavepoint][rng.below(3) as usize];
        if how != RestartHow::Crash && !retains {
            if retention_given {
                how = RestartHow::Crash;
            } else {
                let value = toml::Value::String("RETAIN_ON_CANCELLATION".into());
                file.config.insert("execution.checkpointing.externalized-checkpoint-retention".into(), value);
            }
        }
        let parallelism = rng.chance(0.5).then(|| 1 + rng.below(u64::from(max_parallelism)) as u32);
        let relocate = how == RestartHow::StopWithSavepoint && rng.chance(0.25);
        let mut at = draw_time(&mut rng, &targets);
        if let Some(end) = input_end.filter(|_| aims.chance(0.3)) {
            let before = ms(&mut aims, 0, 150);
            at = end.saturating_sub(before).clamp(Duration::from_millis(1), Duration::from_millis(last_ms));
        }
        file.restarts.push(RestartSpec {
            at,
            how,
            from: scenario::RestartFrom::Newest,
            parallelism,
            backend: None,
            relocate,
            config: BTreeMap::new(),
        });
    }
    file.restarts.sort_by_key(|r| r.at);
    file
}

/// A time in the faults phase, to the millisecond.
fn draw_time(rng: &mut Stream, targets: &Targets) -> Duration {
    Duration::from_millis(1 + rng.below(targets.faults_until_ms.saturating_sub(1).max(1)))
}

/// A rate, log-uniformly in `range`.
fn draw_rate(rng: &mut Stream, range: RateRange) -> f64 {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let rate = (range.min.ln() + unit * (range.max.ln() - range.min.ln())).exp();
    // Rounded to four significant digits, so that the saved scenario reads well.
    let scale = 10f64.powi(3 - rate.log10().floor() as i32);
    ((rate * scale).round() / scale).clamp(range.min, range.max)
}

fn ms(rng: &mut Stream, min: u64, max: u64) -> Duration {
    Duration::from_millis(min + rng.below(max - min + 1))
}

fn range(rng: &mut Stream, min: u64, max: u64) -> DurationRange {
    let low = min + rng.below(max - min + 1);
    let high = low + rng.below(max - low + 1);
    DurationRange { min: Duration::from_millis(low), max: Duration::from_millis(high) }
}

/// Whether the sinks commit right after a checkpoint reaches `phase`.
fn commits_follow(phase: engine::faults::CheckpointPhase) -> bool {
    matches!(phase, engine::faults::CheckpointPhase::Completed | engine::faults::CheckpointPhase::Notified)
}

/// When a scripted fault fires: mostly at a time, sometimes a while after an event.
fn draw_when(rng: &mut Stream, targets: &Targets) -> When {
    let empty = When { at: None, checkpoint: None, phase: None, class: None, after: None };
    if rng.chance(0.25) {
        let events = [Event::Failover, Event::Restore, Event::Savepoint, Event::Stop, Event::Final];
        let after = events[rng.below(events.len() as u64) as usize];
        return When { at: Some(ms(rng, 0, 300)), after: Some(after), ..empty };
    }
    if targets.checkpoints && rng.chance(0.25) {
        let phases = [
            engine::faults::CheckpointPhase::Triggered,
            engine::faults::CheckpointPhase::Acked,
            engine::faults::CheckpointPhase::WritingMetadata,
            engine::faults::CheckpointPhase::Completed,
            engine::faults::CheckpointPhase::Notified,
        ];
        let phase = phases[rng.below(phases.len() as u64) as usize];
        return When { checkpoint: Some(1 + rng.below(8)), phase: Some(phase), ..empty };
    }
    When { at: Some(draw_time(rng, targets)), ..empty }
}

fn task_manager(rng: &mut Stream, targets: &Targets) -> String {
    format!("tm-{}", rng.below(u64::from(targets.task_managers)))
}

fn volume(rng: &mut Stream, targets: &Targets) -> String {
    let names = ["dfs", "checkpoints", "savepoints", "output", "local"];
    match rng.below(names.len() as u64 + 1) as usize {
        index if index < names.len() => names[index].to_string(),
        _ => task_manager(rng, targets),
    }
}

fn draw_fault(
    rng: &mut Stream,
    spec: &SwarmSpec,
    kind: SwarmKind,
    targets: &Targets,
    random_kinds: &mut BTreeSet<String>,
) -> Option<FaultSpec> {
    // A scenario gives each random kind once.
    let mut once = |name: String| random_kinds.insert(name);
    Some(match kind {
        SwarmKind::CrashTaskManager => FaultSpec::CrashTaskManager {
            node: task_manager(rng, targets),
            when: draw_when(rng, targets),
            restart_after: ms(rng, 50, 1500),
        },
        SwarmKind::CrashJobManager => {
            FaultSpec::CrashJobManager { when: draw_when(rng, targets), restart_after: ms(rng, 50, 1500) }
        }
        SwarmKind::PauseNode => {
            let node = if rng.chance(0.3) { "jm".to_string() } else { task_manager(rng, targets) };
            FaultSpec::PauseNode { node, when: draw_when(rng, targets), duration: ms(rng, 20, 1500) }
        }
        SwarmKind::PartitionNode => FaultSpec::PartitionNode {
            node: task_manager(rng, targets),
            when: draw_when(rng, targets),
            duration: ms(rng, 50, 1500),
        },
        SwarmKind::FailSubtask => {
            if targets.operators.is_empty() {
                return None;
            }
            let (operator, parallelism) = targets.operators[rng.below(targets.operators.len() as u64) as usize].clone();
            let subtask = rng.below(u64::from(parallelism)) as u32;
            FaultSpec::FailSubtask { operator, subtask, when: draw_when(rng, targets), vertex: None }
        }
        SwarmKind::PointCrash | SwarmKind::PointFail | SwarmKind::PointDelay | SwarmKind::PointCrashStorage => {
            let candidates = points_for(spec, kind);
            let point = candidates[rng.below(candidates.len() as u64) as usize];
            let action = point_action(kind);
            let crash = matches!(action, PointAction::Crash | PointAction::CrashStorage);
            // Crashes are scripted (a random crash rate would crash over and over); failures and delays either.
            let (nth, rate) = if crash || rng.chance(0.5) {
                (Some(1 + rng.below(3)), None)
            } else {
                (None, Some(draw_rate(rng, spec.rates)))
            };
            let mut scope = Scope::default();
            if rng.chance(0.3) {
                scope.from = Some(draw_time(rng, targets));
            }
            if rng.chance(0.2) && targets.checkpoints {
                scope.class = Some(
                    [SnapshotClass::Checkpoint, SnapshotClass::Savepoint, SnapshotClass::Stop, SnapshotClass::Final]
                        [rng.below(4) as usize],
                );
            }
            FaultSpec::AtPoint {
                point,
                action,
                nth,
                rate,
                // After a storage crash, the step may be slow to go on: the other writers of its directory move
                // first, and one of them may draw the stale error the crash owes this one.
                delay: match action {
                    PointAction::Delay => Some(range(rng, 1, 400)),
                    PointAction::CrashStorage if point.actions().contains(&PointAction::Delay) && rng.chance(0.5) => {
                        Some(range(rng, 1, 100))
                    }
                    _ => None,
                },
                restart_after: (action == PointAction::Crash).then(|| ms(rng, 50, 1500)),
                scope,
            }
        }
        SwarmKind::DropRpc | SwarmKind::DelayRpc => {
            let messages = [
                RpcSelector::Any,
                RpcSelector::Trigger,
                RpcSelector::Notify,
                RpcSelector::Abort,
                RpcSelector::Finish,
                RpcSelector::Ack,
                RpcSelector::Decline,
                RpcSelector::EndOfData,
            ];
            let message = messages[rng.below(messages.len() as u64) as usize];
            let rate = draw_rate(rng, spec.rates);
            if kind == SwarmKind::DropRpc {
                if !once(format!("drop_rpc of {message:?}")) {
                    return None;
                }
                FaultSpec::DropRpc { message, rate }
            } else {
                if !once(format!("delay_rpc of {message:?}")) {
                    return None;
                }
                FaultSpec::DelayRpc { message, rate, delay: range(rng, 1, 500) }
            }
        }
        SwarmKind::DelayBarriers => {
            if !once("delay_barriers".into()) {
                return None;
            }
            FaultSpec::DelayBarriers { rate: draw_rate(rng, spec.rates), delay: range(rng, 1, 500) }
        }
        SwarmKind::StallSnapshot => {
            if !once("stall_snapshot".into()) {
                return None;
            }
            FaultSpec::StallSnapshot { rate: draw_rate(rng, spec.rates), delay: range(rng, 1, 800) }
        }
        SwarmKind::StorageErrors => {
            if !once("storage_errors".into()) {
                return None;
            }
            let mut rate = || if rng.chance(0.5) { draw_rate(rng, spec.rates) } else { 0.0 };
            let (write_rate, fsync_rate, read_rate) = (rate(), rate(), rate());
            let windowed = rng.chance(0.5);
            let from = windowed.then(|| draw_time(rng, targets));
            let until = from.map(|from| from + ms(rng, 10, 1000));
            FaultSpec::StorageErrors { write_rate, fsync_rate, read_rate, volume: volume(rng, targets), from, until }
        }
        SwarmKind::StorageFull => FaultSpec::StorageFull {
            when: draw_when(rng, targets),
            duration: ms(rng, 20, 1500),
            volume: volume(rng, targets),
        },
        SwarmKind::StorageStall => FaultSpec::StorageStall {
            volume: volume(rng, targets),
            when: draw_when(rng, targets),
            duration: ms(rng, 20, 1500),
        },
        SwarmKind::SlowStorage => FaultSpec::SlowStorage {
            when: draw_when(rng, targets),
            latency: range(rng, 0, 30),
            volume: volume(rng, targets),
            persists: false,
        },
        SwarmKind::StorageCrash => {
            FaultSpec::StorageCrash { when: draw_when(rng, targets), volume: volume(rng, targets) }
        }
    })
}

/// Drawn configuration: Flink's keys, and the parallelism.
struct Settings {
    config: BTreeMap<String, toml::Value>,
    parallelism: Option<u32>,
}

fn pick<'a>(rng: &mut Stream, values: &[&'a str]) -> &'a str {
    values[rng.below(values.len() as u64) as usize]
}

fn draw_settings(rng: &mut Stream, scenario: &Scenario) -> Settings {
    let mut config = BTreeMap::new();
    let text = |value: &str| toml::Value::String(value.to_string());
    if scenario.config.checkpoint.interval_ms.is_some() {
        config.insert(
            "execution.checkpointing.interval".into(),
            text(pick(rng, &["50 ms", "100 ms", "200 ms", "400 ms"])),
        );
        config
            .insert("execution.checkpointing.timeout".into(), text(pick(rng, &["150 ms", "500 ms", "2 s", "10 min"])));
        config.insert("execution.checkpointing.min-pause".into(), text(pick(rng, &["0 ms", "20 ms", "100 ms"])));
        let integer =
            |rng: &mut Stream, values: &[i64]| toml::Value::Integer(values[rng.below(values.len() as u64) as usize]);
        config.insert("execution.checkpointing.max-concurrent-checkpoints".into(), integer(rng, &[1, 2, 3]));
        config.insert("execution.checkpointing.tolerable-failed-checkpoints".into(), integer(rng, &[0, 1, 3, 100]));
        config.insert("execution.checkpointing.num-retained".into(), integer(rng, &[1, 2, 3]));
        config.insert("execution.checkpointing.data-inline-threshold".into(), integer(rng, &[0, 64, 1024, 20480]));
        // What the job's end leaves of its checkpoints: kept (and then counted), or deleted.
        let retentions = ["NO_EXTERNALIZED_CHECKPOINTS", "RETAIN_ON_CANCELLATION", "DELETE_ON_CANCELLATION"];
        config.insert("execution.checkpointing.externalized-checkpoint-retention".into(), text(pick(rng, &retentions)));
        // The jobmanager backend is drawn only where no invariant is about which backend ran.
        let invariants = &scenario.file.checks.invariants;
        if !invariants.contains(&crate::invariants::Invariant::SelfContained) {
            let backend = pick(rng, &["hashmap", "jobmanager", "rocksdb"]);
            config.insert("state.backend.type".into(), text(backend));
            if backend == "rocksdb" {
                config.insert("state.backend.incremental".into(), toml::Value::Boolean(rng.chance(0.5)));
            }
        }
    }
    let parallelism =
        rng.chance(0.5).then(|| 1 + rng.below(u64::from(scenario.file.job.parallelism.max(1) * 2)) as u32);
    Settings { config, parallelism }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SWARM: &str = r#"
name = "swarm-test"
about = "a swarm profile"

[job]
name = "sequence"
params = { partitions = 2, records = 200, keys = 8 }
parallelism = 2
task_managers = 2

[config]
"execution.checkpointing.interval" = "100 ms"
"state.backend" = "filesystem"
"restart-strategy" = "fixed-delay"
"restart-strategy.fixed-delay.attempts" = 1000
"restart-strategy.fixed-delay.delay" = "50 ms"

[swarm]
kinds = ["crash_task_manager", "crash_job_manager", "pause_node", "partition_node", "fail_subtask", "point_crash",
         "point_fail", "point_delay", "drop_rpc", "delay_rpc", "delay_barriers", "stall_snapshot", "storage_errors",
         "storage_full", "storage_stall", "slow_storage", "storage_crash"]
faults = "2..8"
settings = true
restarts = 2
savepoints = 2
buggify = true

[healing]
faults_until = "2 s"
finish_within = "30 s"

[checks]
invariants = ["exactly_once_output", "liveness"]
"#;

    #[test]
    fn every_drawn_profile_is_a_valid_scenario_that_reads_back_as_itself() {
        let scenario = scenario::parse(SWARM, Path::new("swarm-test.toml")).expect("valid");
        let mut kinds_seen = BTreeSet::new();
        for seed in 0..300 {
            let drawn = effective(&scenario, seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert!(drawn.file.swarm.is_none());
            for fault in &drawn.file.faults {
                kinds_seen.insert(toml::Value::try_from(fault).expect("serializes")["kind"].to_string());
            }
            let text = to_text(&drawn.file);
            let again =
                scenario::parse(&text, Path::new("saved.toml")).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
            assert_eq!(to_text(&again.file), text, "seed {seed}: the saved scenario is what ran");
            assert_eq!(effective(&scenario, seed).map(|s| to_text(&s.file)).ok(), Some(text), "a function of the seed");
        }
        // Every kind listed is drawn over 300 seeds: 17, of which the three `point_*` are all `at_point` faults.
        assert_eq!(kinds_seen.len(), 15, "kinds drawn: {kinds_seen:?}");
    }

    #[test]
    fn seeds_draw_different_profiles() {
        let scenario = scenario::parse(SWARM, Path::new("swarm-test.toml")).expect("valid");
        let profiles: BTreeSet<String> =
            (0..50).map(|seed| to_text(&effective(&scenario, seed).expect("valid").file)).collect();
        assert!(profiles.len() >= 45, "{} distinct profiles of 50", profiles.len());
    }
}
