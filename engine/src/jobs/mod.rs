//! The built-in jobs, registered by name so that scenarios and the CLI can pick them.

pub mod keyed_sum;
pub mod sequence;
pub mod wordcount;

use crate::api::graph::JobGraph;
use crate::config::JobConfig;
use crate::error::BuildError;
use std::collections::BTreeMap;
use std::str::FromStr;

/// One parameter of a built-in job.
pub struct JobParameter {
    pub name: &'static str,
    /// `None` when the parameter is required.
    pub default: Option<&'static str>,
    pub about: &'static str,
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
}

/// A built-in job's parameters, checked: every given name is known, every required one is
/// there.
pub struct JobParameters {
    job: &'static str,
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
            if !job.parameters.iter().any(|p| p.name == name) {
                let known: Vec<&str> = job.parameters.iter().map(|p| p.name).collect();
                return Err(invalid(name, format!("unknown parameter (known: {})", known.join(", "))));
            }
        }
        let mut values = BTreeMap::new();
        for parameter in job.parameters {
            match (given.get(parameter.name), parameter.default) {
                (Some(value), _) => values.insert(parameter.name.to_string(), value.clone()),
                (None, Some(default)) => values.insert(parameter.name.to_string(), default.to_string()),
                (None, None) => return Err(invalid(parameter.name, "is required".to_string())),
            };
        }
        Ok(JobParameters { job: job.name, values })
    }

    pub fn text(&self, name: &str) -> &str {
        self.values
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("job `{}` reads undeclared parameter `{name}`", self.job))
    }

    /// A number parameter within `min..=max`.
    pub fn number<N: FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        name: &str,
        min: N,
        max: N,
    ) -> Result<N, BuildError> {
        let text = self.text(name);
        let invalid = |message: String| BuildError::InvalidParameter {
            job: self.job.to_string(),
            parameter: name.to_string(),
            message,
        };
        let value: N = text.trim().parse().map_err(|_| invalid(format!("expected a number, got `{text}`")))?;
        if value < min || value > max {
            return Err(invalid(format!("must be in {min}..={max}, got {value}")));
        }
        Ok(value)
    }
}

/// Sorts the lines of a job's output, the canonical form compared across runs and seeds:
/// line order across part files depends on scheduling, the set of lines must not.
pub fn canonical_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}
