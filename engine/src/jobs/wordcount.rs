//! `wordcount`: counts the words of a text file.
//!
//! Tokenisation: a word is a maximal run of ASCII letters `A-Z a-z`, lowercased; every
//! other byte (digits, punctuation, whitespace, any byte of a non-ASCII character)
//! separates words. This is exactly what `tr -cs 'A-Za-z' '\n' | tr A-Z a-z` produces, so
//! the output equals `... | sort | uniq -c` (reordered to `word count`, and without the
//! empty line `tr` emits when the text starts with a separator).

use super::{BuiltinJob, JobParameter, JobParameters, MAX_PARTITIONS, ParameterKind};
use crate::api::BuildError;
use crate::api::JobBuilder;
use crate::api::graph::JobGraph;
use crate::config::JobConfig;
use crate::connectors::file_sink::FileSink;
use crate::connectors::line_source::LineSource;
use crate::operators::keyed_process::KeyedProcessFunction;
use crate::state::StateError;
use crate::state::backend::KeyedStateBackend;
use crate::state::keyed::{KeyedContext, KeyedEndContext, ValueStateDescriptor};
use std::path::PathBuf;

pub const JOB: BuiltinJob = BuiltinJob {
    name: "wordcount",
    about: "counts the words of a text file; writes `word count` lines",
    parameters: &[
        JobParameter {
            name: "input",
            default: None,
            about: "the text file to read",
            kind: ParameterKind::Path { cli_flag: "--input" },
        },
        JobParameter {
            name: "output",
            default: None,
            about: "the directory the sink writes its part files to (`weir run` uses `<--output>.parts`)",
            kind: ParameterKind::Path { cli_flag: "--output" },
        },
        JobParameter {
            name: "partitions",
            default: Some("16"),
            about: "how many line partitions the file is split into",
            kind: ParameterKind::Number { min: 1, max: MAX_PARTITIONS },
        },
    ],
    build,
};

/// Appends the words of `line` to `words`, per the module's tokenisation.
pub fn tokenize(line: &str, words: &mut Vec<String>) {
    for word in line.split(|c: char| !c.is_ascii_alphabetic()) {
        if !word.is_empty() {
            words.push(word.to_ascii_lowercase());
        }
    }
}

const COUNT: ValueStateDescriptor<u64> = ValueStateDescriptor::new("count");

/// Counts each word; emits the final counts when the input ends.
pub struct CountWords;

impl KeyedProcessFunction<String, String, (String, u64)> for CountWords {
    fn process<B: KeyedStateBackend<String>>(
        &mut self,
        _word: String,
        context: &mut KeyedContext<'_, String, B>,
        _out: &mut Vec<(String, u64)>,
    ) -> Result<(), StateError> {
        context.value(&COUNT)?.update(|| 0, |count| *count += 1)
    }

    fn end_of_input<B: KeyedStateBackend<String>>(
        &mut self,
        context: &mut KeyedEndContext<'_, String, B>,
        out: &mut Vec<(String, u64)>,
    ) -> Result<(), StateError> {
        context.for_each_value(&COUNT, |word, count| out.push((word.clone(), *count)))
    }
}

fn build(parameters: &JobParameters, config: JobConfig) -> Result<JobGraph, BuildError> {
    let input = PathBuf::from(parameters.text("input"));
    let output = PathBuf::from(parameters.text("output"));
    let partitions: u32 = parameters.number("partitions");
    let discard_newer_output = config.restore_discards_newer_output;
    let sink = FileSink::factory(output, |(word, count): &(String, u64), line: &mut String| {
        line.push_str(word);
        line.push(' ');
        line.push_str(itoa::Buffer::new().format(*count));
    });
    let job = JobBuilder::new("wordcount", config)?;
    job.source("lines", move || LineSource::new(input.clone(), partitions))
        .flat_map("tokenize", |line: String, words: &mut Vec<String>| tokenize(&line, words))
        .key_by_ref(|word: &String| word)
        .process("count", || CountWords)
        .sink("sink", move || sink().discard_newer_output(discard_newer_output));
    job.build()
}

#[cfg(test)]
mod tests {
    use super::tokenize;

    #[test]
    fn tokenisation_matches_tr_on_tricky_input() {
        let mut words = Vec::new();
        tokenize("Don't stop-me now: 42x ÉCOLE naïve\tTAB", &mut words);
        // `tr -cs 'A-Za-z' '\n'` splits "naïve" at the two bytes of `ï` and "ÉCOLE" at `É`.
        assert_eq!(words, ["don", "t", "stop", "me", "now", "x", "cole", "na", "ve", "tab"]);
    }
}
