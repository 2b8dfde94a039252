//! The `weir` binary as a user runs it: wordcount against the coreutils reference pipeline,
//! and one clear error line (never a panic) for each kind of bad input.

mod common;

use common::*;

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
    for expected in ["wordcount:", "sequence:", "input (required)", "records (default 10000)"] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
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
