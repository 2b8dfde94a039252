//! The job graph: vertices (chains of operators run as one task per subtask) and the edges
//! between them, as the job manager deploys it.

use crate::checkpoint::restore::{JobLayout, VertexLayout};
use crate::config::JobConfig;
use crate::error::TaskError;
use crate::ids::{OperatorUid, VertexId};
use crate::task::context::BuildContext;
use std::any::Any;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A running subtask.
pub type TaskFuture = Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>>;
/// Builds and runs one subtask of a vertex.
pub type VertexFactory = Arc<dyn Fn(BuildContext) -> TaskFuture + Send + Sync>;
/// Creates one bounded channel of an edge, type-erased: (sender, receiver).
pub type ChannelFactory = Arc<dyn Fn(usize) -> (Box<dyn Any + Send>, Box<dyn Any + Send>) + Send + Sync>;

/// How an edge routes records.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    Forward,
    Rebalance,
    KeyGroups,
}

pub struct VertexSpec {
    pub id: VertexId,
    pub name: String,
    pub parallelism: u32,
    /// The uids of the operators chained in this vertex, head first.
    pub operators: Vec<OperatorUid>,
    pub is_source: bool,
    pub factory: VertexFactory,
}

pub struct EdgeSpec {
    pub from: VertexId,
    pub to: VertexId,
    pub kind: EdgeKind,
    pub make_channel: ChannelFactory,
}

/// A job ready to deploy.
pub struct JobGraph {
    pub name: String,
    pub vertices: Vec<VertexSpec>,
    pub edges: Vec<EdgeSpec>,
    pub max_parallelism: u32,
    pub config: Arc<JobConfig>,
}

impl JobGraph {
    pub fn vertex(&self, id: VertexId) -> &VertexSpec {
        &self.vertices[id.0 as usize]
    }

    /// The edge into `vertex`, if it has one.
    pub fn input_edge(&self, vertex: VertexId) -> Option<&EdgeSpec> {
        self.edges.iter().find(|e| e.to == vertex)
    }

    /// The edge out of `vertex`, if it has one.
    pub fn output_edge(&self, vertex: VertexId) -> Option<&EdgeSpec> {
        self.edges.iter().find(|e| e.from == vertex)
    }

    /// The number of slots the job needs (slot sharing: the highest parallelism).
    pub fn slots_needed(&self) -> u32 {
        self.vertices.iter().map(|v| v.parallelism).max().unwrap_or(0)
    }

    /// What a restore needs of the job: operators, parallelism and sources per vertex, and max parallelism.
    pub fn layout(&self) -> JobLayout {
        JobLayout {
            vertices: self
                .vertices
                .iter()
                .map(|v| VertexLayout {
                    operators: v.operators.clone(),
                    parallelism: v.parallelism,
                    is_source: v.is_source,
                })
                .collect(),
            max_parallelism: self.max_parallelism,
        }
    }

    /// A readable plan, one line per vertex and edge.
    pub fn describe(&self) -> String {
        let mut text = format!("job `{}` (max parallelism {})\n", self.name, self.max_parallelism);
        for vertex in &self.vertices {
            let _ = writeln!(text, "  {} x{}: {}", vertex.id, vertex.parallelism, vertex.name);
        }
        for edge in &self.edges {
            let _ = writeln!(text, "  {} -> {} ({:?})", edge.from, edge.to, edge.kind);
        }
        text
    }
}
