//! A sweep spread over shards equals the sweep run whole: `weir-sim run --shard I/4` four times, then
//! `weir-sim merge`, gives the same seeds, the same pass counts, the same failing (scenario, seed) pairs and the
//! same distinct failures as one unsharded `run`, over the smoke suite, the canary and a broken sink (the canary
//! without its expectation, so that there are failures to compare). Seeds mean something only under the
//! simulator, so this file is compiled only there.

#![cfg(madsim)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEEDS: &str = "0..6";
const SHARDS: u64 = 4;

fn weir_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir-sim")).args(args).output().expect("weir-sim runs")
}

/// The smoke suite, the canary and a broken sink, copied into a scratch directory.
fn suite() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-sim-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let suite = dir.join("suite");
    std::fs::create_dir_all(&suite).unwrap();
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for entry in std::fs::read_dir(scenarios.join("smoke")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, suite.join(path.file_name().unwrap())).unwrap();
    }
    let canary = std::fs::read_to_string(scenarios.join("negative/eager-commit-canary.toml")).unwrap();
    std::fs::write(suite.join("eager-commit-canary.toml"), &canary).unwrap();
    let broken = canary
        .replace("name = \"eager-commit-canary\"", "name = \"broken-sink\"")
        .replace("expect_violation = \"exactly_once_output\"", "");
    std::fs::write(suite.join("broken-sink.toml"), broken).unwrap();
    suite
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A scenario's (name, seeds, passed, failed).
type Counts = (String, u64, u64, u64);

/// Per scenario: its counts; and every failing (scenario, seed) pair.
fn outcome(report: &Value) -> (BTreeSet<Counts>, BTreeSet<(String, u64)>) {
    let mut counts = BTreeSet::new();
    let mut failing = BTreeSet::new();
    for scenario in report["scenarios"].as_array().unwrap() {
        let name = scenario["name"].as_str().unwrap().to_string();
        let n = |key: &str| scenario[key].as_u64().unwrap();
        counts.insert((name.clone(), n("seeds"), n("passed"), n("failed")));
        for failure in scenario["failures"].as_array().unwrap() {
            failing.insert((name.clone(), failure["seed"].as_u64().unwrap()));
        }
    }
    (counts, failing)
}

#[test]
fn four_shards_merged_equal_the_unsharded_run() {
    let suite = suite();
    let dir = suite.parent().unwrap();
    let full = dir.join("full.json");
    let out =
        weir_sim(&["run", suite.to_str().unwrap(), "--seeds", SEEDS, "--jobs", "2", "--json", full.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "the broken sink fails: {}", String::from_utf8_lossy(&out.stdout));
    let mut shard_reports = Vec::new();
    for index in 1..=SHARDS {
        let path = dir.join(format!("shard-{index}.json"));
        let shard = format!("{index}/{SHARDS}");
        let args = ["run", suite.to_str().unwrap(), "--seeds", SEEDS, "--jobs", "2", "--shard", &shard];
        let out = weir_sim(&[&args[..], &["--json", path.to_str().unwrap()]].concat());
        assert!(out.status.code().is_some_and(|c| c <= 1), "shard {shard}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(report(&path)["shard"], shard.as_str());
        shard_reports.push(path);
    }
    let merged = dir.join("merged.json");
    let junit = dir.join("merged.xml");
    let mut args = vec!["merge".to_string()];
    args.extend(shard_reports.iter().map(|p| p.display().to_string()));
    args.extend(["--json".into(), merged.display().to_string(), "--junit".into(), junit.display().to_string()]);
    let out = weir_sim(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "the merge reports the failures: {stdout}");

    let (full, merged) = (report(&full), report(&merged));
    let (full_counts, full_failing) = outcome(&full);
    let (merged_counts, merged_failing) = outcome(&merged);
    assert_eq!(merged_counts, full_counts);
    assert_eq!(merged_failing, full_failing);
    let broken: Vec<u64> =
        full_failing.iter().filter(|(name, _)| name == "broken-sink").map(|(_, seed)| *seed).collect();
    assert_eq!(broken, (0..6).collect::<Vec<_>>(), "the broken sink fails on every seed");
    assert_eq!(merged["distinct_failures"], full["distinct_failures"]);
    // The broken sink's six seeds are one distinct failure, named by its first divergence.
    let distinct = merged["distinct_failures"].as_array().unwrap();
    assert_eq!(distinct.len(), 1, "{distinct:?}");
    assert_eq!(distinct[0]["count"], 6);
    assert_eq!(distinct[0]["first_divergence"], "duplicate at `part committed` on running-totals -> sink");
    assert!(
        stdout.contains("1 distinct failures:") && stdout.contains("broken-sink: 6 seed(s) (0, 1, 2, 3, 4, 5)"),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure message=\"6 of 6 seeds failed\">broken-sink: 6 seed(s)"), "{xml}");

    // A shard missing is an error, not a smaller green sweep.
    let out = weir_sim(&["merge", shard_reports[0].to_str().unwrap(), shard_reports[2].to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shards 2, 4 of 4 are missing"));
}
