//! Savepoints as a user drives them: start `sequence` at parallelism 2, take a savepoint with
//! `weir savepoint` while it runs, stop it with `weir stop --savepoint-path`, move the
//! savepoint directory elsewhere, and resume from the moved copy at parallelism 3 and at 1:
//! each resumed run's committed output equals an uninterrupted run's (the reference model).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PARTITIONS: u32 = 4;
const RECORDS: u64 = 8000;
const KEYS: u64 = 16;

fn reference() -> Vec<String> {
    engine::jobs::sequence::reference_lines(PARTITIONS, RECORDS, KEYS, 0)
}

fn weir_in(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir")).args(args).env("WEIR_HOME", home).output().expect("weir runs")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn stop_with_savepoint_move_it_and_resume_at_parallelism_3_and_1() {
    let dir = scratch("savepoint");
    let home = dir.join("home");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "execution.checkpointing.interval: 100 ms\nstate.checkpoints.dir: {}\nstate.savepoints.dir: {}\nstate.backend: filesystem\nstate.backend.fs.memory-threshold: 0\n",
            dir.join("checkpoints").display(),
            dir.join("savepoints").display()
        ),
    )
    .unwrap();
    let output = dir.join("out.txt");
    let params = [
        format!("partitions={PARTITIONS}"),
        format!("records={RECORDS}"),
        format!("keys={KEYS}"),
        "records-per-second=4000".to_string(),
    ];
    let mut args = vec![
        "run",
        "--job",
        "sequence",
        "--output",
        output.to_str().unwrap(),
        "-p",
        "2",
        "--config",
        config.to_str().unwrap(),
    ];
    for param in &params {
        args.extend(["--param", param.as_str()]);
    }
    let mut run = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&args)
        .env("WEIR_HOME", &home)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait for the job to register and complete a checkpoint.
    let job = wait_for_listed_job(&home, |line| line.contains("RUNNING") && !line.contains("checkpoints completed: 0"));

    let taken = weir_in(&home, &["savepoint", &job[..8]]);
    assert!(taken.status.success(), "{}", String::from_utf8_lossy(&taken.stderr));
    let savepoint = PathBuf::from(String::from_utf8(taken.stdout).unwrap().trim());
    assert!(savepoint.join("_metadata").is_file(), "no savepoint at {}", savepoint.display());
    assert!(savepoint.file_name().unwrap().to_string_lossy().starts_with(&format!("savepoint-{}-", &job[..6])));

    let stopped = weir_in(&home, &["stop", "--savepoint-path", dir.join("stops").to_str().unwrap(), &job]);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    let stop_savepoint = PathBuf::from(String::from_utf8(stopped.stdout).unwrap().trim());
    let status = run.wait().unwrap();
    assert!(status.success(), "the stopped job must end cleanly");
    let listed = String::from_utf8(weir_in(&home, &["list"]).stdout).unwrap();
    assert!(!listed.contains(&job), "a stopped job is no longer listed: {listed}");

    // Move the savepoint: it is relocatable, as inspect says. Each resume needs the output
    // committed so far.
    let moved = dir.join("elsewhere").join("my-savepoint");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&stop_savepoint, &moved).unwrap();
    let inspected = weir_in(&home, &["checkpoints", "inspect", "--verify", moved.to_str().unwrap()]);
    let text = String::from_utf8(inspected.stdout).unwrap();
    assert!(inspected.status.success(), "{text}");
    assert!(
        text.contains("Savepoint ") && text.contains("self-contained: true") && text.contains("verified: "),
        "{text}"
    );
    let parts = dir.join("out.txt.parts");
    for parallelism in ["3", "1"] {
        let resumed_output = dir.join(format!("resumed-{parallelism}.txt"));
        copy_dir(&parts, &dir.join(format!("resumed-{parallelism}.txt.parts")));
        let mut args = vec![
            "run",
            "--job",
            "sequence",
            "--output",
            resumed_output.to_str().unwrap(),
            "-p",
            parallelism,
            "--config",
            config.to_str().unwrap(),
        ];
        for param in &params {
            args.extend(["--param", param.as_str()]);
        }
        args.extend(["-s", moved.to_str().unwrap()]);
        let resumed = weir_in(&home, &args);
        assert!(resumed.status.success(), "resume at p={parallelism}: {}", String::from_utf8_lossy(&resumed.stderr));
        assert_eq!(
            sorted_lines(&resumed_output),
            reference(),
            "resume at p={parallelism}: output differs from an uninterrupted run"
        );
    }

    // A savepoint missing a state file is a precise error, not a panic.
    let broken = dir.join("broken-savepoint");
    copy_dir(&moved, &broken);
    let state_file =
        std::fs::read_dir(&broken).unwrap().flatten().find(|e| e.file_name() != "_metadata").expect("a state file");
    std::fs::remove_file(state_file.path()).unwrap();
    let never = dir.join("never.txt");
    let mut args = vec!["run", "--job", "sequence", "--output", never.to_str().unwrap(), "-p", "2"];
    args.extend(["-s", broken.to_str().unwrap()]);
    let failed = weir_in(&home, &args);
    let error = String::from_utf8(failed.stderr).unwrap();
    assert!(!failed.status.success() && !error.contains("panicked"), "{error}");
    assert!(error.contains(&*state_file.file_name().to_string_lossy()) && error.contains("is missing"), "{error}");
}

#[test]
fn weir_cancel_ends_a_running_job_and_unknown_jobs_are_clear_errors() {
    let dir = scratch("cancel");
    let home = dir.join("home");
    let output = dir.join("out.txt");
    let args = [
        "run",
        "--job",
        "sequence",
        "--output",
        output.to_str().unwrap(),
        "--param",
        "records=1000000",
        "--param",
        "records-per-second=1000",
    ];
    let mut run = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_HOME", &home)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let job = wait_for_listed_job(&home, |line| line.contains("RUNNING"));
    // Without checkpointing there is nothing to take a savepoint of: a clear error.
    let refused = weir_in(&home, &["savepoint", &job]);
    let message = String::from_utf8(refused.stderr).unwrap();
    assert!(!refused.status.success() && message.contains("checkpoints"), "{message}");

    // An empty id is no prefix of the one running job: it would cancel it.
    let empty = weir_in(&home, &["cancel", ""]);
    let message = String::from_utf8(empty.stderr).unwrap();
    assert!(!empty.status.success() && message.contains("the job id is empty"), "{message}");
    let empty = weir_in(&home, &["savepoint", ""]);
    let message = String::from_utf8(empty.stderr).unwrap();
    assert!(!empty.status.success() && message.contains("the job id is empty"), "{message}");
    // A savepoint target is checked as `state.savepoints.dir` is: no local `s3:` directory.
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    for args in [&["savepoint", &job, "s3://bucket/x"][..], &["stop", "--savepoint-path", "s3://x", &job]] {
        let refused = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .env("WEIR_HOME", &home)
            .current_dir(&cwd)
            .output()
            .unwrap();
        let message = String::from_utf8(refused.stderr).unwrap();
        assert!(
            !refused.status.success() && message.contains("the `s3://` scheme is not supported"),
            "{args:?}: {message}"
        );
    }
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0, "nothing was written to a local `s3:` directory");

    let canceled = weir_in(&home, &["cancel", &job[..10]]);
    assert!(canceled.status.success(), "{}", String::from_utf8_lossy(&canceled.stderr));
    assert_eq!(run.wait().unwrap().code(), Some(130), "a canceled `weir run` exits with 130");

    let unknown = weir_in(&home, &["cancel", "ffffffff"]);
    let message = String::from_utf8(unknown.stderr).unwrap();
    assert!(!unknown.status.success() && message.contains("no running job matches `ffffffff`"), "{message}");
}

/// Registry entries of runs that are gone are not jobs: a dead process's entry is dropped,
/// and an entry whose port another job's endpoint now answers on is refused by that endpoint.
#[test]
fn registry_entries_of_dead_runs_are_not_listed_or_reachable() {
    let dir = scratch("stale-registry");
    let home = dir.join("home");
    let output = dir.join("out.txt");
    let mut run = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--job", "sequence", "--output", output.to_str().unwrap()])
            .args(["--param", "records=1000000", "--param", "records-per-second=1000"])
            .env("WEIR_HOME", &home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let job = wait_for_listed_job(&home, |line| line.contains("RUNNING"));
    let registry = home.join("jobs");
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry.join(format!("{job}.json"))).unwrap()).unwrap();
    let port = entry["port"].as_u64().unwrap();

    // A run killed with -9 left this entry behind, with a process id no one has any more.
    let dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let gone = "0123456789abcdef0123456789abcdef";
    let stale = serde_json::json!({"job": gone, "name": "sequence", "port": port, "pid": dead_pid});
    std::fs::write(registry.join(format!("{gone}.json")), stale.to_string()).unwrap();
    // And this one names a live process (this test), with the live job's port: its own run
    // is gone and another job answers there.
    let reused = "fedcba9876543210fedcba9876543210";
    let alive = serde_json::json!({"job": reused, "name": "sequence", "port": port, "pid": std::process::id()});
    std::fs::write(registry.join(format!("{reused}.json")), alive.to_string()).unwrap();

    let listed = String::from_utf8(weir_in(&home, &["list"]).stdout).unwrap();
    assert!(listed.contains(&job), "{listed}");
    assert!(!listed.contains(gone) && !listed.contains(reused), "{listed}");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(!registry.join(format!("{gone}.json")).exists(), "the dead run's entry is removed");
    std::fs::write(registry.join(format!("{reused}.json")), alive.to_string()).unwrap();
    for prefix in [&gone[..8], &reused[..8]] {
        let refused = weir_in(&home, &["savepoint", prefix]);
        let message = String::from_utf8(refused.stderr).unwrap();
        assert!(
            !refused.status.success() && message.contains(&format!("no running job matches `{prefix}`")),
            "{message}"
        );
    }

    let canceled = weir_in(&home, &["cancel", &job]);
    assert!(canceled.status.success(), "{}", String::from_utf8_lossy(&canceled.stderr));
    assert_eq!(run.0.wait().unwrap().code(), Some(130));
}

/// A savepoint that cannot start (its target is a regular file) fails with a clear error and leaves nothing
/// behind that keeps the job alive: a stop with a savepoint afterwards ends the run, whose output is exact.
#[test]
fn a_failed_savepoint_does_not_keep_a_stopped_job_alive() {
    let dir = scratch("failed-savepoint");
    let home = dir.join("home");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "execution.checkpointing.interval: 100 ms\nstate.checkpoints.dir: {}\n",
            dir.join("checkpoints").display()
        ),
    )
    .unwrap();
    let output = dir.join("out.txt");
    let records = format!("records={RECORDS}");
    let mut run = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--job", "sequence", "--output", output.to_str().unwrap(), "-p", "2"])
            .args(["--config", config.to_str().unwrap(), "--param", &records, "--param", "records-per-second=2000"])
            .args(["--param", &format!("partitions={PARTITIONS}"), "--param", &format!("keys={KEYS}")])
            .env("WEIR_HOME", &home)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let job = wait_for_listed_job(&home, |line| line.contains("RUNNING"));
    let failed = weir_in(&home, &["savepoint", &job, config.to_str().unwrap()]);
    let message = String::from_utf8(failed.stderr).unwrap();
    assert!(!failed.status.success() && message.contains("Not a directory"), "{message}");
    let stopped = weir_in(&home, &["stop", "--savepoint-path", dir.join("stop").to_str().unwrap(), &job]);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    let status = wait_bounded(&mut run.0, "the stopped `weir run`");
    assert!(status.success(), "the stopped run exits 0, got {status}");
    // Stopped early: what it committed is a prefix of every partition, each record once.
    let lines = sorted_lines(&output);
    let expected: std::collections::BTreeSet<String> = reference().into_iter().collect();
    assert!(!lines.is_empty() && lines.iter().all(|line| expected.contains(line)), "{} lines", lines.len());
    let distinct: std::collections::BTreeSet<&String> = lines.iter().collect();
    assert_eq!(distinct.len(), lines.len(), "a record committed twice");
}
