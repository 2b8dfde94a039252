//! `cargo x mutants`: the planted-bug score. Each `ci/mutants/<name>.patch` plants one realistic engine bug; this
//! applies it to a scratch copy of the repository at HEAD, builds the simulation binary, runs the scenario suites,
//! and reports per mutant whether they caught it, by which scenario and invariant, and after how many seeds.
//!
//! A patch starts with `# ` comment lines (git ignores text before the diff) naming the rule it breaks (`# rule:`),
//! the realistic slip (`# story:`) and what should catch it (`# should catch it:`). A patch that no longer applies
//! is *stale*: an error naming the hunks that fail, never a silent skip, so that refreshing it after an engine change
//! is quick.
//!
//! Every mutant is built in the same scratch directory with the same target directory, so only the workspace's own
//! crates rebuild per mutant and nothing accumulates. The unpatched tree goes first (the baseline): a suite that
//! fails without any planted bug says nothing about the bugs. Suites run in order over growing chunks of seeds, and
//! a mutant stops at the first chunk that catches it: the lowest failing seed of each scenario that failed in that
//! chunk is its first failure (every earlier chunk passed).
//!
//! The scratch copy is `git archive HEAD`: uncommitted changes to the engine, scenarios or checkers are not
//! measured (commit them first), while the patches themselves are read from the working tree.

use serde_json::{Value, json};
use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The suites run by default, in this order; those that do not exist at HEAD are skipped.
const DEFAULT_SUITES: &[&str] = &["smoke", "recovery", "swarm"];
/// Where a chunk of seeds ends, counted from the first seed: a mutant caught early costs few seeds.
const CHUNK_ENDS: &[u64] = &[10, 50, 200, 1000];
const DEFAULT_SEEDS: Range<u64> = 0..200;
const DEFAULT_TIMEOUT_MINUTES: u64 = 20;
/// Catches printed per mutant as it is measured; the report has them all.
const CATCHES_SHOWN: usize = 5;
/// Lines of a failed build's log shown in the report.
const BUILD_ERROR_LINES_MAX: usize = 30;

/// Cargo arguments that build the simulation binary; the target directory is added per run.
const SIMULATION_CONFIG: &[&str] = &["--config", "build.rustflags=['--cfg','madsim']"];

pub const USAGE: &str = "\
  mutants        the planted-bug score: applies each ci/mutants/<name>.patch to a scratch copy of
                 HEAD, builds the simulation and runs the suites; writes target/mutants/report.json.
                 Options: --seeds A..B (default 0..200), --only NAME[,NAME], --suites a,b (default
                 smoke,recovery,swarm, those that exist), --jobs N (weir-sim's threads),
                 --exhaustive (every suite over every seed, no early stop), --no-baseline,
                 --require-caught (a missed mutant fails), --timeout-minutes M (per weir-sim run);
                 --check only verifies that every patch applies and builds
";

/// What `cargo x mutants` was asked to do.
#[derive(Debug)]
struct Options {
    seeds: Range<u64>,
    only: Vec<String>,
    /// `None`: the default suites that exist.
    suites: Option<Vec<String>>,
    check: bool,
    jobs: Option<usize>,
    baseline: bool,
    exhaustive: bool,
    require_caught: bool,
    timeout: Duration,
}

fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
    let bad = || format!("--seeds: expected `start..end` (end exclusive) or a count, got `{text}`");
    let range = match text.split_once("..") {
        Some((start, end)) => start.parse().map_err(|_| bad())?..end.parse().map_err(|_| bad())?,
        None => 0..text.parse().map_err(|_| bad())?,
    };
    if range.is_empty() {
        return Err(bad());
    }
    Ok(range)
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seeds: DEFAULT_SEEDS,
        only: Vec::new(),
        suites: None,
        check: false,
        jobs: None,
        baseline: true,
        exhaustive: false,
        require_caught: false,
        timeout: Duration::from_secs(DEFAULT_TIMEOUT_MINUTES * 60),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        let list = |text: String| text.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>();
        match arg.as_str() {
            "--seeds" => options.seeds = parse_seeds(&value("--seeds")?)?,
            "--only" => options.only.extend(list(value("--only")?)),
            "--suites" => options.suites = Some(list(value("--suites")?)),
            "--jobs" => {
                let jobs = value("--jobs")?;
                options.jobs = Some(jobs.parse().ok().filter(|&n| n > 0).ok_or(format!("--jobs: bad count `{jobs}`"))?);
            }
            "--timeout-minutes" => {
                let minutes = value("--timeout-minutes")?;
                let minutes: u64 =
                    minutes.parse().ok().filter(|&m| m > 0).ok_or(format!("--timeout-minutes: bad `{minutes}`"))?;
                options.timeout = Duration::from_secs(minutes * 60);
            }
            "--check" => options.check = true,
            "--exhaustive" => options.exhaustive = true,
            "--no-baseline" => options.baseline = false,
            "--require-caught" => options.require_caught = true,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(options)
}

/// One hunk of a patch, with the header of the file it changes, so that it can be checked on its own.
#[derive(Clone, Debug)]
struct Hunk {
    file: String,
    /// The `@@ ... @@` line.
    header: String,
    /// The file header and this hunk: a patch of its own.
    patch: String,
    /// The first line the hunk removes or, failing that, adds: what a stale hunk expected to find.
    first_change: String,
}

/// A planted bug: a patch and what its header says of it.
#[derive(Clone, Debug)]
struct Mutant {
    name: String,
    path: PathBuf,
    /// The header's `# rule:` text, up to its first full stop.
    rule: String,
    hunks: Vec<Hunk>,
}

/// The header's `# <field>` paragraph: its first line and the indented `#   ` lines that continue it.
fn header_field(header: &[&str], field: &str) -> Option<String> {
    let prefix = format!("# {field}:");
    let start = header.iter().position(|line| line.starts_with(&prefix))?;
    let mut text = header[start][prefix.len()..].trim().to_string();
    for line in &header[start + 1..] {
        match line.strip_prefix("#   ") {
            Some(more) => {
                text.push(' ');
                text.push_str(more.trim());
            }
            None => break,
        }
    }
    Some(text)
}

fn parse_mutant(path: &Path) -> Result<Mutant, String> {
    let name = path.file_stem().and_then(|s| s.to_str()).ok_or_else(|| format!("{}: bad name", path.display()))?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let diff_start = lines.iter().position(|l| l.starts_with("diff --git ")).unwrap_or(lines.len());
    let header = &lines[..diff_start];
    if let Some(line) = header.iter().find(|l| !l.starts_with("# ") && !l.trim().is_empty()) {
        return Err(format!("{}: the header has a line that is not a `# ` comment: `{line}`", path.display()));
    }
    let mut fields = Vec::new();
    for field in ["rule", "story", "should catch it"] {
        fields.push(header_field(header, field).ok_or_else(|| format!("{}: no `# {field}:` line", path.display()))?);
    }
    let rule = fields[0].split(". ").next().unwrap_or_default().trim_end_matches('.').to_string();
    let mut hunks = Vec::new();
    let mut file_header: Vec<&str> = Vec::new();
    let mut file = String::new();
    let mut current: Option<Vec<&str>> = None;
    let mut finish = |hunk: Option<Vec<&str>>, file_header: &[&str], file: &str| {
        if let Some(hunk) = hunk {
            let first_change = hunk[1..]
                .iter()
                .find(|l| l.starts_with('-'))
                .or_else(|| hunk[1..].iter().find(|l| l.starts_with('+')))
                .map(|l| l.trim().to_string())
                .unwrap_or_default();
            let patch = file_header.iter().chain(&hunk).fold(String::new(), |mut p, l| {
                p.push_str(l);
                p.push('\n');
                p
            });
            hunks.push(Hunk { file: file.to_string(), header: hunk[0].to_string(), patch, first_change });
        }
    };
    for line in &lines[diff_start..] {
        if line.starts_with("diff --git ") {
            finish(current.take(), &file_header, &file);
            file_header = vec![line];
            file = line.rsplit(" b/").next().unwrap_or_default().to_string();
        } else if line.starts_with("@@") {
            finish(current.take(), &file_header, &file);
            current = Some(vec![line]);
        } else if let Some(hunk) = current.as_mut() {
            hunk.push(line);
        } else {
            file_header.push(line);
        }
    }
    finish(current.take(), &file_header, &file);
    if hunks.is_empty() {
        return Err(format!("{}: no hunk to apply", path.display()));
    }
    Ok(Mutant { name: name.to_string(), path: path.to_path_buf(), rule, hunks })
}

/// The patches under `dir`, sorted by name, narrowed to `only` (each of which must exist).
fn load_mutants(dir: &Path, only: &[String]) -> Result<Vec<Mutant>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "patch"))
        .collect();
    paths.sort();
    let mutants: Vec<Mutant> = paths.iter().map(|p| parse_mutant(p)).collect::<Result<_, _>>()?;
    for name in only {
        if !mutants.iter().any(|m| &m.name == name) {
            return Err(format!("--only: no mutant `{name}` in {}", dir.display()));
        }
    }
    Ok(mutants.into_iter().filter(|m| only.is_empty() || only.contains(&m.name)).collect())
}

/// Where the runs happen: one scratch copy at a time, one target directory for all.
struct Workspace {
    root: PathBuf,
    scratch: PathBuf,
    target_dir: PathBuf,
    logs: PathBuf,
}

impl Workspace {
    fn new(root: PathBuf) -> Self {
        let out = root.join("target").join("mutants");
        Workspace {
            scratch: out.join("scratch"),
            logs: out.join("logs"),
            target_dir: root.join("target").join("mutants-build"),
            root,
        }
    }

    fn remove_scratch(&self) -> Result<(), String> {
        match std::fs::remove_dir_all(&self.scratch) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", self.scratch.display())),
        }
    }

    /// A fresh copy of HEAD in the scratch directory. Files get the time of extraction (`tar -m`), so cargo rebuilds
    /// the workspace's crates whatever the previous mutant changed.
    fn fresh_scratch(&self) -> Result<(), String> {
        self.remove_scratch()?;
        std::fs::create_dir_all(&self.scratch).map_err(|e| format!("cannot create {}: {e}", self.scratch.display()))?;
        let mut archive = Command::new("git")
            .args(["archive", "--format=tar", "HEAD"])
            .current_dir(&self.root)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run git archive: {e}"))?;
        let tar = Command::new("tar")
            .args(["-x", "-m", "-f", "-"])
            .current_dir(&self.scratch)
            .stdin(archive.stdout.take().expect("piped"))
            .status()
            .map_err(|e| format!("cannot run tar: {e}"))?;
        let archived = archive.wait().map_err(|e| format!("git archive: {e}"))?;
        if !archived.success() || !tar.success() {
            return Err(format!(
                "copying HEAD to {} failed (git archive {archived}, tar {tar})",
                self.scratch.display()
            ));
        }
        Ok(())
    }

    /// `git apply` in the scratch copy, which lies inside this repository: the ceiling keeps git from taking the
    /// repository's root for the copy's, so paths resolve against the copy.
    fn git_apply(&self, args: &[&str], patch: &str) -> Result<(), String> {
        let ceiling = self.scratch.parent().expect("the scratch directory has a parent");
        let mut child = Command::new("git")
            .arg("apply")
            .args(args)
            .current_dir(&self.scratch)
            .env("GIT_CEILING_DIRECTORIES", ceiling)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run git apply: {e}"))?;
        child.stdin.take().expect("piped").write_all(patch.as_bytes()).map_err(|e| format!("git apply: {e}"))?;
        let output = child.wait_with_output().map_err(|e| format!("git apply: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }

    fn weir_sim(&self) -> PathBuf {
        self.target_dir.join("release").join("weir-sim")
    }
}

/// Why a patch does not apply at HEAD: git's words, and each hunk that fails on its own.
#[derive(Clone, Debug)]
struct Stale {
    message: String,
    hunks: Vec<(usize, Hunk)>,
}

/// Applies `mutant` to the scratch copy, or says precisely why it cannot.
fn apply(workspace: &Workspace, mutant: &Mutant) -> Result<(), Stale> {
    let text = std::fs::read_to_string(&mutant.path).unwrap_or_default();
    let message = match workspace.git_apply(&["--check"], &text) {
        Ok(()) => match workspace.git_apply(&[], &text) {
            Ok(()) => return Ok(()),
            Err(message) => message,
        },
        Err(message) => message,
    };
    let hunks = mutant
        .hunks
        .iter()
        .enumerate()
        .filter(|(_, hunk)| workspace.git_apply(&["--check"], &hunk.patch).is_err())
        .map(|(index, hunk)| (index + 1, hunk.clone()))
        .collect();
    Err(Stale { message, hunks })
}

/// Runs `command` with its output in `log`, killing it after `timeout`. `Ok(None)` if it timed out.
fn run_logged(mut command: Command, log: &Path, timeout: Duration) -> Result<Option<std::process::ExitStatus>, String> {
    let file = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let errors = file.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = command
        .stdout(file)
        .stderr(errors)
        .env_remove("RUSTFLAGS")
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("waiting for {command:?}: {e}"))? {
            return Ok(Some(status));
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// What a build produced: its time and the compiler's warnings about the workspace's code.
struct Built {
    seconds: f64,
    warnings: Vec<String>,
}

/// Builds (or, with `check`, only type-checks) the simulation binary in the scratch copy.
fn build(workspace: &Workspace, name: &str, check: bool) -> Result<Built, String> {
    let log = workspace.logs.join(format!("{name}.build.log"));
    let mut command = Command::new(cargo());
    command
        .arg(if check { "check" } else { "build" })
        .args(if check { &[][..] } else { &["--release"][..] })
        .args(["--package", "sim", "--bin", "weir-sim", "--message-format", "short"])
        .args(SIMULATION_CONFIG)
        .arg("--target-dir")
        .arg(&workspace.target_dir)
        .current_dir(&workspace.scratch);
    let started = Instant::now();
    // A build has no timeout of its own: it ends.
    let status = run_logged(command, &log, Duration::MAX)?.expect("no timeout");
    let seconds = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("error")).take(BUILD_ERROR_LINES_MAX).collect();
        return Err(format!("the build failed ({status}); {}:\n      {}", log.display(), errors.join("\n      ")));
    }
    // `--message-format short` gives one `path:line:column: warning: ...` line per warning.
    let warnings = text.lines().filter(|l| l.contains(": warning: ")).map(str::to_string).collect();
    Ok(Built { seconds, warnings })
}

/// A scenario's first failure in a chunk of seeds.
#[derive(Clone, Debug)]
struct Catch {
    suite: String,
    scenario: String,
    seed: u64,
    /// Seeds run up to and including the failing one, counted from the range's start.
    seeds_to_failure: u64,
    /// The first violated invariant; `error` for a failed run without a violation, `panic` for a crash.
    invariant: String,
    event: String,
    /// The run's own failure, if it had one (the job failed for good, a harness error).
    error: Option<String>,
    replay: String,
}

/// How one run of `weir-sim` over a chunk ended.
enum ChunkOutcome {
    /// The first failure of each scenario that failed.
    Report(Vec<Catch>),
    /// The process died (a panic: an engine assertion) or hung.
    Crashed { message: String },
}

/// One run of `cargo x mutants`: where it works and what it was asked.
struct Session<'a> {
    workspace: &'a Workspace,
    options: &'a Options,
}

impl Session<'_> {
    /// Runs `weir-sim run <target> --seeds <seeds> --json` in the scratch copy.
    fn run_chunk(&self, label: &str, suite: &str, target: &str, seeds: &Range<u64>) -> Result<ChunkOutcome, String> {
        let json = self.workspace.logs.join(format!("{label}.json"));
        let _ = std::fs::remove_file(&json);
        let mut command = Command::new(self.workspace.weir_sim());
        command.args(["run", target, "--seeds", &format!("{}..{}", seeds.start, seeds.end), "--json"]);
        command.arg(&json).current_dir(&self.workspace.scratch);
        if let Some(jobs) = self.options.jobs {
            command.args(["--jobs", &jobs.to_string()]);
        }
        let log = self.workspace.logs.join(format!("{label}.log"));
        let Some(status) = run_logged(command, &log, self.options.timeout)? else {
            return Ok(ChunkOutcome::Crashed {
                message: format!("timed out after {} min (see {})", self.options.timeout.as_secs() / 60, log.display()),
            });
        };
        match status.code() {
            Some(0 | 1) => {}
            Some(2) => {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("weir-sim refused the run: {}", text.lines().last().unwrap_or_default()));
            }
            _ => {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let message = match lines.iter().position(|l| l.contains("panicked at")) {
                    Some(at) => lines[at..lines.len().min(at + 2)].join(" "),
                    None => format!("weir-sim ended with {status}"),
                };
                return Ok(ChunkOutcome::Crashed { message });
            }
        }
        let text = std::fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
        let report: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
        let mut catches = Vec::new();
        for scenario in report["scenarios"].as_array().ok_or_else(|| format!("{}: no scenarios", json.display()))? {
            // A canary fails when its deliberate bug goes unnoticed, which says nothing about a planted one.
            if !scenario["canary"].is_null() {
                continue;
            }
            let Some(first) = scenario["failures"].as_array().and_then(|f| f.first()) else { continue };
            let seed = first["seed"].as_u64().unwrap_or(seeds.start);
            let violation = first["violations"].as_array().and_then(|v| v.first());
            let (invariant, event) = match violation {
                Some(violation) => (
                    violation["invariant"].as_str().unwrap_or("?").to_string(),
                    violation["event"].as_str().unwrap_or_default().to_string(),
                ),
                None => ("error".to_string(), first["error"].as_str().unwrap_or_default().to_string()),
            };
            catches.push(Catch {
                suite: suite.to_string(),
                scenario: scenario["name"].as_str().unwrap_or("?").to_string(),
                seed,
                seeds_to_failure: seed - self.options.seeds.start + 1,
                invariant,
                event,
                error: first["error"].as_str().map(str::to_string),
                replay: first["replay"].as_str().unwrap_or_default().to_string(),
            });
        }
        Ok(ChunkOutcome::Report(catches))
    }

    /// A crash in a chunk: the scenario and the lowest seed that crash, found by running the suite's scenarios one by
    /// one and halving the seed range (a seed's run does not depend on the others).
    fn locate_crash(&self, label: &str, suite: &str, seeds: &Range<u64>) -> Result<Catch, String> {
        for scenario in scenario_files(&self.workspace.scratch, suite)? {
            let scenario_label = format!("{label}-{}", file_stem(&scenario));
            let ChunkOutcome::Crashed { message } = self.run_chunk(&scenario_label, suite, &scenario, seeds)? else {
                continue;
            };
            let (mut range, mut message) = (seeds.clone(), message);
            while range.end - range.start > 1 {
                let lower = range.start..range.start + (range.end - range.start) / 2;
                match self.run_chunk(&scenario_label, suite, &scenario, &lower)? {
                    ChunkOutcome::Crashed { message: crashed } => {
                        range = lower;
                        message = crashed;
                    }
                    ChunkOutcome::Report(_) => range = lower.end..range.end,
                }
            }
            return Ok(Catch {
                suite: suite.to_string(),
                scenario: file_stem(&scenario),
                seed: range.start,
                seeds_to_failure: range.start - self.options.seeds.start + 1,
                invariant: "panic".to_string(),
                event: message,
                error: None,
                replay: format!("cargo x sim replay {scenario} --seed {}", range.start),
            });
        }
        Err(format!("{suite} crashed over seeds {}..{}, but no scenario of it does alone", seeds.start, seeds.end))
    }

    /// Runs the suites in order over growing chunks of seeds; stops at the first chunk that fails, unless `exhaustive`.
    fn evaluate(&self, name: &str, suites: &[String], exhaustive: bool) -> Result<Evaluation, String> {
        let started = Instant::now();
        let mut evaluation = Evaluation::default();
        for suite in suites {
            let mut run = 0;
            for chunk in chunks(&self.options.seeds, exhaustive) {
                let label = format!("{name}-{suite}-{}-{}", chunk.start, chunk.end);
                let target = format!("scenarios/{suite}");
                let catches = match self.run_chunk(&label, suite, &target, &chunk)? {
                    ChunkOutcome::Report(catches) => catches,
                    ChunkOutcome::Crashed { message } => {
                        eprintln!(
                            "      {suite} {}..{} crashed ({message}); locating the seed",
                            chunk.start, chunk.end
                        );
                        vec![self.locate_crash(&label, suite, &chunk)?]
                    }
                };
                run += chunk.end - chunk.start;
                let failed = !catches.is_empty();
                eprintln!(
                    "      {suite} seeds {}..{}: {}",
                    chunk.start,
                    chunk.end,
                    if failed { format!("{} scenario(s) failed", catches.len()) } else { "passed".to_string() }
                );
                evaluation.catches.extend(catches);
                if failed && !exhaustive {
                    evaluation.seeds_run.push((suite.clone(), run));
                    evaluation.seconds = started.elapsed().as_secs_f64();
                    return Ok(evaluation);
                }
            }
            evaluation.seeds_run.push((suite.clone(), run));
        }
        evaluation.seconds = started.elapsed().as_secs_f64();
        Ok(evaluation)
    }

    /// Measures one mutant (or, with `mutant = None`, the baseline) in a fresh scratch copy.
    fn measure(
        &self,
        mutant: Option<&Mutant>,
        suites: &[String],
        baseline_warnings: &[String],
    ) -> Result<(Outcome, Vec<String>), String> {
        let name = mutant.map_or("baseline", |m| m.name.as_str());
        self.workspace.fresh_scratch()?;
        if let Some(mutant) = mutant
            && let Err(stale) = apply(self.workspace, mutant)
        {
            return Ok((Outcome::Stale(stale), Vec::new()));
        }
        let built = match build(self.workspace, name, self.options.check) {
            Ok(built) => built,
            Err(error) => return Ok((Outcome::BuildFailed(error), Vec::new())),
        };
        let warnings: Vec<String> = built.warnings.into_iter().filter(|w| !baseline_warnings.contains(w)).collect();
        eprintln!("      {} in {:.0} s", if self.options.check { "checked" } else { "built" }, built.seconds);
        if self.options.check {
            if mutant.is_some() && !warnings.is_empty() {
                let error = format!(
                    "it builds with warnings (a slip the compiler points at):\n      {}",
                    warnings.join("\n      ")
                );
                return Ok((Outcome::BuildFailed(error), warnings));
            }
            return Ok((Outcome::Builds, warnings));
        }
        // The baseline runs every seed, so that any failing scenario is known before a mutant is blamed for it.
        let exhaustive = self.options.exhaustive || mutant.is_none();
        let outcome = match self.evaluate(name, suites, exhaustive) {
            Ok(evaluation) if evaluation.catches.is_empty() => Outcome::Missed(evaluation),
            Ok(evaluation) => Outcome::Caught(evaluation),
            Err(error) => Outcome::Error(error),
        };
        Ok((outcome, warnings))
    }
}

fn file_stem(path: &str) -> String {
    Path::new(path).file_stem().and_then(|s| s.to_str()).unwrap_or(path).to_string()
}

/// The scenario files of a suite, relative to the copy's root, sorted.
fn scenario_files(root: &Path, suite: &str) -> Result<Vec<String>, String> {
    let dir = root.join("scenarios").join(suite);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".toml"))
        .map(|name| format!("scenarios/{suite}/{name}"))
        .collect();
    files.sort();
    Ok(files)
}

/// The chunks of `seeds` to run in turn.
fn chunks(seeds: &Range<u64>, exhaustive: bool) -> Vec<Range<u64>> {
    if exhaustive {
        return vec![seeds.clone()];
    }
    let mut ends: Vec<u64> =
        CHUNK_ENDS.iter().map(|n| seeds.start.saturating_add(*n)).filter(|&e| e < seeds.end).collect();
    ends.push(seeds.end);
    let mut start = seeds.start;
    ends.into_iter()
        .map(|end| {
            let chunk = start..end;
            start = end;
            chunk
        })
        .collect()
}

/// What the suites made of one tree (the baseline or a mutant).
#[derive(Debug, Default)]
struct Evaluation {
    catches: Vec<Catch>,
    /// Seeds run per suite, in order.
    seeds_run: Vec<(String, u64)>,
    seconds: f64,
}

/// What became of one mutant.
enum Outcome {
    Caught(Evaluation),
    Missed(Evaluation),
    /// `--check`: it applies and builds.
    Builds,
    Stale(Stale),
    BuildFailed(String),
    /// The tool could not measure it (weir-sim refused the run, a crash no scenario reproduces alone).
    Error(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Caught(_) => "caught",
            Outcome::Missed(_) => "missed",
            Outcome::Builds => "builds",
            Outcome::Stale(_) => "STALE",
            Outcome::BuildFailed(_) => "BUILD FAILED",
            Outcome::Error(_) => "ERROR",
        }
    }

    /// Whether the outcome is a failure of the patch or the tool rather than a measurement.
    fn is_error(&self) -> bool {
        matches!(self, Outcome::Stale(_) | Outcome::BuildFailed(_) | Outcome::Error(_))
    }
}

fn describe_stale(stale: &Stale) -> String {
    let mut text = format!("does not apply at HEAD: {}", stale.message.replace('\n', "; "));
    for (index, hunk) in &stale.hunks {
        let _ = write!(text, "\n      hunk {index}: {} {} expects `{}`", hunk.file, hunk.header, hunk.first_change);
    }
    if stale.hunks.is_empty() {
        text.push_str("\n      every hunk applies on its own: they conflict with each other");
    }
    text
}

/// The suites to run: the asked ones (each must exist at HEAD), else the default ones that exist.
fn suites_to_run(workspace: &Workspace, options: &Options) -> Result<Vec<String>, String> {
    let exists = |suite: &str| workspace.scratch.join("scenarios").join(suite).is_dir();
    match &options.suites {
        Some(asked) => {
            if let Some(missing) = asked.iter().find(|s| !exists(s)) {
                return Err(format!("--suites: no scenarios/{missing}/ at HEAD"));
            }
            Ok(asked.clone())
        }
        None => {
            let (found, missing): (Vec<&str>, Vec<&str>) = DEFAULT_SUITES.iter().partition(|s| exists(s));
            if !missing.is_empty() {
                eprintln!("==> no scenarios/{}/ at HEAD: skipped", missing.join("/, scenarios/"));
            }
            Ok(found.into_iter().map(str::to_string).collect())
        }
    }
}

/// Prints the first `limit` catches, earliest first, and how to replay the first (with mutant `name` applied).
fn print_catches(catches: &[Catch], limit: usize, name: Option<&str>) {
    let mut sorted: Vec<&Catch> = catches.iter().collect();
    sorted.sort_by_key(|c| c.seeds_to_failure);
    for catch in sorted.iter().take(limit) {
        eprintln!(
            "    {}/{} fails at seed {} ({} seeds): {}: {}",
            catch.suite, catch.scenario, catch.seed, catch.seeds_to_failure, catch.invariant, catch.event
        );
        if let Some(error) = &catch.error {
            eprintln!("      the run failed: {error}");
        }
    }
    if sorted.len() > limit {
        eprintln!("    ... and {} more scenarios (see the report)", sorted.len() - limit);
    }
    let Some(first) = sorted.first() else { return };
    match name {
        Some(name) => eprintln!("    replay: git apply ci/mutants/{name}.patch && {}", first.replay),
        None => eprintln!("    replay: {}", first.replay),
    }
}

fn seeds_run_text(evaluation: &Evaluation) -> String {
    evaluation.seeds_run.iter().map(|(suite, n)| format!("{suite} {n}")).collect::<Vec<_>>().join(", ")
}

fn print_table(rows: &[(Mutant, Outcome)], check: bool) {
    let width = rows.iter().map(|(m, _)| m.name.len()).max().unwrap_or(6).max(6);
    println!();
    if check {
        println!("{:<width$}  result", "mutant");
        for (mutant, outcome) in rows {
            println!("{:<width$}  {}", mutant.name, outcome.label());
        }
        return;
    }
    println!("{:<width$}  {:<12}  {:<60}  seeds run", "mutant", "result", "first failure (scenario: invariant, seed)");
    for (mutant, outcome) in rows {
        let (first, seeds) = match outcome {
            Outcome::Caught(evaluation) => {
                let first = evaluation.catches.iter().min_by_key(|c| c.seeds_to_failure).expect("caught");
                let more = evaluation.catches.len() - 1;
                let also = if more > 0 { format!(" (+{more})") } else { String::new() };
                let text =
                    format!("{}/{}: {}, seed {}{also}", first.suite, first.scenario, first.invariant, first.seed);
                (text, seeds_run_text(evaluation))
            }
            Outcome::Missed(evaluation) => ("-".to_string(), seeds_run_text(evaluation)),
            Outcome::Builds => ("-".to_string(), "-".to_string()),
            Outcome::Stale(stale) => (format!("{} hunk(s) fail", stale.hunks.len()), "-".to_string()),
            Outcome::BuildFailed(_) | Outcome::Error(_) => ("see above".to_string(), "-".to_string()),
        };
        println!("{:<width$}  {:<12}  {first:<60}  {seeds}", mutant.name, outcome.label());
    }
}

fn catch_json(catch: &Catch) -> Value {
    json!({
        "suite": catch.suite, "scenario": catch.scenario, "seed": catch.seed,
        "seeds_to_failure": catch.seeds_to_failure, "invariant": catch.invariant, "event": catch.event,
        "error": catch.error, "replay": catch.replay,
    })
}

fn outcome_json(mutant: &Mutant, outcome: &Outcome) -> Value {
    let mut entry = json!({ "name": mutant.name, "rule": mutant.rule, "result": outcome.label().to_lowercase() });
    match outcome {
        Outcome::Caught(evaluation) | Outcome::Missed(evaluation) => {
            entry["caught_by"] = evaluation.catches.iter().map(catch_json).collect();
            entry["seeds_run"] = evaluation.seeds_run.iter().map(|(s, n)| (s.clone(), json!(n))).collect();
            entry["seconds"] = json!(evaluation.seconds);
        }
        Outcome::Stale(stale) => {
            entry["error"] = json!(stale.message);
            entry["stale_hunks"] = stale
                .hunks
                .iter()
                .map(|(index, h)| json!({ "hunk": index, "file": h.file, "header": h.header, "expects": h.first_change }))
                .collect();
        }
        Outcome::BuildFailed(error) | Outcome::Error(error) => entry["error"] = json!(error),
        Outcome::Builds => {}
    }
    entry
}

fn head_commit(root: &Path) -> String {
    let output = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(root).output();
    output.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

/// `cargo x mutants [options]`.
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let options = parse_options(args)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
    let workspace = Workspace::new(root.clone());
    let mutants = load_mutants(&root.join("ci").join("mutants"), &options.only)?;
    std::fs::create_dir_all(&workspace.logs).map_err(|e| format!("{}: {e}", workspace.logs.display()))?;
    let session = Session { workspace: &workspace, options: &options };
    let started = Instant::now();

    workspace.fresh_scratch()?;
    let suites = if options.check { Vec::new() } else { suites_to_run(&workspace, &options)? };
    let seeds = format!("{}..{}", options.seeds.start, options.seeds.end);
    if !options.check {
        eprintln!("==> {} mutants; suites {} over seeds {seeds}", mutants.len(), suites.join(", "));
    }
    let mut baseline_warnings = Vec::new();
    let mut baseline = Value::Null;
    if options.baseline || options.check {
        eprintln!("==> baseline (HEAD without a planted bug)");
        let (outcome, warnings) = session.measure(None, &suites, &[])?;
        baseline_warnings = warnings;
        match &outcome {
            Outcome::Missed(evaluation) => baseline = json!({ "seeds_run": seeds_run_text(evaluation) }),
            Outcome::Builds => {}
            Outcome::Caught(evaluation) => {
                print_catches(&evaluation.catches, usize::MAX, None);
                workspace.remove_scratch()?;
                return Err("the suites fail without any planted bug: fix them first (or pass --no-baseline)".into());
            }
            Outcome::Stale(_) | Outcome::BuildFailed(_) | Outcome::Error(_) => {
                let detail = match &outcome {
                    Outcome::BuildFailed(error) | Outcome::Error(error) => error.clone(),
                    _ => String::new(),
                };
                workspace.remove_scratch()?;
                return Err(format!("HEAD itself does not build or run: {detail}"));
            }
        }
    }

    let mut rows: Vec<(Mutant, Outcome)> = Vec::new();
    for (index, mutant) in mutants.iter().enumerate() {
        eprintln!("==> [{}/{}] {} ({})", index + 1, mutants.len(), mutant.name, mutant.rule);
        let (outcome, _) = session.measure(Some(mutant), &suites, &baseline_warnings)?;
        match &outcome {
            Outcome::Caught(evaluation) => print_catches(&evaluation.catches, CATCHES_SHOWN, Some(&mutant.name)),
            Outcome::Missed(evaluation) => eprintln!("    missed ({})", seeds_run_text(evaluation)),
            Outcome::Builds => eprintln!("    applies and builds"),
            Outcome::Stale(stale) => eprintln!("    STALE: {}", describe_stale(stale)),
            Outcome::BuildFailed(error) => eprintln!("    BUILD FAILED: {error}"),
            Outcome::Error(error) => eprintln!("    ERROR: {error}"),
        }
        rows.push((mutant.clone(), outcome));
    }
    workspace.remove_scratch()?;

    print_table(&rows, options.check);
    let caught = rows.iter().filter(|(_, o)| matches!(o, Outcome::Caught(_))).count();
    let missed = rows.iter().filter(|(_, o)| matches!(o, Outcome::Missed(_))).count();
    let errors = rows.iter().filter(|(_, o)| o.is_error()).count();
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    if options.check {
        println!(
            "{} of {} mutants apply and build; {errors} do not ({minutes:.1} min)",
            rows.len() - errors,
            rows.len()
        );
    } else {
        println!("score: {caught} of {} caught, {missed} missed, {errors} errors ({minutes:.1} min)", rows.len());
        let report = json!({
            "head": head_commit(&root), "seeds": seeds, "suites": suites, "baseline": baseline,
            "caught": caught, "missed": missed, "errors": errors,
            "mutants": rows.iter().map(|(m, o)| outcome_json(m, o)).collect::<Vec<_>>(),
        });
        let path = root.join("target").join("mutants").join("report.json");
        let text = serde_json::to_string_pretty(&report).expect("JSON values serialize");
        std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        println!("report: {}", path.display());
    }
    let failed = errors > 0 || (options.require_caught && missed > 0);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn options_parse_and_bad_ones_are_named() {
        let options = parse_options(&strings(&["--seeds", "5..40", "--only", "a,b", "--suites", "smoke"])).unwrap();
        assert_eq!(options.seeds, 5..40);
        assert_eq!(options.only, ["a", "b"]);
        assert_eq!(options.suites, Some(vec!["smoke".to_string()]));
        assert_eq!(parse_options(&strings(&["--seeds", "30"])).unwrap().seeds, 0..30);
        for bad in [&["--seeds", "9..3"][..], &["--seeds"], &["--jobs", "0"], &["--frobnicate"]] {
            assert!(parse_options(&strings(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn seeds_run_in_growing_chunks_unless_exhaustive() {
        assert_eq!(chunks(&(0..200), false), vec![0..10, 10..50, 50..200]);
        assert_eq!(chunks(&(100..130), false), vec![100..110, 110..130]);
        assert_eq!(chunks(&(0..5), false), vec![0..5]);
        assert_eq!(chunks(&(0..200), true), vec![0..200]);
    }

    #[test]
    fn every_patch_has_a_header_and_hunks() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mutants");
        let mutants = load_mutants(&dir, &[]).unwrap();
        assert!(mutants.len() >= 20, "{} mutants", mutants.len());
        for mutant in &mutants {
            assert!(!mutant.rule.is_empty() && !mutant.rule.contains('#'), "{}: rule `{}`", mutant.name, mutant.rule);
            for hunk in &mutant.hunks {
                assert!(
                    hunk.file.starts_with("engine/"),
                    "{}: a mutant changes only the engine: {}",
                    mutant.name,
                    hunk.file
                );
                assert!(hunk.patch.starts_with("diff --git ") && hunk.header.starts_with("@@"), "{}", mutant.name);
            }
        }
    }

    /// A patch the engine moved away from is a planted bug that no longer plants: `cargo x mutants` would report it
    /// stale only when someone runs it, so every change to the engine is held to them here.
    #[test]
    fn every_patch_applies_to_the_tree() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mutants = load_mutants(&root.join("ci").join("mutants"), &[]).unwrap();
        let stale: Vec<String> = mutants
            .iter()
            .filter_map(|mutant| {
                let output = Command::new("git")
                    .args(["apply", "--check"])
                    .arg(&mutant.path)
                    .current_dir(&root)
                    .output()
                    .expect("git runs");
                (!output.status.success())
                    .then(|| format!("{}: {}", mutant.name, String::from_utf8_lossy(&output.stderr).trim()))
            })
            .collect();
        assert!(stale.is_empty(), "stale planted bugs (regenerate them against the tree):\n{}", stale.join("\n"));
    }
}
