//! The conformance suite for [`ExportSource`] implementations (feature `conformance`).
//!
//! Each implementation's tests build a source holding known files and call [`run`] with them.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, PathBuf};

use crate::export::ExportSource;

/// Checks `source` against the files it is known to hold (`(relative path, content)`): it lists
/// exactly those, each once, with plain relative paths and the right sizes; `open` yields each
/// content; `local_path`, where given, holds the same content.
///
/// # Panics
/// On any violation, naming it (this is a test helper).
pub async fn run(source: &dyn ExportSource, expected: &[(PathBuf, Vec<u8>)]) {
    let entries = source.entries().expect("entries() fails");
    let wanted: HashMap<&PathBuf, &Vec<u8>> = expected.iter().map(|(p, c)| (p, c)).collect();
    assert_eq!(
        entries.len(),
        expected.len(),
        "entries() lists {} files, expected {}",
        entries.len(),
        expected.len()
    );
    let mut seen = std::collections::HashSet::new();
    for entry in &entries {
        assert!(
            seen.insert(entry.path.clone()),
            "{} listed twice",
            entry.path.display()
        );
        assert!(
            entry
                .path
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "{} is not a plain relative path",
            entry.path.display()
        );
        let content = wanted
            .get(&entry.path)
            .unwrap_or_else(|| panic!("{} is listed but not expected", entry.path.display()));
        assert_eq!(
            entry.size,
            content.len() as u64,
            "{}: listed size",
            entry.path.display()
        );
        let mut read = Vec::new();
        source
            .open(entry)
            .unwrap_or_else(|e| panic!("open({}) fails: {e}", entry.path.display()))
            .read_to_end(&mut read)
            .unwrap_or_else(|e| panic!("reading {} fails: {e}", entry.path.display()));
        assert!(
            read == **content,
            "{}: open() yields other content",
            entry.path.display()
        );
        if let Some(local) = source.local_path(entry) {
            let on_disk = std::fs::read(&local)
                .unwrap_or_else(|e| panic!("local_path {} unreadable: {e}", local.display()));
            assert!(
                on_disk == **content,
                "{}: local_path holds other content",
                entry.path.display()
            );
        }
    }
}
