//! `weir-sim shrink` on a real failure: the eager-commit canary's broken sink, under its storage crash plus decoy
//! faults that do not matter, as an ordinary scenario (no expected violation, so it simply fails). The shrunk file
//! keeps the crash, drops the decoys, makes the workload smaller, and fails the same invariant on the same seed
//! when replayed. Compiled only under simulation, where a seed is a run.

#![cfg(madsim)]

use sim::invariants::Invariant;
use sim::runner::{self, RunOptions};
use sim::shrink::Failure;
use sim::workload::Registry;
use std::path::Path;

const SEED: u64 = 1;

/// The canary, failing on its own, with four faults that play no part in its failure.
fn failing_scenario(dir: &Path) -> std::path::PathBuf {
    let canary = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/negative/eager-commit-canary.toml");
    let text = std::fs::read_to_string(canary).unwrap();
    let text = text.replace("expect_violation = \"exactly_once_output\"\n", "").replace(
        "[healing]",
        r#"[[fault]]
kind = "delay_rpc"
message = "notify"
rate = 0.05
delay = "1..3 ms"

[[fault]]
kind = "at_point"
point = "interleave_gate"
action = "delay"
rate = 0.01
delay = "0..2 ms"

[[fault]]
kind = "delay_barriers"
rate = 0.05
delay = "1..4 ms"

[[fault]]
kind = "pause_node"
node = "tm-1"
duration = "5 ms"
when = { at = "900 ms" }

[healing]"#,
    );
    let path = dir.join("canary-as-failure.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_failing_seed_shrinks_to_a_smaller_scenario_that_fails_the_same_way() {
    let dir = std::env::temp_dir().join(format!("weir-sim-shrink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let registry = Registry::standard();
    let scenario = sim::scenario::load_with(&failing_scenario(&dir), &registry).unwrap();
    assert_eq!(scenario.file.faults.len(), 6);

    let shrunk = sim::shrink::shrink(&scenario, SEED).unwrap();
    assert_eq!(shrunk.failure, Failure::Violated(Invariant::ExactlyOnceOutput));
    let out = dir.join("shrunk.toml");
    std::fs::write(&out, &shrunk.text).unwrap();
    let minimal = sim::scenario::load_with(&out, &registry).unwrap();
    // The crash that exposes the eager commit stays; the decoys go; the workload is smaller.
    assert!(minimal.file.faults.len() < 6, "faults left: {:?}", minimal.file.faults);
    assert!(
        minimal.file.faults.iter().any(|f| matches!(f, sim::scenario::FaultSpec::StorageCrash { .. })),
        "the storage crash must stay: {:?}",
        minimal.file.faults
    );
    assert!(
        minimal.file.faults.iter().all(|f| !matches!(f, sim::scenario::FaultSpec::PauseNode { .. })),
        "a 5 ms pause of one task manager plays no part"
    );
    let records = |s: &sim::scenario::Scenario| s.file.job.params["records"].as_integer().unwrap();
    assert!(records(&minimal) < records(&scenario), "{}", shrunk.changes.join(", "));
    assert!(shrunk.changes.iter().any(|c| c.starts_with("6 faults -> ")), "{:?}", shrunk.changes);

    // The shrunk file replays the failure: the same invariant breaks on the same seed, from a fresh load.
    let fault_free = sim::suite::fault_free_output(&minimal).unwrap();
    let report = runner::run(&minimal, SEED, RunOptions { faults: true, trace: false }, Some(&fault_free));
    assert!(report.violations.iter().any(|v| v.invariant == Invariant::ExactlyOnceOutput), "{:?}", report.violations);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_canary_shrinks_keeping_its_catch_and_a_passing_seed_is_refused() {
    let registry = Registry::standard();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let canary =
        sim::scenario::load_with(&root.join("scenarios/negative/eager-commit-canary.toml"), &registry).unwrap();
    let shrunk = sim::shrink::shrink(&canary, SEED).unwrap();
    assert_eq!(shrunk.failure, Failure::Violated(Invariant::ExactlyOnceOutput));
    assert!(shrunk.text.contains("expect_violation = \"exactly_once_output\""), "{}", shrunk.text);
    let passing = sim::scenario::load_with(&root.join("scenarios/smoke/at-least-once.toml"), &registry).unwrap();
    let error = sim::shrink::shrink(&passing, 0).err().expect("a passing seed is refused");
    assert!(error.to_string().contains("passes"), "{error}");
}
