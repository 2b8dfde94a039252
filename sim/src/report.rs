//! A sweep's reports: the JSON and JUnit files `weir-sim run` writes, read back and combined by `weir-sim merge`.
//!
//! A report lists, per scenario, how many seeds ran and passed and every failing seed (its violations, its first
//! divergence, its replay command), and the **distinct failures**: failing seeds grouped by scenario, the
//! invariants they broke and their first divergence's signature ([`crate::divergence::Divergence::signature`]),
//! so that a thousand seeds failing for one reason read as one line with a count and an example.
//!
//! `merge` takes the reports of the shards of one sweep ([`crate::shard`]): all sharded the same way, over the
//! same seeds, each shard once and none missing (a shard whose job died must not pass for a green sweep). The
//! merged report is one of the same form, so it can be merged again with the reports of other suites.

use crate::divergence::FirstDivergence;
use crate::invariants::Violation;
use crate::shard::Shard;
use crate::suite::{self, ScenarioSummary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How many seeds a distinct failure lists, besides its count.
const EXAMPLE_SEEDS_MAX: usize = 10;

/// One run's (or a merge's) report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    /// The shard it covers (`I/N`), if the run was sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The seed range every scenario was run over (`start..end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<String>,
    /// For a merge: the shards it combines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<String>,
    pub scenarios: Vec<ScenarioReport>,
    #[serde(default)]
    pub distinct_failures: Vec<DistinctFailure>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub path: String,
    pub seeds: u64,
    pub passed: u64,
    pub failed: u64,
    pub seeds_per_second: f64,
    pub simulated_per_wall: f64,
    /// Wall-clock seconds the seeds took (summed over shards in a merge).
    #[serde(default)]
    pub wall_time_s: f64,
    /// Simulated seconds over every seed.
    #[serde(default)]
    pub simulated_s: f64,
    /// For a canary: the invariant it must break.
    #[serde(default)]
    pub canary: Option<String>,
    pub failures: Vec<FailureReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureReport {
    pub seed: u64,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub violations: Vec<ViolationReport>,
    pub replay: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_divergence: Option<FirstDivergence>,
}

/// A violation as reports carry it: the invariant by name, so that a report of another build still reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationReport {
    pub invariant: String,
    pub seed: u64,
    pub time_ms: u64,
    pub event: String,
}

impl From<&Violation> for ViolationReport {
    fn from(violation: &Violation) -> Self {
        ViolationReport {
            invariant: violation.invariant.to_string(),
            seed: violation.seed,
            time_ms: violation.time_ms,
            event: violation.event.clone(),
        }
    }
}

/// Failing seeds of one scenario that broke the same invariants and first diverged alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistinctFailure {
    pub scenario: String,
    pub path: String,
    /// The invariants broken (sorted, comma-separated), `run error`, or that the canary was not caught.
    pub invariants: String,
    /// The first divergence's signature.
    pub first_divergence: String,
    /// How many seeds failed so.
    pub count: u64,
    /// The lowest of them.
    pub seeds: Vec<u64>,
    /// What the lowest seed reported.
    pub example: String,
    /// The lowest seed's first divergence, in full.
    #[serde(default)]
    pub divergence: Option<String>,
    /// The lowest seed's replay command.
    pub replay: String,
}

impl FailureReport {
    /// What broke, in one line.
    fn what(&self, canary: Option<&str>) -> String {
        if let Some(canary) = canary {
            return format!("the canary was not caught (`{canary}` held)");
        }
        match (self.violations.first(), &self.error) {
            (Some(v), _) => {
                format!("invariant `{}` violated (seed {}, at {} ms): {}", v.invariant, v.seed, v.time_ms, v.event)
            }
            (None, Some(error)) => error.clone(),
            (None, None) => "failed".to_string(),
        }
    }

    /// The invariants it broke, as distinct failures name them.
    fn invariants(&self, canary: Option<&str>) -> String {
        if let Some(canary) = canary {
            return format!("canary not caught (`{canary}` held)");
        }
        let mut names: Vec<&str> = self.violations.iter().map(|v| v.invariant.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() { "run error".to_string() } else { names.join(", ") }
    }
}

/// The distinct failures of `scenarios`: by scenario (in order), then most seeds first.
pub fn distinct_failures(scenarios: &[ScenarioReport]) -> Vec<DistinctFailure> {
    let mut all = Vec::new();
    for scenario in scenarios {
        let canary = scenario.canary.as_deref();
        let mut groups: BTreeMap<(String, String), Vec<&FailureReport>> = BTreeMap::new();
        for failure in &scenario.failures {
            let signature = failure.first_divergence.as_ref().map_or("not computed".to_string(), |d| d.signature());
            groups.entry((failure.invariants(canary), signature)).or_default().push(failure);
        }
        let mut distinct: Vec<DistinctFailure> = groups
            .into_iter()
            .map(|((invariants, first_divergence), mut failures)| {
                failures.sort_by_key(|f| f.seed);
                let example = failures[0];
                DistinctFailure {
                    scenario: scenario.name.clone(),
                    path: scenario.path.clone(),
                    invariants,
                    first_divergence,
                    count: failures.len() as u64,
                    seeds: failures.iter().take(EXAMPLE_SEEDS_MAX).map(|f| f.seed).collect(),
                    example: example.what(canary),
                    divergence: example.first_divergence.as_ref().map(|d| d.to_string()),
                    replay: example.replay.clone(),
                }
            })
            .collect();
        distinct.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.seeds.cmp(&b.seeds)));
        all.extend(distinct);
    }
    all
}

impl SuiteReport {
    /// The report of a run of `summaries` over `seeds` (by `shard`, if sharded); `program` starts replay commands.
    pub fn of_run(program: &str, summaries: &[ScenarioSummary], seeds: &Range<u64>, shard: Option<Shard>) -> Self {
        let scenarios: Vec<ScenarioReport> = summaries
            .iter()
            .map(|s| ScenarioReport {
                name: s.name.clone(),
                path: s.path.clone(),
                seeds: s.seeds,
                passed: s.passed,
                failed: s.failures.len() as u64,
                seeds_per_second: s.seeds_per_second(),
                simulated_per_wall: s.sim_wall_ratio(),
                wall_time_s: s.wall_time.as_secs_f64(),
                simulated_s: s.sim_time_ms as f64 / 1000.0,
                canary: s.canary.map(|c| c.to_string()),
                failures: s
                    .failures
                    .iter()
                    .map(|f| FailureReport {
                        seed: f.seed,
                        error: f.error.clone(),
                        violations: f.violations.iter().map(ViolationReport::from).collect(),
                        replay: suite::replay_command(program, Path::new(&s.path), f.seed),
                        first_divergence: f.first_divergence.clone(),
                    })
                    .collect(),
            })
            .collect();
        SuiteReport {
            shard: shard.map(|s| s.to_string()),
            seeds: Some(format!("{}..{}", seeds.start, seeds.end)),
            merged: Vec::new(),
            distinct_failures: distinct_failures(&scenarios),
            scenarios,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    /// Scenarios with a failing seed.
    pub fn failed_scenarios(&self) -> usize {
        self.scenarios.iter().filter(|s| s.failed > 0).count()
    }

    /// JUnit XML: a test case per scenario, its failure listing the distinct failures.
    pub fn to_junit(&self) -> String {
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"weir-sim\" tests=\"{}\" failures=\"{}\">\n",
            self.scenarios.len(),
            self.failed_scenarios()
        );
        for scenario in &self.scenarios {
            let _ = write!(
                xml,
                "  <testcase classname=\"scenarios\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(&scenario.name),
                scenario.wall_time_s
            );
            if scenario.failed == 0 {
                xml.push_str("/>\n");
                continue;
            }
            let mut message = String::new();
            for distinct in
                self.distinct_failures.iter().filter(|d| d.scenario == scenario.name && d.path == scenario.path)
            {
                message.push_str(&describe(distinct));
            }
            let _ = write!(
                xml,
                ">\n    <failure message=\"{} of {} seeds failed\">{}</failure>\n  </testcase>\n",
                scenario.failed,
                scenario.seeds,
                xml_escape(&message)
            );
        }
        xml.push_str("</testsuite>\n");
        xml
    }

    /// The summary a person reads: a line per scenario, then the distinct failures.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        for scenario in &self.scenarios {
            let kind = scenario.canary.as_ref().map(|c| format!(" (canary: must break `{c}`)")).unwrap_or_default();
            let _ =
                writeln!(text, "{:<44} {:>6}/{:<6} seeds passed{kind}", scenario.name, scenario.passed, scenario.seeds);
        }
        text.push_str(&self.distinct_summary());
        let seeds: u64 = self.scenarios.iter().map(|s| s.seeds).sum();
        let _ = writeln!(
            text,
            "{} scenarios, {seeds} seeds: {} passed, {} failed",
            self.scenarios.len(),
            self.scenarios.len() - self.failed_scenarios(),
            self.failed_scenarios()
        );
        text
    }
}

impl SuiteReport {
    /// The distinct failures, a few lines each (nothing if there are none).
    pub fn distinct_summary(&self) -> String {
        if self.distinct_failures.is_empty() {
            return String::new();
        }
        let mut text = format!("{} distinct failures:\n", self.distinct_failures.len());
        for distinct in &self.distinct_failures {
            text.push_str(&describe(distinct));
        }
        text
    }
}

/// A distinct failure in a few lines.
fn describe(distinct: &DistinctFailure) -> String {
    let more = if distinct.count as usize > distinct.seeds.len() { ", ..." } else { "" };
    let seeds: Vec<String> = distinct.seeds.iter().map(u64::to_string).collect();
    let mut text = format!(
        "{}: {} seed(s) ({}{more}): {}; first divergence: {}\n  e.g. {}\n",
        distinct.scenario,
        distinct.count,
        seeds.join(", "),
        distinct.invariants,
        distinct.first_divergence,
        distinct.example
    );
    if let Some(divergence) = &distinct.divergence {
        let _ = writeln!(text, "  first divergence: {divergence}");
    }
    let _ = writeln!(text, "  replay: {}", distinct.replay);
    text
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Why reports cannot be merged.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum MergeError {
    #[error("cannot read `{path}`: {message}")]
    Read { path: PathBuf, message: String },
    #[error("`{path}` is not a weir-sim report: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("`{path}` {what}, but `{first}` {first_what}: these are not shards of one sweep")]
    Mismatch { path: PathBuf, what: String, first: PathBuf, first_what: String },
    #[error("shard {shard} is given twice: `{first}` and `{path}`")]
    DuplicateShard { shard: String, first: PathBuf, path: PathBuf },
    #[error("shards {} of {count} are missing", missing.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))]
    MissingShards { count: u64, missing: Vec<u64> },
    #[error("seed {seed} of scenario `{scenario}` is reported by more than one report: shards of different sweeps?")]
    SeedTwice { scenario: String, seed: u64 },
    #[error(
        "scenario `{scenario}` is in both `{first}` and `{path}` over overlapping seeds: these reports overlap, and merging them would count its seeds twice"
    )]
    Overlap { scenario: String, first: PathBuf, path: PathBuf },
    #[error("no reports to merge")]
    Nothing,
}

/// Reads the report at `path`.
pub fn read(path: &Path) -> Result<SuiteReport, MergeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| MergeError::Read { path: path.to_path_buf(), message: e.to_string() })?;
    serde_json::from_str(&text).map_err(|e| MergeError::Parse { path: path.to_path_buf(), message: e.to_string() })
}

/// How a report was sharded, as merge compares them: the shard count and the seed range.
fn sharding(report: &SuiteReport) -> Result<Option<(Shard, String)>, String> {
    match &report.shard {
        None => Ok(None),
        Some(shard) => {
            let shard: Shard = shard.parse().map_err(|e: crate::shard::BadShard| e.to_string())?;
            Ok(Some((shard, report.seeds.clone().unwrap_or_default())))
        }
    }
}

fn describe_sharding(sharding: &Option<(Shard, String)>) -> String {
    match sharding {
        None => "is not a shard".to_string(),
        Some((shard, seeds)) => format!("is a shard of {} over seeds {seeds}", shard.count),
    }
}

/// A report a scenario of a merge came from, with its seed range.
type Source<'a> = (&'a PathBuf, Option<Range<u64>>);

/// A report's seed range, `start..end`.
fn seed_range(text: &str) -> Option<Range<u64>> {
    let (start, end) = text.split_once("..")?;
    Some(start.parse().ok()?..end.parse().ok()?)
}

/// Combines `reports` (each with the path it was read from): the shards of one sweep, or unsharded reports.
pub fn merge(reports: &[(PathBuf, SuiteReport)]) -> Result<SuiteReport, MergeError> {
    let Some((first_path, first)) = reports.first() else { return Err(MergeError::Nothing) };
    let parse_error = |path: &Path, message| MergeError::Parse { path: path.to_path_buf(), message };
    let first_sharding = sharding(first).map_err(|m| parse_error(first_path, m))?;
    let mut shards: BTreeMap<u64, &PathBuf> = BTreeMap::new();
    for (path, report) in reports {
        let this = sharding(report).map_err(|m| parse_error(path, m))?;
        let same = match (&this, &first_sharding) {
            (None, None) => true,
            (Some((a, a_seeds)), Some((b, b_seeds))) => a.count == b.count && a_seeds == b_seeds,
            _ => false,
        };
        if !same {
            return Err(MergeError::Mismatch {
                path: path.clone(),
                what: describe_sharding(&this),
                first: first_path.clone(),
                first_what: describe_sharding(&first_sharding),
            });
        }
        if let Some((shard, _)) = this
            && let Some(known) = shards.insert(shard.index, path)
        {
            return Err(MergeError::DuplicateShard {
                shard: shard.to_string(),
                first: known.clone(),
                path: path.clone(),
            });
        }
    }
    if let Some((shard, _)) = &first_sharding {
        let missing: Vec<u64> = (1..=shard.count).filter(|i| !shards.contains_key(i)).collect();
        if !missing.is_empty() {
            return Err(MergeError::MissingShards { count: shard.count, missing });
        }
    }
    // Scenarios by (name, path), in the order they first appear; for unsharded reports, the reports (and their
    // seed ranges) each came from: one scenario in two of them must cover disjoint seeds.
    let mut merged: Vec<ScenarioReport> = Vec::new();
    let mut sources: Vec<Vec<Source<'_>>> = Vec::new();
    for (path, report) in reports {
        let range = report.seeds.as_deref().and_then(seed_range);
        for scenario in &report.scenarios {
            let at = merged.iter().position(|m| m.name == scenario.name && m.path == scenario.path);
            let Some(at) = at else {
                merged.push(scenario.clone());
                sources.push(vec![(path, range.clone())]);
                continue;
            };
            if first_sharding.is_none() {
                let overlapping = sources[at].iter().find(|(_, seen)| match (seen, &range) {
                    (Some(a), Some(b)) => a.start < b.end && b.start < a.end,
                    // Without a range to compare, one scenario in two reports may be the same seeds.
                    _ => true,
                });
                if let Some((first, _)) = overlapping {
                    return Err(MergeError::Overlap {
                        scenario: scenario.name.clone(),
                        first: (*first).clone(),
                        path: path.clone(),
                    });
                }
                sources[at].push((path, range.clone()));
            }
            let into = &mut merged[at];
            if into.canary != scenario.canary {
                return Err(MergeError::Mismatch {
                    path: path.clone(),
                    what: format!("has scenario `{}` with canary {:?}", scenario.name, scenario.canary),
                    first: first_path.clone(),
                    first_what: format!("has it with canary {:?}", into.canary),
                });
            }
            into.seeds += scenario.seeds;
            into.passed += scenario.passed;
            into.failed += scenario.failed;
            into.wall_time_s += scenario.wall_time_s;
            into.simulated_s += scenario.simulated_s;
            into.failures.extend(scenario.failures.iter().cloned());
        }
    }
    for scenario in &mut merged {
        scenario.failures.sort_by_key(|f| f.seed);
        if let Some(pair) = scenario.failures.windows(2).find(|pair| pair[0].seed == pair[1].seed) {
            return Err(MergeError::SeedTwice { scenario: scenario.name.clone(), seed: pair[0].seed });
        }
        scenario.seeds_per_second = scenario.seeds as f64 / scenario.wall_time_s.max(1e-9);
        scenario.simulated_per_wall = scenario.simulated_s / scenario.wall_time_s.max(1e-9);
    }
    Ok(SuiteReport {
        shard: None,
        seeds: first_sharding.as_ref().map(|(_, seeds)| seeds.clone()).or_else(|| first.seeds.clone()),
        merged: reports.iter().filter_map(|(_, r)| r.shard.clone()).collect(),
        distinct_failures: distinct_failures(&merged),
        scenarios: merged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::divergence::{Divergence, DivergenceKind};

    fn failure(seed: u64, invariant: &str, divergence: Option<(&str, &str)>) -> FailureReport {
        FailureReport {
            seed,
            error: None,
            violations: vec![ViolationReport { invariant: invariant.into(), seed, time_ms: 10, event: "x".into() }],
            replay: format!("weir-sim replay s.toml --seed {seed}"),
            first_divergence: divergence.map(|(message, task)| {
                FirstDivergence::Found(Divergence {
                    kind: DivergenceKind::Duplicate,
                    event: seed as usize,
                    at_ns: seed,
                    node: "tm-0".into(),
                    task: task.into(),
                    message: message.into(),
                    trace_line: String::new(),
                    record: format!("r {seed}"),
                    explanation: format!("seed {seed}'s own words"),
                    origin: None,
                })
            }),
        }
    }

    fn scenario(name: &str, seeds: u64, failures: Vec<FailureReport>) -> ScenarioReport {
        ScenarioReport {
            name: name.into(),
            path: format!("scenarios/{name}.toml"),
            seeds,
            passed: seeds - failures.len() as u64,
            failed: failures.len() as u64,
            seeds_per_second: 0.0,
            simulated_per_wall: 0.0,
            wall_time_s: 1.0,
            simulated_s: 2.0,
            canary: None,
            failures,
        }
    }

    fn shard(index: u64, scenarios: Vec<ScenarioReport>) -> (PathBuf, SuiteReport) {
        let report = SuiteReport {
            shard: Some(format!("{index}/3")),
            seeds: Some("0..6".into()),
            merged: Vec::new(),
            distinct_failures: distinct_failures(&scenarios),
            scenarios,
        };
        (PathBuf::from(format!("shard-{index}.json")), report)
    }

    #[test]
    fn failures_group_by_scenario_invariants_and_first_divergence() {
        let a = scenario(
            "a",
            6,
            vec![
                failure(4, "exactly_once_output", Some(("part committed", "sink[1]"))),
                failure(1, "exactly_once_output", Some(("part committed", "sink[0]"))),
                failure(2, "liveness", None),
                failure(3, "exactly_once_output", Some(("sink committed on restore", "sink[0]"))),
            ],
        );
        let distinct = distinct_failures(&[a]);
        let got: Vec<(&str, &str, u64, &[u64])> = distinct
            .iter()
            .map(|d| (d.invariants.as_str(), d.first_divergence.as_str(), d.count, d.seeds.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("exactly_once_output", "duplicate at `part committed` on sink", 2, &[1, 4][..]),
                ("liveness", "not computed", 1, &[2][..]),
                ("exactly_once_output", "duplicate at `sink committed on restore` on sink", 1, &[3][..]),
            ]
        );
        assert_eq!(distinct[0].replay, "weir-sim replay s.toml --seed 1");
        assert!(distinct[0].divergence.as_deref().unwrap().contains("seed 1's own words"));
    }

    #[test]
    fn the_shards_of_a_sweep_merge_into_one_report() {
        let shards = vec![
            shard(2, vec![scenario("a", 2, vec![failure(4, "liveness", None)]), scenario("b", 2, vec![])]),
            shard(1, vec![scenario("a", 2, vec![failure(1, "liveness", None)]), scenario("b", 2, vec![])]),
            shard(3, vec![scenario("a", 2, vec![]), scenario("b", 2, vec![failure(5, "liveness", None)])]),
        ];
        let merged = merge(&shards).unwrap();
        let counts: Vec<(&str, u64, u64, u64, Vec<u64>)> = merged
            .scenarios
            .iter()
            .map(|s| (s.name.as_str(), s.seeds, s.passed, s.failed, s.failures.iter().map(|f| f.seed).collect()))
            .collect();
        assert_eq!(counts, vec![("a", 6, 4, 2, vec![1, 4]), ("b", 6, 5, 1, vec![5])]);
        assert_eq!(merged.merged, ["2/3", "1/3", "3/3"]);
        assert_eq!(merged.seeds.as_deref(), Some("0..6"));
        assert_eq!(merged.distinct_failures.iter().map(|d| d.count).collect::<Vec<_>>(), [2, 1]);
        assert!((merged.scenarios[0].seeds_per_second - 2.0).abs() < 1e-9);
        // A merge reads back as a report, and merges again.
        let again: SuiteReport = serde_json::from_str(&merged.to_json()).unwrap();
        assert_eq!(merge(&[(PathBuf::from("merged.json"), again.clone())]).unwrap().scenarios, again.scenarios);
        let xml = merged.to_junit();
        assert!(xml.contains("<failure message=\"2 of 6 seeds failed\">a: 2 seed(s) (1, 4): liveness"), "{xml}");
        assert!(merged.summary().ends_with("2 scenarios, 12 seeds: 0 passed, 2 failed\n"), "{}", merged.summary());
    }

    #[test]
    fn a_missing_duplicated_or_foreign_shard_is_an_error() {
        let a = || vec![scenario("a", 2, vec![])];
        assert_eq!(
            merge(&[shard(1, a()), shard(3, a())]),
            Err(MergeError::MissingShards { count: 3, missing: vec![2] })
        );
        assert!(matches!(
            merge(&[shard(1, a()), shard(1, a()), shard(2, a())]),
            Err(MergeError::DuplicateShard { .. })
        ));
        let mut other = shard(2, a());
        other.1.seeds = Some("0..60".into());
        assert!(matches!(merge(&[shard(1, a()), other, shard(3, a())]), Err(MergeError::Mismatch { .. })));
        let unsharded = (PathBuf::from("all.json"), SuiteReport { shard: None, ..shard(1, a()).1 });
        assert!(matches!(merge(&[shard(1, a()), unsharded]), Err(MergeError::Mismatch { .. })));
        let twice = vec![
            shard(1, vec![scenario("a", 2, vec![failure(1, "liveness", None)])]),
            shard(2, vec![scenario("a", 2, vec![failure(1, "liveness", None)])]),
            shard(3, a()),
        ];
        assert!(matches!(merge(&twice), Err(MergeError::SeedTwice { seed: 1, .. })));
        assert_eq!(merge(&[]), Err(MergeError::Nothing));
    }

    #[test]
    fn unsharded_reports_that_overlap_are_an_error_rather_than_counted_twice() {
        let unsharded = |path: &str, seeds: &str, scenarios| {
            let report = SuiteReport { shard: None, seeds: Some(seeds.into()), ..shard(1, scenarios).1 };
            (PathBuf::from(path), report)
        };
        let a = || vec![scenario("a", 2, vec![])];
        let twice = merge(&[unsharded("r.json", "0..2", a()), unsharded("r.json", "0..2", a())]);
        assert!(matches!(&twice, Err(MergeError::Overlap { scenario, .. }) if scenario == "a"), "{twice:?}");
        let overlapping = merge(&[unsharded("r.json", "0..2", a()), unsharded("s.json", "1..3", a())]);
        assert!(matches!(overlapping, Err(MergeError::Overlap { .. })));
        // Disjoint seed ranges, or other scenarios, are counted once each.
        let merged = merge(&[unsharded("r.json", "0..2", a()), unsharded("s.json", "2..4", a())]).unwrap();
        assert_eq!(merged.scenarios[0].seeds, 4);
        let b = vec![scenario("b", 2, vec![])];
        assert_eq!(
            merge(&[unsharded("r.json", "0..2", a()), unsharded("s.json", "0..2", b)]).unwrap().scenarios.len(),
            2
        );
    }
}
