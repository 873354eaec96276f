//! The version-1 fixture repository (`tests/fixtures/repository-v1`, written once by
//! `tests/fixtures/make_repository.py` with the code of its day) opens with its committed
//! passphrase and restores every snapshot to the content its manifest records, forever. The
//! manifest was written by that script from the source trees (Python's `os.lstat` and
//! `hashlib`), not by backup-core. A format change adds a version; it never breaks this test.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::conformance::{restore_all, snapshot_ids};
use backup_core::{KeySource, Repository, StoreOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The manifest: the passphrase, and per snapshot id its entries' lines.
fn manifest() -> (String, BTreeMap<String, BTreeSet<String>>) {
    let text = std::fs::read_to_string(fixtures().join("repository-v1.manifest")).unwrap();
    let mut passphrase = None;
    let mut snapshots: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match line.split_once('\t') {
            Some(("passphrase", p)) => passphrase = Some(p.to_string()),
            Some(("snapshot", id)) => current = Some(id.to_string()),
            Some(("entry", entry)) => {
                let id = current.clone().expect("an entry after its snapshot line");
                snapshots.entry(id).or_default().insert(entry.to_string());
            }
            _ => panic!("manifest line {line:?}"),
        }
    }
    (passphrase.expect("passphrase line"), snapshots)
}

/// Which parts of an entry this machine can restore as they were.
struct Can {
    chown: bool,
    xattrs: bool,
}

/// The entries under `root/top` in the manifest's format (see make_repository.py).
fn entries_of(root: &Path, top: &Path, can: &Can) -> BTreeSet<String> {
    let mut all = Vec::new();
    walk(root, top, &mut all);
    let mut inodes: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for (rel, meta) in &all {
        inodes
            .entry(meta.ino())
            .or_default()
            .push(rel.as_os_str().as_bytes().to_vec());
    }
    let mut lines = BTreeSet::new();
    for (rel, meta) in &all {
        let path = root.join(rel);
        let ft = meta.file_type();
        let (kind, size, content) = if ft.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
            ("file", meta.len().to_string(), hex::encode(digest.as_ref()))
        } else if ft.is_dir() {
            ("dir", "-".into(), "-".into())
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            (
                "symlink",
                meta.len().to_string(),
                hex::encode(target.as_os_str().as_bytes()),
            )
        } else if ft.is_fifo() {
            ("fifo", "-".into(), "-".into())
        } else {
            panic!("{}: unexpected type", path.display());
        };
        let mut group = inodes[&meta.ino()].clone();
        group.sort();
        let link = if matches!(kind, "file" | "symlink") && group.len() > 1 {
            String::from_utf8(group[0].clone()).unwrap()
        } else {
            "-".into()
        };
        let mut xattrs = Vec::new();
        if matches!(kind, "file" | "dir") {
            let mut names: Vec<_> = xattr::list(&path).unwrap().collect();
            names.sort();
            for name in names {
                let value = xattr::get(&path, &name).unwrap().unwrap_or_default();
                xattrs.push(format!("{}={}", name.to_str().unwrap(), hex::encode(value)));
            }
        }
        let xattrs = if xattrs.is_empty() {
            "-".into()
        } else {
            xattrs.join(";")
        };
        let (uid, gid) = if can.chown {
            (meta.uid(), meta.gid())
        } else {
            (0, 0)
        };
        let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let fields = [
            rel.to_str().unwrap().to_string(),
            kind.into(),
            format!("{:o}", meta.mode() & 0o7777),
            uid.to_string(),
            gid.to_string(),
            mtime.to_string(),
            size,
            content,
            link,
            if can.xattrs { xattrs } else { "-".into() },
        ];
        lines.insert(fields.join("\t"));
    }
    lines
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    let meta = std::fs::symlink_metadata(root.join(rel)).unwrap();
    let is_dir = meta.is_dir();
    out.push((rel.to_path_buf(), meta));
    if is_dir {
        for entry in std::fs::read_dir(root.join(rel)).unwrap() {
            walk(root, &rel.join(entry.unwrap().file_name()), out);
        }
    }
}

/// Drops what this machine cannot restore from a manifest line (owners without root, xattrs
/// without support).
fn restorable(line: &str, can: &Can) -> String {
    let mut fields: Vec<&str> = line.split('\t').collect();
    if !can.chown {
        fields[3] = "0";
        fields[4] = "0";
    }
    if !can.xattrs {
        fields[9] = "-";
    }
    fields.join("\t")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_1_fixture_restores_every_snapshot_to_its_manifest() {
    let (passphrase, expected) = manifest();
    assert_eq!(expected.len(), 3, "three snapshots in the manifest");
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repository-v1");
    test_support::copy_dir(&fixtures().join("repository-v1"), &repo_dir);

    let probe = tempfile::NamedTempFile::new_in(work.path()).unwrap();
    let can = Can {
        chown: probe.as_file().metadata().unwrap().uid() == 0,
        xattrs: xattr::set(probe.path(), "user.probe", b"1").is_ok(),
    };
    if !can.chown {
        test_support::missing("root (to restore the fixture's file owners)");
    }
    if !can.xattrs {
        test_support::missing("user xattr support (to restore the fixture's xattrs)");
    }

    let store = StoreOptions::new(repo_dir.to_string_lossy())
        .build()
        .unwrap();
    let repo = Arc::new(
        Repository::open(store, "fixture", &KeySource::passphrase(passphrase))
            .await
            .unwrap(),
    );
    assert_eq!(repo.config().version, 1);
    let listed: BTreeSet<String> = snapshot_ids(&repo).await.into_iter().collect();
    assert_eq!(listed, expected.keys().cloned().collect());
    assert!(repo.skipped_objects().is_empty());

    // Its keys predate the keys' creation time and host: listed without them.
    let keys = repo.list_keys().await.unwrap();
    assert_eq!(keys.iter().filter(|k| k.current).count(), 1);
    assert!(
        keys.iter()
            .all(|k| k.created_ns.is_none() && k.host.is_none())
    );

    // `check --read-data` reads the version-1 format too, and finds it sound.
    let options = backup_core::check::CheckOptions::builder()
        .with_read_data(backup_core::check::DataSubset::All)
        .build()
        .unwrap();
    let report = backup_core::check::check(repo.clone(), &options)
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.snapshots, 3);
    assert!(report.packs_read > 0 && report.packs_read == report.packs);
    assert!(report.unindexed_packs.is_empty());

    for (id, lines) in &expected {
        let target = work.path().join(id);
        restore_all(repo.clone(), id, &target).await;
        let top = lines
            .iter()
            .next()
            .and_then(|l| l.split('\t').next())
            .map(|p| p.split('/').next().unwrap().to_string())
            .unwrap();
        let restored = entries_of(&target, Path::new(&top), &can);
        let wanted: BTreeSet<String> = lines.iter().map(|l| restorable(l, &can)).collect();
        let missing: Vec<_> = wanted.difference(&restored).collect();
        let extra: Vec<_> = restored.difference(&wanted).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "snapshot {id}:\nexpected but not restored: {missing:#?}\nrestored but not expected: {extra:#?}"
        );
    }
}
