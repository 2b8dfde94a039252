//! The `weir` command line: run a built-in job for real (optionally resuming from a
//! checkpoint), inspect checkpoints, list the built-in jobs.
//!
//! Everything it prints goes through `out!` and `note!`, which never panic: `weir ... | head`
//! closes the pipe early, and a closed stream must cost output, not the job.

/// Prints a line to stdout; a closed stdout loses it.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Prints a line to stderr; a closed stderr loses it.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use clap::{Parser, Subcommand};
use engine::checkpoint::restore::{self, RestoreError};
use engine::cluster::Cluster;
use engine::cluster::JobError;
use engine::cluster::messages::RestoreRequest;
use engine::config::{self, ConfigError, JobConfig, PARALLELISM_MAX};
use engine::connectors::file_sink::{self, OutputAheadOfRestore};
use engine::inspect;
use engine::jobs::ParameterKind;
use engine::local::{self, RunError};
use engine::seam::runtime;
use engine::seam::storage::{self, LocalStorage, StorageError, StorageRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc: records cross threads (allocated by one subtask, freed by the next), and its
/// per-thread free lists handle that far better than the system allocator's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod control;

#[derive(Parser)]
#[command(name = "weir", version, about = "A Flink-style stateful stream processor, built to be tested")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a built-in job to the end (Ctrl-C cancels it).
    Run(RunArgs),
    /// Lists the built-in jobs and their parameters.
    Jobs,
    /// Lists or inspects checkpoints.
    #[command(subcommand)]
    Checkpoints(CheckpointsCommand),
    /// Lists the jobs running on this machine.
    List,
    /// Takes a savepoint of a running job.
    Savepoint {
        job: String,
        /// Where the savepoint directory goes (default: the job's `state.savepoints.dir`).
        target_dir: Option<PathBuf>,
    },
    /// Stops a running job with a savepoint: sinks commit up to it, then the job ends.
    Stop {
        #[arg(long = "savepoint-path", short = 'p')]
        savepoint_path: Option<PathBuf>,
        job: String,
    },
    /// Cancels a running job; its checkpoints are kept or deleted per the retention setting.
    Cancel { job: String },
    /// Measures throughput, checkpoint cost and restore time; prints a table, writes JSON.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum CheckpointsCommand {
    /// Lists the `chk-<n>` directories under a checkpoint directory (a job's, or the root).
    List { dir: PathBuf },
    /// Prints what a checkpoint holds: a `chk-<n>` directory or its `_metadata` file.
    Inspect {
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also read every state file the checkpoint references and check each range's
        /// length and checksum; a missing or corrupt one is an error (exit status 1).
        #[arg(long)]
        verify: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The built-in job to run (see `weir jobs`).
    #[arg(long)]
    job: String,
    /// The job's input file (the `input` parameter).
    #[arg(long)]
    input: Option<PathBuf>,
    /// The file the job's committed output is written to when it finishes; the committed
    /// part files themselves stay in `<output>.parts/`. One run at a time writes it
    /// (`<output>.lock`).
    #[arg(long)]
    output: PathBuf,
    /// Parallelism of every operator, 1 to 2048 (overrides `parallelism.default`).
    #[arg(long, short = 'p')]
    parallelism: Option<u32>,
    /// A YAML configuration file with Flink's keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A job parameter, `name=value` (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Resume from a checkpoint or savepoint: a `chk-<n>` directory or its `_metadata`.
    #[arg(long = "fromSavepoint", short = 's', value_name = "PATH")]
    from_savepoint: Option<PathBuf>,
    /// Skip checkpointed state of operators the job no longer has.
    #[arg(long = "allow-non-restored-state", short = 'n')]
    allow_non_restored_state: bool,
    /// With `-s` from a checkpoint older than the newest committed output: delete the part
    /// files committed after it (their records are replayed and committed again) instead of
    /// refusing to resume.
    #[arg(long = "discard-newer-output")]
    discard_newer_output: bool,
    /// Write the run's figures (job time, peak memory, checkpoints) as JSON here.
    #[arg(long = "stats-json", value_name = "FILE")]
    stats_json: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot read config file `{path}`: {message}")]
    ReadConfig { path: String, message: String },
    #[error("config file `{path}` is {what}, not a regular file")]
    ConfigNotAFile { path: String, what: &'static str },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("parameter `{0}` is not of the form NAME=VALUE")]
    MalformedParam(String),
    #[error("parameter `{name}` is given twice: `{first}` and `{second}`")]
    DuplicateParam { name: String, first: String, second: String },
    #[error("parameter `{name}` of job `{job}` is set by {flag}, not by --param")]
    ParamSetByFlag { job: String, name: String, flag: &'static str },
    #[error("input file `{0}` does not exist")]
    MissingInput(String),
    #[error("state.backend.rocksdb.localdir `{path}`: {message}")]
    UnusableLocalDir { path: String, message: String },
    #[error("input `{path}` is {what}, not a regular file: the job reads its input file in byte ranges")]
    InputNotAFile { path: String, what: &'static str },
    #[error("cannot read input file `{path}`: {message}")]
    UnreadableInput { path: String, message: String },
    #[error("output `{path}` is {what}: --output names the file the committed output is written to")]
    OutputNotAFile { path: String, what: &'static str },
    #[error("output `{0}` names no file: --output names the file the committed output is written to")]
    OutputWithoutName(String),
    #[error(
        "output `{0}` ends with `/`, which names a directory: --output names the file the committed output is written to"
    )]
    OutputEndsWithSlash(String),
    #[error("output `{path}` cannot be created: `{parent}` is {what}, not a directory")]
    OutputParentNotADirectory { path: String, parent: String, what: &'static str },
    #[error("output `{output}` is the input file `{input}`: the job would overwrite its own input")]
    OutputIsInput { output: String, input: String },
    #[error("--stats-json `{path}` {problem}")]
    StatsJsonTarget { path: String, problem: String },
    #[error("checkpoint `{path}` is {what}, not a regular file: a checkpoint's `_metadata` is read whole")]
    MetadataNotAFile { path: String, what: &'static str },
    #[error("invalid savepoint target `{path}`: expected {problem}")]
    SavepointTarget { path: String, problem: String },
    #[error(transparent)]
    OutputLock(#[from] output_lock::LockError),
    #[error("--parallelism must be at least 1 and at most {PARALLELISM_MAX}, got {0}")]
    ParallelismOutOfRange(u32),
    #[error("--discard-newer-output applies to a restore: give the checkpoint with -s")]
    DiscardWithoutRestore,
    #[error(transparent)]
    OutputAhead(#[from] OutputAheadOfRestore),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Job(Box<JobError>),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the job was canceled")]
    Canceled,
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("benchmark: {0}")]
    Bench(String),
    #[error("checkpoint `{path}` failed verification ({problems} problems over {ranges} state ranges); first: {first}")]
    VerificationFailed { path: String, problems: usize, ranges: usize, first: String },
}

impl From<JobError> for CliError {
    fn from(error: JobError) -> Self {
        CliError::Job(Box::new(error))
    }
}

fn main() -> ExitCode {
    engine::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Jobs => {
            print_jobs();
            Ok(())
        }
        Command::Run(args) => run(args),
        Command::Checkpoints(command) => checkpoints(command),
        Command::List => control::list().map_err(CliError::from),
        Command::Savepoint { job, target_dir } => savepoint_target(target_dir)
            .and_then(|target| control::request(&job, "savepoint", target).map_err(CliError::from)),
        Command::Stop { savepoint_path, job } => savepoint_target(savepoint_path)
            .and_then(|target| control::request(&job, "stop", target).map_err(CliError::from)),
        Command::Cancel { job } => control::request(&job, "cancel", None).map_err(CliError::from),
        Command::Bench(args) => bench::run(args).map_err(CliError::Bench),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Canceled) => {
            note!("canceled");
            ExitCode::from(130)
        }
        Err(error) => {
            note!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn print_jobs() {
    for job in engine::jobs::BUILTIN_JOBS {
        out!("{}: {}", job.name, job.about);
        for parameter in job.parameters {
            out!("    {} ({}): {}", parameter.name, parameter.describe(), parameter.about);
        }
    }
    out!("(`weir run --param NAME=VALUE` sets the others; parameters set by an option are not --params)");
}

/// `1 attempt`, `3 attempts`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// What a file type is, in words, for an error message.
fn describe_file_type(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// What `path` is, in words, if it exists but is not a regular file (symbolic links followed).
/// Only its type is looked at: opening a FIFO to read waits for a writer.
fn not_a_regular_file(path: &Path) -> Option<&'static str> {
    std::fs::metadata(path).ok().filter(|m| !m.is_file()).map(|m| describe_file_type(m.file_type()))
}

/// Whether `path` is written with a trailing `/` (which only a directory can satisfy).
fn ends_with_slash(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().ends_with(b"/")
}

/// A checkpoint's `_metadata` (given as itself or by its directory) must be a regular file
/// if it exists; a missing or otherwise unusable one is the restore's to report.
fn check_metadata_file(path: &Path) -> Result<(), CliError> {
    use engine::checkpoint::metadata::METADATA_FILE_NAME;
    let metadata = if path.is_dir() { path.join(METADATA_FILE_NAME) } else { path.to_path_buf() };
    match std::fs::metadata(&metadata) {
        Ok(found) if !found.is_file() && !found.is_dir() => Err(CliError::MetadataNotAFile {
            path: metadata.display().to_string(),
            what: describe_file_type(found.file_type()),
        }),
        _ => Ok(()),
    }
}

/// The target of `weir savepoint` and `weir stop`, checked as `state.savepoints.dir` is in a
/// config file: a `file://` URI becomes its path, another scheme is an error naming it.
fn savepoint_target(target: Option<PathBuf>) -> Result<Option<PathBuf>, CliError> {
    let Some(target) = target else { return Ok(None) };
    let Some(text) = target.to_str() else { return Ok(Some(target)) };
    match config::parse_local_path(text) {
        Ok(path) => Ok(Some(PathBuf::from(path))),
        Err(problem) => Err(CliError::SavepointTarget { path: text.to_string(), problem }),
    }
}

/// The job's input must be a regular file: a directory or FIFO is named as such.
fn check_input(input: &Path) -> Result<(), CliError> {
    let path = || input.display().to_string();
    match std::fs::metadata(input) {
        Ok(metadata) if metadata.is_file() => Ok(()),
        Ok(metadata) => Err(CliError::InputNotAFile { path: path(), what: describe_file_type(metadata.file_type()) }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(CliError::MissingInput(path())),
        Err(error) => Err(CliError::UnreadableInput { path: path(), message: error.to_string() }),
    }
}

/// The output must name a file that is not a directory, checked before the job runs (not
/// when it ends, with the whole run's output at stake).
fn check_output(output: &Path) -> Result<(), CliError> {
    let path = || output.display().to_string();
    if output.file_name().is_none() {
        return Err(CliError::OutputWithoutName(path()));
    }
    if ends_with_slash(output) {
        return Err(CliError::OutputEndsWithSlash(path()));
    }
    if let Some(what) = not_a_regular_file(output) {
        return Err(CliError::OutputNotAFile { path: path(), what });
    }
    // Missing directories on the way are created, but not under a file: the nearest
    // existing ancestor must be a directory.
    for ancestor in output.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()) {
        match std::fs::metadata(ancestor) {
            Ok(metadata) if metadata.is_dir() => break,
            Ok(metadata) => {
                let (parent, what) = (ancestor.display().to_string(), describe_file_type(metadata.file_type()));
                return Err(CliError::OutputParentNotADirectory { path: path(), parent, what });
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// The output must not be the input (by another spelling or through a link either): the
/// job would replace the file it reads.
fn check_output_is_not_input(input: &Path, output: &Path) -> Result<(), CliError> {
    match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(input_real), Ok(output_real)) if input_real == output_real => {
            Err(CliError::OutputIsInput { output: output.display().to_string(), input: input.display().to_string() })
        }
        _ => Ok(()),
    }
}

/// The embedded backend's local directory must be one this process can make and write, checked before the job
/// runs: a store that cannot make its directory fails every attempt of its subtask, and the job would restart
/// forever.
fn check_local_dir(config: &JobConfig) -> Result<(), CliError> {
    if config.state_backend != engine::config::StateBackendKind::Embedded {
        return Ok(());
    }
    let dir = config.embedded.local_dir.as_ref().map_or_else(engine::seam::runtime::default_local_dir, PathBuf::from);
    let unusable = |message: String| CliError::UnusableLocalDir { path: dir.display().to_string(), message };
    // real-only: the CLI checks its own machine's directory before any store runs
    std::fs::create_dir_all(&dir).map_err(|e| unusable(format!("cannot be created: {e}")))?;
    let probe = dir.join(format!(".weir-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| unusable(format!("cannot be written: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The `--stats-json` file is written when the job ends: whether it can be is checked before
/// the job runs. Its directory must exist.
fn check_stats_json(stats: &Path) -> Result<(), CliError> {
    let problem = |problem: String| Err(CliError::StatsJsonTarget { path: stats.display().to_string(), problem });
    const NAMES: &str = "--stats-json names the file the run's figures are written to";
    if stats.file_name().is_none() || ends_with_slash(stats) {
        return problem(format!("names a directory: {NAMES}"));
    }
    if let Some(what) = not_a_regular_file(stats) {
        return problem(format!("is {what}: {NAMES}"));
    }
    let parent = stats.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match std::fs::metadata(parent) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(metadata) => problem(format!(
            "is in `{}`, which is {}, not a directory",
            parent.display(),
            describe_file_type(metadata.file_type())
        )),
        Err(_) => problem(format!("is in `{}`, which does not exist", parent.display())),
    }
}

fn load_config(path: Option<&Path>) -> Result<JobConfig, CliError> {
    let Some(path) = path else { return Ok(JobConfig::default()) };
    if let Some(what) = not_a_regular_file(path) {
        return Err(CliError::ConfigNotAFile { path: path.display().to_string(), what });
    }
    let text = std::fs::read_to_string(path) // real-only: the CLI's own config file
        .map_err(|e| CliError::ReadConfig { path: path.display().to_string(), message: e.to_string() })?;
    Ok(config::parse_yaml(&text, &path.display().to_string())?)
}

fn run(args: RunArgs) -> Result<(), CliError> {
    let mut config = load_config(args.config.as_deref())?;
    check_local_dir(&config)?;
    if let Some(parallelism) = args.parallelism {
        if !(1..=PARALLELISM_MAX).contains(&parallelism) {
            return Err(CliError::ParallelismOutOfRange(parallelism));
        }
        config.parallelism = Some(parallelism);
    }
    if args.discard_newer_output && args.from_savepoint.is_none() {
        return Err(CliError::DiscardWithoutRestore);
    }
    config.restore_discards_newer_output = args.discard_newer_output;
    let builtin = engine::jobs::find(&args.job).ok_or_else(|| RunError::UnknownJob {
        name: args.job.clone(),
        known: engine::jobs::BUILTIN_JOBS.iter().map(|j| j.name).collect::<Vec<_>>().join(", "),
    })?;
    let mut params = BTreeMap::new();
    for param in &args.params {
        let (name, value) = param.split_once('=').ok_or_else(|| CliError::MalformedParam(param.clone()))?;
        if let Some(ParameterKind::Path { cli_flag }) = builtin.parameter(name).map(|p| p.kind) {
            return Err(CliError::ParamSetByFlag { job: args.job.clone(), name: name.to_string(), flag: cli_flag });
        }
        if let Some(first) = params.insert(name.to_string(), value.to_string()) {
            let second = value.to_string();
            return Err(CliError::DuplicateParam { name: name.to_string(), first, second });
        }
    }
    if let Some(input) = &args.input {
        check_input(input)?;
        params.insert("input".to_string(), input.display().to_string());
    }
    check_output(&args.output)?;
    if let Some(input) = &args.input {
        check_output_is_not_input(input, &args.output)?;
    }
    if let Some(stats) = &args.stats_json {
        check_stats_json(stats)?;
    }
    if let Some(checkpoint) = &args.from_savepoint {
        check_metadata_file(checkpoint)?;
    }
    let parts = part_dir(&args.output);
    params.insert("output".to_string(), parts.display().to_string());
    // Parameters and configuration are checked before anything on disk changes.
    let graph = builtin.build_graph(&params, config.clone()).map_err(RunError::from)?;
    // One run at a time writes an output; the lock goes when this function returns.
    let _lock = output_lock::OutputLock::acquire(&args.output)?;
    let restore = args
        .from_savepoint
        .clone()
        .map(|path| RestoreRequest { path, allow_non_restored_state: args.allow_non_restored_state });
    let job = args.job.clone();
    let output = args.output.clone();
    let stats_json = args.stats_json.clone();
    let discard_newer_output = args.discard_newer_output;

    runtime::run(0, async move {
        let storage: StorageRef = Arc::new(LocalStorage);
        let restored_from = match &restore {
            Some(request) => {
                let loaded = restore::load(&storage, &request.path).await?;
                // Resuming from a checkpoint older than the committed output would duplicate
                // what was committed after it: refuse before the job starts (the sink refuses
                // too, but from inside a job that would restart).
                if !discard_newer_output {
                    file_sink::check_restore(&storage, &parts, loaded.metadata.checkpoint_id).await??;
                }
                Some(loaded)
            }
            None => None,
        };
        // A fresh run starts with no output; a resumed one keeps what earlier runs committed.
        if restore.is_none() && storage.exists(&parts).await? {
            storage.remove_dir_all(&parts).await?;
        }
        let parallelism = config.parallelism.unwrap_or(1);
        let checkpoint_dir = config.checkpoint.dir.clone();
        let cluster = Cluster::start(&local::cluster_spec(parallelism, 1), storage.clone());
        let handle = cluster.submit(graph, restore).await?;
        let job_id = handle.job;
        let started = match &checkpoint_dir {
            Some(dir) => {
                format!("job {job_id} started; checkpoints in {}", Path::new(dir).join(job_id.to_string()).display())
            }
            None => format!("job {job_id} started"),
        };
        match &restored_from {
            Some(loaded) => note!(
                "{started}; restored from {:?} {} of job {} ({})",
                loaded.metadata.kind,
                loaded.metadata.checkpoint_id,
                loaded.metadata.job_id,
                loaded.metadata_path.display()
            ),
            None => note!("{started}"),
        }
        let mut endpoint = control::serve(job_id, &job)?;
        let wait = handle.wait();
        tokio::pin!(wait);
        let outcome = loop {
            tokio::select! {
                biased;
                outcome = &mut wait => break outcome,
                _ = runtime::ctrl_c() => {
                    tracing::info!(job = %job_id, "canceling the job at the user's request (Ctrl-C)");
                    cluster.cancel(job_id).await?;
                    // The job's end is answered once the retention policy is applied: wait for it, so that the
                    // checkpoint directory is as the policy says when this process exits.
                    let _ = (&mut wait).await;
                    return Err(CliError::Canceled);
                }
                request = endpoint.recv() => control::answer(&cluster, job_id, request).await,
            }
        };
        // Answers in flight (a `weir cancel`'s "canceled") reach their clients first.
        drop(endpoint);
        let outcome = match outcome {
            Err(engine::cluster::JobError::Canceled) => return Err(CliError::Canceled),
            other => other?,
        };
        // The part files stay: they are the committed output a later `-s` resume builds on.
        local::write_parts(&storage, &parts, &output).await?;
        if let Some(path) = &stats_json {
            let stats = serde_json::json!({
                "job_time_ms": outcome.duration.as_millis() as u64,
                "attempts": outcome.attempts,
                "peak_rss_kib": bench::peak_rss_kib(),
                "checkpoints": outcome.checkpoint_stats,
            });
            storage::write_atomic(storage.as_ref(), path, stats.to_string().as_bytes()).await?;
        }
        note!(
            "job {} finished in {:.3} s ({}, {}); output in {}",
            outcome.job,
            outcome.duration.as_secs_f64(),
            count(u64::from(outcome.attempts), "attempt"),
            count(outcome.completed.len() as u64, "checkpoint"),
            output.display()
        );
        Ok(())
    })
}

fn checkpoints(command: CheckpointsCommand) -> Result<(), CliError> {
    runtime::run(0, async move {
        let storage: StorageRef = Arc::new(LocalStorage);
        match command {
            CheckpointsCommand::List { dir } => {
                for listed in inspect::list(&storage, &dir).await? {
                    let summary = listed.summary.unwrap_or_else(|| "incomplete (no _metadata)".to_string());
                    out!("{}\t{}", listed.path.display(), summary);
                }
            }
            CheckpointsCommand::Inspect { path, json, verify } => {
                check_metadata_file(&path)?;
                let (loaded, files) = inspect::load(&storage, &path).await?;
                let verification = match verify {
                    true => Some(inspect::verify(&storage, &loaded).await?),
                    false => None,
                };
                if json {
                    let mut value = inspect::describe_json(&loaded, &files);
                    if let Some(v) = &verification {
                        let problems: Vec<String> = v.problems.iter().map(|p| p.to_string()).collect();
                        value["verified"] = serde_json::json!({
                            "files": v.files, "ranges": v.ranges, "bytes": v.bytes, "problems": problems,
                        });
                    }
                    out!("{}", serde_json::to_string_pretty(&value).expect("JSON values serialize"));
                } else {
                    let text = inspect::describe(&loaded, &files);
                    out!("{}", text.trim_end());
                    if let Some(v) = &verification {
                        for problem in &v.problems {
                            out!("FAILED: {problem}");
                        }
                        if v.problems.is_empty() {
                            out!(
                                "verified: {} ranges in {} files ({} bytes), every length and checksum matches",
                                v.ranges,
                                v.files,
                                v.bytes
                            );
                        }
                    }
                }
                if let Some(v) = verification
                    && let Some(first) = v.problems.first()
                {
                    return Err(CliError::VerificationFailed {
                        path: loaded.metadata_path.display().to_string(),
                        problems: v.problems.len(),
                        ranges: v.ranges,
                        first: first.to_string(),
                    });
                }
            }
        }
        Ok(())
    })
}

/// The directory of committed part files, joined into `output` when the job finishes.
fn part_dir(output: &Path) -> PathBuf {
    let mut name = output.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".parts");
    output.with_file_name(name)
}

/// One `weir run` at a time per output: a lock file created exclusively beside the output,
/// holding the owner's process id (and start time, so a reused id is not mistaken for the
/// owner), removed when the run ends. A lock whose process is gone (`kill -9`) is stale and
/// taken over.
mod output_lock {
    use std::io::Write as _;
    use std::path::{Path, PathBuf};

    #[derive(Debug, thiserror::Error)]
    pub enum LockError {
        #[error(
            "output `{output}` is being written by another `weir run` (process {pid}, lock file `{}`); wait for it to end, or delete the lock file if that process is not weir",
            .lock.display()
        )]
        Held { output: String, lock: PathBuf, pid: u32 },
        #[error("cannot lock output `{output}` (lock file `{}`): {message}", .lock.display())]
        Io { output: String, lock: PathBuf, message: String },
    }

    /// The held lock; dropping it removes the lock file.
    pub struct OutputLock {
        path: PathBuf,
        owner: String,
    }

    /// `<output>.lock`.
    pub fn lock_path(output: &Path) -> PathBuf {
        let mut name = output.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".lock");
        output.with_file_name(name)
    }

    /// The start time of process `pid` in clock ticks since boot (Linux's `/proc/<pid>/stat`,
    /// field 22), which tells a process from a later one given the same id.
    fn start_time(pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: skip past it.
        let after_name = &stat[stat.rfind(')')? + 1..];
        after_name.split_whitespace().nth(19)?.parse().ok()
    }

    /// `pid start-time` of this process.
    fn owner() -> String {
        let pid = std::process::id();
        match start_time(pid) {
            Some(start) => format!("{pid} {start}\n"),
            None => format!("{pid}\n"),
        }
    }

    /// Whether the lock's owner (as written in it) is alive; `None` if the lock is unreadable.
    fn owner_alive(content: &str) -> Option<(u32, bool)> {
        let mut fields = content.split_whitespace();
        let pid: u32 = fields.next()?.parse().ok()?;
        let alive = match (crate::control::process_alive(pid), fields.next().and_then(|s| s.parse::<u64>().ok())) {
            (Some(false), _) => false,
            // The id lives on, but in another process than the one that took the lock.
            (Some(true), Some(start)) => start_time(pid) == Some(start),
            (Some(true), None) | (None, _) => true,
        };
        Some((pid, alive))
    }

    impl OutputLock {
        pub fn acquire(output: &Path) -> Result<OutputLock, LockError> {
            let path = lock_path(output);
            let io = |error: std::io::Error| LockError::Io {
                output: output.display().to_string(),
                lock: path.clone(),
                message: error.to_string(),
            };
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let owner = owner();
            // Written whole under a private name, then linked to the lock's name, which fails
            // if the lock exists: no one ever reads a half-written lock.
            let private = path.with_file_name(format!(
                ".{}.{}.tmp",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                std::process::id()
            ));
            let mut file = std::fs::File::create(&private).map_err(io)?;
            file.write_all(owner.as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
            drop(file);
            let result = (|| {
                for _ in 0..2 {
                    match std::fs::hard_link(&private, &path) {
                        Ok(()) => return Ok(()),
                        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(error) => return Err(io(error)),
                    }
                    let content = std::fs::read_to_string(&path).unwrap_or_default();
                    match owner_alive(&content) {
                        Some((pid, true)) => {
                            return Err(LockError::Held {
                                output: output.display().to_string(),
                                lock: path.clone(),
                                pid,
                            });
                        }
                        // A dead run's lock (or an unreadable one): take it over, once.
                        _ => match std::fs::remove_file(&path) {
                            Ok(()) => {}
                            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                            Err(error) => return Err(io(error)),
                        },
                    }
                }
                Err(io(std::io::Error::other("another run took the lock at the same time")))
            })();
            let _ = std::fs::remove_file(&private);
            result.map(|()| OutputLock { path, owner })
        }
    }

    impl Drop for OutputLock {
        fn drop(&mut self) {
            // Only this run's own lock: never one a later run took over.
            if std::fs::read_to_string(&self.path).is_ok_and(|content| content == self.owner) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}
