//! weir's development and CI tasks, run with `cargo x <task>`.
//!
//! Tasks call cargo with explicit arguments rather than aliases, so an exported `RUSTFLAGS`
//! cannot silently turn a simulation build into a normal one. Simulation builds use their
//! own target directory (`target/sim`), so they never invalidate the normal build.

use std::process::{Command, ExitCode};
use std::time::Instant;

const USAGE: &str = "\
usage: cargo x <task>

tasks:
  build   build the workspace, normally and under simulation (--cfg madsim)
  test    run every test: the normal build, then the simulation build (what CI runs)
  smoke   the main job: the simulated built-in job suite over many seeds, in release
  ci      what .ci/run runs: `test`
";

/// Cargo arguments that select the simulation build.
const SIMULATION: &[&str] = &["--config", "build.rustflags=['--cfg','madsim']", "--target-dir", "target/sim"];

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let steps: Vec<Vec<&str>> = match task.as_str() {
        "build" => vec![
            vec!["build", "--workspace", "--all-targets"],
            [&["build", "--workspace", "--all-targets"][..], SIMULATION].concat(),
        ],
        // Under simulation: the engine's unit tests and the simulated cluster tests. The CLI
        // tests drive the real binary against the real filesystem, so they run only above.
        "test" | "ci" => vec![
            vec!["test", "--workspace"],
            [&["test", "--package", "engine", "--lib"][..], SIMULATION].concat(),
            [&["test", "--package", "sim"][..], SIMULATION].concat(),
        ],
        "smoke" => vec![[&["test", "--release", "--package", "sim", "--test", "determinism"][..], SIMULATION].concat()],
        _ => {
            eprint!("{USAGE}");
            return if task.is_empty() || task == "help" { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        }
    };
    for step in steps {
        if !cargo(&step) {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Runs one cargo command, echoing it and its duration; returns whether it succeeded.
fn cargo(args: &[&str]) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    eprintln!("==> cargo {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(&cargo).args(args).env_remove("RUSTFLAGS").status();
    let seconds = started.elapsed().as_secs_f64();
    match status {
        Ok(status) if status.success() => {
            eprintln!("==> ok in {seconds:.1} s");
            true
        }
        Ok(status) => {
            eprintln!("==> failed ({status}) after {seconds:.1} s: cargo {}", args.join(" "));
            false
        }
        Err(error) => {
            eprintln!("==> cannot run {cargo}: {error}");
            false
        }
    }
}
