//! Scenario files as data: every shipped scenario parses and its fault-free run commits its
//! reference model's output (on either runtime), and a bad file is an error naming the
//! file, the line and the key.

use sim::runner::{self, RunOptions};
use sim::scenario::{self, ScenarioError};
use std::path::{Path, PathBuf};

fn scenario_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios")
}

#[test]
fn every_shipped_scenario_parses_and_its_fault_free_run_matches_the_reference() {
    let paths = scenario::discover(&scenario_root()).unwrap();
    assert!(paths.len() >= 13, "expected the smoke suite and the canary, found {}", paths.len());
    for path in paths {
        let scenario = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let report = runner::run(&scenario, 0, RunOptions { faults: false, trace: false }, None);
        assert!(report.error.is_none(), "{}: {:?}", scenario.name(), report.error);
        let mut lines: Vec<String> = report.output.lines().map(str::to_string).collect();
        lines.sort();
        let reference = runner::reference_output(&scenario);
        if lines != reference {
            let extra: Vec<&String> = lines.iter().filter(|l| !reference.contains(l)).take(3).collect();
            let missing: Vec<&String> = reference.iter().filter(|l| !lines.contains(l)).take(3).collect();
            panic!(
                "{}: the fault-free run committed {} lines, the reference has {}; unexpected {extra:?}, missing {missing:?}",
                scenario.name(),
                lines.len(),
                reference.len()
            );
        }
    }
}

fn error(text: &str) -> String {
    match scenario::parse(text, Path::new("scenarios/smoke/broken.toml")) {
        Ok(_) => panic!("`{text}` should not parse"),
        Err(error @ ScenarioError::Invalid { .. }) => error.to_string(),
        Err(other) => panic!("unexpected error {other}"),
    }
}

const VALID: &str = r#"name = "ok"
about = "a valid scenario"

[job]
name = "sequence"
parallelism = 2
task_managers = 2

[config]
"execution.checkpointing.interval" = "100 ms"

[[fault]]
kind = "crash_task_manager"
node = "tm-1"
when = { at = "300 ms" }
restart_after = "100 ms"

[healing]
faults_until = "1 s"
finish_within = "10 s"

[checks]
invariants = ["exactly_once_output"]
"#;

#[test]
fn a_bad_scenario_file_is_an_error_naming_the_file_the_line_and_the_key() {
    assert!(scenario::parse(VALID, Path::new("ok.toml")).is_ok());

    let line = error(&VALID.replace("restart_after =", "restart_aftr ="));
    assert!(line.starts_with("scenarios/smoke/broken.toml:16:") && line.contains("restart_aftr"), "{line}");

    let line = error(&VALID.replace("kind = \"crash_task_manager\"", "kind = \"crash_everything\""));
    assert!(line.starts_with("scenarios/smoke/broken.toml:13:") && line.contains("crash_everything"), "{line}");

    let line = error(&VALID.replace("\"execution.checkpointing.interval\"", "\"execution.checkpointing.intervall\""));
    assert!(line.contains("broken.toml:10") && line.contains("execution.checkpointing.intervall"), "{line}");

    let line = error(&VALID.replace("node = \"tm-1\"", "node = \"tm-7\""));
    assert!(line.starts_with("scenarios/smoke/broken.toml:12:") && line.contains("tm-7"), "{line}");

    let line = error(&VALID.replace("\"exactly_once_output\"", "\"exactly_once\""));
    assert!(line.starts_with("scenarios/smoke/broken.toml:23:") && line.contains("exactly_once"), "{line}");

    let line = error(&VALID.replace("faults_until = \"1 s\"", "faults_until = \"soon\""));
    assert!(line.starts_with("scenarios/smoke/broken.toml:19:") && line.contains("soon"), "{line}");
}
