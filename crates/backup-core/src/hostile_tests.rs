//! A hostile or damaged repository can never make restore write outside its target, and damage
//! is reported naming the object at fault.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use object_store::memory::InMemory;

use crate::format::{
    self, BlobKind, ChunkId, GroupRef, IndexFile, Node, NodeKind, Snapshot, Summary, Tree,
};
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
        let encoded = crate::compress::encode(data, 3);
        let seal = |out: &mut Vec<u8>| repo.keys.cipher.seal_append(&blob_aad(&id), &encoded, out);
        let members = [(id, *kind, data.len() as u32, None)];
        pack.add(seal, members, Vec::new).unwrap();
        ids.push(id);
    }
    store_pack(repo, pack).await;
    ids
}

/// `load_blob(id)` fails as corrupt, naming `pack` and saying `reason`.
async fn assert_load_corrupt(repo: &Repository, id: &ChunkId, pack: &str, reason: &str) {
    let err = repo.load_blob(id).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(pack), "{err}");
    assert!(err.to_string().contains(reason), "{err}");
}

/// Writes `pack` and an index object for it; returns the pack's path.
async fn store_pack(repo: &Repository, mut pack: PackBuilder) -> String {
    let finished = pack.finish(&repo.keys.cipher).unwrap().unwrap();
    repo.put(&finished.path, finished.contents().to_vec(), true)
        .await
        .unwrap();
    repo.add_to_index(&finished.index).unwrap();
    let index = IndexFile {
        packs: vec![finished.index],
    };
    repo.put_sealed(&format!("index/{}", format::random_id()), &index)
        .await
        .unwrap();
    finished.path
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
        RestoreOptions::builder(target).build().unwrap(),
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
    // The copy fails to open under its new name: it is skipped and reported, the original
    // is still listed.
    let listed = repo.snapshots().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, snap);
    let skipped = repo.skipped_objects();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].object, format!("snapshots/{copy}"));
    assert!(skipped[0].reason.contains("authentication"), "{skipped:?}");
}

/// A group of small blobs as backup would seal it, for a test to tamper with before
/// [`store_group`] writes it.
struct HandGroup {
    /// The group's plaintext: the members concatenated.
    plaintext: Vec<u8>,
    /// The group's id (keyed hash of its members' ids and places).
    id: ChunkId,
    /// The id whose `blob_aad` the frame is sealed under (the group id unless tampered).
    aad_id: ChunkId,
    /// The pack entries: `(member id, kind, member raw length, place in the group)`.
    members: Vec<(ChunkId, BlobKind, u32, Option<GroupRef>)>,
}

impl HandGroup {
    /// The well-formed group of `contents` (data blobs, in order).
    fn new(repo: &Repository, contents: &[&[u8]]) -> HandGroup {
        let plaintext = contents.concat();
        let mut places = Vec::new();
        let mut offset = 0u32;
        for c in contents {
            places.push((repo.keys.chunk_id(c), offset, c.len() as u32));
            offset += c.len() as u32;
        }
        let id = repo.keys.group_id(&places);
        let mut start = 0u32;
        let members = contents
            .iter()
            .map(|c| {
                let place = GroupRef {
                    id,
                    raw_length: plaintext.len() as u32,
                    start,
                };
                start += c.len() as u32;
                (
                    repo.keys.chunk_id(c),
                    BlobKind::Data,
                    c.len() as u32,
                    Some(place),
                )
            })
            .collect();
        HandGroup {
            plaintext,
            id,
            aad_id: id,
            members,
        }
    }

    fn ids(&self) -> Vec<ChunkId> {
        self.members.iter().map(|m| m.0).collect()
    }

    /// The place of member `i` inside the group, for a test to change.
    fn place(&mut self, i: usize) -> &mut GroupRef {
        self.members[i].3.as_mut().unwrap()
    }
}

/// Stores `group` as one sealed frame of a new pack, with the pack entries and index it says
/// (as a hostile writer holding the key could), and returns the pack's path.
async fn store_group(repo: &Repository, group: &HandGroup) -> String {
    let encoded = crate::compress::encode(&group.plaintext, 1);
    let aad = blob_aad(&group.aad_id);
    let seal = |out: &mut Vec<u8>| repo.keys.cipher.seal_append(&aad, &encoded, out);
    let mut pack = PackBuilder::default();
    let added = pack
        .add(seal, group.members.iter().copied(), Vec::new)
        .unwrap();
    assert_eq!(added, group.members.len());
    store_pack(repo, pack).await
}

/// Three small, compressible files (each below the chunker's minimum, as backup groups them).
fn small_files() -> [(&'static [u8], Vec<u8>); 3] {
    [
        (
            &b"alpha"[..],
            b"alpha alpha alpha, the first small file\n".repeat(20),
        ),
        (
            &b"beta"[..],
            b"beta: the second one, a little different\n".repeat(7),
        ),
        (&b"gamma"[..], b"gamma gamma\n".repeat(3)),
    ]
}

fn contents<'a>(files: &'a [(&[u8], Vec<u8>)]) -> Vec<&'a [u8]> {
    files.iter().map(|(_, c)| c.as_slice()).collect()
}

/// A snapshot whose root holds directory `d` with file `names[i]` holding member `i`, for
/// each `i` in `which`.
async fn snapshot_of_members(
    repo: &Repository,
    files: &[(&[u8], Vec<u8>)],
    ids: &[ChunkId],
    which: &[usize],
) -> String {
    let inner = Tree {
        nodes: which
            .iter()
            .map(|&i| file(files[i].0, &files[i].1, &ids[i..=i]))
            .collect(),
    };
    let inner_id = store_blobs(repo, &[(BlobKind::Tree, format::encode(&inner))]).await[0];
    let root = Tree {
        nodes: vec![Node {
            subtree: Some(inner_id),
            mode: 0o755,
            ..node(b"d", NodeKind::Dir)
        }],
    };
    snapshot_of(repo, root).await
}

/// Every entry under `dir` (recursively), asserting that each is a directory.
fn assert_only_directories(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        assert!(kind.is_dir(), "restore left {:?} behind", entry.path());
        assert_only_directories(&entry.path());
    }
}

/// Restores a snapshot of the given members of `group` (after `store_group`), expecting each
/// of them named damaged (a corrupt blob of `pack`, saying `reason`) and none written.
async fn assert_group_restore_fails(
    repo: &Arc<Repository>,
    files: &[(&[u8], Vec<u8>)],
    group: &HandGroup,
    pack: &str,
    which: &[usize],
    reason: &str,
) {
    let snap = snapshot_of_members(repo, files, &group.ids(), which).await;
    let outer = tempfile::tempdir().unwrap();
    let target = outer.path().join("target");
    let summary = restore(
        repo.clone(),
        &snap,
        RestoreOptions::builder(&target).build().unwrap(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let mut named: Vec<&str> = summary.damaged.iter().map(|d| d.path.as_str()).collect();
    named.sort();
    let mut expected: Vec<String> = which
        .iter()
        .map(|&i| format!("d/{}", String::from_utf8_lossy(files[i].0)))
        .collect();
    expected.sort();
    assert_eq!(named, expected, "{:?}", summary.damaged);
    for d in &summary.damaged {
        assert!(d.object.contains(pack), "names the pack {pack}: {d:?}");
        assert!(d.reason.contains(reason), "says {reason:?}: {d:?}");
    }
    assert!(target.join("d").is_dir(), "the directory was created");
    for &i in which {
        let path = target.join("d").join(OsStr::from_bytes(files[i].0));
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "{path:?} was written"
        );
    }
    assert_only_directories(&target);
    assert_nothing_outside(outer.path());
}

#[tokio::test]
async fn well_formed_group_restores_byte_identically() {
    let repo = repo().await;
    let files = small_files();
    let min = repo.config().chunker.min_size as usize;
    assert!(files.iter().all(|(_, c)| c.len() < min));
    let group = HandGroup::new(&repo, &contents(&files));
    // The frame really is compressed, so decompression is what the index bounds.
    assert_eq!(
        crate::compress::encode(&group.plaintext, 1).last(),
        Some(&1)
    );
    let pack = store_group(&repo, &group).await;
    let ids = group.ids();
    let starts = [0, files[0].1.len(), files[0].1.len() + files[1].1.len()];
    for (id, start) in ids.iter().zip(starts) {
        let loc = repo.locate(id).unwrap();
        assert_eq!(format::pack_path(&loc.pack), pack);
        let place = loc.group.unwrap();
        assert_eq!(
            (place.id, place.raw_length),
            (group.id, group.plaintext.len() as u32)
        );
        assert_eq!(loc.group.unwrap().start as usize, start);
    }
    let snap = snapshot_of_members(&repo, &files, &ids, &[0, 1, 2]).await;
    let outer = tempfile::tempdir().unwrap();
    let target = outer.path().join("target");
    restore_into(&repo, &snap, &target).await.unwrap();
    let mut names: Vec<_> = std::fs::read_dir(target.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_encoded_bytes())
        .collect();
    names.sort();
    assert_eq!(names, [&b"alpha"[..], b"beta", b"gamma"]);
    for (name, content) in &files {
        let restored = std::fs::read(target.join("d").join(OsStr::from_bytes(name))).unwrap();
        assert_eq!(&restored, content, "{}", String::from_utf8_lossy(name));
    }
    assert_nothing_outside(outer.path());
}

#[tokio::test]
async fn load_blob_cuts_members_out_of_a_group() {
    let repo = repo().await;
    let files = small_files();
    let group = HandGroup::new(&repo, &contents(&files));
    store_group(&repo, &group).await;
    for (id, (_, content)) in group.ids().iter().zip(&files) {
        assert_eq!(&repo.load_blob(id).await.unwrap(), content);
    }
    // The group itself is no blob of the index.
    let err = repo.load_blob(&group.id).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn member_outside_its_group_is_corrupt() {
    let files = small_files();
    // Past the end by one byte, starting past the end, and a start that would overflow u32.
    type Lie = fn(&mut HandGroup);
    let lies: [Lie; 3] = [
        |g| g.members[2].2 += 1,
        |g| g.place(2).start = g.plaintext.len() as u32 + 1,
        |g| g.place(2).start = u32::MAX,
    ];
    for lie in lies {
        let repo = repo().await;
        let mut group = HandGroup::new(&repo, &contents(&files));
        lie(&mut group);
        let pack = store_group(&repo, &group).await;
        let id = group.members[2].0;
        assert_load_corrupt(&repo, &id, &pack, "lies outside its group").await;
        assert_group_restore_fails(&repo, &files, &group, &pack, &[2], "lies outside its group")
            .await;
        // The honest members of the same group still load.
        assert_eq!(
            repo.load_blob(&group.members[0].0).await.unwrap(),
            files[0].1
        );
    }
}

#[tokio::test]
async fn member_pointing_at_the_wrong_bytes_is_corrupt() {
    let repo = repo().await;
    let files = small_files();
    let mut group = HandGroup::new(&repo, &contents(&files));
    group.place(0).start += 1;
    let pack = store_group(&repo, &group).await;
    assert_load_corrupt(
        &repo,
        &group.members[0].0,
        &pack,
        "content does not match its id",
    )
    .await;
    assert_group_restore_fails(
        &repo,
        &files,
        &group,
        &pack,
        &[0],
        "content does not match its id",
    )
    .await;
}

#[tokio::test]
async fn member_entry_under_another_id_is_corrupt() {
    // A tampered index moving one member's id onto another member's place.
    let repo = repo().await;
    let files = small_files();
    let mut group = HandGroup::new(&repo, &contents(&files));
    let other = group.members[1].3;
    group.members[0].3 = other;
    group.members[0].2 = group.members[1].2;
    let pack = store_group(&repo, &group).await;
    assert_load_corrupt(
        &repo,
        &group.members[0].0,
        &pack,
        "content does not match its id",
    )
    .await;
}

#[tokio::test]
async fn group_sealed_under_the_wrong_id_fails_authentication() {
    let files = small_files();
    // Sealed bound to its first member's id, or to an id nothing in the index names.
    for bound_to_member in [true, false] {
        let repo = repo().await;
        let mut group = HandGroup::new(&repo, &contents(&files));
        group.aad_id = if bound_to_member {
            group.members[0].0
        } else {
            repo.keys.chunk_id(b"some other group")
        };
        let pack = store_group(&repo, &group).await;
        for id in group.ids() {
            assert_load_corrupt(&repo, &id, &pack, "fails authentication").await;
        }
        assert_group_restore_fails(
            &repo,
            &files,
            &group,
            &pack,
            &[0, 1, 2],
            "fails authentication",
        )
        .await;
    }
}

#[tokio::test]
async fn a_group_label_alone_grants_nothing() {
    // A key holder may bind a group to any id the index also names: the id is only a label the
    // frame is sealed under. What a reader trusts is each member, checked against its own id,
    // so honest members still load and a member that was swapped does not.
    let repo = repo().await;
    let files = small_files();
    let mut group = HandGroup::new(&repo, &contents(&files));
    let label = repo.keys.chunk_id(b"not this group");
    group.aad_id = label;
    for i in 0..3 {
        group.place(i).id = label;
    }
    // The third entry claims the first member's id (the index keeps the later entry).
    group.members[2].0 = group.members[0].0;
    let pack = store_group(&repo, &group).await;
    assert_eq!(
        repo.load_blob(&group.members[1].0).await.unwrap(),
        files[1].1
    );
    assert_load_corrupt(
        &repo,
        &group.members[0].0,
        &pack,
        "content does not match its id",
    )
    .await;
}

/// Incompressible small files (the group is then stored raw, not zstd).
fn random_small_files() -> [(&'static [u8], Vec<u8>); 3] {
    let mut bytes = vec![0u8; 3000];
    blake3::Hasher::new()
        .update(b"hostile groups")
        .finalize_xof()
        .fill(&mut bytes);
    [
        (&b"alpha"[..], bytes[..1000].to_vec()),
        (&b"beta"[..], bytes[1000..2500].to_vec()),
        (&b"gamma"[..], bytes[2500..].to_vec()),
    ]
}

#[tokio::test]
async fn lying_group_length_fails_cleanly() {
    for (files, flag) in [(small_files(), 1u8), (random_small_files(), 0)] {
        let real = files.iter().map(|(_, c)| c.len() as u32).sum::<u32>();
        // Too small by one, far too small, zero, and too large by one.
        for told in [real - 1, real / 4, 0, real + 1] {
            let repo = repo().await;
            let mut group = HandGroup::new(&repo, &contents(&files));
            assert_eq!(
                crate::compress::encode(&group.plaintext, 1).last(),
                Some(&flag)
            );
            for i in 0..3 {
                group.place(i).raw_length = told;
            }
            let pack = store_group(&repo, &group).await;
            let expected = match flag {
                1 if told < real => "does not decompress",
                1 => "decompressed to",
                _ => "stored as",
            };
            for id in group.ids() {
                let err = repo.load_blob(&id).await.unwrap_err();
                let Error::Corrupt { object, reason } = &err else {
                    panic!("expected Error::Corrupt, got {err:?}");
                };
                assert!(object.starts_with(&pack), "{err}");
                assert!(reason.contains(expected), "told {told} of {real}: {err}");
            }
            assert_group_restore_fails(&repo, &files, &group, &pack, &[0, 1, 2], expected).await;
        }
    }
}

/// Opens a fresh repository whose `config` was changed by `change` (and sealed again under the
/// repository key), expecting an error.
async fn open_with_changed_config(change: impl FnOnce(&mut format::Config)) -> Error {
    let repo = repo().await;
    let mut config = repo.config.clone();
    change(&mut config);
    let sealed = repo
        .keys
        .cipher
        .seal(b"config", &format::encode(&config))
        .unwrap();
    repo.put("config", sealed, false).await.unwrap();
    Repository::open(
        repo.store.clone(),
        "there",
        &KeySource::passphrase("hostile"),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn a_newer_format_is_reported_as_newer_with_its_version() {
    let err = open_with_changed_config(|c| c.version = format::FORMAT_VERSION + 1).await;
    assert!(
        matches!(err, Error::NewerFormat { version, .. } if version == format::FORMAT_VERSION + 1),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("newer") && text.contains("version 2"),
        "{text}"
    );
    assert!(!text.contains("corrupt"), "{text}");
}

#[tokio::test]
async fn config_values_are_validated_when_opened() {
    for (pack_size, level, what) in [(1, 1, "pack size 1"), (8 << 20, 99, "zstd level 99")] {
        let err = open_with_changed_config(|c| {
            c.pack_size = pack_size;
            c.compression_level = level;
        })
        .await;
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains(what), "{err}");
    }
}

/// Every object under `dir`.
async fn list_all(
    store: &dyn object_store::ObjectStore,
    dir: &str,
) -> Vec<object_store::ObjectMeta> {
    use futures::TryStreamExt;
    store
        .list(Some(&object_store::path::Path::from(dir)))
        .try_collect()
        .await
        .unwrap()
}

/// Deletes every object under `dir`.
async fn delete_all(store: &dyn object_store::ObjectStore, dir: &str) {
    use object_store::ObjectStoreExt;
    let names = list_all(store, dir).await;
    assert!(!names.is_empty(), "nothing under {dir}");
    for meta in names {
        store.delete(&meta.location).await.unwrap();
    }
}

#[tokio::test]
async fn missing_keys_and_a_missing_index_are_named() {
    let repo = repo().await;
    let tree = tree_with_file_named(&repo, b"f").await;
    let snap = snapshot_of(&repo, tree).await;
    let key = KeySource::passphrase("hostile");

    delete_all(repo.store.as_ref(), "index").await;
    let reopened = Arc::new(
        Repository::open(repo.store.clone(), "there", &key)
            .await
            .unwrap(),
    );
    let err = restore(
        reopened,
        &snap,
        RestoreOptions::builder(tempfile::tempdir().unwrap().path().join("t"))
            .build()
            .unwrap(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::IndexMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("index is missing"), "{err}");

    delete_all(repo.store.as_ref(), "keys").await;
    let err = Repository::open(repo.store.clone(), "there", &key)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoKeys { .. }), "{err:?}");
    assert!(!err.to_string().contains("password"), "{err}");
}

/// Copies every object of `from` under `dir` into `to`.
async fn copy_all(
    from: &dyn object_store::ObjectStore,
    to: &dyn object_store::ObjectStore,
    dir: &str,
) {
    use object_store::ObjectStoreExt;
    let names = list_all(from, dir).await;
    for meta in names {
        let bytes = from
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        to.put(&meta.location, bytes.into()).await.unwrap();
    }
}

/// What an init killed after writing its key and before its config leaves: the key alone. A
/// rerun with the same password completes it (same master secret); one with another password
/// makes a repository that the left key does not confuse.
#[tokio::test]
async fn init_completes_over_the_key_a_killed_init_left() {
    let first = repo().await;
    for password in ["hostile", "another"] {
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
        copy_all(first.store.as_ref(), store.as_ref(), "keys").await;
        // And a damaged key object beside it.
        let damaged = object_store::path::Path::from(format!("keys/{}", format::random_id()));
        object_store::ObjectStoreExt::put(store.as_ref(), &damaged, vec![1u8; 5].into())
            .await
            .unwrap();
        let key = KeySource::passphrase(password);
        let made = Repository::init(store.clone(), "here", &key, crate::InitOptions::new())
            .await
            .unwrap();
        let reused = made.keys.chunk_id(b"x") == first.keys.chunk_id(b"x");
        assert_eq!(reused, password == "hostile", "{password}");
        let opened = Repository::open(store.clone(), "here", &key).await.unwrap();
        assert_eq!(opened.config().id, made.config().id);
        let err = Repository::init(store, "here", &key, crate::InitOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::RepositoryExists { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn init_refuses_an_empty_passphrase_and_a_location_with_other_files() {
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    let err = Repository::init(
        store.clone(),
        "here",
        &KeySource::passphrase(""),
        crate::InitOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("empty passphrase"), "{err}");
    {
        use object_store::ObjectStoreExt;
        store
            .put(
                &object_store::path::Path::from("www/index.php"),
                b"<?php".to_vec().into(),
            )
            .await
            .unwrap();
    }
    let err = Repository::init(
        store.clone(),
        "here",
        &KeySource::passphrase("x"),
        crate::InitOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::NotEmpty { ref found, .. } if found == "www/index.php"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_damaged_config_is_corrupt_not_a_wrong_password() {
    use object_store::ObjectStoreExt;
    let repo = repo().await;
    let path = object_store::path::Path::from("config");
    let mut bytes = repo
        .store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    repo.put("config", bytes, false).await.unwrap();
    let key = KeySource::passphrase("hostile");
    let err = Repository::open(repo.store.clone(), "there", &key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { ref object, .. } if object == "config"),
        "{err:?}"
    );
    let wrong = Repository::open(repo.store.clone(), "there", &KeySource::passphrase("other"))
        .await
        .unwrap_err();
    assert!(matches!(wrong, Error::WrongKey), "{wrong:?}");
}

/// Earlier versions wrote `config` before the key: a killed `init` left a config that nothing
/// can open. Opening says the keys are missing; `init` replaces it.
#[tokio::test]
async fn init_replaces_a_config_left_alone_by_an_older_killed_init() {
    use object_store::ObjectStoreExt;
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    let config = object_store::path::Path::from("config");
    store.put(&config, vec![7u8; 300].into()).await.unwrap();
    let key = KeySource::passphrase("x");
    let err = Repository::open(store.clone(), "here", &key)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoKeys { .. }), "{err:?}");
    assert!(err.to_string().contains("run init again"), "{err}");
    Repository::init(store.clone(), "here", &key, crate::InitOptions::new())
        .await
        .unwrap();
    Repository::open(store.clone(), "here", &key).await.unwrap();

    // With anything else there, a config is never replaced.
    let other: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    other.put(&config, vec![7u8; 300].into()).await.unwrap();
    let index = object_store::path::Path::from(format!("index/{}", format::random_id()));
    other.put(&index, vec![1u8; 10].into()).await.unwrap();
    let err = Repository::init(other.clone(), "here", &key, crate::InitOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RepositoryExists { .. }), "{err:?}");
    let kept = other.get(&config).await.unwrap().bytes().await.unwrap();
    assert_eq!(kept.as_ref(), &[7u8; 300][..]);
}
