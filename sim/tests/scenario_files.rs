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
        let reference = scenario.workload.reference().lines;
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
        Err(error @ (ScenarioError::Invalid { .. } | ScenarioError::Config(_))) => error.to_string(),
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

/// `VALID` with `extra` appended (more blocks at the end of the file).
fn with(extra: &str) -> String {
    format!("{VALID}\n{extra}")
}

#[test]
fn a_scenario_that_cannot_work_is_an_error_before_any_seed_runs() {
    let at = |line: &str, needle: &str| {
        assert!(line.starts_with("scenarios/smoke/broken.toml:") && line.contains(needle), "`{needle}` not in: {line}")
    };
    // The job cannot be built: each is the scenario's error, naming the parameter.
    at(&error(&VALID.replace("task_managers = 2", "task_managers = 2\nparams = { colour = 3 }")), "colour");
    at(&error(&VALID.replace("task_managers = 2", "task_managers = 2\nparams = { records = \"lots\" }")), "lots");
    at(&error(&VALID.replace("task_managers = 2", "task_managers = 2\nparams = { partitions = 0 }")), "partitions");
    at(&error(&VALID.replace("task_managers = 2", "task_managers = 2\nparams = { keys = 0 }")), "keys");
    let above_max = VALID.replace(
        "\"execution.checkpointing.interval\" = \"100 ms\"",
        "\"execution.checkpointing.interval\" = \"100 ms\"\n\"pipeline.max-parallelism\" = 1",
    );
    at(&error(&above_max), "max parallelism");
    at(&error(&VALID.replace("task_managers = 2", "task_managers = 100000")), "at most");
    // Faults that can never fire.
    at(&error(&VALID.replace("when = { at = \"300 ms\" }", "when = { at = \"5 s\" }")), "never fire");
    at(
        &error(&VALID.replace("when = { at = \"300 ms\" }", "when = { checkpoint = 0, phase = \"acked\" }")),
        "checkpoint = 0",
    );
    at(&error(&VALID.replace("node = \"tm-1\"", "node = \"tm-01\"")), "tm-01");
    let twice = "[[fault]]\nkind = \"stall_snapshot\"\nrate = 0.1\ndelay = \"1..2 ms\"\n";
    at(&error(&with(&format!("{twice}{twice}"))), "second `stall_snapshot`");
    // Restarts that cannot happen as written.
    at(&error(&with("[[restart]]\nat = \"500 ms\"\nhow = \"cancel\"\nparallelism = 1000\n")), "max parallelism");
    at(
        &error(&with(
            "[[restart]]\nat = \"500 ms\"\nhow = \"cancel\"\n[[restart]]\nat = \"400 ms\"\nhow = \"cancel\"\n",
        )),
        "time order",
    );
    at(&error(&with("[[restart]]\nat = \"1000 h\"\nhow = \"cancel\"\n")), "after the run ends");
    // Invariants that cannot say anything here.
    at(&error(&VALID.replace("[\"exactly_once_output\"]", "[\"savepoints_kept\"]")), "no `[[savepoint]]` step");
    let wordcount = VALID
        .replace("name = \"sequence\"", "name = \"wordcount\"")
        .replace("[\"exactly_once_output\"]", "[\"no_loss_no_dup_in_order\"]");
    at(&error(&wordcount), "promises no order");
    at(&error(&VALID.replace("name = \"sequence\"", "name = \"sequense\"")), "known: ");
}

#[test]
fn a_config_error_names_the_file_and_line_once() {
    let line = error(&VALID.replace("\"100 ms\"", "\"soon\""));
    assert_eq!(line.matches("broken.toml").count(), 1, "{line}");
    assert!(!line.contains(":0:"), "{line}");
}

#[test]
fn a_directory_walk_visits_each_scenario_once_even_through_link_loops() {
    let dir = std::env::temp_dir().join(format!("weir-scenario-walk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("a").join("one.toml"), VALID).unwrap();
    // A loop back to the top, and a second name for the same directory.
    std::os::unix::fs::symlink(&dir, dir.join("a").join("loop")).unwrap();
    std::os::unix::fs::symlink(dir.join("a"), dir.join("b")).unwrap();
    let found = scenario::discover(&dir).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Values that parse but make the scenario meaningless are errors naming the line: a healing
/// phase too short for any job to finish, and swarm lists that leave nothing to draw from.
#[test]
fn meaningless_healing_and_swarm_values_are_errors_naming_the_line() {
    let line = error(&VALID.replace("finish_within = \"10 s\"", "finish_within = \"0 ms\""));
    assert!(line.starts_with("scenarios/smoke/broken.toml:20:") && line.contains("`finish_within` is 0ns"), "{line}");
    let line = error(&VALID.replace("finish_within = \"10 s\"", "finish_within = \"99 ms\""));
    assert!(line.starts_with("scenarios/smoke/broken.toml:20:") && line.contains("at least 100ms"), "{line}");

    let line = error(&with("[swarm]\nkinds = []\nfaults = \"1..6\"\nbuggify = true\n"));
    assert!(
        line.starts_with("scenarios/smoke/broken.toml:25:") && line.contains("`kinds` lists no fault kind"),
        "{line}"
    );
    let line = error(&with("[swarm]\nkinds = []\npoints = [\"barrier\"]\nbuggify = true\n"));
    assert!(
        line.starts_with("scenarios/smoke/broken.toml:25:") && line.contains("`kinds` lists no fault kind"),
        "{line}"
    );
    let line = error(&with("[swarm]\nkinds = [\"point_fail\"]\npoints = []\n"));
    assert!(
        line.starts_with("scenarios/smoke/broken.toml:25:") && line.contains("`points = []` allows no point"),
        "{line}"
    );
    // Without a point kind, or with the defaults, the same lists are fine.
    scenario::parse(&with("[swarm]\nkinds = [\"fail_subtask\"]\npoints = []\n"), Path::new("ok.toml")).unwrap();
    scenario::parse(&with("[swarm]\nkinds = []\nbuggify = true\n"), Path::new("ok.toml")).unwrap();
}

#[test]
fn a_storage_crash_at_a_point_waits_only_where_the_point_can() {
    let at_point = |point: &str, delay: &str| {
        with(&format!(
            "[[fault]]\nkind = \"at_point\"\npoint = \"{point}\"\naction = \"crash_storage\"\nnth = 1\n{delay}"
        ))
    };
    assert!(scenario::parse(&at_point("sink_commit_applied", "delay = \"1..100 ms\"\n"), Path::new("ok.toml")).is_ok());
    assert!(scenario::parse(&at_point("snapshot_completed", ""), Path::new("ok.toml")).is_ok());
    let line = error(&at_point("snapshot_completed", "delay = \"1..100 ms\"\n"));
    assert!(line.contains("cannot wait"), "{line}");
    let crash =
        "[[fault]]\nkind = \"at_point\"\npoint = \"sink_commit\"\naction = \"crash\"\nnth = 1\ndelay = \"1 ms\"\n";
    let line = error(&with(crash));
    assert!(line.contains("`delay` goes with"), "{line}");
    // An offset from a phase is an `at` with it; an `after` an event takes no phase.
    let offset =
        "[[fault]]\nkind = \"storage_crash\"\nwhen = { checkpoint = 2, phase = \"completed\", at = \"4 ms\" }\n";
    assert!(scenario::parse(&with(offset), Path::new("ok.toml")).is_ok());
}
