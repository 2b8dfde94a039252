//! A version: the set of live sorted files by level, and the live range tombstones. The
//! store holds the current one; a snapshot pins one (the files' reference counts keep them
//! on disk while it is encoded); a flush or compaction installs the next one.
//!
//! Level 0 holds flushed files, newest first, which may overlap. Every deeper level holds
//! files in ascending key order with disjoint key ranges, and for any key its entry in a
//! shallower level is newer than its entry in a deeper one. A version's file list (name,
//! size, checksum) is what an incremental checkpoint uploads or references.

use super::entry::Found;
use super::merge::Cursor;
use super::table::{TableCursor, TableFile, TableMeta};
use super::tombstone::RangeTombstone;
use crate::state::StateError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Levels of a store: level 0 and six sorted levels below it.
pub const LEVELS: usize = 7;

/// A live file with its level, as a checkpoint would list it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveFile {
    pub level: usize,
    pub meta: TableMeta,
}

/// A version as data: what an incremental checkpoint records to rebuild the store from
/// its files (phase 2), and what tests compare.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Level 0 newest first, then each deeper level in key order.
    pub files: Vec<LiveFile>,
    pub tombstones: Vec<RangeTombstone>,
}

/// The live files and range tombstones.
#[derive(Clone, Debug)]
pub struct Version {
    levels: Vec<Vec<Arc<TableFile>>>,
    tombstones: Vec<RangeTombstone>,
}

impl Default for Version {
    fn default() -> Self {
        Version { levels: vec![Vec::new(); LEVELS], tombstones: Vec::new() }
    }
}

impl Version {
    /// A version of `levels` (level 0 newest first, deeper levels in key order) and `tombstones`.
    pub fn from_parts(levels: Vec<Vec<Arc<TableFile>>>, tombstones: Vec<RangeTombstone>) -> Version {
        assert_eq!(levels.len(), LEVELS, "a version has {LEVELS} levels");
        let version = Version { levels, tombstones };
        version.check_invariants();
        version
    }

    /// Every live file with its level, level by level, as the files themselves.
    pub fn tables(&self) -> Vec<(usize, Arc<TableFile>)> {
        (0..LEVELS).flat_map(|level| self.levels[level].iter().map(move |f| (level, f.clone()))).collect()
    }

    pub fn level(&self, level: usize) -> &[Arc<TableFile>] {
        &self.levels[level]
    }

    pub fn tombstones(&self) -> &[RangeTombstone] {
        &self.tombstones
    }

    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|f| f.meta().size_bytes).sum()
    }

    /// Every live file, level by level (level 0 newest first, then ascending keys).
    pub fn files(&self) -> Vec<LiveFile> {
        (0..LEVELS)
            .flat_map(|level| self.levels[level].iter().map(move |f| LiveFile { level, meta: f.meta().clone() }))
            .collect()
    }

    pub fn manifest(&self) -> Manifest {
        Manifest { files: self.files(), tombstones: self.tombstones.clone() }
    }

    pub fn file_count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// The deepest level holding a file, if any holds one.
    pub fn deepest_level(&self) -> Option<usize> {
        (0..LEVELS).rev().find(|level| !self.levels[*level].is_empty())
    }

    /// The newest entry any file holds for `key`. `hash` is the key's filter hash.
    pub fn get(&self, key: &[u8], hash: u64) -> Result<Option<Found>, StateError> {
        for file in &self.levels[0] {
            if let Some(found) = file.get(key, hash)? {
                return Ok(Some(found));
            }
        }
        for level in &self.levels[1..] {
            let index = level.partition_point(|f| f.largest() < key);
            if let Some(file) = level.get(index)
                && let Some(found) = file.get(key, hash)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// False if no file can hold `key` (key ranges and filters say so).
    pub fn may_contain(&self, key: &[u8], hash: u64) -> bool {
        self.levels[0].iter().any(|f| f.may_contain(key, hash))
            || self.levels[1..].iter().any(|level| {
                let index = level.partition_point(|f| f.largest() < key);
                level.get(index).is_some_and(|f| f.may_contain(key, hash))
            })
    }

    /// Whether a file's key range meets `[start, end)`.
    pub fn overlaps(&self, start: &[u8], end: &[u8]) -> bool {
        self.levels.iter().flatten().any(|f| f.overlaps(start, end))
    }

    /// Whether a file of a level below `level` meets `[smallest, largest]`: if none does,
    /// a compaction into `level` writes the oldest entries of those keys and may drop their
    /// point tombstones.
    pub fn deeper_overlaps(&self, level: usize, smallest: &[u8], largest: &[u8]) -> bool {
        self.levels[level + 1..].iter().flatten().any(|f| f.overlaps_inclusive(smallest, largest))
    }

    /// Whether any file meets `[smallest, largest]`.
    pub fn holds_any(&self, smallest: &[u8], largest: &[u8]) -> bool {
        self.levels.iter().flatten().any(|f| f.overlaps_inclusive(smallest, largest))
    }

    /// Files of `level` whose key ranges meet `[smallest, largest]`.
    pub fn overlapping(&self, level: usize, smallest: &[u8], largest: &[u8]) -> Vec<Arc<TableFile>> {
        self.levels[level].iter().filter(|f| f.overlaps_inclusive(smallest, largest)).cloned().collect()
    }

    /// One cursor per level-0 file, then one per deeper level, over `[start, end)`:
    /// newest sources first.
    pub fn cursors<'a>(
        &'a self,
        start: &[u8],
        end: Option<&[u8]>,
        fill_cache: bool,
    ) -> Result<Vec<Box<dyn Cursor + 'a>>, StateError> {
        let mut cursors: Vec<Box<dyn Cursor + 'a>> = Vec::new();
        for file in &self.levels[0] {
            if end.is_none_or(|end| file.smallest() < end) && start <= file.largest() {
                cursors.push(Box::new(file.cursor(start, end, fill_cache)?));
            }
        }
        for level in &self.levels[1..] {
            if !level.is_empty() {
                cursors.push(Box::new(LevelCursor::new(level, start, end, fill_cache)?));
            }
        }
        Ok(cursors)
    }

    /// Adds a freshly flushed file as the newest of level 0.
    pub fn add_flushed(&mut self, file: Arc<TableFile>) {
        self.levels[0].insert(0, file);
    }

    /// Replaces the files numbered `removed` (wherever they are) with `added` in `level`.
    pub fn replace(&mut self, removed: &[u64], level: usize, added: Vec<Arc<TableFile>>) {
        let before = self.file_count();
        for files in &mut self.levels {
            files.retain(|f| !removed.contains(&f.meta().number));
        }
        assert_eq!(self.file_count() + removed.len(), before, "every replaced file was live");
        // Level 0 only ever receives flushes; compactions write below it.
        assert!(level > 0, "a compaction writes below level 0");
        self.levels[level].extend(added);
        self.levels[level].sort_by(|a, b| a.smallest().cmp(b.smallest()));
        self.check_invariants();
    }

    pub fn add_tombstone(&mut self, tombstone: RangeTombstone) {
        self.tombstones.push(tombstone);
    }

    pub fn retain_tombstones(&mut self, keep: impl FnMut(&RangeTombstone) -> bool) {
        self.tombstones.retain(keep);
    }

    /// Levels below 0 are sorted and disjoint.
    pub fn check_invariants(&self) {
        for (level, files) in self.levels.iter().enumerate().skip(1) {
            for pair in files.windows(2) {
                assert!(
                    pair[0].largest() < pair[1].smallest(),
                    "level {level}: files {} and {} overlap",
                    pair[0].meta().name,
                    pair[1].meta().name
                );
            }
        }
    }
}

/// A cursor over one sorted level: its files one after the other.
struct LevelCursor<'a> {
    files: &'a [Arc<TableFile>],
    next: usize,
    current: Option<TableCursor<'a>>,
    end: Option<Vec<u8>>,
    fill_cache: bool,
}

impl<'a> LevelCursor<'a> {
    fn new(
        files: &'a [Arc<TableFile>],
        start: &[u8],
        end: Option<&[u8]>,
        fill_cache: bool,
    ) -> Result<LevelCursor<'a>, StateError> {
        let first = files.partition_point(|f| f.largest() < start);
        let mut cursor = LevelCursor { files, next: first, current: None, end: end.map(<[u8]>::to_vec), fill_cache };
        cursor.open_next(Some(start))?;
        Ok(cursor)
    }

    /// Opens files from `next` on until one has an entry in range, or none is left.
    fn open_next(&mut self, mut start: Option<&[u8]>) -> Result<(), StateError> {
        self.current = None;
        let files = self.files;
        while let Some(file) = files.get(self.next) {
            if self.end.as_deref().is_some_and(|end| file.smallest() >= end) {
                return Ok(());
            }
            self.next += 1;
            let cursor = file.cursor(start.take().unwrap_or(file.smallest()), self.end.as_deref(), self.fill_cache)?;
            if cursor.entry().is_some() {
                self.current = Some(cursor);
                return Ok(());
            }
        }
        Ok(())
    }
}

impl Cursor for LevelCursor<'_> {
    fn entry(&self) -> Option<super::entry::EntryRef<'_>> {
        self.current.as_ref().and_then(|c| c.entry())
    }

    fn advance(&mut self) -> Result<(), StateError> {
        if let Some(current) = &mut self.current {
            current.advance()?;
            if current.entry().is_none() {
                self.open_next(None)?;
            }
        }
        Ok(())
    }
}
