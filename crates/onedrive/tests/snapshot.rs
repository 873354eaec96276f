//! The backup-core snapshot adapter: the ExportSource conformance suite over a real repository
//! on the local file system, and an export from a snapshot to the mock Graph server.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::{BackupOptions, InitOptions, KeySource, NoProgress, Repository, StoreOptions};
use common::{MockGraph, UNIT, data};
use onedrive::snapshot::SnapshotSource;
use onedrive::{Drive, ExportJob, RemotePath};

async fn snapshot_of(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, Arc<Repository>) {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    for (rel, content) in files {
        let path = site.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let location = dir.path().join("repo").display().to_string();
    let store = StoreOptions::new(&location)
        .with_create(true)
        .build()
        .unwrap();
    let key = KeySource::passphrase("test passphrase");
    let repo = Arc::new(
        Repository::init(store, &location, &key, InitOptions::new())
            .await
            .unwrap(),
    );
    let options = BackupOptions::builder([site]).build().unwrap();
    backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    (dir, repo)
}

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("index.php", b"<?php".to_vec()),
        ("empty", Vec::new()),
        ("uploads/big.bin", data(3 * UNIT as usize + 99, 21)),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_source_passes_the_conformance_suite() {
    let files = files();
    let (_dir, repo) = snapshot_of(&files).await;
    let source = SnapshotSource::new(repo.clone(), "latest", None)
        .await
        .unwrap();
    // Each backed-up path is one top-level entry of the snapshot, named by its last component.
    let expected: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|(p, c)| (PathBuf::from("site").join(p), c.clone()))
        .collect();
    let source = Arc::new(source);
    let s2 = source.clone();
    // The suite reads through blocking calls, as the export does: off the runtime (and outside
    // its context, since the source blocks on it).
    tokio::task::spawn_blocking(move || {
        futures::executor::block_on(onedrive::conformance::run(&*s2, &expected))
    })
    .await
    .unwrap();
    let sub = SnapshotSource::new(repo, "latest", Some(&PathBuf::from("site/uploads")))
        .await
        .unwrap();
    let entries = onedrive::ExportSource::entries(&sub).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].path, PathBuf::from("site/uploads/big.bin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn export_from_a_snapshot() {
    let files = files();
    let (dir, repo) = snapshot_of(&files).await;
    let mock = MockGraph::start().await;
    let client = common::client_builder(
        &mock.graph_url(),
        &mock.token_url(),
        &dir.path().join("token.json"),
    )
    .build()
    .unwrap();
    common::login(&mock, &client).await;
    let source = SnapshotSource::new(repo, "latest", None).await.unwrap();
    ExportJob::builder(
        client,
        Drive::Me,
        RemotePath::parse("Exports/snap").unwrap(),
        Arc::new(source),
    )
    .with_state_dir(dir.path().join("state"))
    .build()
    .unwrap()
    .run()
    .await
    .unwrap();
    for (rel, content) in &files {
        assert_eq!(
            mock.file("drive-me", &format!("Exports/snap/site/{rel}"))
                .as_ref(),
            Some(content),
            "{rel}"
        );
    }
    mock.assert_clean();
}
