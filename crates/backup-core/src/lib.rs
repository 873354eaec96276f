//! Deduplicated, compressed, encrypted backups on any [`object_store::ObjectStore`].
#![doc = "(crate docs: to be written with the first runnable example)"]

mod backup;
mod chunker;
mod cipher;
mod compress;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod format;
mod fsmeta;
pub mod ops;
mod pack;
mod progress;
mod repo;
mod restore;
mod store;

pub use backup::{BackupOptions, backup};
pub use chunker::ChunkerParams;
pub use cipher::KeySource;
pub use error::{Error, Result};
pub use progress::{NoProgress, Progress};
pub use repo::{InitOptions, Repository};
pub use restore::{RestoreOptions, RestoreSummary, restore};
pub use store::StoreOptions;
