//! The embedded backend (`state.backend: rocksdb`) through the `weir` binary: incremental
//! checkpoints share files in `shared/`, a job resumed with `-s` from one (at another
//! parallelism) gives the uninterrupted output, leaves the checkpoint it came from untouched,
//! and a missing shared file is one precise error naming it.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn config(dir: &Path, incremental: bool) -> PathBuf {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "execution.checkpointing.interval: 30 ms\n\
             execution.checkpointing.externalized-checkpoint-retention: RETAIN_ON_CANCELLATION\n\
             state.checkpoints.dir: {}\n\
             state.checkpoints.num-retained: 3\n\
             state.backend: rocksdb\n\
             state.backend.incremental: {incremental}\n\
             state.backend.rocksdb.localdir: {}\n\
             state.backend.rocksdb.memory.fixed-per-slot: 64 kb\n",
            dir.join("checkpoints").display(),
            dir.join("local").display()
        ),
    )
    .unwrap();
    config
}

fn run(output: &Path, parallelism: &str, config: &Path, restore: Option<&Path>) -> std::process::Output {
    let mut args = vec![
        "run",
        "--job",
        "sequence",
        "--output",
        output.to_str().unwrap(),
        "-p",
        parallelism,
        "--config",
        config.to_str().unwrap(),
        "--param",
        "records=3000",
        "--param",
        "keys=3000",
        "--param",
        "records-per-second=5000",
    ];
    if let Some(path) = restore {
        args.extend(["-s", path.to_str().unwrap(), "--discard-newer-output"]);
    }
    weir_bounded(&args)
}

/// The shared files a checkpoint's `inspect --json` lists.
fn shared_files(checkpoint: &Path) -> Vec<String> {
    let out = weir(&["checkpoints", "inspect", checkpoint.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = value["operators"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["subtasks"].as_array().unwrap().clone())
        .filter_map(|s| s["embedded"]["files"].as_array().cloned())
        .flatten()
        .filter(|f| f["scope"] == "Shared")
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn incremental_checkpoints_share_files_and_resume_at_another_parallelism() {
    let dir = scratch("embedded-incremental");
    let config = config(&dir, true);
    let first = run(&dir.join("first.txt"), "2", &config, None);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let checkpoints = complete_checkpoints(&dir.join("checkpoints"));
    assert_eq!(checkpoints.len(), 3, "three retained: {checkpoints:?}");
    let (oldest, older, newer) =
        (shared_files(&checkpoints[0].1), shared_files(&checkpoints[1].1), shared_files(&checkpoints[2].1));
    // The final checkpoint may start before the one before it is confirmed (it is triggered at the end of the
    // input, whatever is pending), and then uploads again; the periodic ones before it build on each other.
    let shares = |a: &[String], b: &[String]| a.iter().any(|f| b.contains(f));
    assert!(shares(&oldest, &older) || shares(&older, &newer), "a checkpoint refers to files of the one before it");
    // No leak: every file in shared/ is referred to by a retained checkpoint.
    let job_dir = checkpoints[1].1.parent().unwrap().to_path_buf();
    let mut in_shared: Vec<String> = std::fs::read_dir(job_dir.join("shared"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    in_shared.sort();
    let mut referenced: Vec<String> = oldest.iter().chain(&older).chain(&newer).cloned().collect();
    referenced.sort();
    referenced.dedup();
    assert_eq!(in_shared, referenced);

    // Resumed from the older checkpoint at parallelism 3: the same output as the whole run, and the
    // checkpoint it came from (NO_CLAIM) and its shared files untouched.
    let before = tree(&job_dir);
    // The committed output so far goes along, as a user resuming elsewhere copies it.
    let resumed_output = dir.join("resumed.txt");
    std::fs::create_dir_all(dir.join("resumed.txt.parts")).unwrap();
    for entry in std::fs::read_dir(dir.join("first.txt.parts")).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.join("resumed.txt.parts").join(entry.file_name())).unwrap();
    }
    let resumed = run(&resumed_output, "3", &config, Some(&checkpoints[1].1));
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(sorted_lines(&resumed_output), sorted_lines(&dir.join("first.txt")));
    assert_eq!(tree(&job_dir), before, "the restored job changed the checkpoint it came from");
}

/// A run's newest checkpoint after `damage` was done to one of its shared files, and the one error line of
/// resuming from it.
struct Damaged {
    newest: PathBuf,
    victim: String,
    victim_path: PathBuf,
    error: String,
}

fn restore_damaged(name: &str, damage: impl Fn(&Path)) -> Damaged {
    let dir = scratch(name);
    let config = config(&dir, true);
    let first = run(&dir.join("out.txt"), "2", &config, None);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let (_, newest) = complete_checkpoints(&dir.join("checkpoints")).pop().expect("a retained checkpoint");
    let victim = shared_files(&newest).pop().expect("a shared file");
    let victim_path = newest.parent().unwrap().join("shared").join(&victim);
    damage(&victim_path);
    let out = run(&dir.join("out.txt"), "2", &config, Some(&newest));
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let error = errors[0].to_string();
    Damaged { newest, victim, victim_path, error }
}

#[test]
fn a_missing_shared_file_on_restore_is_a_precise_error_naming_it() {
    let Damaged { newest, victim, victim_path, error } =
        restore_damaged("embedded-missing-shared", |path| std::fs::remove_file(path).unwrap());
    assert!(error.contains(&victim_path.display().to_string()) && error.contains("is missing"), "{error}");
    // inspect --verify names it too.
    let verify = weir(&["checkpoints", "inspect", newest.to_str().unwrap(), "--verify"]);
    assert!(!verify.status.success());
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains(&victim)
            || String::from_utf8_lossy(&verify.stderr).contains(&victim)
    );
}

#[test]
fn a_corrupt_shared_file_on_restore_fails_the_job_once_naming_it() {
    // The same size, other bytes: found when a subtask downloads it, and so on every attempt, so the job fails
    // instead of restarting forever.
    let Damaged { victim, error, .. } = restore_damaged("embedded-corrupt-shared", |path| {
        let mut bytes = std::fs::read(path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x5a;
        std::fs::write(path, &bytes).unwrap();
    });
    assert!(error.contains(&victim) && error.contains("checksum"), "{error}");
}

#[test]
fn full_checkpoints_keep_every_file_beside_their_metadata() {
    let dir = scratch("embedded-full");
    let config = config(&dir, false);
    let first = run(&dir.join("out.txt"), "2", &config, None);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let (_, newest) = complete_checkpoints(&dir.join("checkpoints")).pop().expect("a retained checkpoint");
    assert!(shared_files(&newest).is_empty());
    let shared = newest.parent().unwrap().join("shared");
    assert_eq!(std::fs::read_dir(shared).unwrap().count(), 0, "full checkpoints share nothing");
    let out = weir(&["checkpoints", "inspect", newest.to_str().unwrap(), "--verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("exclusive"));
}

/// A local directory the stores cannot use (a regular file, or under one) is refused before the job runs, naming
/// the key and the path: otherwise every attempt of every keyed subtask fails and the job restarts forever.
#[test]
fn an_unusable_local_directory_is_refused_before_the_job_runs() {
    let dir = scratch("embedded-bad-localdir");
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    for local in [file.clone(), file.join("under")] {
        let config = config(&dir, true);
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text.replace(&dir.join("local").display().to_string(), &local.display().to_string());
        std::fs::write(&config, text).unwrap();
        let out = run(&dir.join("out.txt"), "1", &config, None);
        assert!(!out.status.success());
        let stderr = String::from_utf8(out.stderr).unwrap();
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        let line = errors[0];
        assert!(
            line.contains("state.backend.rocksdb.localdir") && line.contains(&local.display().to_string()),
            "{line}"
        );
        assert!(!dir.join("out.txt").exists() && !dir.join("checkpoints").exists(), "nothing ran");
    }
}
