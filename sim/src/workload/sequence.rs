//! `sequence` as a workload: numbered records per partition through a keyed running count and sum. Its reference
//! is [`engine::jobs::sequence::reference_lines`]; it promises an order (numbers ascend per partition and key in
//! commit order), which its order check holds it to.

use super::{BoxFuture, PartsFuture, Reference, Workload, WorkloadEnv, file_sink_output, file_sink_parts};
use engine::api::BuildError;
use engine::api::graph::JobGraph;
use engine::config::JobConfig;
use engine::seam::storage::StorageRef;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The built-in `sequence` job.
pub struct Sequence;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SequenceParams {
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    #[serde(default = "default_records")]
    pub records: u64,
    #[serde(default = "default_keys")]
    pub keys: u64,
    #[serde(default)]
    pub records_per_second: u64,
    /// Bytes of a second, rarely touched keyed state per key (see the job's `state-bytes`).
    #[serde(default)]
    pub state_bytes: u64,
}

fn default_partitions() -> u32 {
    4
}

fn default_records() -> u64 {
    10_000
}

fn default_keys() -> u64 {
    64
}

/// The fields of an `r <partition> <number> <key>` line; further fields are ignored.
fn record(line: &str) -> Option<(u64, u64, u64)> {
    // Split at single spaces by a byte search: `str::split` with its pattern searcher took most of the order check.
    let mut rest = line.strip_prefix("r ")?;
    let mut next = || {
        let (field, after) = rest.split_at(rest.bytes().position(|b| b == b' ').unwrap_or(rest.len()));
        rest = after.get(1..).unwrap_or("");
        parse_u64(field)
    };
    Some((next()?, next()?, next()?))
}

/// `field.parse::<u64>().ok()`, digit by digit: the order check parses three numbers per committed line.
fn parse_u64(field: &str) -> Option<u64> {
    // `u64::from_str` takes one leading `+`.
    let digits = field.strip_prefix('+').unwrap_or(field);
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u64, |number, byte| {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 { None } else { number.checked_mul(10)?.checked_add(u64::from(digit)) }
    })
}

/// The most entries a dense table of the order check may have; larger workloads use hash tables.
const DENSE_ENTRIES: u64 = 1 << 22;

/// Where `(row, column)` sits in a `rows × columns` table, if it does.
fn dense_index(rows: u64, columns: u64, row: u64, column: u64) -> Option<usize> {
    (row < rows && column < columns).then(|| usize::try_from(row * columns + column).ok()).flatten()
}

/// Whether a `rows × columns` table is small enough to be dense.
fn dense_enough(rows: u64, columns: u64) -> bool {
    rows.checked_mul(columns).is_some_and(|entries| entries <= DENSE_ENTRIES)
}

/// A set of `(row, column)` pairs: a bit table when `rows × columns` is small enough, with a hash set for pairs
/// outside it (which only a wrong output holds).
struct PairSet {
    shape: (u64, u64),
    bits: Vec<u64>,
    sparse: FxHashSet<(u64, u64)>,
    len: usize,
}

impl PairSet {
    fn new(rows: u64, columns: u64) -> Self {
        let (shape, bits) = if dense_enough(rows, columns) {
            ((rows, columns), vec![0; (rows * columns).div_ceil(64) as usize])
        } else {
            ((0, 0), Vec::new())
        };
        PairSet { shape, bits, sparse: FxHashSet::default(), len: 0 }
    }

    /// Adds `(row, column)`; false if it was there.
    fn insert(&mut self, row: u64, column: u64) -> bool {
        let added = match dense_index(self.shape.0, self.shape.1, row, column) {
            Some(at) => {
                let (word, bit) = (&mut self.bits[at / 64], 1u64 << (at % 64));
                let added = *word & bit == 0;
                *word |= bit;
                added
            }
            None => self.sparse.insert((row, column)),
        };
        self.len += usize::from(added);
        added
    }

    fn contains(&self, row: u64, column: u64) -> bool {
        match dense_index(self.shape.0, self.shape.1, row, column) {
            Some(at) => self.bits[at / 64] & (1u64 << (at % 64)) != 0,
            None => self.sparse.contains(&(row, column)),
        }
    }
}

/// A map from `(row, column)` pairs, dense as [`PairSet`] is.
struct PairMap {
    shape: (u64, u64),
    dense: Vec<Option<u64>>,
    sparse: FxHashMap<(u64, u64), u64>,
}

impl PairMap {
    fn new(rows: u64, columns: u64) -> Self {
        let (shape, dense) = if dense_enough(rows, columns) {
            ((rows, columns), vec![None; (rows * columns) as usize])
        } else {
            ((0, 0), Vec::new())
        };
        PairMap { shape, dense, sparse: FxHashMap::default() }
    }

    /// Sets `(row, column)` to `value` and returns what it held.
    fn insert(&mut self, row: u64, column: u64, value: u64) -> Option<u64> {
        match dense_index(self.shape.0, self.shape.1, row, column) {
            Some(at) => self.dense[at].replace(value),
            None => self.sparse.insert((row, column), value),
        }
    }
}

/// A line of the final keyed state: a key's totals (`k`) or its padding (`p`).
fn is_state_line(line: &str) -> bool {
    line.starts_with("k ") || line.starts_with("p ")
}

impl Workload for Sequence {
    const NAME: &'static str = "sequence";
    type Params = SequenceParams;

    fn about(&self) -> &'static str {
        engine::jobs::sequence::JOB.about
    }

    fn validate(&self, params: &SequenceParams) -> Result<(), String> {
        if !(1..=4096).contains(&params.partitions) {
            return Err(format!("`partitions` must be in 1..=4096, got {}", params.partitions));
        }
        if params.keys == 0 {
            return Err("`keys` must be at least 1".into());
        }
        if params.state_bytes > 1 << 16 {
            return Err(format!("`state-bytes` must be at most 65536, got {}", params.state_bytes));
        }
        if params.records > 10_000_000 {
            return Err(format!(
                "`records` above 10000000 per partition takes too long to simulate, got {}",
                params.records
            ));
        }
        Ok(())
    }

    fn build(&self, params: &SequenceParams, env: &WorkloadEnv, config: JobConfig) -> Result<JobGraph, BuildError> {
        let given = BTreeMap::from([
            ("output".to_string(), env.output_dir.display().to_string()),
            ("partitions".to_string(), params.partitions.to_string()),
            ("records".to_string(), params.records.to_string()),
            ("keys".to_string(), params.keys.to_string()),
            ("records-per-second".to_string(), params.records_per_second.to_string()),
            ("state-bytes".to_string(), params.state_bytes.to_string()),
        ]);
        engine::jobs::sequence::JOB.build_graph(&given, config)
    }

    fn reference(&self, params: &SequenceParams) -> Reference {
        let lines =
            engine::jobs::sequence::reference_lines(params.partitions, params.records, params.keys, params.state_bytes);
        let records = lines.iter().filter(|l| l.starts_with("r ")).cloned().collect();
        let state = lines.iter().filter(|l| is_state_line(l)).cloned().collect();
        Reference { lines, records, state }
    }

    fn committed<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> BoxFuture<'a, Result<String, String>> {
        file_sink_output(storage, &env.output_dir)
    }

    fn committed_parts<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> PartsFuture<'a> {
        file_sink_parts(storage, &env.output_dir)
    }

    fn state_lines(&self, committed: &[&str]) -> Vec<String> {
        committed.iter().filter(|l| is_state_line(l)).map(|l| l.to_string()).collect()
    }

    fn not_applicable(&self, _invariant: crate::invariants::Invariant) -> Option<String> {
        None
    }

    /// Each source subtask paces its own partitions together at `records-per-second`: the one with the most
    /// partitions ends last.
    fn input_ends_at(&self, params: &SequenceParams, parallelism: u32) -> Option<Duration> {
        if params.records_per_second == 0 || parallelism == 0 {
            return None;
        }
        let most = u64::from(params.partitions.div_ceil(parallelism));
        Some(Duration::from_millis(most * params.records * 1000 / params.records_per_second))
    }

    /// The keyed state of a completed snapshot is the running totals of exactly the numbers below each partition's
    /// recorded position, every partition recorded once, and each key that saw a record holds its padding.
    fn check_cut(&self, params: &SequenceParams, cut: &crate::cut::Cut) -> Option<String> {
        use engine::jobs::sequence::{decode_totals, padding, totals_at};
        let (Some(source), Some(keyed)) = (cut.operators.get("numbers"), cut.operators.get("running-totals")) else {
            return Some(format!("snapshot {} lacks the source or the keyed operator", cut.id));
        };
        // Finished operators keep no state to compare; an embedded store's files are not decoded here.
        if source.finished || keyed.finished || keyed.embedded {
            return None;
        }
        let positions = match engine::connectors::sequence_source::recorded_positions(&source.lists) {
            Ok(positions) => positions,
            Err(error) => return Some(format!("snapshot {}: the source's positions do not decode: {error}", cut.id)),
        };
        for partition in 0..params.partitions {
            let recorded = positions.iter().filter(|(p, _)| *p == partition).count();
            if recorded != 1 {
                return Some(format!("snapshot {} records partition {partition}'s position {recorded} times", cut.id));
            }
        }
        let (totals, paddings) = match decode_totals(&keyed.key_groups, keyed.max_parallelism) {
            Ok(state) => state,
            Err(error) => return Some(format!("snapshot {}: the keyed state does not decode: {error}", cut.id)),
        };
        let expected = totals_at(&positions, params.keys);
        let keys: std::collections::BTreeSet<u64> = expected.keys().chain(totals.keys()).copied().collect();
        for key in keys {
            let (held, wanted) = (totals.get(&key), expected.get(&key));
            if held != wanted {
                return Some(format!(
                    "snapshot {}: key {key} holds (count, sum) {held:?}, but the input up to the recorded positions \
                     {positions:?} gives {wanted:?}",
                    cut.id
                ));
            }
            if params.state_bytes > 0 && paddings.get(&key) != Some(&padding(key, params.state_bytes)) {
                return Some(format!("snapshot {}: key {key}'s padding is missing or wrong", cut.id));
            }
        }
        None
    }

    /// Every record committed once, and numbers ascending per (partition, key) in commit order: records of one
    /// (partition, key) travel one path.
    fn check_order(&self, params: &SequenceParams, committed: &[&str]) -> Option<String> {
        let partitions = u64::from(params.partitions);
        let mut last = PairMap::new(partitions, params.keys);
        let mut seen = PairSet::new(partitions, params.records);
        for (partition, number, key) in committed.iter().filter_map(|line| record(line)) {
            if !seen.insert(partition, number) {
                return Some(format!("record (partition {partition}, number {number}) committed twice"));
            }
            if let Some(previous) = last.insert(partition, key, number)
                && previous > number
            {
                return Some(format!("partition {partition} key {key}: number {number} committed after {previous}"));
            }
        }
        let expected = partitions * params.records;
        if (seen.len as u64) < expected {
            let first_lost = (0..partitions)
                .flat_map(|p| (0..params.records).map(move |n| (p, n)))
                .find(|&(p, n)| !seen.contains(p, n))
                .expect("fewer seen than expected");
            return Some(format!(
                "{} records lost, e.g. partition {} number {}",
                expected - seen.len as u64,
                first_lost.0,
                first_lost.1
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The order check written plainly, with hash tables: what the dense tables must agree with.
    fn plain_check_order(params: &SequenceParams, committed: &[&str]) -> Option<String> {
        let mut last: FxHashMap<(u64, u64), u64> = FxHashMap::default();
        let mut seen: FxHashSet<(u64, u64)> = FxHashSet::default();
        for line in committed {
            let Some(rest) = line.strip_prefix("r ") else { continue };
            let mut fields = rest.split(' ');
            let mut next = || fields.next().and_then(|f| f.parse::<u64>().ok());
            let Some((partition, number, key)) = (|| Some((next()?, next()?, next()?)))() else { continue };
            if !seen.insert((partition, number)) {
                return Some(format!("record (partition {partition}, number {number}) committed twice"));
            }
            if let Some(previous) = last.insert((partition, key), number)
                && previous > number
            {
                return Some(format!("partition {partition} key {key}: number {number} committed after {previous}"));
            }
        }
        let expected = u64::from(params.partitions) * params.records;
        if (seen.len() as u64) < expected {
            let lost = (0..u64::from(params.partitions))
                .flat_map(|p| (0..params.records).map(move |n| (p, n)))
                .find(|record| !seen.contains(record))
                .expect("fewer seen than expected");
            return Some(format!(
                "{} records lost, e.g. partition {} number {}",
                expected - seen.len() as u64,
                lost.0,
                lost.1
            ));
        }
        None
    }

    proptest! {
        /// Lines in and out of the tables' range (a wrong output's), repeated, reordered and malformed: the same
        /// verdict as the plain check.
        #[test]
        fn the_dense_order_check_agrees_with_the_plain_one(
            partitions in 1u32..4,
            records in 1u64..6,
            keys in 1u64..4,
            lines in proptest::collection::vec((0u64..5, 0u64..8, 0u64..5, 0u8..8), 0..40),
        ) {
            let params = SequenceParams { partitions, records, keys, records_per_second: 0, state_bytes: 0 };
            let lines: Vec<String> = lines
                .into_iter()
                .map(|(p, n, k, shape)| match shape {
                    0 => format!("r {p} {n}"),
                    1 => format!("r {p} {n} {k} extra"),
                    2 => format!("r {p}  {n} {k}"),
                    3 => format!("k {k} 1 {n}"),
                    4 => format!("r {p} {} {k}", u64::MAX - n),
                    5 => format!("r +{p} {n}0000000000000000000 {k}"),
                    _ => format!("r {p} {n} {k}"),
                })
                .collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            prop_assert_eq!(Sequence.check_order(&params, &lines), plain_check_order(&params, &lines));
        }
    }

    proptest! {
        #[test]
        fn numbers_parse_as_the_standard_parser_parses_them(field in "[+0-9a ]{0,22}") {
            prop_assert_eq!(parse_u64(&field), field.parse::<u64>().ok());
        }
    }

    #[test]
    fn a_complete_ordered_output_passes_and_a_gap_is_named() {
        let params = SequenceParams { partitions: 2, records: 3, keys: 2, records_per_second: 0, state_bytes: 0 };
        let all: Vec<String> = (0..2).flat_map(|p| (0..3).map(move |n| format!("r {p} {n} {}", n % 2))).collect();
        let lines: Vec<&str> = all.iter().map(String::as_str).collect();
        assert_eq!(Sequence.check_order(&params, &lines), None);
        let without: Vec<&str> = lines.iter().copied().filter(|l| *l != "r 1 1 1").collect();
        assert_eq!(
            Sequence.check_order(&params, &without).as_deref(),
            Some("1 records lost, e.g. partition 1 number 1")
        );
    }
}
