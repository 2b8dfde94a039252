//! A subtask whose code panics, in real mode: the job fails with the panic as a task error
//! that names the task and the message, instead of waiting forever for a thread that is gone.

use engine::api::JobBuilder;
use engine::cluster::Cluster;
use engine::cluster::JobError;
use engine::config::JobConfig;
use engine::connectors::file_sink::FileSink;
use engine::connectors::sequence_source::{SequenceRecord, SequenceSource};
use engine::error::TaskFailure;
use engine::seam::runtime;
use engine::seam::storage::{LocalStorage, StorageRef};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_panicking_subtask_fails_the_job_with_its_message() {
    let dir = std::env::temp_dir().join(format!("weir-test-{}-panic", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // One subtask, so that the panic is the job's only failure (with peers, one of them may
    // report its closed channel first).
    let config = JobConfig { parallelism: Some(1), ..JobConfig::default() };
    let job = JobBuilder::new("panics", config).unwrap();
    job.source("numbers", || SequenceSource::new(2, 1000))
        .map("breaks", |record: SequenceRecord| {
            assert!(record.number != 500, "the operator broke at record {}", record.number);
            record.number
        })
        .sink("sink", FileSink::factory(dir.join("parts"), |n: &u64, line: &mut String| line.push_str(&n.to_string())));
    let graph = job.build().unwrap();
    let result = runtime::run(0, async move {
        let storage: StorageRef = Arc::new(LocalStorage);
        let cluster = Cluster::start(&engine::local::cluster_spec(1, 1), storage);
        // A hang is the failure this test exists for: give up after a minute.
        tokio::time::timeout(Duration::from_secs(60), cluster.run_job(graph)).await
    });
    let error = match result {
        Err(_) => panic!("the job hung after a subtask panicked"),
        Ok(Ok(outcome)) => panic!("the job finished despite the panic: {outcome:?}"),
        Ok(Err(error)) => error,
    };
    match &error {
        JobError::TaskFailed { vertex, error: failed, .. }
            if matches!(failed.failure(), TaskFailure::Panicked { .. }) =>
        {
            assert!(vertex.contains("breaks"), "{error}");
            let TaskFailure::Panicked { message } = failed.failure() else { unreachable!("matched above") };
            assert_eq!(message, "the operator broke at record 500");
        }
        other => panic!("expected a panicked task, got: {other}"),
    }
    assert!(error.to_string().contains("panicked: the operator broke at record 500"), "{error}");
}
