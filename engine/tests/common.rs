//! Helpers shared by the integration tests that drive the `weir` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir")).args(args).output().expect("weir runs")
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A text of about `bytes` bytes with mixed case, punctuation, digits and non-ASCII.
pub fn write_text(path: &Path, bytes: usize) {
    const WORDS: &[&str] = &[
        "Stream",
        "state",
        "barrier",
        "CHECKPOINT",
        "exactly-once",
        "naïve",
        "fault",
        "x9y",
        "it's",
        "über",
        "key",
        "group",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut text = String::with_capacity(bytes + 100);
    let mut serial = 0u64;
    while text.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let words = state % 11;
        for i in 0..words {
            if i > 0 {
                text.push(if state.is_multiple_of(5) { '\t' } else { ' ' });
            }
            text.push_str(WORDS[((state >> (i * 4)) % WORDS.len() as u64) as usize]);
        }
        // A rare word per line keeps the keyed state large enough to matter.
        serial += 1;
        if serial.is_multiple_of(3) {
            text.push_str(&format!(" w{}", to_letters(serial % 20_000)));
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn to_letters(mut n: u64) -> String {
    let mut s = String::new();
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

/// `tr -cs 'A-Za-z' '\n' | tr A-Z a-z | sort | uniq -c`, as `word count` lines, sorted.
pub fn coreutils_counts(input: &Path) -> Vec<String> {
    let pipeline = format!("tr -cs 'A-Za-z' '\\n' < '{}' | tr A-Z a-z | sort | uniq -c", input.display());
    let output = Command::new("sh").arg("-c").arg(pipeline).env("LC_ALL", "C").output().expect("sh runs");
    assert!(output.status.success());
    let mut lines: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (count, word) = (fields.next()?, fields.next()?);
            Some(format!("{word} {count}"))
        })
        .collect();
    lines.sort();
    lines
}

pub fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Every complete checkpoint (`chk-<n>` holding `_metadata`) under a checkpoint root, as
/// (id, path), ascending by id.
pub fn complete_checkpoints(root: &Path) -> Vec<(u64, PathBuf)> {
    let mut found = Vec::new();
    let Ok(jobs) = std::fs::read_dir(root) else { return found };
    for job in jobs.flatten() {
        let Ok(entries) = std::fs::read_dir(job.path()) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix("chk-").and_then(|n| n.parse::<u64>().ok())
                && entry.path().join("_metadata").is_file()
            {
                found.push((id, entry.path()));
            }
        }
    }
    found.sort();
    found
}

/// Every file below `dir` with its content, to check that a failed command changed nothing.
pub fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// Polls `weir list` (with `WEIR_HOME=home`) until a job's line satisfies `accept`; returns
/// its job id. Fails after a minute.
pub fn wait_for_listed_job(home: &Path, accept: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let listed =
            Command::new(env!("CARGO_BIN_EXE_weir")).arg("list").env("WEIR_HOME", home).output().expect("weir runs");
        let listed = String::from_utf8(listed.stdout).unwrap();
        if let Some(line) = listed.lines().find(|l| accept(l)) {
            return line.split_whitespace().next().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "the job never showed up in `weir list`: {listed}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs `weir` with `args` like [`weir`], but fails the test instead of waiting forever: a run that cannot succeed
/// must fail, not restart without end.
pub fn weir_bounded(args: &[&str]) -> Output {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let logs = scratch(&format!("bounded-{}", RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
    let (out_path, err_path) = (logs.join("stdout"), logs.join("stderr"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("weir runs");
    let status = wait_bounded(&mut child, &format!("weir {}", args.join(" ")));
    Output { status, stdout: std::fs::read(&out_path).unwrap(), stderr: std::fs::read(&err_path).unwrap() }
}

/// Waits for `child` to exit, failing the test (and killing the child) if it is still
/// running after five minutes: a hang is a failure, not a test that never ends.
pub fn wait_bounded(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} never exited");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A spawned `weir` that is killed when the test ends, so that a failed assertion does not
/// leave it running (holding the test's output pipe open).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
