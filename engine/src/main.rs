//! The `weir` command line: run a built-in job for real (optionally resuming from a
//! checkpoint), inspect checkpoints, list the built-in jobs.

use clap::{Parser, Subcommand};
use engine::checkpoint::restore::RestoreError;
use engine::cluster::Cluster;
use engine::cluster::messages::RestoreRequest;
use engine::config::{self, ConfigError, JobConfig};
use engine::error::JobError;
use engine::inspect;
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
    /// part files themselves stay in `<output>.parts/`.
    #[arg(long)]
    output: PathBuf,
    /// Parallelism of every operator (overrides `parallelism.default`).
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
    /// Write the run's figures (job time, peak memory, checkpoints) as JSON here.
    #[arg(long = "stats-json", value_name = "FILE")]
    stats_json: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot read config file `{path}`: {message}")]
    ReadConfig { path: String, message: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("parameter `{0}` is not of the form NAME=VALUE")]
    MalformedParam(String),
    #[error("input file `{0}` does not exist")]
    MissingInput(String),
    #[error("--parallelism must be at least 1")]
    ZeroParallelism,
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
        Command::Savepoint { job, target_dir } => {
            control::request(&job, "savepoint", target_dir).map_err(CliError::from)
        }
        Command::Stop { savepoint_path, job } => control::request(&job, "stop", savepoint_path).map_err(CliError::from),
        Command::Cancel { job } => control::request(&job, "cancel", None).map_err(CliError::from),
        Command::Bench(args) => bench::run(args).map_err(CliError::Bench),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Canceled) => {
            eprintln!("canceled");
            ExitCode::from(130)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn print_jobs() {
    for job in engine::jobs::BUILTIN_JOBS {
        println!("{}: {}", job.name, job.about);
        for parameter in job.parameters {
            let default =
                parameter.default.map(|d| format!(" (default {d})")).unwrap_or_else(|| " (required)".to_string());
            println!("    {}{default}: {}", parameter.name, parameter.about);
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<JobConfig, CliError> {
    let Some(path) = path else { return Ok(JobConfig::default()) };
    let text = std::fs::read_to_string(path) // real-only: the CLI's own config file
        .map_err(|e| CliError::ReadConfig { path: path.display().to_string(), message: e.to_string() })?;
    Ok(config::parse_yaml(&text, &path.display().to_string())?)
}

fn run(args: RunArgs) -> Result<(), CliError> {
    let mut config = load_config(args.config.as_deref())?;
    if let Some(parallelism) = args.parallelism {
        if parallelism == 0 {
            return Err(CliError::ZeroParallelism);
        }
        config.parallelism = Some(parallelism);
    }
    let mut params = BTreeMap::new();
    for param in &args.params {
        let (name, value) = param.split_once('=').ok_or_else(|| CliError::MalformedParam(param.clone()))?;
        params.insert(name.to_string(), value.to_string());
    }
    if let Some(input) = &args.input {
        if !input.is_file() {
            return Err(CliError::MissingInput(input.display().to_string()));
        }
        params.insert("input".to_string(), input.display().to_string());
    }
    let parts = part_dir(&args.output);
    params.insert("output".to_string(), parts.display().to_string());
    let restore = args
        .from_savepoint
        .clone()
        .map(|path| RestoreRequest { path, allow_non_restored_state: args.allow_non_restored_state });
    let job = args.job.clone();
    let output = args.output.clone();
    let stats_json = args.stats_json.clone();

    runtime::run(0, async move {
        let storage: StorageRef = Arc::new(LocalStorage);
        // A fresh run starts with no output; a resumed one keeps what earlier runs committed.
        if restore.is_none() && storage.exists(&parts).await? {
            storage.remove_dir_all(&parts).await?;
        }
        let parallelism = config.parallelism.unwrap_or(1);
        let checkpoint_dir = config.checkpoint.dir.clone();
        let builtin = engine::jobs::find(&job).ok_or_else(|| RunError::UnknownJob {
            name: job.clone(),
            known: engine::jobs::BUILTIN_JOBS.iter().map(|j| j.name).collect::<Vec<_>>().join(", "),
        })?;
        let graph = builtin.build_graph(&params, config).map_err(RunError::from)?;
        let cluster = Cluster::start(&local::cluster_spec(parallelism, 1), storage.clone());
        let handle = cluster.submit(graph, restore).await?;
        let job_id = handle.job;
        match &checkpoint_dir {
            Some(dir) => {
                eprintln!("job {job_id} started; checkpoints in {}", Path::new(dir).join(job_id.to_string()).display())
            }
            None => eprintln!("job {job_id} started"),
        }
        let (endpoint, mut requests) = control::serve(job_id, &job)?;
        let wait = handle.wait();
        tokio::pin!(wait);
        let outcome = loop {
            tokio::select! {
                biased;
                outcome = &mut wait => break outcome,
                _ = runtime::ctrl_c() => {
                    cluster.cancel(job_id).await?;
                    return Err(CliError::Canceled);
                }
                Some(request) = requests.recv() => control::answer(&cluster, job_id, request).await,
            }
        };
        drop(endpoint);
        let outcome = match outcome {
            Err(engine::error::JobError::Canceled) => return Err(CliError::Canceled),
            other => other?,
        };
        let text = local::read_parts(&storage, &parts).await?;
        // The part files stay: they are the committed output a later `-s` resume builds on.
        storage::write_atomic(storage.as_ref(), &output, text.as_bytes()).await?;
        if let Some(path) = &stats_json {
            let stats = serde_json::json!({
                "job_time_ms": outcome.duration.as_millis() as u64,
                "attempts": outcome.attempts,
                "peak_rss_kib": bench::peak_rss_kib(),
                "checkpoints": outcome.checkpoint_stats,
            });
            storage::write_atomic(storage.as_ref(), path, stats.to_string().as_bytes()).await?;
        }
        eprintln!(
            "job {} finished in {:.3} s ({} attempts, {} checkpoints); output in {}",
            outcome.job,
            outcome.duration.as_secs_f64(),
            outcome.attempts,
            outcome.completed.len(),
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
                    println!("{}\t{}", listed.path.display(), summary);
                }
            }
            CheckpointsCommand::Inspect { path, json } => {
                let (loaded, files) = inspect::load(&storage, &path).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&inspect::describe_json(&loaded, &files))
                            .expect("JSON values serialize")
                    );
                } else {
                    print!("{}", inspect::describe(&loaded, &files));
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
