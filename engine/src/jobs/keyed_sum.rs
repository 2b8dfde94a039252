//! `keyed-sum`: the benchmark job. A generated source of `n` records `(key = "k" + i % keys,
//! value = i)`, keyed, a keyed `ValueState` of `(count, sum)` per key, and one
//! `key,count,sum` line per key when the input ends.

use super::{BuiltinJob, JobParameter, JobParameters, MAX_PARTITIONS, ParameterKind};
use crate::api::BuildError;
use crate::api::JobBuilder;
use crate::api::graph::JobGraph;
use crate::config::JobConfig;
use crate::connectors::file_sink::FileSink;
use crate::connectors::generator_source::{Generated, GeneratorSource};
use crate::operators::keyed_process::KeyedProcessFunction;
use crate::state::StateError;
use crate::state::backend::KeyedStateBackend;
use crate::state::keyed::{KeyedContext, KeyedEndContext, ValueStateDescriptor};
use std::fmt::Write as _;
use std::path::PathBuf;

pub const JOB: BuiltinJob = BuiltinJob {
    name: "keyed-sum",
    about: "the benchmark job: n generated records, a keyed (count, sum) per key, `key,count,sum` lines at the end",
    parameters: &[
        JobParameter {
            name: "output",
            default: None,
            about: "the directory the sink writes its part files to (`weir run` uses `<--output>.parts`)",
            kind: ParameterKind::Path { cli_flag: "--output" },
        },
        JobParameter {
            name: "n",
            default: Some("10000000"),
            about: "records to generate",
            kind: ParameterKind::Number { min: 0, max: u64::MAX / 2 },
        },
        JobParameter {
            name: "keys",
            default: Some("1000"),
            about: "distinct keys, `\"k\" + i % keys`",
            kind: ParameterKind::Number { min: 1, max: u64::MAX / 2 },
        },
        JobParameter {
            name: "partitions",
            default: Some("16"),
            about: "source partitions",
            kind: ParameterKind::Number { min: 1, max: MAX_PARTITIONS },
        },
    ],
    build,
};

/// A key as a string, as the benchmark's definition says: `"k" + i % keys`.
pub type SumRecord = (String, u64);

const TOTALS: ValueStateDescriptor<(u64, u64)> = ValueStateDescriptor::new("count-and-sum");

/// Keeps `(count, sum)` per key; emits every key's totals at the end of input.
pub struct KeyedSum;

impl KeyedProcessFunction<String, SumRecord, (String, u64, u64)> for KeyedSum {
    fn process<B: KeyedStateBackend<String>>(
        &mut self,
        (_, value): SumRecord,
        context: &mut KeyedContext<'_, String, B>,
        _out: &mut Vec<(String, u64, u64)>,
    ) -> Result<(), StateError> {
        context.value(&TOTALS)?.update(
            || (0, 0),
            |(count, sum)| {
                *count += 1;
                *sum = sum.wrapping_add(value);
            },
        )
    }

    fn end_of_input<B: KeyedStateBackend<String>>(
        &mut self,
        context: &mut KeyedEndContext<'_, String, B>,
        out: &mut Vec<(String, u64, u64)>,
    ) -> Result<(), StateError> {
        context.for_each_value(&TOTALS, |key, (count, sum)| out.push((key.clone(), *count, *sum)))
    }
}

fn build(parameters: &JobParameters, config: JobConfig) -> Result<JobGraph, BuildError> {
    let output = PathBuf::from(parameters.text("output"));
    let n: u64 = parameters.number("n");
    let keys: u64 = parameters.number("keys");
    let partitions: u32 = parameters.number("partitions");
    let discard_newer_output = config.restore_discards_newer_output;
    let sink = FileSink::factory(output, |(key, count, sum): &(String, u64, u64), line: &mut String| {
        let _ = write!(line, "{key},{count},{sum}");
    });
    let job = JobBuilder::new("keyed-sum", config)?;
    job.source("generator", move || GeneratorSource::new(n, keys, partitions))
        .map("to-key", |record: Generated| {
            let mut key = String::with_capacity(24);
            let _ = write!(key, "k{}", record.key);
            (key, record.value)
        })
        .key_by_ref(|record: &SumRecord| &record.0)
        .process("sum", || KeyedSum)
        .sink("sink", move || sink().discard_newer_output(discard_newer_output));
    job.build()
}

/// The expected output, computed directly: what a benchmark run must produce.
pub fn reference(n: u64, keys: u64) -> Vec<String> {
    // Parameters the job rejects (`keys = 0`) have no output.
    let keys_used = if keys == 0 { 0 } else { keys.min(n) };
    let mut lines: Vec<String> = (0..keys_used)
        .map(|k| {
            // Indexes k, k + keys, k + 2 keys, ... below n.
            let count = (n - k).div_ceil(keys);
            let sum = (0..count).fold(0u64, |acc, j| acc.wrapping_add(k + j * keys));
            format!("k{k},{count},{sum}")
        })
        .collect();
    lines.sort();
    lines
}
