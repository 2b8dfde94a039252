//! The built-in jobs, registered by name so that scenarios and the CLI can pick them.

pub mod keyed_sum;
pub mod sequence;
pub mod wordcount;

use crate::api::BuildError;
use crate::api::graph::JobGraph;
use crate::config::JobConfig;
use std::collections::BTreeMap;

/// The most source partitions a built-in job takes.
pub const MAX_PARTITIONS: u64 = 4096;

/// What values a parameter takes. Every parameter has one, so that every value is checked
/// before a job is built, and `weir jobs` prints the same ranges the check enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParameterKind {
    /// A whole number in `min..=max`.
    Number { min: u64, max: u64 },
    /// A whole number in `min..=max`, or `none`.
    NumberOrNone { min: u64, max: u64 },
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// A path, which `weir run` sets from its option `cli_flag` (it is not a `--param`).
    Path { cli_flag: &'static str },
}

impl ParameterKind {
    /// The allowed values, as `weir jobs` and error messages show them.
    pub fn allowed(&self) -> String {
        match self {
            ParameterKind::Number { min, max } => format!("{min}..={max}"),
            ParameterKind::NumberOrNone { min, max } => format!("`none` or {min}..={max}"),
            ParameterKind::Choice(words) => {
                let words: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
                format!("one of {}", words.join(", "))
            }
            ParameterKind::Path { .. } => "a path".to_string(),
        }
    }

    /// Checks `text`, returning why it is not allowed.
    fn check(&self, text: &str) -> Result<(), String> {
        let number = |text: &str, min: u64, max: u64| match text.trim().parse::<u64>() {
            Ok(value) if (min..=max).contains(&value) => Ok(()),
            Ok(value) => Err(format!("must be in {min}..={max}, got {value}")),
            Err(_) => Err(format!("expected a whole number in {min}..={max}, got `{text}`")),
        };
        match self {
            ParameterKind::Number { min, max } => number(text, *min, *max),
            ParameterKind::NumberOrNone { .. } if text.trim() == "none" => Ok(()),
            ParameterKind::NumberOrNone { min, max } => {
                number(text, *min, *max).map_err(|message| format!("`none` or a number: {message}"))
            }
            ParameterKind::Choice(words) if words.contains(&text.trim()) => Ok(()),
            ParameterKind::Choice(_) => Err(format!("expected {}, got `{text}`", self.allowed())),
            ParameterKind::Path { .. } if text.is_empty() => Err("expected a path, got an empty text".to_string()),
            ParameterKind::Path { .. } => Ok(()),
        }
    }
}

/// One parameter of a built-in job.
pub struct JobParameter {
    pub name: &'static str,
    /// `None` when the parameter is required.
    pub default: Option<&'static str>,
    pub about: &'static str,
    pub kind: ParameterKind,
}

impl JobParameter {
    /// How `weir jobs` shows where the value comes from: the range and default, or the
    /// `weir run` option that sets it.
    pub fn describe(&self) -> String {
        match (self.kind, self.default) {
            (ParameterKind::Path { cli_flag }, _) => format!("set by {cli_flag}"),
            (kind, Some(default)) => format!("{}; default {default}", kind.allowed()),
            (kind, None) => format!("{}; required", kind.allowed()),
        }
    }
}

/// A job the engine ships, buildable from parameters and a configuration.
pub struct BuiltinJob {
    pub name: &'static str,
    pub about: &'static str,
    pub parameters: &'static [JobParameter],
    pub build: fn(&JobParameters, JobConfig) -> Result<JobGraph, BuildError>,
}

/// Every built-in job, by name.
pub const BUILTIN_JOBS: &[BuiltinJob] = &[wordcount::JOB, sequence::JOB, keyed_sum::JOB];

/// The built-in job called `name`.
pub fn find(name: &str) -> Option<&'static BuiltinJob> {
    BUILTIN_JOBS.iter().find(|job| job.name == name)
}

impl BuiltinJob {
    /// Checks `given` against the job's parameters and builds the job graph.
    pub fn build_graph(&self, given: &BTreeMap<String, String>, config: JobConfig) -> Result<JobGraph, BuildError> {
        let parameters = JobParameters::resolve(self, given)?;
        (self.build)(&parameters, config)
    }

    /// The parameter called `name`.
    pub fn parameter(&self, name: &str) -> Option<&'static JobParameter> {
        self.parameters.iter().find(|p| p.name == name)
    }
}

/// A built-in job's parameters, checked: every given name is known, every required one is
/// there, and every value is of its parameter's kind and in its range.
pub struct JobParameters {
    job: &'static str,
    declared: &'static [JobParameter],
    values: BTreeMap<String, String>,
}

impl JobParameters {
    fn resolve(job: &BuiltinJob, given: &BTreeMap<String, String>) -> Result<JobParameters, BuildError> {
        let invalid = |parameter: &str, message: String| BuildError::InvalidParameter {
            job: job.name.to_string(),
            parameter: parameter.to_string(),
            message,
        };
        for name in given.keys() {
            if job.parameter(name).is_none() {
                let known: Vec<&str> = job.parameters.iter().map(|p| p.name).collect();
                return Err(invalid(name, format!("unknown parameter (known: {})", known.join(", "))));
            }
        }
        let mut values = BTreeMap::new();
        for parameter in job.parameters {
            let value = match (given.get(parameter.name), parameter.default) {
                (Some(value), _) => value.clone(),
                (None, Some(default)) => default.to_string(),
                (None, None) => {
                    let message = match parameter.kind {
                        ParameterKind::Path { cli_flag } => format!("is required (`weir run` sets it with {cli_flag})"),
                        kind => format!("is required ({})", kind.allowed()),
                    };
                    return Err(invalid(parameter.name, message));
                }
            };
            parameter.kind.check(&value).map_err(|message| invalid(parameter.name, message))?;
            values.insert(parameter.name.to_string(), value);
        }
        Ok(JobParameters { job: job.name, declared: job.parameters, values })
    }

    pub fn text(&self, name: &str) -> &str {
        self.values
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("job `{}` reads undeclared parameter `{name}`", self.job))
    }

    /// A number parameter, already checked against its declared range.
    pub fn number<N: TryFrom<u64>>(&self, name: &str) -> N {
        let parameter = self.declared.iter().find(|p| p.name == name);
        let parameter = parameter.unwrap_or_else(|| panic!("job `{}` reads undeclared parameter `{name}`", self.job));
        let value: u64 = self.text(name).trim().parse().unwrap_or_else(|_| panic!("`{name}` was checked"));
        // The declared range is the job's own: a range that does not fit the type is a bug.
        N::try_from(value)
            .unwrap_or_else(|_| panic!("the range of `{name}` ({}) does not fit", parameter.kind.allowed()))
    }

    /// A number-or-`none` parameter, already checked.
    pub fn number_or_none<N: TryFrom<u64>>(&self, name: &str) -> Option<N> {
        match self.text(name).trim() {
            "none" => None,
            _ => Some(self.number(name)),
        }
    }
}

/// Sorts the lines of a job's output, the canonical form compared across runs and seeds:
/// line order across part files depends on scheduling, the set of lines must not.
pub fn canonical_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn error(job: &str, pairs: &[(&str, &str)]) -> String {
        let job = find(job).expect("a built-in job");
        match job.build_graph(&given(pairs), JobConfig::default()) {
            Ok(_) => panic!("{pairs:?} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn every_parameter_of_every_job_is_checked_with_its_range_named() {
        let out = [("output", "/tmp/weir-never-written")];
        let with = |extra: (&'static str, &'static str)| [out[0], extra];
        assert_eq!(
            error("sequence", &with(("keys", "0"))),
            "job `sequence`: parameter `keys`: must be in 1..=1000000, got 0"
        );
        assert_eq!(
            error("sequence", &with(("records", "lots"))),
            "job `sequence`: parameter `records`: expected a whole number in 0..=4503599627370495, got `lots`"
        );
        assert_eq!(
            error("sequence", &with(("partitions", "0"))),
            "job `sequence`: parameter `partitions`: must be in 1..=4096, got 0"
        );
        assert_eq!(
            error("sequence", &with(("records-per-second", "18446744073709551615"))),
            "job `sequence`: parameter `records-per-second`: must be in 0..=10000000, got 18446744073709551615"
        );
        assert_eq!(
            error("keyed-sum", &with(("keys", "0"))),
            "job `keyed-sum`: parameter `keys`: must be in 1..=9223372036854775807, got 0"
        );
        assert_eq!(
            error("keyed-sum", &with(("partitions", "5000"))),
            "job `keyed-sum`: parameter `partitions`: must be in 1..=4096, got 5000"
        );
        assert_eq!(
            error("wordcount", &[out[0], ("input", "/x"), ("partitions", "0")]),
            "job `wordcount`: parameter `partitions`: must be in 1..=4096, got 0"
        );
        assert_eq!(
            error("wordcount", &out),
            "job `wordcount`: parameter `input`: is required (`weir run` sets it with --input)"
        );
        assert_eq!(
            error("sequence", &[]),
            "job `sequence`: parameter `output`: is required (`weir run` sets it with --output)"
        );
        assert!(error("sequence", &with(("key", "3"))).contains("unknown parameter (known: output, partitions"));
    }

    #[test]
    fn every_default_passes_its_own_check_and_every_parameter_says_what_it_takes() {
        for job in BUILTIN_JOBS {
            for parameter in job.parameters {
                if let Some(default) = parameter.default {
                    parameter.kind.check(default).unwrap_or_else(|e| panic!("{}.{}: {e}", job.name, parameter.name));
                }
                assert!(!parameter.describe().is_empty());
                if let ParameterKind::Number { max, .. } | ParameterKind::NumberOrNone { max, .. } = parameter.kind {
                    assert!(max >= 1, "{}.{}", job.name, parameter.name);
                }
            }
        }
        let output = find("sequence").and_then(|j| j.parameter("output")).expect("declared");
        assert_eq!(output.describe(), "set by --output");
        let keys = find("sequence").and_then(|j| j.parameter("keys")).expect("declared");
        assert_eq!(keys.describe(), "1..=1000000; default 64");
    }
}
