//! The click-count job as a workload the harness can test: its parameters checked, its graph, its reference model
//! (from the generated clicks alone, never from a run), the committed table read back, and the order the table
//! promises. Registered with `Registry::builtin().with(Clicks)`, a scenario names it `clicks`.

use crate::job::{self, ClicksParams, PAGES, click};
use crate::table::{self, TOTAL_COLUMN};
use engine::api::BuildError;
use engine::api::graph::JobGraph;
use engine::config::JobConfig;
use engine::seam::storage::StorageRef;
use sim::invariants::Invariant;
use sim::workload::{BoxFuture, Reference, Workload, WorkloadEnv};
use std::collections::BTreeMap;

/// Per-user click counts into a key-value table.
pub struct Clicks;

/// The most users a row key (`u000` to `u999`) names.
const USERS_MAX: u32 = 1000;
/// The most clicks per partition a simulated run is given: beyond, a seed takes too long.
const CLICKS_MAX: u64 = 1_000_000;

/// What the reference model says every cell must end at: each user's clicks per page and in all, counted from the
/// generated log.
pub fn expected_cells(params: &ClicksParams) -> BTreeMap<(String, String), u64> {
    let mut cells = BTreeMap::new();
    for partition in 0..params.partitions {
        for number in 0..params.clicks {
            let click = click(params, partition, number);
            *cells.entry((click.user.clone(), click.page)).or_default() += 1;
            *cells.entry((click.user, TOTAL_COLUMN.to_string())).or_default() += 1;
        }
    }
    cells
}

/// The fields of a `row column value` line.
fn version(line: &str) -> Option<(&str, &str, u64)> {
    let mut fields = line.split(' ');
    let (row, column, value) = (fields.next()?, fields.next()?, fields.next()?.parse().ok()?);
    fields.next().is_none().then_some((row, column, value))
}

impl Workload for Clicks {
    const NAME: &'static str = "clicks";
    type Params = ClicksParams;

    fn about(&self) -> &'static str {
        "per-user click counts (MapState per page, ValueState in all) into a versioned key-value table"
    }

    fn validate(&self, params: &ClicksParams) -> Result<(), String> {
        if !(1..=4096).contains(&params.partitions) {
            return Err(format!("`partitions` must be in 1..=4096, got {}", params.partitions));
        }
        if params.clicks > CLICKS_MAX {
            return Err(format!("`clicks` above {CLICKS_MAX} per partition takes too long to simulate, got {}", params.clicks));
        }
        if !(1..=USERS_MAX).contains(&params.users) {
            return Err(format!("`users` must be in 1..={USERS_MAX}, got {}", params.users));
        }
        if !(1..=PAGES.len() as u32).contains(&params.pages) {
            return Err(format!("`pages` must be in 1..={}, got {}", PAGES.len(), params.pages));
        }
        Ok(())
    }

    fn build(&self, params: &ClicksParams, env: &WorkloadEnv, config: JobConfig) -> Result<JobGraph, BuildError> {
        job::graph(Self::NAME, params, env.output_dir.clone(), config, |steps| steps)
    }

    /// Every click adds a version to two cells, so a cell that ends at `n` holds the versions `1..=n`, each once.
    fn reference(&self, params: &ClicksParams) -> Reference {
        let cells = expected_cells(params);
        let mut lines = Vec::new();
        let mut state = Vec::new();
        for ((row, column), clicks) in &cells {
            lines.extend((1..=*clicks).map(|n| format!("{row} {column} {n}")));
            state.push(format!("{row} {column} {clicks}"));
        }
        Reference { records: lines.clone(), lines, state }
    }

    fn committed<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move { table::read_versions(storage, &env.output_dir).await.map_err(|e| e.to_string()) })
    }

    /// The keyed state ends as the table's newest versions: clicks per page and in all, per user.
    fn state_lines(&self, committed: &[&str]) -> Vec<String> {
        let cells = table::newest_values(committed.iter().copied());
        cells.into_iter().map(|((row, column), value)| format!("{row} {column} {value}")).collect()
    }

    fn not_applicable(&self, _invariant: Invariant) -> Option<String> {
        None
    }

    /// The table's promise: in commit order, each cell's versions count up one by one from 1 to the reference's
    /// final value, none repeated, none skipped.
    fn check_order(&self, params: &ClicksParams, committed: &[&str]) -> Option<String> {
        let mut newest: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for line in committed {
            let Some((row, column, value)) = version(line) else {
                return Some(format!("`{line}` is not a `row column value` version"));
            };
            let previous = newest.insert((row, column), value).unwrap_or(0);
            if value != previous + 1 {
                return Some(format!("cell ({row}, {column}): version {value} committed after {previous}"));
            }
        }
        for ((row, column), clicks) in expected_cells(params) {
            let reached = newest.get(&(row.as_str(), column.as_str())).copied().unwrap_or(0);
            if reached != clicks {
                return Some(format!("cell ({row}, {column}) ends at {reached}, expected {clicks}: versions lost"));
            }
        }
        None
    }
}
