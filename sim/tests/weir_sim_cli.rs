//! `weir-sim` as a user drives it: a failing scenario prints a copyable replay command; the
//! replay reproduces the same failure and writes the same trace, byte for byte, twice in a
//! row; the JSON and JUnit reports describe the failure; `--check-determinism` passes.
//! Replay is a property of the simulator, so this file is compiled only under simulation.

#![cfg(madsim)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn weir_sim(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new(env!("CARGO_BIN_EXE_weir-sim")).args(args).current_dir(root).output().expect("weir-sim runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-sim-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_failing_seed_prints_a_replay_command_that_reproduces_it_byte_for_byte() {
    let dir = scratch("replay");
    // The canary without its expectation: an ordinary scenario whose sink is broken.
    let canary = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/negative/eager-commit-canary.toml"),
    )
    .unwrap();
    let broken = dir.join("broken-sink.toml");
    std::fs::write(&broken, canary.replace("expect_violation = \"exactly_once_output\"", "")).unwrap();
    let (json, junit) = (dir.join("report.json"), dir.join("report.xml"));
    let out = weir_sim(&[
        "run",
        broken.to_str().unwrap(),
        "--seeds",
        "0..3",
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let replay = format!("replay: cargo x sim replay {} --seed 0", broken.display());
    assert!(stdout.contains(&replay), "no replay command in:\n{stdout}");
    assert!(stdout.contains("invariant `exactly_once_output` violated (seed 0"), "{stdout}");

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["scenarios"][0]["failed"], 3);
    assert_eq!(report["scenarios"][0]["failures"][0]["violations"][0]["invariant"], "exactly_once_output");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<failure message=\"3 of 3 seeds failed\">") && xml.contains("replay: cargo x sim replay"),
        "{xml}"
    );

    let mut traces = Vec::new();
    let mut outputs = Vec::new();
    for attempt in 0..2 {
        let trace = dir.join(format!("trace-{attempt}"));
        let out = weir_sim(&["replay", broken.to_str().unwrap(), "--seed", "0", "--trace", trace.to_str().unwrap()]);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(1), "the replay must fail again:\n{stdout}");
        assert!(stdout.contains("chosen by the seed: weir.channel.batch-size-records"), "{stdout}");
        // Everything but the wall-clock duration must repeat.
        outputs.push(stdout.lines().filter(|l| !l.starts_with("simulated ")).map(str::to_string).collect::<Vec<_>>());
        traces.push(std::fs::read(&trace).unwrap());
    }
    assert_eq!(outputs[0], outputs[1], "the replay printed different results");
    assert!(traces[0].len() > 1000, "the trace is suspiciously short");
    assert_eq!(traces[0], traces[1], "the replay's trace differs between two runs");
}

#[test]
fn check_determinism_passes_for_a_smoke_scenario() {
    let out = weir_sim(&["run", "scenarios/smoke/job-manager-crash.toml", "--seeds", "0..3", "--check-determinism"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("job-manager-crash") && stdout.contains("3 seeds deterministic"), "{stdout}");
    assert!(stdout.contains("0 diverged"), "{stdout}");
}
