//! The example's scenarios under the simulator: every scenario file in `scenarios/` over 32 seeds, each seed checked
//! against the click counts' reference model and the scenario's fault-free run, the canary caught on every seed;
//! and two seeds of each replayed the same, in this process and in a fresh one. Seeds mean something only under
//! simulation, so this file is compiled only there
//! (`cargo test --release -p clicks --config "build.rustflags=['--cfg','madsim']" --target-dir target/sim`).

#![cfg(madsim)]

use sim::suite::Suite;

/// How a failure's replay command starts: this crate's `clicks-sim`, under simulation, in release. (A crate of
/// your own would give its `cargo sim` alias, as the README's "Test your own job" shows.)
const REPLAY: &str = "cargo run --release -p clicks --bin clicks-sim --config \"build.rustflags=['--cfg','madsim']\" --target-dir target/sim --";

fn suite() -> Suite {
    Suite::new(clicks::registry())
        .scenarios(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
        .replay_with(REPLAY)
}

#[test]
fn every_scenario_passes_and_the_canary_is_caught() {
    suite().seeds(0..32).assert_passes();
}

#[test]
fn seeds_replay_the_same_in_this_process_and_in_a_fresh_one() {
    suite().seeds(0..2).assert_deterministic(env!("CARGO_BIN_EXE_clicks-sim"));
}
