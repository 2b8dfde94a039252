//! `sequence`: `partitions` source partitions each emit the numbers `0..records` in order;
//! records are keyed by `number % keys` and pass a keyed operator that keeps a running count
//! and sum per key; the sink receives every record with its partition and number.
//!
//! Output lines: `r <partition> <number> <key>` for every record, in arrival order per part
//! file, then `k <key> <count> <sum>` per key at the end. With `state-bytes` above 0, each key
//! also keeps a second, rarely touched state: `state-bytes` bytes written on its first record and
//! read only at the end, as `p <key> <length> <checksum>` (state that must survive restores
//! untouched, and that makes snapshots large enough to need state files). Records of one (partition, key)
//! travel one path, so within a part file their numbers must ascend: that is the ordering a
//! checker can demand. The final totals follow from the parameters alone (see
//! [`reference_totals`]).

use super::{BuiltinJob, JobParameter, JobParameters, MAX_PARTITIONS, ParameterKind};
use crate::api::BuildError;
use crate::api::JobBuilder;
use crate::api::graph::JobGraph;
use crate::config::JobConfig;
use crate::connectors::file_sink::FileSink;
use crate::connectors::sequence_source::{SequenceRecord, SequenceSource};
use crate::operators::keyed_process::KeyedProcessFunction;
use crate::state::StateError;
use crate::state::backend::KeyedStateBackend;
use crate::state::heap::snapshot_entries;
use crate::state::keyed::{KeyedContext, KeyedEndContext, ValueStateDescriptor};
use crate::state::snapshot::KeyGroupSnapshot;
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The fastest pacing: a paced source emits 10 ms worth of records at a time, so this bounds
/// a slice to 100,000 records.
const MAX_RECORDS_PER_SECOND: u64 = 10_000_000;

/// The largest `state-bytes`: a key's padding is one value.
const MAX_STATE_BYTES: u64 = 1 << 16;

pub const JOB: BuiltinJob = BuiltinJob {
    name: "sequence",
    about: "numbered records per partition through a keyed running count and sum; for exactly-once checks",
    parameters: &[
        JobParameter {
            name: "output",
            default: None,
            about: "the directory the sink writes its part files to (`weir run` uses `<--output>.parts`)",
            kind: ParameterKind::Path { cli_flag: "--output" },
        },
        JobParameter {
            name: "partitions",
            default: Some("4"),
            about: "source partitions",
            kind: ParameterKind::Number { min: 1, max: MAX_PARTITIONS },
        },
        JobParameter {
            name: "records",
            default: Some("10000"),
            about: "records per partition",
            // Counts of every partition's records must fit 64 bits.
            kind: ParameterKind::Number { min: 0, max: u64::MAX / MAX_PARTITIONS },
        },
        JobParameter {
            name: "keys",
            default: Some("64"),
            about: "distinct keys, `number % keys`",
            kind: ParameterKind::Number { min: 1, max: 1_000_000 },
        },
        JobParameter {
            name: "state-bytes",
            default: Some("0"),
            about: "bytes of a second keyed state per key, written on its first record and read at the end; 0 = none",
            kind: ParameterKind::Number { min: 0, max: MAX_STATE_BYTES },
        },
        JobParameter {
            name: "records-per-second",
            default: Some("0"),
            about: "pacing per source subtask; 0 = unpaced (a paced source emits a slice of 10 ms worth at a time)",
            kind: ParameterKind::Number { min: 0, max: MAX_RECORDS_PER_SECOND },
        },
    ],
    build,
};

/// What the keyed operator emits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequenceOutput {
    Record {
        partition: u32,
        number: u64,
        key: u64,
    },
    KeyTotal {
        key: u64,
        count: u64,
        sum: u64,
    },
    /// A key's padding at the end: its length and checksum.
    KeyPadding {
        key: u64,
        length: u64,
        checksum: u64,
    },
}

const TOTALS: ValueStateDescriptor<(u64, u64)> = ValueStateDescriptor::new("count-and-sum");
/// Written once per key, read at the end only.
/// Serde bytes rather than a `Vec<u8>`: the same encoding, written and read at memory speed instead of a byte at a
/// time (20,000 keys of 600 bytes are 12 MB per snapshot).
const PADDING: ValueStateDescriptor<ByteBuf> = ValueStateDescriptor::new("padding");

/// Keeps `(count, sum)` per key, and `state_bytes` of padding.
pub struct RunningTotals {
    keys: u64,
    state_bytes: u64,
}

impl RunningTotals {
    /// The running totals of records keyed by `number % keys`.
    pub fn new(keys: u64) -> Self {
        RunningTotals { keys, state_bytes: 0 }
    }

    /// Also `state_bytes` of padding per key.
    pub fn with_padding(keys: u64, state_bytes: u64) -> Self {
        RunningTotals { keys, state_bytes }
    }
}

/// Key `key`'s padding: `length` bytes that depend on the key.
pub fn padding(key: u64, length: u64) -> Vec<u8> {
    (0..length).map(|i| (key.wrapping_mul(31).wrapping_add(i) % 251) as u8).collect()
}

/// FNV-1a of `bytes`: how `p` lines name a padding.
pub fn padding_checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl KeyedProcessFunction<u64, SequenceRecord, SequenceOutput> for RunningTotals {
    fn process<B: KeyedStateBackend<u64>>(
        &mut self,
        record: SequenceRecord,
        context: &mut KeyedContext<'_, u64, B>,
        out: &mut Vec<SequenceOutput>,
    ) -> Result<(), StateError> {
        let key = *context.key();
        assert_eq!(key, record.number % self.keys, "record keyed by another key");
        let first = context.value(&TOTALS)?.update(
            || (0, 0),
            |(count, sum)| {
                *count += 1;
                // Wrapping, as the reference does: sums of large runs exceed 64 bits.
                *sum = sum.wrapping_add(record.number);
                *count == 1
            },
        )?;
        if first && self.state_bytes > 0 {
            context.value(&PADDING)?.set(ByteBuf::from(padding(key, self.state_bytes)))?;
        }
        out.push(SequenceOutput::Record { partition: record.partition, number: record.number, key });
        Ok(())
    }

    fn end_of_input<B: KeyedStateBackend<u64>>(
        &mut self,
        context: &mut KeyedEndContext<'_, u64, B>,
        out: &mut Vec<SequenceOutput>,
    ) -> Result<(), StateError> {
        context.for_each_value(&TOTALS, |key, (count, sum)| {
            out.push(SequenceOutput::KeyTotal { key: *key, count: *count, sum: *sum })
        })?;
        if self.state_bytes > 0 {
            context.for_each_value(&PADDING, |key, bytes| {
                let (length, checksum) = (bytes.len() as u64, padding_checksum(bytes));
                out.push(SequenceOutput::KeyPadding { key: *key, length, checksum })
            })?;
        }
        Ok(())
    }
}

/// What a snapshot of `running-totals` holds: `(count, sum)` per key and each key's padding.
pub type SnapshotTotals = (BTreeMap<u64, (u64, u64)>, BTreeMap<u64, Vec<u8>>);

/// Decodes the keyed state of `running-totals` from a snapshot's key groups (every subtask's, together), as a
/// restore would read it.
pub fn decode_totals(groups: &[KeyGroupSnapshot], max_parallelism: u32) -> Result<SnapshotTotals, StateError> {
    let totals = snapshot_entries::<u64, (u64, u64)>(groups, TOTALS.name, max_parallelism)?;
    let paddings = snapshot_entries::<u64, ByteBuf>(groups, PADDING.name, max_parallelism)?;
    Ok((totals.into_iter().collect(), paddings.into_iter().map(|(key, bytes)| (key, bytes.into_vec())).collect()))
}

/// The `(count, sum)` per key once each partition `p` has emitted the numbers below `next` for each `(p, next)`
/// in `positions`: what the keyed state of a consistent cut at those positions holds. Computed per key in closed
/// form (key `k` gets `k, k + keys, ...`), so checking a cut costs the number of keys, not of records.
pub fn totals_at(positions: &[(u32, u64)], keys: u64) -> BTreeMap<u64, (u64, u64)> {
    let mut totals: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    if keys == 0 {
        return totals;
    }
    for &(_, next) in positions {
        for key in 0..keys.min(next) {
            let (count, sum) = arithmetic_run(key, keys, next);
            let entry = totals.entry(key).or_insert((0, 0));
            entry.0 += count;
            entry.1 = entry.1.wrapping_add(sum);
        }
    }
    totals
}

/// How many of `0..next` are `key` modulo `keys`, and their sum wrapped at 64 bits (`key < keys`, `key < next`).
fn arithmetic_run(key: u64, keys: u64, next: u64) -> (u64, u64) {
    let count = (next - key - 1) / keys + 1;
    // key * count + keys * (0 + 1 + ... + count - 1), exact in 128 bits before it wraps as the job's sums do.
    let triangle = u128::from(count) * u128::from(count - 1) / 2;
    let sum = u128::from(key).wrapping_mul(u128::from(count)).wrapping_add(u128::from(keys).wrapping_mul(triangle));
    (count, sum as u64)
}

/// The final `(count, sum)` per key, computed from the parameters alone (sums wrap at 64
/// bits, as the job's do). Parameters the job rejects (`keys = 0`) have no keys.
pub fn reference_totals(partitions: u32, records: u64, keys: u64) -> BTreeMap<u64, (u64, u64)> {
    let mut totals = BTreeMap::new();
    if keys == 0 {
        return totals;
    }
    for number in 0..records {
        let entry = totals.entry(number % keys).or_insert((0u64, 0u64));
        entry.0 += u64::from(partitions);
        entry.1 = entry.1.wrapping_add(number.wrapping_mul(u64::from(partitions)));
    }
    totals
}

/// The job's whole expected output, sorted: every record once, then the per-key totals,
/// computed from the parameters alone (what checkers and tests compare runs with). Parameters
/// the job rejects (`keys = 0`) have no output.
pub fn reference_lines(partitions: u32, records: u64, keys: u64, state_bytes: u64) -> Vec<String> {
    let mut lines = Vec::new();
    if keys == 0 {
        return lines;
    }
    for partition in 0..partitions {
        for number in 0..records {
            lines.push(format!("r {partition} {number} {}", number % keys));
        }
    }
    for (key, (count, sum)) in reference_totals(partitions, records, keys) {
        lines.push(format!("k {key} {count} {sum}"));
        if state_bytes > 0 {
            lines.push(format!("p {key} {state_bytes} {}", padding_checksum(&padding(key, state_bytes))));
        }
    }
    lines.sort();
    lines
}

/// Appends `r <partition> <number> <key>` or `k <key> <count> <sum>`.
pub fn format_line(output: &SequenceOutput, line: &mut String) {
    let (tag, fields) = match *output {
        SequenceOutput::Record { partition, number, key } => ('r', [u64::from(partition), number, key]),
        SequenceOutput::KeyTotal { key, count, sum } => ('k', [key, count, sum]),
        SequenceOutput::KeyPadding { key, length, checksum } => ('p', [key, length, checksum]),
    };
    let mut digits = itoa::Buffer::new();
    line.push(tag);
    for field in fields {
        line.push(' ');
        line.push_str(digits.format(field));
    }
}

fn build(parameters: &JobParameters, config: JobConfig) -> Result<JobGraph, BuildError> {
    let output = PathBuf::from(parameters.text("output"));
    let partitions: u32 = parameters.number("partitions");
    let records: u64 = parameters.number("records");
    let keys: u64 = parameters.number("keys");
    let state_bytes: u64 = parameters.number("state-bytes");
    let records_per_second: u64 = parameters.number("records-per-second");
    let discard_newer_output = config.restore_discards_newer_output;
    let job = JobBuilder::new("sequence", config)?;
    job.source("numbers", move || SequenceSource::paced(partitions, records, records_per_second))
        .key_by(move |record: &SequenceRecord| record.number % keys)
        .process("running-totals", move || RunningTotals::with_padding(keys, state_bytes))
        .sink("sink", move || {
            FileSink::new(output.clone(), Arc::new(format_line)).discard_newer_output(discard_newer_output)
        });
    job.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The cut's totals record by record, as the job adds them up.
    fn totals_by_record(positions: &[(u32, u64)], keys: u64) -> BTreeMap<u64, (u64, u64)> {
        let mut totals: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for &(_, next) in positions {
            for number in 0..next {
                let entry = totals.entry(number % keys).or_insert((0, 0));
                entry.0 += 1;
                entry.1 = entry.1.wrapping_add(number);
            }
        }
        totals
    }

    proptest! {
        #[test]
        fn totals_at_a_cut_equal_the_records_added_up(
            positions in proptest::collection::vec((0u32..4, 0u64..3000), 0..4),
            keys in 1u64..5000,
        ) {
            prop_assert_eq!(totals_at(&positions, keys), totals_by_record(&positions, keys));
        }
    }

    #[test]
    fn sums_wrap_at_64_bits_as_the_jobs_do() {
        let next = 1u64 << 33;
        let (count, sum) = arithmetic_run(0, 1, next);
        assert_eq!(count, next);
        assert_eq!(sum, ((u128::from(next) * u128::from(next - 1) / 2) as u64));
        assert_eq!(totals_at(&[(0, 0)], 7), BTreeMap::new());
    }
}
