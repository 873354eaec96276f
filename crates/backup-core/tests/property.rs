//! Property test: random trees (empty files, large sparse files, symlinks, hard links, unicode and
//! non-UTF-8 names, deep nesting, modes, owners, ns mtimes, xattrs) restore faithfully.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::conformance::{memory_repository, restore_all_with};
use backup_core::{BackupOptions, NoProgress};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Content {
    Empty,
    Bytes(Vec<u8>),
    /// Virtual size and (offset, data) islands; the rest is holes.
    Sparse(u64, Vec<(u64, Vec<u8>)>),
}

#[derive(Debug, Clone)]
enum Kind {
    File(Content),
    Symlink(Vec<u8>),
    /// Hard link to the n-th file created so far (modulo).
    HardLink(usize),
    Dir,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Index of the parent directory among directories created so far (modulo); 0 = root.
    parent: usize,
    name: Vec<u8>,
    kind: Kind,
    mode: u32,
    owner: (u32, u32),
    mtime: (i64, u32),
    xattr: Option<Vec<u8>>,
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(String::into_bytes),
        "[α-ω日本語ü ]{1,6}".prop_map(String::into_bytes),
        // Non-UTF-8: arbitrary bytes except '/' and NUL.
        proptest::collection::vec(1u8..=255, 1..12).prop_map(|v| v
            .into_iter()
            .map(|b| if b == b'/' { b'_' } else { b })
            .collect()),
    ]
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        Just(Content::Empty),
        proptest::collection::vec(any::<u8>(), 1..200_000).prop_map(Content::Bytes),
        (
            1u64..(12 << 20),
            proptest::collection::vec(
                (any::<u64>(), proptest::collection::vec(1u8..=255, 1..5000)),
                0..4
            )
        )
            .prop_map(|(size, islands)| {
                let islands = islands
                    .into_iter()
                    .map(|(at, data)| (at % size, data))
                    .collect();
                Content::Sparse(size, islands)
            }),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    let kind = prop_oneof![
        4 => content().prop_map(Kind::File),
        1 => proptest::collection::vec(1u8..=255, 1..40).prop_map(Kind::Symlink),
        1 => any::<usize>().prop_map(Kind::HardLink),
        3 => Just(Kind::Dir),
    ];
    (
        any::<usize>(),
        name(),
        kind,
        prop_oneof![
            Just(0o644u32),
            Just(0o600),
            Just(0o755),
            Just(0o4750),
            Just(0o1777),
            Just(0o400)
        ],
        (0u32..3000, 0u32..3000),
        (0i64..2_000_000_000, 0u32..1_000_000_000),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
    )
        .prop_map(|(parent, name, kind, mode, owner, mtime, xattr)| Entry {
            parent,
            name,
            kind,
            mode,
            owner,
            mtime,
            xattr,
        })
}

fn set_meta(path: &Path, e: &Entry, is_link: bool) {
    let _ = std::os::unix::fs::lchown(path, Some(e.owner.0), Some(e.owner.1));
    if !is_link {
        if let Some(v) = &e.xattr {
            let _ = xattr::set(path, "user.prop", v);
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode)).unwrap();
    }
    let t = filetime::FileTime::from_unix_time(e.mtime.0, e.mtime.1);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// Creates the tree; directories get their metadata last (children change their mtime).
fn build(root: &Path, entries: &[Entry]) {
    let mut dirs: Vec<(PathBuf, Option<Entry>)> = vec![(root.to_path_buf(), None)];
    let mut files: Vec<PathBuf> = Vec::new();
    // A deep chain exercises nesting whatever the random entries are.
    let mut deep = root.to_path_buf();
    for i in 0..24 {
        deep = deep.join(format!("d{i}"));
        std::fs::create_dir(&deep).unwrap();
    }
    std::fs::write(deep.join("bottom"), b"deep").unwrap();
    for e in entries {
        let parent = dirs[e.parent % dirs.len()].0.clone();
        let path = parent.join(OsStr::from_bytes(&e.name));
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        match &e.kind {
            Kind::Dir => {
                std::fs::create_dir(&path).unwrap();
                dirs.push((path, Some(e.clone())));
                continue;
            }
            Kind::File(c) => {
                let f = std::fs::File::create(&path).unwrap();
                match c {
                    Content::Empty => {}
                    Content::Bytes(b) => f.write_all_at(b, 0).unwrap(),
                    Content::Sparse(size, islands) => {
                        f.set_len(*size).unwrap();
                        for (at, data) in islands {
                            f.write_all_at(data, *at).unwrap();
                        }
                    }
                }
                files.push(path.clone());
            }
            Kind::Symlink(target) => {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).unwrap();
                set_meta(&path, e, true);
                continue;
            }
            Kind::HardLink(n) => {
                if files.is_empty() {
                    continue;
                }
                let first = files[n % files.len()].clone();
                std::fs::hard_link(&first, &path).unwrap();
                // Metadata belongs to the shared inode; leave it as the first name set it.
                continue;
            }
        }
        set_meta(&path, e, false);
    }
    for (path, e) in dirs.iter().rev() {
        if let Some(e) = e {
            set_meta(path, e, false);
        }
    }
}

fn run_case(entries: Vec<Entry>) -> Result<(), TestCaseError> {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build(&src, &entries);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let target = work.path().join("restored");
    rt.block_on(async {
        let repo = memory_repository().await;
        let (id, snap) = backup_core::backup(
            repo.clone(),
            BackupOptions::builder([&src]).build().unwrap(),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
        assert!(snap.skipped.is_empty(), "{:?}", snap.skipped);
        // Sparse restore, so the check below that sparse files stay sparse applies.
        restore_all_with(repo, &id, &target, true).await;
    });
    let restored = target.join("src");
    let diffs = backup_core::compare_trees(&src, &restored).unwrap();
    prop_assert!(diffs.is_empty(), "{diffs:#?}");
    // Independent check with diff(1), and sparse files stay sparse.
    let status = std::process::Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&src)
        .arg(&restored)
        .status()
        .unwrap();
    prop_assert!(status.success(), "diff -r reports differences");
    for e in walk(&src) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        if m.is_file() && m.len() > (1 << 20) {
            let rel = e.strip_prefix(&src).unwrap();
            let r = std::fs::symlink_metadata(restored.join(rel)).unwrap();
            prop_assert!(
                r.blocks() <= m.blocks() + 64,
                "{} not kept sparse: {} blocks vs {}",
                rel.display(),
                r.blocks(),
                m.blocks()
            );
        }
    }
    Ok(())
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let path = e.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_restore_faithfully(entries in proptest::collection::vec(entry(), 0..40)) {
        run_case(entries)?;
    }
}

proptest! {
    /// `ls` prints names escaped: one line of valid UTF-8 that unescapes to the same bytes.
    #[test]
    fn escaped_paths_are_one_line_and_unescape_exactly(
        path in proptest::collection::vec(any::<u8>(), 0..64),
        text in "\\PC*",
    ) {
        for bytes in [path, text.into_bytes()] {
            let escaped = backup_core::ops::escape_path(&bytes);
            prop_assert!(!escaped.contains(['\n', '\r']), "{escaped:?}");
            prop_assert_eq!(backup_core::ops::unescape_path(escaped.as_bytes()).unwrap(), bytes);
        }
    }
}
