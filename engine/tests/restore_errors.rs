//! Restoring from a damaged or mismatched checkpoint: each case is one precise error line
//! naming the file or operator, never a panic, and the checkpoint directory is left exactly
//! as it was.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// Runs `sequence` with retained checkpoints and returns a copy of its newest checkpoint.
fn make_checkpoint(dir: &Path) -> PathBuf {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "execution.checkpointing.interval: 30 ms\n\
             execution.checkpointing.externalized-checkpoint-retention: RETAIN_ON_CANCELLATION\n\
             state.checkpoints.dir: {}\n\
             state.backend: filesystem\n\
             state.backend.fs.memory-threshold: 0\n",
            dir.join("checkpoints").display()
        ),
    )
    .unwrap();
    let output = dir.join("out.txt");
    let run = weir(&[
        "run",
        "--job",
        "sequence",
        "--output",
        output.to_str().unwrap(),
        "-p",
        "2",
        "--config",
        config.to_str().unwrap(),
        "--param",
        "records=2000",
        "--param",
        "records-per-second=10000",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (_, newest) = complete_checkpoints(&dir.join("checkpoints")).pop().expect("a retained checkpoint");
    newest
}

/// A copy of `checkpoint` at `dir/<name>`, to damage without touching the original.
fn copy_checkpoint(checkpoint: &Path, dir: &Path, name: &str) -> PathBuf {
    let copy = dir.join(name);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(checkpoint).unwrap().flatten() {
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    copy
}

/// Resumes `job` from `checkpoint` expecting failure; checks the one error line and that
/// nothing under `checkpoint` changed.
fn restore_error(checkpoint: &Path, job_args: &[&str]) -> String {
    let before = if checkpoint.is_dir() { tree(checkpoint) } else { Vec::new() };
    let mut args = vec!["run"];
    args.extend_from_slice(job_args);
    args.extend(["-s", checkpoint.to_str().unwrap()]);
    let out = weir_bounded(&args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "restore from {} should fail", checkpoint.display());
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    if checkpoint.is_dir() {
        assert_eq!(tree(checkpoint), before, "the failed restore changed {}", checkpoint.display());
    }
    errors[0].to_string()
}

#[test]
fn damaged_or_mismatched_checkpoints_give_precise_errors_and_stay_unchanged() {
    let dir = scratch("restore-errors");
    let checkpoint = make_checkpoint(&dir);
    // The same output as the run that made the checkpoint: its sink's transactions are there.
    let out = dir.join("out.txt");
    let sequence = ["--job", "sequence", "--output", out.to_str().unwrap(), "-p", "2"];

    // The intact checkpoint restores (the cases below fail for their own reason only).
    let good = copy_checkpoint(&checkpoint, &dir, "good");
    let mut args = vec!["run"];
    args.extend_from_slice(&sequence);
    args.extend(["--param", "records=2000", "-s", good.to_str().unwrap()]);
    let run = weir(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    // What the checkpoint holds, as a user asks for it.
    let listed = weir(&["checkpoints", "list", dir.join("checkpoints").to_str().unwrap()]);
    let listing = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.status.success() && listing.contains(checkpoint.to_str().unwrap()), "{listing}");
    let inspected = weir(&["checkpoints", "inspect", checkpoint.to_str().unwrap()]);
    let text = String::from_utf8(inspected.stdout).unwrap();
    for expected in [
        "operator `numbers`",
        "operator `running-totals`",
        "operator `sink`",
        // Its state files are beside `_metadata`, by relative paths: the directory can move.
        "self-contained: true",
        "files referenced:",
        " UTC\n",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(!text.contains("since the epoch"), "{text}");
    let json = weir(&["checkpoints", "inspect", "--json", checkpoint.join("_metadata").to_str().unwrap()]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("inspect --json prints JSON");
    assert_eq!(value["job_name"], "sequence");
    assert_eq!(value["self_contained"], true);
    assert_eq!(value["all_inline"], false);
    assert!(value["timestamp_utc"].as_str().unwrap().ends_with(" UTC"));
    let operators: Vec<&str> =
        value["operators"].as_array().unwrap().iter().map(|o| o["uid"].as_str().unwrap()).collect();
    assert_eq!(operators, ["numbers", "running-totals", "sink"]);
    assert!(value["files"].as_array().unwrap().iter().all(|f| f["exists"] == true));

    let flipped = copy_checkpoint(&checkpoint, &dir, "flipped");
    let metadata = flipped.join("_metadata");
    let mut bytes = std::fs::read(&metadata).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&metadata, &bytes).unwrap();
    let line = restore_error(&flipped, &sequence);
    assert!(line.contains("flipped/_metadata") && line.contains("checksum mismatch"), "{line}");

    let truncated = copy_checkpoint(&checkpoint, &dir, "truncated");
    let metadata = truncated.join("_metadata");
    let bytes = std::fs::read(&metadata).unwrap();
    std::fs::write(&metadata, &bytes[..bytes.len() / 2]).unwrap();
    let line = restore_error(&truncated, &sequence);
    assert!(line.contains("truncated/_metadata") && line.contains("truncated"), "{line}");

    let missing = copy_checkpoint(&checkpoint, &dir, "missing");
    let data_file =
        std::fs::read_dir(&missing).unwrap().flatten().find(|e| e.file_name() != "_metadata").expect("a state file");
    std::fs::remove_file(data_file.path()).unwrap();
    let line = restore_error(&missing, &sequence);
    assert!(line.contains(&*data_file.file_name().to_string_lossy()) && line.contains("is missing"), "{line}");

    // Into an output that lacks the checkpoint's pending transactions (a fresh one): the sink cannot commit what
    // the checkpoint says it pre-committed, on any attempt, so the job fails at once with the reason.
    let fresh = dir.join("fresh.txt");
    let into_fresh = ["--job", "sequence", "--output", fresh.to_str().unwrap(), "-p", "2"];
    let line = restore_error(&copy_checkpoint(&checkpoint, &dir, "into-fresh"), &into_fresh);
    assert!(line.contains("neither in progress nor committed") && line.contains("fresh.txt.parts"), "{line}");

    let not_a_checkpoint = dir.join("empty");
    std::fs::create_dir_all(&not_a_checkpoint).unwrap();
    let line = restore_error(&not_a_checkpoint, &sequence);
    assert!(line.contains("empty") && line.contains("is not a checkpoint"), "{line}");

    let line = restore_error(&dir.join("nowhere"), &sequence);
    assert!(line.contains("nowhere") && line.contains("does not exist"), "{line}");

    // (Before the wordcount runs below, which commit their own output into `out`: a restore
    // into an output committed past its checkpoint is refused for that reason first.)
    let max = dir.join("max.yaml");
    std::fs::write(&max, "pipeline.max-parallelism: 256\n").unwrap();
    let mismatched = copy_checkpoint(&checkpoint, &dir, "max-parallelism");
    let mut with_max = sequence.to_vec();
    with_max.extend(["--config", max.to_str().unwrap()]);
    let line = restore_error(&mismatched, &with_max);
    assert!(line.contains("max parallelism 128") && line.contains("256"), "{line}");

    let input = dir.join("words.txt");
    std::fs::write(&input, "a b\n").unwrap();
    let wordcount =
        ["--job", "wordcount", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap(), "-p", "2"];
    let unmatched = copy_checkpoint(&checkpoint, &dir, "unmatched");
    let line = restore_error(&unmatched, &wordcount);
    assert!(line.contains("operator `numbers`") && line.contains("--allow-non-restored-state"), "{line}");
    let mut args = vec!["run"];
    args.extend_from_slice(&wordcount);
    args.extend(["--allow-non-restored-state", "-s", unmatched.to_str().unwrap()]);
    let run = weir(&args);
    assert!(
        run.status.success(),
        "--allow-non-restored-state must skip the state: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Overwrites body byte `at` of `metadata` with `byte` and fixes the frame's checksum, so that
/// the file reaches the body decoder: a crafted file, not a corrupt one.
fn craft(metadata: &Path, at: usize, byte: u8) {
    let mut bytes = std::fs::read(metadata).unwrap();
    const HEADER: usize = 8 + 4 + 8;
    bytes[HEADER + at] = byte;
    let end = bytes.len() - 4;
    let crc = engine::checkpoint::metadata::checksum(&bytes[..end]);
    bytes[end..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(metadata, bytes).unwrap();
}

#[test]
fn inspect_verify_reads_every_state_file_and_crafted_metadata_names_the_failing_field() {
    let dir = scratch("verify");
    let checkpoint = make_checkpoint(&dir);

    let verified = weir(&["checkpoints", "inspect", "--verify", checkpoint.to_str().unwrap()]);
    let text = String::from_utf8(verified.stdout).unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    assert!(text.contains("verified: ") && text.contains("every length and checksum matches"), "{text}");

    // Without --verify a corrupt state file goes unnoticed; with it, it is an error.
    let corrupt = copy_checkpoint(&checkpoint, &dir, "corrupt");
    let state = std::fs::read_dir(&corrupt).unwrap().flatten().find(|e| e.file_name() != "_metadata").unwrap();
    let mut bytes = std::fs::read(state.path()).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(state.path(), bytes).unwrap();
    let plain = weir(&["checkpoints", "inspect", corrupt.to_str().unwrap()]);
    assert!(plain.status.success());
    let out = weir(&["checkpoints", "inspect", "--verify", corrupt.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let name = state.file_name().to_string_lossy().into_owned();
    assert!(stdout.contains("FAILED: ") && stdout.contains(&name) && stdout.contains("is corrupt"), "{stdout}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("failed verification") && errors[0].contains(&name), "{stderr}");

    let missing = copy_checkpoint(&checkpoint, &dir, "missing");
    std::fs::remove_file(missing.join(&name)).unwrap();
    let out = weir(&["checkpoints", "inspect", "--verify", missing.to_str().unwrap()]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains(&name) && stderr.contains("is missing"), "{stderr}");

    // A crafted `_metadata` (valid checksum, bad body) names the field and the offset, for
    // inspect and for a restore alike. Body byte 0 is the checkpoint id's varint: 0x80 on
    // every byte makes a number longer than 64 bits.
    let crafted = copy_checkpoint(&checkpoint, &dir, "crafted");
    for at in 0..10 {
        craft(&crafted.join("_metadata"), at, 0x80);
    }
    let out = weir(&["checkpoints", "inspect", crafted.to_str().unwrap()]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "crafted/_metadata`: cannot decode checkpoint metadata: checkpoint id: the number runs past 10 bytes"
        ) && stderr.contains("(body byte 0, file offset 20)"),
        "{stderr}"
    );
    let out = dir.join("out.txt");
    let line = restore_error(&crafted, &["--job", "sequence", "--output", out.to_str().unwrap()]);
    assert!(line.contains("checkpoint id") && line.contains("body byte 0"), "{line}");
}
