//! The `weir` command line: run a built-in job for real, list the built-in jobs.

use clap::{Parser, Subcommand};
use engine::cluster::Cluster;
use engine::config::{self, ConfigError, JobConfig};
use engine::local::{self, RunError};
use engine::seam::runtime;
use engine::seam::storage::{self, LocalStorage, StorageError, StorageRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "weir", version, about = "A Flink-style stateful stream processor, built to be tested")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a built-in job to the end.
    Run(RunArgs),
    /// Lists the built-in jobs and their parameters.
    Jobs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The built-in job to run (see `weir jobs`).
    #[arg(long)]
    job: String,
    /// The job's input file (the `input` parameter).
    #[arg(long)]
    input: Option<PathBuf>,
    /// The file the job's output is written to.
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
    Storage(#[from] StorageError),
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
    let job = args.job.clone();
    let output = args.output.clone();

    runtime::run(0, async move {
        let storage: StorageRef = Arc::new(LocalStorage);
        if storage.exists(&parts).await? {
            storage.remove_dir_all(&parts).await?;
        }
        let parallelism = config.parallelism.unwrap_or(1);
        let cluster = Cluster::start(&local::cluster_spec(parallelism, 1), storage.clone());
        let outcome = local::run_builtin(&cluster, &job, &params, config).await?;
        let text = local::read_parts(&storage, &parts).await?;
        storage::write_atomic(storage.as_ref(), &output, text.as_bytes()).await?;
        storage.remove_dir_all(&parts).await?;
        eprintln!(
            "job {} finished in {:.3} s; output in {}",
            outcome.job,
            outcome.duration.as_secs_f64(),
            output.display()
        );
        Ok(())
    })
}

/// The directory part files are written to before they are joined into `output`.
fn part_dir(output: &Path) -> PathBuf {
    let mut name = output.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".parts");
    output.with_file_name(name)
}
