//! Faults that depend on exact simulated time and on the trace, checked where both are exact (under madsim): a
//! fault counted from a checkpoint's phase fires that long after it, and a storage crash at a sink's commit point
//! is reached and loses no commit.

#![cfg(madsim)]

use sim::runner::{self, RunOptions, RunReport};
use sim::scenario;
use std::path::Path;

const SEEDS: u64 = 50;

/// A `sequence` scenario: three partitions of 600 records over seven keys at parallelism 2, checkpoints every
/// 25 ms with state files, externalized checkpoints kept, then `rest` (faults, healing, checks).
fn scenario(rest: &str) -> scenario::Scenario {
    let text = format!(
        r#"name = "fault-timing"
about = "fault timing under simulation"

[job]
name = "sequence"
params = {{ partitions = 3, records = 600, keys = 7, "records-per-second" = 2000 }}
parallelism = 2
task_managers = 2

[config]
"execution.checkpointing.interval" = "25 ms"
"execution.checkpointing.externalized-checkpoint-retention" = "RETAIN_ON_CANCELLATION"
"state.backend.fs.memory-threshold" = "64 b"
"restart-strategy" = "fixed-delay"
"restart-strategy.fixed-delay.attempts" = 3
"restart-strategy.fixed-delay.delay" = "20 ms"

{rest}

[healing]
faults_until = "1 s"
finish_within = "30 s"
"#
    );
    scenario::parse(&text, Path::new("fault-timing.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn run(scenario: &scenario::Scenario, seed: u64) -> RunReport {
    runner::run(scenario, seed, RunOptions { faults: true, trace: true }, None)
}

fn assert_passed(report: &RunReport, what: &str) {
    assert!(report.error.is_none(), "seed {} {what}: {:?}", report.seed, report.error);
    assert!(report.violations.is_empty(), "seed {} {what}: {:#?}", report.seed, report.violations);
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
    let scenario = scenario(&format!("{faults}\n[checks]\ninvariants = [\"exactly_once_output\"]\n"));
    for seed in 0..10 {
        let report = run(&scenario, seed);
        assert_passed(&report, "with a crash 7 ms after checkpoint 2 completed");
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
    let scenario = scenario(&format!("{faults}\n{invariants}"));
    for seed in 0..SEEDS {
        let report = run(&scenario, seed);
        assert_passed(&report, "with a storage crash at a sink's commit");
        assert!(
            report.trace.iter().any(|l| l.contains("fault: firing") && l.contains("crash_storage")),
            "seed {seed}: the crash point was never reached"
        );
    }
}
