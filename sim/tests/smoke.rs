//! The smoke scenario suite as a test: every smoke scenario over 32 seeds must pass every
//! invariant and commit the same canonical output, which is compared with its insta
//! snapshot in `snapshots/`; the canary must be caught on every seed; a seed must replay
//! with the same trace, byte for byte. Seeds and replay mean something only under the
//! simulator, so this file is compiled only there (`cargo stest`, `cargo x test`).

#![cfg(madsim)]

use sim::runner::{self, RunOptions};
use sim::scenario::{self, Scenario};
use sim::suite;
use std::path::Path;

const SEEDS: u64 = 32;

fn scenarios(dir: &str) -> Vec<Scenario> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(dir);
    let paths = scenario::discover(&root).unwrap();
    assert!(!paths.is_empty(), "no scenarios under {}", root.display());
    paths.iter().map(|p| scenario::load(p).unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// 64-bit FNV-1a of the sorted lines: a digest that names the committed output exactly.
fn digest(lines: &[String]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in lines.iter().flat_map(|l| l.bytes().chain(std::iter::once(b'\n'))) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The canonical recovery output of one seed: what must not depend on the seed.
fn canonical(scenario: &Scenario, output: &str, completed: usize, restores: u32) -> String {
    let mut lines: Vec<String> = output.lines().map(str::to_string).collect();
    lines.sort();
    if scenario.config.checkpoint.mode == engine::config::CheckpointingMode::AtLeastOnce {
        // Replays may legitimately duplicate records and inflate totals: only the set of
        // distinct records is a function of the semantics.
        lines.retain(|l| l.starts_with("r "));
        lines.dedup();
        let mut text = format!("scenario: {}\nabout: {}\n", scenario.name(), scenario.file.about);
        text.push_str(&format!("distinct records committed: {}, digest {}\n", lines.len(), digest(&lines)));
        text.push_str(&format!("checkpoints completed: {}\n", if completed > 0 { "yes" } else { "no" }));
        return text;
    }
    let records = lines.iter().filter(|l| l.starts_with("r ")).count();
    let state: Vec<&String> = lines.iter().filter(|l| records == 0 || l.starts_with("k ")).collect();
    let mut text = format!("scenario: {}\nabout: {}\n", scenario.name(), scenario.file.about);
    text.push_str(&format!("committed output: {} lines, digest {}\n", lines.len(), digest(&lines)));
    if records > 0 {
        text.push_str(&format!("records: {records}\n"));
    }
    text.push_str("final state:\n");
    for line in state {
        text.push_str(&format!("  {line}\n"));
    }
    text.push_str(&format!("checkpoints completed: {}\n", if completed > 0 { "yes" } else { "no" }));
    text.push_str(&format!("restored from externalized checkpoints: {}\n", if restores > 0 { "yes" } else { "no" }));
    text
}

#[test]
fn smoke_scenarios_pass_on_every_seed_and_match_their_snapshots() {
    for scenario in scenarios("smoke") {
        let fault_free = suite::fault_free_output(&scenario).unwrap();
        let mut first: Option<(u64, String)> = None;
        for seed in 0..SEEDS {
            let report = runner::run(&scenario, seed, RunOptions { faults: true, trace: false }, Some(&fault_free));
            let replay = suite::replay_command("cargo x sim", &scenario.path, seed);
            assert!(report.error.is_none(), "{}: {:?}\n  replay: {replay}", scenario.name(), report.error);
            assert!(report.violations.is_empty(), "{}: {:#?}\n  replay: {replay}", scenario.name(), report.violations);
            let text = canonical(&scenario, &report.output, report.completed.len(), report.restores);
            match &first {
                None => first = Some((seed, text)),
                Some((first_seed, expected)) => {
                    assert_eq!(
                        &text,
                        expected,
                        "{}: seed {seed} and seed {first_seed} committed different outputs",
                        scenario.name()
                    )
                }
            }
        }
        let (_, text) = first.expect("at least one seed");
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(scenario.name().to_string(), text);
        });
    }
}

#[test]
fn the_canary_is_caught() {
    for scenario in scenarios("negative") {
        let expected =
            scenario.file.checks.expect_violation.expect("negative scenarios name the violation they expect");
        let fault_free = suite::fault_free_output(&scenario).unwrap();
        let seeds = SEEDS;
        let caught = (0..seeds)
            .filter(|&seed| {
                let report = runner::run(&scenario, seed, RunOptions { faults: true, trace: false }, Some(&fault_free));
                report.violations.iter().any(|v| v.invariant == expected)
            })
            .count() as u64;
        assert_eq!(caught, seeds, "{}: the checkers missed the deliberate bug on some seeds", scenario.name());
    }
}

#[test]
fn a_seed_replays_in_a_fresh_process_with_the_same_trace_byte_for_byte() {
    let fresh = suite::FreshProcess { program: env!("CARGO_BIN_EXE_weir-sim").into() };
    // After the other scenarios have run in this process, as in a suite.
    for scenario in scenarios("negative").iter().chain(scenarios("smoke").iter().take(3)) {
        let lines =
            suite::check_determinism(scenario, 5, &fresh).unwrap_or_else(|e| panic!("{}: {e}", scenario.name()));
        assert!(lines > 50, "{}: a trace of {lines} lines is too short to mean anything", scenario.name());
    }
}
