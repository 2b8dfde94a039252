//! The versioned binary format of a checkpoint's `_metadata` file, which records where the state of every
//! operator of a completed checkpoint or savepoint is.
//!
//! The file is laid out as
//!
//! ```text
//! MAGIC (8 bytes) | FORMAT_VERSION (u32 LE) | body length (u64 LE) | body | crc32 (u32 LE)
//! ```
//!
//! where the body is the postcard encoding of [`CheckpointMetadata`] and the crc32 covers every byte before
//! it. The fixed frame lets a reader tell "not our file", "written by another format version", "cut short"
//! and "corrupt" apart before it trusts a single byte of the body, so that an operator restoring from the
//! wrong directory gets a message that says so instead of a postcard error. Decoding never panics and never
//! allocates from a length it read: the file may be anything, because users point restores at paths.

use crate::ids::{CheckpointId, JobId, KeyGroup, OperatorUid, SubtaskIndex};
use crate::keygroup::{KeyGroupRange, MAX_PARALLELISM_UPPER_BOUND};
use crate::state::snapshot::{EmbeddedSnapshot, FileScope, ListStateSnapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// The first 8 bytes of every metadata file.
pub const MAGIC: [u8; 8] = *b"WEIRMETA";
/// The version of the frame and body layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 3;
/// Version 1 had no `finished` flag on subtask state; it is still read (as not finished).
const FORMAT_VERSION_1: u32 = 1;
/// Version 2 had no embedded store snapshots; it is still read (as none).
const FORMAT_VERSION_2: u32 = 2;
/// The name of the metadata file inside a checkpoint or savepoint directory.
pub const METADATA_FILE_NAME: &str = "_metadata";

/// Bytes before the body: magic, version and body length.
const HEADER_LEN: usize = MAGIC.len() + 4 + 8;
/// Bytes after the body: the crc32.
const TRAILER_LEN: usize = 4;
/// The size of a file with an empty body, the smallest that can be complete.
const FIXED_LEN: usize = HEADER_LEN + TRAILER_LEN;

/// Whether the snapshot was taken by the system for recovery or by a user for an upgrade or migration.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    Checkpoint,
    Savepoint,
}

/// Which backend wrote the state (a savepoint is `Canonical`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotFormat {
    JobManager,
    FileSystem,
    Embedded,
    Canonical,
}

/// Everything a restore needs to find the state of a completed checkpoint or savepoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub checkpoint_id: CheckpointId,
    pub job_id: JobId,
    pub job_name: String,
    pub kind: SnapshotKind,
    pub format: SnapshotFormat,
    /// Milliseconds since the Unix epoch at which the checkpoint was triggered.
    pub timestamp_ms: u64,
    /// Ascending by uid, uids unique.
    pub operators: Vec<OperatorState>,
}

/// The state of one operator across all of its subtasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    pub uid: OperatorUid,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// One entry per subtask: `subtasks.len() == parallelism`, and the index is the subtask index.
    pub subtasks: Vec<SubtaskState>,
}

/// The state handles of one subtask's acknowledgement of a snapshot, by operator uid.
pub type AckedState = std::collections::BTreeMap<OperatorUid, SubtaskState>;

impl super::registry::SharedReferences for AckedState {
    fn shared_files(&self) -> Vec<super::registry::SharedFile> {
        self.values()
            .flat_map(|subtask| subtask.embedded.iter())
            .flat_map(|embedded| embedded.files.iter())
            .filter(|file| file.scope == FileScope::Shared)
            .map(|file| super::registry::SharedFile { name: file.name.clone(), uploaded_by: file.uploaded_by })
            .collect()
    }
}

impl CheckpointMetadata {
    /// The shared files this checkpoint refers to, each once, for the shared-state registry.
    pub fn shared_references(&self) -> Vec<super::registry::SharedFile> {
        let mut files: Vec<super::registry::SharedFile> = self
            .embedded_files()
            .filter(|(_, _, file)| file.scope == FileScope::Shared)
            .map(|(_, _, file)| super::registry::SharedFile { name: file.name.clone(), uploaded_by: file.uploaded_by })
            .collect();
        files.sort();
        files.dedup();
        files
    }
}

/// The state of one operator in one subtask.
#[derive(Clone, Default, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskState {
    /// Ascending and unique, each inside the subtask's `KeyGroupRange::for_subtask`.
    pub key_groups: Vec<KeyGroupHandle>,
    /// Operator list states, names unique.
    pub lists: Vec<ListStateSnapshot>,
    /// The operator had processed all its input when snapshotted (a snapshot in the end of
    /// data phase): restored, it must not process or emit its end-of-input results again.
    pub finished: bool,
    /// Keyed state as the embedded store's files (the embedded backend's checkpoints), instead
    /// of `key_groups`.
    pub embedded: Option<EmbeddedSnapshot>,
}

/// Version 2 of the body, read for compatibility.
mod v2 {
    use super::*;

    #[derive(Deserialize)]
    pub struct CheckpointMetadata {
        pub checkpoint_id: CheckpointId,
        pub job_id: JobId,
        pub job_name: String,
        pub kind: SnapshotKind,
        pub format: SnapshotFormat,
        pub timestamp_ms: u64,
        pub operators: Vec<OperatorState>,
    }

    #[derive(Deserialize)]
    pub struct OperatorState {
        pub uid: OperatorUid,
        pub parallelism: u32,
        pub max_parallelism: u32,
        pub subtasks: Vec<SubtaskState>,
    }

    #[derive(Deserialize)]
    pub struct SubtaskState {
        pub key_groups: Vec<KeyGroupHandle>,
        pub lists: Vec<ListStateSnapshot>,
        pub finished: bool,
    }

    impl From<CheckpointMetadata> for super::CheckpointMetadata {
        fn from(m: CheckpointMetadata) -> Self {
            super::CheckpointMetadata {
                checkpoint_id: m.checkpoint_id,
                job_id: m.job_id,
                job_name: m.job_name,
                kind: m.kind,
                format: m.format,
                timestamp_ms: m.timestamp_ms,
                operators: m
                    .operators
                    .into_iter()
                    .map(|o| super::OperatorState {
                        uid: o.uid,
                        parallelism: o.parallelism,
                        max_parallelism: o.max_parallelism,
                        subtasks: o
                            .subtasks
                            .into_iter()
                            .map(|s| super::SubtaskState {
                                key_groups: s.key_groups,
                                lists: s.lists,
                                finished: s.finished,
                                embedded: None,
                            })
                            .collect(),
                    })
                    .collect(),
            }
        }
    }
}

/// Version 1 of the body, read for compatibility.
mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub struct CheckpointMetadata {
        pub checkpoint_id: CheckpointId,
        pub job_id: JobId,
        pub job_name: String,
        pub kind: SnapshotKind,
        pub format: SnapshotFormat,
        pub timestamp_ms: u64,
        pub operators: Vec<OperatorState>,
    }

    #[derive(Deserialize)]
    pub struct OperatorState {
        pub uid: OperatorUid,
        pub parallelism: u32,
        pub max_parallelism: u32,
        pub subtasks: Vec<SubtaskState>,
    }

    #[derive(Deserialize)]
    pub struct SubtaskState {
        pub key_groups: Vec<KeyGroupHandle>,
        pub lists: Vec<ListStateSnapshot>,
    }

    /// Version 1 is version 2 with no subtask finished.
    impl From<CheckpointMetadata> for super::v2::CheckpointMetadata {
        fn from(m: CheckpointMetadata) -> Self {
            let CheckpointMetadata { checkpoint_id, job_id, job_name, kind, format, timestamp_ms, operators } = m;
            let operators = operators
                .into_iter()
                .map(|o| super::v2::OperatorState {
                    uid: o.uid,
                    parallelism: o.parallelism,
                    max_parallelism: o.max_parallelism,
                    subtasks: o
                        .subtasks
                        .into_iter()
                        .map(|s| super::v2::SubtaskState { key_groups: s.key_groups, lists: s.lists, finished: false })
                        .collect(),
                })
                .collect();
            super::v2::CheckpointMetadata { checkpoint_id, job_id, job_name, kind, format, timestamp_ms, operators }
        }
    }
}

/// Where the keyed state of one key group is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupHandle {
    pub key_group: KeyGroup,
    pub handle: StateHandle,
}

/// State bytes, either kept in the metadata itself or in a range of another file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateHandle {
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    File(FileRef),
}

/// `path` is relative to the directory holding `_metadata` unless it is absolute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub path: String,
    pub offset: u64,
    pub length: u64,
    /// The [`checksum`] of the `length` bytes at `offset`.
    pub checksum: u32,
}

/// Why a metadata file cannot be used. Every message is one line that names the file, because these end up
/// in logs and CLI output where the file is the first thing a user needs to know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error(
        "`{}`: truncated checkpoint metadata: expected {expected_bytes} bytes, found {actual_bytes}",
        one_line(.path.display())
    )]
    Truncated { path: PathBuf, expected_bytes: u64, actual_bytes: u64 },
    #[error("`{}` is not a weir checkpoint metadata file (bad magic number)", one_line(.path.display()))]
    NotMetadata { path: PathBuf },
    #[error(
        "`{}`: unsupported checkpoint metadata format version {version} (this build reads version {FORMAT_VERSION})",
        one_line(.path.display())
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("`{}`: {extra_bytes} unexpected bytes after the end of the checkpoint metadata", one_line(.path.display()))]
    TrailingBytes { path: PathBuf, extra_bytes: u64 },
    #[error(
        "`{}`: checksum mismatch (stored 0x{stored:08x}, computed 0x{computed:08x}): the file is corrupt",
        one_line(.path.display())
    )]
    ChecksumMismatch { path: PathBuf, stored: u32, computed: u32 },
    #[error("`{}`: cannot decode checkpoint metadata: {}", one_line(.path.display()), one_line(.message))]
    Body { path: PathBuf, message: String },
    #[error(
        "`{}`: cannot decode checkpoint metadata: {}: {} (body byte {offset}, file offset {})",
        one_line(.path.display()),
        one_line(.field),
        one_line(.problem),
        *.offset as u64 + HEADER_LEN as u64
    )]
    Field { path: PathBuf, field: String, offset: usize, problem: String },
    #[error("`{}`: invalid checkpoint metadata: {}", one_line(.path.display()), one_line(.problem))]
    Invalid { path: PathBuf, problem: String },
}

/// Formats `text` with control characters and line separators escaped, so that names taken from a file
/// (operator uids, list names, paths) cannot break an error message over several lines.
fn one_line(text: impl fmt::Display) -> String {
    let mut out = String::new();
    for c in text.to_string().chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The crc32 (IEEE) of `bytes`, used for the metadata file and for the ranges that [`FileRef`]s name.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Encodes `metadata` into the bytes of a `_metadata` file.
///
/// Panics if `metadata` fails [`validate`]: the engine builds metadata itself, so invalid metadata here is a
/// bug, and writing it would only move the failure to the restore.
pub fn encode(metadata: &CheckpointMetadata) -> Vec<u8> {
    if let Err(error) = validate(metadata, Path::new(METADATA_FILE_NAME)) {
        panic!("refusing to encode invalid checkpoint metadata: {error}");
    }
    // Postcard only fails on types it cannot represent (maps and sequences of unknown length, which these
    // types do not contain) or on a full fixed buffer (a `Vec` grows), so failure is a bug in this module.
    let body = postcard::to_stdvec(metadata).expect("checkpoint metadata is always postcard-serialisable");
    frame(FORMAT_VERSION, &body)
}

/// Wraps `body` in the header and trailer of format `version`.
fn frame(version: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(FIXED_LEN + body.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(body);
    let crc = checksum(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes the bytes of a `_metadata` file read from `origin`, which is named in every error.
///
/// The checks run from the outside in (length, magic, version, body length, checksum, body, validity) and
/// the first failure is reported, so the error describes the most basic thing that is wrong.
pub fn decode(bytes: &[u8], origin: &Path) -> Result<CheckpointMetadata, MetadataError> {
    let path = || origin.to_path_buf();
    let actual_bytes = bytes.len() as u64;
    let truncated = |expected_bytes: u64| MetadataError::Truncated { path: path(), expected_bytes, actual_bytes };

    // Every split below is also covered by this length check; the `else` branches only exist so that no
    // slice operation in this function can panic.
    if bytes.len() < FIXED_LEN {
        return Err(truncated(FIXED_LEN as u64));
    }
    let Some((magic, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(truncated(FIXED_LEN as u64));
    };
    if *magic != MAGIC {
        return Err(MetadataError::NotMetadata { path: path() });
    }
    let Some((version, rest)) = rest.split_first_chunk::<4>() else {
        return Err(truncated(FIXED_LEN as u64));
    };
    let version = u32::from_le_bytes(*version);
    if version != FORMAT_VERSION && version != FORMAT_VERSION_1 && version != FORMAT_VERSION_2 {
        return Err(MetadataError::UnsupportedVersion { path: path(), version });
    }
    let Some((body_len, _)) = rest.split_first_chunk::<8>() else {
        return Err(truncated(FIXED_LEN as u64));
    };
    // The declared length is untrusted: it is only compared with the real size, never used to allocate,
    // and a length so large that the total overflows is reported as the largest possible expectation.
    let expected_bytes = (FIXED_LEN as u64).saturating_add(u64::from_le_bytes(*body_len));
    if actual_bytes < expected_bytes {
        return Err(truncated(expected_bytes));
    }
    if actual_bytes > expected_bytes {
        return Err(MetadataError::TrailingBytes { path: path(), extra_bytes: actual_bytes - expected_bytes });
    }
    let Some((covered, stored)) = bytes.split_last_chunk::<TRAILER_LEN>() else {
        return Err(truncated(FIXED_LEN as u64));
    };
    let stored = u32::from_le_bytes(*stored);
    let computed = checksum(covered);
    if stored != computed {
        return Err(MetadataError::ChecksumMismatch { path: path(), stored, computed });
    }
    let Some(body) = covered.get(HEADER_LEN..) else {
        return Err(truncated(FIXED_LEN as u64));
    };
    // `take_from_bytes` rather than `from_bytes`, because the latter ignores bytes left over after the
    // value, and a body longer than its value means the writer and this reader disagree about the layout.
    let decoded = match version {
        FORMAT_VERSION_1 => postcard::take_from_bytes::<v1::CheckpointMetadata>(body)
            .map(|(m, rest)| (CheckpointMetadata::from(v2::CheckpointMetadata::from(m)), rest)),
        FORMAT_VERSION_2 => postcard::take_from_bytes::<v2::CheckpointMetadata>(body)
            .map(|(m, rest)| (CheckpointMetadata::from(m), rest)),
        _ => postcard::take_from_bytes::<CheckpointMetadata>(body),
    };
    let metadata = match decoded {
        Ok((metadata, [])) => metadata,
        Ok((_, unused)) => {
            let at = body.len() - unused.len();
            let message = format!("{} unused bytes after the encoded metadata, from body byte {at}", unused.len());
            return Err(MetadataError::Body { path: path(), message });
        }
        // Postcard's errors say little ("Serde Deserialization Error"): read the body again
        // field by field to say which one failed, and where.
        Err(error) => {
            return Err(match explain(body, version) {
                Err(Problem { offset, field, problem }) => {
                    MetadataError::Field { path: path(), field, offset, problem }
                }
                Ok(()) => MetadataError::Body { path: path(), message: error.to_string() },
            });
        }
    };
    validate(&metadata, origin)?;
    Ok(metadata)
}

/// Why the body failed to decode: the field being read, the body offset it starts at.
#[derive(Debug, PartialEq, Eq)]
struct Problem {
    offset: usize,
    field: String,
    problem: String,
}

/// Reads a body as postcard lays out [`CheckpointMetadata`] (of format `version`), naming
/// every field, and returns the first that fails to decode. It accepts exactly what postcard
/// accepts (a test holds it to that), so a body postcard rejects always gets a named field.
fn explain(body: &[u8], version: u32) -> Result<(), Problem> {
    let mut reader = FieldReader { body, at: 0, context: String::new() };
    reader.varint("checkpoint id", 64)?;
    reader.varint("job id", 128)?;
    reader.string("job name")?;
    reader.variant("snapshot kind", &["Checkpoint", "Savepoint"])?;
    reader.variant("snapshot format", &["JobManager", "FileSystem", "Embedded", "Canonical"])?;
    reader.varint("timestamp", 64)?;
    let operators = reader.count("operator count")?;
    for operator in 0..operators {
        reader.context = format!("operator {operator}: ");
        let uid = reader.string("uid")?;
        reader.context = format!("operator {operator} (`{uid}`): ");
        reader.varint("parallelism", 32)?;
        reader.varint("max parallelism", 32)?;
        let subtasks = reader.count("subtask count")?;
        for subtask in 0..subtasks {
            let at_subtask = format!("operator {operator} (`{uid}`) subtask {subtask}: ");
            reader.context = at_subtask.clone();
            let groups = reader.count("key group count")?;
            for index in 0..groups {
                reader.context = format!("{at_subtask}key group entry {index}: ");
                let key_group = reader.varint("key group", 32)?;
                reader.context = format!("{at_subtask}key group {key_group}: ");
                match reader.variant("state handle kind", &["Inline", "File"])? {
                    0 => {
                        reader.bytes("inline state")?;
                    }
                    _ => {
                        reader.string("state file path")?;
                        reader.varint("state file offset", 64)?;
                        reader.varint("state file length", 64)?;
                        reader.varint("state file checksum", 32)?;
                    }
                }
            }
            reader.context = at_subtask.clone();
            let lists = reader.count("list state count")?;
            for index in 0..lists {
                reader.context = format!("{at_subtask}list state {index}: ");
                let name = reader.string("name")?;
                reader.context = format!("{at_subtask}list state `{name}`: ");
                reader.variant("redistribution mode", &["EvenSplit", "Union"])?;
                let elements = reader.count("element count")?;
                for element in 0..elements {
                    reader.bytes(&format!("element {element}"))?;
                }
            }
            if version != FORMAT_VERSION_1 {
                reader.context = at_subtask.clone();
                reader.bool("finished flag")?;
            }
            if version != FORMAT_VERSION_1 && version != FORMAT_VERSION_2 && reader.option("embedded store flag")? {
                explain_embedded(&mut reader, &at_subtask)?;
            }
        }
    }
    Ok(())
}

/// Reads an [`EmbeddedSnapshot`] as postcard lays it out.
fn explain_embedded(reader: &mut FieldReader<'_>, at_subtask: &str) -> Result<(), Problem> {
    reader.context = format!("{at_subtask}embedded store: ");
    reader.varint("key group range start", 32)?;
    reader.varint("key group range end", 32)?;
    let namespaces = reader.count("namespace count")?;
    for index in 0..namespaces {
        reader.context = format!("{at_subtask}embedded store namespace entry {index}: ");
        reader.varint("namespace", 16)?;
        reader.string("state name")?;
    }
    reader.context = format!("{at_subtask}embedded store: ");
    let files = reader.count("file count")?;
    for index in 0..files {
        reader.context = format!("{at_subtask}embedded store file {index}: ");
        let name = reader.string("name")?;
        reader.context = format!("{at_subtask}embedded store file `{name}`: ");
        reader.variant("scope", &["Exclusive", "Shared"])?;
        reader.varint("level", 32)?;
        reader.varint("size", 64)?;
        reader.varint("checksum", 32)?;
        reader.varint("uploading checkpoint", 64)?;
    }
    reader.context = format!("{at_subtask}embedded store: ");
    let tombstones = reader.count("range tombstone count")?;
    for index in 0..tombstones {
        reader.context = format!("{at_subtask}embedded store range tombstone {index}: ");
        reader.bytes("start")?;
        reader.bytes("end")?;
        reader.varint("sequence number", 64)?;
    }
    Ok(())
}

/// A cursor over a metadata body that names what it reads.
struct FieldReader<'a> {
    body: &'a [u8],
    at: usize,
    /// Where in the structure the reader is, such as `operator 2 (`count`) subtask 1: `.
    context: String,
}

impl FieldReader<'_> {
    fn problem(&self, offset: usize, field: &str, problem: String) -> Problem {
        Problem { offset, field: format!("{}{field}", self.context), problem }
    }

    fn left(&self) -> usize {
        self.body.len().saturating_sub(self.at)
    }

    fn byte(&mut self, start: usize, field: &str) -> Result<u8, Problem> {
        let Some(&byte) = self.body.get(self.at) else {
            return Err(self.problem(start, field, "the body ends in the middle of it".to_string()));
        };
        self.at += 1;
        Ok(byte)
    }

    /// A postcard varint of a `bits`-bit unsigned integer.
    fn varint(&mut self, field: &str, bits: u32) -> Result<u128, Problem> {
        let start = self.at;
        let max_bytes = bits.div_ceil(7);
        let max_of_last_byte = (1u32 << (bits % 7)) - 1;
        let mut value: u128 = 0;
        for index in 0..max_bytes {
            let byte = self.byte(start, field)?;
            value |= u128::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                if index == max_bytes - 1 && u32::from(byte) > max_of_last_byte {
                    return Err(self.problem(start, field, format!("the number does not fit in {bits} bits")));
                }
                return Ok(value);
            }
        }
        Err(self.problem(start, field, format!("the number runs past {max_bytes} bytes, more than {bits} bits hold")))
    }

    /// A sequence's length; each element takes a byte at least, so more than the bytes left
    /// is a corrupt count, reported before anything is read (or allocated) for it.
    fn count(&mut self, field: &str) -> Result<u64, Problem> {
        let start = self.at;
        let count = self.varint(field, 64)? as u64;
        if count > self.left() as u64 {
            return Err(self.problem(start, field, format!("{count} is more than the {} bytes left", self.left())));
        }
        Ok(count)
    }

    fn bytes(&mut self, field: &str) -> Result<&[u8], Problem> {
        let start = self.at;
        let length = self.varint(field, 64)? as u64;
        if length > self.left() as u64 {
            let problem = format!("a length of {length} bytes, but only {} are left", self.left());
            return Err(self.problem(start, field, problem));
        }
        let bytes = &self.body[self.at..self.at + length as usize];
        self.at += length as usize;
        Ok(bytes)
    }

    fn string(&mut self, field: &str) -> Result<String, Problem> {
        let start = self.at;
        let bytes = self.bytes(field)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_string()),
            Err(error) => {
                let problem = format!("not UTF-8 text (invalid at byte {} of it)", error.valid_up_to());
                Err(self.problem(start, field, problem))
            }
        }
    }

    fn variant(&mut self, field: &str, names: &[&str]) -> Result<usize, Problem> {
        let start = self.at;
        let variant = self.varint(field, 32)?;
        if variant >= names.len() as u128 {
            let known: Vec<String> = names.iter().enumerate().map(|(i, name)| format!("{i} = {name}")).collect();
            let problem = format!("unknown variant {variant} (expected {})", known.join(", "));
            return Err(self.problem(start, field, problem));
        }
        Ok(variant as usize)
    }

    /// A postcard `Option` tag: whether a value follows.
    fn option(&mut self, field: &str) -> Result<bool, Problem> {
        let start = self.at;
        match self.byte(start, field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.problem(start, field, format!("{other} is neither 0 (none) nor 1 (some)"))),
        }
    }

    fn bool(&mut self, field: &str) -> Result<bool, Problem> {
        let start = self.at;
        match self.byte(start, field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.problem(start, field, format!("{other} is neither 0 (false) nor 1 (true)"))),
        }
    }
}

/// Checks the invariants that the types cannot express, naming the operator and subtask of the first
/// violation, so that a restore fails up front instead of misplacing state.
pub fn validate(metadata: &CheckpointMetadata, origin: &Path) -> Result<(), MetadataError> {
    let invalid = |problem: String| MetadataError::Invalid { path: origin.to_path_buf(), problem };
    let mut previous: Option<&OperatorUid> = None;
    for operator in &metadata.operators {
        let uid = &operator.uid;
        if let Some(previous) = previous {
            if previous == uid {
                return Err(invalid(format!("operator `{uid}` appears twice")));
            }
            if previous > uid {
                return Err(invalid(format!("operators are not ascending by uid: `{previous}` comes before `{uid}`")));
            }
        }
        previous = Some(uid);
        validate_operator(operator).map_err(invalid)?;
    }
    Ok(())
}

/// Validates one operator, returning the problem text of the first violation.
fn validate_operator(operator: &OperatorState) -> Result<(), String> {
    let OperatorState { uid, parallelism, max_parallelism, subtasks } = operator;
    if *parallelism < 1 {
        return Err(format!("operator `{uid}`: parallelism {parallelism} must be at least 1"));
    }
    if parallelism > max_parallelism {
        return Err(format!(
            "operator `{uid}`: parallelism {parallelism} exceeds its max parallelism {max_parallelism}"
        ));
    }
    if *max_parallelism > MAX_PARALLELISM_UPPER_BOUND {
        return Err(format!(
            "operator `{uid}`: max parallelism {max_parallelism} exceeds the upper bound {MAX_PARALLELISM_UPPER_BOUND}"
        ));
    }
    if subtasks.len() as u64 != u64::from(*parallelism) {
        return Err(format!("operator `{uid}` has parallelism {parallelism} but {} subtask states", subtasks.len()));
    }
    // The zip stops at the shorter side, and the two have the same length, so every subtask is checked and
    // every index is below `parallelism` as `for_subtask` requires.
    for (index, subtask) in (0..*parallelism).zip(subtasks) {
        let range = KeyGroupRange::for_subtask(SubtaskIndex(index), *parallelism, *max_parallelism);
        validate_subtask(subtask, range).map_err(|problem| format!("operator `{uid}` subtask {index}: {problem}"))?;
    }
    Ok(())
}

/// Validates one subtask against the key-group range it owns.
fn validate_subtask(subtask: &SubtaskState, range: KeyGroupRange) -> Result<(), String> {
    let mut previous: Option<KeyGroup> = None;
    for KeyGroupHandle { key_group, handle } in &subtask.key_groups {
        if !range.contains(*key_group) {
            return Err(format!("key group {key_group} is outside its range {}..{}", range.start, range.end));
        }
        if let Some(previous) = previous {
            if previous == *key_group {
                return Err(format!("key group {key_group} appears twice"));
            }
            if previous > *key_group {
                return Err(format!("key groups are not ascending: {key_group} comes after {previous}"));
            }
        }
        previous = Some(*key_group);
        if let StateHandle::File(file) = handle {
            validate_file_ref(file).map_err(|problem| format!("key group {key_group}: {problem}"))?;
        }
    }
    let mut names = BTreeSet::new();
    for list in &subtask.lists {
        if !names.insert(list.name.as_str()) {
            return Err(format!("list state `{}` appears twice", list.name));
        }
    }
    if let Some(embedded) = &subtask.embedded {
        validate_embedded(embedded, range).map_err(|problem| format!("embedded store: {problem}"))?;
        if !subtask.key_groups.is_empty() {
            return Err("has both key-group handles and an embedded store".to_string());
        }
    }
    Ok(())
}

/// The store levels an embedded snapshot's files may sit at.
const EMBEDDED_LEVELS: u32 = 7;

/// Validates an embedded store's snapshot against the key-group range its subtask owns.
fn validate_embedded(embedded: &EmbeddedSnapshot, range: KeyGroupRange) -> Result<(), String> {
    if embedded.key_groups != range {
        return Err(format!(
            "holds key groups {}..{}, but its subtask owns {}..{}",
            embedded.key_groups.start, embedded.key_groups.end, range.start, range.end
        ));
    }
    let mut previous: Option<u16> = None;
    let mut states = BTreeSet::new();
    for (namespace, name) in &embedded.namespaces {
        if previous.is_some_and(|p| p >= *namespace) {
            return Err(format!(
                "namespaces are not ascending and unique: {namespace} after {}",
                previous.unwrap_or(0)
            ));
        }
        if *namespace == u16::MAX {
            return Err(format!("state `{name}` has the namespace reserved for restored blobs"));
        }
        if !states.insert(name.as_str()) {
            return Err(format!("state `{name}` has two namespaces"));
        }
        previous = Some(*namespace);
    }
    let mut files = BTreeSet::new();
    for file in &embedded.files {
        let name = &file.name;
        if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
            return Err(format!("file name `{name}` is not a plain file name"));
        }
        if !files.insert((file.scope, name.as_str())) {
            return Err(format!("file `{name}` is listed twice"));
        }
        if file.level >= EMBEDDED_LEVELS {
            return Err(format!("file `{name}` is at level {}, beyond the store's {EMBEDDED_LEVELS}", file.level));
        }
    }
    if embedded.files.windows(2).any(|pair| pair[0].level > pair[1].level) {
        return Err("files are not in level order".to_string());
    }
    if embedded.tombstones.iter().any(|t| t.start >= t.end) {
        return Err("a range tombstone's start is not below its end".to_string());
    }
    Ok(())
}

/// Validates a file reference, whose path must not escape the checkpoint directory by `..`.
fn validate_file_ref(file: &FileRef) -> Result<(), String> {
    let FileRef { path, offset, length, .. } = file;
    if path.is_empty() {
        return Err("the state file path is empty".to_string());
    }
    // Both separators count, so that whether a path is accepted does not depend on the platform that
    // validates it: the file may be read on another one than wrote it.
    if path.split(['/', '\\']).any(|component| component == "..") {
        return Err(format!("the state file path `{path}` has a `..` component"));
    }
    if offset.checked_add(*length).is_none() {
        return Err(format!("the range of `{path}` (offset {offset}, length {length}) overflows a 64-bit offset"));
    }
    Ok(())
}

impl CheckpointMetadata {
    /// The file ranges that the state lives in, in operator, subtask and key-group order, each range (path
    /// and offset) once, so that a checker or a garbage collector visits every range exactly once.
    pub fn referenced_files(&self) -> Vec<&FileRef> {
        let mut seen = BTreeSet::new();
        self.operators
            .iter()
            .flat_map(|operator| &operator.subtasks)
            .flat_map(|subtask| &subtask.key_groups)
            .filter_map(|group| match &group.handle {
                StateHandle::File(file) => Some(file),
                StateHandle::Inline(_) => None,
            })
            .filter(|file| seen.insert((file.path.as_str(), file.offset)))
            .collect()
    }

    /// Whether every file the state references is named relative to the directory holding
    /// `_metadata`: then that directory holds the whole snapshot and can be moved or copied
    /// elsewhere as it is (what `weir checkpoints inspect` calls self-contained).
    pub fn is_relocatable(&self) -> bool {
        self.referenced_files().iter().all(|file| !Path::new(&file.path).is_absolute() && !file.path.starts_with('/'))
            && self.embedded_files().all(|(_, _, file)| file.scope == FileScope::Exclusive)
    }

    /// Whether the metadata holds all of the state itself (no file references), so that it alone can be
    /// copied elsewhere.
    pub fn is_self_contained(&self) -> bool {
        self.operators
            .iter()
            .flat_map(|operator| &operator.subtasks)
            .flat_map(|subtask| &subtask.key_groups)
            .all(|group| matches!(group.handle, StateHandle::Inline(_)))
            && self.embedded_files().next().is_none()
    }

    /// Every file of the embedded stores' snapshots, in operator and subtask order, with the
    /// operator and subtask it belongs to.
    pub fn embedded_files(&self) -> impl Iterator<Item = (&OperatorUid, usize, &crate::state::snapshot::EmbeddedFile)> {
        self.operators.iter().flat_map(|operator| {
            operator.subtasks.iter().enumerate().flat_map(move |(index, subtask)| {
                subtask.embedded.iter().flat_map(move |e| e.files.iter().map(move |file| (&operator.uid, index, file)))
            })
        })
    }

    /// The names of the shared files this checkpoint refers to, each once.
    pub fn shared_files(&self) -> BTreeSet<String> {
        self.embedded_files().filter(|(_, _, f)| f.scope == FileScope::Shared).map(|(_, _, f)| f.name.clone()).collect()
    }

    /// The bytes of state: inline key-group bytes, plus the length of every referenced file range (counted
    /// once, as in [`Self::referenced_files`]), plus list-state elements. The sum saturates, because file
    /// lengths come from the file and their total is not bounded by anything.
    pub fn state_size_bytes(&self) -> u64 {
        let subtasks = self.operators.iter().flat_map(|operator| &operator.subtasks);
        let inline = subtasks
            .clone()
            .flat_map(|subtask| &subtask.key_groups)
            .filter_map(|group| match &group.handle {
                StateHandle::Inline(bytes) => Some(bytes.len() as u64),
                StateHandle::File(_) => None,
            })
            .fold(0u64, u64::saturating_add);
        let files = self.referenced_files().iter().map(|file| file.length).fold(0u64, u64::saturating_add);
        let embedded = self.embedded_files().map(|(_, _, file)| file.size_bytes).fold(0u64, u64::saturating_add);
        let files = files.saturating_add(embedded);
        let lists = subtasks
            .flat_map(|subtask| &subtask.lists)
            .flat_map(|list| &list.elements)
            .map(|element| element.len() as u64)
            .fold(0u64, u64::saturating_add);
        inline.saturating_add(files).saturating_add(lists)
    }

    /// The state of the operator with `uid`, if the checkpoint has any.
    pub fn operator(&self, uid: &OperatorUid) -> Option<&OperatorState> {
        // A linear search rather than a binary one, so that the answer is right even for metadata that has
        // not been validated; checkpoints hold few operators.
        self.operators.iter().find(|operator| operator.uid == *uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::snapshot::Redistribution;
    use proptest::prelude::*;
    use proptest::sample::{Index, subsequence};

    const ORIGIN: &str = "/ckpt/job/chk-7/_metadata";

    fn origin() -> &'static Path {
        Path::new(ORIGIN)
    }

    /// Byte buffers are written as serde bytes, which postcard encodes exactly as it encodes a `Vec<u8>`: every
    /// `_metadata` written before they were still reads, byte for byte the same.
    #[test]
    fn byte_buffers_keep_the_encoding_of_a_vec_of_bytes() {
        #[derive(Serialize)]
        enum PlainHandle {
            Inline(Vec<u8>),
        }
        #[derive(Serialize)]
        struct PlainGroup {
            key_group: KeyGroup,
            bytes: Vec<u8>,
        }
        let bytes: Vec<u8> = (0..=255).collect();
        let new = postcard::to_stdvec(&StateHandle::Inline(bytes.clone())).unwrap();
        assert_eq!(new, postcard::to_stdvec(&PlainHandle::Inline(bytes.clone())).unwrap());
        let group = crate::state::snapshot::KeyGroupSnapshot { key_group: KeyGroup(3), bytes: bytes.clone() };
        let new = postcard::to_stdvec(&group).unwrap();
        assert_eq!(new, postcard::to_stdvec(&PlainGroup { key_group: KeyGroup(3), bytes }).unwrap());
        assert_eq!(postcard::from_bytes::<crate::state::snapshot::KeyGroupSnapshot>(&new).unwrap(), group);
    }

    fn file(path: &str, offset: u64, length: u64) -> StateHandle {
        StateHandle::File(FileRef { path: path.to_string(), offset, length, checksum: 0x1234_5678 })
    }

    fn group(key_group: u32, handle: StateHandle) -> KeyGroupHandle {
        KeyGroupHandle { key_group: KeyGroup(key_group), handle }
    }

    fn list(name: &str, elements: &[&[u8]]) -> ListStateSnapshot {
        ListStateSnapshot {
            name: name.to_string(),
            mode: Redistribution::EvenSplit,
            elements: elements.iter().map(|element| element.to_vec()).collect(),
        }
    }

    fn operator(uid: &str, parallelism: u32, max_parallelism: u32, subtasks: Vec<SubtaskState>) -> OperatorState {
        OperatorState { uid: OperatorUid(uid.to_string()), parallelism, max_parallelism, subtasks }
    }

    fn metadata(operators: Vec<OperatorState>) -> CheckpointMetadata {
        CheckpointMetadata {
            checkpoint_id: CheckpointId(7),
            job_id: JobId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            job_name: "word count".to_string(),
            kind: SnapshotKind::Checkpoint,
            format: SnapshotFormat::FileSystem,
            timestamp_ms: 1_700_000_000_000,
            operators,
        }
    }

    /// Two operators: `count` at parallelism 2 of 4 with inline, file and shared-file key groups and a
    /// list state; `source` at parallelism 1 with only list state.
    fn example() -> CheckpointMetadata {
        metadata(vec![
            operator(
                "count",
                2,
                4,
                vec![
                    SubtaskState {
                        key_groups: vec![
                            group(0, StateHandle::Inline(vec![1, 2, 3])),
                            group(1, file("shared/a", 0, 10)),
                        ],
                        lists: vec![],
                        finished: false,
                        embedded: None,
                    },
                    SubtaskState {
                        key_groups: vec![
                            group(2, file("shared/a", 10, 20)),
                            // The same range as key group 2, which a backend may write for two groups
                            // stored together; it must be listed and counted once.
                            group(3, file("shared/a", 10, 20)),
                        ],
                        lists: vec![list("pending", &[b"xy", b"z"])],
                        finished: false,
                        embedded: None,
                    },
                ],
            ),
            operator(
                "source",
                1,
                128,
                vec![SubtaskState {
                    key_groups: vec![],
                    lists: vec![list("offsets", &[b"12345678"])],
                    finished: false,
                    embedded: None,
                }],
            ),
        ])
    }

    /// A frame holding `metadata` without the validation that `encode` insists on, for invalid metadata.
    fn encode_unchecked(metadata: &CheckpointMetadata) -> Vec<u8> {
        frame(FORMAT_VERSION, &postcard::to_stdvec(metadata).expect("serialisable"))
    }

    fn problem(metadata: &CheckpointMetadata) -> String {
        match validate(metadata, origin()) {
            Err(MetadataError::Invalid { path, problem }) => {
                assert_eq!(path, origin());
                problem
            }
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn checksum_is_the_standard_crc32() {
        // The check value of CRC-32/ISO-HDLC, from the catalogue of parametrised CRC algorithms.
        assert_eq!(checksum(b"123456789"), 0xcbf4_3926);
        assert_eq!(checksum(b""), 0);
    }

    /// Pins the layout: if this changes, files written by earlier builds stop decoding, so a change needs a
    /// new `FORMAT_VERSION` and a reader for the old one, not an updated constant.
    #[test]
    fn encoding_is_pinned() {
        let minimal = CheckpointMetadata {
            checkpoint_id: CheckpointId(3),
            job_id: JobId(1),
            job_name: "j".to_string(),
            kind: SnapshotKind::Savepoint,
            format: SnapshotFormat::Canonical,
            timestamp_ms: 200,
            operators: vec![operator(
                "op",
                1,
                1,
                vec![SubtaskState {
                    key_groups: vec![group(
                        0,
                        StateHandle::File(FileRef { path: "f".to_string(), offset: 1, length: 2, checksum: 3 }),
                    )],
                    lists: vec![],
                    finished: false,
                    embedded: None,
                }],
            )],
        };
        #[rustfmt::skip]
        let body: &[u8] = &[
            3,                  // checkpoint_id: varint 3
            1,                  // job_id: varint 1
            1, b'j',            // job_name: length 1, "j"
            1,                  // kind: variant 1, Savepoint
            3,                  // format: variant 3, Canonical
            0xc8, 0x01,         // timestamp_ms: varint 200
            1,                  // one operator
            2, b'o', b'p',      // uid "op"
            1, 1,               // parallelism 1, max parallelism 1
            1,                  // one subtask
            1,                  // one key group
            0,                  // key group 0
            1,                  // handle: variant 1, File
            1, b'f', 1, 2, 3,   // path "f", offset 1, length 2, checksum 3
            0,                  // no lists
            0,                  // not finished (version 2)
            0,                  // no embedded store (version 3)
        ];
        let encoded = encode(&minimal);
        assert_eq!(&encoded[..8], b"WEIRMETA");
        assert_eq!(&encoded[8..12], &[3, 0, 0, 0]);
        assert_eq!(&encoded[12..20], &(body.len() as u64).to_le_bytes());
        assert_eq!(&encoded[20..encoded.len() - 4], body);
        assert_eq!(&encoded[encoded.len() - 4..], &checksum(&encoded[..encoded.len() - 4]).to_le_bytes());
        assert_eq!(decode(&encoded, origin()), Ok(minimal.clone()));
        // Version 2 files, without embedded stores, and version 1 files, without the finished flag
        // either, still decode, as not finished and without stores.
        let version_2 = frame(2, &body[..body.len() - 1]);
        assert_eq!(decode(&version_2, origin()), Ok(minimal.clone()));
        let version_1 = frame(1, &body[..body.len() - 2]);
        assert_eq!(decode(&version_1, origin()), Ok(minimal));
    }

    #[test]
    fn the_example_round_trips() {
        let example = example();
        assert_eq!(decode(&encode(&example), origin()), Ok(example));
    }

    #[test]
    #[should_panic(expected = "refusing to encode invalid checkpoint metadata")]
    fn encoding_invalid_metadata_panics() {
        encode(&metadata(vec![operator("count", 0, 4, vec![])]));
    }

    #[test]
    fn referenced_files_are_in_order_and_deduplicated() {
        let example = example();
        let paths: Vec<_> = example.referenced_files().iter().map(|file| (file.path.as_str(), file.offset)).collect();
        assert_eq!(paths, [("shared/a", 0), ("shared/a", 10)]);
        assert!(!example.is_self_contained());
        // 3 inline bytes, 10 + 20 file bytes (the shared range once), 2 + 1 + 8 list element bytes.
        assert_eq!(example.state_size_bytes(), 3 + 30 + 11);
    }

    #[test]
    fn metadata_without_file_handles_is_self_contained() {
        let inline = metadata(vec![operator(
            "count",
            1,
            2,
            vec![SubtaskState {
                key_groups: vec![group(1, StateHandle::Inline(vec![9; 5]))],
                lists: vec![],
                finished: false,
                embedded: None,
            }],
        )]);
        assert!(inline.is_self_contained());
        assert!(inline.referenced_files().is_empty());
        assert_eq!(inline.state_size_bytes(), 5);
        assert!(metadata(vec![]).is_self_contained());
        assert_eq!(metadata(vec![]).state_size_bytes(), 0);
    }

    #[test]
    fn operator_finds_by_uid() {
        let example = example();
        let source = example.operator(&OperatorUid("source".to_string())).map(|operator| operator.max_parallelism);
        assert_eq!(source, Some(128));
        assert_eq!(example.operator(&OperatorUid("sink".to_string())), None);
    }

    #[test]
    fn state_size_saturates() {
        let huge = metadata(vec![operator(
            "count",
            1,
            2,
            vec![SubtaskState {
                key_groups: vec![group(0, file("a", 0, u64::MAX)), group(1, file("b", 0, 1))],
                lists: vec![],
                finished: false,
                embedded: None,
            }],
        )]);
        assert_eq!(huge.state_size_bytes(), u64::MAX);
    }

    #[test]
    fn truncated_message() {
        let error = decode(&[], origin()).unwrap_err();
        assert_eq!(error, MetadataError::Truncated { path: origin().into(), expected_bytes: 24, actual_bytes: 0 });
        assert_eq!(
            error.to_string(),
            "`/ckpt/job/chk-7/_metadata`: truncated checkpoint metadata: expected 24 bytes, found 0"
        );
        let encoded = encode(&example());
        let cut = &encoded[..encoded.len() - 1];
        assert_eq!(
            decode(cut, origin()).unwrap_err().to_string(),
            format!(
                "`/ckpt/job/chk-7/_metadata`: truncated checkpoint metadata: expected {} bytes, found {}",
                encoded.len(),
                encoded.len() - 1
            )
        );
    }

    #[test]
    fn not_metadata_message() {
        let error = decode(b"{\"checkpoint\": 7, \"job\": \"word count\"}", origin()).unwrap_err();
        assert_eq!(error, MetadataError::NotMetadata { path: origin().into() });
        assert_eq!(
            error.to_string(),
            "`/ckpt/job/chk-7/_metadata` is not a weir checkpoint metadata file (bad magic number)"
        );
    }

    #[test]
    fn unsupported_version_message() {
        let error = decode(&frame(4, b""), origin()).unwrap_err();
        assert_eq!(error, MetadataError::UnsupportedVersion { path: origin().into(), version: 4 });
        assert_eq!(
            error.to_string(),
            "`/ckpt/job/chk-7/_metadata`: unsupported checkpoint metadata format version 4 (this build reads version 3)"
        );
    }

    #[test]
    fn trailing_bytes_message() {
        let mut encoded = encode(&example());
        encoded.extend_from_slice(b"\n\n");
        let error = decode(&encoded, origin()).unwrap_err();
        assert_eq!(error, MetadataError::TrailingBytes { path: origin().into(), extra_bytes: 2 });
        assert_eq!(
            error.to_string(),
            "`/ckpt/job/chk-7/_metadata`: 2 unexpected bytes after the end of the checkpoint metadata"
        );
    }

    #[test]
    fn checksum_mismatch_message() {
        // An empty body, whose crc32 covers the header alone; the pinned value was computed outside Rust
        // with Python's `zlib.crc32`.
        let mut framed = frame(FORMAT_VERSION_1, b"");
        assert_eq!(framed.len(), 24);
        let computed = checksum(&framed[..20]);
        framed[20..].copy_from_slice(&0xdead_beef_u32.to_le_bytes());
        let error = decode(&framed, origin()).unwrap_err();
        assert_eq!(error, MetadataError::ChecksumMismatch { path: origin().into(), stored: 0xdead_beef, computed });
        assert_eq!(
            error.to_string(),
            "`/ckpt/job/chk-7/_metadata`: checksum mismatch (stored 0xdeadbeef, computed 0x8fd962ee): \
             the file is corrupt"
        );
        assert_eq!(computed, 0x8fd9_62ee, "the header of an empty version-1 frame has a pinned crc32");
    }

    #[test]
    fn body_messages() {
        let error = decode(&frame(FORMAT_VERSION, b""), origin()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`/ckpt/job/chk-7/_metadata`: cannot decode checkpoint metadata: checkpoint id: the body ends in the \
             middle of it (body byte 0, file offset 20)"
        );
        let mut body = postcard::to_stdvec(&example()).expect("serialisable");
        body.extend_from_slice(&[0, 0, 0]);
        let error = decode(&frame(FORMAT_VERSION, &body), origin()).unwrap_err();
        assert_eq!(
            error,
            MetadataError::Body {
                path: origin().into(),
                message: format!("3 unused bytes after the encoded metadata, from body byte {}", body.len() - 3)
            }
        );
        assert_eq!(
            error.to_string(),
            format!(
                "`/ckpt/job/chk-7/_metadata`: cannot decode checkpoint metadata: 3 unused bytes after the encoded \
                 metadata, from body byte {}",
                body.len() - 3
            )
        );
    }

    /// The minimal example's body (see `encoding_is_pinned`) with one byte replaced.
    fn crafted(at: usize, byte: u8) -> Vec<u8> {
        let minimal = metadata(vec![operator(
            "op",
            1,
            1,
            vec![SubtaskState {
                key_groups: vec![group(0, file("f", 1, 2))],
                lists: vec![],
                finished: false,
                embedded: None,
            }],
        )]);
        let mut body = postcard::to_stdvec(&minimal).expect("serialisable");
        body[at] = byte;
        frame(FORMAT_VERSION, &body)
    }

    #[test]
    fn a_body_that_does_not_decode_names_the_field_and_its_offset() {
        let message = |bytes: Vec<u8>| decode(&bytes, origin()).unwrap_err().to_string();
        // The crafted body: checkpoint id (byte 0), an 18-byte job id, "word count" (19..30),
        // kind (30), format (31), a 6-byte timestamp, one operator (38): `op` (39..42),
        // parallelism and max (42, 43), one subtask (44) with one key group (45): group 0 (46),
        // a file handle (47): path "f" (48, 49), offset, length, a 5-byte checksum (50..57);
        // no lists (57), not finished (58), no embedded store (59).
        assert_eq!(crafted(0, 7).len(), FIXED_LEN + 60);
        assert_eq!(
            message(crafted(30, 9)),
            "`/ckpt/job/chk-7/_metadata`: cannot decode checkpoint metadata: snapshot kind: unknown variant 9 \
             (expected 0 = Checkpoint, 1 = Savepoint) (body byte 30, file offset 50)"
        );
        // 200 continues the varint into the next byte (2): 72 + 2 * 128 operators.
        assert_eq!(
            message(crafted(38, 200)),
            "`/ckpt/job/chk-7/_metadata`: cannot decode checkpoint metadata: operator count: 328 is more than \
             the 20 bytes left (body byte 38, file offset 58)"
        );
        assert_eq!(
            message(crafted(38, 100)),
            "`/ckpt/job/chk-7/_metadata`: cannot decode checkpoint metadata: operator count: 100 is more than \
             the 21 bytes left (body byte 38, file offset 58)"
        );
        assert_eq!(
            message(crafted(47, 2)),
            "`/ckpt/job/chk-7/_metadata`: cannot decode checkpoint metadata: operator 0 (`op`) subtask 0: \
             key group 0: state handle kind: unknown variant 2 (expected 0 = Inline, 1 = File) (body byte 47, \
             file offset 67)"
        );
        assert!(message(crafted(49, 0xff)).contains("key group 0: state file path: not UTF-8 text"));
        assert!(message(crafted(58, 2)).ends_with(
            "operator 0 (`op`) subtask 0: finished flag: 2 is neither 0 (false) nor 1 (true) (body byte 58, \
             file offset 78)"
        ));
        assert!(message(crafted(59, 2)).ends_with(
            "operator 0 (`op`) subtask 0: embedded store flag: 2 is neither 0 (none) nor 1 (some) (body byte 59, \
             file offset 79)"
        ));
    }

    /// A few hundred crafted files: every body byte of a valid file replaced by several values,
    /// and every truncation, each framed with a valid checksum so that it reaches the body decoder.
    #[test]
    fn crafted_truncated_and_flipped_files_never_panic_and_always_name_what_failed() {
        let mut tried = 0;
        let mut check = |bytes: &[u8]| {
            tried += 1;
            if let Err(error) = decode(bytes, origin()) {
                let message = error.to_string();
                assert!(message.starts_with("`/ckpt/job/chk-7/_metadata`"), "{message}");
                assert!(!message.contains("Serde"), "{message}");
                if let MetadataError::Body { .. } = error {
                    assert!(message.contains("body byte"), "a body error without a position: {message}");
                }
            }
        };
        let body = postcard::to_stdvec(&example()).expect("serialisable");
        for at in 0..body.len() {
            for byte in [0x00, 0x01, 0x02, 0x7f, 0x80, 0xc3, 0xff] {
                let mut changed = body.clone();
                changed[at] = byte;
                check(&frame(FORMAT_VERSION, &changed));
                check(&frame(FORMAT_VERSION_1, &changed));
            }
        }
        for len in 0..body.len() {
            check(&frame(FORMAT_VERSION, &body[..len]));
        }
        assert!(tried > 500, "{tried} files");
    }

    #[test]
    fn invalid_message_from_decode() {
        let mut bad = example();
        bad.operators[0].subtasks[0].key_groups[1].key_group = KeyGroup(3);
        let error = decode(&encode_unchecked(&bad), origin()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`/ckpt/job/chk-7/_metadata`: invalid checkpoint metadata: \
             operator `count` subtask 0: key group 3 is outside its range 0..2"
        );
    }

    #[test]
    fn messages_stay_on_one_line() {
        let mut bad = example();
        bad.operators[1].uid = OperatorUid("evil\nuid".to_string());
        bad.operators[1].parallelism = 0;
        let message = decode(&encode_unchecked(&bad), Path::new("/ckpt\r\n/_metadata")).unwrap_err().to_string();
        assert_eq!(
            message,
            "`/ckpt\\r\\n/_metadata`: invalid checkpoint metadata: \
             operator `evil\\nuid`: parallelism 0 must be at least 1"
        );
    }

    #[test]
    fn validate_rejects_parallelism_below_one() {
        let bad = metadata(vec![operator("count", 0, 4, vec![])]);
        assert_eq!(problem(&bad), "operator `count`: parallelism 0 must be at least 1");
    }

    #[test]
    fn validate_rejects_parallelism_above_max() {
        let bad = metadata(vec![operator("count", 5, 4, vec![])]);
        assert_eq!(problem(&bad), "operator `count`: parallelism 5 exceeds its max parallelism 4");
    }

    #[test]
    fn validate_rejects_max_parallelism_above_the_bound() {
        let bad = metadata(vec![operator("count", 1, 32769, vec![])]);
        assert_eq!(problem(&bad), "operator `count`: max parallelism 32769 exceeds the upper bound 32768");
        let subtask = SubtaskState { key_groups: vec![], lists: vec![], finished: false, embedded: None };
        validate(&metadata(vec![operator("count", 1, 32768, vec![subtask])]), origin())
            .expect("the bound itself is allowed");
    }

    #[test]
    fn validate_rejects_a_subtask_count_other_than_parallelism() {
        let mut bad = example();
        bad.operators[0].subtasks.pop();
        assert_eq!(problem(&bad), "operator `count` has parallelism 2 but 1 subtask states");
    }

    #[test]
    fn validate_rejects_unordered_operators() {
        let mut bad = example();
        bad.operators.reverse();
        assert_eq!(problem(&bad), "operators are not ascending by uid: `source` comes before `count`");
    }

    #[test]
    fn validate_rejects_duplicate_operators() {
        let mut bad = example();
        bad.operators[1] = bad.operators[0].clone();
        assert_eq!(problem(&bad), "operator `count` appears twice");
    }

    #[test]
    fn validate_rejects_key_groups_outside_the_range() {
        // Subtask 1 of 4 at max parallelism 256 owns key groups 64..128, the engine's own example.
        let empty = || SubtaskState { key_groups: vec![], lists: vec![], finished: false, embedded: None };
        let subtask = SubtaskState {
            key_groups: vec![group(70, StateHandle::Inline(vec![]))],
            lists: vec![],
            finished: false,
            embedded: None,
        };
        let good = metadata(vec![operator("count", 4, 256, vec![empty(), subtask, empty(), empty()])]);
        validate(&good, origin()).expect("70 is inside 64..128");
        let mut bad = good.clone();
        bad.operators[0].subtasks.swap(1, 2);
        assert_eq!(problem(&bad), "operator `count` subtask 2: key group 70 is outside its range 128..192");
    }

    #[test]
    fn validate_rejects_unordered_key_groups() {
        let mut bad = example();
        bad.operators[0].subtasks[1].key_groups.swap(0, 1);
        assert_eq!(problem(&bad), "operator `count` subtask 1: key groups are not ascending: 2 comes after 3");
    }

    #[test]
    fn validate_rejects_duplicate_key_groups() {
        let mut bad = example();
        bad.operators[0].subtasks[1].key_groups[1].key_group = KeyGroup(2);
        assert_eq!(problem(&bad), "operator `count` subtask 1: key group 2 appears twice");
    }

    #[test]
    fn validate_rejects_duplicate_list_names() {
        let mut bad = example();
        bad.operators[0].subtasks[1].lists.push(list("pending", &[]));
        assert_eq!(problem(&bad), "operator `count` subtask 1: list state `pending` appears twice");
    }

    #[test]
    fn validate_rejects_an_empty_file_path() {
        let mut bad = example();
        bad.operators[0].subtasks[0].key_groups[1].handle = file("", 0, 1);
        assert_eq!(problem(&bad), "operator `count` subtask 0: key group 1: the state file path is empty");
    }

    #[test]
    fn validate_rejects_parent_components() {
        for path in ["../other-job/chk-3/state", "shared/../../etc/passwd", "shared\\..\\x", ".."] {
            let mut bad = example();
            bad.operators[0].subtasks[0].key_groups[1].handle = file(path, 0, 1);
            assert_eq!(
                problem(&bad),
                format!("operator `count` subtask 0: key group 1: the state file path `{path}` has a `..` component")
            );
        }
        // Only a whole `..` component escapes the directory; names that merely contain dots are fine, and so
        // are absolute paths, which the format allows.
        for path in ["a..b/..c", "/abs/chk-7/state", "./state"] {
            let mut good = example();
            good.operators[0].subtasks[0].key_groups[1].handle = file(path, 0, 1);
            validate(&good, origin()).expect("no `..` component");
        }
    }

    #[test]
    fn validate_rejects_an_overflowing_file_range() {
        let mut bad = example();
        bad.operators[0].subtasks[0].key_groups[1].handle = file("shared/a", 2, u64::MAX - 1);
        assert_eq!(
            problem(&bad),
            "operator `count` subtask 0: key group 1: the range of `shared/a` (offset 2, length 18446744073709551614) \
             overflows a 64-bit offset"
        );
    }

    #[test]
    fn truncation_at_every_length_is_reported() {
        let encoded = encode(&example());
        for len in 0..encoded.len() {
            match decode(&encoded[..len], origin()) {
                Err(MetadataError::Truncated { expected_bytes, actual_bytes, .. }) => {
                    assert_eq!(actual_bytes, len as u64);
                    let expected = if len < 24 { 24 } else { encoded.len() as u64 };
                    assert_eq!(expected_bytes, expected, "cut at {len}");
                }
                other => panic!("cut at {len}: expected Truncated, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_huge_declared_length_is_truncation_not_allocation() {
        let mut framed = frame(FORMAT_VERSION, b"");
        framed[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            decode(&framed, origin()),
            Err(MetadataError::Truncated { path: origin().into(), expected_bytes: u64::MAX, actual_bytes: 24 })
        );
    }

    fn uid() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_-]{0,7}"
    }

    fn handle() -> impl Strategy<Value = StateHandle> {
        let file = ("/?[a-z0-9]{1,6}(/[a-z0-9_-][a-z0-9._-]{0,5}){0,2}", any::<u64>(), any::<u64>(), any::<u32>())
            .prop_map(|(path, offset, length, checksum)| {
                // Clamp the length so that the range ends at or before `u64::MAX`, as validate requires.
                StateHandle::File(FileRef { path, offset, length: length.min(u64::MAX - offset), checksum })
            });
        prop_oneof![prop::collection::vec(any::<u8>(), 0..24).prop_map(StateHandle::Inline), file]
    }

    fn lists() -> impl Strategy<Value = Vec<ListStateSnapshot>> {
        prop::collection::btree_set("[a-z]{1,6}", 0..3).prop_flat_map(|names| {
            names
                .into_iter()
                .map(|name| {
                    let mode = prop_oneof![Just(Redistribution::EvenSplit), Just(Redistribution::Union)];
                    let elements = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..4);
                    (Just(name), mode, elements).prop_map(|(name, mode, elements)| ListStateSnapshot {
                        name,
                        mode,
                        elements,
                    })
                })
                .collect::<Vec<_>>()
        })
    }

    fn subtask(range: KeyGroupRange) -> impl Strategy<Value = SubtaskState> {
        let all: Vec<KeyGroup> = range.iter().collect();
        let len = all.len();
        let key_groups = subsequence(all, 0..=len).prop_flat_map(|groups| {
            groups
                .into_iter()
                .map(|key_group| handle().prop_map(move |handle| KeyGroupHandle { key_group, handle }))
                .collect::<Vec<_>>()
        });
        (key_groups, lists(), any::<bool>()).prop_map(|(key_groups, lists, finished)| SubtaskState {
            key_groups,
            lists,
            finished,
            embedded: None,
        })
    }

    fn operator_state(uid: String) -> impl Strategy<Value = OperatorState> {
        (1u32..=256).prop_flat_map(|max_parallelism| (Just(max_parallelism), 1..=max_parallelism)).prop_flat_map(
            move |(max_parallelism, parallelism)| {
                let subtasks: Vec<_> = (0..parallelism)
                    .map(|i| subtask(KeyGroupRange::for_subtask(SubtaskIndex(i), parallelism, max_parallelism)))
                    .collect();
                let uid = OperatorUid(uid.clone());
                subtasks.prop_map(move |subtasks| OperatorState {
                    uid: uid.clone(),
                    parallelism,
                    max_parallelism,
                    subtasks,
                })
            },
        )
    }

    fn valid_metadata() -> impl Strategy<Value = CheckpointMetadata> {
        let operators = prop::collection::btree_set(uid(), 0..=4)
            .prop_flat_map(|uids| uids.into_iter().map(operator_state).collect::<Vec<_>>());
        let kind = prop_oneof![Just(SnapshotKind::Checkpoint), Just(SnapshotKind::Savepoint)];
        let format = prop_oneof![
            Just(SnapshotFormat::JobManager),
            Just(SnapshotFormat::FileSystem),
            Just(SnapshotFormat::Embedded),
            Just(SnapshotFormat::Canonical),
        ];
        (any::<u64>(), any::<u128>(), any::<String>(), kind, format, any::<u64>(), operators).prop_map(
            |(checkpoint_id, job_id, job_name, kind, format, timestamp_ms, operators)| CheckpointMetadata {
                checkpoint_id: CheckpointId(checkpoint_id),
                job_id: JobId(job_id),
                job_name,
                kind,
                format,
                timestamp_ms,
                operators,
            },
        )
    }

    proptest! {
        #[test]
        fn valid_metadata_round_trips(metadata in valid_metadata()) {
            prop_assert_eq!(validate(&metadata, origin()), Ok(()));
            let encoded = encode(&metadata);
            prop_assert_eq!(decode(&encoded, origin()), Ok(metadata));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            // Almost all of these fail the magic check; the result only has to be a result.
            let _ = decode(&bytes, origin());
        }

        /// A valid frame around an arbitrary body reaches postcard and `validate`, which the previous test
        /// almost never does.
        #[test]
        fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..2000)) {
            if let Ok(metadata) = decode(&frame(FORMAT_VERSION, &body), origin()) {
                // Whatever decodes is valid, so it must survive a round trip.
                prop_assert_eq!(decode(&encode(&metadata), origin()), Ok(metadata));
            }
        }

        /// The field reader that explains failures accepts exactly what postcard accepts, so a body
        /// postcard rejects always gets a named field.
        #[test]
        fn the_field_reader_agrees_with_postcard(
            metadata in valid_metadata(),
            at in any::<Index>(),
            byte in any::<u8>(),
            cut in any::<Index>(),
            noise in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let encoded = postcard::to_stdvec(&metadata).expect("serialisable");
            let mut changed = encoded.clone();
            if !changed.is_empty() {
                let at = at.index(changed.len());
                changed[at] = byte;
            }
            let cut = cut.index(encoded.len() + 1);
            for body in [&encoded[..], &changed[..], &encoded[..cut], &noise[..]] {
                for version in [FORMAT_VERSION, FORMAT_VERSION_1] {
                    let postcard_ok = if version == FORMAT_VERSION {
                        postcard::take_from_bytes::<CheckpointMetadata>(body).is_ok()
                    } else {
                        postcard::take_from_bytes::<v1::CheckpointMetadata>(body).is_ok()
                    };
                    prop_assert_eq!(explain(body, version).is_ok(), postcard_ok, "{:?}", explain(body, version));
                }
            }
        }

        #[test]
        fn flipping_any_byte_is_detected(metadata in valid_metadata(), at in any::<Index>(), mask in 1u8..=255) {
            let mut encoded = encode(&metadata);
            let body_len = (encoded.len() - FIXED_LEN) as u64;
            let at = at.index(encoded.len());
            encoded[at] ^= mask;
            let result = decode(&encoded, origin());
            match at {
                0..8 => prop_assert_eq!(result, Err(MetadataError::NotMetadata { path: origin().into() })),
                8..12 => {
                    let version = u32::from_le_bytes(encoded[8..12].try_into().expect("4 bytes"));
                    prop_assert_eq!(result, Err(MetadataError::UnsupportedVersion { path: origin().into(), version }));
                }
                12..20 => {
                    let declared = u64::from_le_bytes(encoded[12..20].try_into().expect("8 bytes"));
                    if declared > body_len {
                        let is_truncated = matches!(result, Err(MetadataError::Truncated { .. }));
                        prop_assert!(is_truncated, "{:?}", result);
                    } else {
                        let extra_bytes = body_len - declared;
                        let expected = MetadataError::TrailingBytes { path: origin().into(), extra_bytes };
                        prop_assert_eq!(result, Err(expected));
                    }
                }
                _ => {
                    let is_mismatch = matches!(result, Err(MetadataError::ChecksumMismatch { .. }));
                    prop_assert!(is_mismatch, "{:?}", result);
                }
            }
        }
    }
}
