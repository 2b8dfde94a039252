//! The example's scenarios under the simulator: every scenario file in `scenarios/` over 32 seeds, each seed checked
//! against the click counts' reference model and the scenario's fault-free run; the canary must be caught on every
//! seed. Seeds mean something only under simulation, so this file is compiled only there
//! (`cargo test -p clicks --config "build.rustflags=['--cfg','madsim']" --target-dir target/sim`).

#![cfg(madsim)]

use sim::suite::Suite;
use std::path::Path;

fn scenarios() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

#[test]
fn every_scenario_passes_and_the_canary_is_caught() {
    Suite::new(clicks::registry())
        .scenarios(scenarios())
        .seeds(0..32)
        .replay_with("cargo run --release -p clicks --bin clicks-sim --config \"build.rustflags=['--cfg','madsim']\" --target-dir target/sim --")
        .assert_passes();
}
