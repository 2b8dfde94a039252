//! The typed job API: sources, `map`, `filter`, `flat_map`, `key_by`, keyed process
//! functions, `rebalance`, sinks.
//!
//! Operators between two exchanges are chained into one vertex and run in one task per
//! subtask; `key_by` and `rebalance` end a vertex with a network exchange. Every operator
//! takes a uid, which must be unique in the job: state is mapped back to operators by uid.
//!
//! ```no_run
//! use engine::api::JobBuilder;
//! # fn sketch(builder: JobBuilder, source: impl Fn() -> engine::connectors::sequence_source::SequenceSource + Send + Sync + 'static) {
//! builder
//!     .source("numbers", source)
//!     .filter("even", |r| r.number % 2 == 0)
//!     .map("square", |r| r.number * r.number)
//!     .rebalance()
//!     .sink("out", engine::connectors::file_sink::FileSink::factory("/tmp/out", |n: &u64, line: &mut String| {
//!         use std::fmt::Write;
//!         let _ = write!(line, "{n}");
//!     }));
//! # }
//! ```

mod error;
pub mod graph;

pub use error::BuildError;

use crate::config::{JobConfig, StateBackendKind};
use crate::element::StreamElement;
use crate::error::{TaskError, TaskFailure};
use crate::ids::{OperatorUid, VertexId};
use crate::keygroup::{MAX_PARALLELISM_UPPER_BOUND, default_max_parallelism};
use crate::operators::ChainOp;
use crate::operators::filter::FilterOp;
use crate::operators::flat_map::FlatMapOp;
use crate::operators::keyed_process::{KeyedProcessFunction, KeyedProcessOperator};
use crate::operators::map::MapOp;
use crate::operators::sink::Sink;
use crate::operators::source::Source;
use crate::seam::runtime;
use crate::state::backend::KeyedStateBackend;
use crate::state::embedded::EmbeddedKeyedBackend;
use crate::state::heap::HeapKeyedBackend;
use crate::state::{Key, KeySelector};
use crate::task::channel::{self, Receiver, Sender};
use crate::task::context::BuildContext;
use crate::task::gate::InputGate;
use crate::task::tail::{NetworkOutput, Partitioner, SinkTail, Tail};
use crate::task::upstream::{Chained, SourceHead, Upstream};
use crate::task::{Start, run_task};
use graph::{EdgeKind, EdgeSpec, JobGraph, VertexFactory, VertexSpec};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;

type UpstreamFactory<T> = Arc<dyn Fn(&mut BuildContext) -> Result<Box<dyn Upstream<T>>, TaskError> + Send + Sync>;
type TailFactory<T> = Arc<dyn Fn(&mut BuildContext) -> Result<Box<dyn Tail<T>>, TaskError> + Send + Sync>;

struct PendingVertex {
    name: String,
    parallelism: u32,
    operators: Vec<OperatorUid>,
    is_source: bool,
    factory: Option<VertexFactory>,
}

struct GraphState {
    name: String,
    config: Arc<JobConfig>,
    parallelism: u32,
    max_parallelism: u32,
    vertices: Vec<PendingVertex>,
    edges: Vec<EdgeSpec>,
    uids: BTreeSet<String>,
    errors: Vec<BuildError>,
}

impl GraphState {
    fn add_uid(&mut self, vertex: VertexId, uid: &str) -> OperatorUid {
        if !self.uids.insert(uid.to_string()) {
            self.errors.push(BuildError::DuplicateUid(uid.to_string()));
        }
        let pending = &mut self.vertices[vertex.0 as usize];
        if !pending.name.is_empty() {
            pending.name.push_str(" -> ");
        }
        pending.name.push_str(uid);
        pending.operators.push(OperatorUid(uid.to_string()));
        OperatorUid(uid.to_string())
    }

    fn add_vertex(&mut self, is_source: bool) -> VertexId {
        self.vertices.push(PendingVertex {
            name: String::new(),
            parallelism: self.parallelism,
            operators: Vec::new(),
            is_source,
            factory: None,
        });
        VertexId(self.vertices.len() as u32 - 1)
    }
}

/// Builds a job graph with the typed API.
pub struct JobBuilder {
    graph: Rc<RefCell<GraphState>>,
}

impl JobBuilder {
    /// Starts a job. Parallelism comes from `config.parallelism` (default 1); max
    /// parallelism from `config.max_parallelism` or Flink's default for the parallelism.
    pub fn new(name: &str, config: JobConfig) -> Result<JobBuilder, BuildError> {
        let parallelism = config.parallelism.unwrap_or(1);
        if parallelism == 0 {
            return Err(BuildError::ZeroParallelism(parallelism));
        }
        if parallelism > crate::config::PARALLELISM_MAX {
            return Err(BuildError::ParallelismTooHigh { parallelism, limit: crate::config::PARALLELISM_MAX });
        }
        let max_parallelism = match config.max_parallelism {
            Some(max) if max == 0 || max > MAX_PARALLELISM_UPPER_BOUND => {
                return Err(BuildError::MaxParallelismOutOfRange(max));
            }
            Some(max) => max,
            None => default_max_parallelism(parallelism.min(MAX_PARALLELISM_UPPER_BOUND)),
        };
        if parallelism > max_parallelism {
            return Err(BuildError::ParallelismAboveMax { parallelism, max_parallelism });
        }
        let graph = GraphState {
            name: name.to_string(),
            config: Arc::new(config),
            parallelism,
            max_parallelism,
            vertices: Vec::new(),
            edges: Vec::new(),
            uids: BTreeSet::new(),
            errors: Vec::new(),
        };
        Ok(JobBuilder { graph: Rc::new(RefCell::new(graph)) })
    }

    pub fn parallelism(&self) -> u32 {
        self.graph.borrow().parallelism
    }

    /// Adds a source; `make` creates one instance per subtask.
    pub fn source<S, F>(&self, uid: &str, make: F) -> Stream<S::Out>
    where
        S: Source,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let mut graph = self.graph.borrow_mut();
        let vertex = graph.add_vertex(true);
        let uid = graph.add_uid(vertex, uid);
        let upstream: UpstreamFactory<S::Out> = Arc::new(move |context: &mut BuildContext| {
            let restored = context.take_restored(&uid);
            Ok(Box::new(SourceHead::new(uid.clone(), make(), restored, context)) as Box<dyn Upstream<S::Out>>)
        });
        Stream { graph: self.graph.clone(), vertex, upstream }
    }

    /// Finishes the job graph.
    pub fn build(self) -> Result<JobGraph, BuildError> {
        let graph = Rc::try_unwrap(self.graph)
            .map_err(|_| ())
            .expect("streams of the job are dropped before build")
            .into_inner();
        if let Some(error) = graph.errors.into_iter().next() {
            return Err(error);
        }
        let mut vertices = Vec::new();
        for (index, pending) in graph.vertices.into_iter().enumerate() {
            // A vertex without a factory is a stream that never reached a sink.
            let Some(factory) = pending.factory else { return Err(BuildError::NoSink) };
            vertices.push(VertexSpec {
                id: VertexId(index as u32),
                name: pending.name,
                parallelism: pending.parallelism,
                operators: pending.operators,
                is_source: pending.is_source,
                factory,
            });
        }
        if vertices.is_empty() {
            return Err(BuildError::NoSink);
        }
        Ok(JobGraph {
            name: graph.name,
            vertices,
            edges: graph.edges,
            max_parallelism: graph.max_parallelism,
            config: graph.config,
        })
    }
}

/// A stream of `T`: the open end of a vertex under construction.
pub struct Stream<T> {
    graph: Rc<RefCell<GraphState>>,
    vertex: VertexId,
    upstream: UpstreamFactory<T>,
}

impl<T: Send + 'static> Stream<T> {
    fn chain<U: Send + 'static>(
        self,
        uid: &str,
        make_op: impl Fn() -> Box<dyn ChainOp<T, U>> + Send + Sync + 'static,
    ) -> Stream<U> {
        self.graph.borrow_mut().add_uid(self.vertex, uid);
        let inner = self.upstream;
        let upstream: UpstreamFactory<U> = Arc::new(move |context: &mut BuildContext| {
            Ok(Box::new(Chained::new(inner(context)?, make_op())) as Box<dyn Upstream<U>>)
        });
        Stream { graph: self.graph, vertex: self.vertex, upstream }
    }

    /// Transforms each record.
    pub fn map<U: Send + 'static>(self, uid: &str, f: impl Fn(T) -> U + Clone + Send + Sync + 'static) -> Stream<U> {
        self.chain(uid, move || Box::new(MapOp::new(f.clone())))
    }

    /// Keeps the records `predicate` accepts.
    pub fn filter(self, uid: &str, predicate: impl Fn(&T) -> bool + Clone + Send + Sync + 'static) -> Stream<T> {
        self.chain(uid, move || Box::new(FilterOp::new(predicate.clone())))
    }

    /// Turns each record into zero or more records, appended to the output.
    pub fn flat_map<U: Send + 'static>(
        self,
        uid: &str,
        f: impl Fn(T, &mut Vec<U>) + Clone + Send + Sync + 'static,
    ) -> Stream<U> {
        self.chain(uid, move || Box::new(FlatMapOp::new(f.clone())))
    }

    /// Partitions the stream by key: records with equal keys reach the same subtask.
    pub fn key_by<K: Key>(self, key_of: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<K, T> {
        KeyedStream { stream: self, key_of: Arc::new(move |record| Cow::Owned(key_of(record))) }
    }

    /// As [`Stream::key_by`], for a key that is a field of the record: the key is borrowed
    /// for routing and copied into a reused buffer by the keyed operator, so keying costs no
    /// allocation per record.
    pub fn key_by_ref<K: Key>(
        self,
        key_of: impl for<'a> Fn(&'a T) -> &'a K + Send + Sync + 'static,
    ) -> KeyedStream<K, T> {
        KeyedStream { stream: self, key_of: Arc::new(move |record| Cow::Borrowed(key_of(record))) }
    }

    /// Redistributes records round robin over the next vertex's subtasks.
    pub fn rebalance(self) -> Stream<T> {
        self.exchange(EdgeKind::Rebalance, Arc::new(|| Partitioner::Rebalance))
    }

    /// Ends the stream in a sink; `make` creates one instance per subtask.
    pub fn sink<S: Sink<T>>(self, uid: &str, make: impl Fn() -> S + Send + Sync + 'static) {
        let uid = self.graph.borrow_mut().add_uid(self.vertex, uid);
        let tail: TailFactory<T> = Arc::new(move |context: &mut BuildContext| {
            let restored = context.take_restored(&uid);
            let checkpointing = context.services.checkpoints.is_some();
            Ok(Box::new(SinkTail::new(
                uid.clone(),
                make(),
                context.info.clone(),
                context.storage.clone(),
                restored,
                checkpointing,
                context.services.faults.clone(),
            )) as Box<dyn Tail<T>>)
        });
        self.close(tail);
    }

    /// Ends this vertex with `tail` and gives it its task factory.
    fn close(self, tail: TailFactory<T>) {
        let upstream = self.upstream;
        // Every operator of the vertex, stateless ones too: a task is finished on restore
        // only if all of them were (a new operator in the vertex has work to do).
        let operators: Arc<Vec<OperatorUid>> =
            Arc::new(self.graph.borrow().vertices[self.vertex.0 as usize].operators.clone());
        let factory: VertexFactory = Arc::new(move |mut context: BuildContext| {
            let upstream = upstream.clone();
            let tail = tail.clone();
            let operators = operators.clone();
            let task = async move {
                context.prepare_stores().await?;
                let restored = &context.restored.operators;
                let finished_on_restore =
                    operators.iter().all(|uid| restored.get(uid).is_some_and(|operator| operator.finished));
                let pulled = upstream(&mut context)?;
                let pushed = tail(&mut context)?;
                let start = Start {
                    batch_size_records: context.batch_size_records(),
                    mode: context.mode,
                    finished_on_restore,
                    operators,
                };
                run_task(context.info, pulled, pushed, context.services, start).await
            };
            // A panic in the subtask's code (in real mode) ends it as a failed task, reported
            // like any other failure, instead of a thread that is gone without a word.
            Box::pin(async move {
                match runtime::catch_panic(task).await {
                    Ok(result) => result,
                    Err(message) => Err(TaskFailure::Panicked { message }.into()),
                }
            })
        });
        let mut graph = self.graph.borrow_mut();
        let pending = &mut graph.vertices[self.vertex.0 as usize];
        assert!(pending.factory.is_none(), "vertex {} closed twice", self.vertex);
        pending.factory = Some(factory);
    }

    /// Ends this vertex with a network exchange and opens the next vertex behind it.
    fn exchange(self, kind: EdgeKind, partitioner: Arc<dyn Fn() -> Partitioner<T> + Send + Sync>) -> Stream<T> {
        let graph = self.graph.clone();
        let from = self.vertex;
        let tail: TailFactory<T> = Arc::new(move |context: &mut BuildContext| {
            let senders: Vec<Sender<StreamElement<T>>> = context
                .outputs
                .drain(..)
                .map(|sender| {
                    *sender.downcast::<Sender<StreamElement<T>>>().expect("an edge's senders carry its record type")
                })
                .collect();
            let faults = context.services.faults.clone();
            let output =
                NetworkOutput::new(context.info.clone(), senders, partitioner(), context.batch_size_records(), faults);
            Ok(Box::new(output) as Box<dyn Tail<T>>)
        });
        self.close(tail);

        let mut state = graph.borrow_mut();
        let to = state.add_vertex(false);
        state.edges.push(EdgeSpec {
            from,
            to,
            kind,
            // weir's own channel: it allocates nothing until something is sent, because an
            // all-to-all edge has a channel per pair of subtasks.
            make_channel: Arc::new(|capacity| {
                let (sender, receiver) = channel::bounded::<StreamElement<T>>(capacity);
                (Box::new(sender), Box::new(receiver))
            }),
        });
        drop(state);
        let upstream: UpstreamFactory<T> = Arc::new(|context: &mut BuildContext| {
            let receivers: Vec<Receiver<StreamElement<T>>> = context
                .inputs
                .drain(..)
                .map(|receiver| {
                    *receiver
                        .downcast::<Receiver<StreamElement<T>>>()
                        .expect("an edge's receivers carry its record type")
                })
                .collect();
            let mode = context.config.checkpoint.mode;
            let gate = InputGate::new(context.info.clone(), mode, receivers, context.services.faults.clone());
            Ok(Box::new(gate) as Box<dyn Upstream<T>>)
        });
        Stream { graph, vertex: to, upstream }
    }
}

/// A stream partitioned by key, ready for a keyed process function.
pub struct KeyedStream<K: Key, T> {
    stream: Stream<T>,
    key_of: KeySelector<T, K>,
}

impl<K: Key, T: Send + 'static> KeyedStream<K, T> {
    /// Runs `make()`'s function on every record with state scoped to the record's key.
    pub fn process<Out, F>(self, uid: &str, make: impl Fn() -> F + Send + Sync + 'static) -> Stream<Out>
    where
        Out: Send + 'static,
        F: KeyedProcessFunction<K, T, Out>,
    {
        let route_key = self.key_of.clone();
        let exchanged =
            self.stream.exchange(EdgeKind::KeyGroups, Arc::new(move || Partitioner::key_groups(route_key.clone())));
        let uid = exchanged.graph.borrow_mut().add_uid(exchanged.vertex, uid);
        let key_of = self.key_of;
        let inner = exchanged.upstream;
        let upstream: UpstreamFactory<Out> = Arc::new(move |context: &mut BuildContext| {
            let gate = inner(context)?;
            let restored = context.take_restored(&uid);
            let state_error = |source| TaskFailure::State { operator: uid.clone(), source };
            let restored_groups = restored.map(|r| r.keyed).unwrap_or_default();
            let range = context.info.key_group_range();
            let max_parallelism = context.info.max_parallelism;
            let op: Box<dyn ChainOp<T, Out>> = match context.config.state_backend {
                StateBackendKind::Embedded => {
                    let backend = match context.prepared.remove(&uid) {
                        Some(store) => EmbeddedKeyedBackend::<K>::from_restored(store, range, &restored_groups),
                        None => EmbeddedKeyedBackend::<K>::open(
                            context.storage.clone(),
                            context.embedded_work_dir(&uid),
                            range,
                            context.embedded_options(),
                            &restored_groups,
                        ),
                    }
                    .map_err(state_error)?;
                    Box::new(KeyedProcessOperator::new(uid.clone(), key_of.clone(), make(), backend, max_parallelism))
                }
                StateBackendKind::JobManager | StateBackendKind::FileSystem => {
                    // A checkpoint of the embedded backend restored into the heap one: its files, read
                    // back into canonical key groups.
                    let restored_groups = match context.prepared.remove(&uid) {
                        Some(store) => EmbeddedKeyedBackend::<K>::from_restored(store, range, &restored_groups)
                            .and_then(|mut embedded| embedded.snapshot())
                            .map_err(state_error)?,
                        None => restored_groups,
                    };
                    let backend = HeapKeyedBackend::<K>::new(range, &restored_groups).map_err(state_error)?;
                    Box::new(KeyedProcessOperator::new(uid.clone(), key_of.clone(), make(), backend, max_parallelism))
                }
            };
            Ok(Box::new(Chained::new(gate, op)) as Box<dyn Upstream<Out>>)
        });
        Stream { graph: exchanged.graph, vertex: exchanged.vertex, upstream }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_parallelism(parallelism: u32) -> Result<JobBuilder, BuildError> {
        JobBuilder::new("job", JobConfig { parallelism: Some(parallelism), ..JobConfig::default() })
    }

    #[test]
    fn parallelism_is_bounded_for_every_caller_not_only_the_configuration() {
        assert!(matches!(with_parallelism(0), Err(BuildError::ZeroParallelism(0))));
        assert!(with_parallelism(crate::config::PARALLELISM_MAX).is_ok());
        let limit = crate::config::PARALLELISM_MAX;
        assert!(matches!(
            with_parallelism(limit + 1),
            Err(BuildError::ParallelismTooHigh { parallelism, limit: l }) if parallelism == limit + 1 && l == limit
        ));
    }
}
