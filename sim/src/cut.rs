//! The consistent-cut oracle's input: a completed snapshot's state, decoded from its `_metadata` and state files
//! as they are in the simulated storage at that moment. A workload compares it with its reference model evaluated
//! at the source positions the snapshot recorded ([`crate::workload::Workload::check_cut`]): a late or early
//! snapshot, a skipped alignment or restored state dropped shows there even when nothing crashes afterwards.
//!
//! Reading is synchronous (the oracle runs inside a fault point, as the snapshot completes) and bypasses the
//! storage's faults and delays: it looks, it does not take part.

use crate::storage::SimStorage;
use engine::checkpoint::metadata::{self, METADATA_FILE_NAME, StateHandle};
use engine::ids::CheckpointId;
use engine::state::snapshot::{KeyGroupSnapshot, ListStateSnapshot};
use std::collections::BTreeMap;
use std::path::Path;

/// One operator of a cut: every subtask's state together.
#[derive(Clone, Debug, Default)]
pub struct CutOperator {
    pub max_parallelism: u32,
    /// Each list state once, with every subtask's elements.
    pub lists: Vec<ListStateSnapshot>,
    pub key_groups: Vec<KeyGroupSnapshot>,
    /// A subtask had processed all its input (a snapshot in the end-of-data phase keeps no state of it).
    pub finished: bool,
    /// The keyed state is an embedded store's files, which the oracle does not decode.
    pub embedded: bool,
}

/// A completed snapshot's state, by operator uid.
#[derive(Clone, Debug)]
pub struct Cut {
    pub id: CheckpointId,
    pub operators: BTreeMap<String, CutOperator>,
}

/// The state of the snapshot whose `_metadata` is in `dir`; `Ok(None)` if there is none (a snapshot kept in the
/// job manager's memory). A file that is missing or does not match its handle is an error: the checkers of
/// retained checkpoints say more about it.
pub fn read(storage: &SimStorage, dir: &Path) -> Result<Option<Cut>, String> {
    let path = dir.join(METADATA_FILE_NAME);
    let Some(bytes) = storage.read_now(&path) else { return Ok(None) };
    let decoded = metadata::decode(&bytes, &path).map_err(|e| e.to_string())?;
    let mut files: BTreeMap<std::path::PathBuf, Vec<u8>> = BTreeMap::new();
    let mut operators = BTreeMap::new();
    for operator in &decoded.operators {
        let mut cut = CutOperator { max_parallelism: operator.max_parallelism, ..CutOperator::default() };
        for subtask in &operator.subtasks {
            // Each subtask's list of a name, as one list (the union a restore redistributes).
            for list in &subtask.lists {
                match cut.lists.iter_mut().find(|l| l.name == list.name) {
                    Some(merged) => merged.elements.extend(list.elements.iter().cloned()),
                    None => cut.lists.push(list.clone()),
                }
            }
            cut.finished |= subtask.finished;
            cut.embedded |= subtask.embedded.is_some();
            for group in &subtask.key_groups {
                let bytes = match &group.handle {
                    StateHandle::Inline(bytes) => bytes.clone(),
                    StateHandle::File(file) => {
                        let path = if Path::new(&file.path).is_absolute() {
                            Path::new(&file.path).to_path_buf()
                        } else {
                            dir.join(&file.path)
                        };
                        if !files.contains_key(&path) {
                            let content = storage
                                .read_now(&path)
                                .ok_or_else(|| format!("state file `{}` is missing", path.display()))?;
                            files.insert(path.clone(), content);
                        }
                        let content = &files[&path];
                        let end = (file.offset + file.length) as usize;
                        content
                            .get(file.offset as usize..end)
                            .ok_or_else(|| format!("state file `{}` is shorter than its handle", path.display()))?
                            .to_vec()
                    }
                };
                cut.key_groups.push(KeyGroupSnapshot { key_group: group.key_group, bytes });
            }
        }
        operators.insert(operator.uid.0.clone(), cut);
    }
    Ok(Some(Cut { id: decoded.checkpoint_id, operators }))
}
