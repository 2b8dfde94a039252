//! The canaries' deliberately broken workload, kept out of production types: `sequence`'s job with a sink that
//! commits at pre-commit, before its checkpoint completes. A failure between the two then replays records whose
//! transaction is committed already: the duplicates the checkers must catch, which proves the harness can fail.
//! The broken step, [`EagerCommit`], wraps any transactional sink, so a user's canary can break their own sink the
//! same way.

use super::sequence::{Sequence, SequenceParams};
use super::{BoxFuture, PartsFuture, Reference, Workload, WorkloadEnv, file_sink_output, file_sink_parts};
use async_trait::async_trait;
use engine::api::BuildError;
use engine::api::JobBuilder;
use engine::api::graph::JobGraph;
use engine::config::JobConfig;
use engine::connectors::file_sink::FileTransactions;
use engine::connectors::sequence_source::{SequenceRecord, SequenceSource};
use engine::error::TaskError;
use engine::ids::CheckpointId;
use engine::jobs::sequence::{SequenceOutput, format_line};
use engine::operators::OperatorContext;
use engine::operators::keyed_process::KeyedProcessFunction;
use engine::operators::two_phase::{Pending, TransactionalSink, TwoPhaseCommitSink};
use engine::seam::storage::StorageRef;
use engine::state::StateError;
use engine::state::backend::KeyedStateBackend;
use engine::state::keyed::{KeyedContext, KeyedEndContext, ValueStateDescriptor};
use std::sync::Arc;

/// `sequence` with a sink that commits before its checkpoint completes.
pub struct EagerCommitCanary;

/// A transactional sink's steps with the bug a canary needs: a transaction is made visible as soon as it is
/// pre-committed, before its checkpoint is known to be complete. Wrap your own sink's steps in it
/// (`TwoPhaseCommitSink::of(EagerCommit(steps))`) for a canary workload of your own: a failure between the
/// pre-commit and the checkpoint's completion then replays records whose transaction is committed already, and
/// the checkers must catch the duplicates. As a sink that commits early would, it skips the sink's recovery check
/// (which would refuse to resume behind what it committed).
pub struct EagerCommit<S>(pub S);

#[async_trait]
impl<T: Send + 'static, S: TransactionalSink<T>> TransactionalSink<T> for EagerCommit<S> {
    type Handle = S::Handle;

    async fn open(&mut self, context: OperatorContext<'_>) -> Result<(), TaskError> {
        self.0.open(context).await
    }

    async fn begin(&mut self) -> Result<(), TaskError> {
        self.0.begin().await
    }

    async fn write(&mut self, records: &mut Vec<T>) -> Result<(), TaskError> {
        self.0.write(records).await
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<S::Handle>, TaskError> {
        let handle = self.0.pre_commit(checkpoint).await?;
        if let Some(handle) = &handle {
            // Committing here, before the checkpoint completes, is the deliberate mistake.
            self.0.commit(&[Pending { checkpoint, handle: handle.clone() }]).await?;
        }
        Ok(handle)
    }

    async fn commit(&mut self, transactions: &[Pending<S::Handle>]) -> Result<(), TaskError> {
        self.0.commit(transactions).await
    }

    async fn abort_all_except(&mut self, keep: &[Pending<S::Handle>]) -> Result<(), TaskError> {
        self.0.abort_all_except(keep).await
    }
}

const TOTALS: ValueStateDescriptor<(u64, u64)> = ValueStateDescriptor::new("count-and-sum");

/// `sequence`'s keyed running count and sum, with its output format.
struct Totals;

impl KeyedProcessFunction<u64, SequenceRecord, SequenceOutput> for Totals {
    fn process<B: KeyedStateBackend<u64>>(
        &mut self,
        record: SequenceRecord,
        context: &mut KeyedContext<'_, u64, B>,
        out: &mut Vec<SequenceOutput>,
    ) -> Result<(), StateError> {
        let key = *context.key();
        context.value(&TOTALS)?.update(
            || (0, 0),
            |(count, sum)| {
                *count += 1;
                *sum += record.number;
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

impl Workload for EagerCommitCanary {
    const NAME: &'static str = "canary-eager-commit";
    type Params = SequenceParams;

    fn about(&self) -> &'static str {
        "canary: `sequence` with a sink that commits before its checkpoint completes"
    }

    fn validate(&self, params: &SequenceParams) -> Result<(), String> {
        Sequence.validate(params)
    }

    fn build(&self, params: &SequenceParams, env: &WorkloadEnv, config: JobConfig) -> Result<JobGraph, BuildError> {
        let (partitions, records, keys, pace) =
            (params.partitions, params.records, params.keys, params.records_per_second);
        let output = env.output_dir.clone();
        let job = JobBuilder::new(Self::NAME, config)?;
        job.source("numbers", move || SequenceSource::paced(partitions, records, pace))
            .key_by(move |record: &SequenceRecord| record.number % keys)
            .process("running-totals", || Totals)
            .sink("sink", move || {
                TwoPhaseCommitSink::of(EagerCommit(FileTransactions::new(output.clone(), Arc::new(format_line))))
            });
        job.build()
    }

    fn reference(&self, params: &SequenceParams) -> Reference {
        Sequence.reference(params)
    }

    fn committed<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> BoxFuture<'a, Result<String, String>> {
        file_sink_output(storage, &env.output_dir)
    }

    fn committed_parts<'a>(&'a self, storage: &'a StorageRef, env: &'a WorkloadEnv) -> PartsFuture<'a> {
        file_sink_parts(storage, &env.output_dir)
    }

    fn state_lines(&self, committed: &[&str]) -> Vec<String> {
        Sequence.state_lines(committed)
    }

    fn not_applicable(&self, invariant: crate::invariants::Invariant) -> Option<String> {
        Sequence.not_applicable(invariant)
    }

    fn check_order(&self, params: &SequenceParams, committed: &[&str]) -> Option<String> {
        Sequence.check_order(params, committed)
    }
}
