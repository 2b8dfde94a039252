//! The `weir` binary as a user runs it: wordcount against the coreutils reference pipeline,
//! and one clear error line (never a panic) for each kind of bad input.

mod common;

use common::*;
use std::process::Command;

#[test]
fn wordcount_equals_the_coreutils_pipeline_at_parallelism_1_2_and_4() {
    let dir = scratch("wordcount");
    let input = dir.join("input.txt");
    write_text(&input, 2 << 20);
    let expected = coreutils_counts(&input);
    assert!(expected.len() >= 10, "the reference found too few words");
    for parallelism in ["1", "2", "4"] {
        let output = dir.join(format!("counts-{parallelism}.txt"));
        let run = weir(&[
            "run",
            "--job",
            "wordcount",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "-p",
            parallelism,
        ]);
        assert!(run.status.success(), "p={parallelism}: {}", String::from_utf8_lossy(&run.stderr));
        assert_eq!(sorted_lines(&output), expected, "p={parallelism}");
        let parts = dir.join(format!("counts-{parallelism}.txt.parts"));
        let committed = std::fs::read_dir(&parts)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
            .count();
        assert!(committed >= 1, "the committed part files stay beside the output");
    }
}

#[test]
fn jobs_lists_every_builtin_job_with_its_parameters() {
    let out = weir(&["jobs"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "wordcount:",
        "sequence:",
        "keyed-sum:",
        "input (set by --input)",
        "output (set by --output)",
        "records (0..=4503599627370495; default 10000)",
        "keys (1..=1000000; default 64)",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(!text.contains("required"), "no parameter is required but by its option:\n{text}");
}

/// Runs weir expecting failure; returns its single stderr line.
fn error_line(args: &[&str]) -> String {
    let out = weir(args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert!(!stderr.contains("panicked"), "panic for {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line for {args:?}, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

#[test]
fn bad_input_gets_one_clear_error_line_and_a_failing_exit() {
    let dir = scratch("errors");
    let input = dir.join("input.txt");
    std::fs::write(&input, "one two\n").unwrap();
    let output = dir.join("out.txt");
    let (input, output) = (input.to_str().unwrap(), output.to_str().unwrap());
    let config = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };

    let missing = dir.join("missing.txt");
    let line = error_line(&["run", "--job", "wordcount", "--input", missing.to_str().unwrap(), "--output", output]);
    assert!(line.contains("missing.txt") && line.contains("does not exist"), "{line}");

    let line = error_line(&["run", "--job", "wordcunt", "--input", input, "--output", output]);
    assert!(line.contains("unknown job `wordcunt`") && line.contains("wordcount"), "{line}");

    let unknown = config("unknown.yaml", "parallelism.default: 2\nexecution.checkpointing.intervall: 1 s\n");
    let line = error_line(&["run", "--job", "wordcount", "--input", input, "--output", output, "--config", &unknown]);
    assert!(line.contains("unknown.yaml:2") && line.contains("execution.checkpointing.intervall"), "{line}");

    let ill_typed = config("ill-typed.yaml", "execution.checkpointing.timeout: soon\n");
    let line = error_line(&["run", "--job", "wordcount", "--input", input, "--output", output, "--config", &ill_typed]);
    assert!(line.contains("ill-typed.yaml:1") && line.contains("soon") && line.contains("duration"), "{line}");

    let line = error_line(&["run", "--job", "wordcount", "--input", input, "--output", output, "-p", "0"]);
    assert!(line.contains("parallelism") && line.contains("at least 1"), "{line}");
    let line = error_line(&["run", "--job", "wordcount", "--input", input, "--output", output, "-p", "5000"]);
    assert_eq!(line, "error: --parallelism must be at least 1 and at most 2048, got 5000");

    let small_max = config("small-max.yaml", "pipeline.max-parallelism: 4\n");
    let line = error_line(&[
        "run",
        "--job",
        "wordcount",
        "--input",
        input,
        "--output",
        output,
        "-p",
        "8",
        "--config",
        &small_max,
    ]);
    assert!(line.contains("parallelism 8 is above max parallelism 4"), "{line}");

    let line = error_line(&["run", "--job", "sequence", "--output", output, "--param", "records=lots"]);
    assert!(line.contains("records") && line.contains("lots"), "{line}");

    // Every parameter is range checked, naming job, parameter and range: `keys = 0` once
    // divided by zero.
    let line = error_line(&["run", "--job", "sequence", "--output", output, "--param", "keys=0"]);
    assert_eq!(line, "error: job `sequence`: parameter `keys`: must be in 1..=1000000, got 0");
    let line = error_line(&["run", "--job", "sequence", "--output", output, "--param", "partitions=0"]);
    assert_eq!(line, "error: job `sequence`: parameter `partitions`: must be in 1..=4096, got 0");
    let line = error_line(&["run", "--job", "sequence", "--output", output, "--param", "records-per-second=1e9"]);
    assert!(line.contains("`records-per-second`") && line.contains("0..=10000000"), "{line}");
    // `output` is set by --output, not silently overridden.
    let line = error_line(&["run", "--job", "sequence", "--output", output, "--param", "output=/tmp/elsewhere"]);
    assert_eq!(line, "error: parameter `output` of job `sequence` is set by --output, not by --param");

    // Settings that would not fit in memory, or are not what they seem, are errors naming
    // the file, the line, the key and the range.
    let huge = config("huge.yaml", "parallelism.default: 2\nweir.channel.batch-size-records: 4294967295\n");
    let line = error_line(&["run", "--job", "sequence", "--output", output, "--config", &huge]);
    assert!(
        line.contains("huge.yaml:2")
            && line.contains("weir.channel.batch-size-records")
            && line.contains("from 1 to 65536"),
        "{line}"
    );
    let s3 = config("s3.yaml", "state.checkpoints.dir: s3://bucket/x\n");
    let line = error_line(&["run", "--job", "sequence", "--output", output, "--config", &s3]);
    assert!(line.contains("s3.yaml:1") && line.contains("`s3://` scheme is not supported"), "{line}");
    assert!(!std::path::Path::new("s3:").exists(), "nothing was written to a local `s3:` directory");
    let retain = config(
        "retain.yaml",
        "execution.checkpointing.interval: 1 s\nexecution.checkpointing.externalized-checkpoint-retention: RETAIN_ON_CANCELLATION\n",
    );
    let line = error_line(&["run", "--job", "sequence", "--output", output, "--config", &retain]);
    assert!(line.contains("retain.yaml:2") && line.contains("none is set"), "{line}");

    let line = error_line(&["run", "--job", "sequence", "--output", output, "--discard-newer-output"]);
    assert!(line.contains("--discard-newer-output") && line.contains("-s"), "{line}");

    let line = error_line(&[
        "run",
        "--job",
        "wordcount",
        "--input",
        input,
        "--output",
        output,
        "--config",
        dir.join("nope.yaml").to_str().unwrap(),
    ]);
    assert!(line.contains("nope.yaml"), "{line}");
}

/// An input that is a directory or a FIFO says what it is; an output that is a directory (or
/// names no file) is refused before the job starts, leaving nothing behind.
#[test]
fn inputs_and_outputs_that_are_not_regular_files_are_named_for_what_they_are() {
    let dir = scratch("not-files");
    let output = dir.join("out.txt");
    let output = output.to_str().unwrap();
    let line = error_line(&["run", "--job", "wordcount", "--input", dir.to_str().unwrap(), "--output", output]);
    assert!(line.contains("is a directory, not a regular file"), "{line}");
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let line = error_line(&["run", "--job", "wordcount", "--input", fifo.to_str().unwrap(), "--output", output]);
    assert!(line.contains("is a FIFO (named pipe), not a regular file"), "{line}");

    let out_dir = dir.join("outdir");
    std::fs::create_dir_all(&out_dir).unwrap();
    let line = error_line(&["run", "--job", "sequence", "--output", out_dir.to_str().unwrap()]);
    assert!(line.contains("is a directory: --output names the file"), "{line}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "nothing was written into it");
    assert!(!dir.join("outdir.parts").exists() && !dir.join("outdir.lock").exists());
    let line = error_line(&["run", "--job", "sequence", "--output", "/"]);
    assert!(line.contains("names no file"), "{line}");
}

/// `weir run ... 2>&1 | head -3` with `WEIR_LOG=info`: the reader goes away after three
/// lines, and the job must still finish (a failed write to stderr used to panic a subtask's
/// thread, and the job waited for it forever).
#[test]
fn a_closed_stderr_does_not_hang_the_job() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("closed-stderr");
    let output = dir.join("out.txt");
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--job", "sequence", "--output", output.to_str().unwrap(), "-p", "2"])
            .args(["--param", "records=3000", "--param", "records-per-second=20000"])
            .env("WEIR_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("weir starts"),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
    }
    drop(stderr);
    let status = wait_bounded(&mut child.0, "the job with a closed stderr");
    assert!(status.success(), "{status}");
    assert_eq!(sorted_lines(&output), engine::jobs::sequence::reference_lines(4, 3000, 64, 0));
}

/// Every line a process logs carries one clock, started with the process: a line logged late
/// (here the job's end, 200 ms of paced input after the start) is not stamped 0.
#[test]
fn log_times_count_from_the_start_of_the_process() {
    let dir = scratch("log-clock");
    let output = dir.join("out.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .env("WEIR_LOG", "info")
        .args(["run", "--job", "sequence", "--output", output.to_str().unwrap()])
        .args(["--param", "records=400", "--param", "records-per-second=2000"])
        .output()
        .expect("weir runs");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "the job runs: {stderr}");
    let stamps: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).filter_map(|l| l.split(']').next()).collect();
    let last = stamps.last().unwrap_or_else(|| panic!("info lines are logged: {stderr}"));
    let seconds: f64 = last.trim_start_matches('[').trim().trim_end_matches('s').parse().expect("a stamp in seconds");
    assert!(seconds >= 0.15, "the last line, logged at the job's end, is stamped {seconds} s: {stderr}");
}

/// Like `error_line`, but a `weir` still running after a minute fails the test rather than
/// hanging it (reading a FIFO waits for a writer forever).
fn bounded_error_line(args: &[&str]) -> String {
    use std::io::Read as _;
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("weir starts"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{args:?} never exited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success() && !stderr.contains("panicked"), "expected a failure for {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line for {args:?}, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

fn mkfifo(path: &std::path::Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(made.success());
}

/// `--output` naming the input file, as written or by another spelling or a link, is refused
/// before the job runs: the input is left as it was.
#[test]
fn an_output_that_is_the_input_is_refused_by_any_spelling() {
    let dir = scratch("output-is-input");
    let input = dir.join("input.txt");
    std::fs::write(&input, "a b c\na b\n").unwrap();
    let link = dir.join("link.txt");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    let dotted = dir.join(".").join("input.txt");
    for output in [&input, &link, &dotted] {
        let line = error_line(&[
            "run",
            "--job",
            "wordcount",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        assert!(line.contains("is the input file") && line.contains("overwrite its own input"), "{line}");
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "a b c\na b\n", "the input is untouched");
    }
    assert!(!dir.join("input.txt.parts").exists() && !dir.join("input.txt.lock").exists());
}

/// An output with a trailing `/`, or under a regular file, is refused before the job runs,
/// and nothing is left behind.
#[test]
fn outputs_that_cannot_be_written_are_refused_before_the_job_runs() {
    let dir = scratch("unwritable-output");
    let slashed = format!("{}/odir/", dir.display());
    let line = error_line(&["run", "--job", "sequence", "--output", &slashed, "--param", "records=10"]);
    assert!(line.contains("ends with `/`"), "{line}");
    let file = dir.join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("sub").join("out.txt");
    let line = error_line(&["run", "--job", "sequence", "--output", under_file.to_str().unwrap()]);
    assert!(line.contains("file.txt` is a regular file, not a directory"), "{line}");
    let left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, ["file.txt"], "nothing was left behind");
}

/// `--stats-json` is checked before the job runs: a directory, a trailing `/` or a missing
/// directory is an error, and no temporary file is left anywhere.
#[test]
fn a_stats_json_that_cannot_be_written_is_refused_before_the_job_runs() {
    let dir = scratch("unwritable-stats");
    let output = dir.join("out.txt");
    let stats_dir = dir.join("stats");
    std::fs::create_dir_all(&stats_dir).unwrap();
    let slashed = format!("{}/x/", dir.display());
    let missing = dir.join("missing").join("stats.json");
    for (stats, expected) in [
        (stats_dir.to_str().unwrap(), "is a directory"),
        (slashed.as_str(), "names a directory"),
        (missing.to_str().unwrap(), "which does not exist"),
    ] {
        let line = error_line(&[
            "run",
            "--job",
            "sequence",
            "--output",
            output.to_str().unwrap(),
            "--param",
            "records=1",
            "--stats-json",
            stats,
        ]);
        assert!(line.starts_with("error: --stats-json") && line.contains(expected), "{line}");
        assert!(!output.exists(), "the job did not run");
    }
    let left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, ["stats"], "nothing was left behind");
    assert_eq!(std::fs::read_dir(&stats_dir).unwrap().count(), 0);
}

#[test]
fn a_parameter_given_twice_is_an_error_naming_it() {
    let dir = scratch("duplicate-param");
    let output = dir.join("out.txt");
    let line = error_line(&[
        "run",
        "--job",
        "sequence",
        "--output",
        output.to_str().unwrap(),
        "--param",
        "records=5",
        "--param",
        "records=6",
    ]);
    assert_eq!(line, "error: parameter `records` is given twice: `5` and `6`");
    assert!(!output.exists());
}

/// A FIFO as a checkpoint's `_metadata` is refused by its type, before it is opened (which
/// would wait for a writer forever).
#[test]
fn fifos_as_metadata_or_config_are_refused_by_their_type() {
    let dir = scratch("fifo-metadata");
    let checkpoint = dir.join("chk-1");
    std::fs::create_dir_all(&checkpoint).unwrap();
    let metadata = checkpoint.join("_metadata");
    mkfifo(&metadata);
    let output = dir.join("out.txt");
    let (checkpoint, metadata, output) =
        (checkpoint.to_str().unwrap(), metadata.to_str().unwrap(), output.to_str().unwrap());
    for args in [
        &["checkpoints", "inspect", checkpoint][..],
        &["checkpoints", "inspect", metadata],
        &["checkpoints", "inspect", "--verify", checkpoint],
        &["run", "--job", "sequence", "--output", output, "-s", checkpoint],
        &["run", "--job", "sequence", "--output", output, "-s", metadata],
    ] {
        let line = bounded_error_line(args);
        assert!(line.contains("_metadata` is a FIFO (named pipe), not a regular file"), "{args:?}: {line}");
    }
    assert!(!std::path::Path::new(output).exists());
}

/// So is a FIFO as the config file; and a file given to `checkpoints list` is said to be one.
#[test]
fn a_fifo_config_and_a_file_to_list_are_named_for_what_they_are() {
    let dir = scratch("fifo-config");
    let output = dir.join("out.txt");
    let output = output.to_str().unwrap();
    let config = dir.join("config.yaml");
    mkfifo(&config);
    let line =
        bounded_error_line(&["run", "--job", "sequence", "--output", output, "--config", config.to_str().unwrap()]);
    assert!(line.contains("config.yaml` is a FIFO (named pipe), not a regular file"), "{line}");
    assert!(!std::path::Path::new(output).exists());

    let file = dir.join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let line = error_line(&["checkpoints", "list", file.to_str().unwrap()]);
    assert!(line.contains("file.txt` is not a directory"), "{line}");
}
