//! weir's development and CI tasks, run with `cargo x <task>`.
//!
//! Tasks call cargo with explicit arguments rather than aliases, so an exported `RUSTFLAGS`
//! cannot silently turn a simulation build into a normal one. Simulation builds use their
//! own target directory (`target/sim`), so they never invalidate the normal build.

mod flink;
mod mutants;

use std::process::{Command, ExitCode};
use std::time::Instant;

const USAGE: &str = "\
usage: cargo x <task>

tasks:
  build          build the workspace, normally and under simulation (--cfg madsim)
  test           every test: the normal build, then the simulation build, then the smoke,
                 recovery, negative and embedded scenario suites over 200 seeds each, a short
                 swarm sweep (300 seeds of each profile), the determinism check over every
                 scenario, then that every planted bug applies and builds (what CI runs)
  smoke          the main job: the smoke scenario suite over 200 seeds, then the canaries
                 and the embedded backend's suite
  nightly        a long swarm sweep: every profile of scenarios/swarm over seeds 0..100000 (or
                 --seeds A..B), stopping after --minutes M if given, with a progress bar and a
                 summary of the distinct failures; --json FILE, --save-scenario DIR as weir-sim
  sim <args>     weir-sim under simulation, built with the `sim` profile: `cargo x sim run scenarios/smoke
                 --seeds 0..500`, `cargo x sim replay <scenario> --seed N`
  bench          the benchmarks: `weir bench` (writes bench.json) against Apache Flink on the
                 same job when Java and Flink's jars can be had (fetched with pip into
                 target/flink), then the smoke suite's simulation speed on 1 and 2 worker
                 threads (bench-sim-1.json, bench-sim-2.json)
  ci             what .ci/run runs: `test`
";

/// Cargo arguments that select the simulation build.
const SIMULATION: &[&str] = &["--config", "build.rustflags=['--cfg','madsim']", "--target-dir", "target/sim"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().cloned().unwrap_or_default();
    if task == "mutants" {
        return mutants::main(&args[1..]);
    }
    let weir_sim: Vec<&str> =
        [&["run", "--profile", "sim", "--package", "sim", "--bin", "weir-sim"][..], SIMULATION, &["--"]].concat();
    let smoke = [weir_sim.clone(), vec!["run", "scenarios/smoke", "--seeds", "0..200"]].concat();
    let negative = [weir_sim.clone(), vec!["run", "scenarios/negative", "--seeds", "0..200"]].concat();
    let embedded = [weir_sim.clone(), vec!["run", "scenarios/embedded", "--seeds", "0..200"]].concat();
    let recovery = [weir_sim.clone(), vec!["run", "scenarios/recovery", "--seeds", "0..200"]].concat();
    let swarm = [weir_sim.clone(), vec!["run", "scenarios/swarm", "--seeds", "0..300"]].concat();
    let nightly = [weir_sim.clone(), nightly_args(&args[1..])].concat();
    // Every scenario of every suite, a few seeds each: untraced, traced, and in a fresh process.
    let determinism = [weir_sim.clone(), vec!["run", "scenarios", "--seeds", "0..4", "--check-determinism"]].concat();
    // The Flink comparison's arguments for `weir bench`; empty (after saying why) when it is skipped.
    let flink = if task == "bench" { flink::bench_args() } else { Vec::new() };
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
            // The example of testing your own job (`sim/examples/clicks`): its scenarios over 32 seeds, optimised
            // (the `sim` profile) since a seed runs a whole simulated cluster.
            [&["test", "--profile", "sim", "--package", "clicks"][..], SIMULATION].concat(),
            smoke,
            recovery,
            negative,
            embedded.clone(),
            swarm,
            determinism,
            // Every planted bug still applies and builds: one the engine moved away from plants nothing.
            vec!["run", "--quiet", "--package", "ci", "--", "mutants", "--check"],
        ],
        "nightly" => vec![nightly],
        "smoke" => vec![smoke, negative, embedded],
        "bench" => vec![
            [
                &["run", "--release", "--quiet", "--package", "engine", "--bin", "weir", "--", "bench"][..],
                &["--json", "bench.json"],
                &flink.iter().map(String::as_str).collect::<Vec<_>>(),
            ]
            .concat(),
            [
                weir_sim.clone(),
                vec!["run", "scenarios/smoke", "--seeds", "0..100", "--jobs", "1", "--json", "bench-sim-1.json"],
            ]
            .concat(),
            [
                weir_sim.clone(),
                vec!["run", "scenarios/smoke", "--seeds", "0..100", "--jobs", "2", "--json", "bench-sim-2.json"],
            ]
            .concat(),
        ],
        "sim" => vec![[weir_sim, args[1..].iter().map(String::as_str).collect()].concat()],
        _ => {
            eprint!("{USAGE}{}", mutants::USAGE);
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

/// `weir-sim run` arguments of the nightly sweep: every swarm profile over 0..100000 unless `--seeds` says
/// otherwise; the rest of `given` (`--minutes`, `--json`, ...) passes through.
fn nightly_args(given: &[String]) -> Vec<&str> {
    let mut args = vec!["run", "scenarios/swarm"];
    if !given.iter().any(|a| a == "--seeds") {
        args.extend(["--seeds", "0..100000"]);
    }
    args.extend(given.iter().map(String::as_str));
    args
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
