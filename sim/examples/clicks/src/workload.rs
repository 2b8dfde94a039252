//! The click-count job as a workload the harness can test: its parameters checked, its graph, its reference model
//! (from the generated clicks alone, never from a run), the committed table read back, and the order the table
//! promises. Registered with `Registry::builtin().with(Clicks)`, a scenario names it `clicks`.

use crate::job::{self, ClicksParams, PAGES, click_indices, user_key};
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
    // Counted by index, per user: the pages' counts, then the total.
    let mut counts = vec![[0u64; PAGES.len() + 1]; params.users as usize];
    for partition in 0..params.partitions {
        for number in 0..params.clicks {
            let (user, page) = click_indices(params, partition, number);
            counts[user as usize][page] += 1;
            counts[user as usize][PAGES.len()] += 1;
        }
    }
    let mut cells = BTreeMap::new();
    for (user, counts) in counts.iter().enumerate() {
        let columns = PAGES.iter().copied().chain([TOTAL_COLUMN]);
        for (column, &clicks) in columns.zip(counts).filter(|(_, clicks)| **clicks > 0) {
            cells.insert((user_key(user as u32), column.to_string()), clicks);
        }
    }
    cells
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
            return Err(format!(
                "`clicks` above {CLICKS_MAX} per partition takes too long to simulate, got {}",
                params.clicks
            ));
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
            let Some((row, column, value)) = table::parse_line(line) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ClicksParams {
        ClicksParams { partitions: 3, clicks: 500, users: 10, pages: 4, clicks_per_second: 0 }
    }

    /// Every cell's versions, one cell after another, each counting up: an order an exactly-once run may commit.
    fn in_commit_order(params: &ClicksParams) -> Vec<String> {
        let cells = expected_cells(params);
        cells
            .iter()
            .flat_map(|((row, column), clicks)| (1..=*clicks).map(move |n| format!("{row} {column} {n}")))
            .collect()
    }

    #[test]
    fn the_reference_counts_every_click_once_per_page_and_once_in_all() {
        let params = params();
        let reference = Clicks.reference(&params);
        let clicks = u64::from(params.partitions) * params.clicks;
        assert_eq!(reference.lines.len() as u64, 2 * clicks, "two versions per click");
        let totals: u64 = expected_cells(&params).iter().filter(|((_, c), _)| c == TOTAL_COLUMN).map(|(_, n)| n).sum();
        assert_eq!(totals, clicks);
        let users =
            expected_cells(&params).keys().map(|(row, _)| row.clone()).collect::<std::collections::BTreeSet<_>>();
        assert_eq!(users.len(), params.users as usize, "500 clicks reach each of 10 users");
    }

    #[test]
    fn the_order_check_holds_an_exact_table_and_names_a_repeated_or_a_lost_version() {
        let params = params();
        let lines = in_commit_order(&params);
        let exact: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(Clicks.check_order(&params, &exact), None);

        let mut repeated = exact.clone();
        repeated.insert(5, exact[4]);
        let breach = Clicks.check_order(&params, &repeated).expect("a repeated version");
        assert!(breach.contains("committed after"), "{breach}");

        let lost = &exact[..exact.len() - 1];
        let breach = Clicks.check_order(&params, lost).expect("a lost version");
        assert!(breach.contains("versions lost"), "{breach}");
    }

    #[test]
    fn parameters_out_of_range_are_named() {
        let error = Clicks.validate(&ClicksParams { pages: 9, ..params() }).unwrap_err();
        assert!(error.contains("`pages`") && error.contains("got 9"), "{error}");
        let error = Clicks.validate(&ClicksParams { users: 0, ..params() }).unwrap_err();
        assert!(error.contains("`users`"), "{error}");
    }
}
