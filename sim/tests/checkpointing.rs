//! Checkpointing end to end on a simulated cluster: exactly-once committed output through a
//! failure and through a cancel-and-resume from an externalized checkpoint, at-least-once
//! losing nothing, retention, and what the checkpoint directory holds afterwards.
//!
//! Expected output comes from the job's parameters alone (every record once, per-key totals
//! from `reference_totals`), never from a run.

use engine::config::{CheckpointingMode, ExternalizedRetention, JobConfig, RestartStrategy, StateBackendKind};
use engine::seam::runtime::SIMULATED;
use sim::harness::{self, CHECKPOINT_DIR, SimJob, SimOutcome};
use std::collections::{BTreeMap, BTreeSet};

/// Under simulation seeds are cheap; on tokio each run takes real time.
const SEEDS: u64 = if SIMULATED { 50 } else { 3 };

const PARTITIONS: u32 = 3;
const RECORDS: u64 = 600;
const KEYS: u64 = 7;

struct Setup {
    backend: StateBackendKind,
    mode: CheckpointingMode,
    retention: ExternalizedRetention,
    num_retained: u32,
    fail_once_at: Option<u64>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            backend: StateBackendKind::FileSystem,
            mode: CheckpointingMode::ExactlyOnce,
            retention: ExternalizedRetention::RetainOnCancellation,
            num_retained: 2,
            fail_once_at: None,
        }
    }
}

fn sequence_job(setup: Setup) -> SimJob {
    let mut config =
        JobConfig { parallelism: Some(2), batch_size_records: 16, channel_capacity_batches: 2, ..JobConfig::default() };
    config.state_backend = setup.backend;
    config.restart = RestartStrategy::FixedDelay { attempts: 3, delay_ms: 20 };
    let checkpoint = &mut config.checkpoint;
    checkpoint.interval_ms = Some(25);
    checkpoint.mode = setup.mode;
    checkpoint.dir = Some(CHECKPOINT_DIR.to_string());
    checkpoint.externalized = setup.retention;
    checkpoint.num_retained = setup.num_retained;
    // Small enough that the filesystem backend writes state files, not inline state.
    checkpoint.inline_threshold_bytes = 64;
    let mut parameters = BTreeMap::from([
        ("partitions".to_string(), PARTITIONS.to_string()),
        ("records".to_string(), RECORDS.to_string()),
        ("keys".to_string(), KEYS.to_string()),
        ("records-per-second".to_string(), "2000".to_string()),
    ]);
    if let Some(at) = setup.fail_once_at {
        parameters.insert("fail-once-at".to_string(), at.to_string());
    }
    SimJob { job: "sequence".into(), parameters, config, task_managers: 2, inputs: Vec::new() }
}

fn reference_records() -> Vec<String> {
    let mut lines = Vec::new();
    for partition in 0..PARTITIONS {
        for number in 0..RECORDS {
            lines.push(format!("r {partition} {number} {}", number % KEYS));
        }
    }
    lines.sort();
    lines
}

fn reference_output() -> Vec<String> {
    engine::jobs::sequence::reference_lines(PARTITIONS, RECORDS, KEYS)
}

/// Within the committed output (files in commit order), every (partition, key) sees its
/// numbers strictly ascending: no duplicate, no reordering.
fn assert_in_order(seed: u64, outcome: &SimOutcome) {
    let mut last: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for line in outcome.output.lines().filter(|l| l.starts_with("r ")) {
        let fields: Vec<u64> = line[2..].split(' ').map(|f| f.parse().unwrap()).collect();
        if let Some(previous) = last.insert((fields[0], fields[2]), fields[1]) {
            assert!(previous < fields[1], "seed {seed}: `{line}` after number {previous}");
        }
    }
}

fn assert_clean_checkpoint_dirs(seed: u64, outcome: &SimOutcome) {
    for report in &outcome.checkpoint_dirs {
        assert!(report.problems.is_empty(), "seed {seed}: {}: {:?}", report.job_dir.display(), report.problems);
        assert!(report.incomplete.is_empty(), "seed {seed}: {}: {:?}", report.job_dir.display(), report.incomplete);
    }
}

#[test]
fn exactly_once_output_through_a_failure_with_both_backends() {
    let expected = reference_output();
    for backend in [StateBackendKind::FileSystem, StateBackendKind::JobManager] {
        for seed in 0..SEEDS {
            let job = sequence_job(Setup { backend, fail_once_at: Some(RECORDS / 2), ..Setup::default() });
            let outcome = harness::run(seed, &job).unwrap_or_else(|e| panic!("seed {seed} {backend:?}: {e}"));
            assert_eq!(
                outcome.attempts, 2,
                "seed {seed} {backend:?}: the injected failure must cause exactly one restart"
            );
            assert!(outcome.completed.len() >= 2, "seed {seed} {backend:?}: only {:?} completed", outcome.completed);
            assert_eq!(outcome.canonical(), expected, "seed {seed} {backend:?}: committed output is not exactly once");
            assert_in_order(seed, &outcome);
            assert_clean_checkpoint_dirs(seed, &outcome);
        }
    }
}

#[test]
fn at_least_once_loses_nothing_through_a_failure() {
    let expected: BTreeSet<String> = reference_records().into_iter().collect();
    for seed in 0..SEEDS {
        let job = sequence_job(Setup {
            mode: CheckpointingMode::AtLeastOnce,
            fail_once_at: Some(RECORDS / 2),
            ..Setup::default()
        });
        let outcome = harness::run(seed, &job).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let got: BTreeSet<String> =
            outcome.output.lines().filter(|l| l.starts_with("r ")).map(str::to_string).collect();
        let missing: Vec<&String> = expected.difference(&got).take(5).collect();
        assert!(missing.is_empty(), "seed {seed}: lost records, e.g. {missing:?}");
    }
}

#[test]
fn resuming_from_an_externalized_checkpoint_after_cancel_is_exactly_once() {
    let expected = reference_output();
    for seed in 0..SEEDS {
        let job = sequence_job(Setup::default());
        let outcome = harness::run_cancel_and_resume(seed, &job, 150).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(outcome.canonical(), expected, "seed {seed}: committed output is not exactly once");
        assert_in_order(seed, &outcome);
        assert_clean_checkpoint_dirs(seed, &outcome);
        assert_eq!(outcome.checkpoint_dirs.len(), 2, "seed {seed}: one checkpoint directory per job");
    }
}

#[test]
fn num_retained_keeps_exactly_the_newest_checkpoints_and_no_orphans() {
    for seed in 0..SEEDS {
        let job = sequence_job(Setup { num_retained: 3, ..Setup::default() });
        let outcome = harness::run(seed, &job).unwrap();
        let [report] = outcome.checkpoint_dirs.as_slice() else { panic!("seed {seed}: one job directory expected") };
        assert!(outcome.completed.len() >= 4, "seed {seed}: too few checkpoints to test retention");
        let newest_three = &outcome.completed[outcome.completed.len() - 3..];
        assert_eq!(report.retained, newest_three, "seed {seed}: not the newest three completed checkpoints");
        assert!(report.problems.is_empty(), "seed {seed}: {:?}", report.problems);
        assert!(report.incomplete.is_empty(), "seed {seed}: incomplete checkpoints left: {:?}", report.incomplete);
    }
}

#[test]
fn delete_on_cancellation_leaves_no_checkpoint_after_cancel() {
    for seed in 0..SEEDS {
        let job = sequence_job(Setup { retention: ExternalizedRetention::DeleteOnCancellation, ..Setup::default() });
        let outcome = harness::run_cancel_and_resume(seed, &job, 150).unwrap();
        assert!(
            outcome.checkpoint_dirs.iter().all(|r| r.retained.is_empty() && r.incomplete.is_empty()),
            "seed {seed}: checkpoints left after cancel: {:?}",
            outcome.checkpoint_dirs
        );
    }
}

#[test]
fn jobmanager_backend_state_above_its_limit_fails_the_job_with_a_clear_error() {
    let mut job = sequence_job(Setup { backend: StateBackendKind::JobManager, ..Setup::default() });
    job.config.checkpoint.jobmanager_max_state_bytes = 16;
    job.config.restart = RestartStrategy::None;
    let error = harness::run(1, &job).unwrap_err().to_string();
    assert!(
        error.contains("checkpoints failed") || error.contains("exceeds the jobmanager backend's limit"),
        "{error}"
    );
}
