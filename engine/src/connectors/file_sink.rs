//! A file sink: each subtask writes its records as lines to its own part file,
//! `<dir>/part-<subtask>`, made durable when the input ends.

use crate::error::TaskError;
use crate::ids::CheckpointId;
use crate::operators::OperatorContext;
use crate::operators::sink::Sink;
use crate::seam::storage::{StorageRef, WriteFile};
use crate::state::operator::OperatorStateStore;
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Formats one record as one line (without the newline).
pub type LineFormat<T> = Arc<dyn Fn(&T, &mut String) + Send + Sync>;

/// Bytes buffered before a write reaches storage.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

pub struct FileSink<T> {
    dir: PathBuf,
    format: LineFormat<T>,
    file: Option<Box<dyn WriteFile>>,
    buffer: String,
    storage: Option<StorageRef>,
}

impl<T: Send + 'static> FileSink<T> {
    pub fn new(dir: PathBuf, format: LineFormat<T>) -> Self {
        FileSink { dir, format, file: None, buffer: String::new(), storage: None }
    }

    /// A factory for the typed API's `sink`: one sink per subtask over the same directory.
    pub fn factory(
        dir: impl Into<PathBuf>,
        format: impl Fn(&T, &mut String) + Send + Sync + 'static,
    ) -> impl Fn() -> FileSink<T> + Send + Sync + 'static {
        let dir = dir.into();
        let format: LineFormat<T> = Arc::new(format);
        move || FileSink::new(dir.clone(), format.clone())
    }

    /// The part file of `subtask` under `dir`.
    pub fn part_path(dir: &Path, subtask: u32) -> PathBuf {
        dir.join(format!("part-{subtask}"))
    }

    async fn write_buffer(&mut self) -> Result<(), TaskError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let file = self.file.as_mut().expect("the sink is opened before writing");
        file.write_all(self.buffer.as_bytes()).await?;
        self.buffer.clear();
        Ok(())
    }
}

#[async_trait]
impl<T: Send + 'static> Sink<T> for FileSink<T> {
    async fn open(
        &mut self,
        context: OperatorContext<'_>,
        _restored: Option<&OperatorStateStore>,
    ) -> Result<(), TaskError> {
        let storage = context.storage.clone();
        storage.create_dir_all(&self.dir).await?;
        self.file = Some(storage.create(&Self::part_path(&self.dir, context.info.subtask.0)).await?);
        self.storage = Some(storage);
        Ok(())
    }

    async fn write(&mut self, records: &mut Vec<T>) -> Result<(), TaskError> {
        for record in records.drain(..) {
            (self.format)(&record, &mut self.buffer);
            self.buffer.push('\n');
        }
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.write_buffer().await?;
        }
        Ok(())
    }

    async fn snapshot(&mut self, _checkpoint: CheckpointId, _state: &mut OperatorStateStore) -> Result<(), TaskError> {
        // Not transactional: make what was written durable, record nothing.
        self.write_buffer().await?;
        self.file.as_mut().expect("opened").sync().await?;
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), TaskError> {
        self.write_buffer().await?;
        let mut file = self.file.take().expect("opened");
        file.sync().await?;
        drop(file);
        self.storage.as_ref().expect("opened").sync_dir(&self.dir).await?;
        Ok(())
    }

    async fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> Result<(), TaskError> {
        Ok(())
    }
}
