//! `weir-sim`: runs scenario suites over many seeds, replays one seed with its trace, and checks that seeds replay
//! deterministically, over the engine's built-in workloads and the canaries.

use std::process::ExitCode;

/// mimalloc: a simulation allocates and frees small objects at a high rate, which it serves faster than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    sim::cli::weir_sim_main()
}
