//! `wordcount` as a workload: a generated text (seeded by its line count only, so every seed reads the same), and
//! the word counts of it computed byte by byte as the reference, independently of the engine's tokenizer.

use super::{BoxFuture, PartsFuture, Reference, Workload, WorkloadEnv, file_sink_output, file_sink_parts};
use engine::api::BuildError;
use engine::api::graph::JobGraph;
use engine::config::JobConfig;
use engine::seam::storage::StorageRef;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The built-in `wordcount` job over a generated text.
pub struct WordCount;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WordCountParams {
    /// Lines of generated text.
    #[serde(default = "default_lines")]
    pub lines: u32,
    #[serde(default = "default_partitions")]
    pub partitions: u32,
}

fn default_lines() -> u32 {
    1000
}

fn default_partitions() -> u32 {
    16
}

/// A deterministic text of `lines` lines from a fixed vocabulary with case, punctuation and non-ASCII bytes,
/// seeded by the line count only.
pub fn generated_text(lines: u32) -> String {
    const WORDS: &[&str] =
        &["The", "quick", "brown", "fox", "jumps", "over", "LAZY", "dog's", "naïve", "co-op", "x2y", "end."];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(lines);
    let mut text = String::new();
    for _ in 0..lines {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let words = (state % 9) as usize;
        let line: Vec<&str> = (0..words).map(|i| WORDS[((state >> (i * 5)) % WORDS.len() as u64) as usize]).collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    text
}

/// Word counts by the README's definition (maximal runs of ASCII letters, lowercased), byte by byte.
fn reference_counts(text: &str) -> Vec<String> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut word = String::new();
    for &byte in text.as_bytes().iter().chain(std::iter::once(&b' ')) {
        if byte.is_ascii_alphabetic() {
            word.push(byte.to_ascii_lowercase() as char);
        } else if !word.is_empty() {
            *counts.entry(std::mem::take(&mut word)).or_default() += 1;
        }
    }
    let mut lines: Vec<String> = counts.into_iter().map(|(w, c)| format!("{w} {c}")).collect();
    lines.sort();
    lines
}

fn input_path(env: &WorkloadEnv) -> PathBuf {
    env.input_dir.join("text.txt")
}

impl Workload for WordCount {
    const NAME: &'static str = "wordcount";
    type Params = WordCountParams;

    fn about(&self) -> &'static str {
        "counts the words of a generated text; `word count` lines"
    }

    fn validate(&self, params: &WordCountParams) -> Result<(), String> {
        if params.lines > 1_000_000 {
            return Err(format!("`lines` above 1000000 takes too long to simulate, got {}", params.lines));
        }
        if !(1..=4096).contains(&params.partitions) {
            return Err(format!("`partitions` must be in 1..=4096, got {}", params.partitions));
        }
        Ok(())
    }

    fn input(&self, params: &WordCountParams, env: &WorkloadEnv) -> Vec<(PathBuf, Vec<u8>)> {
        vec![(input_path(env), generated_text(params.lines).into_bytes())]
    }

    fn build(&self, params: &WordCountParams, env: &WorkloadEnv, config: JobConfig) -> Result<JobGraph, BuildError> {
        let given = BTreeMap::from([
            ("input".to_string(), input_path(env).display().to_string()),
            ("output".to_string(), env.output_dir.display().to_string()),
            ("partitions".to_string(), params.partitions.to_string()),
        ]);
        engine::jobs::wordcount::JOB.build_graph(&given, config)
    }

    fn reference(&self, params: &WordCountParams) -> Reference {
        let lines = reference_counts(&generated_text(params.lines));
        Reference { state: lines.clone(), lines, records: Vec::new() }
    }

    fn committed<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> BoxFuture<'a, Result<String, String>> {
        file_sink_output(storage, &env.output_dir)
    }

    fn committed_parts<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> PartsFuture<'a> {
        file_sink_parts(storage, &env.output_dir)
    }

    fn state_lines(&self, committed: &[&str]) -> Vec<String> {
        committed.iter().map(|l| l.to_string()).collect()
    }
}
