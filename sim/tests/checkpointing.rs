//! Checkpointing end to end on a simulated cluster, as scenarios run through the harness: exactly-once committed
//! output through a subtask failure with both backends, at-least-once losing nothing, a cancel and a resume from
//! the newest externalized checkpoint, retention, the jobmanager backend's size limit, a fault counted from a
//! checkpoint's phase, and a storage crash between a sink's rename and its fsync.
//!
//! Expected output comes from the workload's reference model (every record once, per-key totals from the
//! parameters alone), never from a run.

use engine::seam::runtime::SIMULATED;
use sim::runner::{self, RunOptions, RunReport};
use sim::scenario;
use std::path::Path;

/// Under simulation seeds are cheap; on tokio each run takes real time.
const SEEDS: u64 = if SIMULATED { 50 } else { 3 };

/// A `sequence` scenario: three partitions of 600 records over seven keys at parallelism 2, checkpoints every
/// 25 ms with state files (not inline state), `extra` config lines, then `rest` (faults, restarts, checks).
fn scenario(extra_config: &str, rest: &str) -> scenario::Scenario {
    let text = format!(
        r#"name = "checkpointing"
about = "checkpointing end to end"

[job]
name = "sequence"
params = {{ partitions = 3, records = 600, keys = 7, "records-per-second" = 2000 }}
parallelism = 2
task_managers = 2

[config]
"execution.checkpointing.interval" = "25 ms"
"state.backend.fs.memory-threshold" = "64 b"
"weir.channel.batch-size-records" = 16
"weir.channel.capacity-batches" = 2
"restart-strategy" = "fixed-delay"
"restart-strategy.fixed-delay.attempts" = 3
"restart-strategy.fixed-delay.delay" = "20 ms"
{extra_config}

{rest}
"#
    );
    scenario::parse(&text, Path::new("checkpointing.toml")).unwrap_or_else(|e| panic!("{e}"))
}

const RETAIN: &str = "\"execution.checkpointing.externalized-checkpoint-retention\" = \"RETAIN_ON_CANCELLATION\"";

const HEALING: &str = "[healing]\nfaults_until = \"1 s\"\nfinish_within = \"30 s\"\n";

fn run(scenario: &scenario::Scenario, seed: u64) -> RunReport {
    runner::run(scenario, seed, RunOptions { faults: true, trace: false }, None)
}

fn assert_passed(report: &RunReport, what: &str) {
    assert!(report.error.is_none(), "seed {} {what}: {:?}", report.seed, report.error);
    assert!(report.violations.is_empty(), "seed {} {what}: {:#?}", report.seed, report.violations);
}

#[test]
fn exactly_once_output_through_a_subtask_failure_with_both_backends() {
    for backend in ["filesystem", "jobmanager"] {
        let failure = r#"[[fault]]
kind = "fail_subtask"
operator = "running-totals"
subtask = 0
when = { at = "150 ms" }"#;
        let checks = r#"[checks]
invariants = ["exactly_once_output", "no_loss_no_dup_in_order", "state_equals_reference", "checkpoint_ids_increase",
              "retained_count", "no_orphan_files", "metadata_readable", "liveness"]"#;
        let scenario =
            scenario(&format!("\"state.backend\" = \"{backend}\""), &format!("{failure}\n{HEALING}\n{checks}"));
        for seed in 0..SEEDS {
            let report = run(&scenario, seed);
            assert_passed(&report, backend);
            assert_eq!(
                report.attempts, 2,
                "seed {seed} {backend}: the injected failure must cause exactly one restart"
            );
            assert!(report.completed.len() >= 2, "seed {seed} {backend}: only {:?} completed", report.completed);
        }
    }
}

#[test]
fn at_least_once_loses_nothing_through_a_subtask_failure() {
    let rest = r#"[[fault]]
kind = "fail_subtask"
operator = "running-totals"
subtask = 1
when = { at = "150 ms" }

[healing]
faults_until = "1 s"
finish_within = "30 s"

[checks]
invariants = ["nothing_lost", "liveness"]"#;
    let scenario = scenario("\"execution.checkpointing.mode\" = \"AT_LEAST_ONCE\"", rest);
    for seed in 0..SEEDS {
        assert_passed(&run(&scenario, seed), "at least once");
    }
}

#[test]
fn resuming_from_the_newest_externalized_checkpoint_after_a_cancel_is_exactly_once() {
    let rest = format!(
        r#"[[restart]]
at = "150 ms"
how = "cancel"

{HEALING}
[checks]
invariants = ["exactly_once_output", "no_loss_no_dup_in_order", "state_equals_reference", "retained_count",
              "no_orphan_files", "metadata_readable", "liveness"]"#
    );
    let scenario = scenario(RETAIN, &rest);
    for seed in 0..SEEDS {
        let report = run(&scenario, seed);
        assert_passed(&report, "cancel and resume");
        assert_eq!(report.restores, 1, "seed {seed}: one resume");
        assert_eq!(report.checkpoint_dirs.len(), 2, "seed {seed}: one checkpoint directory per job");
    }
}

#[test]
fn num_retained_keeps_exactly_the_newest_checkpoints_and_no_orphans() {
    let checks = "[checks]\ninvariants = [\"exactly_once_output\", \"no_orphan_files\", \"metadata_readable\"]";
    let scenario =
        scenario(&format!("{RETAIN}\n\"state.checkpoints.num-retained\" = 3"), &format!("{HEALING}\n{checks}"));
    for seed in 0..SEEDS {
        let report = run(&scenario, seed);
        assert_passed(&report, "retention");
        let [dir] = report.checkpoint_dirs.as_slice() else { panic!("seed {seed}: one job directory expected") };
        assert!(report.completed.len() >= 4, "seed {seed}: too few checkpoints to test retention");
        let newest_three = &report.completed[report.completed.len() - 3..];
        assert_eq!(dir.retained, newest_three, "seed {seed}: not the newest three completed checkpoints");
        assert!(dir.incomplete.is_empty(), "seed {seed}: incomplete checkpoints left: {:?}", dir.incomplete);
    }
}

#[test]
fn delete_on_cancellation_leaves_no_checkpoint_of_a_canceled_job() {
    let rest =
        format!("[[restart]]\nat = \"150 ms\"\nhow = \"cancel\"\n\n{HEALING}\n[checks]\ninvariants = [\"liveness\"]");
    let retention = "\"execution.checkpointing.externalized-checkpoint-retention\" = \"DELETE_ON_CANCELLATION\"";
    let scenario = scenario(retention, &rest);
    for seed in 0..SEEDS {
        let report = run(&scenario, seed);
        assert!(report.error.is_none(), "seed {seed}: {:?}", report.error);
        assert!(
            report.checkpoint_dirs.iter().all(|r| r.retained.is_empty() && r.incomplete.is_empty()),
            "seed {seed}: checkpoints left after cancel: {:?}",
            report.checkpoint_dirs
        );
    }
}

#[test]
fn jobmanager_backend_state_above_its_limit_fails_the_job_for_good_with_a_clear_error() {
    let config = "\"state.backend\" = \"jobmanager\"\n\"weir.state.jobmanager.max-state-size\" = \"16 b\"";
    let scenario = scenario(config, &format!("{HEALING}\n[checks]\ninvariants = [\"liveness\"]"));
    let report = run(&scenario, 1);
    let error = report.error.expect("the job must fail");
    assert!(error.contains("exceeds the jobmanager backend's limit") && error.contains("every attempt"), "{error}");
}

/// [`run`], keeping the trace.
fn run_traced(scenario: &scenario::Scenario, seed: u64) -> RunReport {
    runner::run(scenario, seed, RunOptions { faults: true, trace: true }, None)
}

/// The simulated time a trace line was written at, in microseconds.
fn micros(line: &str) -> u64 {
    let seconds =
        line.split_whitespace().next().and_then(|t| t.strip_suffix('s')).expect("a trace line starts with its time");
    (seconds.parse::<f64>().expect("seconds") * 1e6).round() as u64
}

#[test]
fn a_fault_at_a_phase_with_an_offset_fires_that_long_after_the_phase() {
    let faults = r#"[[fault]]
kind = "crash_task_manager"
node = "tm-1"
when = { checkpoint = 2, phase = "completed", at = "7 ms" }
restart_after = "50 ms"
"#;
    let scenario =
        scenario(RETAIN, &format!("{faults}\n{HEALING}\n[checks]\ninvariants = [\"exactly_once_output\"]\n"));
    for seed in 0..SEEDS.min(10) {
        let report = run_traced(&scenario, seed);
        assert_passed(&report, "with a crash 7 ms after checkpoint 2 completed");
        if !SIMULATED {
            continue; // on tokio the trace has no exact simulated times to compare
        }
        let completed = report.trace.iter().find(|l| l.contains("checkpoint complete") && l.contains("checkpoint=2"));
        let fired = report.trace.iter().find(|l| l.contains("fault: firing"));
        let (completed, fired) = (completed.expect("checkpoint 2 completes"), fired.expect("the fault fires"));
        // The injector's action task hands the fault on: a few simulated microseconds on top.
        let after = micros(fired) - micros(completed);
        assert!((7_000..7_010).contains(&after), "seed {seed}, {after} us:\n{completed}\n{fired}");
    }
}

#[test]
fn a_storage_crash_between_a_sinks_rename_and_its_fsync_loses_no_commit() {
    let faults = r#"[[fault]]
kind = "at_point"
point = "sink_commit_applied"
action = "crash_storage"
nth = 1
delay = "1..100 ms"
"#;
    let invariants = "[checks]\ninvariants = [\"exactly_once_output\", \"no_loss_no_dup_in_order\", \"liveness\"]\n";
    let scenario = scenario(RETAIN, &format!("{faults}\n{HEALING}\n{invariants}"));
    for seed in 0..SEEDS {
        let report = run_traced(&scenario, seed);
        assert_passed(&report, "with a storage crash at a sink's commit");
        // The trace is the simulation's (on tokio it does not carry every task's events).
        assert!(
            !SIMULATED || report.trace.iter().any(|l| l.contains("fault: firing") && l.contains("crash_storage")),
            "seed {seed}: the crash point was never reached"
        );
    }
}
