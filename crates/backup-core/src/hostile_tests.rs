//! A hostile or damaged repository can never make restore write outside its target, and damage
//! is reported naming the object at fault.

use std::path::Path;
use std::sync::Arc;

use object_store::memory::InMemory;

use crate::format::{self, BlobKind, ChunkId, IndexFile, Node, NodeKind, Snapshot, Summary, Tree};
use crate::pack::PackBuilder;
use crate::repo::blob_aad;
use crate::{Error, KeySource, NoProgress, Repository, RestoreOptions, restore};

async fn repo() -> Arc<Repository> {
    Arc::new(
        Repository::init(
            Arc::new(InMemory::new()),
            "memory",
            &KeySource::passphrase("hostile"),
            crate::InitOptions::new(),
        )
        .await
        .unwrap(),
    )
}

/// Stores raw blobs as a hostile writer holding the key could (bypassing every check of
/// backup), returning their ids.
async fn store_blobs(repo: &Repository, blobs: &[(BlobKind, Vec<u8>)]) -> Vec<ChunkId> {
    let mut pack = PackBuilder::default();
    let mut ids = Vec::new();
    for (kind, data) in blobs {
        let id = repo.keys.chunk_id(data);
        let sealed = repo
            .keys
            .cipher
            .seal(&blob_aad(&id), &crate::compress::encode(data, 3))
            .unwrap();
        pack.add(&sealed, [(id, *kind, data.len() as u32, None)], Vec::new);
        ids.push(id);
    }
    let finished = pack.finish(&repo.keys.cipher).unwrap().unwrap();
    repo.put(&finished.path, finished.bytes, true)
        .await
        .unwrap();
    repo.add_to_index(&finished.index).unwrap();
    let index = IndexFile {
        packs: vec![finished.index],
    };
    repo.put_sealed(&format!("index/{}", format::random_id()), &index)
        .await
        .unwrap();
    ids
}

fn node(name: &[u8], kind: NodeKind) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        size: 0,
        content: Vec::new(),
        subtree: None,
        target: None,
        rdev: None,
        link_group: None,
        xattrs: Vec::new(),
    }
}

fn file(name: &[u8], content: &[u8], ids: &[ChunkId]) -> Node {
    Node {
        size: content.len() as u64,
        content: ids.to_vec(),
        ..node(name, NodeKind::File)
    }
}

async fn snapshot_of(repo: &Repository, root: Tree) -> String {
    let root_id = store_blobs(repo, &[(BlobKind::Tree, format::encode(&root))]).await[0];
    let snap = Snapshot {
        time_ns: 1,
        host: "hostile".into(),
        paths: vec!["/x".into()],
        tags: Vec::new(),
        parent: None,
        tree: root_id,
        summary: Summary::default(),
        skipped: Vec::new(),
        changed: Vec::new(),
    };
    let id = format::random_id();
    repo.put_sealed(&format!("snapshots/{id}"), &snap)
        .await
        .unwrap();
    id
}

async fn restore_into(repo: &Arc<Repository>, snap: &str, target: &Path) -> crate::Result<()> {
    restore(
        repo.clone(),
        snap,
        RestoreOptions::new(target).build().unwrap(),
        Arc::new(NoProgress),
    )
    .await
    .map(drop)
}

/// A root tree with one file `name` holding "pwned".
async fn tree_with_file_named(repo: &Repository, name: &[u8]) -> Tree {
    let ids = store_blobs(repo, &[(BlobKind::Data, b"pwned".to_vec())]).await;
    Tree {
        nodes: vec![file(name, b"pwned", &ids)],
    }
}

fn assert_nothing_outside(outer: &Path) {
    let mut names: Vec<_> = std::fs::read_dir(outer)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["target"], "restore wrote outside its target");
}

#[tokio::test]
async fn traversal_names_are_refused() {
    for bad in [
        &b".."[..],
        b".",
        b"../escape",
        b"/abs/olute",
        b"a/b",
        b"",
        b"nul\0byte",
    ] {
        let repo = repo().await;
        let tree = tree_with_file_named(&repo, bad).await;
        let snap = snapshot_of(&repo, tree).await;
        let outer = tempfile::tempdir().unwrap();
        let target = outer.path().join("target");
        let err = restore_into(&repo, &snap, &target).await.unwrap_err();
        assert!(
            matches!(err, Error::UnsafeName { .. }),
            "{:?}: {err}",
            String::from_utf8_lossy(bad)
        );
        assert!(err.to_string().contains("tree "), "names the tree: {err}");
        assert_nothing_outside(outer.path());
    }
}

#[tokio::test]
async fn dotdot_directory_is_refused_before_anything_is_written_through_it() {
    let repo = repo().await;
    let inner = tree_with_file_named(&repo, b"escaped").await;
    let inner_id = store_blobs(&repo, &[(BlobKind::Tree, format::encode(&inner))]).await[0];
    let root = Tree {
        nodes: vec![Node {
            subtree: Some(inner_id),
            ..node(b"..", NodeKind::Dir)
        }],
    };
    let snap = snapshot_of(&repo, root).await;
    let outer = tempfile::tempdir().unwrap();
    let err = restore_into(&repo, &snap, &outer.path().join("target"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsafeName { .. }), "{err}");
    assert_nothing_outside(outer.path());
}

#[tokio::test]
async fn symlink_and_directory_of_one_name_are_refused() {
    let repo = repo().await;
    let inner = tree_with_file_named(&repo, b"pwned").await;
    let inner_id = store_blobs(&repo, &[(BlobKind::Tree, format::encode(&inner))]).await[0];
    let outer = tempfile::tempdir().unwrap();
    let root = Tree {
        nodes: vec![
            Node {
                target: Some(outer.path().as_os_str().as_encoded_bytes().to_vec()),
                ..node(b"evil", NodeKind::Symlink)
            },
            Node {
                subtree: Some(inner_id),
                ..node(b"evil", NodeKind::Dir)
            },
        ],
    };
    let snap = snapshot_of(&repo, root).await;
    let err = restore_into(&repo, &snap, &outer.path().join("target"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsafeName { .. }), "{err}");
    assert_nothing_outside(outer.path());
}

#[tokio::test]
async fn planted_symlink_in_target_is_replaced_not_followed() {
    let repo = repo().await;
    let inner = tree_with_file_named(&repo, b"pwned").await;
    let inner_id = store_blobs(&repo, &[(BlobKind::Tree, format::encode(&inner))]).await[0];
    let root = Tree {
        nodes: vec![
            Node {
                subtree: Some(inner_id),
                ..node(b"dir", NodeKind::Dir)
            },
            file(b"file", b"pwned", &inner.nodes[0].content),
        ],
    };
    let snap = snapshot_of(&repo, root).await;
    let outer = tempfile::tempdir().unwrap();
    let target = outer.path().join("target");
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), target.join("dir")).unwrap();
    std::fs::write(elsewhere.path().join("victim"), b"safe").unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("victim"), target.join("file")).unwrap();
    restore_into(&repo, &snap, &target).await.unwrap();
    assert!(
        std::fs::symlink_metadata(target.join("dir"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(std::fs::read(target.join("dir/pwned")).unwrap(), b"pwned");
    assert_eq!(std::fs::read(target.join("file")).unwrap(), b"pwned");
    assert!(!elsewhere.path().join("pwned").exists());
    assert_eq!(
        std::fs::read(elsewhere.path().join("victim")).unwrap(),
        b"safe"
    );
}

#[tokio::test]
async fn lying_size_is_corrupt() {
    let repo = repo().await;
    let ids = store_blobs(&repo, &[(BlobKind::Data, b"short".to_vec())]).await;
    let mut liar = file(b"liar", b"short", &ids);
    liar.size = 1 << 30;
    let snap = snapshot_of(&repo, Tree { nodes: vec![liar] }).await;
    let outer = tempfile::tempdir().unwrap();
    let err = restore_into(&repo, &snap, &outer.path().join("target"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(!outer.path().join("target/liar").exists());
}

#[tokio::test]
async fn blob_moved_under_another_id_fails_and_names_the_pack() {
    let repo = repo().await;
    let ids = store_blobs(
        &repo,
        &[
            (BlobKind::Data, b"first blob".to_vec()),
            (BlobKind::Data, b"second blob".to_vec()),
        ],
    )
    .await;
    // Point the first id at the second blob's bytes, as a tampered index would.
    let second = repo.locate(&ids[1]).unwrap();
    repo.index.write().unwrap().insert(ids[0], second.clone());
    let err = repo.load_blob(&ids[0]).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&format::pack_path(&second.pack)),
        "{err}"
    );
}

#[tokio::test]
async fn snapshot_copied_under_another_name_fails() {
    use object_store::ObjectStoreExt;
    use object_store::path::Path as ObjectPath;
    let repo = repo().await;
    let tree = tree_with_file_named(&repo, b"f").await;
    let snap = snapshot_of(&repo, tree).await;
    let bytes = repo
        .store
        .get(&ObjectPath::from(format!("snapshots/{snap}")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let copy = format::random_id();
    repo.put(&format!("snapshots/{copy}"), bytes.to_vec(), true)
        .await
        .unwrap();
    let err = repo.snapshots().await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&copy), "{err}");
}
