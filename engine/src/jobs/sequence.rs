//! `sequence`: `partitions` source partitions each emit the numbers `0..records` in order;
//! records are keyed by `number % keys` and pass a keyed operator that keeps a running count
//! and sum per key; the sink receives every record with its partition and number.
//!
//! Output lines: `r <partition> <number> <key>` for every record, in arrival order per part
//! file, then `k <key> <count> <sum>` per key at the end. Records of one (partition, key)
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
use crate::state::keyed::{KeyedContext, KeyedEndContext, ValueStateDescriptor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The fastest pacing: a paced source emits 10 ms worth of records at a time, so this bounds
/// a slice to 100,000 records.
const MAX_RECORDS_PER_SECOND: u64 = 10_000_000;

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
    Record { partition: u32, number: u64, key: u64 },
    KeyTotal { key: u64, count: u64, sum: u64 },
}

const TOTALS: ValueStateDescriptor<(u64, u64)> = ValueStateDescriptor::new("count-and-sum");

/// Keeps `(count, sum)` per key.
pub struct RunningTotals {
    keys: u64,
}

impl RunningTotals {
    /// The running totals of records keyed by `number % keys`.
    pub fn new(keys: u64) -> Self {
        RunningTotals { keys }
    }
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
        context.value(&TOTALS)?.update(
            || (0, 0),
            |(count, sum)| {
                *count += 1;
                // Wrapping, as the reference does: sums of large runs exceed 64 bits.
                *sum = sum.wrapping_add(record.number);
            },
        )?;
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
        })
    }
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
pub fn reference_lines(partitions: u32, records: u64, keys: u64) -> Vec<String> {
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
    }
    lines.sort();
    lines
}

/// Appends `r <partition> <number> <key>` or `k <key> <count> <sum>`.
pub fn format_line(output: &SequenceOutput, line: &mut String) {
    let (tag, fields) = match *output {
        SequenceOutput::Record { partition, number, key } => ('r', [u64::from(partition), number, key]),
        SequenceOutput::KeyTotal { key, count, sum } => ('k', [key, count, sum]),
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
    let records_per_second: u64 = parameters.number("records-per-second");
    let discard_newer_output = config.restore_discards_newer_output;
    let job = JobBuilder::new("sequence", config)?;
    job.source("numbers", move || SequenceSource::paced(partitions, records, records_per_second))
        .key_by(move |record: &SequenceRecord| record.number % keys)
        .process("running-totals", move || RunningTotals::new(keys))
        .sink("sink", move || {
            FileSink::new(output.clone(), Arc::new(format_line)).discard_newer_output(discard_newer_output)
        });
    job.build()
}
