//! The real-mode recovery story, as a user lives it: run a job with externalized
//! checkpoints, `kill -9` the process midway (several times), resume each time with
//! `weir run -s <latest chk-n>`, and get committed output equal to an uninterrupted run.

mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn config(dir: &Path, backend: &str) -> String {
    let path = dir.join(format!("{backend}.yaml"));
    let yaml = format!(
        "execution.checkpointing.interval: 100 ms\n\
         execution.checkpointing.externalized-checkpoint-retention: RETAIN_ON_CANCELLATION\n\
         state.checkpoints.dir: {}\n\
         state.checkpoints.num-retained: 3\n\
         state.backend: {backend}\n\
         restart-strategy: none\n",
        dir.join(format!("checkpoints-{backend}")).display()
    );
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts")
}

/// Runs `args`, killing the process with SIGKILL `kills` times, each time right after it
/// completed a checkpoint newer than any before, and resuming from the newest one.
fn run_with_kills(args: &[String], checkpoint_root: &Path, kills: usize) {
    let mut newest_seen = 0;
    for kill in 0..=kills {
        let mut run_args = args.to_vec();
        if let Some((_, path)) = complete_checkpoints(checkpoint_root).pop() {
            run_args.extend(["-s".to_string(), path.display().to_string()]);
        }
        let mut child = spawn(&run_args);
        if kill == kills {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "final run failed: {}", String::from_utf8_lossy(&output.stderr));
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let newest = complete_checkpoints(checkpoint_root).last().map_or(0, |(id, _)| *id);
            if newest > newest_seen {
                newest_seen = newest;
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "run {kill} ended ({status}) before completing a new checkpoint: the input is too small to kill it midway"
                );
            }
            assert!(Instant::now() < deadline, "no new checkpoint within two minutes");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn wordcount_killed_three_times_and_resumed_equals_an_uninterrupted_run_with_both_backends() {
    let dir = scratch("kill-wordcount");
    let input = dir.join("input.txt");
    write_text(&input, 40 << 20);
    let uninterrupted = dir.join("uninterrupted.txt");
    let run = weir(&[
        "run",
        "--job",
        "wordcount",
        "--input",
        input.to_str().unwrap(),
        "--output",
        uninterrupted.to_str().unwrap(),
        "-p",
        "2",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let expected = sorted_lines(&uninterrupted);
    assert_eq!(expected, coreutils_counts(&input), "the uninterrupted run itself must match the reference");

    for backend in ["filesystem", "jobmanager"] {
        let output = dir.join(format!("killed-{backend}.txt"));
        let args: Vec<String> = [
            "run",
            "--job",
            "wordcount",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "-p",
            "2",
            "--config",
            &config(&dir, backend),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        run_with_kills(&args, &dir.join(format!("checkpoints-{backend}")), 3);
        assert_eq!(sorted_lines(&output), expected, "{backend}: output after kills differs from the uninterrupted run");
    }
}

#[test]
fn sequence_killed_three_times_commits_every_record_exactly_once() {
    let dir = scratch("kill-sequence");
    let output = dir.join("sequence.txt");
    let (partitions, records, keys) = (4u32, 4000u64, 16u64);
    let args: Vec<String> = [
        "run",
        "--job",
        "sequence",
        "--output",
        output.to_str().unwrap(),
        "-p",
        "2",
        "--config",
        &config(&dir, "filesystem"),
        "--param",
        &format!("partitions={partitions}"),
        "--param",
        &format!("records={records}"),
        "--param",
        &format!("keys={keys}"),
        "--param",
        "records-per-second=3000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_with_kills(&args, &dir.join("checkpoints-filesystem"), 3);

    let expected = engine::jobs::sequence::reference_lines(partitions, records, keys, 0);
    assert_eq!(sorted_lines(&output), expected, "committed output after kills is not exactly once");
}

/// Ctrl-C (SIGINT) cancels the job: DELETE_ON_CANCELLATION leaves no checkpoint,
/// RETAIN_ON_CANCELLATION keeps the retained ones.
#[test]
fn ctrl_c_cancels_and_applies_the_retention_policy() {
    for (retention, kept) in [("DELETE_ON_CANCELLATION", false), ("RETAIN_ON_CANCELLATION", true)] {
        let dir = scratch(&format!("ctrl-c-{retention}"));
        let root = dir.join("checkpoints");
        let config = dir.join("config.yaml");
        let yaml = format!(
            "execution.checkpointing.interval: 50 ms\n\
             execution.checkpointing.externalized-checkpoint-retention: {retention}\n\
             state.checkpoints.dir: {}\n\
             state.backend: filesystem\n",
            root.display()
        );
        std::fs::write(&config, yaml).unwrap();
        let output = dir.join("out.txt");
        let args: Vec<String> = [
            "run",
            "--job",
            "sequence",
            "--output",
            output.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--param",
            "records=100000",
            "--param",
            "records-per-second=2000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut child = spawn(&args);
        let deadline = Instant::now() + Duration::from_secs(60);
        while complete_checkpoints(&root).len() < 2 {
            assert!(Instant::now() < deadline, "no checkpoints within a minute");
            std::thread::sleep(Duration::from_millis(10));
        }
        let interrupt = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(interrupt.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{retention}: Ctrl-C exits with 130");
        let left = complete_checkpoints(&root);
        assert_eq!(!left.is_empty(), kept, "{retention}: checkpoints left after Ctrl-C: {left:?}");
    }
}

/// A job killed after its final checkpoint completed resumes from that final checkpoint: its
/// operators had finished, so nothing is emitted again (FLIP-147's finished-on-restore) and
/// the committed counts stay exact.
#[test]
fn resuming_from_the_final_checkpoint_emits_nothing_twice() {
    let dir = scratch("final-checkpoint");
    let input = dir.join("input.txt");
    write_text(&input, 1 << 20);
    let output = dir.join("counts.txt");
    let args: Vec<String> = [
        "run",
        "--job",
        "wordcount",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "-p",
        "2",
        "--config",
        &config(&dir, "filesystem"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = Command::new(env!("CARGO_BIN_EXE_weir")).args(&args).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let expected = coreutils_counts(&input);
    assert_eq!(sorted_lines(&output), expected);
    let (_, last) =
        complete_checkpoints(&dir.join("checkpoints-filesystem")).pop().expect("the final checkpoint is retained");
    let mut resumed_args = args.clone();
    resumed_args.extend(["-s".to_string(), last.display().to_string()]);
    let resumed = Command::new(env!("CARGO_BIN_EXE_weir")).args(&resumed_args).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(sorted_lines(&output), expected, "resuming from the final checkpoint duplicated output");
}

/// The checkpoints of each committed part in `parts`, from the names `part-<subtask>-<checkpoint>-…`.
fn committed_checkpoints(parts: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(parts) else { return Vec::new() };
    let mut ids: Vec<u64> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("part-")?.split('-').nth(1)?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Killed (`kill -9`) after two checkpoints, resumed from the older one: parts of the newer
/// checkpoint are committed already, so a resume would duplicate them. It is refused with
/// both checkpoints named and nothing changed, unless `--discard-newer-output` deletes the
/// newer parts first; then the output is exactly once. Meanwhile a second run on the same
/// output is refused by the output's lock, and the killed run's stale lock is taken over.
#[test]
fn resuming_from_an_older_checkpoint_than_the_committed_output_is_refused_or_discards_it() {
    let dir = scratch("older-checkpoint");
    let root = dir.join("checkpoints-filesystem");
    let output = dir.join("sequence.txt");
    let parts = dir.join("sequence.txt.parts");
    let (partitions, records, keys) = (2u32, 3000u64, 8u64);
    let args: Vec<String> = [
        "run",
        "--job",
        "sequence",
        "--output",
        output.to_str().unwrap(),
        "--config",
        &config(&dir, "filesystem"),
        "--param",
        &format!("partitions={partitions}"),
        "--param",
        &format!("records={records}"),
        "--param",
        &format!("keys={keys}"),
        "--param",
        "records-per-second=1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = KillOnDrop(spawn(&args));
    // Two retained checkpoints, and parts committed by one newer than the older of them.
    let deadline = Instant::now() + Duration::from_secs(120);
    let older = loop {
        let complete = complete_checkpoints(&root);
        if complete.len() >= 2 {
            let (older_id, older_path) = complete[complete.len() - 2].clone();
            if committed_checkpoints(&parts).iter().any(|&id| id > older_id) {
                break (older_id, older_path);
            }
        }
        assert!(child.0.try_wait().unwrap().is_none(), "the run ended before two checkpoints");
        assert!(Instant::now() < deadline, "no two checkpoints within two minutes");
        std::thread::sleep(Duration::from_millis(10));
    };

    // A second run on the same output while the first one writes it: refused at once.
    let second = Command::new(env!("CARGO_BIN_EXE_weir")).args(&args).output().unwrap();
    let message = String::from_utf8(second.stderr).unwrap();
    assert!(!second.status.success(), "{message}");
    assert!(
        message.contains("is being written by another `weir run`") && message.contains(&child.0.id().to_string()),
        "{message}"
    );

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(dir.join("sequence.txt.lock").exists(), "kill -9 leaves the lock behind");
    let newest = *committed_checkpoints(&parts).last().unwrap();
    let before = tree(&parts);

    let mut resume = args.clone();
    resume.extend(["-s".to_string(), older.1.display().to_string()]);
    let refused = Command::new(env!("CARGO_BIN_EXE_weir")).args(&resume).output().unwrap();
    let message = String::from_utf8(refused.stderr).unwrap();
    assert!(!refused.status.success() && !message.contains("panicked"), "{message}");
    let errors: Vec<&str> = message.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{message}");
    let expected = format!("parts committed by checkpoint {newest}, newer than the restored checkpoint {}", older.0);
    assert!(errors[0].contains(&expected) && errors[0].contains("--discard-newer-output"), "{message}");
    assert_eq!(tree(&parts), before, "a refused resume changes no part");

    resume.push("--discard-newer-output".to_string());
    let resumed = Command::new(env!("CARGO_BIN_EXE_weir")).args(&resume).output().unwrap();
    let stderr = String::from_utf8(resumed.stderr).unwrap();
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("restored from Checkpoint {}", older.0)), "the restore is reported: {stderr}");
    let expected = engine::jobs::sequence::reference_lines(partitions, records, keys, 0);
    assert_eq!(sorted_lines(&output), expected, "the output after discarding is not exactly once");
    assert!(!dir.join("sequence.txt.lock").exists(), "a finished run removes its lock");
}
