//! Checkpoints: the coordinator's rules, the `_metadata` format, and checkpoint storage
//! (where snapshots are written, and how they are read back on restore).

pub mod builder;
pub mod coordinator;
pub mod metadata;
pub mod registry;
pub mod restore;
pub mod storage;
