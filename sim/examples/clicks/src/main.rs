//! `clicks-sim`: weir's simulation command line over this crate's workloads. `clicks-sim run <scenarios>
//! --seeds 0..200` runs scenario files over seeds, `clicks-sim replay <scenario> --seed N` replays one with its
//! trace, and `run --check-determinism` checks that seeds replay the same.

use std::process::ExitCode;

fn main() -> ExitCode {
    sim::cli::main_with(clicks::registry())
}
